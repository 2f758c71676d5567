"""How much a ranking depends on the model's training seed (found while refreshing the README).

For one task, trains the ensemble that ``experiments/ranking_study.py`` ranks in (preset ``s``, on the
same dataset, as long) with each training seed and success/continue head width, then ranks the
task's checkpoint zoo (``experiments/zoo.py`` and the random policy) in each model with that
study's settings, taken from its config. Writes each model's ranking metrics and every policy's
imagined and real return. Models already trained are reused; the dataset is made if missing.

    python experiments/seed_study.py [--task hopper] [--seeds 0,1,2] [--widths 64,128]
    python experiments/seed_study.py --smoke  # one pendulum model, the ranking study's smoke settings
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import default_config, is_trained, machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import dataset_for
from zoo import zoo_specs

from imaginarium.models.train import train_world_model
from imaginarium.run.rank import rank_policies


@dataclass(frozen=True)
class Config:
    task: str = "hopper"
    seeds: str = "0,1,2"
    widths: str = "64,128"
    workdir: str = "experiments/results/seed_study"
    out: str = "experiments/results/seed_study.json"
    SMOKE: ClassVar[dict] = {"task": "pendulum", "seeds": "0", "widths": "64"}


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    study = default_config(StudyConfig)  # the ranking study's data, training, starts, real episodes, workers
    data = dataset_for(config.task, study)
    policies = zoo_specs(config.task, seed=study.seed)
    report: dict[str, Any] = {
        "config": asdict(config),
        "ranking_study_config": asdict(study),
        "machine": machine(),
        "models": [],
    }
    for width in (int(text) for text in config.widths.split(",")):
        for seed in (int(text) for text in config.seeds.split(",")):
            folder = Path(config.workdir) / config.task / f"heads_{width}_seed_{seed}"
            if not is_trained(folder):
                train_world_model(
                    data,
                    folder,
                    family="ensemble",
                    preset="s",
                    model_overrides={"head_hidden": width},
                    config={"steps": study.ensemble_steps, "seed": seed},
                    overwrite=True,
                )
            result = rank_policies(
                folder,
                policies,
                starts=study.starts,
                real_env=config.task,
                real_episodes=study.real_episodes,
                workers=study.workers,
                seed=study.seed,
                progress=False,
            )
            metrics = result.metrics
            report["models"].append(
                {
                    "head_width": width,
                    "seed": seed,
                    "metrics": metrics,
                    "policies": [
                        {
                            "name": entry.name,
                            "imagined": entry.imagined_return["mean"],
                            "real": entry.real_return["mean"],
                            "outside_fraction": entry.outside_fraction,
                        }
                        for entry in result.ranked
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
