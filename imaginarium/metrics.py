"""Offline policy-ranking metrics, as the DOPE benchmark defines them (and MMRV as SIMPLER does).

True and estimated values are first normalised by the true worst and best policy values, so every
figure reads on the same scale across tasks::

    ranking_metrics(estimated=[..], true=[..])
    # {"spearman", "kendall", "pearson", "regret_at_1", "regret_at_3", "abs_error", "mmrv"}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from imaginarium.errors import ImaginariumError


def normalise(values: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``values`` on the scale where the true worst policy is 0 and the true best is 1."""
    worst, best = float(np.min(true)), float(np.max(true))
    return (values - worst) / (best - worst)


def regret_at_k(estimated: np.ndarray, true: np.ndarray, k: int) -> float:
    """(best true value − best true value among the top-``k`` estimated) / (best − worst)."""
    top = np.argsort(-estimated, kind="stable")[:k]
    return float((np.max(true) - np.max(true[top])) / (np.max(true) - np.min(true)))


def mmrv(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean maximum rank violation: for each policy, the largest normalised true gap among the pairs
    it forms that the estimate orders wrongly (0 when none), averaged over policies."""
    scaled = normalise(true, true)
    gaps = np.abs(scaled[:, None] - scaled[None, :])
    wrong = np.sign(estimated[:, None] - estimated[None, :]) != np.sign(true[:, None] - true[None, :])
    return float(np.where(wrong, gaps, 0.0).max(axis=1).mean())


def ranking_metrics(estimated: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """Spearman, Kendall τ, Pearson r, regret@1 and @3, mean absolute error and MMRV.

    :raises ImaginariumError: fewer than two policies, lengths that differ, non-finite values, or
        true values that are all equal (nothing to rank against).
    """
    estimated_values = np.asarray(estimated, dtype=np.float64)
    true_values = np.asarray(true, dtype=np.float64)
    if estimated_values.shape != true_values.shape or estimated_values.ndim != 1:
        raise ImaginariumError(
            f"estimated and true values must be two lists of one length, got {estimated_values.shape} "
            f"and {true_values.shape}"
        )
    if len(true_values) < 2:
        raise ImaginariumError(f"ranking needs at least two policies, got {len(true_values)}")
    if not (np.isfinite(estimated_values).all() and np.isfinite(true_values).all()):
        raise ImaginariumError("ranking metrics need finite values")
    if np.ptp(true_values) == 0:
        raise ImaginariumError("every policy has the same true value: there is no ranking to agree with")

    def correlation(function) -> float:
        if np.ptp(estimated_values) == 0:
            return 0.0  # a constant estimate orders nothing
        return float(function(estimated_values, true_values)[0])

    return {
        "spearman": correlation(stats.spearmanr),
        "kendall": correlation(stats.kendalltau),
        "pearson": correlation(stats.pearsonr),
        "regret_at_1": regret_at_k(estimated_values, true_values, 1),
        "regret_at_3": regret_at_k(estimated_values, true_values, 3),
        "abs_error": float(
            np.mean(np.abs(normalise(estimated_values, true_values) - normalise(true_values, true_values)))
        ),
        "mmrv": mmrv(estimated_values, true_values),
    }
