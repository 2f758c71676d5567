"""Policy zoos for the ranking study: checkpoints of several SB3 algorithms across training on the real
task, so the policies range from random-like to expert.

Each checkpoint is cached under ``experiments/results/zoo/<task>/<algo>_<steps>_steps.zip``; a second
call returns the cached files. ``--smoke`` trains two checkpoints of each algorithm for a few hundred
steps, cached apart (:func:`common.results_dir`).

    python experiments/zoo.py --task pendulum [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
from common import results_dir, smoke, start_smoke
from experts import RECIPES as EXPERT_RECIPES
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env

from imaginarium.agents.sb3 import silent_logger
from imaginarium.envs.suite import get_task

ALGORITHMS = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3}
ON_POLICY_ENVS = 8

#: per task: (algorithm, total real steps, steps between checkpoints, keyword arguments)
RECIPES: dict[str, list[tuple[str, int, int, dict]]] = {
    "cartpole": [
        ("ppo", 60_000, 5_000, EXPERT_RECIPES["cartpole"][2]),  # the expert's own settings
        ("a2c", 60_000, 10_000, {}),
    ],
    "pendulum": [
        ("sac", 12_000, 1_500, {"learning_rate": 1e-3}),
        ("td3", 12_000, 2_000, {"learning_rate": 1e-3}),
    ],
    "reacher": [
        ("sac", 20_000, 2_500, {"learning_rate": 1e-3}),
        ("td3", 20_000, 4_000, {"learning_rate": 1e-3}),
    ],
    "hopper": [
        ("sac", 30_000, 3_000, {"learning_rate": 1e-3, "learning_starts": 5_000}),
        ("td3", 30_000, 6_000, {"learning_rate": 1e-3, "learning_starts": 5_000}),
    ],
}


def recipes(task_name: str) -> list[tuple[str, int, int, dict]]:
    """The task's recipes, or in a smoke run two checkpoints of each: one rollout apart on policy (8 envs
    × ``n_steps``), 100 steps apart off policy with learning starting at the first."""
    if not smoke():
        return RECIPES[task_name]
    cut = []
    for algorithm, _, _, kwargs in RECIPES[task_name]:
        if algorithm in ("ppo", "a2c"):
            every = ON_POLICY_ENVS * kwargs.get("n_steps", 5)
        else:
            every, kwargs = 100, {**kwargs, "learning_starts": 100}
        cut.append((algorithm, 2 * every, every, kwargs))
    return cut


def zoo(task_name: str, seed: int = 0) -> list[Path]:
    """The checkpoints of ``task_name``'s zoo, training whatever is not cached yet (under
    :func:`common.results_dir`, wherever the script runs from)."""
    task = get_task(task_name)
    folder = results_dir() / "zoo" / task.name
    paths: list[Path] = []
    for algorithm, steps, every, kwargs in recipes(task.name):
        expected = [folder / f"{algorithm}_{step}_steps.zip" for step in range(every, steps + 1, every)]
        if not all(path.exists() for path in expected):
            started = time.perf_counter()
            on_policy = algorithm in ("ppo", "a2c")
            env = make_vec_env(task.env_id, n_envs=ON_POLICY_ENVS if on_policy else 1, seed=seed)
            agent = ALGORITHMS[algorithm]("MlpPolicy", env, seed=seed, verbose=0, **kwargs)
            agent.set_logger(silent_logger())
            calls_between = every // (ON_POLICY_ENVS if on_policy else 1)
            agent.learn(steps, callback=CheckpointCallback(calls_between, str(folder), name_prefix=algorithm))
            print(f"{task.name}: {algorithm} {steps} steps in {time.perf_counter() - started:.0f} s")
        paths += [path for path in expected if path.exists()]
    return paths


#: action noise (× half the action range) of the graded zoo's rungs
NOISE_LADDER = (0.0, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)

#: with discrete actions: the share of steps whose action is drawn at random instead
EPSILON_LADDER = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def zoo_specs(task_name: str, kind: str = "checkpoints", seed: int = 0) -> list[str]:
    """The policy specs of a ranked zoo: ``checkpoints`` (:func:`zoo`, then the random policy) or
    ``graded`` (:func:`graded_zoo`)."""
    if kind == "graded":
        return graded_zoo(task_name, seed)
    return [str(path) for path in zoo(task_name, seed)] + ["random"]


def graded_zoo(task_name: str, seed: int = 0) -> list[str]:
    """Policy specs spread evenly in quality: the first algorithm's last checkpoint under growing action
    noise (:data:`NOISE_LADDER`, or :data:`EPSILON_LADDER` for discrete actions), and a random policy.
    A zoo of checkpoints holds many near-experts whose real returns tie within their noise (on pendulum
    9 of 15 lie within -108..-143), which a ranking can only order at random; on pendulum this ladder's
    real returns (10 episodes each) run -108, -183 (noise 0.75), -280 (1), -418 (1.25), -552 (1.5),
    -716 (2), -878 (3), then random -1118."""
    task = get_task(task_name)
    first_algorithm = RECIPES[task.name][0][0]
    best = [path for path in zoo(task_name, seed) if path.name.startswith(f"{first_algorithm}_")][-1]
    discrete = isinstance(task.action_space, gym.spaces.Discrete)
    ladder = EPSILON_LADDER if discrete else NOISE_LADDER
    return [f"sb3:{best}" + (f"@noise={noise}" if noise else "") for noise in ladder] + ["random"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(RECIPES))
    parser.add_argument("--smoke", action="store_true", help="two checkpoints of each, cached apart")
    arguments = parser.parse_args()
    if arguments.smoke:
        start_smoke()
    for path in zoo(arguments.task):
        print(path)
