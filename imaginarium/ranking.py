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
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from imaginarium.allocator import keep_freed_memory
from imaginarium.calibration import (
    DEFAULT_LEVEL,
    conformal,
    conformal_off_data,
    prediction_powered,
    real_only,
)
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import Interval, imagined_rollouts_lockstep, real_rollouts
from imaginarium.policy import load_policy, policy_name

#: a policy is flagged when more than this share of its imagined states lie outside the model's data
OUTSIDE_FRACTION_WARNING = 0.2

#: resamples of start states (and of models) behind a ranking's order confidences and, with several
#: models, each policy's interval on its imagined return
CONFIDENCE_DRAWS = 2000

#: the figures of an imagined rollout, present in ``ranking.json`` once a policy was imagined
_IMAGINED_DETAILS = (
    "outside_fraction",
    "member_spread",
    "member_returns",
    "imagined_length",
    "diverged",
    "success_source",
)


#: the arrays a ranking is computed from, which ``ranking.json`` does not hold
_ARRAYS = {"per_start", "real_per_episode", "real_starts", "at_real_starts"}


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
    #: std of the mean imagined return across independently trained models, and each model's mean
    #: (None for one model)
    model_spread: float | None = None
    model_returns: list[float] | None = None
    seconds: float | None = None
    rank: int | None = None
    uncertainty_warning: bool | None = None
    #: the share of resamples (of start states, and of models when there are several) in which this
    #: policy's imagined return stays above the next ranked one's (None for the last)
    order_confidence: float | None = None
    #: the imagined return from each start, of each model: ``(models, starts)``; not written to JSON
    per_start: np.ndarray | None = field(default=None, repr=False)
    #: the real episodes' returns and start states, and the imagined return from each of those starts
    #: of each model ``(models, episodes)``: what the prediction-powered estimate is made of
    real_per_episode: list[float] | None = field(default=None, repr=False)
    real_starts: np.ndarray | None = field(default=None, repr=False)
    at_real_starts: np.ndarray | None = field(default=None, repr=False)

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
            row.update(real_success=self.real_success, model_spread=self.model_spread)
            if self.model_returns is not None:
                row["model_returns"] = self.model_returns
        if self.predicted_real_return is not None:
            row.update(predicted_real_return=self.predicted_real_return, real_interval=self.real_interval)
        if self.interventions is not None:
            row.update(interventions=self.interventions, real_interventions=self.real_interventions)
        if self.seconds is not None:  # a worker that died took the policy's time with it
            row["seconds"] = self.seconds
        if self.rank is not None:
            row.update(
                rank=self.rank,
                uncertainty_warning=self.uncertainty_warning,
                order_confidence=self.order_confidence,
            )
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> PolicyEntry:
        """A row of ``ranking.json`` read back.

        :raises ValueError: a key that is no field of a policy entry.
        """
        names = {item.name for item in fields(cls)} - _ARRAYS
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
    #: independently trained models every policy was imagined in (``model`` names the first)
    models: int = 1
    #: how held-out episodes of the model's data were replayed to calibrate ``predicted_real_return``
    #: where a policy has no real episodes (``episode`` or a segment's steps; None: not calibrated),
    #: and how many were
    calibrate: str | None = None
    held_out_episodes: int | None = None

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
    #: over resamples of the start states (and of the models, with several), the mean share of pairs of
    #: ranked policies whose order holds: 1 when no resample reorders any pair, 0.5 for a coin toss
    ranking_confidence: float | None = None
    #: the share of those resamples in which the first-ranked policy stays first
    top_confidence: float | None = None

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
            "ranking_confidence": self.ranking_confidence,
            "top_confidence": self.top_confidence,
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
            ranking_confidence=data.get("ranking_confidence"),
            top_confidence=data.get("top_confidence"),
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
        entry.per_start = np.asarray([imagined.per_start])
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
        entry = entries[index]
        replay = real.get("replay")
        if replay is not None:  # another model of the ranking ran the real episodes: imagine their starts
            if entry.path in replay:
                _imagine_real_starts(
                    entry, model, policy, replay[entry.path], starts, horizon, seed, members, rules
                )
            seconds[index] += time.perf_counter() - started
            continue
        try:
            outcome = real_rollouts(
                get_task(real["env"]), policy, real["episodes"], seed=seed, pixels=real.get("pixels")
            )
            entry.real_return = outcome.return_
            entry.real_success = outcome.success
            entry.real_interventions = _intervention_share(policy)
        except Exception as error:
            _record_error(entry, error)
            seconds[index] += time.perf_counter() - started
            continue
        entry.real_per_episode = list(outcome.per_episode)
        if len(outcome.per_episode) >= 2:
            _imagine_real_starts(entry, model, policy, outcome.starts, starts, horizon, seed, members, rules)
        predict_real_return(entry, real.get("level", DEFAULT_LEVEL))
        seconds[index] += time.perf_counter() - started
    for entry, spent in zip(entries, seconds, strict=True):
        entry.seconds = spent
    return entries


