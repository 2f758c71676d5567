"""Closed-loop fidelity: a policy on the real task and in the model from the same starts, compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imaginarium.cli import main
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import _departure, closed_loop_fidelity
from imaginarium.models import load_world_model


def test_the_departure_step_is_where_the_gap_first_passes_the_tolerance() -> None:
    real = np.zeros((6, 2))
    imagined = np.array([[0, 0], [0.5, 0], [0.5, 0.5], [2, 0], [0, 0], [0, 0]], dtype=float)
    assert _departure(imagined, real, np.ones(2), tolerance=1.0) == 3
    assert _departure(imagined[:3], real, np.ones(2), tolerance=1.0) == 2  # never: the shorter one's steps
    imagined[1] = np.nan
    assert _departure(imagined, real, np.ones(2), tolerance=1.0) == 1


def test_imagined_episodes_start_where_the_real_ones_did(pendulum_model: Path) -> None:
    model = load_world_model(pendulum_model)
    task = get_task("pendulum", max_episode_steps=20)
    figures = closed_loop_fidelity(model, task, ["random", "random@noise=0.5"], episodes=2, seed=3)
    assert [row.policy for row in figures.policies] == ["random", "random@noise=0.5"]
    for row in figures.policies:
        assert row.real_length == 20 and 1 <= row.imagined_length <= 20
        assert all(0 <= step <= 20 for step in row.departures) and len(row.departures) == 2
    assert list(figures.to_json()) == ["tolerance", "episodes", "policies", "normalised_absolute_error"]
    with pytest.raises(Exception, match="episodes"):
        closed_loop_fidelity(model, task, ["random"], episodes=0)


def test_evaluate_model_adds_closed_loop_figures_from_the_command_line(
    pendulum_model: Path, pendulum_dataset_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fidelity"
    code = main(["evaluate-model", str(pendulum_model), "--data", str(pendulum_dataset_path), "--out", str(out)]
                + ["--horizon", "5", "--starts", "4", "--policies", "random", "--episodes", "2"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "fidelity.json").read_text())
    assert report["closed_loop"]["policies"][0]["policy"] == "random" and "summary" in report
