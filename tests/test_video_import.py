"""Video files become observation-only episodes of a dataset with frames; bad files are named."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from imaginarium.cli import main
from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.envs.suite import get_task
from imaginarium.errors import DatasetError
from imaginarium.models.train import train_world_model
from imaginarium.video_import import import_videos

SIZE = 16


@pytest.fixture(scope="module")
def with_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "pendulum"
    collect(get_task("pendulum", max_episode_steps=30), out, episodes=4, seed=1, pixels=SIZE, progress=False)
    return out


def _videos(folder: Path, dataset_path: Path) -> Path:
    """Two recordings of the dataset's own episodes: a GIF (lossless) and an MP4."""
    dataset = load_dataset(dataset_path)
    folder.mkdir()
    iio.imwrite(folder / "a.gif", dataset.episode(0).images, duration=50, loop=0)
    iio.imwrite(folder / "b.mp4", np.repeat(np.repeat(dataset.episode(1).images, 2, 1), 2, 2), fps=20)
    return folder


def test_videos_become_observation_only_episodes_with_their_frames(with_frames: Path, tmp_path: Path) -> None:
    videos = _videos(tmp_path / "videos", with_frames)
    with pytest.raises(DatasetError, match=r"b\.mp4' has 32×32 frames; the dataset's are 16×16"):
        import_videos(videos, with_frames, tmp_path / "refused")
    out = import_videos(videos, with_frames, tmp_path / "joined", resize=True)
    dataset, original = load_dataset(out), load_dataset(with_frames)
    assert dataset.num_episodes == 6
    assert dataset.episode_action_free().tolist() == [False] * 4 + [True] * 2
    assert dataset.episode_has_states().tolist() == [True] * 4 + [False] * 2
    assert np.array_equal(dataset.episode(4).images, original.episode(0).images)  # the GIF is lossless
    assert dataset.episode(5).images.shape == original.episode(1).images.shape


def test_a_pixel_model_learns_from_the_videos_and_a_state_model_leaves_them_out(
    with_frames: Path, tmp_path: Path
) -> None:
    joined = import_videos(
        _videos(tmp_path / "videos", with_frames), with_frames, tmp_path / "j", resize=True
    )
    tiny = {"sequence_length": 8, "deter": 32, "hidden": 32, "batch_size": 4}
    steps = {"steps": 4, "eval_every": 2}
    pixels = train_world_model(
        joined,
        tmp_path / "px",
        "rssm",
        "xs",
        {**tiny, "image_size": SIZE},
        steps,
        progress=False,
        action_free="label",
        labeller={"steps": 5, "hidden": 16, "cnn_depth": 4, "batch_size": 8},
    )
    assert pixels.card["dataset"]["episodes"] == 6 and pixels.card["action_free"]["episodes"] == 2
    states = train_world_model(
        joined, tmp_path / "st", "rssm", "xs", tiny, steps, progress=False, action_free="label"
    )
    assert states.card["dataset"]["episodes"] == 4
    assert states.card["action_free"]["without_states_dropped"] == 2


def test_files_that_cannot_be_used_are_named(with_frames: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    with pytest.raises(DatasetError, match=r"cannot decode video '.*broken\.mp4'"):
        import_videos(folder, with_frames, tmp_path / "out")
    (folder / "broken.mp4").unlink()
    iio.imwrite(folder / "still.gif", np.zeros((1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"still\.gif' has 1 frame\(s\)"):
        import_videos(folder, with_frames, tmp_path / "out")
    with pytest.raises(DatasetError, match="holds no video file"):
        import_videos(tmp_path, with_frames, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_video_from_the_command_line(with_frames: Path, tmp_path: Path, capsys) -> None:
    videos = _videos(tmp_path / "videos", with_frames)
    out = tmp_path / "cli"
    assert (
        main(
            [
                "import-video",
                "--videos",
                str(videos),
                "--into",
                str(with_frames),
                "--out",
                str(out),
                "--resize",
            ]
        )
        == 0
    )
    assert "6 episodes, 2 of them observations only" in capsys.readouterr().out
