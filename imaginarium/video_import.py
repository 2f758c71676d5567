"""Video files as observation-only episodes, added to a dataset that has frames.

Each file (MP4, WebM, AVI, MOV, MKV or GIF, decoded by imageio's ffmpeg or Pillow plugin) becomes
one episode with its frames and nothing else: no states, actions or rewards. A world model that
sees frames learns its dynamics from them once an inverse-dynamics labeller has inferred their
actions from the dataset's own labelled episodes (``train --pixels N --action-free label``)::

    import_videos("videos/", into="data/pendulum_px", out="data/pendulum_px_video")
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imaginarium.dataset import Dataset, Episode, load_dataset, write_dataset
from imaginarium.errors import DatasetError

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")


def read_video(path: str | Path, size: tuple[int, int], resize: bool = False) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of one video file, of ``size`` ``(H, W)``.

    :param resize: scale frames of another size (bilinear); otherwise they are refused.
    :raises DatasetError: naming the file: it cannot be decoded, has fewer than two frames, or
        frames of another size.
    """
    import imageio.v3 as iio

    path = Path(path)
    try:
        frames = np.asarray(iio.imread(path, index=None))
    except Exception as error:  # each plugin raises its own kinds for damaged or unknown files
        raise DatasetError(f"cannot decode video {str(path)!r}: {type(error).__name__}: {error}") from None
    if frames.ndim == 3:  # greyscale
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise DatasetError(f"video {str(path)!r} decodes to shape {frames.shape}, not frames of RGB pixels")
    frames = frames[..., :3]
    if len(frames) < 2:
        raise DatasetError(f"video {str(path)!r} has {len(frames)} frame(s); an episode needs at least 2")
    if frames.shape[1:3] != tuple(size):
        if not resize:
            raise DatasetError(
                f"video {str(path)!r} has {frames.shape[2]}×{frames.shape[1]} frames; the dataset's are "
                f"{size[1]}×{size[0]} (pass resize to scale them)"
            )
        from imaginarium.envs.render import resize_frame

        frames = np.stack([resize_frame(frame, *size) for frame in frames])
    return frames.astype(np.uint8, copy=False)


def video_files(folder: str | Path) -> list[Path]:
    """The video files of ``folder``, sorted by name.

    :raises DatasetError: no such folder, or no video file in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{str(folder)!r} is not a folder of videos")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise DatasetError(f"{str(folder)!r} holds no video file ({', '.join(VIDEO_SUFFIXES)})")
    return files


def import_videos(
    videos: str | Path,
    into: str | Path | Dataset,
    out: str | Path,
    resize: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a new dataset at ``out``: the episodes of ``into`` (which must hold frames), then one
    observation-only episode per video file in the folder ``videos``.

    Every file is decoded and checked before anything is written.

    :raises DatasetError: ``into`` holds no frames, or a file cannot be used (named in the message).
    """
    dataset = into if isinstance(into, Dataset) else load_dataset(into)
    if dataset.image_shape is None or dataset.task is None:
        raise DatasetError(
            "videos join a dataset with frames of a known task; collect one with --pixels first"
        )
    size = dataset.image_shape[:2]
    clips = [read_video(path, size, resize) for path in video_files(videos)]

    def episodes() -> Iterator[Episode]:
        for index in range(dataset.num_episodes):
            yield dataset.episode(index)
        for frames in clips:
            unknown = np.full((len(frames), *dataset.observation_space.shape), np.nan, np.float32)
            yield Episode.observations_only(unknown, dataset.action_space, images=frames)

    metadata = {"videos": str(videos), "video_episodes": len(clips)}
    return write_dataset(out, episodes(), dataset.task, metadata=metadata, overwrite=overwrite)
