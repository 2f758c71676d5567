"""Where imagined episodes start, kept with the model: what it observes at the start of each episode
of its dataset, and a sample of the dataset's states (to tell imagined states outside the data).

Training writes them beside the weights (``starts.npz``), so the imagined env, ranking and Tune start
episodes without reading the whole dataset again (0.6 s of a ranking's serial part for a 50k-step
Hopper dataset, seconds for one of frames), and a model folder copied alone, to a cluster or a
colleague, still imagines and ranks. A model trained before they were kept reads its dataset instead.
"""

from __future__ import annotations

import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import ImaginariumError, ModelError
from imaginarium.outputs import atomic_write_bytes

STARTS_FILE = "starts.npz"

#: recorded states kept for the outside-the-data check; more than it takes (2,000 held out and 8,192
#: reference states, see ``imaginarium.evaluation.KnownStates``)
STATE_SAMPLE = 16_384


#: an imagined state or reward farther than this many of the data's standard deviations beyond the
#: range the data recorded has diverged: its episode ends there (truncated, ``diverged``)
DIVERGENCE_STDS = 10.0


@dataclass(frozen=True)
class DataLimits:
    """Where imagination stops being believable: the recorded states' and rewards' ranges, each widened
    by :data:`DIVERGENCE_STDS` (or another number of) standard deviations of what was recorded."""

    state_low: np.ndarray
    state_high: np.ndarray
    #: ``None`` for a model folder made before rewards were kept with the states
    reward_low: float | None
    reward_high: float | None

    def within(self, states: torch.Tensor, rewards: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` whether each state ``(B, D)`` (and reward ``(B,)``) is finite and inside the limits."""
        low, high = self._bounds(states.dtype, states.device)
        inside = ((states >= low) & (states <= high)).all(-1)  # NaN compares false: outside
        if rewards is not None:
            inside &= self.within_rewards(rewards)
        return inside

    def _bounds(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The state limits as tensors, made once per dtype and device (imagination checks every step)."""
        cache = self.__dict__.setdefault("_tensors", {})
        key = (dtype, device)
        if key not in cache:
            cache[key] = tuple(
                torch.as_tensor(bound, dtype=dtype, device=device)
                for bound in (self.state_low, self.state_high)
            )
        return cache[key]

    def within_rewards(self, rewards: torch.Tensor) -> torch.Tensor:
        """``(B,)`` whether each reward is finite and inside the limits."""
        inside = torch.isfinite(rewards)
        if self.reward_low is not None:
            inside &= (rewards >= self.reward_low) & (rewards <= self.reward_high)
        return inside


@dataclass(frozen=True)
class DataStarts:
    """``inputs``: ``(E, ...)`` what the model observes at the start of each episode it can start
    from (a state model: those that recorded states). ``states``: ``(N, obs_dim)`` a sample of the
    recorded states, at most :data:`STATE_SAMPLE`."""

    inputs: np.ndarray
    states: np.ndarray
    #: ``(M,)`` the rewards of those of ``states`` that had actions; ``None`` from a model folder made
    #: before they were kept
    rewards: np.ndarray | None = None

    def bounds(self, stds: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The recorded states' range in each dimension, widened on both sides by ``stds`` of that
        dimension's standard deviation: where imagined states stop being backed by data. ``None``
        when no states were recorded (a model of frames from videos)."""
        if len(self.states) == 0:
            return None
        low, high = self.states.min(0), self.states.max(0)
        spread = stds * _scale(self.states.std(0), low, high)
        return low - spread, high + spread

    def limits(self, stds: float = DIVERGENCE_STDS) -> DataLimits | None:
        """Beyond these an imagined state or reward has diverged; ``None`` when no states were recorded."""
        bounds = self.bounds(stds)
        if bounds is None:
            return None
        if self.rewards is None or len(self.rewards) == 0:
            return DataLimits(*bounds, None, None)
        low, high = float(self.rewards.min()), float(self.rewards.max())
        spread = stds * float(_scale(np.asarray(self.rewards.std()), np.asarray(low), np.asarray(high)))
        return DataLimits(*bounds, low - spread, high + spread)


def _scale(std: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A quantity's spread for its limits: its standard deviation, but at least a hundredth of its size
    (CartPole's rewards are all 1: a model's 0.998 is no divergence)."""
    size = np.maximum(np.maximum(np.abs(low), np.abs(high)), 1.0)
    return np.maximum(std, 0.01 * size)


def data_limits(model: Any) -> DataLimits | None:
    """The divergence limits of the data kept with ``model`` (``None`` for a model of frames, or one
    that keeps no states)."""
    starts = getattr(model, "starts", None)
    return None if starts is None or model.observes_pixels else starts.limits()


def starts_of(model: Any, data: Dataset, seed: int = 0) -> DataStarts:
    """The starts of ``data`` for ``model`` (a state model or one that sees frames)."""
    firsts = data.episode_starts[:-1]
    if not model.observes_pixels:  # imported videos have frames but no states to start from
        firsts = firsts[data.episode_has_states()]
    recorded = np.flatnonzero(np.isfinite(data.observations.reshape(data.num_steps, -1)).all(1))
    if len(recorded) > STATE_SAMPLE:
        recorded = np.sort(np.random.default_rng(seed).choice(recorded, STATE_SAMPLE, replace=False))
    inputs = np.ascontiguousarray(model.inputs(data, firsts))
    states = np.ascontiguousarray(data.observations[recorded], dtype=np.float32)
    rewarded = recorded[~data.action_free[recorded]]  # episodes without actions have no rewards either
    return DataStarts(inputs, states, np.ascontiguousarray(data.rewards[rewarded], dtype=np.float32))


def save_starts(directory: str | Path, starts: DataStarts) -> None:
    """Write ``starts`` into the model folder ``directory`` (atomically)."""
    atomic_write_bytes(
        Path(directory) / STARTS_FILE,
        lambda handle: np.savez(
            handle,
            inputs=starts.inputs,
            states=starts.states,
            **({} if starts.rewards is None else {"rewards": starts.rewards}),
        ),
    )


def read_starts(directory: str | Path) -> DataStarts | None:
    """The starts kept in the model folder ``directory``, or ``None`` for a model trained without.

    :raises ModelError: the file is there but unreadable (truncated, corrupted, missing an array).
    """
    path = Path(directory) / STARTS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            rewards = arrays["rewards"] if "rewards" in arrays.files else None
            return DataStarts(arrays["inputs"], arrays["states"], rewards)
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,  # truncated: its directory is gone
        NotImplementedError,  # damaged: zipfile reads an unknown compression method
        tokenize.TokenError,  # damaged: numpy cannot parse an array's header
    ) as error:
        raise ModelError(
            f"{str(path)!r} is unreadable ({error}); delete it to read the dataset instead"
        ) from None


def card_dataset_path(model: Any) -> str | None:
    """The path of the dataset the model's card says it was trained on (``None`` when it names none)."""
    return ((getattr(model, "card", None) or {}).get("dataset") or {}).get("path")


def model_starts(model: Any, dataset: str | Path | Dataset | None = None) -> DataStarts:
    """The starts of ``dataset`` when one is given, else those kept with ``model``, else those of the
    dataset its card names."""
    if dataset is None:
        kept = getattr(model, "starts", None)
        if kept is not None:
            return kept
        dataset = card_dataset_path(model)
        if dataset is None:
            raise ImaginariumError("the model card names no dataset; give dataset= for the start states")
    return starts_of(model, dataset if isinstance(dataset, Dataset) else load_dataset(dataset))


def keep_starts(directory: str | Path) -> DataStarts:
    """Keep the starts of the dataset its card names in the folder of a model trained before they were
    kept, so it no longer needs its dataset to imagine and rank."""
    from imaginarium.models import load_world_model

    starts = model_starts(load_world_model(directory))
    save_starts(directory, starts)
    return starts
