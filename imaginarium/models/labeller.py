"""An inverse-dynamics labeller: the actions of observation-only (video) episodes, inferred from the
episodes that recorded them (as VPT labels video with a model learned on a small labelled set).

It reads a short window of what the world model observes — ``context`` observations before step
``t``, the observation at ``t`` and the one after — and predicts the action taken at ``t``: frames go
through a convolutional encoder, states are normalised. The world model then learns its dynamics
from every episode, with the inferred actions where none were recorded::

    labeller, figures = train_labeller(dataset, pixels=False)
    dataset = label_actions(dataset, labeller)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imaginarium.config import config_from_dict
from imaginarium.dataset import Dataset
from imaginarium.errors import DatasetError
from imaginarium.models.base import Normalizer
from imaginarium.models.vision import ConvEncoder
from imaginarium.rewards.heads import mlp


@dataclass(frozen=True)
class LabellerConfig:
    """Size and training of the inverse-dynamics labeller."""

    hidden: int = 256
    layers: int = 2
    #: observations before ``t`` in each window (frames need them to show velocity)
    context: int = 1
    steps: int = 3_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    cnn_depth: int = 16
    validation_fraction: float = 0.1
    seed: int = 0


class InverseDynamics(nn.Module):
    """Window ``(B, context + 2, *observation)`` -> action logits (discrete) or box actions scaled to
    [-1, 1] (clipped to it when predicting)."""

    def __init__(self, input_space: gym.spaces.Box, action_space: gym.Space, config: LabellerConfig) -> None:
        super().__init__()
        self.config = config
        self.input_space, self.action_space = input_space, action_space
        self.pixels = len(input_space.shape) == 3
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.pixels:
            self.encoder = ConvEncoder(input_space.shape[0], config.cnn_depth, config.hidden)
            width = config.hidden
        else:  # states: the one at t, then each step's change, each normalised on its own scale
            width = int(np.prod(input_space.shape))
            self.state_norm, self.change_norm = Normalizer(width), Normalizer(width)
        outputs = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        # a linear path beside the MLP: many systems' actions are close to linear in the states around
        # them (a torque in the change of velocity), which a few labelled episodes then pin down
        self.linear = nn.Linear(width * (config.context + 2), outputs)
        self.head = mlp(width * (config.context + 2), config.hidden, config.layers, outputs)
        if not self.discrete:
            low = np.where(np.isfinite(action_space.low), action_space.low, -1.0).reshape(-1)
            high = np.where(np.isfinite(action_space.high), action_space.high, 1.0).reshape(-1)
            self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        flat = self.features(windows)
        return self.linear(flat) + self.head(flat)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, (context + 2) · W)``: encoded frames, or the state and its normalised changes."""
        if self.pixels:
            return self.encoder(windows).flatten(1)
        windows = windows.float().flatten(2)
        now = self.state_norm(windows[:, -2])
        changes = self.change_norm(windows[:, 1:] - windows[:, :-1])  # (B, K + 1, W)
        return torch.cat([now, changes.flatten(1)], 1)

    def targets(self, actions: torch.Tensor) -> torch.Tensor:
        """What the outputs are trained towards: one-hot actions, or box actions scaled to [-1, 1]."""
        if self.discrete:
            return F.one_hot(actions.long() - int(self.action_space.start), int(self.action_space.n)).float()
        return self.scaled(actions)

    @torch.no_grad()
    def fit_linear(self, windows: torch.Tensor, actions: torch.Tensor, ridge: float = 1e-3) -> None:
        """Start the linear path at the ridge-regression fit of the targets on the state features."""
        features = self.features(windows)
        design = torch.cat([features, torch.ones(len(features), 1, device=features.device)], 1)
        gram = design.T @ design + ridge * len(design) * torch.eye(design.shape[1], device=design.device)
        solution = torch.linalg.solve(gram, design.T @ self.targets(actions))
        self.linear.weight.copy_(solution[:-1].T)
        self.linear.bias.copy_(solution[-1])

    def fit_normalizers(self, dataset: Dataset) -> None:
        """State and change scales of the training data (frames need none)."""
        if not self.pixels:
            self.state_norm.fit(dataset.observations)
            self.change_norm.fit(dataset.next_observations - dataset.observations)

    def scaled(self, actions: torch.Tensor) -> torch.Tensor:
        """Box actions scaled to [-1, 1], as the head predicts them."""
        flat = actions.float().reshape(len(actions), -1)
        return 2.0 * (flat - self.action_low) / (self.action_high - self.action_low) - 1.0

    def loss(self, windows: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return F.cross_entropy(self(windows), actions.long() - int(self.action_space.start))
        return ((self(windows) - self.targets(actions)) ** 2).sum(-1).mean()

    @torch.no_grad()
    def predict(self, windows: torch.Tensor) -> np.ndarray:
        """Actions as the action space takes them."""
        output = self(windows)
        if self.discrete:
            return (output.argmax(-1) + int(self.action_space.start)).cpu().numpy().astype(np.int64)
        output = output.clamp(-1.0, 1.0)
        actions = (output + 1.0) / 2.0 * (self.action_high - self.action_low) + self.action_low
        return actions.reshape(len(output), *self.action_space.shape).cpu().numpy().astype(np.float32)


class _Windows:
    """Gathers the labeller's windows for rows of one dataset: ``context`` earlier observations (the
    episode's first repeated before its start), the row's observation and the next one."""

    def __init__(self, dataset: Dataset, context: int, pixels: bool) -> None:
        self.dataset, self.context, self.pixels = dataset, context, pixels
        episode = np.searchsorted(dataset.episode_starts, np.arange(dataset.num_steps), side="right") - 1
        self.episode_start = dataset.episode_starts[episode]

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        offsets = np.arange(-self.context, 1)
        earlier = np.maximum(rows[:, None] + offsets[None, :], self.episode_start[rows][:, None])
        if self.pixels:
            now = self.dataset.images(earlier.reshape(-1)).reshape(*earlier.shape, *self.dataset.image_shape)
            after = self.dataset.next_images(rows)
        else:
            now, after = self.dataset.observations[earlier], self.dataset.next_observations[rows]
        return torch.as_tensor(np.concatenate([now, after[:, None]], 1))


def train_labeller(
    dataset: Dataset,
    pixels: bool = False,
    config: LabellerConfig | dict[str, Any] | None = None,
    device: str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> tuple[InverseDynamics, dict[str, Any]]:
    """Learn the actions of ``dataset``'s labelled episodes from their observations (or frames).

    :param on_step: called with the number of steps done after each one (a progress bar).

    :returns: the labeller and its held-out figures: ``r2`` of box actions (per dimension, averaged)
        or ``accuracy`` of discrete ones, on episodes it never trained on.
    :raises DatasetError: fewer than two labelled episodes.
    """
    if not isinstance(config, LabellerConfig):
        config = config_from_dict(LabellerConfig, config or {}, where="labeller config")
    labelled = np.flatnonzero(~dataset.episode_action_free())
    if len(labelled) < 2:
        raise DatasetError(
            f"the dataset has {len(labelled)} episode(s) with actions; a labeller needs at least 2"
        )
    torch.manual_seed(config.seed)
    train, validation = dataset.subset(labelled).split(config.validation_fraction, config.seed)
    input_space = (
        gym.spaces.Box(0, 255, dataset.image_shape, np.uint8) if pixels else dataset.observation_space
    )
    if pixels and dataset.image_shape is None:
        raise DatasetError("a labeller of frames needs a dataset with frames; collect it with --pixels")
    labeller = InverseDynamics(input_space, dataset.action_space, config).to(device)
    labeller.fit_normalizers(train)
    windows = _Windows(train, config.context, pixels)
    actions = torch.as_tensor(train.actions)
    if not pixels:  # frames' features are learned; states' are fixed, so their linear fit is exact
        every = np.arange(train.num_steps)
        labeller.fit_linear(windows(every).to(device), actions.to(device))
    optimizer = torch.optim.AdamW(labeller.parameters(), lr=config.learning_rate)
    generator = np.random.default_rng(config.seed)
    for step in range(config.steps):
        rows = generator.integers(train.num_steps, size=config.batch_size)
        loss = labeller.loss(windows(rows).to(device), actions[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step + 1)
    labeller.eval()
    figures = {"labelled_episodes": int(len(labelled)), **_held_out(labeller, validation, config, device)}
    return labeller, figures


def _held_out(
    labeller: InverseDynamics, validation: Dataset, config: LabellerConfig, device: str
) -> dict[str, float]:
    predicted = _predict(labeller, validation, np.arange(validation.num_steps), config, device)
    if labeller.discrete:
        return {"accuracy": float(np.mean(predicted == validation.actions))}
    truth = validation.actions.reshape(validation.num_steps, -1)
    predicted = predicted.reshape(len(predicted), -1)
    variance = truth.var(0)
    r2 = 1.0 - ((predicted - truth) ** 2).mean(0) / np.where(variance > 0, variance, 1.0)
    return {"r2": float(r2.mean())}


def _predict(
    labeller: InverseDynamics, dataset: Dataset, rows: np.ndarray, config: LabellerConfig, device: str
) -> np.ndarray:
    windows = _Windows(dataset, config.context, labeller.pixels)
    parts = [
        labeller.predict(windows(chunk).to(device))
        for chunk in np.array_split(rows, max(1, len(rows) // 1024))
    ]
    return np.concatenate(parts) if parts else dataset.actions[:0]


def label_actions(dataset: Dataset, labeller: InverseDynamics, device: str = "cpu") -> Dataset:
    """A copy of ``dataset`` whose action-free rows carry the labeller's actions (rewards stay unknown,
    and ``action_free`` still marks those rows)."""
    rows = np.flatnonzero(dataset.action_free)
    actions = dataset.actions.copy()
    if len(rows):
        actions[rows] = _predict(labeller, dataset, rows, labeller.config, device)
    labelled = dataset.subset(np.arange(dataset.num_episodes))
    labelled.actions = actions
    return labelled
