"""Ranking study (issue #6): rank policy zoos inside the world model and compare with real returns.

For each task: the zoo of ``experiments/zoo.py`` (checkpoints of two algorithms across training, plus
the random policy), the mixed-quality 50k-step dataset and ensemble model of
``experiments/fidelity_study.py`` (made here if missing, in the same folders), then
``imaginarium rank`` with real episodes for ground truth. Prints the metrics per task, writes the
reports under ``experiments/results/ranking/<task>/`` and every figure to JSON.

Thresholds: Spearman ≥ 0.9 and regret@1 ≤ 0.05 on cartpole, pendulum and reacher; Spearman ≥ 0.8 on
hopper.

``--zoo graded`` ranks ``experiments/zoo.py``'s graded zoo instead: the best checkpoint under a
ladder of action noise, and random. Checkpoint zoos hold near-experts whose real returns tie within
their noise, and a ranking of ties scores the order of noise; the ladder's real returns are apart.

    python experiments/ranking_study.py [--tasks cartpole,pendulum,reacher,hopper] [--workers 2]
    python experiments/ranking_study.py --zoo graded --reports experiments/results/ranking_graded \
        --out experiments/results/ranking_study_graded.json
    python experiments/ranking_study.py --smoke  # pendulum: 2 starts, 1 real episode, no Ray, 1 short GIF
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import machine, parse_config, write_report
from fidelity_study import mixed_policy
from zoo import graded_zoo, zoo

from imaginarium.collect import collect
from imaginarium.report import write_report as write_ranking_report
from imaginarium.run.pipeline import collect_train_evaluate, is_collected
from imaginarium.run.rank import rank_policies

THRESHOLDS = {
    "cartpole": {"spearman": 0.9, "regret_at_1": 0.05},
    "pendulum": {"spearman": 0.9, "regret_at_1": 0.05},
    "reacher": {"spearman": 0.9, "regret_at_1": 0.05},
    "hopper": {"spearman": 0.8},
}


@dataclass(frozen=True)
class Config:
    tasks: str = "cartpole,pendulum,reacher,hopper"
    starts: int = 64
    real_episodes: int = 20
    workers: int = 2
    zoo: str = "checkpoints"
    seed: int = 0
    dataset_steps: int = 50_000
    ensemble_steps: int = 10_000
    workdir: str = "experiments/results/fidelity"
    reports: str = "experiments/results/ranking"
    #: the top policies the report shows a real and an imagined episode of, and those episodes' steps
    videos: int = 3
    video_steps: int = 200
    out: str = "experiments/results/ranking_study.json"
    SMOKE: ClassVar[dict] = {
        "tasks": "pendulum",
        "starts": 2,
        "real_episodes": 1,
        "workers": 0,
        "dataset_steps": 600,
        "ensemble_steps": 2,
        "videos": 1,
        "video_steps": 10,
    }


def dataset_for(task: str, config: Config) -> Path:
    """The task's mixed-quality dataset (the fidelity study's), collected if missing.

    Apart from :func:`model_for`, which trains the ensemble on it, for the studies that train their
    own models on this data (``seed_study.py``, ``head_size_study.py``).
    """
    data = Path(config.workdir) / task / "data"
    if not is_collected(data):
        collect(task, data, policy=mixed_policy(task), steps=config.dataset_steps, seed=config.seed)
    return data


def model_for(task: str, config: Config) -> Path:
    """The task's mixed-quality dataset (:func:`dataset_for`) and the ensemble model trained on it, made
    if missing by the pipeline every job starts with, which measures the model's fidelity over 50
    steps when it trains it.

    The data is made by :func:`dataset_for` rather than the pipeline because the mixed policy trains
    an expert when none is cached, worth it only when the data is missing.
    """
    prepared = collect_train_evaluate(
        task,
        dataset_for(task, config),
        Path(config.workdir) / task / "ensemble",
        family="ensemble",
        preset="s",
        train_config={"steps": config.ensemble_steps},
        horizon=50,
        progress=True,
    )
    return prepared.model


def check(task: str, metrics: dict[str, float] | None) -> bool:
    if metrics is None:
        return False
    wanted = THRESHOLDS[task]
    return metrics["spearman"] >= wanted["spearman"] and metrics["regret_at_1"] <= wanted.get(
        "regret_at_1", 1.0
    )


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    if config.zoo not in ("checkpoints", "graded"):
        raise SystemExit(f"--zoo must be checkpoints or graded, got {config.zoo!r}")
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "tasks": {}}
    if Path(config.out).exists():  # tasks run one at a time add up in one file
        report["tasks"] = json.loads(Path(config.out).read_text()).get("tasks", {})
    for task in config.tasks.split(","):
        model = model_for(task, config)
        if config.zoo == "graded":
            policies = graded_zoo(task, config.seed)
        else:
            policies = [str(path) for path in zoo(task, config.seed)] + ["random"]
        result = rank_policies(
            model,
            policies,
            starts=config.starts,
            real_env=task,
            real_episodes=config.real_episodes,
            workers=config.workers,
            seed=config.seed,
        )
        write_ranking_report(
            result, Path(config.reports) / task, model, config.videos, config.video_steps, overwrite=True
        )
        metrics = result.metrics
        report["tasks"][task] = {
            "policies": len(policies),
            "metrics": metrics,
            "thresholds": THRESHOLDS[task],
            "met": check(task, metrics),
            "seconds": result.settings.seconds,
            "ranking": [
                {
                    "name": entry.name,
                    "imagined": entry.imagined_return,
                    "real": entry.real_return,
                    "uncertainty_warning": entry.uncertainty_warning,
                    "error": entry.error,
                }
                for entry in result.policies
            ],
        }
        shown = ", ".join(f"{key} {value:.3f}" for key, value in (metrics or {}).items())
        print(f"{task}: {len(policies)} policies; {shown}; met: {report['tasks'][task]['met']}")
        write_report(config.out, report)


if __name__ == "__main__":
    main()
