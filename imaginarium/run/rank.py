"""The driver side of offline policy ranking: where a ranking runs (this process or Ray), how its
policies are grouped, progress, and the retries that keep one crashing policy from failing the rest.

What each group does (load its policies, roll them in lockstep in the model, run real episodes) is
:func:`imaginarium.ranking.evaluate_group`; the ranking itself is :func:`imaginarium.ranking.assemble`.
The same seed gives the same ranking, in this process or on any number of workers::

    result = rank_policies("models/pendulum", ["zoo/a.zip", "zoo/b.zip", "random"], real_episodes=20)
    result.policies[0].imagined_return, result.metrics["spearman"]

Locally Ray starts on loopback without a dashboard; ``address=`` joins a cluster.
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaginarium.agents.dreamer import STATE_FILE
from imaginarium.calibration import DEFAULT_LEVEL
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import KnownStates, check_members, replay_held_out, start_states
from imaginarium.models import load_world_model, model_folders
from imaginarium.models.starts import card_dataset_path, model_starts
from imaginarium.policy import split_spec
from imaginarium.progress import Progress, tracking
from imaginarium.ranking import (
    PolicyEntry,
    RankingResult,
    RankSettings,
    add_conformal_estimates,
    assemble,
    combine_models,
    evaluate_group,
)
from imaginarium.run.cluster import start_ray, warm_workers

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


def _evaluate_group_on_worker(*arguments: Any) -> list[PolicyEntry]:
    """:func:`evaluate_group` in a Ray worker, which has one CPU (a cluster's workers may not have been
    told so through ``OMP_NUM_THREADS``)."""

    torch.set_num_threads(1)
    return evaluate_group(*arguments)


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
    progress: bool | Progress = True,
    members: str = "each",
    group: int | None = None,
    rules: bool = False,
    level: float = DEFAULT_LEVEL,
    calibrate: str | None = None,
) -> RankingResult:
    """Rank ``policies`` by their imagined return in ``model``: a model folder or object, a folder of
    models trained one per seed (``train --seeds``), or a list of them. With several models every policy
    is imagined in each from the same starts; its imagined return is their mean, ``model_spread`` their
    disagreement, and the order confidences resample models and starts together
    (:func:`imaginarium.ranking.combine_models`).

    :param starts: K real initial states (from the model's dataset, or ``dataset``) every policy starts from.
    :param horizon: steps per rollout; default the task's time limit (a shorter one truncates the estimate).
    :param real_env: a task name or Gymnasium id to also run ``real_episodes`` real episodes per policy;
        with 2 or more, each policy's real return is also estimated from them and the model together,
        prediction-powered (:mod:`imaginarium.calibration`), at ``level`` (``predicted_real_return``).
    :param workers: Ray CPUs to use locally; ``0`` runs everything in this process. Default: this
        process when no Ray is running for a small ranking (:data:`IN_PROCESS_STEPS`) of a model that
        sees states, with no real episodes and no ``py:`` callables; else Ray with all local CPUs.
    :param address: join the Ray cluster at this address instead of starting one.
    :param members: ``"each"`` rolls every start once per ensemble member (their spread measured);
        ``"one"`` once, a member drawn each step: a ``1/members`` of the work, for screening.
    :param rules: the task's own termination and reward rules judge the imagined states where they are
        known (``imaginarium.rewards``), in place of the model's continue and reward heads.
    :param calibrate: give policies without real episodes a conformal interval on their real return
        (``predicted_real_return``), calibrated on held-out episodes of the model's data (``dataset``,
        else the one its card names) replayed in the model: ``"episode"`` whole
        (:func:`imaginarium.calibration.conformal`), or ``"N"`` in segments of N steps from each real
        state, each policy's interval moved toward the whole episodes' by its share of states outside
        the data (:func:`imaginarium.calibration.conformal_off_data`). Off by default:
        ``experiments/trust_study.py`` measures how far each choice covers.
    :param group: policies imagined together in lockstep, one model call per step for all of them
        (each still meets the noise it would alone); default the policies spread evenly over the
        workers, at most :data:`MAX_GROUP` together.
    :returns: the ranking, its policies ordered by imagined return (failed ones last), with the
        settings it ran with.
    """

    if not policies:
        raise ImaginariumError("no policies to rank")
    if starts < 1 or real_episodes < 1:
        raise ImaginariumError(f"starts and real episodes must be positive, got {starts} and {real_episodes}")
    check_members(members)
    segment = _calibration_segment(calibrate)
    if not 0 < level < 1:
        raise ImaginariumError(f"level must be in (0, 1), got {level}")
    if group is not None and group < 1:
        raise ImaginariumError(f"group must be a positive number of policies, got {group}")
    if horizon is not None and horizon < 1:
        raise ImaginariumError(f"horizon must be a positive number of steps, got {horizon}")
    if workers is not None and workers < 0:
        raise ImaginariumError(f"workers must be 0 (this process) or a number of CPUs, got {workers}")
    sources_of_models = _model_list(model)
    world_model = _loaded(sources_of_models[0])
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
        get_task(real_env).check_spaces(world_model.observation_space, world_model.action_space, "the model")
        real = {"env": real_env, "episodes": real_episodes, "level": level}
        if world_model.observes_pixels:  # the policies see frames: the real env's own, as collected
            real["pixels"] = world_model.input_space.shape[0]
    calibrating = calibrate is not None and (real is None or real_episodes < 2)
    if calibrating and (world_model.observes_pixels or (dataset or card_dataset_path(world_model)) is None):
        raise ImaginariumError(
            "calibrate replays held-out episodes of the model's data: a model that sees states, and its "
            "dataset (the card names none; give dataset=, --data)"
        )
    # the policies without real episodes get an interval calibrated on the data's held-out episodes
    held_out = _held_out_data(world_model, dataset) if calibrating else None
    steps = len(policies) * starts * horizon * len(sources_of_models)
    if workers is None and _in_process_pays(address, policies, steps, world_model, members, real):
        workers = 0
    started_here = False
    if workers != 0:  # Ray starts now, and its workers import while the starts below are drawn
        started_here = start_ray(workers, address)
        warm_workers()
    try:
        start_observations = start_states(kept.inputs, starts, seed)
        sources = [str(source) for source in policies]
        started = time.perf_counter()
        groups = _groups([_policy_cost(source) for source in sources], group, workers)
        per_model: list[list[PolicyEntry]] = []
        threshold = None
        residuals: list[np.ndarray] = []
        whole_residuals: list[np.ndarray] = []
        for number, source in enumerate(sources_of_models):
            if number:
                world_model = _loaded(source, like=world_model)
                kept = model_starts(world_model, dataset)
            # how far imagined states leave the data is measured in state space: not for frame models
            known = None if world_model.observes_pixels else KnownStates(kept.states, seed=seed)
            if number == 0 and known is not None:
                threshold = known.threshold
            if number and real is not None:  # the first model's real episodes serve every model
                replay = {
                    entry.path: entry.real_starts for entry in per_model[0] if entry.real_starts is not None
                }
                real = {**real, "replay": replay}
            label = (
                "policies"
                if len(sources_of_models) == 1
                else f"policies, model {number + 1}/{len(sources_of_models)}"
            )
            work = _Pass(
                world_model, start_observations, horizon, seed, allow_code, real, known, members, rules
            )
            entries = _entries_in(work, sources, groups, workers, retries, progress, label)
            per_model.append(entries)
            if held_out is not None:
                replayed = _residuals(world_model, held_out, horizon, seed, members, rules, segment)
                if replayed is not None:
                    residuals.append(replayed[0])
                    whole_residuals.extend(replayed[1:])
    finally:
        if started_here:
            import ray

            ray.shutdown()
    combined = combine_models(per_model, level, seed)
    pooled = np.concatenate(residuals) if residuals else None
    if pooled is not None:
        whole = np.concatenate(whole_residuals) if whole_residuals else None
        add_conformal_estimates(combined, pooled, level, whole)
    result = assemble(combined, threshold, seed)
    result.settings = RankSettings(
        starts=starts,
        horizon=horizon,
        time_limit=time_limit,
        truncated=horizon < time_limit,
        real_env=real_env,
        real_episodes=real_episodes if real_env else None,
        seed=seed,
        allow_code=allow_code,
        workers=workers,
        members=members,
        rules=rules,
        level=level,
        seconds=time.perf_counter() - started,
        model=str(sources_of_models[0]) if isinstance(sources_of_models[0], str | Path) else None,
        task=card.get("task"),
        models=len(sources_of_models),
        calibrate=None if calibrate is None else str(calibrate),
        held_out_episodes=None if pooled is None else len(pooled),
    )
    return result


def _calibration_segment(calibrate: str | None) -> int | None:
    """The segment length a ``calibrate`` setting replays held-out episodes in (None: whole episodes).

    :raises ImaginariumError: a setting that is neither ``episode`` nor a positive number of steps.
    """
    if calibrate is None or calibrate == "episode":
        return None
    if not str(calibrate).isdigit() or int(calibrate) < 1:
        raise ImaginariumError(
            f"calibrate must be 'episode' or a positive number of steps, got {calibrate!r}"
        )
    return int(calibrate)


def _held_out_data(model: Any, dataset: str | Path | None) -> Dataset:
    """The data whose held-out episodes calibrate a ranking's intervals: ``dataset`` when given, else the
    one the model's card names.

    :raises DatasetError: it cannot be read (moved, or not a dataset).
    """
    return load_dataset(dataset if dataset is not None else card_dataset_path(model))


def _residuals(
    model: Any, data: Dataset, horizon: int, seed: int, members: str, rules: bool, segment: int | None
) -> list[np.ndarray] | None:
    """The real minus imagined returns of ``data``'s held-out episodes replayed in ``model``: whole, or
    in segments and then whole (for the policies that leave the data); None when none qualifies."""
    replays = [replay_held_out(model, data, horizon, seed, members, rules, segment=segment)]
    if segment is not None:
        replays.append(replay_held_out(model, data, horizon, seed, members, rules))
    if any(replayed is None for replayed in replays):
        return None
    return [replayed.residuals for replayed in replays]


@dataclass(frozen=True)
class _Pass:
    """What every group of policies is evaluated with in one model's pass of a ranking: the arguments of
    :func:`evaluate_group` but the policies themselves."""

    model: Any
    starts: np.ndarray
    horizon: int
    seed: int
    allow_code: bool
    real: dict[str, Any] | None
    known: Any
    members: str
    rules: bool

    def group_arguments(self, sources: list[str], **shared: Any) -> tuple[Any, ...]:
        """:func:`evaluate_group`'s arguments for ``sources``; ``shared`` replaces fields by name (Ray's
        references to the model, starts and known states, put once for every group)."""
        fields = {**self.__dict__, **shared}
        return (
            fields["model"], sources, fields["starts"], self.horizon, self.seed, self.allow_code, self.real,
            fields["known"], self.members, self.rules,
        )  # fmt: skip


def _entries_in(
    work: _Pass,
    sources: list[str],
    groups: list[list[int]],
    workers: int | None,
    retries: int,
    progress: bool | Progress,
    label: str,
) -> list[PolicyEntry]:
    """Every policy's entry in one model, its groups run in this process (``workers == 0``) or on Ray."""
    if workers != 0:
        return _evaluate_on_ray(work, sources, groups, retries, progress, label)
    by_row: dict[int, PolicyEntry] = {}
    for rows in _progress(groups, progress, label):
        outcomes = evaluate_group(*work.group_arguments([sources[row] for row in rows]))
        by_row.update(zip(rows, outcomes, strict=True))
    return [by_row[row] for row in range(len(sources))]


