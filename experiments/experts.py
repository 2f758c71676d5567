"""Trained Stable-Baselines3 agents on the real tasks, used to collect experience of varied quality.

Each is trained on the real environment with a fixed budget and cached under
``experiments/results/experts/<task>.zip``; a second call returns the cached file.

    python experiments/experts.py --task pendulum [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import results_dir, smoke, start_smoke
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env

from imaginarium.agents.sb3 import silent_logger
from imaginarium.envs.suite import get_task

#: algorithm, real environment steps, keyword arguments (RL-Zoo-like settings, shortened for a CPU)
RECIPES: dict[str, tuple[str, int, dict]] = {
    "cartpole": (
        "ppo",
        60_000,
        {
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "learning_rate": 1e-3,
        },
    ),
    "pendulum": ("sac", 12_000, {"learning_rate": 1e-3}),
    "mountaincar": ("sac", 30_000, {"learning_rate": 3e-4, "use_sde": True}),
    "reacher": ("sac", 20_000, {"learning_rate": 1e-3}),
    "pusher": ("sac", 30_000, {"learning_rate": 1e-3}),
    "hopper": ("sac", 30_000, {"learning_rate": 1e-3, "learning_starts": 5_000}),
    "halfcheetah": ("sac", 30_000, {"learning_rate": 1e-3, "learning_starts": 5_000}),
}

#: a smoke run's real steps: PPO's one rollout of 8 envs × 32 steps, SAC's learning starting halfway
SMOKE_STEPS = {"ppo": 256, "sac": 200}


def recipe(task_name: str) -> tuple[str, int, dict]:
    """The task's recipe, or in a smoke run (:func:`common.smoke`) the same cut to a few hundred steps."""
    algorithm, steps, kwargs = RECIPES[task_name]
    if not smoke():
        return algorithm, steps, kwargs
    if algorithm == "sac":
        kwargs = {**kwargs, "learning_starts": SMOKE_STEPS["sac"] // 2}
    return algorithm, SMOKE_STEPS[algorithm], kwargs


def expert(task_name: str, seed: int = 0) -> Path:
    """Path of a trained agent for ``task_name``, training it first if it is not cached (under
    :func:`common.results_dir`, wherever the script runs from)."""
    cache = results_dir() / "experts"
    path = cache / f"{task_name}.zip"
    if path.exists():
        return path
    task = get_task(task_name)
    algorithm, steps, kwargs = recipe(task.name)
    started = time.perf_counter()
    if algorithm == "ppo":
        env = make_vec_env(task.env_id, n_envs=8, seed=seed)
        agent = PPO("MlpPolicy", env, seed=seed, verbose=0, **kwargs)
    else:
        agent = SAC("MlpPolicy", task.make(), seed=seed, verbose=0, **kwargs)
    agent.set_logger(silent_logger())
    agent.learn(steps)
    cache.mkdir(parents=True, exist_ok=True)
    agent.save(path)
    print(
        f"trained {algorithm} on {task.name} for {steps} steps in {time.perf_counter() - started:.0f} s: "
        f"real return {real_return(agent, task_name, 1 if smoke() else 10):.1f}"
    )
    return path


def real_return(agent, task_name: str, episodes: int = 10, seed: int = 1000) -> float:
    """Mean undiscounted return of the deterministic agent on the real task."""
    env = get_task(task_name).make()
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            action, _ = agent.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(RECIPES))
    parser.add_argument("--smoke", action="store_true", help="a few hundred steps, cached apart")
    arguments = parser.parse_args()
    if arguments.smoke:
        start_smoke()
    print(expert(arguments.task))
