"""The offline-RL peers (d3rlpy) on our datasets: their real return beside the planner's, same episodes.

For each task and dataset kind (:mod:`offline_datasets`), d3rlpy's algorithms are trained on the logged
data at d3rlpy's defaults (IQL, CQL, TD3+BC and BC for continuous actions; DiscreteCQL and DiscreteBC for
discrete ones), then run on the real task with the episodes and seeds of :mod:`planner_study`
(``real_rollouts(..., seed=1000)``), returns normalised as D4RL does (0 random, 1 expert).

d3rlpy pins an older gymnasium and needs ``gym``, so it is no dependency of ours: it lives in its own
environment, made by ``make peers``, and this script runs there:

    .venv-peers/bin/python experiments/peers_study.py --tasks pendulum,cartpole --kinds medium
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from common import default_config, machine, parse_config, results_dir, write_report
from offline_datasets import Config as DatasetConfig
from offline_datasets import dataset, folder, normalised

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts

try:
    import d3rlpy
    import structlog
except ImportError as error:  # pragma: no cover - the message is the point
    raise SystemExit(
        f"peers_study needs d3rlpy ({error}); make its environment with `make peers` and run "
        "`.venv-peers/bin/python experiments/peers_study.py`"
    ) from error

# d3rlpy logs every model build and epoch at info level; the study prints one line per algorithm
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

#: d3rlpy's algorithms compared, by the kind of action space they handle
CONTINUOUS = {
    "IQL": d3rlpy.algos.IQLConfig,
    "CQL": d3rlpy.algos.CQLConfig,
    "TD3PlusBC": d3rlpy.algos.TD3PlusBCConfig,
    "BC": d3rlpy.algos.BCConfig,
}
DISCRETE = {
    "DiscreteCQL": d3rlpy.algos.DiscreteCQLConfig,
    "DiscreteBC": d3rlpy.algos.DiscreteBCConfig,
}


@dataclass(frozen=True)
class Config:
    tasks: str = "pendulum,cartpole,InvertedPendulum-v5"
    kinds: str = "medium,medium-replay"
    #: gradient steps of each algorithm (on 1 CPU thread, pendulum: BC ~5 ms a step, TD3+BC ~20,
    #: IQL ~32, CQL ~190; the discrete ones ~3-8)
    steps: int = 10_000
    #: the algorithms to train, by name ("" for every one that fits the task's action space)
    algorithms: str = ""
    #: real episodes per algorithm
    episodes: int = 10
    seed: int = 0
    out: str = "experiments/results/peers_study.json"
    SMOKE: ClassVar[dict] = {"tasks": "pendulum", "kinds": "medium", "steps": 50, "episodes": 1}


@dataclass(frozen=True)
class PeerResult:
    """One d3rlpy algorithm trained on one dataset and run on the real task.

    :param return_: mean real return with a bootstrap 95% CI (``mean``, ``ci_low``, ``ci_high``).
    :param normalised: the mean return, 0 random and 1 expert (:data:`offline_datasets.REFERENCE`).
    :param per_episode: each real episode's return, seeds ``1000 + i``.
    :param lengths: each real episode's steps.
    :param train_seconds: wall-clock seconds of the ``steps`` gradient steps.
    """

    algorithm: str
    steps: int
    seed: int
    return_: dict[str, float]
    normalised: float
    per_episode: list[float]
    lengths: list[int]
    train_seconds: float

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON, the return under ``return``."""
        values = asdict(self)
        values["return"] = values.pop("return_")
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> PeerResult:
        """The result :meth:`to_json` wrote."""
        values = dict(values)
        values["return_"] = values.pop("return")
        return cls(**values)


class D3rlpyPolicy:
    """A trained d3rlpy algorithm as our batched :class:`imaginarium.policy.Policy`: greedy actions
    (d3rlpy's ``predict``), no state between steps."""

    def __init__(self, algorithm: Any, discrete: bool) -> None:
        self.algorithm = algorithm
        self.discrete = discrete

    def act(self, observations: np.ndarray) -> np.ndarray:
        """``(N, *obs_shape)`` observations to ``(N,)`` int actions, or ``(N, act_dim)`` float ones."""
        actions = self.algorithm.predict(np.asarray(observations, dtype=np.float32))
        return actions.astype(np.int64) if self.discrete else actions

    def reset(self, slots: np.ndarray) -> None:
        """Nothing to reset: the policy is a function of the observation."""


def to_mdp_dataset(data: Dataset) -> d3rlpy.dataset.MDPDataset:
    """Our dataset as d3rlpy's, keeping every transition.

    d3rlpy reads an episode's flat rows as observations whose successors are the next row, so an episode
    that was cut by a time limit (not terminated) gets one more row, its last observation (with a
    repeated action and zero reward that no transition uses), flagged as the timeout; a terminated one
    ends at its terminal row, whose successor d3rlpy takes as absorbing.
    """
    observations, actions, rewards, terminals, timeouts = [], [], [], [], []
    for index in range(data.num_episodes):
        start, stop = data.episode_starts[index], data.episode_starts[index + 1]
        steps = stop - start
        ended = bool(data.terminated[stop - 1])
        observations.append(data.observations[start:stop])
        actions.append(data.actions[start:stop])
        rewards.append(data.rewards[start:stop])
        terminal = np.zeros(steps, dtype=np.float32)
        terminal[-1] = float(ended)
        terminals.append(terminal)
        timeouts.append(np.zeros(steps, dtype=np.float32))
        if not ended:
            observations.append(data.next_observations[stop - 1 : stop])
            actions.append(data.actions[stop - 1 : stop])
            rewards.append(np.zeros(1, dtype=np.float32))
            terminals.append(np.zeros(1, dtype=np.float32))
            timeouts.append(np.ones(1, dtype=np.float32))
    if data.discrete_actions:
        space, size = d3rlpy.constants.ActionSpace.DISCRETE, int(data.action_space.n)
    else:
        space, size = d3rlpy.constants.ActionSpace.CONTINUOUS, int(np.prod(data.action_space.shape))
    return d3rlpy.dataset.MDPDataset(
        observations=np.concatenate(observations).astype(np.float32),
        actions=np.concatenate(actions).astype(np.int64 if data.discrete_actions else np.float32),
        rewards=np.concatenate(rewards).astype(np.float32),
        terminals=np.concatenate(terminals),
        timeouts=np.concatenate(timeouts),
        action_space=space,
        action_size=size,
    )


