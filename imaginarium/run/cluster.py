"""Ray for the pipelines that fan out: started on loopback for local runs, joined for a cluster, and
its workers warmed while the driver prepares."""

from __future__ import annotations

import os
import sys


def keep_local_ray_on_loopback(address: str | None) -> None:
    """Before Ray is first imported: a Ray started here binds to loopback only, and asks its clients
    for a token (``--address`` joins a cluster and changes nothing). Ray reads both settings at
    import, so call this before ``import ray``. Token authentication is Ray's default for a local
    cluster; saying so explicitly keeps Ray from warning about it at every start. Once Ray is
    imported the mode is left to Ray: set then, the new cluster would ask this process for a token
    that this process, having read the mode already, would not send."""
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if "ray" not in sys.modules:
            os.environ.setdefault("RAY_AUTH_MODE", "token")


def start_ray(workers: int | None, address: str | None) -> bool:
    """Start (or join) Ray; returns whether this call started it (and so should stop it).

    A local Ray keeps every socket on loopback: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` must be in the
    environment before Ray is imported, so it is set here first (not when joining a cluster). Workers
    inherit the environment Ray starts with, which also gives them ``OMP_NUM_THREADS=1`` (every task
    takes one CPU); a job-level ``runtime_env`` saying so instead kept Ray from starting its workers
    ahead (0.9 s on the first task).
    """
    keep_local_ray_on_loopback(address)
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="warning", log_to_driver=False)
        return True
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # read by Ray's processes as they start, not by this one's torch
    try:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning", log_to_driver=False)
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    return True


def warm_workers() -> None:
    """Have each Ray CPU import what a ranking task needs (torch, SB3, the simulators), without waiting:
    the imports then overlap the driver's loading of the model and data instead of delaying the first
    policies."""
    import ray

    warm = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_import_task_modules)
    for _ in range(max(1, int(ray.available_resources().get("CPU", 1)))):
        warm.remote()


def _import_task_modules() -> None:
    import stable_baselines3  # noqa: F401  (most candidate policies are SB3 checkpoints)

    import imaginarium.envs.suite  # noqa: F401
    import imaginarium.evaluation  # noqa: F401
    import imaginarium.policy  # noqa: F401