def _model_list(model: Any) -> list[Any]:
    """The models a ranking imagines in: a model object, a model folder, a folder of models one per seed
    (``train --seeds``), or a list of any of them."""
    given = list(model) if isinstance(model, list | tuple) else [model]
    if not given:
        raise ImaginariumError("no model to rank in")
    models: list[Any] = []
    for item in given:
        models.extend(model_folders(item) if isinstance(item, str | Path) else [item])
    return models


def _loaded(model: Any, like: Any = None) -> Any:
    """A model of the ranking, loaded where it is a folder, on the CPU and in evaluation mode; checked
    to observe and act as ``like`` (the ranking's first model) does."""
    loaded = load_world_model(model) if isinstance(model, str | Path) else model
    loaded = loaded.cpu().eval()
    if like is not None:
        task, first = (getattr(item, "card", {}) or {} for item in (loaded, like))
        if (
            loaded.input_space != like.input_space
            or loaded.action_space != like.action_space
            or task.get("task") != first.get("task")
        ):
            raise ImaginariumError(
                f"the models of one ranking must be of one task: {str(model)!r} is of "
                f"{task.get('task')!r}, the first of {first.get('task')!r}, or observes or acts otherwise"
            )
    return loaded


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
                cost += sum(item.stat().st_size for item in path.glob("*.pt") if item.name != STATE_FILE)
        except OSError:
            pass  # not a file this process can read: a policy of the call cost alone
    return cost


