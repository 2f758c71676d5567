"""Offline policy ranking: every candidate rolled out inside the world model on Ray, ranked, and
(when a real environment is given) checked against real returns.

The model goes into Ray's object store once; each group of policies is one task that loads them,
rolls them in lockstep from the same K real start states (one model call per step for the whole
group, every policy meeting the random draws it would meet alone), and optionally runs real
episodes for each. A policy that fails to load, returns bad actions or raises is reported as failed
while the others are ranked; a worker that dies is retried by Ray, and a group whose worker keeps
dying is split so only the policy to blame fails. The same seed gives the same ranking::

    result = rank_policies("models/pendulum", ["zoo/a.zip", "zoo/b.zip", "random"], real_episodes=20)
    result["policies"][0]["imagined_return"], result["metrics"]["spearman"]

Locally Ray starts in-process on loopback without a dashboard; ``address=`` joins a cluster.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imaginarium.errors import ImaginariumError

#: a policy is flagged when more than this share of its imagined states lie outside the model's data
OUTSIDE_FRACTION_WARNING = 0.2

#: with no Ray running and no cluster named, a ranking of at most this many imagined steps (policies ×
#: starts × members rolled × horizon) runs in this process. Starting Ray, workers that import torch and
#: SB3, and stopping it take about 6.6 s; on 2 CPUs two workers win that back only beyond about 3.5 M
#: steps of a Hopper-sized ensemble (``experiments/bench_rank.py``: 5.9 µs a step in this process,
#: 4.1 µs on 2 workers), and with C CPUs sooner (about 1.6 M at 4 and 1.2 M at 16, if workers scale
#: linearly and this process did not), so this bound is well inside the break-even on few CPUs and
#: near it on many
IN_PROCESS_STEPS = 1_500_000

#: policies imagined together by default: each step's per-call costs are paid once for the group, and
#: its batch (policies × starts × members rolled, frames for a pixel model) stays small enough
MAX_GROUP = 32


def _evaluate_group(
    model: Any,
    sources: list[str],
    starts: np.ndarray,
    horizon: int,
    seed: int,
    allow_code: bool,
    real: dict[str, Any] | None,
    known_states: Any = None,
    members: str = "each",
) -> list[dict[str, Any]]:
    """Some policies, imagined together in lockstep (and each on the real task): never raises, a
    policy that fails is returned with its error while the others go on."""
    from imaginarium.allocator import keep_freed_memory
    from imaginarium.envs.suite import get_task
    from imaginarium.evaluation import imagined_rollouts_lockstep, real_rollouts
    from imaginarium.policy import load_policy, policy_name

    keep_freed_memory()  # a worker's model came unpickled, not built or loaded
    entries = [{"name": policy_name(source), "path": str(source), "error": None} for source in sources]
    loaded: dict[int, Any] = {}
    seconds = [0.0] * len(sources)
    for index, source in enumerate(sources):
        started = time.perf_counter()
        try:
            loaded[index] = load_policy(
                source, model.input_space, model.action_space, seed=seed, allow_code=allow_code
            )
        except Exception as error:  # a user's policy can fail in any way; the ranking goes on without it
            _record_error(entries[index], error)
        seconds[index] += time.perf_counter() - started
    started = time.perf_counter()
    try:
        outcomes = imagined_rollouts_lockstep(
            model,
            list(loaded.values()),
            starts,
            horizon,
            seed=seed,
            known_states=known_states,
            members=members,
        )
    except Exception as error:  # the model itself failed: every policy of the group fails with it
        outcomes = [error] * len(loaded)
    share = (time.perf_counter() - started) / max(1, len(loaded))
    for index, imagined in zip(list(loaded), outcomes, strict=True):
        seconds[index] += share
        if isinstance(imagined, Exception):
            _record_error(entries[index], imagined)
            del loaded[index]
            continue
        entries[index].update(
            imagined_return=imagined["return"],
            imagined_success=imagined["success"],
            uncertainty=imagined["uncertainty"],
            outside_fraction=imagined["outside_fraction"],
            member_spread=imagined["member_spread"],
            member_returns=imagined["member_returns"],
            imagined_length=imagined["length"],
            diverged=imagined["diverged"],
            real_return=None,
            real_success=None,
        )
    for index, policy in loaded.items():
        if real is None:
            continue
        started = time.perf_counter()
        try:
            outcome = real_rollouts(
                get_task(real["env"]), policy, real["episodes"], seed=seed, pixels=real.get("pixels")
            )
            entries[index].update(real_return=outcome["return"], real_success=outcome["success"])
        except Exception as error:
            _record_error(entries[index], error)
        seconds[index] += time.perf_counter() - started
    for entry, spent in zip(entries, seconds, strict=True):
        entry["seconds"] = spent
    return entries


def _evaluate_group_on_worker(*arguments: Any) -> list[dict[str, Any]]:
    """:func:`_evaluate_group` in a Ray worker, which has one CPU (a cluster's workers may not have been
    told so through ``OMP_NUM_THREADS``)."""
    import torch

    torch.set_num_threads(1)
    return _evaluate_group(*arguments)


def _record_error(entry: dict[str, Any], error: Exception) -> None:
    entry["error"] = f"{type(error).__name__}: {error}"
    entry["traceback"] = "".join(traceback.format_exception(error, limit=4))


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


def rank_policies(
    model: str | Path | Any,
    policies: Sequence[str | Path],
    starts: int = 64,
    horizon: int | None = None,
    real_env: str | None = None,
    real_episodes: int = 20,
    dataset: str | Path | None = None,
    workers: int | None = None,
    address: str | None = None,
    seed: int = 0,
    allow_code: bool = False,
    retries: int = 3,
    progress: bool = True,
    members: str = "each",
    group: int | None = None,
) -> dict[str, Any]:
    """Rank ``policies`` by their imagined return in ``model`` (a model folder or object).

    :param starts: K real initial states (from the model's dataset, or ``dataset``) every policy starts from.
    :param horizon: steps per rollout; default the task's time limit (a shorter one truncates the estimate).
    :param real_env: a task name or Gymnasium id to also run ``real_episodes`` real episodes per policy.
    :param workers: Ray CPUs to use locally; ``0`` runs everything in this process. Default: this
        process when no Ray is running for a small ranking (:data:`IN_PROCESS_STEPS`) of a model that
        sees states, with no real episodes and no ``py:`` callables; else Ray with all local CPUs.
    :param address: join the Ray cluster at this address instead of starting one.
    :param members: ``"each"`` rolls every start once per ensemble member (their spread measured);
        ``"one"`` once, a member drawn each step: a ``1/members`` of the work, for screening.
    :param group: policies imagined together in lockstep, one model call per step for all of them
        (each still meets the noise it would alone); default the policies spread evenly over the
        workers, at most :data:`MAX_GROUP` together.
    :returns: ``{"policies": [...], "metrics": {...} | None, "settings": {...}}``, policies ordered by
        imagined return (failed ones last).
    """
    from imaginarium.evaluation import KnownStates, check_members, start_states
    from imaginarium.models import load_world_model
    from imaginarium.models.starts import model_starts

    if not policies:
        raise ImaginariumError("no policies to rank")
    if starts < 1 or real_episodes < 1:
        raise ImaginariumError(f"starts and real episodes must be positive, got {starts} and {real_episodes}")
    check_members(members)
    if group is not None and group < 1:
        raise ImaginariumError(f"group must be a positive number of policies, got {group}")
    if horizon is not None and horizon < 1:
        raise ImaginariumError(f"horizon must be a positive number of steps, got {horizon}")
    if workers is not None and workers < 0:
        raise ImaginariumError(f"workers must be 0 (this process) or a number of CPUs, got {workers}")
    world_model = load_world_model(model) if isinstance(model, str | Path) else model
    world_model = world_model.cpu().eval()
    card = getattr(world_model, "card", {}) or {}
    time_limit = int(card.get("max_episode_steps") or 1000)
    horizon = int(horizon or time_limit)
    kept = model_starts(world_model, dataset)  # before Ray: start states of another task fail here
    if kept.inputs.shape[1:] != world_model.input_space.shape:
        raise ImaginariumError(
            f"start states have shape {kept.inputs.shape[1:]}, the model observes "
            f"{world_model.input_space.shape}: the dataset is not of the model's task"
        )
    real = None
    if real_env is not None:
        from imaginarium.envs.suite import get_task

        get_task(real_env).check_spaces(world_model.observation_space, world_model.action_space, "the model")
        real = {"env": real_env, "episodes": real_episodes}
        if world_model.observes_pixels:  # the policies see frames: the real env's own, as collected
            real["pixels"] = world_model.input_space.shape[0]
    steps = len(policies) * starts * horizon
    if workers is None and _in_process_pays(address, policies, steps, world_model, members, real):
        workers = 0
    started_here = False
    if workers != 0:  # Ray starts now, and its workers import while the starts below are drawn
        started_here = start_ray(workers, address)
        _warm_workers()
    try:
        start_observations = start_states(kept.inputs, starts, seed)
        sources = [str(source) for source in policies]
        # how far imagined states leave the data is measured in state space: not for frame models
        known = None if world_model.observes_pixels else KnownStates(kept.states, seed=seed)
        started = time.perf_counter()
        groups = _groups([_policy_cost(source) for source in sources], group, workers)
        if workers == 0:
            entries: list[dict[str, Any]] = [{}] * len(sources)
            for rows in _progress(groups, progress):
                outcomes = _evaluate_group(
                    world_model,
                    [sources[row] for row in rows],
                    start_observations,
                    horizon,
                    seed,
                    allow_code,
                    real,
                    known,
                    members,
                )
                for row, entry in zip(rows, outcomes, strict=True):
                    entries[row] = entry
        else:
            entries = _evaluate_on_ray(
                world_model, sources, groups, start_observations, horizon, seed, allow_code, real, known,
                members, retries, progress,
            )  # fmt: skip
    finally:
        if started_here:
            import ray

            ray.shutdown()
    result = _assemble(entries, None if known is None else known.threshold)
    result["settings"] = {
        "starts": starts,
        "horizon": horizon,
        "time_limit": time_limit,
        "truncated": horizon < time_limit,
        "real_env": real_env,
        "real_episodes": real_episodes if real_env else None,
        "seed": seed,
        "allow_code": allow_code,
        "workers": workers,
        "members": members,
        "seconds": time.perf_counter() - started,
        "model": str(model) if isinstance(model, str | Path) else None,
        "task": card.get("task"),
    }
    return result


def _in_process_pays(
    address: str | None, policies: Sequence[Any], steps: int, model: Any, members: str, real: Any
) -> bool:
    """Whether a ranking of ``steps`` (policies × starts × horizon) left to choose is better run in
    this process than on a Ray started for it.

    Not when Ray is running or a cluster is named (here or in ``RAY_ADDRESS``), nor for real episodes
    (simulators parallelise across processes), models that see frames (not measured), or ``py:``
    callables: code that may exit or crash is kept in workers, whose deaths Ray survives.
    """
    ray = sys.modules.get("ray")  # not imported: then certainly not running (importing costs a second)
    if address or os.environ.get("RAY_ADDRESS") or (ray is not None and ray.is_initialized()):
        return False
    if real is not None or model.observes_pixels or any("py:" in str(source) for source in policies):
        return False
    rolled = model.rollout_members if members == "each" else 1
    return steps * rolled <= IN_PROCESS_STEPS


def _groups(costs: list[float], size: int | None, workers: int | None) -> list[list[int]]:
    """The policies' indices, by what each costs to run (:func:`_policy_cost`), shared into groups of
    at most ``size`` (default: spread evenly over the workers, at most :data:`MAX_GROUP` together) so
    their costs come out even: dearest first, each into the cheapest group with room (longest
    processing time first). Equal costs are dealt in turn. Balance matters because a worker given the
    wide networks keeps the others waiting: cut in consecutive runs, a zoo listed by algorithm gave
    one of two workers every TD3 actor."""
    count = len(costs)
    if size is None:
        if workers == 0:
            cpus = 1
        elif workers:
            cpus = workers
        else:
            import ray

            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = min(MAX_GROUP, -(-count // cpus))
    groups: list[list[int]] = [[] for _ in range(-(-count // size))]
    loads = [0.0] * len(groups)
    for index in sorted(range(count), key=lambda index: -costs[index]):
        open_groups = [number for number in range(len(groups)) if len(groups[number]) < size]
        chosen = min(open_groups, key=lambda number: (loads[number], len(groups[number]), number))
        groups[chosen].append(index)
        loads[chosen] += costs[index]
    return [sorted(group) for group in groups]


#: what running a policy costs beside its weights (the per-step calls of any policy), in bytes of
#: weights costing as much: about a megabyte, from a profile of SB3 actors acting on 64 starts (some
#: 150 µs of calls a step beside 160 µs a megabyte of weights)
POLICY_CALL_COST = 1 << 20


def _policy_cost(source: str) -> float:
    """What imagining ``source`` costs per step, roughly: :data:`POLICY_CALL_COST` per policy in its
    spec, plus the bytes of weights in each file it names (the network's size, which its arithmetic
    follows). Only file sizes are read, from the file system and a zip's directory."""
    from imaginarium.policy import split_spec

    cost = 0.0
    for _, component in split_spec(str(source)):
        target = component.partition("@")[0].strip()
        kind, colon, argument = target.partition(":")
        path = Path(argument if colon and kind in ("sb3", "torchscript", "dreamer") else target)
        cost += POLICY_CALL_COST
        try:
            if zipfile.is_zipfile(path):  # SB3: the policy's weights, not the optimisers' states
                with zipfile.ZipFile(path) as archive:
                    if "policy.pth" in archive.namelist():
                        cost += archive.getinfo("policy.pth").file_size
                    else:
                        cost += path.stat().st_size
            elif path.is_file():
                cost += path.stat().st_size
            elif path.is_dir():  # a Dreamer agent: its actor's weights and the model it imagines in
                from imaginarium.agents.dreamer import STATE_FILE

                cost += sum(item.stat().st_size for item in path.glob("*.pt") if item.name != STATE_FILE)
        except OSError:
            pass  # not a file this process can read: a policy of the call cost alone
    return cost


def _progress(groups: list[list[int]], enabled: bool):
    if not enabled:
        yield from groups
        return
    from rich.progress import Progress

    with Progress() as bar:
        task_id = bar.add_task("policies", total=sum(len(rows) for rows in groups))
        for rows in groups:
            yield rows
            bar.advance(task_id, len(rows))


def _evaluate_on_ray(
    model: Any,
    sources: list[str],
    groups: list[list[int]],
    starts: np.ndarray,
    horizon: int,
    seed: int,
    allow_code: bool,
    real: dict[str, Any] | None,
    known: Any,
    members: str,
    retries: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Each group of policies one retried Ray task (Ray already started by :func:`rank_policies`). A
    group whose worker keeps dying is split, each policy run alone, so only the one to blame fails."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_evaluate_group_on_worker)
    model_ref, starts_ref, known_ref = ray.put(model), ray.put(starts), ray.put(known)

    def submit(rows: list[int]) -> Any:
        group_sources = [sources[row] for row in rows]
        return remote.remote(
            model_ref, group_sources, starts_ref, horizon, seed, allow_code, real, known_ref, members
        )

    pending = {submit(rows): rows for rows in groups}
    entries: list[dict[str, Any] | None] = [None] * len(sources)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        task_id = bar.add_task("policies", total=len(sources))
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            rows = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except Exception as error:  # the worker died more often than Ray retries
                if len(rows) > 1:
                    pending.update({submit([row]): [row] for row in rows})
                    continue
                results = [
                    {
                        "name": sources[rows[0]],
                        "path": sources[rows[0]],
                        "error": f"worker failed after {retries} retries: {type(error).__name__}: {error}",
                    }
                ]
            for row, entry in zip(rows, results, strict=True):
                entries[row] = entry
            if bar is not None:
                bar.advance(task_id, len(rows))
    finally:
        if bar is not None:
            bar.stop()
    return [entry for entry in entries if entry is not None]


def _warm_workers() -> None:
    """Have each Ray CPU import what a ranking task needs (torch, SB3, the simulators), without waiting:
    the imports then overlap the driver's loading of the model and data instead of delaying the first
    policies."""
    import ray

    warm = ray.remote(num_cpus=1)(_import_task_modules)
    for _ in range(max(1, int(ray.available_resources().get("CPU", 1)))):
        warm.remote()


def _import_task_modules() -> None:
    import stable_baselines3  # noqa: F401  (most candidate policies are SB3 checkpoints)

    import imaginarium.envs.suite  # noqa: F401
    import imaginarium.evaluation  # noqa: F401
    import imaginarium.policy  # noqa: F401


def _assemble(entries: list[dict[str, Any]], reference: float | None) -> dict[str, Any]:
    """Order by imagined return, flag high-uncertainty rollouts, and compute the metrics against real returns."""
    for entry in entries:
        if entry.get("error") is None and not np.isfinite(entry["imagined_return"]["mean"]):
            entry["error"] = "the imagined return is not finite (the model diverged under this policy)"
    ranked = [entry for entry in entries if entry.get("error") is None]
    failed = [entry for entry in entries if entry.get("error") is not None]
    ranked.sort(key=lambda entry: -entry["imagined_return"]["mean"])
    for position, entry in enumerate(ranked, start=1):
        entry["rank"] = position
        outside = entry.get("outside_fraction") or 0.0
        entry["uncertainty_warning"] = bool(outside > OUTSIDE_FRACTION_WARNING or entry.get("diverged"))
    metrics = None
    with_real = [entry for entry in ranked if entry.get("real_return") is not None]
    if len(with_real) >= 2:
        true = [entry["real_return"]["mean"] for entry in with_real]
        if np.ptp(true) > 0:
            from imaginarium.metrics import ranking_metrics  # scipy: the driver needs it, workers do not

            metrics = ranking_metrics([entry["imagined_return"]["mean"] for entry in with_real], true)
    return {"policies": ranked + failed, "metrics": metrics, "outside_threshold": reference}
