"""Ray Tune policy search inside the world model: trials are cheap in imagination, and only the best
few are then checked on the real task.

Each trial trains a Stable-Baselines3 agent in ``WAMImagined-v0`` and reports, after every chunk of
steps, its imagined return (rolled from the same real start states as a ranking, optionally less a
penalty on the spread across ensemble members); ASHA stops weak trials early. The best ``top_k``
trials are then ranked inside the model and on the real task (:func:`rank_policies`, on Ray), and the
validated agent with the best real return is saved as ``best_agent.zip``::

    result = run_search("models/pendulum", "sac", samples=16, out="search/pendulum")

For a ``Tuner`` of your own, :func:`imagined_trainable` is the trainable and :func:`search_space` the
validated parameter space (add ``"setup": TrialSetup(...)`` to it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imaginarium.config import load_yaml
from imaginarium.errors import ImaginariumError

#: default search spaces: parameter -> {distribution: arguments}
SEARCH_SPACES: dict[str, dict[str, dict[str, list]]] = {
    "ppo": {
        "learning_rate": {"loguniform": [1e-4, 3e-3]},
        "gamma": {"choice": [0.95, 0.98, 0.99]},
        "n_steps": {"choice": [64, 128, 256]},
        "ent_coef": {"loguniform": [1e-6, 1e-2]},
    },
    "sac": {
        "learning_rate": {"loguniform": [1e-4, 3e-3]},
        "gamma": {"choice": [0.95, 0.98, 0.99]},
        "tau": {"uniform": [0.005, 0.05]},
        "batch_size": {"choice": [64, 128, 256]},
    },
}

#: the values each tunable parameter may take: (lowest, highest, whether it must be an integer)
LIMITS: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (1e-8, 1.0, False),
    "gamma": (0.5, 1.0, False),
    "gae_lambda": (0.5, 1.0, False),
    "n_steps": (2, 1e6, True),
    "batch_size": (2, 1e6, True),
    "n_epochs": (1, 1e3, True),
    "ent_coef": (0.0, 1.0, False),
    "clip_range": (1e-3, 1.0, False),
    "tau": (1e-4, 1.0, False),
    "train_freq": (1, 1e4, True),
    "gradient_steps": (1, 1e3, True),
    "learning_starts": (0, 1e7, True),
}
TUNABLE = {
    "ppo": {
        "learning_rate",
        "gamma",
        "gae_lambda",
        "n_steps",
        "batch_size",
        "n_epochs",
        "ent_coef",
        "clip_range",
    },
    "sac": {"learning_rate", "gamma", "tau", "batch_size", "train_freq", "gradient_steps", "learning_starts"},
}
DISTRIBUTIONS = {"loguniform": 2, "uniform": 2, "randint": 2, "choice": None}


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the model, the algorithm, and how long and how it is scored."""

    model: str
    algo: str
    steps: int = 20_000
    reports: int = 5
    num_envs: int = 4
    starts: int = 32
    uncertainty_penalty: float = 0.0
    seed: int = 0


