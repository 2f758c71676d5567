"""Policy search inside the model: the search space is checked first, trials run, the best are validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imaginarium.errors import ImaginariumError
from imaginarium.tune import run_search, search_space


def test_the_default_spaces_are_valid_and_a_file_can_replace_them(tmp_path: Path) -> None:
    assert set(search_space("ppo")) == {"learning_rate", "gamma", "n_steps", "ent_coef"}
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {loguniform: [0.0001, 0.001]}\nn_steps: {choice: [32, 64]}\n")
    assert set(search_space("ppo", path)) == {"learning_rate", "n_steps"}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rat": {"loguniform": [1e-4, 1e-3]}}, "unknown parameter 'learning_rat'"),
        ({"gamma": {"choice": [0.99, 1.5]}}, "'gamma': 1.5 is impossible"),
        ({"n_steps": {"choice": [64.5]}}, "'n_steps': 64.5 is impossible; it must be an integer"),
        ({"learning_rate": {"loguniform": [1e-3, 1e-4]}}, "needs low < high"),
        ({"learning_rate": {"normal": [0, 1]}}, "unknown distribution 'normal'"),
        ({"learning_rate": {"loguniform": [1e-4]}}, "loguniform takes 2 values"),
    ],
)
def test_bad_search_spaces_are_refused_by_name_before_any_trial(
    space: dict, message: str, pendulum_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImaginariumError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_search(pendulum_model, "ppo", samples=2, out=tmp_path / "search", space=space)
    assert not (tmp_path / "search" / "search").exists()  # Tune never started


def test_a_small_search_trains_in_the_model_validates_the_best_and_saves_the_chosen_agent(
    pendulum_model: Path, tmp_path: Path
) -> None:
    from imaginarium.agents.policies import load_policy
    from imaginarium.envs.suite import get_task

    space = {"learning_rate": {"loguniform": [1e-4, 1e-3]}, "n_steps": {"choice": [32]}}
    report = run_search(
        pendulum_model, "ppo", samples=2, out=tmp_path / "search", steps=128, reports=2, space=space,
        top_k=2, real_episodes=1, workers=2,
    )  # fmt: skip
    assert len(report["trials"]) == 2 and all(trial["error"] is None for trial in report["trials"])
    assert all(trial["score"] is not None for trial in report["trials"])
    assert sorted(report["validated"]) == [0, 1] and report["chosen"] in (0, 1)
    assert json.loads((tmp_path / "search" / "tune.json").read_text())["chosen"] == report["chosen"]
    task = get_task("pendulum")
    policy = load_policy(report["best_agent"], task.observation_space, task.action_space)
    assert policy.act(task.make().reset(seed=0)[0][None]).shape == (1, 1)
