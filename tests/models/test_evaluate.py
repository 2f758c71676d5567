from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from imaginarium.dataset import Dataset
from imaginarium.errors import ModelError
from imaginarium.models.checkpoint import read_card
from imaginarium.models.evaluate import auc, evaluate_model, held_out_episodes, open_loop_errors


@pytest.fixture(scope="module")
def ensemble_dir(pendulum_model: Path) -> Path:
    return pendulum_model


def test_auc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.4
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(scores[labels], scores[~labels])]
    assert auc(scores, labels) == pytest.approx(np.mean(pairs))
    assert auc(scores, np.ones(60, bool)) is None


def test_evaluation_writes_figures_plot_and_card(ensemble_dir: Path, pendulum_dataset_path: Path) -> None:
    from imaginarium.run.pipeline import evaluate_fidelity

    report = evaluate_model(ensemble_dir, pendulum_dataset_path, horizon=20, starts=64)
    saved = json.loads((ensemble_dir / "fidelity.json").read_text())
    assert saved["summary"] == report["summary"]
    assert not (ensemble_dir / "fidelity.png").exists()  # the models layer draws nothing
    drawn = evaluate_fidelity(ensemble_dir, pendulum_dataset_path, overwrite=True, horizon=20, starts=64)
    assert drawn["summary"] == report["summary"]
    assert (ensemble_dir / "fidelity.png").stat().st_size > 10_000
    summary = read_card(ensemble_dir)["fidelity"]
    assert summary["held_out"].startswith("validation episodes")
    assert len(report["open_loop"]["nmse"]) == 20 and len(report["open_loop"]["nmse_per_dim"][0]) == 3
    assert summary["nmse_at_1"] < summary["repeat_last_nmse_at_1"]
    assert summary["reward_r2"] > 0.5


def test_a_bfloat16_evaluation_measures_that_format_and_leaves_the_card_alone(
    ensemble_dir: Path, pendulum_dataset_path: Path, tmp_path: Path
) -> None:
    exact = evaluate_model(ensemble_dir, pendulum_dataset_path, horizon=20, starts=64, out=tmp_path / "a")
    card = read_card(ensemble_dir)["fidelity"]
    low = evaluate_model(
        ensemble_dir, pendulum_dataset_path, horizon=20, starts=64, out=tmp_path / "b", precision="bfloat16"
    )
    assert exact["summary"]["precision"] == "float32" and low["summary"]["precision"] == "bfloat16"
    assert low["open_loop"]["nmse"] != exact["open_loop"]["nmse"]
    assert low["summary"]["nmse_at_10"] == pytest.approx(exact["summary"]["nmse_at_10"], rel=0.5)
    assert read_card(ensemble_dir)["fidelity"] == card


def test_repeat_last_baseline_is_the_error_of_predicting_no_change(
    ensemble_dir, pendulum_dataset: Dataset
) -> None:
    from imaginarium.models import load_world_model

    model = load_world_model(ensemble_dir)
    held_out, _ = held_out_episodes(model, pendulum_dataset)
    errors = open_loop_errors(model, held_out, horizon=1, starts=10_000, context=1)
    variance = np.concatenate([held_out.observations, held_out.next_observations]).var(0)
    expected = ((held_out.next_observations - held_out.observations) ** 2 / variance).mean()
    assert errors["repeat_last_nmse"][0] == pytest.approx(expected, rel=1e-6)
    assert errors["count"][0] == held_out.num_steps


def test_evaluating_on_another_task_is_refused(ensemble_dir: Path, cartpole_dataset_path: Path) -> None:
    with pytest.raises(ModelError, match="not on 'cartpole'"):
        evaluate_model(ensemble_dir, cartpole_dataset_path)


@pytest.mark.parametrize("option", ["horizon", "starts", "context"])
def test_non_positive_evaluation_options_are_refused(
    ensemble_dir: Path, pendulum_dataset_path: Path, option: str
) -> None:
    from imaginarium.errors import ImaginariumError

    with pytest.raises(ImaginariumError, match=f"{option} must be a positive integer"):
        evaluate_model(ensemble_dir, pendulum_dataset_path, **{option: 0})


def test_visual_fidelity_compares_drawn_frames_and_degrades_with_the_horizon(
    ensemble_dir: Path, pendulum_dataset_path: Path, tmp_path: Path
) -> None:
    report = evaluate_model(
        ensemble_dir, pendulum_dataset_path, horizon=20, starts=32, visual=True, out=tmp_path
    )
    visual = report["visual"]
    assert len(visual["psnr"]) == 20 and len(visual["ssim"]) == 20 and visual["size"] == 64
    assert all(10 < psnr <= 100 for psnr in visual["psnr"]) and all(-1 <= s <= 1 for s in visual["ssim"])
    assert visual["ssim"][0] > 0.9  # one step ahead the pendulum is drawn almost where it really is
    assert np.mean(visual["psnr"][:3]) > np.mean(visual["psnr"][-3:])  # open-loop error grows
    assert report["summary"]["psnr_at_1"] == visual["psnr"][0]
    assert json.loads((tmp_path / "fidelity.json").read_text())["visual"]["ssim"] == visual["ssim"]
