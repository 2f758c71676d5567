"""The collect → train → evaluate pipeline makes what is missing and keeps what is done."""

from __future__ import annotations

from pathlib import Path

from imaginarium.envs.suite import get_task
from imaginarium.run.pipeline import collect_train_evaluate


def test_a_second_run_reuses_the_data_and_model_and_fresh_makes_them_anew(tmp_path: Path) -> None:
    task = get_task("pendulum", max_episode_steps=40)
    settings = {
        "episodes": 4,
        "preset": "xs",
        "model_overrides": {"batch_size": 32},
        "train_config": {"steps": 20, "eval_every": 10},
        "horizon": 5,
    }
    titles: list[str] = []
    first = collect_train_evaluate(
        task, tmp_path / "data", tmp_path / "model", announce=titles.append, **settings
    )
    assert first.collected is not None and first.collected.episodes == 4
    assert first.trained is not None and first.fidelity is not None and "nmse_at_1" in first.fidelity
    assert [title.split()[0] for title in titles] == ["collect", "train", "fidelity"]
    weights = (tmp_path / "model" / "model.pt").stat().st_mtime_ns

    again = collect_train_evaluate(task, tmp_path / "data", tmp_path / "model", **settings)
    assert (again.collected, again.trained, again.fidelity) == (None, None, None)
    assert (tmp_path / "model" / "model.pt").stat().st_mtime_ns == weights

    fresh = collect_train_evaluate(task, tmp_path / "data", tmp_path / "model", fresh=True, **settings)
    assert fresh.collected is not None and fresh.trained is not None
