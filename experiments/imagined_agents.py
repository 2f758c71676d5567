"""Agents trained only inside the model, scored on the real task (issue #4).

Uses the world models of ``experiments/fidelity_study.py`` (50k real steps each; made if missing). For
each task the same SB3 algorithm is trained twice with the same number of agent steps: inside
``WAMImagined-v0`` and on the real environment; both are scored over 20 real episodes.

    python experiments/imagined_agents.py [--tasks cartpole,pendulum]
    python experiments/imagined_agents.py --smoke  # pendulum's SAC, 256 agent steps, 1 episode
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from common import default_config, machine, parse_config, write_report
from experts import RECIPES as EXPERT_RECIPES
from ranking_study import Config as StudyConfig
from ranking_study import model_for
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env

from imaginarium.agents.sb3 import imagined_return, real_return, silent_logger, train_in_imagination
from imaginarium.envs.suite import get_task

#: algorithm, agent steps, environments, SB3 keyword arguments (RL-Zoo-like, shortened for a CPU)
RECIPES: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    "cartpole": ("ppo", 100_000, 8, EXPERT_RECIPES["cartpole"][2]),
    "pendulum": ("sac", 16_000, 4, {"learning_rate": 1e-3, "gradient_steps": 4, "learning_starts": 1_000}),
}
THRESHOLDS = {"cartpole": 475.0, "pendulum": -200.0}


@dataclass(frozen=True)
class Config:
    tasks: str = "cartpole,pendulum"
    models: str = "experiments/results/fidelity"
    episodes: int = 20
    #: agent steps of each algorithm (0: its recipe's)
    steps: int = 0
    seed: int = 0
    out: str = "experiments/results/imagined_agents.json"
    SMOKE: ClassVar[dict] = {"tasks": "pendulum", "episodes": 1, "steps": 256}


def recipe(task: str, steps: int) -> tuple[str, int, int, dict[str, Any]]:
    """The task's recipe, with ``steps`` agent steps (learning starting by halfway) unless 0."""
    algo, default_steps, num_envs, kwargs = RECIPES[task]
    if not steps:
        return algo, default_steps, num_envs, kwargs
    if "learning_starts" in kwargs:
        kwargs = {**kwargs, "learning_starts": min(kwargs["learning_starts"], steps // 2)}
    return algo, steps, num_envs, kwargs


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "tasks": {}}
    for task in config.tasks.split(","):
        algo, steps, num_envs, kwargs = recipe(task, config.steps)
        model_dir = model_for(task, replace(default_config(StudyConfig), workdir=config.models))
        folder = Path(config.out).parent / "imagined_agents"
        started = time.perf_counter()
        imagined_agent = train_in_imagination(
            model_dir,
            algo,
            steps,
            folder / f"{task}_{algo}_imagined.zip",
            num_envs=num_envs,
            seed=config.seed,
            algo_kwargs=kwargs,
        )
        imagined_seconds = time.perf_counter() - started
        started = time.perf_counter()
        agent_class = {"ppo": PPO, "sac": SAC}[algo]
        real_env = make_vec_env(get_task(task).env_id, n_envs=num_envs, seed=config.seed)
        real_agent = agent_class("MlpPolicy", real_env, seed=config.seed, verbose=0, **kwargs)
        real_agent.set_logger(silent_logger())
        real_agent.learn(steps)
        real_agent.save(folder / f"{task}_{algo}_real.zip")
        real_seconds = time.perf_counter() - started
        entry = {
            "algorithm": algo,
            "agent_steps": steps,
            "trained_in_model": {
                "real_return": real_return(imagined_agent, task, config.episodes),
                "imagined_return": imagined_return(imagined_agent, model_dir, config.episodes),
                "seconds": imagined_seconds,
            },
            "trained_on_real_env": {
                "real_return": real_return(folder / f"{task}_{algo}_real.zip", task, config.episodes),
                "seconds": real_seconds,
            },
            "threshold": THRESHOLDS[task],
        }
        entry["met"] = entry["trained_in_model"]["real_return"]["mean"] >= THRESHOLDS[task]
        report["tasks"][task] = entry
        print(
            f"{task} {algo} {steps} steps: in model -> real {entry['trained_in_model']['real_return']['mean']:.1f} "
            f"(imagined {entry['trained_in_model']['imagined_return']['mean']:.1f}); on real env -> "
            f"{entry['trained_on_real_env']['real_return']['mean']:.1f}; threshold {THRESHOLDS[task]} met: {entry['met']}"
        )
        write_report(config.out, report)


if __name__ == "__main__":
    main()