def _progress(groups: list[list[int]], progress: bool | Progress, label: str) -> Iterator[list[int]]:
    """The groups, one at a time, telling ``progress`` the policies done."""
    with tracking(progress, label, sum(len(rows) for rows in groups)) as bar:
        done = 0
        for rows in groups:
            yield rows
            done += len(rows)
            bar.update(done)


def _evaluate_on_ray(
    work: _Pass,
    sources: list[str],
    groups: list[list[int]],
    retries: int,
    progress: bool | Progress,
    label: str = "policies",
) -> list[PolicyEntry]:
    """Each group of policies one retried Ray task (Ray already started by :func:`rank_policies`). A
    group whose worker keeps dying is split, each policy run alone, so only the one to blame fails."""
    import ray

    # SPREAD: Ray otherwise queues tasks where their arguments (the model) live, the driver's node, and
    # a cluster's other nodes can sit idle while that node works through the groups one by one
    remote = ray.remote(
        num_cpus=1, max_retries=retries, retry_exceptions=False, scheduling_strategy="SPREAD"
    )(_evaluate_group_on_worker)
    shared = {"model": ray.put(work.model), "starts": ray.put(work.starts), "known": ray.put(work.known)}

    def submit(rows: list[int]) -> Any:
        return remote.remote(*work.group_arguments([sources[row] for row in rows], **shared))

    pending = {submit(rows): rows for rows in groups}
    entries: list[PolicyEntry | None] = [None] * len(sources)
    with tracking(progress, label, len(sources)) as bar:
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
                    PolicyEntry(
                        name=sources[rows[0]],
                        path=sources[rows[0]],
                        error=f"worker failed after {retries} retries: {type(error).__name__}: {error}",
                    )
                ]
            for row, entry in zip(rows, results, strict=True):
                entries[row] = entry
            bar.update(sum(entry is not None for entry in entries))
    return [entry for entry in entries if entry is not None]
