from __future__ import annotations

import numpy as np
import pytest
import torch

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import DatasetError
from imaginarium.samplers import SequenceSampler, TransitionSampler


@pytest.fixture(scope="module")
def cartpole(cartpole_dataset_path) -> Dataset:
    return load_dataset(cartpole_dataset_path)


def test_transition_batches_are_real_transitions(pendulum_dataset: Dataset) -> None:
    batch = TransitionSampler(pendulum_dataset, batch_size=32, seed=0).sample()
    assert batch.observations.shape == (32, 3) and batch.actions.shape == (32, 1)
    assert batch.rewards.shape == (32,) and batch.rewards.dtype == torch.float32
    rows = {
        tuple(o) + tuple(n): r
        for o, n, r in zip(
            pendulum_dataset.observations,
            pendulum_dataset.next_observations,
            pendulum_dataset.rewards,
            strict=True,
        )
    }
    for o, n, r in zip(
        batch.observations.numpy(), batch.next_observations.numpy(), batch.rewards.numpy(), strict=True
    ):
        assert rows[tuple(o) + tuple(n)] == r


def test_epoch_visits_every_transition_once(pendulum_dataset: Dataset) -> None:
    batches = TransitionSampler(pendulum_dataset, batch_size=40, seed=0).epoch()
    assert len(batches) == 10
    seen = np.concatenate([b.observations.numpy() for b in batches])
    assert len({tuple(row) for row in seen}) == pendulum_dataset.num_steps


def test_same_seed_same_batches(pendulum_dataset: Dataset) -> None:
    first = SequenceSampler(pendulum_dataset, 4, 10, seed=7).sample()
    second = SequenceSampler(pendulum_dataset, 4, 10, seed=7).sample()
    assert torch.equal(first.observations, second.observations)


def test_windows_within_episodes_chain_and_never_cross(cartpole: Dataset) -> None:
    sampler = SequenceSampler(cartpole, batch_size=64, length=8, seed=0)
    batch = sampler.sample()
    assert batch.observations.shape == (64, 8, 4) and batch.actions.shape == (64, 8)
    assert batch.actions.dtype == torch.int64
    assert not batch.firsts[:, 1:].any()
    assert torch.equal(batch.next_observations[:, :-1], batch.observations[:, 1:])
    ends = batch.terminated | batch.truncated
    assert not ends[:, :-1].any()
    expected = sum(max(0, int(n) - 8 + 1) for n in cartpole.episode_lengths)
    assert sampler.num_windows == expected


def test_windows_across_episodes_flag_each_new_episode(cartpole: Dataset) -> None:
    batch = SequenceSampler(cartpole, batch_size=64, length=40, seed=0, within_episodes=False).sample()
    ends = (batch.terminated | batch.truncated)[:, :-1]
    # After an episode ends the next step is flagged first, and only there does the chain break.
    assert torch.equal(ends, batch.firsts[:, 1:])
    assert ends.any()
    chained = (batch.next_observations[:, :-1] == batch.observations[:, 1:]).all(-1)
    assert torch.equal(chained, ~batch.firsts[:, 1:])


def test_dataset_too_small_for_the_sequence_length_is_refused(cartpole: Dataset) -> None:
    longest = int(cartpole.episode_lengths.max())
    with pytest.raises(DatasetError, match=f"no window of length {longest + 1}"):
        SequenceSampler(cartpole, batch_size=1, length=longest + 1)


def test_dataset_too_small_for_the_batch_is_refused(pendulum_dataset: Dataset) -> None:
    with pytest.raises(DatasetError, match="fewer than batch_size"):
        TransitionSampler(pendulum_dataset, batch_size=10_000)
    with pytest.raises(DatasetError, match="fewer than batch_size"):
        SequenceSampler(pendulum_dataset, batch_size=1000, length=50)
