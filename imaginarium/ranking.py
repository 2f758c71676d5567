"""Offline policy ranking, the part that runs wherever it is sent: a group of policies loaded and
rolled in lockstep in the model from the same real start states (one model call per step for the
whole group, every policy meeting the random draws it would meet alone), optionally on the real
task, and the ranking assembled from the groups' entries with its metrics against real returns.

A policy that fails to load, returns bad actions or raises is reported as failed while the others
are ranked. The result is a :class:`RankingResult` of :class:`PolicyEntry` rows, whose ``to_json``
is what ``ranking.json`` holds. Where the groups run (this process or Ray) is :mod:`imaginarium.run.rank`.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from imaginarium.allocator import keep_freed_memory
from imaginarium.calibration import DEFAULT_LEVEL, prediction_powered, real_only
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import Interval, imagined_rollouts_lockstep, real_rollouts
from imaginarium.policy import load_policy, policy_name

#: a policy is flagged when more than this share of its imagined states lie outside the model's data
OUTSIDE_FRACTION_WARNING = 0.2

#: the figures of an imagined rollout, present in ``ranking.json`` once a policy was imagined
_IMAGINED_DETAILS = (
    "outside_fraction",
    "member_spread",
    "member_returns",
    "imagined_length",
    "diverged",
    "success_source",
)


@dataclass
class PolicyEntry:
    """One policy of a ranking: its figures in the model (and on the real task), or why it failed.

    A policy that failed before it was imagined has only ``name``, ``path``, ``error`` (and ``seconds``,
    unless its worker died); one that failed on the real task keeps its imagined figures. ``rank`` and
    ``uncertainty_warning`` are set for ranked policies alone.
    """

    name: str
    path: str
    error: str | None = None
    #: the failure's stack, for people reading a log; not written to ``ranking.json``
    traceback: str | None = None
    imagined_return: Interval | None = None
    imagined_success: float | None = None
    #: what decided ``imagined_success``: ``rule:<name>`` (the real task's rule on the decoded imagined
    #: states) or ``head`` (the model's success head)
    success_source: str | None = None
    #: mean per-step model uncertainty (None when it is not measured, e.g. one member of an ensemble)
    uncertainty: float | None = None
    #: share of imagined states outside the model's data (None for a model that sees frames)
    outside_fraction: float | None = None
    #: std of the mean return across ensemble members (None for one member)
    member_spread: float | None = None
    member_returns: list[float] | None = None
    imagined_length: float | None = None
    #: imagined rollouts that diverged (a state or reward not finite, or past the data's limits)
    diverged: int | None = None
    real_return: Interval | None = None
    real_success: float | None = None
    #: the real mean return estimated from the real episodes and the model together, prediction-powered
    #: (:mod:`imaginarium.calibration`): ``{"mean", "low", "high", "level", "method", ...}``; None without
    #: at least 2 real episodes or for a model that sees frames
    predicted_real_return: dict[str, Any] | None = None
    #: the real episodes' own interval at the same level, for comparison
    real_interval: dict[str, Any] | None = None
    #: a shield (``shield:``): the share of its decisions where it replaced the policy's action, in
    #: the model and on the real task (None for other policies)
    interventions: float | None = None
    real_interventions: float | None = None
    seconds: float | None = None
    rank: int | None = None
    uncertainty_warning: bool | None = None

    @property
    def imagined(self) -> bool:
        """Whether the policy was rolled in the model (else it failed before)."""
        return self.imagined_return is not None

    def to_json(self) -> dict[str, Any]:
        """The policy's row of ``ranking.json``: the documented schema first (``name``, ``path``, returns,
        success, uncertainty), then the figures this policy has; never the traceback."""
        row: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "imagined_return": self.imagined_return,
            "imagined_success": self.imagined_success,
            "uncertainty": self.uncertainty,
            "real_return": self.real_return,
            "error": self.error,
        }
        if self.imagined:
            row.update({key: getattr(self, key) for key in _IMAGINED_DETAILS})
            row["real_success"] = self.real_success
        if self.predicted_real_return is not None:
            row.update(predicted_real_return=self.predicted_real_return, real_interval=self.real_interval)
        if self.interventions is not None:
            row.update(interventions=self.interventions, real_interventions=self.real_interventions)
        if self.seconds is not None:  # a worker that died took the policy's time with it
            row["seconds"] = self.seconds
        if self.rank is not None:
            row.update(rank=self.rank, uncertainty_warning=self.uncertainty_warning)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> PolicyEntry:
        """A row of ``ranking.json`` read back.

        :raises ValueError: a key that is no field of a policy entry.
        """
        names = {item.name for item in fields(cls)}
        unknown = sorted(set(row) - names)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in a ranking.json policy; expected {sorted(names)}")
        return cls(**row)


@dataclass(frozen=True)
class RankSettings:
    """How a ranking was run, as :func:`imaginarium.run.rank.rank_policies` ran it."""

    starts: int
    horizon: int
    time_limit: int
    #: the horizon is shorter than the task's time limit: imagined returns are truncated
    truncated: bool
    real_env: str | None
    real_episodes: int | None
    seed: int
    allow_code: bool
    #: Ray CPUs used; 0 when it ran in this process
    workers: int | None
    members: str
    seconds: float
    model: str | None
    task: str | None
    #: the task's own termination and reward rules judged the imagined states where known
    rules: bool = False
    #: the level of the intervals on the real return (``predicted_real_return``)
    level: float = DEFAULT_LEVEL

    def to_json(self) -> dict[str, Any]:
        """The ``settings`` of ``ranking.json``."""
        return asdict(self)


@dataclass
class RankingResult:
    """A ranking: its policies (ranked ones by imagined return, failed ones last) and its agreement
    with real returns.

    :param metrics: ranking metrics against real returns (:func:`imaginarium.metrics.ranking_metrics`),
        None without real returns of at least two ranked policies that differ.
    :param outside_threshold: the distance (in std units) beyond which an imagined state counts as
        outside the model's data; None for a model that sees frames.
    :param settings: how it was run (None for a result of :func:`assemble` alone).
    """

    policies: list[PolicyEntry]
    metrics: dict[str, float] | None = None
    outside_threshold: float | None = None
    settings: RankSettings | None = None

    @property
    def ranked(self) -> list[PolicyEntry]:
        """The policies that were ranked, best first."""
        return [entry for entry in self.policies if entry.error is None]

    @property
    def failed(self) -> list[PolicyEntry]:
        """The policies that failed, with their errors."""
        return [entry for entry in self.policies if entry.error is not None]

    @property
    def all_failed(self) -> bool:
        """Whether not one policy could be ranked."""
        return not self.ranked

    @property
    def success_gap(self) -> float | None:
        """Mean absolute difference of imagined and real success rates over the ranked policies that
        have both: how far the success column can be read as the real one (None without them)."""
        pairs = [
            (entry.imagined_success, entry.real_success)
            for entry in self.ranked
            if entry.imagined_success is not None and entry.real_success is not None
        ]
        return float(np.mean([abs(imagined - real) for imagined, real in pairs])) if pairs else None

    def to_json(self) -> dict[str, Any]:
        """What ``ranking.json`` holds."""
        return {
            "policies": [entry.to_json() for entry in self.policies],
            "metrics": self.metrics,
            "settings": self.settings.to_json() if self.settings is not None else {},
            "outside_threshold": self.outside_threshold,
            "success_gap": self.success_gap,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RankingResult:
        """A ranking read back from ``ranking.json`` (tracebacks are not kept there)."""
        settings = data.get("settings") or None
        return cls(
            policies=[PolicyEntry.from_json(row) for row in data["policies"]],
            metrics=data.get("metrics"),
            outside_threshold=data.get("outside_threshold"),
            settings=RankSettings(**settings) if settings is not None else None,
        )


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
    rules: bool = False,
) -> list[PolicyEntry]:
    """Some policies, imagined together in lockstep (and each on the real task): never raises, a
    policy that fails is returned with its error while the others go on."""

    keep_freed_memory()  # a worker's model came unpickled, not built or loaded
    entries = [PolicyEntry(name=policy_name(source), path=str(source)) for source in sources]
    loaded: dict[int, Any] = {}
    imagined_per_start: dict[int, list[float]] = {}
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
            rules=rules,
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
        entry = entries[index]
        imagined_per_start[index] = imagined.per_start
        entry.imagined_return = imagined.return_
        entry.imagined_success = imagined.success
        entry.success_source = imagined.success_source
        entry.uncertainty = imagined.uncertainty
        entry.outside_fraction = imagined.outside_fraction
        entry.member_spread = imagined.member_spread
        entry.member_returns = imagined.member_returns
        entry.imagined_length = imagined.length
        entry.diverged = imagined.diverged
        entry.interventions = _intervention_share(loaded[index])
    for index, policy in loaded.items():
        if real is None:
            continue
        started = time.perf_counter()
        try:
            outcome = real_rollouts(
                get_task(real["env"]), policy, real["episodes"], seed=seed, pixels=real.get("pixels")
            )
            entries[index].real_return = outcome.return_
            entries[index].real_success = outcome.success
            entries[index].real_interventions = _intervention_share(policy)
        except Exception as error:
            _record_error(entries[index], error)
            seconds[index] += time.perf_counter() - started
            continue
        _predict_real_return(
            entries[index], model, policy, outcome, imagined_per_start[index], starts, horizon, seed, members,
            rules, real.get("level", DEFAULT_LEVEL),
        )  # fmt: skip
        seconds[index] += time.perf_counter() - started
    for entry, spent in zip(entries, seconds, strict=True):
        entry.seconds = spent
    return entries


def _predict_real_return(
    entry: PolicyEntry,
    model: Any,
    policy: Any,
    outcome: Any,
    imagined: list[float],
    starts: np.ndarray,
    horizon: int,
    seed: int,
    members: str,
    rules: bool,
    level: float,
) -> None:
    """Imagine the policy from its real episodes' own starts and set the prediction-powered estimate of
    its real return beside the real episodes' own interval. Nothing for a model of frames (the real
    episodes start from states it cannot start from) or fewer than 2 real episodes."""
    firsts = outcome.starts
    if len(outcome.per_episode) < 2 or firsts is None or firsts.shape[1:] != starts.shape[1:]:
        return
    (at_starts,) = imagined_rollouts_lockstep(
        model, [policy], firsts.astype(starts.dtype), horizon, seed=seed, members=members, rules=rules
    )
    if isinstance(at_starts, Exception):
        return
    try:
        entry.predicted_real_return = prediction_powered(
            outcome.per_episode, at_starts.per_start, imagined, level
        ).to_json()
        entry.real_interval = real_only(outcome.per_episode, level).to_json()
    except ImaginariumError:  # imagined returns not finite: no estimate rather than a wrong one
        entry.predicted_real_return = entry.real_interval = None


def _intervention_share(policy: Any) -> float | None:
    """The share of a shield's decisions since the last call where it replaced the policy's action
    (its counts start again), or None for a policy that is no shield."""
    if not hasattr(policy, "interventions"):
        return None
    share = policy.interventions / max(1, policy.decisions)
    policy.interventions = policy.decisions = 0
    return share


def _record_error(entry: PolicyEntry, error: Exception) -> None:
    entry.error = f"{type(error).__name__}: {error}"
    entry.traceback = "".join(traceback.format_exception(error, limit=4))


def assemble(entries: list[PolicyEntry], reference: float | None) -> RankingResult:
    """Order by imagined return, flag high-uncertainty rollouts, and compute the metrics against real returns."""
    for entry in entries:
        if entry.error is None and not np.isfinite(entry.imagined_return["mean"]):
            entry.error = "the imagined return is not finite (the model diverged under this policy)"
    ranked = [entry for entry in entries if entry.error is None]
    failed = [entry for entry in entries if entry.error is not None]
    ranked.sort(key=lambda entry: -entry.imagined_return["mean"])
    for position, entry in enumerate(ranked, start=1):
        entry.rank = position
        outside = entry.outside_fraction or 0.0
        entry.uncertainty_warning = bool(outside > OUTSIDE_FRACTION_WARNING or entry.diverged)
    metrics = None
    with_real = [entry for entry in ranked if entry.real_return is not None]
    if len(with_real) >= 2:
        true = [entry.real_return["mean"] for entry in with_real]
        if np.ptp(true) > 0:
            from imaginarium.metrics import ranking_metrics  # scipy: the driver needs it, workers do not

            metrics = ranking_metrics([entry.imagined_return["mean"] for entry in with_real], true)
    return RankingResult(policies=ranked + failed, metrics=metrics, outside_threshold=reference)
