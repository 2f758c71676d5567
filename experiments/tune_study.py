"""Tune study (issue #7): a 16-trial SAC search on pendulum inside the model, the best checked for real.

Uses the pendulum ensemble of ``experiments/fidelity_study.py`` (made if missing). Reports whether
the configuration ranked first by imagined score is within 10% of the best real-validated return
among the validated trials, and the whole search's wall-clock time (≤ 20 minutes asked).

    python experiments/tune_study.py [--samples 16] [--steps 8000] [--top-k 4]
    python experiments/tune_study.py --smoke  # one trial of 128 steps, validated on 1 episode
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from common import default_config, machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import model_for

from imaginarium.run.search import run_search


@dataclass(frozen=True)
class Config:
    algo: str = "sac"
    samples: int = 16
    steps: int = 8000
    reports: int = 4
    top_k: int = 4
    real_episodes: int = 10
    out: str = "experiments/results/tune/pendulum"
    report: str = "experiments/results/tune_study.json"
    SMOKE: ClassVar[dict] = {"samples": 1, "steps": 128, "reports": 1, "top_k": 1, "real_episodes": 1}


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    model = model_for("pendulum", default_config(StudyConfig))
    result = run_search(
        model, config.algo, samples=config.samples, out=config.out, steps=config.steps, reports=config.reports,
        top_k=config.top_k, real_episodes=config.real_episodes,
    )  # fmt: skip
    best_real = max(trial.real_return["mean"] for trial in result.validated_trials)
    first = result.trial(result.first_by_imagined_score).real_return["mean"]
    within = first >= best_real - 0.1 * abs(best_real)
    figures = {
        "seconds": result.seconds,
        "first_by_imagined_real_return": first,
        "best_validated_real_return": best_real,
        "within_10_percent": within,
        "failed_trials": len(result.failed_trials),
        "metrics": result.metrics,
    }
    print(
        f"{config.samples} trials in {result.seconds / 60:.1f} min; first by imagined score: real {first:.1f}; "
        f"best validated: {best_real:.1f}; within 10%: {within}"
    )
    write_report(
        config.report, {"config": asdict(config), "machine": machine(), **figures, "search": result.to_json()}
    )


if __name__ == "__main__":
    main()
