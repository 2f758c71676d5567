"""The start states kept with a model: what the imagined env, ranking and Tune start from without
reading the dataset again, and what still works when the dataset is gone or the model predates them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from imaginarium.dataset import Dataset
from imaginarium.errors import DatasetError, ModelError
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import CARD_FILE
from imaginarium.models.starts import STARTS_FILE, keep_starts, model_starts, starts_of
from imaginarium.run.rank import rank_policies


def _copy_without_dataset(model: Path, into: Path) -> Path:
    """The model folder copied alone, its card naming a dataset that is not there."""
    copy = into / "model"
    shutil.copytree(model, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card["dataset"]["path"] = str(into / "gone")
    (copy / CARD_FILE).write_text(json.dumps(card))
    return copy


def test_training_keeps_every_episode_start_and_the_recorded_states(
    pendulum_model: Path, pendulum_dataset: Dataset
) -> None:
    kept = load_world_model(pendulum_model).starts
    assert kept is not None
    assert np.array_equal(kept.inputs, pendulum_dataset.observations[pendulum_dataset.episode_starts[:-1]])
    assert np.array_equal(kept.states, pendulum_dataset.observations)


def test_a_model_copied_without_its_dataset_still_imagines_and_ranks(
    pendulum_model: Path, pendulum_dataset: Dataset, tmp_path: Path
) -> None:
    copy = _copy_without_dataset(pendulum_model, tmp_path)
    env = gym.make("WAMImagined-v0", model=copy)
    observation, info = env.reset(seed=3)
    real_starts = pendulum_dataset.observations[pendulum_dataset.episode_starts[:-1]]
    assert np.allclose(observation, real_starts[info["start_index"]], atol=1e-5)
    alone = rank_policies(copy, ["random"], starts=4, horizon=10, workers=0, progress=False)
    beside = rank_policies(
        pendulum_model,
        ["random"],
        starts=4,
        horizon=10,
        workers=0,
        progress=False,
        dataset=pendulum_dataset.path,
    )
    assert alone.policies[0].imagined_return == beside.policies[0].imagined_return


def test_a_model_trained_before_starts_were_kept_reads_its_dataset_until_it_keeps_them(
    pendulum_model: Path, tmp_path: Path
) -> None:
    kept = load_world_model(pendulum_model).starts
    older = tmp_path / "older"
    shutil.copytree(pendulum_model, older)
    (older / STARTS_FILE).unlink()
    model = load_world_model(older)
    assert model.starts is None
    assert np.array_equal(model_starts(model).inputs, kept.inputs)
    keep_starts(older)
    assert np.array_equal(load_world_model(older).starts.states, kept.states)
    (older / STARTS_FILE).unlink()
    alone = _copy_without_dataset(older, tmp_path / "alone")
    with pytest.raises(DatasetError, match="not found"):
        gym.make("WAMImagined-v0", model=alone)


def test_video_episodes_give_no_state_starts_and_a_damaged_file_is_named(
    pendulum_model: Path, pendulum_dataset: Dataset, tmp_path: Path
) -> None:
    model = load_world_model(pendulum_model)
    observations = pendulum_dataset.observations.copy()
    first, second = pendulum_dataset.episode_starts[:2]
    observations[first:second] = np.nan  # the first episode recorded frames only
    video = dataclasses.replace(pendulum_dataset, observations=observations)
    kept = starts_of(model, video)
    assert len(kept.inputs) == pendulum_dataset.num_episodes - 1
    assert len(kept.states) == pendulum_dataset.num_steps - (second - first)
    assert np.isfinite(kept.states).all()
    copy = tmp_path / "model"
    shutil.copytree(pendulum_model, copy)
    (copy / STARTS_FILE).write_bytes(b"not an npz file")
    with pytest.raises(ModelError, match=STARTS_FILE):
        load_world_model(copy)


@pytest.mark.parametrize("kept", [0.0, 0.1, 0.5, 0.99])
def test_a_truncated_starts_file_is_refused_by_name(
    pendulum_model: Path, tmp_path: Path, kept: float
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(pendulum_model, copy)
    whole = (copy / STARTS_FILE).read_bytes()
    (copy / STARTS_FILE).write_bytes(whole[: int(kept * len(whole))])  # an empty file reads as EOFError
    with pytest.raises(ModelError, match=f"{STARTS_FILE}.* is unreadable .*delete it"):
        load_world_model(copy)