def _imagine_real_starts(
    entry: PolicyEntry,
    model: Any,
    policy: Any,
    firsts: np.ndarray | None,
    starts: np.ndarray,
    horizon: int,
    seed: int,
    members: str,
    rules: bool,
) -> None:
    """Imagine the policy from its real episodes' own start states (``entry.at_real_starts``), what the
    prediction-powered estimate needs. Nothing for a model of frames (the real episodes start from
    states it cannot start from)."""
    if firsts is None or firsts.shape[1:] != starts.shape[1:]:
        return
    entry.real_starts = firsts
    (at_starts,) = imagined_rollouts_lockstep(
        model, [policy], firsts.astype(starts.dtype), horizon, seed=seed, members=members, rules=rules
    )
    if not isinstance(at_starts, Exception):
        entry.at_real_starts = np.asarray([at_starts.per_start])


def predict_real_return(entry: PolicyEntry, level: float) -> None:
    """Set the prediction-powered estimate of the policy's real return, from its real episodes and the
    returns its models imagined (averaged over the models), beside the real episodes' own interval.
    Nothing without at least 2 real episodes or their imagined starts."""
    entry.predicted_real_return = entry.real_interval = None
    if entry.at_real_starts is None or entry.per_start is None or entry.real_per_episode is None:
        return
    try:
        entry.predicted_real_return = prediction_powered(
            entry.real_per_episode, entry.at_real_starts.mean(0), entry.per_start.mean(0), level
        ).to_json()
        entry.real_interval = real_only(entry.real_per_episode, level).to_json()
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


def combine_models(
    per_model: list[list[PolicyEntry]], level: float = DEFAULT_LEVEL, seed: int = 0
) -> list[PolicyEntry]:
    """One entry per policy from its entries in each of several independently trained models (the same
    policies in the same order, the first model's entries holding the real episodes).

    The imagined return is the mean of the models' means, its 95% interval from resampling models and
    start states together; ``model_spread`` is the models' sample standard deviation. Figures of each
    rollout are averaged over the models (``diverged`` summed, ``member_returns`` of every member of
    every model). A policy that failed in any model failed. With real episodes, the prediction-powered
    estimate uses the returns imagined by all the models.
    """
    if len(per_model) == 1:
        return per_model[0]
    combined: list[PolicyEntry] = []
    for rows in zip(*per_model, strict=True):
        seconds = sum(row.seconds or 0.0 for row in rows)
        broken = next((row for row in rows if row.error is not None), None)
        if broken is not None:
            combined.append(replace(broken, seconds=seconds))
            continue
        means = [row.imagined_return["mean"] for row in rows]
        at_real = [row.at_real_starts for row in rows]
        entry = replace(
            rows[0],
            seconds=seconds,
            per_start=np.concatenate([row.per_start for row in rows]),
            at_real_starts=None if any(item is None for item in at_real) else np.concatenate(at_real),
            model_returns=[float(mean) for mean in means],
            model_spread=float(np.std(means, ddof=1)),
            imagined_success=float(np.mean([row.imagined_success for row in rows])),
            uncertainty=_mean_of([row.uncertainty for row in rows]),
            outside_fraction=_mean_of([row.outside_fraction for row in rows]),
            member_spread=_mean_of([row.member_spread for row in rows]),
            member_returns=[value for row in rows for value in row.member_returns or ()],
            imagined_length=float(np.mean([row.imagined_length for row in rows])),
            diverged=int(sum(row.diverged or 0 for row in rows)),
            interventions=_mean_of([row.interventions for row in rows]),
        )
        predict_real_return(entry, level)
        combined.append(entry)
    imagined = [entry for entry in combined if entry.error is None]
    if imagined:
        draws = resampled_means(np.stack([entry.per_start for entry in imagined]), CONFIDENCE_DRAWS, seed)
        for entry, column in zip(imagined, draws.T, strict=True):
            low, high = np.percentile(column, [2.5, 97.5])
            entry.imagined_return = {
                "mean": float(entry.per_start.mean()),
                "ci_low": float(low),
                "ci_high": float(high),
            }
    return combined


def add_conformal_estimates(
    entries: list[PolicyEntry],
    residuals: np.ndarray,
    level: float = DEFAULT_LEVEL,
    whole: np.ndarray | None = None,
) -> None:
    """Set ``predicted_real_return`` of each imagined policy that has none (no real episodes) to a
    conformal estimate from ``residuals``, the real minus imagined returns of held-out episodes replayed
    in the model(s) (:func:`imaginarium.calibration.conformal`). With ``whole``, the residuals of the
    same episodes replayed whole, ``residuals`` are taken as the segments' and each policy's interval
    moves toward the whole episodes' by its share of states outside the data
    (:func:`imaginarium.calibration.conformal_off_data`). Nothing when there are too few."""
    for entry in entries:
        if entry.error is not None or entry.predicted_real_return is not None:
            continue
        imagined = entry.imagined_return
        if not np.isfinite(imagined["mean"]):  # a model that diverged under it: no estimate at all
            continue
        half = (imagined["ci_high"] - imagined["ci_low"]) / 2
        try:
            if whole is None:
                estimate = conformal(imagined["mean"], residuals, level, half)
            else:
                outside = entry.outside_fraction or 0.0
                estimate = conformal_off_data(imagined["mean"], residuals, whole, outside, level, half)
        except ImaginariumError:  # too few held-out episodes, or their returns not finite
            return
        entry.predicted_real_return = estimate.to_json()


