"""How much a ranking depends on the model's training seed, and how much ranking in several models at
once (``train --seeds N``, issue #24) takes that dependence away.

For one task, trains the ensemble that ``experiments/ranking_study.py`` ranks in (preset ``s``, on the
same dataset, as long) with each training seed of ``--seeds`` (each its own held-out split), and ranks
the task's checkpoint zoo (``experiments/zoo.py`` and the random policy) in each model with that
study's starts and seed; every policy also runs that study's real episodes once. Then the seeds are
dealt in turn into repetitions of ``--per-ranking`` models (seeds 0–4, 5–9, …) and each repetition's
models rank together (:func:`imaginarium.ranking.combine_models`, as ``rank --model`` with several
does). Reported: each single model's metrics, each repetition's metrics and ranking confidence, and the
spread (max − min) and mean of Spearman for single models and for repetitions.

Every model and its ranking (with each policy's return from each start) is kept in ``--workdir`` and
reused, so the study can be stopped and continued, in another session too; a repetition is reported
once all its models are trained.

    python experiments/seed_study.py --task hopper --seeds 0-24 --per-ranking 5
    python experiments/seed_study.py --smoke  # two pendulum models, the ranking study's smoke settings
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from common import default_config, is_trained, machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import dataset_for
from zoo import zoo_specs

from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.metrics import ranking_metrics
from imaginarium.models.checkpoint import SEED_FOLDER
from imaginarium.models.train import train_world_model
from imaginarium.outputs import atomic_write_text
from imaginarium.policy import load_policy
from imaginarium.ranking import PolicyEntry, assemble, combine_models
from imaginarium.run.rank import rank_policies

#: each model's ranking of the zoo, with every policy's return from each start, beside its weights
RANKING_FILE = "zoo_ranking.json"


@dataclass(frozen=True)
class Config:
    task: str = "hopper"
    #: training seeds: ``0,1,2`` or a range ``0-24``
    seeds: str = "0-24"
    #: models ranked together in each repetition
    per_ranking: int = 5
    head_width: int = 64
    workdir: str = "experiments/results/seed_study"
    out: str = "experiments/results/seed_study.json"
    SMOKE: ClassVar[dict] = {"task": "pendulum", "seeds": "0-1", "per_ranking": 2}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def _ranked_in(folder: Path, policies: list[str], study: StudyConfig) -> list[PolicyEntry]:
    """The zoo's entries in the model at ``folder`` (in the order of ``policies``), ranked once and kept."""
    path = folder / RANKING_FILE
    if path.exists():
        rows = json.loads(path.read_text())
    else:
        result = rank_policies(
            folder,
            policies,
            starts=study.starts,
            workers=0,
            seed=study.seed,
            progress=False,
            allow_code=False,
        )
        by_path = {entry.path: entry for entry in result.policies}
        rows = [
            {**by_path[policy].to_json(), "per_start": _listed(by_path[policy].per_start)}
            for policy in policies
        ]
        atomic_write_text(path, json.dumps(rows))
    entries = []
    for row in rows:
        per_start = row.pop("per_start")
        entry = PolicyEntry.from_json(row)
        entry.per_start = None if per_start is None else np.asarray(per_start)
        entries.append(entry)
    return entries


def _listed(values: np.ndarray | None) -> list | None:
    return None if values is None else values.tolist()


def _real_returns(policies: list[str], task: str, study: StudyConfig, workdir: Path) -> dict[str, float]:
    """Each policy's mean real return over the ranking study's real episodes, run once and kept."""
    path = workdir / "real_returns.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    real_task = get_task(task)
    for policy in policies:
        if policy not in known:
            loaded = load_policy(policy, real_task.observation_space, real_task.action_space, seed=study.seed)
            known[policy] = real_rollouts(real_task, loaded, study.real_episodes, seed=study.seed).return_[
                "mean"
            ]
            atomic_write_text(path, json.dumps(known, indent=1))
    return known


