"""Rankings over several independently trained models, and how far resampling keeps a ranking's order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imaginarium.cli import main
from imaginarium.collect import collect
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError, ModelError
from imaginarium.evaluation import real_rollouts
from imaginarium.models import load_world_model, model_folders
from imaginarium.policy import load_policy
from imaginarium.ranking import PolicyEntry, assemble, combine_models, order_confidence, resampled_means
from imaginarium.report import markdown_report
from imaginarium.run.rank import rank_policies


def _entry(name: str, per_start: list[float]) -> PolicyEntry:
    """A policy as one model's group gives it: its return from each start."""
    values = np.asarray(per_start, dtype=float)
    return PolicyEntry(
        name=name,
        path=name,
        imagined_return={"mean": float(values.mean()), "ci_low": 0.0, "ci_high": 0.0},
        imagined_success=0.0,
        member_returns=[float(values.mean())],
        imagined_length=10.0,
        diverged=0,
        per_start=values[None],
        seconds=1.0,
    )


def test_order_confidence_tells_separated_policies_from_a_coin_toss() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=32)
    high = _entry("high", list(10 + noise))
    low, twin = _entry("low", list(noise)), _entry("twin", list(noise))
    result = assemble([low, twin, high], reference=None)
    assert [entry.name for entry in result.ranked][0] == "high"
    first, second, last = result.ranked
    assert first.order_confidence == 1.0 and second.order_confidence == 0.5 and last.order_confidence is None
    assert result.top_confidence == 1.0
    assert result.ranking_confidence == pytest.approx((1 + 1 + 0.5) / 3)


def test_close_policies_keep_their_order_only_as_often_as_resampling_says() -> None:
    rng = np.random.default_rng(1)
    common = rng.normal(size=(1, 1, 64)) * 5
    # two policies a tenth of a standard error apart, differing start by start
    per_start = common + np.stack([rng.normal(size=(1, 64)), rng.normal(size=(1, 64))])
    draws = resampled_means(per_start, 2000, seed=0)
    order = np.argsort(-per_start.mean(axis=(1, 2)))
    adjacent, pairs, top = order_confidence(draws[:, order])
    assert 0.5 < adjacent[0] < 1.0 and pairs == adjacent[0] and top == pytest.approx(adjacent[0])


def test_models_that_disagree_widen_the_interval_and_a_policy_failing_in_one_fails() -> None:
    starts = np.linspace(-1, 1, 16)
    first = [_entry("a", list(100 + starts)), _entry("b", list(50 + starts)), _entry("c", list(starts))]
    second = [_entry("a", list(140 + starts)), _entry("b", list(51 + starts)), _entry("c", list(starts))]
    second[2].error = "RuntimeError: broke"
    combined = combine_models([first, second])
    a, b, c = combined
    assert a.model_returns == [pytest.approx(100), pytest.approx(140)]
    assert a.model_spread == pytest.approx(np.std([100, 140], ddof=1))
    assert a.imagined_return["mean"] == pytest.approx(120)
    width = {
        entry.name: entry.imagined_return["ci_high"] - entry.imagined_return["ci_low"] for entry in (a, b)
    }
    assert width["a"] > 10 * width["b"]  # the models' disagreement, not the starts', sets a's interval
    assert c.error == "RuntimeError: broke" and c.seconds == 2.0
    assert a.per_start.shape == (2, 16) and len(a.member_returns) == 2


def test_a_ranking_refuses_models_of_different_tasks(
    pendulum_model: Path, cartpole_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImaginariumError, match="of one task"):
        rank_policies([pendulum_model, cartpole_model], ["random"], starts=2, workers=0, progress=False)
    with pytest.raises(ModelError, match="not a model folder"):
        model_folders(tmp_path)


@pytest.fixture(scope="module")
def seed_models(tmp_path_factory: pytest.TempPathFactory, pendulum_dataset_path: Path) -> Path:
    """Two small pendulum models trained from the command line with ``train --seeds 2``."""
    out = tmp_path_factory.mktemp("models") / "pendulum"
    argv = ["train", "--data", str(pendulum_dataset_path), "--preset", "xs", "--steps", "60", "--seeds", "2"]
    assert main([*argv, "--out", str(out), "--set", "batch_size=32", "--no-progress"]) == 0
    return out


