"""Dreamer online: act on the real task, add the experience, refit the world model, learn in
imagination, repeat. The loop strings collection, model training and the Dreamer learner together,
so it lives with the other pipelines rather than in the agent.

    from imaginarium.run.online import dream_online
    result = dream_online("pendulum", "agents/dreamer-online", {"real_steps": 20_000})
    result.curve[-1]["mean"]  # the last real return
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imaginarium.agents.dreamer import (
    DreamerConfig,
    DreamerLearner,
    DreamerPolicy,
    check_agent_folder,
    learn,
    start_sampler,
)
from imaginarium.collect import collect
from imaginarium.config import check_number, config_from_dict
from imaginarium.dataset import load_dataset, write_dataset
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.models import load_world_model
from imaginarium.models.train import train_world_model
from imaginarium.outputs import atomic_write_bytes
from imaginarium.progress import Progress, tracking


@dataclass(frozen=True)
class OnlineConfig:
    """The real-world loop of :func:`dream_online`."""

    real_steps: int = 20_000
    initial_steps: int = 2_000
    round_steps: int = 2_000
    model_preset: str = "s"
    model_steps: int = 1_000
    updates_per_round: int = 150
    eval_episodes: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse step and episode counts that mean nothing (zero, negative) where the config is built."""
        counts = (
            "real_steps",
            "initial_steps",
            "round_steps",
            "model_steps",
            "updates_per_round",
            "eval_episodes",
        )
        for name in counts:
            check_number(getattr(self, name), name, at_least=1, integer=True, where="online config")
        check_number(self.seed, "seed", at_least=0, integer=True, where="online config")


@dataclass(frozen=True)
class OnlineResult:
    """What :func:`dream_online` did.

    :param curve: one point a round: ``real_steps`` used, ``updates`` done, and the deterministic
        actor's real return (``mean``, ``ci_low``, ``ci_high``), as ``curve.json`` holds it.
    """

    curve: list[dict[str, float]]
    updates: int
    seconds: float


def dream_online(
    task: str,
    out: str | Path,
    online: OnlineConfig | dict[str, Any] | None = None,
    config: DreamerConfig | dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | Progress = True,
) -> OnlineResult:
    """The full loop, from scratch: act on the real task, add the experience, refit the world model,
    learn in imagination, repeat until ``real_steps`` real steps were used.

    Writes the agent (with its model) to ``out``, the growing dataset to ``out/data``, and the learning
    curve (real steps against the deterministic actor's real return) to ``out/curve.json`` and
    ``out/curve.png``.
    """
    if not isinstance(online, OnlineConfig):
        online = config_from_dict(OnlineConfig, online or {}, where="online config")
    if not isinstance(config, DreamerConfig):
        config = config_from_dict(DreamerConfig, config or {}, where="dreamer config")
    resolved = get_task(task)
    out = check_agent_folder(Path(out), overwrite)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.manual_seed(online.seed)
    data_dir = out / "data"
    collect(
        resolved, data_dir, "random", steps=online.initial_steps, seed=online.seed, num_envs=1, progress=False
    )
    learner: DreamerLearner | None = None
    curve: list[dict[str, float]] = []
    info = {"task": resolved.name, "env_id": resolved.env_id}
    started = time.perf_counter()
    with tracking(progress, "real steps", online.real_steps) as bar:
        for round_index in range(10_000):
            data = load_dataset(data_dir)
            train_world_model(
                data, out / "model", preset=online.model_preset, overwrite=True, progress=False,
                config={"steps": online.model_steps, "seed": online.seed + round_index},
            )  # fmt: skip
            model = load_world_model(out / "model")
            if learner is None:
                learner = DreamerLearner(model, config)
            else:
                learner.use_model(model)
            sampler = start_sampler(model, data, config)
            info.update(model_family=model.family, real_steps=data.num_steps)
            learn(learner, sampler, out, info, False, None, total=learner.updates + online.updates_per_round)
            real = real_rollouts(
                resolved, DreamerPolicy(out), online.eval_episodes, seed=10_000 + round_index
            )
            curve.append({"real_steps": data.num_steps, "updates": learner.updates, **real.return_})
            _write_curve(out, curve, resolved.name)
            bar.update(
                min(data.num_steps, online.real_steps),
                f"round {round_index + 1}: {learner.updates} updates, real return {real.return_['mean']:.1f}",
            )
            if data.num_steps >= online.real_steps:
                break
            explorer = DreamerPolicy(out, deterministic=False)
            fresh = collect(
                resolved, out / "fresh", explorer, steps=online.round_steps, seed=online.seed + 1 + round_index,
                num_envs=1, overwrite=True, progress=False,
            )  # fmt: skip
            added = load_dataset(fresh.path)
            episodes = [data.episode(i) for i in range(data.num_episodes)]
            episodes += [added.episode(i) for i in range(added.num_episodes)]
            write_dataset(data_dir, episodes, resolved, overwrite=True)
            shutil.rmtree(out / "fresh", ignore_errors=True)
    return OnlineResult(
        curve=curve, updates=learner.updates if learner else 0, seconds=time.perf_counter() - started
    )


def _write_curve(out: Path, curve: list[dict[str, float]], task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = json.dumps({"task": task, "curve": curve}, indent=2)
    atomic_write_bytes(out / "curve.json", lambda handle: handle.write(text.encode()))
    figure, axis = plt.subplots(figsize=(6, 4))
    steps = [point["real_steps"] for point in curve]
    axis.plot(steps, [point["mean"] for point in curve], marker="o")
    axis.fill_between(steps, [p["ci_low"] for p in curve], [p["ci_high"] for p in curve], alpha=0.2)
    axis.set_xlabel("real environment steps")
    axis.set_ylabel("real return (deterministic actor)")
    axis.set_title(f"Dreamer online on {task}")
    axis.grid(alpha=0.3)
    figure.savefig(out / "curve.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
