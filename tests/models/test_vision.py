"""The convolutional encoder and decoder: frames go in and come back the right way round."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imaginarium.errors import ImaginariumError
from imaginarium.models.vision import ConvDecoder, ConvEncoder, check_image_size, to_frames, to_unit


def _squares(size: int = 16) -> np.ndarray:
    """Four white frames, each with a coloured square in another corner."""
    frames = np.full((4, size, size, 3), 255, np.uint8)
    for index, (row, col) in enumerate([(1, 1), (1, 10), (10, 1), (10, 10)]):
        frames[index, row : row + 5, col : col + 5] = [200 * (index % 2), 60 * index, 255 - 50 * index]
    return frames


def test_unit_scaling_round_trips_frames_exactly() -> None:
    frames = torch.as_tensor(_squares())
    assert torch.equal(to_frames(to_unit(frames)), frames)


def test_an_encoder_and_decoder_learn_to_give_each_frame_back() -> None:
    torch.manual_seed(0)
    frames = _squares()
    encoder, decoder = ConvEncoder(16, 8, 16), ConvDecoder(16, 16, 8)
    decoder.fit(frames)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    batch = torch.as_tensor(frames)
    for _ in range(200):
        loss = decoder.loss(encoder(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        decoded = to_frames(decoder(encoder(batch))).float()
    errors = (decoded[:, None] - batch[None].float()).abs().mean((2, 3, 4))  # (decoded, real)
    assert torch.equal(errors.argmin(1), torch.arange(4))  # each decodes closest to its own frame
    average = (torch.as_tensor(frames.mean(0)) - batch.float()).abs().mean()
    assert errors.diagonal().mean() < 0.5 * average


@pytest.mark.parametrize("size", [8, 24, 256])
def test_sizes_the_networks_cannot_take_are_refused(size: int) -> None:
    with pytest.raises(ImaginariumError, match="power of two from 16 to 128"):
        check_image_size(size)
