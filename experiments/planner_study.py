"""The planner on data that does not hold the expert: its real return beside agents trained in the same
model and the policy that logged the data, and its cost per decision.

For each task and dataset kind (:mod:`offline_datasets`), an ensemble is trained on the dataset; then
on the real task, with the same episodes and seeds:

- ``plan`` — the planning policy ``plan:MODEL`` at its default settings (plus ``--planner`` options);
- ``sb3`` — SAC (PPO for discrete actions) trained ``agent_steps`` imagined steps in the same model;
- ``behaviour`` — the medium agent that logged the data (``medium`` and ``medium-replay``);

with returns normalised as D4RL does (0 random, 1 expert), and the planner's decisions per second for
one env and for 64 envs.

    python experiments/planner_study.py --tasks pendulum,cartpole --kinds medium
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from common import calls_per_second, machine, parse_config, results_dir, write_report
from offline_datasets import Config as DatasetConfig
from offline_datasets import dataset, folder, normalised

from imaginarium.agents.sb3 import real_return, train_in_imagination
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.policy import load_policy
from imaginarium.run.pipeline import collect_train_evaluate


@dataclass(frozen=True)
class Config:
    tasks: str = "pendulum,cartpole,InvertedPendulum-v5"
    kinds: str = "medium,medium-replay"
    #: real episodes per agent
    episodes: int = 10
    #: world-model training steps (early stopping may end it sooner)
    model_steps: int = 20_000
    #: imagined steps of the SB3 agent trained in the model (0 skips it)
    agent_steps: int = 30_000
    #: planner options over its defaults, ``key=value,...`` (e.g. ``horizon=20,method=cem``)
    planner: str = ""
    #: seconds each decision rate is timed for
    speed_seconds: float = 5.0
    seed: int = 0
    out: str = "experiments/results/planner_study.json"
    SMOKE: ClassVar[dict] = {
        "tasks": "pendulum",
        "kinds": "medium",
        "episodes": 1,
        "model_steps": 20,
        "agent_steps": 64,
        "planner": "horizon=3,samples=16",
        "speed_seconds": 0.2,
    }


def study(task_name: str, kind: str, config: Config) -> dict[str, Any]:
    task = get_task(task_name)
    data = dataset(task_name, kind, _dataset_config())
    work = results_dir() / "planner" / task.name / kind
    model = work / "ensemble"
    collect_train_evaluate(task, data, model, train_config={"steps": config.model_steps, "seed": config.seed})
    result: dict[str, Any] = {"dataset": str(data)}
    spec = f"plan:{model}" + (f"@{config.planner}" if config.planner else "")
    planner = load_policy(spec, task.observation_space, task.action_space, seed=config.seed)
    started = time.perf_counter()
    outcome = real_rollouts(task, planner, config.episodes, seed=1000)
    result["plan"] = _scored(task_name, outcome.return_, time.perf_counter() - started)
    result["plan"]["success"] = outcome.success
    result["plan"]["length"] = outcome.length
    result["plan"]["settings"] = asdict(planner.config)
    result["plan"]["decisions_per_second"] = {
        str(count): _decision_rate(planner, task.observation_space, count, config.speed_seconds)
        for count in (1, 64)
    }
    if config.agent_steps > 0:
        algo = "ppo" if isinstance(task.action_space, gym.spaces.Discrete) else "sac"
        agent = work / f"{algo}.zip"
        if not agent.exists():
            train_in_imagination(model, algo, config.agent_steps, agent, seed=config.seed, overwrite=True)
        result["sb3"] = _scored(task_name, real_return(agent, task, episodes=config.episodes, seed=1000), 0.0)
        result["sb3"]["algorithm"] = algo
    medium = folder(task_name) / "medium_agent.json"
    if kind in ("medium", "medium-replay") and medium.exists():
        behaviour = json.loads(medium.read_text())
        result["behaviour"] = {"return": behaviour["return"], "normalised": behaviour["normalised"]}
    trained = [result[name]["mean"] for name in ("sb3",) if name in result]
    result["plan_at_least_trained_agents"] = bool(not trained or result["plan"]["mean"] >= max(trained))
    print(f"{task.name} {kind}: {json.dumps({k: v for k, v in result.items() if k != 'dataset'})}")
    return result


def _scored(task_name: str, estimate: Any, seconds: float) -> dict[str, Any]:
    values = estimate if isinstance(estimate, dict) else asdict(estimate)
    return {**values, "normalised": normalised(task_name, values["mean"]), "seconds": seconds}


def _decision_rate(planner: Any, space: gym.Space, count: int, seconds: float) -> float:
    observations = np.stack([space.sample() for _ in range(count)]).astype(np.float32)
    planner.reset(np.arange(count))
    return count * calls_per_second(lambda: planner.act(observations), seconds, warmup=1)


def _dataset_config() -> DatasetConfig:
    from common import default_config

    return default_config(DatasetConfig)


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "results": {}}
    for task in filter(None, config.tasks.split(",")):
        for kind in filter(None, config.kinds.split(",")):
            report["results"][f"{task}/{kind}"] = study(task, kind, config)
            write_report(config.out, report)  # each pair kept as it finishes
    results = report["results"].values()
    report["plan_at_least_trained_agents"] = (
        f"{sum(r['plan_at_least_trained_agents'] for r in results)}/{len(results)}"
    )
    write_report(config.out, report)
    print(
        f"planner >= trained-in-model agents on {report['plan_at_least_trained_agents']} (task, dataset) pairs"
    )


if __name__ == "__main__":
    main()
