"""Collection speed: `imaginarium collect` against stepping the bare Gymnasium env with the same policy.

Issue #2 asks that collecting 50k Pendulum steps runs at >= 70% of the bare env's speed. The bare
loop is the plainest thing a user could write: ``gym.make`` the task, call the *same* policy object
on one observation per step, reset on episode end, store nothing. Our figure includes everything
`collect` does: batched acting over env copies, success labels, and writing the Minari HDF5 file.

    python experiments/bench_collect.py [--steps 50000] [--repeats 3] [--out experiments/results/bench_collect.json]
    python experiments/bench_collect.py --smoke  # a few hundred steps: does it still run?
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from common import machine, parse_config, write_report
from stable_baselines3 import SAC

from imaginarium.collect import collect
from imaginarium.envs.suite import get_task
from imaginarium.policy import load_policy


@dataclass(frozen=True)
class Config:
    task: str = "pendulum"
    steps: int = 50_000
    repeats: int = 3
    num_envs: int = 8
    seed: int = 0
    out: str = "experiments/results/bench_collect.json"
    SMOKE: ClassVar[dict] = {"steps": 200, "repeats": 1, "num_envs": 2}


def bare_steps_per_second(task_name: str, policy_spec: str, steps: int, seed: int) -> float:
    """Step the plain env with the policy called on one observation at a time."""
    task = get_task(task_name)
    env = task.make()
    policy = load_policy(policy_spec, *task.spaces, seed=seed)
    observation, _ = env.reset(seed=seed)
    policy.reset(np.array([0]))
    started = time.perf_counter()
    for _ in range(steps):
        action = policy.act(observation[None])[0]
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
            policy.reset(np.array([0]))
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def collect_steps_per_second(config: Config, policy_spec: str, folder: Path) -> float:
    """Run the real collector (writing the dataset) and return stored steps per wall-clock second."""
    out = folder / "dataset"
    started = time.perf_counter()
    result = collect(
        config.task,
        out,
        policy=policy_spec,
        steps=config.steps,
        seed=config.seed,
        num_envs=config.num_envs,
        progress=False,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(out)
    return result.steps / elapsed


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        agent_path = folder / "sac.zip"
        SAC("MlpPolicy", get_task(config.task).env_id, seed=config.seed).save(agent_path)
        policies = {"random": "random", "sb3-sac-noisy": f"sb3:{agent_path}@noise=0.2"}
        figures = {}
        for name, spec in policies.items():
            bare = [
                bare_steps_per_second(config.task, spec, config.steps, config.seed)
                for _ in range(config.repeats)
            ]
            ours = [collect_steps_per_second(config, spec, folder) for _ in range(config.repeats)]
            figures[name] = {
                "bare_env_steps_per_s": float(np.median(bare)),
                "collect_steps_per_s": float(np.median(ours)),
                "ratio": float(np.median(ours) / np.median(bare)),
                "bare_runs": bare,
                "collect_runs": ours,
            }
            print(
                f"{config.task} {name:>14}: bare env {figures[name]['bare_env_steps_per_s']:>9,.0f} steps/s   "
                f"collect {figures[name]['collect_steps_per_s']:>9,.0f} steps/s   ratio {figures[name]['ratio']:.2f}"
            )

    report = {
        "benchmark": "collect",
        "config": asdict(config),
        "machine": machine(),
        "figures": figures,
        "threshold": {"ratio_at_least": 0.7, "met": all(f["ratio"] >= 0.7 for f in figures.values())},
    }
    write_report(config.out, report)


if __name__ == "__main__":
    main()
