from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from imaginarium.dataset import Dataset, DatasetWriter, Episode, load_dataset, write_dataset
from imaginarium.envs.suite import get_task
from imaginarium.errors import DatasetError, TaskError
from imaginarium.outputs import OutputError

PENDULUM = get_task("pendulum", max_episode_steps=30)


def _episodes(count: int, steps: int = 30, seed: int = 0) -> list[Episode]:
    """Real Pendulum episodes with random actions."""
    env = PENDULUM.make()
    rng = np.random.default_rng(seed)
    episodes = []
    for index in range(count):
        observation, _ = env.reset(seed=seed + index)
        observations, actions, rewards = [observation], [], []
        for _ in range(steps):
            action = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
            observation, reward, *_ = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
        observations = np.array(observations)
        terminated, truncated = np.zeros(steps, bool), np.r_[np.zeros(steps - 1, bool), True]
        success = PENDULUM.success(observations[1:], terminated, truncated)
        episodes.append(
            Episode(observations, np.array(actions), np.array(rewards), terminated, truncated, success, index)
        )
    env.close()
    return episodes


def _minari_buffers(episodes: list[Episode]) -> list[EpisodeBuffer]:
    """The episodes as Minari's own buffers, without Imaginarium's metadata or success infos."""
    return [
        EpisodeBuffer(
            observations=e.observations,
            actions=e.actions,
            rewards=e.rewards,
            terminations=e.terminated,
            truncations=e.truncated,
        )
        for e in episodes
    ]


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_written_episodes_read_back_identically(tmp_path: Path, data_format: str) -> None:
    episodes = _episodes(4)
    write_dataset(tmp_path / "ds", episodes, PENDULUM, data_format=data_format)
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.num_episodes == 4 and dataset.num_steps == 120
    assert dataset.metadata["data_format"] == data_format
    assert dataset.task is not None and dataset.task.name == "pendulum" and dataset.has_success
    for index, original in enumerate(episodes):
        loaded = dataset.episode(index)
        np.testing.assert_allclose(loaded.observations, original.observations, rtol=1e-6)
        np.testing.assert_allclose(loaded.actions, original.actions)
        np.testing.assert_allclose(loaded.rewards, original.rewards, rtol=1e-6)
        np.testing.assert_array_equal(loaded.truncated, original.truncated)
        np.testing.assert_array_equal(loaded.success, original.success)
    np.testing.assert_allclose(dataset.episode_returns(), [e.episode_return for e in episodes], rtol=1e-5)


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_what_we_write_opens_in_minari(tmp_path: Path, data_format: str) -> None:
    episodes = _episodes(2)
    write_dataset(tmp_path / "ds", episodes, PENDULUM, data_format=data_format)
    minari_dataset = minari.MinariDataset(tmp_path / "ds" / "data")
    assert minari_dataset.total_episodes == 2 and minari_dataset.total_steps == 60
    first = next(iter(minari_dataset.iterate_episodes()))
    np.testing.assert_allclose(first.observations, episodes[0].observations, rtol=1e-6)
    assert minari_dataset.recover_environment().spec.id == "Pendulum-v1"


