"""Ray Tune policy search inside the world model: trials are cheap in imagination, and only the best
few are then checked on the real task.

Each trial trains an agent inside the model (a Stable-Baselines3 PPO or SAC agent in ``WAMImagined-v0``,
or a Dreamer actor-critic on imagined latent trajectories) and reports, after every chunk of
training, its imagined return (rolled from the same real start states as a ranking, optionally less a
penalty on the spread across ensemble members); ASHA stops weak trials early. The best ``top_k``
trials are then ranked inside the model and on the real task (:func:`rank_policies`, on Ray), and the
validated agent with the best real return is saved as ``best_agent.zip`` (``best_agent/`` for
Dreamer)::

    result = run_search("models/pendulum", "sac", samples=16, out="search/pendulum")
    result.best_agent, result.metrics

For a ``Tuner`` of your own, :func:`imagined_trainable` is the trainable and :func:`search_space` the
validated parameter space (add ``"setup": TrialSetup(...)`` to it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch

from imaginarium.agents.dreamer import STATE_FILE, DreamerPolicy, train_dreamer
from imaginarium.agents.sb3 import silent_logger
from imaginarium.config import load_yaml
from imaginarium.envs.sb3 import imagined_vec_env
from imaginarium.errors import ImaginariumError, SearchInterrupted
from imaginarium.evaluation import Interval, imagined_rollouts, start_states
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import read_card, spaces_from_card
from imaginarium.models.starts import model_starts
from imaginarium.outputs import atomic_write_text, check_output, check_writable
from imaginarium.policy import SB3Policy
from imaginarium.run.cluster import keep_local_ray_on_loopback, start_ray
from imaginarium.run.rank import rank_policies

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
    "dreamer": {
        "actor_lr": {"loguniform": [1e-4, 1e-3]},
        "critic_lr": {"loguniform": [1e-4, 1e-3]},
        "entropy": {"loguniform": [1e-5, 1e-2]},
        "horizon": {"choice": [10, 15, 20]},
    },
}

#: how much training a trial gets when none is asked: agent steps (PPO, SAC) or updates (Dreamer)
DEFAULT_STEPS = {"ppo": 20_000, "sac": 20_000, "dreamer": 600}
#: what a search writes into its folder: a new search there needs overwrite
SEARCH_FILES = ("search", "tune.json", "tune.md", "best_agent.zip", "best_agent")

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
    "actor_lr": (1e-8, 1.0, False),
    "critic_lr": (1e-8, 1.0, False),
    "entropy": (0.0, 1.0, False),
    "horizon": (1, 1000, True),
    "lambda_": (0.0, 1.0, False),
    "hidden": (1, 8192, True),
    "layers": (1, 16, True),
    "return_decay": (0.0, 1.0, False),
    "slow_critic_decay": (0.0, 1.0, False),
}
INTEGERS = {name for name, (_, _, integer) in LIMITS.items() if integer}
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
    "dreamer": {
        "actor_lr",
        "critic_lr",
        "entropy",
        "horizon",
        "gamma",
        "lambda_",
        "batch_size",
        "hidden",
        "layers",
        "return_decay",
        "slow_critic_decay",
    },
}
DISTRIBUTIONS = {"loguniform": 2, "uniform": 2, "randint": 2, "choice": None}


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: the model, the algorithm, and how long and how it is scored.

    ``steps`` counts agent steps for PPO and SAC, updates for Dreamer."""

    model: str
    algo: str
    steps: int = 20_000
    reports: int = 5
    num_envs: int = 4
    starts: int = 32
    uncertainty_penalty: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # trials run in their own working folders, so a relative model path is fixed here
        object.__setattr__(self, "model", str(Path(self.model).resolve()))


@dataclass
class TrialRecord:
    """One trial of a search: its configuration, how far it got, and its real check if it was among
    the best."""

    trial: int
    #: the sampled hyperparameters
    config: dict[str, Any]
    #: the first line of the trial's error, None when it ended well
    error: str | None
    #: the last imagined return reported, less the uncertainty penalty: what the search maximises
    score: float | None
    imagined_return: float | None
    agent_steps: int | None
    #: the agent steps the trial resumed from after a restore
    resumed_from: int | None
    #: the kept copy of the trial's agent, None when it has none
    agent: str | None = None
    #: whether the trial was among the best ``top_k`` ranked on the real task
    checked: bool = False
    #: its real return, when checked
    real_return: Interval | None = None

    def to_json(self) -> dict[str, Any]:
        """The trial's entry in ``tune.json`` (``real_return`` only for the trials checked)."""
        entry = {item.name: getattr(self, item.name) for item in fields(self)}
        del entry["checked"], entry["real_return"]
        if self.checked:
            entry["real_return"] = self.real_return
        return entry