def search_space(algo: str, overrides: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """The Tune parameter space for ``algo``: the default, or a YAML file / mapping replacing it.

    :raises ImaginariumError: an unknown algorithm, parameter or distribution, or a value outside what
        the parameter can take, named, before any trial starts.
    """
    from ray import tune

    if algo not in SEARCH_SPACES:
        raise ImaginariumError(f"tune searches {', '.join(SEARCH_SPACES)}; got {algo!r}")
    spec = SEARCH_SPACES[algo]
    if overrides is not None:
        spec = load_yaml(overrides) if isinstance(overrides, str | Path) else dict(overrides)
        if not isinstance(spec, dict) or not spec:
            raise ImaginariumError("a search space must map parameters to distributions")
    space: dict[str, Any] = {}
    for name, distribution in spec.items():
        if name not in TUNABLE[algo]:
            raise ImaginariumError(
                f"unknown parameter {name!r} for {algo}; tunable: {', '.join(sorted(TUNABLE[algo]))}"
            )
        if not isinstance(distribution, dict) or len(distribution) != 1:
            raise ImaginariumError(f"{name!r}: expected one distribution, e.g. {{loguniform: [1e-4, 1e-3]}}")
        kind, arguments = next(iter(distribution.items()))
        if kind not in DISTRIBUTIONS:
            raise ImaginariumError(
                f"{name!r}: unknown distribution {kind!r}; known: {', '.join(DISTRIBUTIONS)}"
            )
        values = list(arguments) if isinstance(arguments, list | tuple) else [arguments]
        if not values or (DISTRIBUTIONS[kind] and len(values) != DISTRIBUTIONS[kind]):
            raise ImaginariumError(
                f"{name!r}: {kind} takes {DISTRIBUTIONS[kind] or 'some'} values, got {values}"
            )
        _check_values(name, kind, values)
        space[name] = getattr(tune, kind)(values) if kind == "choice" else getattr(tune, kind)(*values)
    return space


def _check_values(name: str, kind: str, values: list) -> None:
    low, high, integer = LIMITS[name]
    for value in values:
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
            raise ImaginariumError(f"{name!r}: {value!r} is not a number")
        if not low <= value <= high or (integer and float(value) != int(value)):
            kind_text = "an integer " if integer else ""
            raise ImaginariumError(
                f"{name!r}: {value!r} is impossible; it must be {kind_text}in [{low:g}, {high:g}]"
            )
    if kind != "choice" and values[0] >= values[1]:
        raise ImaginariumError(f"{name!r}: {kind} needs low < high, got {values}")


def imagined_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: train ``config["setup"].algo`` in the model with the other keys of
    ``config`` as its hyperparameters, reporting the imagined score after each chunk of steps."""
    import stable_baselines3
    import torch
    from ray import tune

    from imaginarium.dataset import load_dataset
    from imaginarium.envs.sb3 import imagined_vec_env
    from imaginarium.evaluation import imagined_rollouts, start_states
    from imaginarium.models import load_world_model
    from imaginarium.policy import SB3Policy

    torch.set_num_threads(1)
    setup: TrialSetup = config["setup"]
    hyperparameters = {key: value for key, value in config.items() if key != "setup"}
    for key in ("n_steps", "batch_size", "n_epochs", "train_freq", "gradient_steps", "learning_starts"):
        if key in hyperparameters:
            hyperparameters[key] = int(hyperparameters[key])
    model = load_world_model(setup.model)
    data = load_dataset((model.card.get("dataset") or {})["path"])
    starts = start_states(data.observations[data.episode_starts[:-1]], setup.starts, setup.seed)
    horizon = int(model.card.get("max_episode_steps") or 1000)
    venv = imagined_vec_env(
        setup.model, num_envs=setup.num_envs, observation="decoded", track_uncertainty=False
    )
    agent_class = getattr(stable_baselines3, setup.algo.upper())
    checkpoint = tune.get_checkpoint()
    done = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            agent = agent_class.load(Path(folder) / "agent.zip", env=venv)
            done = int((Path(folder) / "steps").read_text())
    else:
        agent = agent_class("MlpPolicy", venv, seed=setup.seed, verbose=0, **hyperparameters)
    chunk = max(1, setup.steps // setup.reports)
    while done < setup.steps:
        agent.learn(chunk, reset_num_timesteps=False)
        done += chunk
        rollouts = imagined_rollouts(model, SB3Policy.from_agent(agent), starts, horizon, seed=setup.seed)
        spread = rollouts["member_spread"] or 0.0
        metrics = {
            "imagined_return": rollouts["return"]["mean"],
            "member_spread": spread,
            "score": rollouts["return"]["mean"] - setup.uncertainty_penalty * spread,
            "agent_steps": done,
        }
        with tempfile.TemporaryDirectory() as folder:
            agent.save(Path(folder) / "agent.zip")
            (Path(folder) / "steps").write_text(str(done))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_search(
    model: str | Path,
    algo: str,
    samples: int,
    out: str | Path,
    steps: int = 20_000,
    reports: int = 5,
    space: str | Path | dict[str, Any] | None = None,
    top_k: int = 3,
    real_episodes: int = 10,
    uncertainty_penalty: float = 0.0,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Search ``samples`` configurations of ``algo`` in the model, then validate the best ``top_k``.

    Writes ``OUT/search`` (Tune's own experiment folder, which ``resume`` restores), ``OUT/tune.json``,
    ``OUT/tune.md``, and the chosen agent ``OUT/best_agent.zip``.
    """
    from imaginarium.models.checkpoint import read_card
    from imaginarium.ranking import keep_local_ray_on_loopback, rank_policies, start_ray

    keep_local_ray_on_loopback(address)  # before the first import of Ray, below and in search_space
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if samples < 1 or top_k < 1 or steps < 1 or reports < 1:
        raise ImaginariumError("samples, top_k, steps and reports must be positive")
    param_space = search_space(algo, space)  # refused here, before Ray or any trial starts
    card = read_card(model)
    task = card.get("task")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    setup = TrialSetup(
        str(Path(model).resolve()), algo, steps, reports, uncertainty_penalty=uncertainty_penalty, seed=seed
    )
    started_ray = start_ray(workers, address)
    import ray

    started = time.perf_counter()
    try:
        trainable = tune.with_resources(imagined_trainable, {"cpu": 1})
        if resume and (out / "search").exists():
            tuner = tune.Tuner.restore(str(out / "search"), trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={**param_space, "setup": setup},
                tune_config=tune.TuneConfig(
                    metric="score",
                    mode="max",
                    num_samples=samples,
                    scheduler=ASHAScheduler(max_t=reports, grace_period=1, reduction_factor=2),
                ),
                run_config=tune.RunConfig(
                    storage_path=str(out),
                    name="search",
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                ),
            )
        grid = tuner.fit()
        trials = []
        for index, trial in enumerate(grid):
            entry = {
                "trial": index,
                "config": {key: value for key, value in trial.config.items() if key != "setup"},
                "error": str(trial.error).splitlines()[0] if trial.error else None,
                "score": (trial.metrics or {}).get("score"),
                "imagined_return": (trial.metrics or {}).get("imagined_return"),
                "agent_steps": (trial.metrics or {}).get("agent_steps"),
                "agent": None,
            }
            if trial.checkpoint is not None and not trial.error:
                with trial.checkpoint.as_directory() as folder:
                    agent = out / "agents" / f"trial_{index}.zip"
                    agent.parent.mkdir(exist_ok=True)
                    shutil.copy2(Path(folder) / "agent.zip", agent)
                    entry["agent"] = str(agent)
            trials.append(entry)
        scored = sorted(
            (t for t in trials if t["agent"] and t["score"] is not None), key=lambda t: -t["score"]
        )
        best = scored[:top_k]
        validation = None
        if best and task:
            validation = rank_policies(
                model, [t["agent"] for t in best], starts=32, real_env=task, real_episodes=real_episodes,
                seed=seed, progress=False,
            )  # fmt: skip
            by_path = {entry["path"]: entry for entry in validation["policies"]}
            for trial in best:
                checked = by_path.get(trial["agent"], {})
                trial["real_return"] = checked.get("real_return")
        validated = [t for t in best if t.get("real_return")]
        chosen = (
            max(validated, key=lambda t: t["real_return"]["mean"])
            if validated
            else (best[0] if best else None)
        )
        if chosen is not None:
            shutil.copy2(chosen["agent"], out / "best_agent.zip")
    finally:
        if started_ray:
            ray.shutdown()
    report = {
        "algo": algo,
        "task": task,
        "samples": samples,
        "setup": asdict(setup),
        "seconds": time.perf_counter() - started,
        "trials": trials,
        "validated": [t["trial"] for t in validated],
        "first_by_imagined_score": best[0]["trial"] if best else None,
        "chosen": chosen["trial"] if chosen else None,
        "metrics": validation["metrics"] if validation else None,
        "best_agent": str(out / "best_agent.zip") if chosen else None,
    }
    _write_reports(out, report)
    return report


def _write_reports(out: Path, report: dict[str, Any]) -> None:
    import json

    (out / "tune.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        f"# Tune search: {report['algo']} on {report['task']}",
        "",
        "| trial | score | imagined | real | config | error |",
        "|---|---|---|---|---|---|",
    ]
    for trial in sorted(report["trials"], key=lambda t: -(t["score"] if t["score"] is not None else -np.inf)):
        real = trial.get("real_return")
        lines.append(
            f"| {trial['trial']} | {_fmt(trial['score'])} | {_fmt(trial['imagined_return'])} | "
            f"{_fmt(real['mean']) if real else '—'} | {trial['config']} | {trial['error'] or ''} |"
        )
    lines += ["", f"Chosen: trial {report['chosen']} → `{report['best_agent']}`."]
    if report["metrics"]:
        lines.append(
            "Agreement of the validated trials: "
            + ", ".join(f"{k} {v:.3f}" for k, v in report["metrics"].items())
        )
    (out / "tune.md").write_text("\n".join(lines) + "\n")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
