"""Policy search inside the model: the search space is checked first, trials run, the best are validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imaginarium.errors import ImaginariumError
from imaginarium.run.search import run_search, search_space

SMALL_PPO = {"learning_rate": {"loguniform": [1e-4, 1e-3]}, "n_steps": {"choice": [32]}}


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
    from imaginarium.envs.suite import get_task
    from imaginarium.policy import load_policy

    report = run_search(
        pendulum_model, "ppo", samples=2, out=tmp_path / "search", steps=128, reports=2, space=SMALL_PPO,
        top_k=2, real_episodes=1, workers=2,
    )  # fmt: skip
    assert len(report.trials) == 2 and not report.failed_trials
    assert all(trial.score is not None for trial in report.trials)
    assert sorted(report.validated) == [0, 1] and report.chosen in (0, 1)
    written = json.loads((tmp_path / "search" / "tune.json").read_text())
    assert written == json.loads(json.dumps(report.to_json(), default=str))
    assert list(written) == [
        "algo", "task", "samples", "setup", "seconds", "trials", "validated", "first_by_imagined_score",
        "chosen", "metrics", "best_agent",
    ]  # fmt: skip
    assert list(written["trials"][0]) == [
        "trial", "config", "error", "score", "imagined_return", "agent_steps", "resumed_from", "agent",
        "real_return",
    ]  # fmt: skip
    task = get_task("pendulum")
    policy = load_policy(report.best_agent, task.observation_space, task.action_space)
    assert policy.act(task.make().reset(seed=0)[0][None]).shape == (1, 1)


def test_a_trial_killed_mid_search_is_recorded_as_failed_and_the_others_go_on(
    pendulum_model: Path, tmp_path: Path
) -> None:
    from support.tune_hooks import KillsFirstTrial

    killer = KillsFirstTrial()
    report = run_search(
        pendulum_model, "ppo", samples=3, out=tmp_path / "search", steps=128, reports=2, space=SMALL_PPO,
        top_k=3, real_episodes=1, workers=2, callbacks=[killer],
    )  # fmt: skip
    failed = report.failed_trials
    finished = [trial for trial in report.trials if not trial.error]
    assert killer.killed is not None and len(failed) == 1 and len(finished) == 2
    assert failed[0].agent is None and failed[0].trial not in report.validated
    assert "real_return" not in failed[0].to_json()  # never checked on the real task
    assert all(trial.score is not None and Path(trial.agent).is_file() for trial in finished)
    assert report.chosen in {trial.trial for trial in finished}
    assert failed[0].error[:20] in (tmp_path / "search" / "tune.md").read_text()


def test_an_interrupted_search_resumes_where_it_stopped(pendulum_model: Path, tmp_path: Path) -> None:
    from support.tune_hooks import InterruptsOnce

    from imaginarium.errors import ImaginariumError, SearchInterrupted

    arguments = dict(
        samples=1, out=tmp_path / "search", steps=128, reports=4, space=SMALL_PPO, top_k=1,
        real_episodes=1, workers=2, callbacks=[InterruptsOnce(tmp_path / "interrupted")],
    )  # fmt: skip
    with pytest.raises(SearchInterrupted, match="run it again with resume"):
        run_search(pendulum_model, "ppo", **arguments)
    assert not (tmp_path / "search" / "tune.json").exists()  # nothing validated from half a search
    with pytest.raises(ImaginariumError, match="--allow-code"):  # restoring unpickles Tune's state
        run_search(pendulum_model, "ppo", resume=True, **arguments)
    with pytest.raises(ImaginariumError, match="overwrite"):  # nor is a new search started over it
        run_search(pendulum_model, "ppo", **arguments)
    report = run_search(pendulum_model, "ppo", resume=True, allow_code=True, **arguments)
    (trial,) = report.trials
    assert trial.error is None and trial.agent_steps == 128
    assert 0 < trial.resumed_from < 128  # it went on from its last checkpoint, not from scratch
    assert Path(report.best_agent).is_file()


def test_a_dreamer_search_trains_actor_critics_and_saves_the_chosen_agent_folder(
    pendulum_model: Path, tmp_path: Path
) -> None:
    from imaginarium.envs.suite import get_task
    from imaginarium.policy import load_policy

    space = {
        "actor_lr": {"loguniform": [1e-4, 1e-3]},
        "batch_size": {"choice": [16]},
        "horizon": {"choice": [5]},
    }
    report = run_search(
        pendulum_model, "dreamer", samples=2, out=tmp_path / "search", steps=4, reports=2, space=space,
        top_k=2, real_episodes=1, workers=2,
    )  # fmt: skip
    assert all(trial.error is None and trial.agent_steps in (2, 4) for trial in report.trials)
    assert sorted(report.validated) == [0, 1]
    best = Path(report.best_agent)
    assert best.is_dir() and (best / "dreamer.json").is_file()
    task = get_task("pendulum")
    policy = load_policy(best, task.observation_space, task.action_space)
    assert policy.act(task.make().reset(seed=0)[0][None]).shape == (1, 1)


def test_sac_is_refused_on_a_model_with_discrete_actions(cartpole_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ImaginariumError, match="SAC needs continuous"):
        run_search(cartpole_model, "sac", samples=2, out=tmp_path / "search")
