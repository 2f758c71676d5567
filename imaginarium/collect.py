"""Collect real experience: roll a policy in a suite task and write complete episodes to a dataset.

Several copies of the environment are stepped side by side so the policy acts on a batch at a time
(one network call for all of them); episodes are reset with seeds ``seed, seed + 1, ...`` so the
real dynamics do not depend on how many copies run.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import gymnasium as gym
import numpy as np

from imaginarium.dataset import DatasetWriter, Episode, deferred_interrupts
from imaginarium.envs.render import rendered_frame, rendering_env
from imaginarium.envs.suite import INFO_SUCCESS_KEYS, Task, get_task
from imaginarium.errors import ImaginariumError, PolicySpecError
from imaginarium.policy import Policy, load_policy
from imaginarium.progress import Progress, tracking


@dataclass(frozen=True)
class CollectResult:
    """What a collection wrote.

    :param path: the dataset folder, or ``None`` when nothing was written.
    :param interrupted: the run was stopped early; ``path`` then holds only the episodes completed.
    :param dropped_steps: steps of unfinished episodes discarded at an interruption.
    """

    path: Path | None
    episodes: int
    steps: int
    seconds: float
    interrupted: bool = False
    dropped_steps: int = 0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C for the duration, so both keep the complete episodes."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _EpisodeBuilder:
    """Accumulates one episode's steps as Python lists; cheap per step, one stack per episode."""

    __slots__ = (
        "observations",
        "actions",
        "rewards",
        "terminated",
        "truncated",
        "info_success",
        "seed",
        "images",
    )

    def __init__(self, observation: np.ndarray, seed: int, image: np.ndarray | None = None) -> None:
        self.observations = [observation]
        self.images = None if image is None else [image]
        self.actions: list = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.info_success: list[bool | None] = []
        self.seed = seed

    def build(self, task: Task) -> Episode:
        observations = np.asarray(self.observations)
        terminated = np.asarray(self.terminated, dtype=bool)
        truncated = np.asarray(self.truncated, dtype=bool)
        if task.success is not None:
            success = task.success(observations[1:], terminated, truncated)
        elif any(label is not None for label in self.info_success):
            success = np.asarray([bool(label) for label in self.info_success])
        else:
            success = None  # the environment reports no success signal
        return Episode(
            observations,
            np.asarray(self.actions),
            np.asarray(self.rewards, dtype=np.float64),
            terminated,
            truncated,
            success,
            self.seed,
            None if self.images is None else np.stack(self.images),
        )


def collect(
    task: str | Task,
    out: str | Path,
    policy: str | Policy = "random",
    episodes: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    num_envs: int = 8,
    data_format: str = "hdf5",
    overwrite: bool = False,
    progress: bool | Progress = True,
    pixels: int | None = None,
    allow_code: bool = False,
) -> CollectResult:
    """Roll ``policy`` in ``task`` and write the complete episodes as a Minari dataset at ``out``.

    :param task: suite name, suite env id, or any Gymnasium id (see :func:`get_task`).
    :param out: dataset folder to create; it must not exist unless ``overwrite``.
    :param policy: a policy spec (``random``, ``sb3:agent.zip@noise=0.2``, mixtures; see
        :mod:`imaginarium.policy`) or a :class:`Policy` object.
    :param episodes: number of episodes to collect; or give ``steps``.
    :param steps: collect complete episodes until at least this many steps are stored.
    :param seed: seeds the episode resets and the policy's randomness.
    :param num_envs: environment copies stepped side by side; the policy acts on all at once.
    :param data_format: ``hdf5`` (Minari's default) or ``arrow``.
    :param progress: told the episodes (or steps) done and the rate (:mod:`imaginarium.progress`).
    :param pixels: also store each observation's rendered frame, ``pixels`` × ``pixels`` RGB, beside
        the state (offscreen: MuJoCo through EGL, classic control through SDL's dummy driver).
    :param allow_code: accept policies that run code when loaded (``py:`` callables, SB3 archives
        outside the safe loader's allowlist).
    :return: what was written. On Ctrl-C or SIGTERM the complete episodes so far are kept and the
        result says ``interrupted``; if none was complete, nothing is written.
    """
    task = get_task(task) if isinstance(task, str) else task
    if (episodes is None) == (steps is None):
        raise ImaginariumError("give exactly one of episodes or steps to collect")
    target = episodes if episodes is not None else steps
    if target is None or target < 1:
        raise ImaginariumError(f"the amount to collect must be a positive integer, got {target}")
    if num_envs < 1:
        raise ImaginariumError(f"num_envs must be a positive integer, got {num_envs}")
    if pixels is not None:
        from imaginarium.envs.render import check_pixels

        pixels = check_pixels(pixels)
    observation_space, action_space = task.spaces
    policy_spec = policy if isinstance(policy, str) else type(policy).__name__
    if isinstance(policy, str):
        policy = load_policy(policy, observation_space, action_space, seed=seed, allow_code=allow_code)

    writer = DatasetWriter(
        out,
        task,
        data_format,
        metadata={"policy": policy_spec, "seed": seed, "num_envs": num_envs, "pixels": pixels},
        overwrite=overwrite,
        image_shape=None if pixels is None else (pixels, pixels, 3),
    )
    envs: list[gym.Env] = []
    started = time.perf_counter()
    try:
        copies = num_envs if episodes is None else min(num_envs, episodes)
        envs = [_make_env(task, pixels) for _ in range(copies)]
        with _sigterm_as_interrupt(), _counting(progress, task, target, episodes is None) as advance:
            interrupted, dropped_steps = _run(
                task, envs, policy, writer, episodes, steps, seed, advance, pixels, policy_spec
            )
        # A signal during the commit must not undo it once begun: hold it, then report it.
        with deferred_interrupts(replay=False) as late_signals:
            path = writer.commit() if writer.episodes else None
            if path is None:
                writer.abort()
        interrupted = interrupted or bool(late_signals)
    except BaseException:
        writer.abort()
        raise
    finally:
        for env in envs:
            env.close()
    return CollectResult(
        path,
        writer.written_episodes,
        writer.written_steps,
        time.perf_counter() - started,
        interrupted,
        dropped_steps,
    )