def _figures(entries: list[PolicyEntry], real: dict[str, float], seed: int) -> dict[str, Any]:
    """The ranking of ``entries`` (one model's or several combined) against the real returns."""
    result = assemble(entries, None, seed)
    ranked = result.ranked
    metrics = ranking_metrics(
        [entry.imagined_return["mean"] for entry in ranked], [real[e.path] for e in ranked]
    )
    return {
        "metrics": metrics,
        "ranking_confidence": result.ranking_confidence,
        "top_confidence": result.top_confidence,
        "failed": [entry.name for entry in result.failed],
        "policies": [
            {
                "name": entry.name,
                "imagined": entry.imagined_return["mean"],
                "interval": [entry.imagined_return["ci_low"], entry.imagined_return["ci_high"]],
                "model_spread": entry.model_spread,
                "real": real[entry.path],
                "order_confidence": entry.order_confidence,
                "outside_fraction": entry.outside_fraction,
            }
            for entry in ranked
        ],
    }


def _summary(spearmans: list[float]) -> dict[str, float | int] | None:
    if not spearmans:
        return None
    return {
        "count": len(spearmans),
        "mean": float(np.mean(spearmans)),
        "min": float(np.min(spearmans)),
        "max": float(np.max(spearmans)),
        "spread": float(np.ptp(spearmans)),
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    study = default_config(StudyConfig)  # the ranking study's data, training, starts, real episodes
    data = dataset_for(config.task, study)
    policies = zoo_specs(config.task, seed=study.seed)
    workdir = Path(config.workdir) / config.task
    report: dict[str, Any] = {
        "config": asdict(config),
        "ranking_study_config": asdict(study),
        "machine": machine(),
        "models": [],
        "repetitions": [],
    }
    real = _real_returns(policies, config.task, study, workdir)
    per_seed: dict[int, list[PolicyEntry]] = {}
    seeds = _seeds(config.seeds)
    for seed in seeds:
        folder = workdir / SEED_FOLDER.format(seed)
        if not is_trained(folder):
            train_world_model(
                data,
                folder,
                family="ensemble",
                preset="s",
                model_overrides={"head_hidden": config.head_width},
                config={"steps": study.ensemble_steps, "seed": seed},
                resume=(folder / "training_state.pt").exists(),
                overwrite=not (folder / "training_state.pt").exists(),
            )
        per_seed[seed] = _ranked_in(folder, policies, study)
        figures = _figures(per_seed[seed], real, study.seed)
        report["models"].append({"seed": seed, **figures})
        metrics = figures["metrics"]
        print(
            f"{config.task} seed {seed}: spearman {metrics['spearman']:.3f}, regret@1 {metrics['regret_at_1']:.3f}"
        )
        for start in range(0, len(seeds) - config.per_ranking + 1, config.per_ranking):
            members = seeds[start : start + config.per_ranking]
            if members[-1] != seed:
                continue  # a repetition is ranked once its last model is
            figures = _figures(
                combine_models([per_seed[item] for item in members], seed=study.seed), real, study.seed
            )
            report["repetitions"].append({"seeds": members, **figures})
            metrics = figures["metrics"]
            print(
                f"{config.task} seeds {members[0]}-{members[-1]} together: spearman {metrics['spearman']:.3f}, "
                f"regret@1 {metrics['regret_at_1']:.3f}, ranking confidence {figures['ranking_confidence']:.3f}"
            )
        single = _summary([row["metrics"]["spearman"] for row in report["models"]])
        together = _summary([row["metrics"]["spearman"] for row in report["repetitions"]])
        report["summary"] = {"single": single, "together": together}
        if single and together and single["count"] >= 2 and together["count"] >= 2:
            report["summary"]["met"] = {
                "spread_halved": together["spread"] <= single["spread"] / 2,
                "mean_at_least_0.85": together["mean"] >= 0.85,
            }
        write_report(config.out, report)


if __name__ == "__main__":
    main()
