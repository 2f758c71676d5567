"""How much a ranking depends on the model's training seed (found while refreshing the README).

For one task, trains the ensemble of ``experiments/fidelity_study.py`` (preset ``s``, 10k steps, same
dataset) with each training seed and success/continue head width, then ranks the task's checkpoint
zoo (``experiments/zoo.py`` and the random policy) in each model exactly as
``experiments/ranking_study.py`` does: 64 starts, every elite, 20 real episodes per policy. Writes
each model's ranking metrics and every policy's imagined and real return. Models already trained are
reused.

    python experiments/seed_study.py [--task hopper] [--seeds 0,1,2] [--widths 64,128]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import is_trained, machine, parse_config, write_report
from zoo import zoo

from imaginarium.models.train import train_world_model
from imaginarium.ranking import rank_policies


@dataclass(frozen=True)
class Config:
    task: str = "hopper"
    seeds: str = "0,1,2"
    widths: str = "64,128"
    steps: int = 10_000
    starts: int = 64
    real_episodes: int = 20
    workers: int = 2
    data: str = "experiments/results/fidelity/{task}/data"
    workdir: str = "experiments/results/seed_study"
    out: str = "experiments/results/seed_study.json"


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    policies = [str(path) for path in zoo(config.task)] + ["random"]
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "models": []}
    for width in (int(text) for text in config.widths.split(",")):
        for seed in (int(text) for text in config.seeds.split(",")):
            folder = Path(config.workdir) / config.task / f"heads_{width}_seed_{seed}"
            if not is_trained(folder):
                train_world_model(
                    config.data.format(task=config.task),
                    folder,
                    family="ensemble",
                    preset="s",
                    model_overrides={"head_hidden": width},
                    config={"steps": config.steps, "seed": seed},
                    overwrite=True,
                )
            result = rank_policies(
                folder,
                policies,
                starts=config.starts,
                real_env=config.task,
                real_episodes=config.real_episodes,
                workers=config.workers,
                progress=False,
            )
            metrics = result["metrics"]
            report["models"].append(
                {
                    "head_width": width,
                    "seed": seed,
                    "metrics": metrics,
                    "policies": [
                        {
                            "name": entry["name"],
                            "imagined": entry["imagined_return"]["mean"],
                            "real": entry["real_return"]["mean"],
                            "outside_fraction": entry["outside_fraction"],
                        }
                        for entry in result["policies"]
                        if entry.get("error") is None
                    ],
                }
            )
            write_report(config.out, report)
            print(
                f"{config.task} heads {width} seed {seed}: spearman {metrics['spearman']:.3f}, "
                f"regret@1 {metrics['regret_at_1']:.3f}, regret@3 {metrics['regret_at_3']:.3f}"
            )


if __name__ == "__main__":
    main()