def test_a_minari_dataset_is_found_by_id_under_the_datasets_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    write_dataset(tmp_path / "mine" / "pendulum-random-v0", _episodes(2), PENDULUM)
    dataset = load_dataset("mine/pendulum-random-v0")
    assert dataset.num_episodes == 2


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_a_foreign_minari_dataset_gets_its_task_and_success_from_the_env_spec(
    tmp_path: Path, monkeypatch, data_format: str
) -> None:
    """A dataset made by Minari itself (no Imaginarium metadata, no success infos) still loads fully."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    buffers = _minari_buffers(_episodes(3))
    minari.create_dataset_from_buffers(
        "test/pendulum/foreign-v0", buffers, env=gym.make("Pendulum-v1"), data_format=data_format
    )
    dataset = load_dataset("test/pendulum/foreign-v0")
    assert dataset.task is not None and dataset.task.name == "pendulum" and dataset.has_success
    expected = PENDULUM.success(
        dataset.next_observations[:30], dataset.terminated[:30], dataset.truncated[:30]
    )
    np.testing.assert_array_equal(dataset.success[:30], expected)


def test_a_task_without_success_signal_has_none(tmp_path: Path) -> None:
    hopper = get_task("hopper", max_episode_steps=5)
    env = hopper.make()
    observation, _ = env.reset(seed=0)
    observations, actions, rewards = [observation], [], []
    for _ in range(5):
        action = env.action_space.sample()
        observation, reward, *_ = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
    flags = np.zeros(5, bool)
    episode = Episode(np.array(observations), np.array(actions), np.array(rewards), flags, flags)
    write_dataset(tmp_path / "hop", [episode, episode], hopper)
    dataset = load_dataset(tmp_path / "hop")
    assert not dataset.has_success and dataset.summary()["success_rate"] is None
    assert dataset.observations.dtype == np.float32


def test_split_is_by_whole_episodes_and_repeatable(pendulum_dataset: Dataset) -> None:
    train, validation = pendulum_dataset.split(0.25, seed=1)
    assert train.num_episodes == 6 and validation.num_episodes == 2
    assert train.num_steps + validation.num_steps == pendulum_dataset.num_steps
    train_obs = {tuple(row) for row in train.observations}
    assert not any(tuple(row) in train_obs for row in validation.observations)
    again, _ = pendulum_dataset.split(0.25, seed=1)
    np.testing.assert_array_equal(again.observations, train.observations)
    assert train.episode_starts[0] == 0 and train.episode_starts[-1] == train.num_steps


def test_split_needs_two_episodes(pendulum_dataset: Dataset) -> None:
    with pytest.raises(DatasetError, match="at least 2"):
        pendulum_dataset.subset([0]).split(0.5)


def test_summary_reports_returns_and_success(pendulum_dataset: Dataset) -> None:
    summary = pendulum_dataset.summary()
    assert summary["task"] == "pendulum" and summary["episodes"] == 8 and summary["steps"] == 400
    assert summary["return"]["mean"] == pytest.approx(pendulum_dataset.episode_returns().mean())
    assert summary["success_rate"] == 0.0 and len(summary["fingerprint"]) == 16
    json.dumps(summary)


# ------------------------------------------------------------------------------------------- bad input


def test_missing_dataset_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset"):
        load_dataset(tmp_path / "empty")


def test_truncated_hdf5_file_is_reported_as_corrupted(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", _episodes(3), PENDULUM)
    data_file = tmp_path / "ds" / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated or corrupted"):
        load_dataset(tmp_path / "ds")


def test_garbage_in_the_data_file_is_reported_as_corrupted(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", _episodes(2), PENDULUM, data_format="arrow")
    for part in (tmp_path / "ds" / "data").rglob("*.arrow"):
        part.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "ds")


def test_broken_metadata_is_reported(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", _episodes(2), PENDULUM)
    (tmp_path / "ds" / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable metadata.json"):
        load_dataset(tmp_path / "ds")


def test_dataset_for_another_task_is_refused(pendulum_dataset_path: Path) -> None:
    with pytest.raises(TaskError, match="expected .* for task 'cartpole'"):
        load_dataset(pendulum_dataset_path, task="cartpole")


def test_nan_observations_in_a_file_are_refused_with_the_episode(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episodes = _episodes(2)
    episodes[1].observations[7, 2] = np.nan
    buffers = _minari_buffers(episodes)
    minari.create_dataset_from_buffers("test/nan-v0", buffers, env=gym.make("Pendulum-v1"))
    with pytest.raises(DatasetError, match="episode 1 has non-finite observations at step 7"):
        load_dataset("test/nan-v0")


def test_writer_refuses_nan_and_leaves_nothing_behind(tmp_path: Path) -> None:
    episodes = _episodes(2)
    episodes[1].rewards[3] = np.nan
    with pytest.raises(DatasetError, match="non-finite rewards at step 3"):
        write_dataset(tmp_path / "ds", episodes, PENDULUM)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_writer_does_not_overwrite_unless_asked(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", _episodes(1), PENDULUM)
    with pytest.raises(OutputError, match="already exists"):
        write_dataset(tmp_path / "ds", _episodes(2), PENDULUM)
    write_dataset(tmp_path / "ds", _episodes(2), PENDULUM, overwrite=True)
    assert load_dataset(tmp_path / "ds").num_episodes == 2


def test_uncommitted_writer_leaves_no_dataset(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", PENDULUM, flush_every=1)
    writer.add(_episodes(1)[0])
    assert writer.written_episodes == 1 and not (tmp_path / "ds").exists()
    writer.abort()
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_episode_with_wrong_lengths_is_refused(tmp_path: Path) -> None:
    episode = _episodes(1)[0]
    episode.actions = episode.actions[:-1]
    with pytest.raises(DatasetError, match="29 actions, expected 30"):
        write_dataset(tmp_path / "ds", [episode], PENDULUM)


def test_a_dict_observation_dataset_opens_flattened(tmp_path: Path, monkeypatch) -> None:
    """D4RL-style goal datasets observe a Dict of Boxes; training sees one flat vector."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    observation_space = gym.spaces.Dict(
        {"observation": gym.spaces.Box(-1, 1, (4,)), "desired_goal": gym.spaces.Box(-1, 1, (2,))}
    )
    action_space = gym.spaces.Box(-1, 1, (2,))
    rng = np.random.default_rng(0)
    buffers = [
        EpisodeBuffer(
            observations={
                "observation": rng.uniform(-1, 1, (11, 4)).astype(np.float32),
                "desired_goal": rng.uniform(-1, 1, (11, 2)).astype(np.float32),
            },
            actions=rng.uniform(-1, 1, (10, 2)).astype(np.float32),
            rewards=rng.normal(size=10),
            terminations=np.zeros(10, bool),
            truncations=np.r_[np.zeros(9, bool), True],
        )
        for _ in range(2)
    ]
    minari.create_dataset_from_buffers(
        "test/goals-v0", buffers, observation_space=observation_space, action_space=action_space
    )
    dataset = load_dataset("test/goals-v0")
    assert dataset.observations.shape == (20, 6) and dataset.task is None and not dataset.has_success