def _mean_of(values: list[float | None]) -> float | None:
    """The mean of the values that are there, None when none is."""
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def resampled_means(per_start: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    """``(draws, policies)`` mean returns of each policy over resamples of models and start states.

    :param per_start: ``(policies, models, starts)`` imagined returns, every policy from the same starts
        in the same models. Each draw resamples the models and the starts with replacement, the same
        ones for every policy (they are compared on common ground); one model is never resampled.
    """
    _, count, starts = per_start.shape
    rng = np.random.default_rng(seed)
    model_weights = (
        np.stack([np.bincount(rng.integers(0, count, count), minlength=count) for _ in range(draws)]) / count
        if count > 1
        else np.ones((draws, 1))
    )
    start_weights = (
        np.stack([np.bincount(rng.integers(0, starts, starts), minlength=starts) for _ in range(draws)])
        / starts
    )
    per_model = np.einsum("pmk,dk->dpm", per_start, start_weights)
    return np.einsum("dpm,dm->dp", per_model, model_weights)


def order_confidence(draws: np.ndarray) -> tuple[list[float], float, float]:
    """How far resampling keeps a ranking's order.

    :param draws: ``(draws, policies)`` resampled mean returns (:func:`resampled_means`), the policies in
        ranked order, best first.
    :returns: for each adjacent pair, the share of draws in which the first stays above the second; the
        mean share of all pairs whose order holds; and the share of draws in which the first policy stays
        first. A tie counts half (a shared first place: one over the policies sharing it).
    """
    adjacent = _above(draws[:, :-1], draws[:, 1:]).mean(0).tolist()
    count = draws.shape[1]
    upper = np.triu(np.ones((count, count), dtype=bool), 1)
    held = 0.0
    for chunk in range(0, len(draws), 64):
        block = draws[chunk : chunk + 64]
        held += _above(block[:, :, None], block[:, None, :])[:, upper].sum()
    pairs = held / (len(draws) * upper.sum())
    best = draws.max(1, keepdims=True)
    sharing = (draws == best).sum(1)
    top = float(np.mean((draws[:, 0] == best[:, 0]) / sharing))
    return adjacent, float(pairs), top


def _above(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """1 where ``first`` is above ``second``, a half where they tie, else 0."""
    return (first > second) + 0.5 * (first == second)


def assemble(entries: list[PolicyEntry], reference: float | None, seed: int = 0) -> RankingResult:
    """Order by imagined return, flag high-uncertainty rollouts, measure how far resampling keeps the
    order (where the entries hold their per-start returns), and compute the metrics against real returns."""
    for entry in entries:
        if entry.error is None and not np.isfinite(entry.imagined_return["mean"]):
            entry.error = "the imagined return is not finite (the model diverged under this policy)"
    ranked = [entry for entry in entries if entry.error is None]
    failed = [entry for entry in entries if entry.error is not None]
    ranked.sort(key=lambda entry: -entry.imagined_return["mean"])
    for entry in entries:  # entries read back or combined may carry an earlier ranking's order
        entry.rank = entry.uncertainty_warning = entry.order_confidence = None
    for position, entry in enumerate(ranked, start=1):
        entry.rank = position
        outside = entry.outside_fraction or 0.0
        entry.uncertainty_warning = bool(outside > OUTSIDE_FRACTION_WARNING or entry.diverged)
    confidence = top = None
    if len(ranked) >= 2 and all(entry.per_start is not None for entry in ranked):
        draws = resampled_means(np.stack([entry.per_start for entry in ranked]), CONFIDENCE_DRAWS, seed)
        adjacent, confidence, top = order_confidence(draws)
        for entry, share in zip(ranked, adjacent, strict=False):
            entry.order_confidence = share
    metrics = None
    with_real = [entry for entry in ranked if entry.real_return is not None]
    if len(with_real) >= 2:
        true = [entry.real_return["mean"] for entry in with_real]
        if np.ptp(true) > 0:
            from imaginarium.metrics import ranking_metrics  # scipy: the driver needs it, workers do not

            metrics = ranking_metrics([entry.imagined_return["mean"] for entry in with_real], true)
    return RankingResult(
        policies=ranked + failed,
        metrics=metrics,
        outside_threshold=reference,
        ranking_confidence=confidence,
        top_confidence=top,
    )
