"""Offline policy ranking, the part that runs wherever it is sent: a group of policies loaded and
rolled in lockstep in the model from the same real start states (one model call per step for the
whole group, every policy meeting the random draws it would meet alone), optionally on the real
task, and the ranking assembled from the groups' entries with its metrics against real returns.

A policy that fails to load, returns bad actions or raises is reported as failed while the others
are ranked. Where the groups run (this process or Ray) is :mod:`imaginarium.run.rank`.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from imaginarium.allocator import keep_freed_memory
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import imagined_rollouts_lockstep, real_rollouts
from imaginarium.policy import load_policy, policy_name

#: a policy is flagged when more than this share of its imagined states lie outside the model's data
OUTSIDE_FRACTION_WARNING = 0.2


def evaluate_group(
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


def _record_error(entry: dict[str, Any], error: Exception) -> None:
    entry["error"] = f"{type(error).__name__}: {error}"
    entry["traceback"] = "".join(traceback.format_exception(error, limit=4))


def assemble(entries: list[dict[str, Any]], reference: float | None) -> dict[str, Any]:
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
