"""Estimates of a policy's real return that say how far to trust them (issue #24).

With a few real episodes, the model's imagined returns and the real ones combine into an estimate that
stays unbiased for the real return, however biased the model, with an interval narrower than the real
episodes give alone wherever the model's returns track the real ones from start to start: prediction-
powered inference (Angelopoulos, Bates, Fannjiang, Jordan & Zrnic, 2023), in its power-tuned form
(PPI++, Angelopoulos, Duchi & Zrnic, 2023), which is never wider than the real episodes alone in
large samples.

For a policy with ``m`` real episodes of returns ``Y`` from start states ``X`` (the real env's own
starts), the model's return imagined from each of those same starts ``f(X)``, and the model's return
imagined from ``N`` other real start states ``f(X~)`` (the ranking's)::

    estimate = mean(Y) + λ · (mean(f(X~)) − mean(f(X)))
    λ        = Cov(Y, f(X)) / ((1 + m/N) · Var(f(X))), held in [0, 1]
    se²      = Var(Y − λ f(X)) / m + λ² Var(f(X~)) / N

and the interval is ``estimate ± t · se`` with Student's ``t`` at ``m − 1`` degrees of freedom (the
rectifier's variance is estimated from ``m`` episodes; with a handful, a normal quantile would
under-cover). ``λ = 0`` is the real episodes alone; ``λ = 1`` is classical PPI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imaginarium.errors import ImaginariumError

#: the interval level rankings use unless told otherwise
DEFAULT_LEVEL = 0.9

#: what ``1 - 0.9`` and the like lose to floating point, kept off the order statistics' ranks
_ROUNDING = 1e-9


@dataclass(frozen=True)
class ReturnEstimate:
    """An estimate of a policy's real mean return with its interval at ``level``.

    :param method: ``ppi`` (real episodes and imagined returns, prediction-powered), ``real`` (the
        real episodes alone) or ``conformal`` (the imagined return, corrected and widened by the model's
        errors on held-out episodes of its data: no real episode of the policy).
    :param weight: the weight ``λ`` the imagined returns were given (0 for ``real``).
    :param sources: each source of error's share of the interval, as the half-width it alone would give
        (e.g. ``{"real episodes": 12.0, "imagined starts": 3.1}``); ``dominant`` names the largest.
    :param held_out: held-out episodes behind a ``conformal`` interval.
    """

    mean: float
    low: float
    high: float
    level: float
    method: str
    real_episodes: int
    weight: float = 0.0
    sources: dict[str, float] = field(default_factory=dict)
    held_out: int = 0

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def dominant(self) -> str | None:
        """The source of error that alone would give the widest interval (None when none is known)."""
        return max(self.sources, key=self.sources.__getitem__) if self.sources else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dominant": self.dominant}


def _t_quantile(level: float, count: int) -> float:
    """Student's ``t`` for a two-sided ``level`` interval from ``count`` values (scipy is imported here,
    not with the module: ranking workers import this module and need scipy only with real episodes)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, count - 1))


def _check(level: float, real: np.ndarray) -> None:
    if not 0 < level < 1:
        raise ImaginariumError(f"the interval level must be in (0, 1), got {level}")
    if len(real) < 2:
        raise ImaginariumError(f"an interval needs at least 2 real episodes, got {len(real)}")
    if not np.isfinite(real).all():
        raise ImaginariumError("real returns must be finite")


def real_only(real: np.ndarray | list[float], level: float = DEFAULT_LEVEL) -> ReturnEstimate:
    """The real episodes' mean with Student's ``t`` interval: what the real system alone says."""
    values = np.asarray(real, dtype=np.float64)
    _check(level, values)
    count = len(values)
    half = _t_quantile(level, count) * values.std(ddof=1) / np.sqrt(count)
    mean = float(values.mean())
    return ReturnEstimate(
        mean, mean - half, mean + half, level, "real", count, sources={"real episodes": half}
    )


def prediction_powered(
    real: np.ndarray | list[float],
    imagined_at_real_starts: np.ndarray | list[float],
    imagined: np.ndarray | list[float],
    level: float = DEFAULT_LEVEL,
) -> ReturnEstimate:
    """The power-tuned prediction-powered estimate of the real mean return (module docstring).

    :param real: ``(m,)`` real episodes' returns.
    :param imagined_at_real_starts: ``(m,)`` the model's return imagined from each of those episodes'
        start states, in the same order.
    :param imagined: ``(N,)`` the model's return imagined from other real start states.
    :raises ImaginariumError: fewer than 2 real episodes, mismatched lengths, values not finite, or a
        level outside (0, 1).
    """
    labelled = np.asarray(real, dtype=np.float64)
    predicted = np.asarray(imagined_at_real_starts, dtype=np.float64)
    unlabelled = np.asarray(imagined, dtype=np.float64)
    _check(level, labelled)
    if predicted.shape != labelled.shape:
        raise ImaginariumError(
            f"{len(labelled)} real returns need as many imagined from their starts, got {len(predicted)}"
        )
    if len(unlabelled) < 2 or not (np.isfinite(predicted).all() and np.isfinite(unlabelled).all()):
        raise ImaginariumError("imagined returns must be finite, and at least 2 of them from other starts")
    count, others = len(labelled), len(unlabelled)
    spread = predicted.var(ddof=1)
    weight = 0.0
    if spread > 0:
        covariance = np.cov(labelled, predicted, ddof=1)[0, 1]
        weight = float(np.clip(covariance / ((1 + count / others) * spread), 0.0, 1.0))
    mean = labelled.mean() + weight * (unlabelled.mean() - predicted.mean())
    variance = (labelled - weight * predicted).var(ddof=1) / count + weight**2 * unlabelled.var(
        ddof=1
    ) / others
    quantile = _t_quantile(level, count)
    half = quantile * np.sqrt(variance)
    sources = {
        "real episodes": float(quantile * (labelled - weight * predicted).std(ddof=1) / np.sqrt(count)),
        "imagined starts": float(quantile * weight * unlabelled.std(ddof=1) / np.sqrt(others)),
    }
    return ReturnEstimate(
        float(mean), float(mean - half), float(mean + half), level, "ppi", count, weight, sources
    )


