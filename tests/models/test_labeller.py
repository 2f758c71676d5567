"""Observation-only episodes: stored and read back as such, labelled by inverse dynamics, learned from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaginarium.dataset import Dataset, Episode, load_dataset, write_dataset
from imaginarium.errors import DatasetError
from imaginarium.models.labeller import label_actions, train_labeller
from imaginarium.models.train import train_world_model


def _without_actions(dataset: Dataset, keep: int, out: Path) -> Dataset:
    """The dataset written again with only its first ``keep`` episodes' actions and rewards."""

    def episodes():
        for index in range(dataset.num_episodes):
            episode = dataset.episode(index)
            if index < keep:
                yield episode
            else:
                yield Episode.observations_only(episode.observations, dataset.action_space)

    write_dataset(out, episodes(), dataset.task)
    return load_dataset(out)


@pytest.fixture(scope="module")
def mixed(pendulum_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _without_actions(pendulum_dataset, 3, tmp_path_factory.mktemp("mixed") / "pendulum")


def test_observation_only_episodes_are_stored_and_read_back_as_such(mixed: Dataset) -> None:
    assert mixed.episode_action_free().tolist() == [False] * 3 + [True] * 5
    free = mixed.action_free
    assert free.sum() == 5 * 50 and not mixed.rewards[free].any()
    assert mixed.subset([0, 4]).episode_action_free().tolist() == [False, True]
    assert mixed.summary()["action_free_episodes"] == 5


def test_the_labeller_infers_pendulum_torques_from_states(mixed: Dataset, pendulum_dataset: Dataset) -> None:
    labeller, figures = train_labeller(mixed, config={"steps": 400, "hidden": 64})
    assert figures["labelled_episodes"] == 3 and figures["r2"] > 0.8
    labelled = label_actions(mixed, labeller)
    free = mixed.action_free
    truth = pendulum_dataset.actions[free]
    r2 = 1 - ((labelled.actions[free] - truth) ** 2).mean() / truth.var()
    assert r2 > 0.8  # torques the labeller never saw, inferred from the states around them
    assert np.array_equal(labelled.actions[~free], mixed.actions[~free])
    assert np.array_equal(labelled.action_free, free)


def test_the_labeller_reports_each_step(mixed: Dataset) -> None:
    steps: list[int] = []
    train_labeller(mixed, config={"steps": 7, "hidden": 16}, on_step=steps.append)
    assert steps == list(range(1, 8))


def test_training_refuses_drops_or_labels_action_free_episodes(
    mixed: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {
        "family": "ensemble",
        "preset": "xs",
        "model_overrides": {"batch_size": 16},
        "config": {"steps": 20, "eval_every": 10},
    }
    with pytest.raises(DatasetError, match="5 of the dataset's 8 episodes hold observations only"):
        train_world_model(mixed, tmp_path / "refused", progress=False, **options)
    dropped = train_world_model(mixed, tmp_path / "dropped", progress=False, action_free="drop", **options)
    assert dropped.card["dataset"]["episodes"] == 3 and dropped.card["action_free"]["mode"] == "drop"
    labelled = train_world_model(  # the rssm here: both families learn no reward where none was recorded
        mixed,
        tmp_path / "labelled",
        "rssm",
        "xs",
        {"sequence_length": 8, "batch_size": 8},
        {"steps": 20, "eval_every": 10},
        action_free="label",
        labeller={"steps": 50, "hidden": 32},
    )
    assert "train labeller" in capsys.readouterr().out  # a long labelling is not silent
    assert labelled.card["dataset"]["episodes"] == 8
    assert labelled.card["action_free"]["labeller"]["labelled_episodes"] == 3


def test_a_labeller_needs_two_episodes_with_actions(pendulum_dataset: Dataset, tmp_path: Path) -> None:
    only_one = _without_actions(pendulum_dataset, 1, tmp_path / "one")
    with pytest.raises(DatasetError, match="1 episode\\(s\\) with actions; a labeller needs at least 2"):
        train_labeller(only_one)
