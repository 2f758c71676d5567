"""Datasets of real experience, stored in the Minari format and held in memory as flat transition arrays.

What we write opens in Minari (HDF5 by default, Arrow on request); any local Minari dataset, found by
path or by id under ``MINARI_DATASETS_PATH``, opens here in either format. Writing goes to a staging
folder that is renamed into place only when complete, so a reader never sees a half-written dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import gymnasium as gym
import numpy as np

from imaginarium import __version__
from imaginarium.envs.suite import INFO_SUCCESS_KEYS, Task, get_task
from imaginarium.errors import DatasetError, ImaginariumError
from imaginarium.outputs import check_output

DATA_FORMATS = ("hdf5", "arrow")
METADATA_KEY = "imaginarium"
#: keys of a dataset's observation Dict when it holds rendered frames beside the state
STATE_KEY, PIXELS_KEY = "state", "pixels"
#: the infos key that marks an episode recorded without actions or rewards
ACTION_FREE_KEY = "action_free"


@dataclass
class Episode:
    """One episode of real experience.

    :param observations: ``(T + 1, *obs_shape)``, the reset observation first.
    :param actions: ``(T, *act_shape)``, as executed (clipped to the action box).
    :param rewards: ``(T,)``.
    :param terminated: ``(T,)`` bool, true at most at the last step.
    :param truncated: ``(T,)`` bool, true at most at the last step.
    :param success: ``(T,)`` bool, the task's success label of the state reached by each step, or
        ``None`` when the task has no success signal.
    :param seed: the reset seed, when known.
    :param images: ``(T + 1, H, W, 3)`` uint8, the rendered frame of each observation, or ``None``.
    :param action_free: only the observations were recorded (e.g. video): ``actions`` and ``rewards``
        are placeholders that nothing learns from (see :meth:`observations_only`). Such an episode
        with frames may leave its states unknown (all NaN): an imported video.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray | None = None
    seed: int | None = None
    images: np.ndarray | None = None
    action_free: bool = False

    @classmethod
    def observations_only(
        cls,
        observations: np.ndarray,
        action_space: gym.Space,
        images: np.ndarray | None = None,
        terminated: bool = False,
    ) -> Episode:
        """An episode of observations with no actions or rewards: placeholders fill them (the middle
        of the action box, zero reward), and it ends truncated unless ``terminated``."""
        steps = len(observations) - 1
        if isinstance(action_space, gym.spaces.Discrete):
            actions = np.full(steps, int(action_space.start), dtype=np.int64)
        else:
            middle = np.where(
                np.isfinite(action_space.low) & np.isfinite(action_space.high),
                (action_space.low + action_space.high) / 2,
                0.0,
            )
            actions = np.broadcast_to(middle, (steps, *action_space.shape)).astype(np.float32)
        ends = np.zeros(steps, dtype=bool)
        ends[-1:] = True
        return cls(
            np.asarray(observations),
            actions,
            np.zeros(steps, dtype=np.float32),
            ends & terminated,
            ends & (not terminated),
            images=images,
            action_free=True,
        )

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))

    @property
    def succeeded(self) -> bool:
        return self.success is not None and bool(len(self.success) and self.success[-1])


