"""The one interface every world-model family implements, and what the families share.

A world model is filtered on real history into a *state*, then stepped with actions::

    state = model.observe(observations, actions)          # or model.initial_state(observation)
    out = model.step(state, action)                       # batched over the leading dim
    out.state, out.reward, out.success_prob, out.continue_prob, out.uncertainty
    model.decode(out.state)                               # (B, *obs_shape), real observation space
    model.features(out.state)                             # (B, F), what agents read

States are dicts of tensors whose first dim is the batch, so they can be indexed, stacked and moved
without knowing the family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from imaginarium.dataset import Dataset
from imaginarium.errors import DatasetError, ImaginariumError
from imaginarium.samplers import Batch, SequenceSampler

State = dict[str, torch.Tensor]


@dataclass
class StepOutput:
    """The result of one batched model step; every tensor is ``(B,)`` except ``state``.

    ``uncertainty`` is ``None`` when the step was asked not to compute it.
    """

    state: State
    reward: torch.Tensor
    success_prob: torch.Tensor
    continue_prob: torch.Tensor
    uncertainty: torch.Tensor | None


@dataclass
class TransitionPredictions:
    """Teacher-forced one-step predictions for every transition of a batch of windows, ``(B, L)``.

    ``head_features`` are what the success and continue heads read, ``(B, L, F)``; calibration fits on them.
    """

    reward: torch.Tensor
    success_prob: torch.Tensor
    continue_prob: torch.Tensor
    head_features: torch.Tensor


class WorldModel(nn.Module, ABC):
    """Base of the families: spaces, action encoding, and the abstract interface.

    :param observation_space: a Box; the model predicts observations in this space.
    :param action_space: a Box or Discrete; discrete actions are one-hot encoded.
    :param config: the family's frozen config dataclass.
    """

    family: ClassVar[str]
    config_class: ClassVar[type]
    #: ``(cos, sin)`` index pairs of angles the observation carries on the unit circle (the task's
    #: ``circles``): predicted observations are put back on it, as a real state always is
    circles: tuple[tuple[int, int], ...] = ()
    #: training windows: transitions per window, and whether they may cross episode boundaries
    sequence_length: int = 1
    within_episodes: bool = True

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ImaginariumError(f"world models need a flat Box observation space, got {observation_space}")
        if not isinstance(action_space, gym.spaces.Box | gym.spaces.Discrete):
            raise ImaginariumError(f"world models need a Box or Discrete action space, got {action_space}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.obs_dim = int(observation_space.shape[0])
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        for name, bound in (
            ("observation_low", observation_space.low),
            ("observation_high", observation_space.high),
        ):
            self.register_buffer(name, torch.as_tensor(bound, dtype=torch.float32), persistent=False)
        self.action_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        if not self.discrete:
            low = np.where(np.isfinite(action_space.low), action_space.low, -1.0)
            high = np.where(np.isfinite(action_space.high), action_space.high, 1.0)
            self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32).reshape(-1))
            self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32).reshape(-1))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    #: the number format of imagined steps (never of training): ``float32``, or ``bfloat16`` where
    #: the family supports it (see :meth:`set_precision`)
    precision: str = "float32"

    def set_precision(self, precision: str) -> None:
        """Take imagined steps in ``precision``. Only ``float32`` here; a family that can compute in
        ``bfloat16`` says so by overriding this.

        :raises ImaginariumError: for any other precision.
        """
        if precision != "float32":
            raise ImaginariumError(f"precision={precision!r}: the {self.family} family steps in float32 only")
        self.precision = precision

    @property
    def input_space(self) -> gym.spaces.Box:
        """What ``observe`` and ``initial_state`` take and ``decode`` gives: the real observation
        space, or RGB frames for a model that sees images."""
        return self.observation_space

    @property
    def observes_pixels(self) -> bool:
        """Whether the model sees frames (``dataset.images``) rather than state vectors."""
        return len(self.input_space.shape) == 3

    def inputs(self, dataset: Dataset, rows: np.ndarray) -> np.ndarray:
        """What the model observes at ``dataset.observations[rows]``: those states, or their frames."""
        if self.observes_pixels:
            self.check_frames(dataset)
            return dataset.images(rows)
        return dataset.observations[rows]

    def next_inputs(self, dataset: Dataset, rows: np.ndarray) -> np.ndarray:
        """What the model observes at ``dataset.next_observations[rows]``."""
        if self.observes_pixels:
            self.check_frames(dataset)
            return dataset.next_images(rows)
        return dataset.next_observations[rows]

    def check_frames(self, dataset: Dataset) -> None:
        """Refuse a dataset whose frames this model cannot see (none, or another size).

        :raises DatasetError: naming the sizes.
        """
        if not self.observes_pixels:
            return
        expected = tuple(self.input_space.shape)
        if dataset.image_shape is None:
            raise DatasetError(
                f"the model sees {expected[0]}×{expected[1]} frames, but the dataset holds none; "
                f"collect it with --pixels {expected[0]}"
            )
        if tuple(dataset.image_shape) != expected:
            raise DatasetError(
                f"the model sees frames of shape {expected}, the dataset's are {tuple(dataset.image_shape)}"
            )

    @property
    def draws_per_step(self) -> int:
        """Independent batches of ``config.batch_size`` windows that one training step consumes."""
        return 1

    def clip_observations(self, observations: torch.Tensor) -> torch.Tensor:
        """Observations held inside the observation space's bounds and their angles on the unit circle
        (a real state never leaves either)."""
        clipped = torch.clamp(observations, self.observation_low, self.observation_high)
        if not self.circles:
            return clipped
        cosines, sines = self._circle_indices(clipped.device)
        cos, sin = clipped.index_select(-1, cosines), clipped.index_select(-1, sines)
        norm = torch.sqrt(cos * cos + sin * sin).clamp_min(1e-6)
        return clipped.index_copy(-1, cosines, cos / norm).index_copy(-1, sines, sin / norm)

    def _circle_indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The cosine and sine columns of ``circles`` as index tensors on ``device``, made once each."""
        key = (self.circles, device)
        cached = getattr(self, "_circle_cache", None)
        if cached is None or cached[0] != key:
            pair = tuple(torch.tensor(indices, device=device) for indices in zip(*self.circles, strict=True))
            self._circle_cache = (key, pair)
        return self._circle_cache[1]

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``(...,)`` ints or ``(..., A)`` floats -> ``(..., A)`` floats: one-hot, or scaled to [-1, 1]."""
        if self.discrete:
            return nn.functional.one_hot(actions.long(), self.action_dim).float()
        actions = actions.float().reshape(*actions.shape[: actions.dim() - len(self.action_space.shape)], -1)
        if torch.is_grad_enabled():
            return 2.0 * (actions - self.action_low) / (self.action_high - self.action_low) - 1.0
        offset, scale = self._action_affine()
        return torch.addcmul(offset, actions, scale)  # the same map in one op, for small batches

    def _action_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offset, scale)`` with ``offset + scale * a`` the action ``a`` scaled to [-1, 1], made again
        when the bounds move or change."""
        low, high = self.action_low, self.action_high
        key = (low.data_ptr(), low._version, high.data_ptr(), high._version)
        cached = getattr(self, "_affine_cache", None)
        if cached is None or cached[0] != key:
            scale = 2.0 / (high - low)
            cached = self._affine_cache = (key, (-1.0 - low * scale, scale))
        return cached[1]

    # -------------------------------------------------------------------------------- training

    @abstractmethod
    def fit_normalizers(self, dataset: Dataset) -> None:
        """Set input and target statistics from the training data, before the first step."""

    def fit_outcomes(self, dataset: Dataset) -> None:
        """Let the success and continue heads predict the training data's only outcome when it has one
        (no success labels, no terminations), skipping their networks (see :class:`BernoulliHead`)."""
        self.success_head.fit_outcomes(dataset.success)
        self.continue_head.fit_outcomes(~dataset.terminated)

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch of windows ``(B, L)``, and named parts of it for logging."""

    @abstractmethod
    def predict_transitions(self, batch: Batch) -> TransitionPredictions:
        """One-step predictions for each transition of ``batch`` from the real history before it."""

    def finalize(self, validation: Dataset) -> dict[str, Any]:
        """After training: choose what is chosen on held-out data; returns figures for the model card."""
        return {}

    # ------------------------------------------------------------------------------- inference

    @abstractmethod
    def initial_state(self, observations: torch.Tensor) -> State:
        """States from single real observations ``(B, D)``, with no history before them."""

    @abstractmethod
    def observe(self, observations: torch.Tensor, actions: torch.Tensor) -> State:
        """Filter real histories into states: ``observations (B, T, D)``, ``actions`` between them ``(B, T-1, ...)``."""

    def update(self, state: State, actions: torch.Tensor, observations: torch.Tensor) -> State:
        """Filter one more real step into ``state``: the ``actions`` taken, then the ``observations``
        that followed. Families whose state is the observation just start from it."""
        return self.initial_state(observations)

    @abstractmethod
    def step(
        self,
        state: State,
        actions: torch.Tensor,
        sample: bool = True,
        *,
        uncertainty: bool = True,
        generator: torch.Generator | None = None,
        tiles: int = 1,
    ) -> StepOutput:
        """Advance a batch of states by one action each.

        :param sample: draw the next state; ``False`` takes the most likely outcome.
        :param uncertainty: compute ``uncertainty``; a family may skip work without it (the ensemble
            then runs one member per sample instead of all of them) and return ``None``.
        :param generator: the source of randomness of the draws (default torch's global one).
        :param tiles: the batch is this many equal blocks that share their random draws (common random
            numbers): row ``r`` of every block draws what row ``r`` of a batch of one block would, so
            several policies can share one call and each still sees the noise it would see alone.
        """

    @property
    def rollout_members(self) -> int:
        """How many members a rollout can be pinned to (the ensemble's elites); 1 for other families."""
        return 1

    def pin_members(self, state: State, members: torch.Tensor) -> State:
        """``state`` whose samples always step with member ``members[i]`` (PETS's TS∞), so returns can be
        compared across members; families without members return the state as it is."""
        return state

    @abstractmethod
    def decode(self, state: State) -> torch.Tensor:
        """``(B, D)`` observations in the real observation space."""

    @abstractmethod
    def features(self, state: State) -> torch.Tensor:
        """``(B, F)`` feature vectors for agents."""


@torch.no_grad()
def teacher_forced_predictions(
    model: WorldModel, dataset: Dataset, windows: int = 512, seed: int = 0
) -> dict[str, torch.Tensor]:
    """One-step predictions and their targets over random windows of ``dataset``, flattened to ``(N,)``.

    Keys: ``reward``, ``reward_prediction``, ``success``, ``success_prob``, ``continue``,
    ``continue_prob``, and ``head_features`` ``(N, F)`` (what the probability heads read).
    """
    model.check_frames(dataset)
    sampler = SequenceSampler.capped(
        dataset, 64, model.sequence_length, model.device, seed, model.within_episodes, model.observes_pixels
    )
    parts: dict[str, list[torch.Tensor]] = {}
    for _ in range(max(1, windows // sampler.batch_size)):
        batch = sampler.sample()
        predictions = model.predict_transitions(batch)
        for key, value in (
            ("reward", batch.rewards),
            ("reward_prediction", predictions.reward),
            ("success", batch.success),
            ("success_prob", predictions.success_prob),
            ("continue", ~batch.terminated),
            ("continue_prob", predictions.continue_prob),
            ("head_features", predictions.head_features),
        ):
            flat = value.reshape(-1, value.shape[-1]) if key == "head_features" else value.reshape(-1)
            parts.setdefault(key, []).append(flat)
    return {key: torch.cat(values) for key, values in parts.items()}


def shared_draw(
    draw: Callable[[tuple[int, ...]], torch.Tensor], shape: tuple[int, ...], tiles: int
) -> torch.Tensor:
    """``draw(shape)``; with ``tiles`` > 1 the batch (``shape[0]``) is that many equal blocks and one
    block's draw is repeated over all of them (see ``tiles`` of :meth:`WorldModel.step`)."""
    if tiles == 1:
        return draw(shape)
    if shape[0] % tiles:
        raise ImaginariumError(f"a batch of {shape[0]} cannot be split into {tiles} equal tiles")
    return draw((shape[0] // tiles, *shape[1:])).repeat(tiles, *[1] * (len(shape) - 1))


def spread(values: torch.Tensor, dim: int) -> torch.Tensor:
    """How far ``values`` disagree along ``dim`` (the members): the norm over the last dimension of
    their population std along ``dim``.

    Written out because ``std(dim).norm(-1)`` reduces a dimension inside a batch about 14× slower on a
    CPU (1.9 ms against 0.14 ms for 5 members × 1024 samples × 11 here), a tenth of a 1024-env step."""
    centred = values - values.mean(dim, keepdim=True)
    return centred.square().mean(dim).sum(-1).sqrt()


def check_device(device: str | torch.device) -> str:
    """``device`` if this machine has it, else an error naming it (``cuda:3`` on a one-GPU machine too)."""
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ImaginariumError(f"unknown device {str(device)!r}: {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ImaginariumError(
                f"device {str(device)!r} was asked for, but this torch build sees no CUDA device"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ImaginariumError(
                f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    return str(device)


class Normalizer(nn.Module):
    """Fixed per-dimension mean and std, fitted once from data and saved with the model."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def fit(self, values: np.ndarray | torch.Tensor, keep: np.ndarray | None = None) -> None:
        """Fit to ``(N, size)`` values; dims where ``keep`` is true stay as they are (e.g. one-hot)."""
        values = torch.as_tensor(np.asarray(values), dtype=torch.float32).reshape(len(values), -1)
        mean, std = values.mean(0), values.std(0).clamp_min(1e-6)
        if keep is not None:
            keep_mask = torch.as_tensor(keep, dtype=torch.bool)
            mean = torch.where(keep_mask, torch.zeros_like(mean), mean)
            std = torch.where(keep_mask, torch.ones_like(std), std)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def inverse(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.std + self.mean
