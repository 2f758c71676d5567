"""Prediction-powered evaluation against the real episodes alone (issue #24): coverage, width, and how
many real episodes it takes to be as sure as 20 real episodes alone.

For each task, dataset and zoo (:mod:`zoo`: checkpoints and the graded ladder), every policy runs a pool
of real episodes (``--pool``, seeds 5000–); their mean is the policy's real value. The model trained on
the dataset (:func:`ranking_study.model_on`) imagines the policy from each pool episode's own start
state and from ``--start-pool`` of the data's start states. Then, ``--draws`` times for each ``M`` of
``--episodes``, ``M`` pool episodes and a ranking's ``--starts`` start states are drawn, and both
intervals at ``--level`` are set from them (:mod:`imaginarium.calibration`), as ``rank --real-episodes
M`` sets them: the prediction-powered one and Student's over the real episodes alone. (Every policy of
a ranking shares its starts, so with one fixed draw of them the policies' errors move together and a
zoo's coverage is that of one draw; drawing them anew each time measures the method.) Reported per zoo
and pooled over zoos: coverage (the share of intervals holding the real value), mean width as a share
of the zoo's real range, and the fewest real episodes at which the prediction-powered width is no more
than the real-only width with 20 episodes. Beside them, ``--calibrations``: the conformal intervals
that policies without real episodes get (``rank --calibrate``), their coverage and width.

    python experiments/trust_study.py --datasets pendulum/mixed,cartpole/mixed --zoos checkpoints,graded
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from common import default_config, machine, parse_config, write_report
from ranking_study import Config as RankingConfig
from ranking_study import model_on
from zoo import zoo_specs

from imaginarium.calibration import prediction_powered, real_only
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import imagined_rollouts, real_rollouts, start_states
from imaginarium.models import load_world_model
from imaginarium.policy import load_policy
from imaginarium.run.rank import rank_policies

#: the real-only interval with this many episodes is the width prediction-powered evaluation must reach
REFERENCE_EPISODES = 20


@dataclass(frozen=True)
class Config:
    #: ``task/data`` pairs: ``mixed`` the expert mixture, else an :mod:`offline_datasets` kind
    datasets: str = "pendulum/mixed,cartpole/mixed,reacher/mixed,hopper/mixed"
    zoos: str = "checkpoints,graded"
    #: real episodes per policy: their mean is the real value, and the draws come from them
    pool: int = 60
    #: real episodes drawn for each interval
    episodes: str = "2,3,5,10,20"
    draws: int = 500
    #: a ranking's start states: each draw takes so many of ``start_pool`` imagined ones
    starts: int = 64
    start_pool: int = 256
    level: float = 0.9
    #: world-model training steps for a dataset other than ``mixed``
    model_steps: int = 20_000
    #: the calibrations measured for policies without real episodes, as ``rank --calibrate`` takes them:
    #: held-out episodes of the model's data replayed whole (``episode``) or in segments of so many
    #: steps, blended toward the whole episodes by each policy's share of states outside the data
    calibrations: str = "episode,10"
    #: the task's own termination and reward rules judge the imagined states where known (``rank --rules``)
    rules: bool = False
    seed: int = 0
    #: each zoo's real pools and imagined returns, kept here and reused (empty: not kept)
    cache: str = "experiments/results/trust"
    out: str = "experiments/results/trust_study.json"
    SMOKE: ClassVar[dict] = {
        "datasets": "pendulum/mixed",
        "zoos": "graded",
        "pool": 4,
        "episodes": "2,3",
        "draws": 5,
        "starts": 2,
        "start_pool": 3,
        "model_steps": 20,
        "calibrations": "episode,5",
        "cache": "",
    }


def policy_draws(task_name: str, model: Any, spec: str, config: Config) -> dict[str, np.ndarray]:
    """One policy's real pool, and the model's returns from the pool's starts and from ``start_pool`` of
    the data's starts (each draw takes a ranking's ``starts`` of them)."""
    task = get_task(task_name)
    policy = load_policy(spec, task.observation_space, task.action_space, seed=config.seed)
    real = real_rollouts(task, policy, config.pool, seed=5000)
    horizon = int(model.card.get("max_episode_steps") or 1000)
    at_starts = imagined_rollouts(
        model, policy, real.starts.astype(np.float32), horizon, seed=config.seed, rules=config.rules
    )
    starts = start_states(model.starts.inputs, config.start_pool, config.seed)
    imagined = imagined_rollouts(model, policy, starts, horizon, seed=config.seed, rules=config.rules)
    return {
        "real": np.asarray(real.per_episode),
        "at_starts": np.asarray(at_starts.per_start),
        "imagined": np.asarray(imagined.per_start),
    }


def intervals(draws: dict[str, np.ndarray], count: int, config: Config, rng: np.random.Generator) -> dict:
    """Coverage and mean width of both intervals over ``config.draws`` draws of ``count`` pool episodes
    and, as each ranking draws its own, of the ranking's start states."""
    value = float(draws["real"].mean())
    found: dict[str, list[tuple[bool, float]]] = {"ppi": [], "real": []}
    pooled = draws["imagined"]
    for _ in range(config.draws):
        rows = rng.choice(len(draws["real"]), size=count, replace=False)
        real = draws["real"][rows]
        imagined = pooled[rng.choice(len(pooled), size=min(config.starts, len(pooled)), replace=False)]
        for name, estimate in (
            ("ppi", prediction_powered(real, draws["at_starts"][rows], imagined, config.level)),
            ("real", real_only(real, config.level)),
        ):
            found[name].append((estimate.low <= value <= estimate.high, estimate.width))
    return {
        name: {
            "coverage": float(np.mean([hit for hit, _ in rows])),
            "width": float(np.mean([w for _, w in rows])),
        }
        for name, rows in found.items()
    }


