"""Imagined against real success (issue #28): does the success column of a ranking say what the real task
would say, per policy?

For each task with a success definition and each dataset, the model trained on that dataset ranks the
task's zoos (:mod:`zoo`: the checkpoints and the graded ladder) with real episodes beside it, as a user's
``imaginarium rank`` does. Imagined success is decided the product's way, by the task's own rule applied
to the decoded imagined states (``rule``), and, for comparison, by the model's per-state success head as
it was decided before (``head``: the same rollouts with the rule withheld). The figure is the mean
absolute difference of imagined and real success rates over a zoo's policies (``success_gap``); the
ranking's metrics against real returns come with it.

Datasets: ``mixed`` is the expert mixture of the ranking study (its model, :func:`ranking_study.model_for`);
the others are :mod:`offline_datasets` kinds (``medium``, ``random``, ...), whose models are the planner
study's (trained here when missing), so the best policies are absent from the model's data.

    python experiments/success_study.py [--datasets cartpole/mixed,pendulum/medium] [--zoos graded]
    python experiments/success_study.py --smoke
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from common import default_config, machine, parse_config, write_report
from ranking_study import Config as RankingConfig
from ranking_study import model_on
from zoo import zoo_specs

import imaginarium.evaluation
from imaginarium.run.rank import rank_policies


@dataclass(frozen=True)
class Config:
    #: ``task/data`` pairs: ``mixed`` the expert mixture, else an :mod:`offline_datasets` kind
    datasets: str = (
        "cartpole/mixed,cartpole/medium,pendulum/mixed,pendulum/medium,reacher/mixed,reacher/random"
    )
    zoos: str = "checkpoints,graded"
    starts: int = 64
    real_episodes: int = 20
    #: world-model training steps for a dataset other than ``mixed`` (early stopping may end it sooner)
    model_steps: int = 20_000
    seed: int = 0
    out: str = "experiments/results/success_study.json"
    SMOKE: ClassVar[dict] = {
        "datasets": "pendulum/mixed",
        "zoos": "graded",
        "starts": 2,
        "real_episodes": 1,
        "model_steps": 20,
    }


def model(task: str, data: str, config: Config) -> Path:
    """The model trained on the task's ``data`` (:func:`ranking_study.model_on`), made when missing."""
    return model_on(
        task, data, replace(default_config(RankingConfig), model_steps=config.model_steps, seed=config.seed)
    )


def compare(task: str, folder: Path, specs: list[str], config: Config) -> dict[str, Any]:
    """Rank ``specs`` with real episodes (success by the rule), then imagine them again with the head
    deciding success; per policy both imagined figures beside the real one, and both gaps."""
    ranked = rank_policies(
        folder, specs, starts=config.starts, real_env=task, real_episodes=config.real_episodes,
        workers=0, seed=config.seed, progress=False,
    )  # fmt: skip
    with mock.patch.object(imaginarium.evaluation, "model_success_rule", lambda *_: None):
        by_head = rank_policies(
            folder, specs, starts=config.starts, workers=0, seed=config.seed, progress=False
        )
    head = {entry.name: entry.imagined_success for entry in by_head.ranked}
    rows = [
        {
            "name": entry.name,
            "imagined_success": entry.imagined_success,
            "head_success": head.get(entry.name),
            "real_success": entry.real_success,
            "imagined_return": entry.imagined_return["mean"],
            "real_return": entry.real_return["mean"] if entry.real_return else None,
        }
        for entry in ranked.ranked
    ]
    return {
        "success_source": ranked.ranked[0].success_source if ranked.ranked else None,
        "success_gap": ranked.success_gap,
        "head_gap": _gap(rows, "head_success"),
        "metrics": ranked.metrics,
        "failed": [entry.error for entry in ranked.failed],
        "policies": rows,
    }


def _gap(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean absolute difference of ``key`` and real success over the rows that have both."""
    pairs = [(row[key], row["real_success"]) for row in rows if None not in (row[key], row["real_success"])]
    return sum(abs(imagined - real) for imagined, real in pairs) / len(pairs) if pairs else None


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "results": {}}
    if Path(config.out).exists():  # datasets run one at a time add up in one file
        report["results"] = json.loads(Path(config.out).read_text()).get("results", {})
    for pair in filter(None, config.datasets.split(",")):
        task, data = pair.split("/")
        folder = model(task, data, config)
        for kind in filter(None, config.zoos.split(",")):
            result = compare(task, folder, zoo_specs(task, kind, config.seed), config)
            report["results"][f"{task}/{data}/{kind}"] = result
            print(
                f"{task}/{data}/{kind}: {len(result['policies'])} policies, success gap "
                f"{result['success_gap']} by {result['success_source']} (head: {result['head_gap']})",
                flush=True,
            )
            report["pooled"] = pooled(report["results"])
            write_report(config.out, report)


def pooled(results: dict[str, Any]) -> dict[str, Any]:
    """The gaps over every policy of every zoo (the issue's figure), by the rule and by the head, for
    all datasets and for the expert mixture and the weaker data apart."""
    groups = {"all": lambda key: True, "mixed": lambda key: "/mixed/" in key}
    groups["weaker data"] = lambda key: "/mixed/" not in key
    figures: dict[str, Any] = {}
    for group, chosen in groups.items():
        rows = [row for key, result in results.items() if chosen(key) for row in result["policies"]]
        figures[group] = {
            "policies": len(rows),
            "rule": _gap(rows, "imagined_success"),
            "head": _gap(rows, "head_success"),
        }
    return figures


if __name__ == "__main__":
    main()