def make_algorithm(name: str, action_space: gym.Space) -> Any:
    """d3rlpy's ``name`` at its defaults, on the CPU.

    The one departure: continuous actions are scaled from the task's action box to d3rlpy's ``[-1, 1]``
    (``MinMaxActionScaler``), since its policies squash with tanh and would otherwise never reach, say,
    pendulum's torques beyond 1.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return DISCRETE[name]().create(device="cpu:0")
    scaler = d3rlpy.preprocessing.MinMaxActionScaler(minimum=action_space.low, maximum=action_space.high)
    return CONTINUOUS[name](action_scaler=scaler).create(device="cpu:0")


def train_and_evaluate(
    task_name: str, name: str, dataset: d3rlpy.dataset.MDPDataset, config: Config, work: Path
) -> PeerResult:
    """Train d3rlpy's ``name`` for ``config.steps`` steps and run it on the real task, reusing the result
    (and model) cached in ``work`` when it was made with the same steps and seed."""
    cached = work / "result.json"
    if cached.exists():
        result = PeerResult.from_json(json.loads(cached.read_text()))
        if (result.steps, result.seed) == (config.steps, config.seed):
            return result
    task = get_task(task_name)
    d3rlpy.seed(config.seed)
    algorithm = make_algorithm(name, task.action_space)
    started = time.perf_counter()
    algorithm.fit(
        dataset,
        n_steps=config.steps,
        n_steps_per_epoch=config.steps,  # one epoch: d3rlpy runs n_steps // n_steps_per_epoch of them
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    train_seconds = time.perf_counter() - started
    policy = D3rlpyPolicy(algorithm, isinstance(task.action_space, gym.spaces.Discrete))
    outcome = real_rollouts(task, policy, config.episodes, seed=1000)
    result = PeerResult(
        algorithm=name,
        steps=config.steps,
        seed=config.seed,
        return_=dict(outcome.return_),
        normalised=normalised(task_name, outcome.return_["mean"]),
        per_episode=outcome.per_episode,
        lengths=outcome.lengths,
        train_seconds=train_seconds,
    )
    work.mkdir(parents=True, exist_ok=True)
    algorithm.save(str(work / "model.d3"))
    cached.write_text(json.dumps(result.to_json(), indent=2))
    return result


def study(task_name: str, kind: str, config: Config) -> dict[str, Any]:
    """Every peer of the task's action space on its ``kind`` dataset, and the best of them."""
    task = get_task(task_name)
    path = dataset(task_name, kind, default_config(DatasetConfig))
    data = load_dataset(path)
    mdp = to_mdp_dataset(data)
    names = DISCRETE if isinstance(task.action_space, gym.spaces.Discrete) else CONTINUOUS
    chosen = set(filter(None, config.algorithms.split(",")))
    if unknown := chosen - set(CONTINUOUS) - set(DISCRETE):
        raise SystemExit(
            f"unknown algorithms {sorted(unknown)}; choose from {sorted({*CONTINUOUS, *DISCRETE})}"
        )
    names = [name for name in names if not chosen or name in chosen]
    entry: dict[str, Any] = {"dataset": str(path), "algorithms": {}}
    for name in names:
        result = train_and_evaluate(
            task_name, name, mdp, config, results_dir() / "peers" / task.name / kind / name
        )
        entry["algorithms"][name] = result.to_json()
        interval = result.return_
        print(
            f"{task.name} {kind} {name}: return {interval['mean']:.1f} "
            f"[{interval['ci_low']:.1f}, {interval['ci_high']:.1f}], normalised {result.normalised:.3f}, "
            f"trained {result.train_seconds:.0f} s"
        )
    best = max(entry["algorithms"].values(), key=lambda result: result["return"]["mean"])
    entry["best"] = {
        "algorithm": best["algorithm"],
        "return": best["return"],
        "normalised": best["normalised"],
    }
    medium = folder(task_name) / "medium_agent.json"
    if kind in ("medium", "medium-replay") and medium.exists():
        behaviour = json.loads(medium.read_text())
        entry["behaviour"] = {"return": behaviour["return"], "normalised": behaviour["normalised"]}
    returns = data.episode_returns()
    entry["dataset_return"] = {
        "mean": float(returns.mean()),
        "normalised": normalised(task_name, returns.mean()),
    }
    return entry


def main() -> None:
    torch.set_num_threads(1)  # these machines are shared; one thread is also what the timings assume
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {
        "config": asdict(config),
        "machine": machine(),
        "d3rlpy": d3rlpy.__version__,
        "results": {},
    }
    for task in filter(None, config.tasks.split(",")):
        for kind in filter(None, config.kinds.split(",")):
            report["results"][f"{task}/{kind}"] = study(task, kind, config)
            write_report(config.out, report)  # each pair kept as it finishes
    for key, entry in report["results"].items():
        best = entry["best"]
        print(
            f"{key}: best {best['algorithm']}, return {best['return']['mean']:.1f} ({best['normalised']:.3f})"
        )


if __name__ == "__main__":
    main()
