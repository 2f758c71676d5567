from __future__ import annotations

import numpy as np
import pytest

from imaginarium.errors import ImaginariumError
from imaginarium.metrics import mmrv, ranking_metrics, regret_at_k

TRUE = np.array([0.0, 10.0, 20.0, 30.0, 40.0])


def test_a_perfect_estimate_on_another_scale_scores_perfectly_on_order_but_not_on_error() -> None:
    figures = ranking_metrics(TRUE * 2 + 5, TRUE)
    assert figures["spearman"] == pytest.approx(1.0) and figures["kendall"] == pytest.approx(1.0)
    assert figures["pearson"] == pytest.approx(1.0)
    assert figures["regret_at_1"] == 0.0 and figures["regret_at_3"] == 0.0 and figures["mmrv"] == 0.0
    # normalised by the true range 40: estimates are off by (v + 5) / 40 for v = 0, 10, ..., 40
    assert figures["abs_error"] == pytest.approx(np.mean((TRUE + 5) / 40))


def test_a_reversed_estimate_has_full_regret_and_negative_correlation() -> None:
    figures = ranking_metrics(-TRUE, TRUE)
    assert figures["spearman"] == pytest.approx(-1.0) and figures["kendall"] == pytest.approx(-1.0)
    assert figures["regret_at_1"] == 1.0
    assert figures["regret_at_3"] == pytest.approx(0.5)  # top 3 estimated are the true 0, 10, 20
    # every policy's worst violated pair: the ends 1.0, then 0.75, 0.5 (the middle), 0.75, 1.0
    assert figures["mmrv"] == pytest.approx(np.mean([1.0, 0.75, 0.5, 0.75, 1.0]))


def test_one_swapped_pair_costs_regret_and_mmrv_by_the_size_of_its_gap() -> None:
    estimated = np.array([0.0, 10.0, 20.0, 45.0, 40.0])  # the two best swapped
    assert regret_at_k(estimated, TRUE, 1) == pytest.approx(0.25)
    assert regret_at_k(estimated, TRUE, 3) == 0.0
    assert mmrv(estimated, TRUE) == pytest.approx(2 * 0.25 / 5)


def test_inputs_with_nothing_to_rank_are_refused() -> None:
    with pytest.raises(ImaginariumError, match="at least two"):
        ranking_metrics([1.0], [1.0])
    with pytest.raises(ImaginariumError, match="same true value"):
        ranking_metrics([1.0, 2.0], [3.0, 3.0])
    with pytest.raises(ImaginariumError, match="finite"):
        ranking_metrics([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ImaginariumError, match="one length"):
        ranking_metrics([1.0, 2.0, 3.0], [1.0, 2.0])
