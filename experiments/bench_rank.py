"""Ranking speed (issues #6, #9): 20 policies × 64 starts × 200 imagined steps on Ray with 1 and 2
workers, and as called with no Ray running and no workers given (in process at this size), beside
evaluating the same policies for the same number of real episodes in one process: whole episodes
(what evaluating on the real task means), and episodes cut at the same 200 steps.

Policies: the task's zoo of ``experiments/zoo.py`` (its checkpoints), the random policy, and the
last SAC checkpoint with levels of action noise, 20 in all. The model is the task's ensemble of
``experiments/ranking_study.py`` (made if missing). Times are wall-clock of the whole call, Ray
start-up included (measured on its own too), each the median of ``repeats`` rounds that time every
setting once in turn, 1 worker first in even rounds and 2 first in odd ones (this machine's speed
drifts by about a tenth between minutes); each round's ratios are kept beside them.

    python experiments/bench_rank.py [--task hopper] [--starts 64] [--horizon 200] [--repeats 3]
    python experiments/bench_rank.py --smoke  # 6 pendulum policies × 2 starts × 5 steps, one round, no screening
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from common import default_config, machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import model_for
from zoo import zoo

from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.policy import forget_loaded_sb3_policies, load_policy
from imaginarium.run.cluster import keep_local_ray_on_loopback, start_ray
from imaginarium.run.rank import rank_policies


@dataclass(frozen=True)
class Config:
    task: str = "hopper"
    starts: int = 64
    horizon: int = 200
    repeats: int = 3
    #: at most this many policies: the zoo's checkpoints, then random, then the noisy SAC
    policies: int = 20
    #: also time screening (``--members one``), beside every elite from each start
    screening: bool = True
    out: str = "experiments/results/bench_rank.json"
    #: screening runs the same calls with another ``members``, and would double the Ray sessions
    SMOKE: ClassVar[dict] = {
        "task": "pendulum",
        "starts": 2,
        "horizon": 5,
        "repeats": 1,
        "policies": 6,
        "screening": False,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    model = model_for(config.task, default_config(StudyConfig))
    threads = machine()["torch_threads"]
    print(f"torch threads in this process: {threads} (a ranking done in process uses them all)")
    checkpoints = [str(path) for path in zoo(config.task)]
    sac = sorted((path for path in checkpoints if "sac_" in path), key=lambda path: int(path.split("_")[-2]))
    noisy = [f"sb3:{sac[-1]}@noise={noise}" for noise in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)]
    policies = (checkpoints + ["random"] + noisy)[: config.policies]
    keep_local_ray_on_loopback(None)
    import ray

    started = time.perf_counter()
    start_ray(2, None)  # as a ranking starts it, without the ranking
    ray.shutdown()
    ray_startup = time.perf_counter() - started

    def cold(workers: int, members: str) -> float:
        """Ray started (and stopped) by the call, as a command line run starts it."""
        started = time.perf_counter()
        outcome = rank_policies(
            model, policies, starts=config.starts, horizon=config.horizon, workers=workers, progress=False,
            members=members,
        )  # fmt: skip
        results[(workers, members)] = [entry.imagined_return for entry in outcome.policies]
        return time.perf_counter() - started

    def warm(workers: int, members: str) -> float:
        """A Ray session already running, its workers used before (a cluster, Tune, a notebook)."""
        start_ray(workers, None)
        try:
            rank_policies(model, policies[:2], starts=4, horizon=10, progress=False, members=members)
            started = time.perf_counter()
            rank_policies(
                model, policies, starts=config.starts, horizon=config.horizon, progress=False, members=members
            )
            return time.perf_counter() - started
        finally:
            ray.shutdown()

    results: dict[tuple[int, str], list[float]] = {}
    in_process: dict[str, bool] = {}
    modes = ("each", "one") if config.screening else ("each",)  # every elite from each start; one a step
    runs: dict[str, dict[str, list[float]]] = {members: {} for members in modes}
    for number in range(config.repeats):  # rounds, each timing every setting once: drift hits them all alike
        order = (1, 2) if number % 2 == 0 else (2, 1)  # and neither worker count always goes first
        for members in modes:
            row = runs[members]
            for workers in order:
                row.setdefault(f"cold_{workers}", []).append(cold(workers, members))
            for workers in order:
                row.setdefault(f"warm_{workers}", []).append(warm(workers, members))
            forget_loaded_sb3_policies()  # no Ray running, workers left to choose: each policy loaded anew
            started = time.perf_counter()
            outcome = rank_policies(
                model, policies, starts=config.starts, horizon=config.horizon, progress=False, members=members
            )
            row.setdefault("default", []).append(time.perf_counter() - started)
            in_process[members] = outcome.settings.workers == 0
    timings = {
        members: {key: statistics.median(values) for key, values in row.items()}
        for members, row in runs.items()
    }
    for members, row in timings.items():
        print(
            f"members={members}, median of {config.repeats}: Ray started by the call, 1 worker "
            f"{row['cold_1']:.1f} s, 2 workers {row['cold_2']:.1f} s; Ray running, 1 worker {row['warm_1']:.1f} s, "
            f"2 workers {row['warm_2']:.1f} s; no Ray running, workers left to choose: {row['default']:.1f} s"
        )
    same = all(results[(1, members)] == results[(2, members)] for members in modes)

    task = get_task(config.task)
    real: dict[str, dict[str, float]] = {}
    for label, limit in (("capped", config.horizon), ("full", None)):
        started, steps = time.perf_counter(), 0
        for source in policies:
            policy = load_policy(source, task.observation_space, task.action_space)
            rollouts = real_rollouts(task, policy, config.starts, seed=0, max_episode_steps=limit)
            steps += int(round(rollouts.length * config.starts))
        real[label] = {"seconds": time.perf_counter() - started, "steps": steps}
        print(
            f"real, the same {len(policies)} policies × {config.starts} episodes "
            f"({f'at most {limit} steps' if limit else 'whole episodes'}), one process: "
            f"{real[label]['seconds']:.1f} s, {steps:,} steps"
        )
    real_full = real["full"]["seconds"]

    def mode_figures(prefix: str, members: str) -> dict[str, Any]:
        """One member mode's median times and ratios, and each round's, keys starting with ``prefix``."""
        row, rounds = timings[members], runs[members]
        return {
            f"{prefix}seconds_1_worker": row["cold_1"],
            f"{prefix}seconds_2_workers": row["cold_2"],
            f"{prefix}speedup_2_over_1": row["cold_1"] / row["cold_2"],
            f"{prefix}speedup_2_over_1_rounds": [
                one / two for one, two in zip(rounds["cold_1"], rounds["cold_2"], strict=True)
            ],
            f"{prefix}warm_seconds_1_worker": row["warm_1"],
            f"{prefix}warm_seconds_2_workers": row["warm_2"],
            f"{prefix}warm_speedup_2_over_1": row["warm_1"] / row["warm_2"],
            f"{prefix}warm_speedup_2_over_1_rounds": [
                one / two for one, two in zip(rounds["warm_1"], rounds["warm_2"], strict=True)
            ],
            f"{prefix}speedup_over_real_2_workers": real_full / row["cold_2"],
            f"{prefix}warm_speedup_over_real_2_workers": real_full / row["warm_2"],
            f"{prefix}default_seconds": row["default"],
            f"{prefix}default_speedup_over_real": real_full / row["default"],
            f"{prefix}default_in_process": in_process[members],
            f"{prefix}seconds_rounds": rounds,
        }

    figures = {
        "policies": len(policies),
        "starts": config.starts,
        "horizon": config.horizon,
        **mode_figures("", "each"),  # every elite from each start
        **(mode_figures("screening_", "one") if config.screening else {}),  # --members one
        "ray_startup_seconds": ray_startup,
        "real_seconds": real_full,
        "real_steps": real["full"]["steps"],
        "real_capped_seconds": real["capped"]["seconds"],
        "real_capped_steps": real["capped"]["steps"],
        "speedup_over_real_capped_2_workers": real["capped"]["seconds"] / timings["each"]["cold_2"],
        "same_results_1_and_2_workers": same,
        "imagined_steps": len(policies) * config.starts * config.horizon,
    }
    screening = (
        f"; --members one: {figures['screening_speedup_2_over_1']:.2f}, "
        f"{figures['screening_warm_speedup_2_over_1']:.2f}"
        if config.screening
        else ""
    )
    print(
        f"speed-up of 2 workers over 1: {figures['speedup_2_over_1']:.2f} (Ray started by the call), "
        f"{figures['warm_speedup_2_over_1']:.2f} (Ray running){screening}; same results: {same}"
    )
    print(
        f"2 workers against real {config.task}: {figures['speedup_over_real_2_workers']:.1f}× "
        f"(whole episodes), {figures['speedup_over_real_capped_2_workers']:.1f}× (capped at the horizon)"
    )
    write_report(config.out, {"benchmark": "rank", "config": asdict(config), "machine": machine(), **figures})


if __name__ == "__main__":
    main()
