"""Ranking speed (issue #6): 20 policies × 64 starts × 200 imagined steps on Ray with 1 and 2 workers,
beside evaluating the same policies for the same number of real episodes.

Policies: the pendulum zoo of ``experiments/zoo.py`` (14 checkpoints), the random policy, and the
best checkpoint with five levels of action noise. The model is the pendulum ensemble of
``experiments/fidelity_study.py`` (made if missing). Times are wall-clock of the whole call, Ray
start-up included (measured on its own too).

    python experiments/bench_rank.py [--starts 64] [--horizon 200]
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from common import machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import model_for
from zoo import zoo

from imaginarium.agents.policies import load_policy
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.ranking import rank_policies


@dataclass(frozen=True)
class Config:
    starts: int = 64
    horizon: int = 200
    out: str = "experiments/results/bench_rank.json"


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    model = model_for("pendulum", StudyConfig())
    checkpoints = [str(path) for path in zoo("pendulum")]
    best = next(path for path in checkpoints if path.endswith("sac_12000_steps.zip"))
    policies = checkpoints + ["random"] + [f"sb3:{best}@noise={noise}" for noise in (0.1, 0.3, 0.5, 0.7, 0.9)]
    policies = policies[:20]
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.shutdown()
    ray_startup = time.perf_counter() - started

    timings = {}
    results = {}
    for workers in (1, 2):
        started = time.perf_counter()
        results[workers] = rank_policies(
            model, policies, starts=config.starts, horizon=config.horizon, workers=workers, progress=False
        )
        timings[workers] = time.perf_counter() - started
        print(f"imagined, {workers} Ray worker(s): {timings[workers]:.1f} s")
    same = [e["imagined_return"] for e in results[1]["policies"]] == [
        e["imagined_return"] for e in results[2]["policies"]
    ]

    task = get_task("pendulum")
    started = time.perf_counter()
    for source in policies:
        policy = load_policy(source, task.observation_space, task.action_space)
        real_rollouts(task, policy, config.starts, seed=0, max_episode_steps=config.horizon)
    real_seconds = time.perf_counter() - started
    print(
        f"real, the same {len(policies)} policies × {config.starts} episodes, one process: {real_seconds:.1f} s"
    )
    figures = {
        "policies": len(policies),
        "starts": config.starts,
        "horizon": config.horizon,
        "imagined_seconds_1_worker": timings[1],
        "imagined_seconds_2_workers": timings[2],
        "speedup_2_over_1": timings[1] / timings[2],
        "ray_startup_seconds": ray_startup,
        "real_seconds": real_seconds,
        "same_results_1_and_2_workers": same,
        "imagined_steps": len(policies) * config.starts * config.horizon,
    }
    print(f"speed-up of 2 workers over 1: {figures['speedup_2_over_1']:.2f}; same results: {same}")
    write_report(config.out, {"benchmark": "rank", "config": asdict(config), "machine": machine(), **figures})


if __name__ == "__main__":
    main()
