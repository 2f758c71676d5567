from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.envs.suite import SUITE, get_task
from imaginarium.errors import ImaginariumError
from imaginarium.policy import RandomPolicy


@pytest.mark.parametrize("name", list(SUITE))
def test_every_suite_task_collects_into_a_loadable_dataset(tmp_path: Path, name: str) -> None:
    task = get_task(name, max_episode_steps=12)
    result = collect(task, tmp_path / name, episodes=3, num_envs=2, progress=False)
    dataset = load_dataset(result.path)
    assert result.episodes == dataset.num_episodes == 3 and dataset.num_steps == result.steps
    assert dataset.has_success == (task.success is not None)
    assert np.all(dataset.episode_lengths <= 12)
    assert dataset.observation_space.shape == task.observation_space.shape


def test_recorded_actions_replay_to_the_recorded_states(pendulum_dataset_path: Path) -> None:
    """Each episode's seed and actions reproduce its observations and rewards in the real env."""
    dataset = load_dataset(pendulum_dataset_path)
    seeds = [3 + index for index in range(dataset.num_episodes)]
    env = get_task("pendulum", max_episode_steps=50).make()
    replayed_seeds = set()
    for index in range(dataset.num_episodes):
        episode = dataset.episode(index)
        for seed in seeds:
            observation, _ = env.reset(seed=seed)
            if np.allclose(observation, episode.observations[0]):
                break
        replayed_seeds.add(seed)
        for step, action in enumerate(episode.actions):
            observation, reward, *_ = env.step(action)
            np.testing.assert_allclose(observation, episode.observations[step + 1], rtol=1e-5, atol=1e-6)
            assert reward == pytest.approx(episode.rewards[step], rel=1e-5)
    assert replayed_seeds == set(seeds)


def test_same_seed_same_dataset(tmp_path: Path) -> None:
    first = collect("cartpole", tmp_path / "a", episodes=5, seed=4, progress=False)
    second = collect("cartpole", tmp_path / "b", episodes=5, seed=4, progress=False)
    other = collect("cartpole", tmp_path / "c", episodes=5, seed=5, progress=False)
    fingerprints = [load_dataset(r.path).fingerprint() for r in (first, second, other)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_step_target_collects_complete_episodes_to_at_least_that_many_steps(tmp_path: Path) -> None:
    result = collect("cartpole", tmp_path / "ds", steps=300, progress=False)
    dataset = load_dataset(result.path)
    assert dataset.num_steps >= 300
    assert np.all(
        dataset.terminated[dataset.episode_starts[1:] - 1] | dataset.truncated[dataset.episode_starts[1:] - 1]
    )


def test_noisy_mixture_yields_varied_quality(tmp_path: Path) -> None:
    result = collect(
        "pendulum", tmp_path / "ds", policy="0.5*random + 0.5*random@noise=0.3", episodes=4, progress=False
    )
    assert load_dataset(result.path).metadata["imaginarium"]["policy"] == "0.5*random + 0.5*random@noise=0.3"


class _InterruptingPolicy(RandomPolicy):
    """A random policy that behaves like a Ctrl-C after a number of batches."""

    def __init__(self, action_space, calls_before_interrupt: int) -> None:
        super().__init__(action_space, seed=0)
        self.calls_left = calls_before_interrupt

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.calls_left -= 1
        if self.calls_left < 0:
            raise KeyboardInterrupt
        return super().act(observations)


def test_interrupted_collection_keeps_exactly_the_complete_episodes(tmp_path: Path) -> None:
    task = get_task("pendulum", max_episode_steps=20)
    policy = _InterruptingPolicy(task.action_space, calls_before_interrupt=50)
    result = collect(task, tmp_path / "ds", policy=policy, episodes=100, num_envs=3, progress=False)
    assert result.interrupted and result.path == tmp_path / "ds"
    dataset = load_dataset(result.path)
    assert dataset.num_episodes == result.episodes == 6  # 3 envs × 2 whole episodes of 20 in 50 steps
    assert np.all(dataset.episode_lengths == 20) and result.dropped_steps == 3 * 10
    assert not (tmp_path / "ds.partial").exists()


def test_interruption_before_any_complete_episode_writes_nothing(tmp_path: Path) -> None:
    task = get_task("pendulum", max_episode_steps=20)
    policy = _InterruptingPolicy(task.action_space, calls_before_interrupt=5)
    result = collect(task, tmp_path / "ds", policy=policy, episodes=10, progress=False)
    assert result.interrupted and result.path is None and result.episodes == 0
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_collect_refuses_an_existing_dataset_and_bad_amounts(
    tmp_path: Path, pendulum_dataset_path: Path
) -> None:
    with pytest.raises(ImaginariumError, match="already exists"):
        collect("pendulum", pendulum_dataset_path, episodes=1, progress=False)
    with pytest.raises(ImaginariumError, match="exactly one of episodes or steps"):
        collect("pendulum", tmp_path / "x", progress=False)
    with pytest.raises(ImaginariumError, match="positive integer"):
        collect("pendulum", tmp_path / "x", episodes=0, progress=False)
    assert not (tmp_path / "x").exists()


def test_collecting_pixels_stores_the_frame_of_each_observation(tmp_path: Path) -> None:
    from PIL import Image

    from imaginarium.envs.render import StateRenderer

    task = get_task("pendulum", max_episode_steps=20)
    dataset = load_dataset(collect(task, tmp_path / "px", episodes=2, pixels=32, progress=False).path)
    assert dataset.image_shape == (32, 32, 3) and dataset.frames.shape[0] == dataset.num_steps + 2
    renderer = StateRenderer(task)

    def drawn(observation: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(renderer.render(observation)).resize((32, 32))).astype(float)

    for row in (0, 7, 25):  # each frame shows its own state, not a neighbour's
        stored = dataset.images([row])[0].astype(float)
        assert (
            np.abs(drawn(dataset.observations[row]) - stored).mean()
            < np.abs(drawn(dataset.observations[row + 4]) - stored).mean()
        )
    with pytest.raises(ImaginariumError, match="pixels must be between 8 and 1024"):
        collect(task, tmp_path / "bad", episodes=1, pixels=4, progress=False)