@dataclass
class SearchResult:
    """What :func:`run_search` found: every trial, the ones validated on the real task, and the agent chosen.

    :param validated: trials whose real return was measured, by number.
    :param first_by_imagined_score: the trial the imagined score alone would choose.
    :param chosen: the trial whose agent was kept: the best real return among the validated, else the
        best imagined score.
    :param metrics: agreement of imagined and real returns over the validated trials (None with fewer
        than two that differ).
    """

    algo: str
    task: str | None
    samples: int
    setup: TrialSetup
    seconds: float
    trials: list[TrialRecord]
    validated: list[int]
    first_by_imagined_score: int | None
    chosen: int | None
    metrics: dict[str, float] | None
    best_agent: str | None

    @property
    def failed_trials(self) -> list[TrialRecord]:
        """The trials that ended with an error."""
        return [trial for trial in self.trials if trial.error is not None]

    @property
    def validated_trials(self) -> list[TrialRecord]:
        """The trials whose real return was measured."""
        return [trial for trial in self.trials if trial.trial in self.validated]

    def trial(self, number: int) -> TrialRecord:
        """The trial numbered ``number``."""
        return next(trial for trial in self.trials if trial.trial == number)

    def to_json(self) -> dict[str, Any]:
        """What ``tune.json`` holds."""
        return {
            "algo": self.algo,
            "task": self.task,
            "samples": self.samples,
            "setup": asdict(self.setup),
            "seconds": self.seconds,
            "trials": [trial.to_json() for trial in self.trials],
            "validated": self.validated,
            "first_by_imagined_score": self.first_by_imagined_score,
            "chosen": self.chosen,
            "metrics": self.metrics,
            "best_agent": self.best_agent,
        }


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
    ``config`` as its hyperparameters, reporting the imagined score after each chunk of training.

    Each report carries a checkpoint of the agent, so a restored trial goes on from its last report
    (``resumed_from`` in the metrics says where)."""
    from ray import tune

    torch.set_num_threads(1)
    setup: TrialSetup = config["setup"]
    hyperparameters = {
        key: int(value) if key in INTEGERS else value for key, value in config.items() if key != "setup"
    }
    model = load_world_model(setup.model)
    starts = start_states(model_starts(model).inputs, setup.starts, setup.seed)
    horizon = int(model.card.get("max_episode_steps") or 1000)
    work = Path(tempfile.mkdtemp(prefix="imaginarium-trial-"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                shutil.copytree(folder, work, dirs_exist_ok=True)
        done = int((work / "steps").read_text()) if (work / "steps").is_file() else 0
        resumed_from = done
        trial_class = _DreamerTrial if setup.algo == "dreamer" else _SB3Trial
        trial = trial_class(setup, hyperparameters, work)
        chunk = max(1, setup.steps // setup.reports)
        while done < setup.steps:
            total = min(setup.steps, done + chunk)
            policy = trial.learn(total - done, total)
            done = total
            (work / "steps").write_text(str(done))
            rollouts = imagined_rollouts(model, policy, starts, horizon, seed=setup.seed)
            spread = rollouts.member_spread or 0.0
            metrics = {
                "imagined_return": rollouts.return_["mean"],
                "member_spread": spread,
                "score": rollouts.return_["mean"] - setup.uncertainty_penalty * spread,
                "agent_steps": done,
                "resumed_from": resumed_from,
            }
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _SB3Trial:
    """A Stable-Baselines3 agent learning in the imagined vector env; saved as ``agent.zip``."""

    def __init__(self, setup: TrialSetup, hyperparameters: dict[str, Any], work: Path) -> None:

        venv = imagined_vec_env(
            setup.model, num_envs=setup.num_envs, observation="decoded", track_uncertainty=False
        )
        agent_class = getattr(stable_baselines3, setup.algo.upper())
        self.path = work / "agent.zip"
        if self.path.is_file():
            self.agent = agent_class.load(self.path, env=venv)
        else:
            self.agent = agent_class("MlpPolicy", venv, seed=setup.seed, verbose=0, **hyperparameters)
        self.agent.set_logger(silent_logger())

    def learn(self, steps: int, total: int) -> Any:

        self.agent.learn(steps, reset_num_timesteps=False)
        self.agent.save(self.path)
        return SB3Policy.from_agent(self.agent)


class _DreamerTrial:
    """A Dreamer actor-critic learning on imagined latent trajectories; its folder is ``agent/``."""

    def __init__(self, setup: TrialSetup, hyperparameters: dict[str, Any], work: Path) -> None:
        self.setup, self.hyperparameters, self.folder = setup, hyperparameters, work / "agent"

    def learn(self, steps: int, total: int) -> Any:

        config = {
            **self.hyperparameters,
            "steps": total,
            "log_every": steps,
            "checkpoint_every": steps,
            "seed": self.setup.seed,
        }
        resume = (self.folder / STATE_FILE).is_file()
        train_dreamer(self.setup.model, self.folder, config, resume=resume, progress=False)
        return DreamerPolicy(self.folder)


def run_search(
    model: str | Path,
    algo: str,
    out: str | Path,
    samples: int = 16,
    steps: int | None = None,
    reports: int = 5,
    space: str | Path | dict[str, Any] | None = None,
    top_k: int = 3,
    real_episodes: int = 10,
    uncertainty_penalty: float = 0.0,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    seed: int = 0,
    callbacks: list[Any] | None = None,
    overwrite: bool = False,
    allow_code: bool = False,
) -> SearchResult:
    """Search ``samples`` configurations of ``algo`` in the model, then validate the best ``top_k``.

    Writes ``OUT/search`` (Tune's own experiment folder, which ``resume`` restores), ``OUT/tune.json``,
    ``OUT/tune.md``, and the chosen agent ``OUT/best_agent.zip`` (a folder, ``best_agent/``, for
    Dreamer). A trial that crashes is recorded with its error and the others go on.

    :param steps: training per trial: agent steps for PPO and SAC, updates for Dreamer
        (default :data:`DEFAULT_STEPS`).
    :param callbacks: Ray Tune callbacks (loggers, your own hooks) for the search; a resumed search
        keeps the ones it started with.
    :param overwrite: start afresh in an ``out`` that holds an earlier search (else refused).
    :param allow_code: needed with ``resume``: restoring unpickles the state Ray Tune saved in
        ``OUT/search`` (and the trials' agents), which can run code, so only a folder you trust.
    :raises SearchInterrupted: the search was stopped (Ctrl+C) before every trial ended; its state is
        saved, and ``resume=True`` goes on from there.
    """

    keep_local_ray_on_loopback(address)  # before the first import of Ray, below and in search_space
    # Only each trial's newest checkpoint is kept, which makes Tune snapshot the experiment at every
    # report (cheap on local disk); it would warn about that each time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    steps = DEFAULT_STEPS.get(algo, 1) if steps is None else steps
    if samples < 1 or top_k < 1 or steps < 1 or reports < 1:
        raise ImaginariumError("samples, top_k, steps and reports must be positive")
    param_space = search_space(algo, space)  # refused here, before Ray or any trial starts
    card = read_card(model)
    task = card.get("task")
    if algo == "sac" and not isinstance(spaces_from_card(card)[1], gym.spaces.Box):
        raise ImaginariumError(
            f"SAC needs continuous (Box) actions; the model at {str(model)!r} has discrete ones"
        )
    out = Path(out).resolve()
    if resume and not allow_code:
        raise ImaginariumError(
            f"resuming unpickles the search state Ray Tune saved in {str(out / 'search')!r}, which can run "
            "code: pass --allow-code (allow_code=True in Python) if you made that folder yourself"
        )
    if not resume:
        check_output(out, overwrite, files=SEARCH_FILES)
        shutil.rmtree(out / "search", ignore_errors=True)
    check_writable(out)
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
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[*(callbacks or []), _unfinished_tracker(out)],
                ),
            )
        (out / UNFINISHED_FILE).unlink(missing_ok=True)
        grid = tuner.fit()
        unfinished = (
            json.loads((out / UNFINISHED_FILE).read_text()) if (out / UNFINISHED_FILE).is_file() else []
        )
        if unfinished:
            raise SearchInterrupted(
                f"the search stopped with {len(unfinished)} of {len(grid)} trials unfinished; its state is "
                f"saved in {str(out / 'search')!r}: run it again with resume to go on (--resume --allow-code)"
            )
        trials = []
        for index, trial in enumerate(grid):
            figures = trial.metrics or {}
            record = TrialRecord(
                trial=index,
                config={key: value for key, value in trial.config.items() if key != "setup"},
                error=str(trial.error).splitlines()[0] if trial.error else None,
                score=figures.get("score"),
                imagined_return=figures.get("imagined_return"),
                agent_steps=figures.get("agent_steps"),
                resumed_from=figures.get("resumed_from"),
            )
            if trial.checkpoint is not None and not trial.error:
                with trial.checkpoint.as_directory() as folder:
                    record.agent = str(_keep_agent(Path(folder), out / "agents" / f"trial_{index}"))
            trials.append(record)
        scored = sorted((t for t in trials if t.agent and t.score is not None), key=lambda t: -t.score)
        best = scored[:top_k]
        validation = None
        if best and task:
            validation = rank_policies(
                model, [t.agent for t in best], starts=32, real_env=task, real_episodes=real_episodes,
                seed=seed, progress=False,
            )  # fmt: skip
            by_path = {entry.path: entry for entry in validation.policies}
            for record in best:
                checked = by_path.get(record.agent)
                record.checked = True
                record.real_return = checked.real_return if checked is not None else None
        validated = [t for t in best if t.real_return]
        chosen = (
            max(validated, key=lambda t: t.real_return["mean"]) if validated else (best[0] if best else None)
        )
        if chosen is not None:
            best_agent = _keep_agent(Path(chosen.agent), out / "best_agent")
    finally:
        if started_ray:
            ray.shutdown()
    result = SearchResult(
        algo=algo,
        task=task,
        samples=samples,
        setup=setup,
        seconds=time.perf_counter() - started,
        trials=trials,
        validated=[t.trial for t in validated],
        first_by_imagined_score=best[0].trial if best else None,
        chosen=chosen.trial if chosen else None,
        metrics=validation.metrics if validation else None,
        best_agent=str(best_agent) if chosen else None,
    )
    _write_reports(out, result)
    return result


UNFINISHED_FILE = "unfinished.json"


def _unfinished_tracker(out: Path) -> Any:
    """A Tune callback that keeps ``OUT/unfinished.json`` listing the trials not ended yet, after each
    step of the search. Tune marks the running trials of an interrupted search as ended when it cleans
    up, so this file is how an interruption is told from a finished search (also after a restore,
    which brings back an unpickled copy of the callback)."""

    from ray.tune import Callback
    from ray.tune.experiment import Trial

    class UnfinishedTrials(Callback):
        def __init__(self, path: Path) -> None:
            self.path, self.last = path, None

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            ended = (Trial.TERMINATED, Trial.ERROR)
            unfinished = [trial.trial_id for trial in trials if trial.status not in ended]
            if unfinished != self.last:
                self.path.write_text(json.dumps(unfinished))
                self.last = unfinished

    return UnfinishedTrials(out / UNFINISHED_FILE)


def _keep_agent(source: Path, destination: Path) -> Path:
    """Copy a trial's agent (``agent.zip`` or a Dreamer ``agent/`` folder, found in ``source`` or being
    ``source``) to ``destination`` plus its suffix; returns the copy's path."""
    if source.is_dir() and (source / "agent.zip").is_file():
        source = source / "agent.zip"
    elif source.is_dir() and (source / "agent").is_dir():
        source = source / "agent"
    if source.is_dir():
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("tb", "training_state.pt"))
        return destination
    destination = destination.with_suffix(".zip")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)
    return destination


def _write_reports(out: Path, result: SearchResult) -> None:
    atomic_write_text(out / "tune.json", json.dumps(result.to_json(), indent=2, default=str))
    lines = [
        f"# Tune search: {result.algo} on {result.task}",
        "",
        "| trial | score | imagined | real | config | error |",
        "|---|---|---|---|---|---|",
    ]
    for trial in sorted(result.trials, key=lambda t: -(t.score if t.score is not None else -np.inf)):
        real = trial.real_return
        lines.append(
            f"| {trial.trial} | {_fmt(trial.score)} | {_fmt(trial.imagined_return)} | "
            f"{_fmt(real['mean']) if real else '—'} | {trial.config} | {trial.error or ''} |"
        )
    lines += ["", f"Chosen: trial {result.chosen} → `{result.best_agent}`."]
    if result.metrics:
        lines.append(
            "Agreement of the validated trials: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        )
    atomic_write_text(out / "tune.md", "\n".join(lines) + "\n")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