def _with_frames(episodes: list[Episode], size: int) -> list[Episode]:
    rng = np.random.default_rng(0)
    for episode in episodes:
        episode.images = rng.integers(0, 256, (len(episode.observations), size, size, 3), dtype=np.uint8)
    return episodes


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_frames_are_stored_beside_the_states_and_read_back_per_row(tmp_path: Path, data_format: str) -> None:
    episodes = _with_frames(_episodes(3), 16)
    dataset = load_dataset(write_dataset(tmp_path / "ds", episodes, PENDULUM, data_format))
    assert dataset.image_shape == (16, 16, 3) and dataset.observations.shape == (90, 3)
    row = dataset.episode_starts[2] + 4  # episode 2, step 4
    assert np.array_equal(dataset.images([row])[0], episodes[2].images[4])
    assert np.array_equal(dataset.next_images([row])[0], episodes[2].images[5])
    _, validation = dataset.split(0.34, seed=1)
    held = validation.episode(0)
    assert np.array_equal(
        held.images, next(e.images for e in episodes if np.allclose(e.observations, held.observations))
    )
    assert minari.MinariDataset(tmp_path / "ds" / "data").total_episodes == 3  # still a Minari dataset


def test_frames_of_another_size_or_missing_frames_are_refused_naming_the_episode(tmp_path: Path) -> None:
    episodes = _with_frames(_episodes(3), 16)
    episodes[1].images = episodes[1].images[:, :8]
    with pytest.raises(
        DatasetError,
        match=r"episode 1 has frames of shape \(8, 16, 3\); this dataset's frames are \(16, 16, 3\)",
    ):
        write_dataset(tmp_path / "ds", episodes, PENDULUM)
    episodes[1].images = None
    with pytest.raises(DatasetError, match="episode 1 has no frames"):
        write_dataset(tmp_path / "ds", episodes, PENDULUM)
    assert not (tmp_path / "ds").exists()