def test_train_seeds_writes_one_model_per_seed_and_rank_uses_them_all(
    seed_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = model_folders(seed_models)
    assert [folder.name for folder in folders] == ["seed-0", "seed-1"]
    splits = [load_world_model(folder).card["train_config"]["seed"] for folder in folders]
    assert splits == [0, 1]
    with pytest.raises(ModelError, match="holds 2 models"):
        load_world_model(seed_models)
    policies = ["random", "py:support.policies:push"]
    report = tmp_path / "report"
    argv = ["rank", "--model", str(seed_models), "--policies", *policies, "--starts", "8", "--workers", "0"]
    argv += ["--real-env", "pendulum", "--real-episodes", "3", "--allow-code", "--videos", "0"]
    assert main([*argv, "--report", str(report), "--no-progress"]) == 0
    assert "Ranking confidence" in capsys.readouterr().out
    written = json.loads((report / "ranking.json").read_text())
    assert written["settings"]["models"] == 2 and 0.5 <= written["ranking_confidence"] <= 1
    single = rank_policies(folders[0], policies, starts=8, workers=0, progress=False, allow_code=True)
    alone = {entry.name: entry.imagined_return["mean"] for entry in single.ranked}
    for row in written["policies"]:
        first, second = row["model_returns"]
        assert first == pytest.approx(alone[row["name"]])  # the same starts and draws as one model alone
        assert row["imagined_return"]["mean"] == pytest.approx((first + second) / 2)
        assert row["model_spread"] == pytest.approx(abs(first - second) / np.sqrt(2))
        predicted = row["predicted_real_return"]
        assert predicted["method"] == "ppi" and predicted["low"] <= predicted["mean"] <= predicted["high"]
    listed = rank_policies(folders, policies, starts=8, workers=0, progress=False, allow_code=True)
    assert [entry.imagined_return for entry in listed.ranked] == [
        row["imagined_return"] for row in written["policies"]
    ]


def test_a_policy_without_real_episodes_gets_an_interval_calibrated_on_held_out_episodes(
    pendulum_model: Path, tmp_path: Path
) -> None:
    task = get_task("pendulum", max_episode_steps=50)
    data = tmp_path / "random"
    collect(task, data, episodes=24, seed=11, num_envs=4, progress=False)
    settings = {"starts": 16, "dataset": data, "workers": 0, "progress": False}
    assert rank_policies(pendulum_model, ["random"], **settings).ranked[0].predicted_real_return is None
    result = rank_policies(pendulum_model, ["random"], calibrate="episode", **settings)
    (entry,) = result.ranked
    predicted = entry.predicted_real_return
    assert (
        predicted["method"] == "conformal"
        and predicted["held_out"] == 24 == result.settings.held_out_episodes
    )
    # the random policy is the one that logged the held-out episodes: its real mean lies in its interval
    policy = load_policy("random", task.observation_space, task.action_space, seed=5)
    real = real_rollouts(task, policy, 40, seed=100).return_["mean"]
    assert predicted["low"] <= real <= predicted["high"]
    assert predicted["dominant"] in predicted["sources"]
    assert "calibrated on 24 held-out episodes" in markdown_report(result)
    segments = rank_policies(pendulum_model, ["random"], calibrate="10", **settings).ranked[0]
    assert segments.predicted_real_return["held_out"] == 24 and segments.predicted_real_return != predicted
    with pytest.raises(ImaginariumError, match="calibrate must be"):
        rank_policies(pendulum_model, ["random"], calibrate="whole", **settings)


def test_calibrating_a_model_whose_data_is_gone_says_what_to_give(
    pendulum_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(pendulum_model, copy)
    card = json.loads((copy / "model_card.json").read_text())
    card["dataset"]["path"] = str(tmp_path / "moved")
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ImaginariumError, match="does not exist|not found|no dataset"):
        rank_policies(copy, ["random"], starts=2, workers=0, progress=False, calibrate="10")
    assert rank_policies(
        copy, ["random"], starts=2, workers=0, progress=False
    ).ranked  # ranking needs only its starts
