"""Ranking speed (issues #6, #9): 20 policies × 64 starts × 200 imagined steps on Ray with 1 and 2
workers, and as called with no Ray running and no workers given (in process at this size), beside
evaluating the same policies for the same number of real episodes in one process: whole episodes
(what evaluating on the real task means), and episodes cut at the same 200 steps.

Policies: the task's zoo of ``experiments/zoo.py`` (its checkpoints), the random policy, and the
last SAC checkpoint with levels of action noise, 20 in all. The model is the task's ensemble of
``experiments/ranking_study.py`` (made if missing). Times are wall-clock of the whole call, Ray
start-up included (measured on its own too).

    python experiments/bench_rank.py [--task hopper] [--starts 64] [--horizon 200]
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
from imaginarium.policy import forget_loaded_sb3_policies
from imaginarium.ranking import rank_policies


@dataclass(frozen=True)
class Config:
    task: str = "hopper"
    starts: int = 64
    horizon: int = 200
    out: str = "experiments/results/bench_rank.json"


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    model = model_for(config.task, StudyConfig())
    checkpoints = [str(path) for path in zoo(config.task)]
    sac = sorted((path for path in checkpoints if "sac_" in path), key=lambda path: int(path.split("_")[-2]))
    noisy = [f"sb3:{sac[-1]}@noise={noise}" for noise in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)]
    policies = (checkpoints + ["random"] + noisy)[:20]
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
        print(f"imagined, {workers} Ray worker(s), Ray started by the call: {timings[workers]:.1f} s")
    warm = {}
    for workers in (1, 2):  # a Ray session already running, its workers used before (a cluster, Tune)
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning", log_to_driver=False)
        rank_policies(model, policies[:2], starts=4, horizon=10, progress=False)
        started = time.perf_counter()
        rank_policies(model, policies, starts=config.starts, horizon=config.horizon, progress=False)
        warm[workers] = time.perf_counter() - started
        ray.shutdown()
        print(f"imagined, {workers} Ray worker(s), Ray already running: {warm[workers]:.1f} s")
    screening = {}  # members="one": every start once, a member drawn each step
    started = time.perf_counter()
    rank_policies(
        model,
        policies,
        starts=config.starts,
        horizon=config.horizon,
        workers=2,
        progress=False,
        members="one",
    )
    screening["cold_2"] = time.perf_counter() - started
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning", log_to_driver=False)
        rank_policies(model, policies[:2], starts=4, horizon=10, progress=False, members="one")
        started = time.perf_counter()
        rank_policies(
            model, policies, starts=config.starts, horizon=config.horizon, progress=False, members="one"
        )
        screening[f"warm_{workers}"] = time.perf_counter() - started
        ray.shutdown()
    print(
        f"screening (members=one): 2 workers {screening['cold_2']:.1f} s with Ray started by the call; "
        f"Ray running: 1 worker {screening['warm_1']:.1f} s, 2 workers {screening['warm_2']:.1f} s"
    )
    default = {}  # no Ray running and no workers given: what a user gets, in this process at this size
    for members in ("each", "one"):
        forget_loaded_sb3_policies()  # each call loads its checkpoints, as a fresh process would
        started = time.perf_counter()
        outcome = rank_policies(
            model, policies, starts=config.starts, horizon=config.horizon, progress=False, members=members
        )
        default[members] = time.perf_counter() - started
        default[f"{members}_workers"] = outcome["settings"]["workers"]
    print(
        f"no Ray running, workers left to choose ({default['each_workers']} = this process): "
        f"{default['each']:.1f} s, --members one {default['one']:.1f} s"
    )
    same = [e["imagined_return"] for e in results[1]["policies"]] == [
        e["imagined_return"] for e in results[2]["policies"]
    ]

    task = get_task(config.task)
    real: dict[str, dict[str, float]] = {}
    for label, limit in (("capped", config.horizon), ("full", None)):
        started, steps = time.perf_counter(), 0
        for source in policies:
            policy = load_policy(source, task.observation_space, task.action_space)
            rollouts = real_rollouts(task, policy, config.starts, seed=0, max_episode_steps=limit)
            steps += int(round(rollouts["length"] * config.starts))
        real[label] = {"seconds": time.perf_counter() - started, "steps": steps}
        print(
            f"real, the same {len(policies)} policies × {config.starts} episodes "
            f"({f'at most {limit} steps' if limit else 'whole episodes'}), one process: "
            f"{real[label]['seconds']:.1f} s, {steps:,} steps"
        )
    figures = {
        "policies": len(policies),
        "starts": config.starts,
        "horizon": config.horizon,
        "imagined_seconds_1_worker": timings[1],
        "imagined_seconds_2_workers": timings[2],
        "speedup_2_over_1": timings[1] / timings[2],
        "warm_seconds_1_worker": warm[1],
        "warm_seconds_2_workers": warm[2],
        "warm_speedup_2_over_1": warm[1] / warm[2],
        "ray_startup_seconds": ray_startup,
        "real_seconds": real["full"]["seconds"],
        "real_steps": real["full"]["steps"],
        "real_capped_seconds": real["capped"]["seconds"],
        "real_capped_steps": real["capped"]["steps"],
        "imagined_speedup_over_real_2_workers": real["full"]["seconds"] / timings[2],
        "imagined_speedup_over_real_capped_2_workers": real["capped"]["seconds"] / timings[2],
        "warm_imagined_speedup_over_real_2_workers": real["full"]["seconds"] / warm[2],
        "screening_seconds_2_workers": screening["cold_2"],
        "screening_warm_seconds_1_worker": screening["warm_1"],
        "screening_warm_seconds_2_workers": screening["warm_2"],
        "screening_speedup_over_real_2_workers": real["full"]["seconds"] / screening["cold_2"],
        "screening_warm_speedup_over_real_2_workers": real["full"]["seconds"] / screening["warm_2"],
        "default_seconds": default["each"],
        "default_speedup_over_real": real["full"]["seconds"] / default["each"],
        "default_screening_seconds": default["one"],
        "default_screening_speedup_over_real": real["full"]["seconds"] / default["one"],
        "default_in_process": default["each_workers"] == 0 and default["one_workers"] == 0,
        "same_results_1_and_2_workers": same,
        "imagined_steps": len(policies) * config.starts * config.horizon,
    }
    print(
        f"speed-up of 2 workers over 1: {figures['speedup_2_over_1']:.2f} (Ray started by the call), "
        f"{figures['warm_speedup_2_over_1']:.2f} (Ray running); same results: {same}"
    )
    print(
        f"2 workers against real {config.task}: {figures['imagined_speedup_over_real_2_workers']:.1f}× "
        f"(whole episodes), {figures['imagined_speedup_over_real_capped_2_workers']:.1f}× (capped at the horizon)"
    )
    write_report(config.out, {"benchmark": "rank", "config": asdict(config), "machine": machine(), **figures})


if __name__ == "__main__":
    main()
