"""Minibatch samplers that feed world-model training from a :class:`Dataset`.

The dataset's arrays are moved to the device once; each batch is gathered by index from them, so
no batch copies more than itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imaginarium.dataset import Dataset
from imaginarium.errors import DatasetError


@dataclass(frozen=True)
class Batch:
    """A minibatch; leading dims are ``(B,)`` for transitions and ``(B, L)`` for sequences.

    ``firsts`` marks the first transition of an episode (``observations`` is then a reset state).
    """

    observations: torch.Tensor  # (..., *obs_shape) float32
    actions: torch.Tensor  # (..., *act_shape) float32, or (...) int64 for discrete actions
    rewards: torch.Tensor  # (...) float32
    next_observations: torch.Tensor  # (..., *obs_shape) float32
    terminated: torch.Tensor  # (...) bool
    truncated: torch.Tensor  # (...) bool
    success: torch.Tensor  # (...) bool
    firsts: torch.Tensor  # (...) bool
    #: rows whose actions and rewards were never recorded: their rewards are not learned from
    action_free: torch.Tensor | None = None  # (...) bool


class _DeviceTransitions:
    """The dataset's transition arrays as tensors on one device.

    With ``pixels``, ``observations`` and ``next_observations`` are the frames ``(..., H, W, 3)``
    uint8 instead of the states: the frames are stored once, and each row indexes its two.
    """

    def __init__(self, dataset: Dataset, device: str | torch.device, pixels: bool = False) -> None:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array)).to(device)

        self.frames = self.frame_index = None
        if pixels:
            if dataset.frames is None:
                raise DatasetError("pixels were asked for, but this dataset holds no frames")
            self.frames = put(dataset.frames)
            self.frame_index = put(dataset.frame_index(np.arange(dataset.num_steps)))
        self.columns = {
            "observations": put(dataset.observations),
            "actions": put(dataset.actions),
            "rewards": put(dataset.rewards),
            "next_observations": put(dataset.next_observations),
            "terminated": put(dataset.terminated),
            "truncated": put(dataset.truncated),
            "success": put(dataset.success),
            "firsts": put(dataset.firsts),
            "action_free": put(dataset.action_free),
        }

    def gather(self, index: torch.Tensor) -> Batch:
        columns = {name: column[index] for name, column in self.columns.items()}
        if self.frames is not None:
            frames = self.frame_index[index]
            columns.update(observations=self.frames[frames], next_observations=self.frames[frames + 1])
        return Batch(**columns)


class TransitionSampler:
    """Uniform minibatches of single transitions (for one-step models such as the ensemble).

    :param dataset: the transitions to sample from.
    :param batch_size: transitions per batch; must not exceed the dataset.
    :param device: where the batches (and the dataset's tensors) live.
    :param seed: seeds the draw.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, device: str | torch.device = "cpu", seed: int = 0
    ) -> None:
        if batch_size < 1:
            raise DatasetError(f"batch_size must be positive, got {batch_size}")
        if dataset.num_steps < batch_size:
            raise DatasetError(
                f"dataset has {dataset.num_steps} transitions, fewer than batch_size {batch_size}"
            )
        self.batch_size = batch_size
        self.size = dataset.num_steps
        self.device = torch.device(device)
        self.data = _DeviceTransitions(dataset, self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def sample(self) -> Batch:
        """One batch drawn uniformly with replacement."""
        index = torch.randint(self.size, (self.batch_size,), generator=self.generator)
        return self.data.gather(index.to(self.device))

    def epoch(self) -> list[Batch]:
        """Every transition once, shuffled, in full batches (the remainder is dropped)."""
        order = torch.randperm(self.size, generator=self.generator).to(self.device)
        whole = self.size // self.batch_size * self.batch_size
        return [self.data.gather(chunk) for chunk in order[:whole].split(self.batch_size)]


class SequenceSampler:
    """Minibatches of fixed-length windows of consecutive transitions, with episode-start flags.

    :param dataset: the transitions to sample from.
    :param batch_size: windows per batch.
    :param length: transitions per window.
    :param within_episodes: windows never cross an episode boundary (episodes shorter than
        ``length`` are skipped); otherwise windows run across boundaries, which ``firsts`` marks.
    :param pixels: observations are the dataset's frames (for models that see images).
    :raises DatasetError: when no window of this length fits, or fewer windows than ``batch_size``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        length: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        within_episodes: bool = True,
        pixels: bool = False,
    ) -> None:
        if batch_size < 1 or length < 1:
            raise DatasetError(f"batch_size and length must be positive, got {batch_size} and {length}")
        if within_episodes:
            starts = [
                np.arange(begin, end - length + 1)
                for begin, end in zip(dataset.episode_starts[:-1], dataset.episode_starts[1:], strict=True)
                if end - begin >= length
            ]
            valid = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        else:
            valid = np.arange(max(dataset.num_steps - length + 1, 0))
        if len(valid) == 0:
            longest = int(dataset.episode_lengths.max()) if dataset.num_episodes else 0
            raise DatasetError(
                f"no window of length {length} fits the dataset (longest episode {longest} steps, "
                f"{dataset.num_steps} steps in all); use a shorter sequence length"
            )
        if len(valid) < batch_size:
            raise DatasetError(
                f"dataset has {len(valid)} windows of length {length}, fewer than batch_size {batch_size}"
            )
        self.batch_size, self.length = batch_size, length
        self.device = torch.device(device)
        self.starts = torch.as_tensor(valid, dtype=torch.int64)
        self.offsets = torch.arange(length, dtype=torch.int64)
        self.data = _DeviceTransitions(dataset, self.device, pixels)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    @classmethod
    def capped(
        cls,
        dataset: Dataset,
        batch_size: int,
        length: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        within_episodes: bool = True,
        pixels: bool = False,
    ) -> SequenceSampler:
        """A sampler whose batch is ``batch_size`` or, for a small (held-out) dataset, all its windows."""
        probe = cls(dataset, 1, length, "cpu", seed, within_episodes)
        return cls(dataset, min(batch_size, probe.num_windows), length, device, seed, within_episodes, pixels)

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def sample(self, count: int | None = None) -> Batch:
        """``count`` (default ``batch_size``) windows drawn uniformly with replacement; tensors are ``(B, L, ...)``.

        A larger ``count`` serves models that draw several batches at once (one per ensemble member).
        """
        count = self.batch_size if count is None else count
        chosen = self.starts[torch.randint(len(self.starts), (count,), generator=self.generator)]
        index = chosen[:, None] + self.offsets[None, :]  # (B, L)
        return self.data.gather(index.to(self.device))
