"""Rollout videos: real and imagined episodes side by side, written as MP4 or GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaginarium.cli import main
from imaginarium.errors import ImaginariumError
from imaginarium.video import side_by_side, write_rollout_video


def test_frames_pair_real_and_imagined_and_the_shorter_episode_holds_its_last_frame() -> None:
    real = [np.full((40, 60, 3), 10 * i, np.uint8) for i in range(5)]
    imagined = [np.full((40, 60, 3), 200, np.uint8) for _ in range(3)]
    frames = side_by_side(real, imagined, size=32)
    assert len(frames) == 5 and all(frame.shape == (32, 64, 3) for frame in frames)
    assert np.array_equal(frames[4][:, 32:], frames[2][:, 32:])  # imagined ended: its last frame stays
    assert frames[4][20, 20].tolist() == [40, 40, 40]  # the real side goes on


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_rollout_video_shows_both_episodes_for_every_step(
    pendulum_model: Path, tmp_path: Path, suffix: str
) -> None:
    import imageio.v3 as iio

    out = tmp_path / f"rollout{suffix}"
    video = write_rollout_video(pendulum_model, "random", out, steps=12, size=64, fps=10)
    assert video.real_steps == 12 and video.frames == 13
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 13 and frames.shape[1:3] == (64, 128)
    left, right = frames[0][:, :64].astype(float), frames[0][:, 64:].astype(float)
    assert np.abs(left - right).mean() < 20  # the same first observation, drawn the same way


def test_the_video_command_writes_the_file_and_a_bad_suffix_is_refused(
    pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rollout.gif"
    code = main(
        ["video", "--model", str(pendulum_model), "--policy", "random", "--out", str(out), "--steps", "5"]
    )
    assert code == 0 and out.is_file() and "6 frames" in capsys.readouterr().out
    with pytest.raises(ImaginariumError, match="must end in .mp4 or .gif"):
        write_rollout_video(pendulum_model, "random", tmp_path / "rollout.avi")
