"""Prediction-powered estimates of a real return: unbiased whatever the model's bias, narrower where it helps."""

from __future__ import annotations

import numpy as np
import pytest

from imaginarium.calibration import (
    conformal,
    conformal_needs,
    conformal_off_data,
    prediction_powered,
    real_only,
)
from imaginarium.errors import ImaginariumError


def _draws(rng: np.random.Generator, count: int, noise: float, bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Real returns of episodes from random starts, and a model's from the same starts: the start
    explains most of the real return; the model sees the start, is off by ``bias`` and ``noise``."""
    starts = rng.normal(size=count)
    real = 100 + 30 * starts + rng.normal(scale=5, size=count)
    return real, 0.7 * (100 + 30 * starts) + bias + rng.normal(scale=noise, size=count)


@pytest.mark.parametrize("episodes", [3, 10])
def test_intervals_cover_the_real_mean_however_biased_the_model(episodes: int) -> None:
    rng = np.random.default_rng(0)
    covered, widths, real_widths = [], [], []
    for _ in range(2000):
        real, at_starts = _draws(rng, episodes, noise=3, bias=-60)
        _, imagined = _draws(rng, 64, noise=3, bias=-60)
        estimate = prediction_powered(real, at_starts, imagined, level=0.9)
        covered.append(estimate.low <= 100 <= estimate.high)
        widths.append(estimate.width)
        real_widths.append(real_only(real, level=0.9).width)
    assert 0.87 <= np.mean(covered) <= 0.95
    assert np.mean(widths) < 0.6 * np.mean(real_widths)  # the model's returns track the real ones


def test_a_model_that_tracks_nothing_costs_little() -> None:
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(500):
        real = rng.normal(100, 30, size=10)
        estimate = prediction_powered(real, rng.normal(size=10), rng.normal(size=64), level=0.9)
        ratios.append(estimate.width / real_only(real, level=0.9).width)
    assert np.median(ratios) < 1.1


def test_bad_inputs_are_refused_by_name() -> None:
    with pytest.raises(ImaginariumError, match="at least 2 real episodes"):
        prediction_powered([1.0], [1.0], [1.0, 2.0])
    with pytest.raises(ImaginariumError, match="as many imagined"):
        prediction_powered([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ImaginariumError, match="level"):
        real_only([1.0, 2.0], level=1.5)
    with pytest.raises(ImaginariumError, match="finite"):
        prediction_powered([1.0, 2.0], [1.0, np.nan], [1.0, 2.0])


def test_conformal_intervals_cover_a_new_episode_as_often_as_their_level_says() -> None:
    rng = np.random.default_rng(2)
    covered = []
    for _ in range(4000):
        # the model is 40 too low and off by episode: the residuals say so, and a new episode is like them
        residuals = 40 + rng.standard_t(3, size=25) * 10
        fresh = 40 + rng.standard_t(3) * 10
        estimate = conformal(100.0, residuals, level=0.9)
        covered.append(estimate.low <= 100.0 + fresh <= estimate.high)
    assert 0.89 <= np.mean(covered) <= 0.95  # split conformal: at least the level, at most a little over
    assert estimate.mean == pytest.approx(100 + np.median(residuals))
    assert estimate.method == "conformal" and estimate.held_out == 25
    assert estimate.dominant == "model error on held-out episodes"


def test_conformal_needs_enough_residuals_and_widens_by_the_imagined_returns_own_noise() -> None:
    assert conformal_needs(0.9) == 19 and conformal_needs(0.8) == 9
    with pytest.raises(ImaginariumError, match="at least 19"):
        conformal(0.0, np.zeros(18), level=0.9)
    tight = conformal(0.0, np.arange(19.0), level=0.9)
    assert (tight.low, tight.high) == (0.0, 18.0)  # the smallest and largest of 19
    wide = conformal(0.0, np.arange(19.0), level=0.9, imagined_half=12.0)
    assert wide.high - wide.low == pytest.approx(2 * np.hypot(9.0, 12.0))
    assert wide.dominant == "imagined starts"


def test_a_policy_off_the_data_is_held_to_the_whole_episodes_error() -> None:
    rng = np.random.default_rng(3)
    segments, whole = rng.normal(0, 1, size=40), rng.normal(-50, 30, size=40)
    inside = conformal_off_data(100.0, segments, whole, outside=0.0)
    outside = conformal_off_data(100.0, segments, whole, outside=1.0)
    halfway = conformal_off_data(100.0, segments, whole, outside=0.5)
    assert (inside.low, inside.high) == (conformal(100.0, segments).low, conformal(100.0, segments).high)
    assert (outside.low, outside.high) == (conformal(100.0, whole).low, conformal(100.0, whole).high)
    assert halfway.low == pytest.approx((inside.low + outside.low) / 2)
    assert inside.dominant == "model error in the data" and outside.dominant == "model error off the data"
