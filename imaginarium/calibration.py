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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imaginarium.errors import ImaginariumError

#: the interval level rankings use unless told otherwise
DEFAULT_LEVEL = 0.9


@dataclass(frozen=True)
class ReturnEstimate:
    """An estimate of a policy's real mean return with its interval at ``level``.

    :param method: ``ppi`` (real episodes and imagined returns, prediction-powered) or ``real`` (the
        real episodes alone).
    :param weight: the weight ``λ`` the imagined returns were given (0 for ``real``).
    """

    mean: float
    low: float
    high: float
    level: float
    method: str
    real_episodes: int
    weight: float = 0.0

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    return ReturnEstimate(mean, mean - half, mean + half, level, "real", count)


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
    half = _t_quantile(level, count) * np.sqrt(variance)
    return ReturnEstimate(float(mean), float(mean - half), float(mean + half), level, "ppi", count, weight)
