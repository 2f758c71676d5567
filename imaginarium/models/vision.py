"""Convolutional encoder and decoder for square RGB frames (DreamerV3's image path).

Frames enter as ``(..., H, W, 3)`` uint8 (or floats on the same 0–255 scale), are scaled to
``[-0.5, 0.5]``, and are halved in size by stride-2 convolutions down to 4 × 4; the decoder mirrors
that with transposed convolutions. Channels double at every stage from ``depth``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from imaginarium.errors import ImaginariumError

SMALLEST, LARGEST = 16, 128


def check_image_size(size: int) -> int:
    """``size`` if the networks can take ``size`` × ``size`` frames (a power of two in 16–128)."""
    if not isinstance(size, int) or size < SMALLEST or size > LARGEST or size & (size - 1):
        raise ImaginariumError(
            f"image size must be a power of two from {SMALLEST} to {LARGEST} (e.g. 64), got {size!r}"
        )
    return size


def _stages(size: int) -> int:
    return int(math.log2(check_image_size(size))) - 2


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` frames on the 0–255 scale -> ``(N, 3, H, W)`` floats in ``[-0.5, 0.5]``."""
    return frames.float().permute(0, 3, 1, 2) / 255.0 - 0.5


def to_frames(unit: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_unit`, rounded to uint8: ``(N, 3, H, W)`` -> ``(N, H, W, 3)``."""
    return ((unit + 0.5).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)


class ConvEncoder(nn.Module):
    """``(..., H, W, 3)`` frames -> ``(..., outputs)`` embeddings."""

    def __init__(self, size: int, depth: int, outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(_stages(size)):
            width = depth * 2**stage
            layers += [nn.Conv2d(channels, width, 4, 2, 1), nn.GroupNorm(1, width), nn.SiLU()]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.out = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * 16, outputs), nn.LayerNorm(outputs), nn.SiLU()
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        leading = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        return self.out(self.convs(to_unit(flat))).reshape(*leading, -1)


class ConvDecoder(nn.Module):
    """``(..., features)`` -> ``(..., 3, H, W)`` frames in ``[-0.5, 0.5]`` (the mean of a unit Gaussian)."""

    def __init__(self, features: int, size: int, depth: int) -> None:
        super().__init__()
        stages = _stages(size)
        self.channels = depth * 2 ** (stages - 1)
        self.size = size
        self.project = nn.Linear(features, self.channels * 16)
        layers: list[nn.Module] = []
        channels = self.channels
        for stage in reversed(range(stages)):
            last = stage == 0
            width = 3 if last else depth * 2 ** (stage - 1)
            layers.append(nn.ConvTranspose2d(channels, width, 4, 2, 1))
            if not last:
                layers += [nn.GroupNorm(1, width), nn.SiLU()]
            channels = width
        self.deconvs = nn.Sequential(*layers)
        #: the training frames' average: the network predicts each frame's difference from it
        self.register_buffer("mean", torch.zeros(3, size, size))

    def fit(self, frames: np.ndarray, sample: int = 4096, seed: int = 0) -> None:
        """Set the average frame from (a sample of) the training frames ``(N, H, W, 3)``."""
        rows = np.random.default_rng(seed).choice(len(frames), min(sample, len(frames)), replace=False)
        self.mean.copy_(to_unit(torch.as_tensor(frames[np.sort(rows)])).mean(0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        leading = features.shape[:-1]
        grid = self.project(features.reshape(-1, features.shape[-1])).reshape(-1, self.channels, 4, 4)
        return (self.deconvs(grid) + self.mean).reshape(*leading, 3, self.size, self.size)

    def loss(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Squared error summed over a frame's pixels, averaged over frames ``(..., H, W, 3)``."""
        target = to_unit(frames.reshape(-1, *frames.shape[-3:]))
        prediction = self(features).reshape(target.shape)
        return ((prediction - target) ** 2).sum((1, 2, 3)).mean()