def conformal_needs(level: float) -> int:
    """The fewest held-out episodes a split-conformal interval at ``level`` needs to be finite."""
    return int(np.ceil(2 / (1 - level) - _ROUNDING)) - 1


def conformal(
    imagined: float,
    residuals: np.ndarray | list[float],
    level: float = DEFAULT_LEVEL,
    imagined_half: float = 0.0,
) -> ReturnEstimate:
    """The real return of a policy with no real episodes: its imagined return, corrected and widened by
    how far the model's imagined returns fell from the real ones on held-out episodes of its data.

    Split conformal prediction (Vovk et al., 2005; Lei et al., 2018): of the ``n`` residuals (real minus
    imagined return of each held-out episode, its logged actions replayed in the model from its first
    state), the ``⌊(n + 1)α/2⌋``-th smallest and ``⌈(n + 1)(1 − α/2)⌉``-th smallest bound the interval,
    ``α = 1 − level``; the estimate is the imagined return plus the median residual. The imagined
    return's own uncertainty (``imagined_half``, from the start states it was averaged over) is added to
    the half-width in quadrature. Valid for a policy whose error in the model is like the held-out
    episodes' (exchangeable with them); a policy that goes where the data never went can err more,
    which the ranking's ``outside_fraction`` tells.

    :raises ImaginariumError: too few residuals for ``level`` (:func:`conformal_needs`), values not
        finite, or a level outside (0, 1).
    """
    values = np.sort(np.asarray(residuals, dtype=np.float64))
    if not 0 < level < 1:
        raise ImaginariumError(f"the interval level must be in (0, 1), got {level}")
    if len(values) < conformal_needs(level) or not np.isfinite(values).all() or not np.isfinite(imagined):
        raise ImaginariumError(
            f"a {100 * level:g}% conformal interval needs at least {conformal_needs(level)} finite residuals "
            f"of held-out episodes, got {len(values)}"
        )
    count, alpha = len(values), 1 - level
    low = values[int(np.floor((count + 1) * alpha / 2 + _ROUNDING)) - 1]
    high = values[int(np.ceil((count + 1) * (1 - alpha / 2) - _ROUNDING)) - 1]
    half = (high - low) / 2
    widened = float(np.hypot(half, imagined_half)) - half
    return ReturnEstimate(
        float(imagined + np.median(values)),
        float(imagined + low - widened),
        float(imagined + high + widened),
        level,
        "conformal",
        0,
        sources={"model error on held-out episodes": float(half), "imagined starts": float(imagined_half)},
        held_out=count,
    )


def conformal_off_data(
    imagined: float,
    segment_residuals: np.ndarray | list[float],
    episode_residuals: np.ndarray | list[float],
    outside: float,
    level: float = DEFAULT_LEVEL,
    imagined_half: float = 0.0,
) -> ReturnEstimate:
    """A conformal estimate for a policy that leaves the data a share ``outside`` of the time.

    Held-out episodes replayed in short segments, each from its real state, measure the model's error
    where it has data (its reward and short-range dynamics); replayed whole, they also measure the
    compounding error of long imagined stretches. A policy whose imagined states stay in the data is
    held to the first; one that leaves it, to the second in proportion: both ends of the interval and
    the estimate move from the segments' :func:`conformal` estimate toward the whole episodes' by
    ``outside`` (in [0, 1]).

    :raises ImaginariumError: as :func:`conformal`, for either set of residuals.
    """
    near = conformal(imagined, segment_residuals, level, imagined_half)
    far = conformal(imagined, episode_residuals, level, imagined_half)
    share = float(np.clip(outside, 0.0, 1.0))

    def blend(first: float, second: float) -> float:
        return (1 - share) * first + share * second

    return ReturnEstimate(
        blend(near.mean, far.mean),
        blend(near.low, far.low),
        blend(near.high, far.high),
        level,
        "conformal",
        0,
        sources={
            "model error in the data": (1 - share) * near.sources["model error on held-out episodes"],
            "model error off the data": share * far.sources["model error on held-out episodes"],
            "imagined starts": imagined_half,
        },
        held_out=min(near.held_out, far.held_out),
    )