@dataclass
class Dataset:
    """Transitions in memory as flat arrays, episodes laid end to end.

    Row ``i`` is one transition: ``observations[i]`` -> ``actions[i]`` -> ``next_observations[i]``
    with ``rewards[i]``, ``terminated[i]``, ``truncated[i]`` and ``success[i]``. Episode ``e`` owns
    rows ``episode_starts[e]:episode_starts[e + 1]``.

    A dataset collected with pixels also has ``frames``: each episode's ``T + 1`` rendered frames laid
    end to end, read per row with :meth:`images` and :meth:`next_images`.

    ``action_free`` marks the rows of episodes whose actions and rewards were never recorded (video);
    their ``actions`` are placeholders until a labeller fills them in (see ``imaginarium.labeller``),
    and their ``rewards`` are never learned from.
    """

    observations: np.ndarray  # (N, *obs_shape) float32
    next_observations: np.ndarray  # (N, *obs_shape) float32
    actions: np.ndarray  # (N, *act_shape) float32, or (N,) int64 for discrete actions
    rewards: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    success: np.ndarray  # (N,) bool
    episode_starts: np.ndarray  # (E + 1,) int64
    observation_space: gym.Space
    action_space: gym.Space
    task: Task | None = None
    has_success: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    frames: np.ndarray | None = None  # (N + E, H, W, 3) uint8
    action_free: np.ndarray | None = None  # (N,) bool; None: every row has its actions

    def __post_init__(self) -> None:
        if self.action_free is None:
            self.action_free = np.zeros(len(self.rewards), dtype=bool)

    @property
    def has_action_free(self) -> bool:
        """Whether some episodes hold observations only."""
        return bool(self.action_free.any())

    def episode_action_free(self) -> np.ndarray:
        """``(E,)`` whether each episode holds observations only."""
        return self.action_free[self.episode_starts[:-1]]

    def episode_has_states(self) -> np.ndarray:
        """``(E,)`` whether each episode recorded its states (an imported video has frames only)."""
        starts = self.episode_starts[:-1]
        return np.isfinite(self.observations[starts].reshape(len(starts), -1)).all(1)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts) - 1

    @property
    def num_steps(self) -> int:
        return len(self.rewards)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_starts)

    @property
    def firsts(self) -> np.ndarray:
        """``(N,)`` bool: the row is the first transition of its episode."""
        first = np.zeros(self.num_steps, dtype=bool)
        first[self.episode_starts[:-1]] = True
        return first

    @property
    def discrete_actions(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """``(H, W, 3)`` of the frames, or ``None`` for a dataset of states only."""
        return None if self.frames is None else tuple(self.frames.shape[1:])

    def images(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """``(len(rows), H, W, 3)`` uint8 frames of ``observations[rows]``."""
        return self._frames()[self.frame_index(rows)]

    def next_images(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """``(len(rows), H, W, 3)`` uint8 frames of ``next_observations[rows]``."""
        return self._frames()[self.frame_index(rows) + 1]

    def _frames(self) -> np.ndarray:
        if self.frames is None:
            raise DatasetError("this dataset holds no frames; collect it with pixels")
        return self.frames

    def frame_index(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Where the frame of ``observations[rows]`` is in ``frames`` (the next one follows it)."""
        # episode e's frames start e places after its rows: each episode has one more frame than rows
        rows = np.asarray(rows, dtype=np.int64)
        return rows + np.searchsorted(self.episode_starts, rows, side="right") - 1

    def episode_returns(self) -> np.ndarray:
        """``(E,)`` undiscounted return of each episode."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts[:-1])

    def episode_success(self) -> np.ndarray:
        """``(E,)`` whether each episode ends in success."""
        return self.success[self.episode_starts[1:] - 1]

    def episode(self, index: int) -> Episode:
        """Episode ``index`` as an :class:`Episode` (observations include the final one)."""
        start, stop = self.episode_starts[index], self.episode_starts[index + 1]
        observations = np.concatenate(
            [self.observations[start:stop], self.next_observations[stop - 1 : stop]]
        )
        return Episode(
            observations,
            self.actions[start:stop],
            self.rewards[start:stop],
            self.terminated[start:stop],
            self.truncated[start:stop],
            self.success[start:stop] if self.has_success else None,
            images=None if self.frames is None else self.frames[start + index : stop + index + 1],
            action_free=bool(self.action_free[start]),
        )

    def subset(self, episode_indices: Sequence[int] | np.ndarray) -> Dataset:
        """A dataset of the chosen episodes, in the given order."""
        episode_indices = np.asarray(episode_indices, dtype=np.int64)
        lengths = self.episode_lengths[episode_indices]
        rows = np.concatenate(
            [np.arange(self.episode_starts[e], self.episode_starts[e + 1]) for e in episode_indices]
            or [np.zeros(0, dtype=np.int64)]
        )
        frames = None
        if self.frames is not None:
            frame_rows = [
                np.arange(self.episode_starts[e] + e, self.episode_starts[e + 1] + e + 1)
                for e in episode_indices
            ]
            frames = self.frames[np.concatenate(frame_rows or [np.zeros(0, dtype=np.int64)])]
        return Dataset(
            self.observations[rows],
            self.next_observations[rows],
            self.actions[rows],
            self.rewards[rows],
            self.terminated[rows],
            self.truncated[rows],
            self.success[rows],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.observation_space,
            self.action_space,
            self.task,
            self.has_success,
            dict(self.metadata),
            self.path,
            frames,
            self.action_free[rows],
        )

    def split(self, validation_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Split by whole episodes into ``(train, validation)``, so no episode leaks across.

        :param validation_fraction: share of episodes held out, in (0, 1); at least one each side.
        """
        if not 0.0 < validation_fraction < 1.0:
            raise ImaginariumError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        if self.num_episodes < 2:
            raise DatasetError(f"dataset has {self.num_episodes} episode(s); a split needs at least 2")
        order = np.random.default_rng(seed).permutation(self.num_episodes)
        held_out = min(max(1, round(validation_fraction * self.num_episodes)), self.num_episodes - 1)
        return self.subset(np.sort(order[held_out:])), self.subset(np.sort(order[:held_out]))

    def fingerprint(self) -> str:
        """A short content hash, stored in model cards to tie a model to the data it learned from."""
        digest = hashlib.sha256()
        columns = (self.observations, self.next_observations, self.actions, self.rewards)
        for array in (*columns, self.terminated, self.truncated, self.success, self.episode_starts):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.has_action_free:  # datasets without such episodes keep their fingerprints
            digest.update(np.ascontiguousarray(self.action_free).tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """What the dataset holds, as plain JSON-ready values (``imaginarium info`` prints this)."""
        returns = self.episode_returns()[~self.episode_action_free()]  # only where rewards were recorded
        lengths = self.episode_lengths
        ours = self.metadata.get(METADATA_KEY, {})
        return {
            "path": str(self.path) if self.path else None,
            "task": self.task.name if self.task else None,
            "env_id": self.task.env_id if self.task else self.metadata.get("env_id"),
            "data_format": self.metadata.get("data_format"),
            "observation_space": str(self.observation_space),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "action_space": str(self.action_space),
            "episodes": self.num_episodes,
            "action_free_episodes": int(self.episode_action_free().sum()),
            "steps": self.num_steps,
            "episode_length": _stats(lengths),
            "return": _stats(returns),
            "success_rate": float(self.episode_success().mean()) if self.has_success else None,
            "success_definition": ours.get("success_definition"),
            "policy": ours.get("policy") or self.metadata.get("algorithm_name"),
            "seed": ours.get("seed"),
            "fingerprint": self.fingerprint(),
        }


def _stats(values: np.ndarray) -> dict[str, float] | None:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return None
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


# --------------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def deferred_interrupts(replay: bool = True) -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM until the block ends, so a file write is never cut in half.

    Yields the list of signals received meanwhile. With ``replay`` they are delivered to the
    previous handlers when the block ends (Ctrl-C then raises there); without, the caller decides.
    The handlers are swapped rather than the signals masked: a mask holds only for the calling
    thread, and the kernel may hand the signal to any other thread (BLAS, HDF5) instead.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, remember) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received and replay:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                raise KeyboardInterrupt


class DatasetWriter:
    """Writes episodes into a new Minari dataset at ``path``, atomically.

    Episodes go to ``<path>.partial`` in batches of ``flush_every``; :meth:`commit` completes the
    metadata and renames the folder into place. Until then ``path`` does not exist, so an interrupted
    or crashed collection never leaves something that looks like a dataset.

    :param path: the dataset folder to create (Minari layout: ``path/data/metadata.json``).
    :param task: the task the experience comes from.
    :param data_format: ``hdf5`` (Minari's default) or ``arrow``.
    :param metadata: extra fields stored under ``metadata["imaginarium"]``.
    :param image_shape: ``(H, W, 3)`` when every episode carries rendered frames: the observations are
        then stored as a Dict of the state and the frames (``state``, ``pixels``).
    """

    def __init__(
        self,
        path: str | Path,
        task: Task,
        data_format: str = "hdf5",
        metadata: dict[str, Any] | None = None,
        flush_every: int = 100,
        overwrite: bool = False,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        from minari.dataset.minari_storage import MinariStorage

        if data_format not in DATA_FORMATS:
            raise ImaginariumError(f"data format {data_format!r} is not one of {', '.join(DATA_FORMATS)}")
        self.path = Path(path).absolute()  # Minari joins relative paths twice
        check_output(self.path, overwrite)  # before the env is made and anything is staged
        self.staging = self.path.with_name(self.path.name + ".partial")
        self.task = task
        self.data_format = data_format
        self.overwrite = overwrite
        self.flush_every = flush_every
        self.extra_metadata = dict(metadata or {})
        self.pending: list[Episode] = []
        self.written_episodes = 0
        self.written_steps = 0
        env = task.make()
        try:
            self.observation_space, self.action_space, env_spec = (
                env.observation_space,
                env.action_space,
                env.spec,
            )
        finally:
            env.close()
        self.image_shape = None if image_shape is None else tuple(int(size) for size in image_shape)
        if self.image_shape is not None:
            if len(self.image_shape) != 3 or self.image_shape[2] != 3 or min(self.image_shape) < 1:
                raise DatasetError(f"frames must be (height, width, 3) RGB, got shape {self.image_shape}")
            self.observation_space = gym.spaces.Dict(
                {
                    STATE_KEY: self.observation_space,
                    PIXELS_KEY: gym.spaces.Box(0, 255, self.image_shape, np.uint8),
                }
            )
        self.stale_staging_removed = self.staging.exists()  # left by a killed run: never a dataset
        shutil.rmtree(self.staging, ignore_errors=True)
        (self.staging / "data").mkdir(parents=True)
        with deferred_interrupts():
            self.storage = MinariStorage.new(
                self.staging / "data",
                observation_space=self.observation_space,
                action_space=self.action_space,
                env_spec=env_spec,
                data_format=data_format,
            )

    def add(self, episode: Episode) -> None:
        """Queue one complete episode; it is written with the next batch."""
        name = f"episode {self.written_episodes + len(self.pending)}"
        _check_episode(episode, name)
        _check_frames(episode, self.image_shape, name)
        self.pending.append(episode)
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the queued episodes to the staging folder."""
        from minari.data_collector import EpisodeBuffer

        if not self.pending:
            return
        buffers = []
        for offset, episode in enumerate(self.pending):
            # Minari's infos hold one entry per observation (reset info first); success of the reset
            # state is never counted, so it is False. Shape (T + 1, 1) stores in both formats.
            infos = {}
            if episode.success is not None:
                infos["success"] = np.concatenate([[False], episode.success]).reshape(-1, 1)
            if episode.action_free:
                infos[ACTION_FREE_KEY] = np.ones((len(episode) + 1, 1), dtype=bool)
            buffers.append(
                EpisodeBuffer(
                    id=self.written_episodes + offset,
                    seed=episode.seed,
                    observations=(
                        episode.observations
                        if self.image_shape is None
                        else {STATE_KEY: episode.observations, PIXELS_KEY: episode.images}
                    ),
                    actions=episode.actions,
                    rewards=episode.rewards.astype(np.float64),
                    terminations=episode.terminated,
                    truncations=episode.truncated,
                    infos=infos or None,
                )
            )
        # The bookkeeping shares the guarded block, so an interrupt can never make an episode
        # look unwritten after it was written (and so written twice by a later commit).
        with deferred_interrupts():
            self.storage.update_episodes(buffers)
            self.written_episodes += len(self.pending)
            self.written_steps += sum(len(e) for e in self.pending)
            self.pending.clear()

    @property
    def episodes(self) -> int:
        """Complete episodes accepted so far (written or queued)."""
        return self.written_episodes + len(self.pending)

    def commit(self) -> Path:
        """Write what is queued, finish the metadata and move the dataset into place.

        Interrupts are held for the whole commit, so it either completes or has not begun.
        """
        import minari

        with deferred_interrupts():
            self.flush()
            if self.written_episodes == 0:
                self.abort()
                raise DatasetError(f"no complete episode to write to {str(self.path)!r}")
            ours = {
                "task": self.task.name,
                "env_id": self.task.env_id,
                "max_episode_steps": self.task.max_episode_steps,
                "success_definition": self.task.success_name,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "imaginarium_version": __version__,
                **self.extra_metadata,
            }
            self.storage.update_metadata(
                {
                    "dataset_id": self.path.name,
                    "minari_version": minari.__version__,
                    "algorithm_name": str(ours.get("policy", "unknown")),
                    "description": f"Experience of {self.task.env_id} collected by Imaginarium.",
                    METADATA_KEY: ours,
                }
            )
            if self.overwrite and self.path.exists():
                shutil.rmtree(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.staging.rename(self.path)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left untouched."""
        self.pending.clear()
        shutil.rmtree(self.staging, ignore_errors=True)


def write_dataset(
    path: str | Path,
    episodes: Iterable[Episode],
    task: Task,
    data_format: str = "hdf5",
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write complete episodes as a new Minari dataset; nothing is left at ``path`` if it fails.

    Episodes with frames (``Episode.images``) make a dataset with pixels; the first one sets the size.
    """
    episodes = iter(episodes)
    first = next(episodes, None)
    image_shape = None if first is None or first.images is None else tuple(np.shape(first.images)[1:])
    writer = DatasetWriter(path, task, data_format, metadata, overwrite=overwrite, image_shape=image_shape)
    try:
        for episode in itertools.chain([first] if first is not None else [], episodes):
            writer.add(episode)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _check_episode(episode: Episode, name: str) -> None:
    steps = len(episode.rewards)
    if steps == 0:
        raise DatasetError(f"{name} has no steps")
    if len(episode.observations) != steps + 1:
        raise DatasetError(f"{name} has {len(episode.observations)} observations, expected {steps + 1}")
    for key in ("actions", "terminated", "truncated", "success"):
        if getattr(episode, key) is not None and len(getattr(episode, key)) != steps:
            raise DatasetError(f"{name} has {len(getattr(episode, key))} {key}, expected {steps}")
    stateless = episode.action_free and episode.images is not None and np.isnan(episode.observations).all()
    for key in ("actions", "rewards") if stateless else ("observations", "actions", "rewards"):
        values = getattr(episode, key)
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            step = int(np.argwhere(~np.isfinite(values.reshape(len(values), -1)))[0, 0])
            raise DatasetError(f"{name} has non-finite {key} at step {step}")


def _check_frames(episode: Episode, image_shape: tuple[int, ...] | None, name: str) -> None:
    """An episode's frames fit the dataset's: one per observation, all of its size, RGB uint8."""
    images = episode.images
    if image_shape is None:
        if images is not None:
            raise DatasetError(f"{name} has frames, but this dataset holds states only")
        return
    if images is None:
        raise DatasetError(f"{name} has no frames, but this dataset holds one per observation")
    images = np.asarray(images)
    if images.shape[1:] != image_shape:
        raise DatasetError(
            f"{name} has frames of shape {images.shape[1:]}; this dataset's frames are {image_shape}"
        )
    if len(images) != len(episode.observations):
        raise DatasetError(f"{name} has {len(images)} frames for {len(episode.observations)} observations")
    if images.dtype != np.uint8:
        raise DatasetError(f"{name} has {images.dtype} frames; expected uint8 RGB")


# --------------------------------------------------------------------------------------------- reading


def resolve_dataset_path(ref: str | Path) -> Path:
    """The Minari ``data`` folder a reference names: a dataset folder, its ``data`` folder, or a Minari id.

    :raises DatasetError: when nothing readable is found.
    """
    candidate = Path(ref).absolute()
    for folder in (candidate / "data", candidate):
        if (folder / "metadata.json").is_file():
            return folder
    if candidate.exists():
        raise DatasetError(f"{str(ref)!r} is not a Minari dataset (no data/metadata.json inside)")
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        by_id = get_dataset_path(str(ref)) / "data"
    except Exception:  # an id with odd characters; report as not found below
        by_id = None
    if by_id is not None and (by_id / "metadata.json").is_file():
        return by_id
    raise DatasetError(
        f"dataset {str(ref)!r} not found: not a folder, and no Minari dataset of that id under "
        f"{get_dataset_path()} (set MINARI_DATASETS_PATH to look elsewhere)"
    )


def load_dataset(ref: str | Path, task: str | Task | None = None) -> Dataset:
    """Open a Minari dataset (HDF5 or Arrow) by path or id, validated, as flat transition arrays.

    :param ref: dataset folder (``imaginarium collect --out``), its ``data`` folder, or a Minari id.
    :param task: the task the data must fit; by default the task recorded in the dataset, or the
        suite task of its environment id.
    :raises DatasetError: missing, unreadable or corrupted files, non-finite values, or spaces that
        do not match the task.
    """
    data_path = resolve_dataset_path(ref)
    try:
        metadata = json.loads((data_path / "metadata.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"dataset {str(ref)!r} has an unreadable metadata.json: {error}") from None
    if not isinstance(metadata, dict) or "data_format" not in metadata:
        raise DatasetError(f"dataset {str(ref)!r} has a metadata.json without 'data_format'")

    raw_episodes, observation_space, action_space = _read_minari(data_path, str(ref))
    if not raw_episodes:
        raise DatasetError(f"dataset {str(ref)!r} holds no episodes")

    observation_space, pixel_space = _split_pixels(observation_space)
    resolved_task = _resolve_task(task, metadata)
    if resolved_task is not None:
        resolved_task.check_spaces(observation_space, action_space, source=f"dataset {str(ref)!r}")
    return _assemble(
        raw_episodes,
        observation_space,
        action_space,
        resolved_task,
        metadata,
        data_path,
        str(ref),
        pixel_space,
    )


def _split_pixels(space: gym.Space) -> tuple[gym.Space, gym.Space | None]:
    """``(state space, frame space or None)`` of a dataset's observation space."""
    if not (isinstance(space, gym.spaces.Dict) and PIXELS_KEY in space.spaces):
        return space, None
    rest = {key: value for key, value in space.spaces.items() if key != PIXELS_KEY}
    state = rest[STATE_KEY] if list(rest) == [STATE_KEY] else gym.spaces.Dict(rest)
    return state, space.spaces[PIXELS_KEY]


def _read_minari(data_path: Path, name: str) -> tuple[list[dict], gym.Space, gym.Space]:
    from minari.dataset.minari_storage import MinariStorage

    try:
        storage = MinariStorage.read(data_path)
        episodes = list(storage.get_episodes(range(storage.total_episodes)))
        return episodes, storage.observation_space, storage.action_space
    except ImaginariumError:
        raise
    except Exception as error:  # h5py, pyarrow and Minari raise many kinds on damaged files
        raise DatasetError(
            f"cannot read dataset {name!r}: {type(error).__name__}: {error} (the file may be truncated or corrupted)"
        ) from None


def _resolve_task(task: str | Task | None, metadata: dict[str, Any]) -> Task | None:
    if isinstance(task, Task):
        return task
    if task is not None:
        return get_task(task)
    ours = metadata.get(METADATA_KEY) or {}
    if "task" in ours:
        return get_task(ours["task"], ours.get("max_episode_steps"))
    env_spec = metadata.get("env_spec")
    if env_spec:
        with contextlib.suppress(ImaginariumError, json.JSONDecodeError, TypeError, KeyError):
            return get_task(json.loads(env_spec)["id"])
    return None


def _flat_space(space: gym.Space, name: str) -> gym.Space:
    if isinstance(space, gym.spaces.Box):
        return space
    if isinstance(space, gym.spaces.Dict) and all(
        isinstance(s, gym.spaces.Box) for s in space.spaces.values()
    ):
        return gym.spaces.flatten_space(space)
    raise DatasetError(f"dataset {name!r} has observation space {space}; expected a Box or a Dict of Boxes")


def _flat_observations(observations: Any, space: gym.Space) -> np.ndarray:
    if isinstance(space, gym.spaces.Dict):
        parts = [np.asarray(observations[key]) for key in space.spaces]
        return np.concatenate([part.reshape(len(part), -1) for part in parts], axis=1)
    return np.asarray(observations)


def _success_labels(raw: dict, next_observations: np.ndarray, task: Task | None) -> np.ndarray | None:
    infos = raw.get("infos") or {}
    steps = len(raw["rewards"])
    for key in INFO_SUCCESS_KEYS:
        if key in infos:
            labels = np.asarray(infos[key]).reshape(len(infos[key]), -1)[:, 0].astype(bool)
            # Minari stores an info per observation (reset first); some datasets store one per step.
            return labels[-steps:]
    if task is not None and task.success is not None:
        return task.success(
            next_observations, np.asarray(raw["terminations"]), np.asarray(raw["truncations"])
        )
    return None


def _assemble(
    raw_episodes: list[dict],
    observation_space: gym.Space,
    action_space: gym.Space,
    task: Task | None,
    metadata: dict[str, Any],
    data_path: Path,
    name: str,
    pixel_space: gym.Space | None = None,
) -> Dataset:
    flat_space = _flat_space(observation_space, name)
    frames: list[np.ndarray] = []
    if not isinstance(action_space, gym.spaces.Box | gym.spaces.Discrete):
        raise DatasetError(f"dataset {name!r} has action space {action_space}; expected a Box or Discrete")
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "succ")
    }
    lengths = []
    action_free: list[np.ndarray] = []
    has_success = True
    for index, raw in enumerate(raw_episodes):
        raw_observations = raw["observations"]
        if pixel_space is not None:
            frames.append(_episode_frames(raw_observations, pixel_space, f"dataset {name!r} episode {index}"))
            raw_observations = (
                raw_observations[STATE_KEY]
                if STATE_KEY in raw_observations
                else {key: value for key, value in raw_observations.items() if key != PIXELS_KEY}
            )
        observations = _flat_observations(raw_observations, observation_space).astype(np.float32)
        marks = (raw.get("infos") or {}).get(ACTION_FREE_KEY)
        free = marks is not None and bool(np.asarray(marks).any())
        episode = Episode(
            observations,
            np.asarray(raw["actions"]),
            np.asarray(raw["rewards"], dtype=np.float32),
            np.asarray(raw["terminations"], dtype=bool),
            np.asarray(raw["truncations"], dtype=bool),
            _success_labels(raw, observations[1:], task),
            images=frames[-1] if pixel_space is not None else None,
            action_free=free,
        )
        _check_episode(episode, f"dataset {name!r} episode {index}")
        if episode.success is None:
            has_success = False
            episode.success = np.zeros(len(episode), dtype=bool)
        columns["obs"].append(observations[:-1])
        columns["next"].append(observations[1:])
        columns["act"].append(episode.actions)
        columns["rew"].append(episode.rewards)
        columns["term"].append(episode.terminated)
        columns["trunc"].append(episode.truncated)
        columns["succ"].append(episode.success)
        lengths.append(len(episode))
        action_free.append(np.full(len(episode), free))
    actions = np.concatenate(columns["act"])
    actions = (
        actions.astype(np.int64)
        if isinstance(action_space, gym.spaces.Discrete)
        else actions.astype(np.float32)
    )
    return Dataset(
        np.concatenate(columns["obs"]),
        np.concatenate(columns["next"]),
        actions,
        np.concatenate(columns["rew"]),
        np.concatenate(columns["term"]),
        np.concatenate(columns["trunc"]),
        np.concatenate(columns["succ"]),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        flat_space,
        action_space,
        task,
        has_success,
        metadata,
        data_path.parent if data_path.name == "data" else data_path,
        np.concatenate(frames) if pixel_space is not None else None,
        np.concatenate(action_free),
    )


def _episode_frames(raw_observations: Any, pixel_space: gym.Space, name: str) -> np.ndarray:
    """One stored episode's frames, checked against the dataset's frame space."""
    frames = np.asarray(raw_observations[PIXELS_KEY])
    if frames.shape[1:] != pixel_space.shape:
        raise DatasetError(
            f"{name} has frames of shape {frames.shape[1:]}; the dataset declares {pixel_space.shape}"
        )
    if frames.dtype != np.uint8:
        raise DatasetError(f"{name} has {frames.dtype} frames; expected uint8 RGB")
    return frames