def zoo_draws(task: str, data: str, zoo: str, model: Any, config: Config) -> dict[str, dict[str, np.ndarray]]:
    """:func:`policy_draws` of every policy of the zoo, kept in ``config.cache`` and reused."""
    path = (
        Path(config.cache)
        / f"{task}_{data}_{zoo}_{config.pool}_{config.start_pool}{'_rules' if config.rules else ''}.npz"
        if config.cache
        else None
    )
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as kept:
            flat = {key: kept[key] for key in kept.files}
        specs = [key.rpartition("|")[0] for key in flat if key.endswith("|real")]
        return {
            spec: {kind: flat[f"{spec}|{kind}"] for kind in ("real", "at_starts", "imagined")}
            for spec in specs
        }
    policies = {spec: policy_draws(task, model, spec, config) for spec in zoo_specs(task, zoo, config.seed)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            **{
                f"{spec}|{kind}": values for spec, draws in policies.items() for kind, values in draws.items()
            },
        )
    return policies


def calibrated(
    policies: dict[str, dict[str, np.ndarray]], folder: Path, scale: float, config: Config
) -> dict[str, Any]:
    """For each calibration of ``config.calibrations``: the zoo ranked as ``rank --calibrate`` ranks it,
    each policy's interval from its imagined return alone, its coverage of the real value and mean
    width as a share of the zoo's range."""
    found: dict[str, Any] = {}
    for name in filter(None, config.calibrations.split(",")):
        result = rank_policies(
            folder, list(policies), starts=config.starts, seed=config.seed, workers=0, progress=False,
            rules=config.rules, level=config.level, calibrate=name,
        )  # fmt: skip
        rows = [(entry, entry.predicted_real_return) for entry in result.ranked]
        if not rows or any(estimate is None for _, estimate in rows):
            continue  # too few held-out episodes (a smoke run's data)
        hits = [e["low"] <= float(policies[entry.path]["real"].mean()) <= e["high"] for entry, e in rows]
        found[name] = {
            "coverage": float(np.mean(hits)),
            "width": float(np.mean([(e["high"] - e["low"]) / scale for _, e in rows])),
            "held_out": rows[0][1]["held_out"],
            "missed": [entry.name for (entry, _), hit in zip(rows, hits, strict=True) if not hit],
        }
    return found


def study(task: str, data: str, zoo: str, config: Config) -> dict[str, Any]:
    """Both intervals for every policy of one zoo, at every count of real episodes, and the conformal
    intervals of each calibration without real episodes."""
    folder = model_on(task, data, replace(default_config(RankingConfig), model_steps=config.model_steps))
    model = load_world_model(folder)
    rng = np.random.default_rng(config.seed)
    counts = [int(count) for count in config.episodes.split(",")]
    policies = zoo_draws(task, data, zoo, model, config)
    values = [float(draws["real"].mean()) for draws in policies.values()]
    scale = max(float(np.ptp(values)), 1e-9)
    rows: dict[str, Any] = {}
    for count in counts:
        found = [intervals(draws, count, config, rng) for draws in policies.values()]
        rows[str(count)] = {
            name: {
                "coverage": float(np.mean([entry[name]["coverage"] for entry in found])),
                "width": float(np.mean([entry[name]["width"] for entry in found])) / scale,
            }
            for name in ("ppi", "real")
        }
    result = {"policies": len(policies), "real_range": scale, "by_episodes": rows}
    reference = rows.get(str(REFERENCE_EPISODES), {}).get("real", {}).get("width")
    if reference is not None:
        enough = [count for count in counts if rows[str(count)]["ppi"]["width"] <= reference]
        result["episodes_to_reference_width"] = min(enough) if enough else None
    correlation = [
        np.corrcoef(d["real"], d["at_starts"])[0, 1] for d in policies.values() if d["real"].std() > 0
    ]
    result["mean_start_correlation"] = float(np.nanmean(correlation)) if correlation else None
    result["conformal"] = calibrated(policies, folder, scale, config)
    print(f"{task}/{data}/{zoo}: {result}", flush=True)
    return result


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "results": {}}
    for pair in filter(None, config.datasets.split(",")):
        task, _, data = pair.partition("/")
        for zoo in filter(None, config.zoos.split(",")):
            report["results"][f"{task}/{data}/{zoo}"] = study(task, data, zoo, config)
            write_report(config.out, report)
    pooled: dict[str, Any] = {}
    for count in config.episodes.split(","):
        entries = [result["by_episodes"][count] for result in report["results"].values()]
        pooled[count] = {
            name: {
                key: float(np.mean([entry[name][key] for entry in entries])) for key in ("coverage", "width")
            }
            for name in ("ppi", "real")
        }
    report["pooled"] = pooled
    names = {name for result in report["results"].values() for name in result["conformal"]}
    report["pooled_conformal"] = {
        name: {
            key: float(
                np.mean(
                    [r["conformal"][name][key] for r in report["results"].values() if name in r["conformal"]]
                )
            )
            for key in ("coverage", "width")
        }
        for name in sorted(names)
    }
    write_report(config.out, report)
    for count, row in pooled.items():
        print(
            f"{count:>3} real episodes: prediction-powered coverage {row['ppi']['coverage']:.3f} width "
            f"{row['ppi']['width']:.3f}; real alone coverage {row['real']['coverage']:.3f} width {row['real']['width']:.3f}"
        )
    for name, row in report["pooled_conformal"].items():
        print(
            f"no real episodes, calibrated on {name}: coverage {row['coverage']:.3f} width {row['width']:.3f}"
        )


if __name__ == "__main__":
    main()