def checked_actions(actions: Any, space: gym.Space, count: int, policy_name: str) -> np.ndarray:
    """``count`` actions of ``space`` from a policy: the right shape, finite, integers in range for a
    discrete space, clipped to a box (as real environments are stepped with them).

    :raises PolicySpecError: naming the policy, what it gave and what the space takes.
    """
    values = np.asarray(actions)
    discrete = isinstance(space, gym.spaces.Discrete)
    expected = (count,) if discrete else (count, *space.shape)
    problem = None
    if values.shape != expected:
        problem = f"actions of shape {values.shape}, expected {expected}"
    elif not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        problem = f"actions of type {values.dtype}"
    elif not np.all(np.isfinite(values)):
        problem = "actions that are not finite"
    elif discrete and not (
        np.all(np.mod(values, 1) == 0) and np.all((values >= space.start) & (values < space.start + space.n))
    ):
        problem = "actions that are not all integers in range"
    if problem:
        raise PolicySpecError(f"policy {policy_name!r} gave {problem} for the action space {space}")
    if discrete:
        return values.astype(np.int64)
    return np.clip(values, space.low, space.high).astype(space.dtype)


def _make_env(task: Task, pixels: int | None) -> gym.Env:
    """The task's env; with ``pixels``, one that renders offscreen."""
    return task.make() if pixels is None else rendering_env(task, pixels)


def _run(
    task: Task,
    envs: list[gym.Env],
    policy: Policy,
    writer: DatasetWriter,
    episodes: int | None,
    steps: int | None,
    seed: int,
    advance: Callable[[int, int], None],
    pixels: int | None = None,
    policy_name: str = "policy",
) -> tuple[bool, int]:
    """Step all envs until the target is met or Ctrl-C; returns ``(interrupted, unfinished_steps)``.

    :raises PolicySpecError: the policy raised, or gave actions that do not fit the action space;
        the caller then writes nothing.
    """
    action_space = envs[0].action_space
    read_info_success = task.success is None
    builders: list[_EpisodeBuilder | None] = [None] * len(envs)
    next_episode = 0
    collected_steps = 0

    def wants_more() -> bool:
        if episodes is not None:
            return next_episode < episodes
        in_progress = sum(len(b.rewards) for b in builders if b is not None)
        return collected_steps + in_progress < (steps or 0)

    def start(slot: int) -> np.ndarray:
        nonlocal next_episode
        episode_seed = seed + next_episode
        observation, _ = envs[slot].reset(seed=episode_seed)
        image = None if pixels is None else rendered_frame(envs[slot], pixels)
        builders[slot] = _EpisodeBuilder(observation, episode_seed, image)
        next_episode += 1
        return observation

    observations = np.stack([start(slot) for slot in range(len(envs))])  # (N, *obs_shape)
    policy.reset(np.arange(len(envs)))
    try:
        while any(b is not None for b in builders):
            try:
                actions = policy.act(observations)
            except Exception as error:  # a user's policy can fail in any way: one line, nothing written
                raise PolicySpecError(
                    f"policy {policy_name!r} failed: {type(error).__name__}: {error}"
                ) from None
            actions = checked_actions(actions, action_space, len(observations), policy_name)
            for slot, env in enumerate(envs):
                builder = builders[slot]
                if builder is None:
                    continue
                action = actions[slot]
                observation, reward, terminated, truncated, info = env.step(action)
                builder.observations.append(observation)
                if builder.images is not None:
                    builder.images.append(rendered_frame(env, pixels))
                builder.actions.append(action)
                builder.rewards.append(reward)
                builder.terminated.append(terminated)
                builder.truncated.append(truncated)
                if read_info_success:
                    builder.info_success.append(next((info[k] for k in INFO_SUCCESS_KEYS if k in info), None))
                observations[slot] = observation
                if terminated or truncated:
                    episode = builder.build(task)
                    # The slot is cleared first: an interrupt held during the write is raised when
                    # add() returns, and this episode must count as kept, not as unfinished.
                    builders[slot] = None
                    collected_steps += len(episode)
                    writer.add(episode)
                    advance(1, len(episode))
                    if wants_more():
                        observations[slot] = start(slot)
                        policy.reset(np.array([slot]))
    except KeyboardInterrupt:
        return True, sum(len(b.rewards) for b in builders if b is not None)
    return False, 0


@contextlib.contextmanager
def _counting(
    progress: bool | Progress, task: Task, target: int, by_steps: bool
) -> Iterator[Callable[[int, int], None]]:
    """``advance(episodes, steps)`` for the run loop, telling ``progress`` the episodes (or steps) done
    and the rate."""
    unit = "steps" if by_steps else "episodes"
    with tracking(progress, f"collect {task.name} ({unit})", target) as bar:
        begun = time.perf_counter()
        done_episodes = done_steps = 0

        def advance(episodes: int, steps: int) -> None:
            nonlocal done_episodes, done_steps
            done_episodes, done_steps = done_episodes + episodes, done_steps + steps
            rate = done_steps / max(time.perf_counter() - begun, 1e-9)
            bar.update(done_steps if by_steps else done_episodes, f"{rate:,.0f} steps/s")

        yield advance
