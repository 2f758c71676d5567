"""The real-task suite: named Gymnasium tasks with success definitions and defaults.

Any other registered Gymnasium id is accepted as-is; its success label then comes from the
``success`` or ``is_success`` key of ``info`` when the environment provides one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np

from imaginarium.errors import TaskError
from imaginarium.rewards.success import SUCCESS_DEFINITIONS, SuccessDefinition

INFO_SUCCESS_KEYS = ("success", "is_success")


@dataclass(frozen=True)
class Task:
    """A real environment that experience is collected from and models are checked against.

    :param name: suite name (``pendulum``) or, outside the suite, the Gymnasium id itself.
    :param env_id: Gymnasium id passed to ``gym.make``.
    :param max_episode_steps: the time limit of one episode; real and imagined returns sum up to it.
    :param success: the per-step success rule, or ``None`` to read ``info`` (or have no success signal).
    :param make_kwargs: extra keyword arguments for ``gym.make``.
    :param circles: ``(cos, sin)`` index pairs of the angles the observation carries as points on the
        unit circle: a model keeps its predictions there, as a real state always is.
    """

    name: str
    env_id: str
    max_episode_steps: int
    success: SuccessDefinition | None = None
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    circles: tuple[tuple[int, int], ...] = ()

    def make(self, **kwargs: Any) -> gym.Env:
        """Make the real environment with the task's time limit; ``kwargs`` go to ``gym.make``."""
        options = {"max_episode_steps": self.max_episode_steps, **self.make_kwargs, **kwargs}
        try:
            return gym.make(self.env_id, **options)
        except Exception as error:  # gym.make raises many kinds; the user needs the id and the reason
            raise TaskError(
                f"cannot make environment {self.env_id!r} for task {self.name!r}: {error}"
            ) from error

    @cached_property
    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """``(observation_space, action_space)`` of the real environment."""
        env = self.make()
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()

    @property
    def observation_space(self) -> gym.Space:
        return self.spaces[0]

    @property
    def action_space(self) -> gym.Space:
        return self.spaces[1]

    @property
    def success_name(self) -> str:
        """How success is decided, as stored in dataset metadata."""
        return self.success.name if self.success is not None else "info"

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space, source: str) -> None:
        """Raise :class:`TaskError` when ``source``'s spaces cannot be this task's.

        Shapes and kinds must agree; Box bounds of the action space must agree too, since a
        model trained on other bounds would be asked for actions it never saw.
        """
        for what, theirs, ours in (
            ("observation", observation_space, self.observation_space),
            ("action", action_space, self.action_space),
        ):
            problem = space_mismatch(theirs, ours, compare_bounds=what == "action")
            if problem:
                raise TaskError(
                    f"{source} has {what} space {theirs}, expected {ours} for task {self.name!r} ({problem})"
                )


def space_mismatch(theirs: gym.Space, ours: gym.Space, compare_bounds: bool) -> str | None:
    """Why ``theirs`` cannot stand for ``ours`` (kind, size, shape, and Box bounds when asked), or ``None``."""
    if type(theirs) is not type(ours):
        return f"{type(theirs).__name__} is not {type(ours).__name__}"
    if isinstance(ours, gym.spaces.Discrete):
        return None if theirs.n == ours.n else f"{theirs.n} actions, not {ours.n}"
    if theirs.shape != ours.shape:
        return f"shape {theirs.shape}, not {ours.shape}"
    same_bounds = np.allclose(theirs.low, ours.low) and np.allclose(theirs.high, ours.high)
    if compare_bounds and isinstance(ours, gym.spaces.Box) and not same_bounds:
        return "different bounds"
    return None


#: Reacher drawn from straight above with the arena filling the frame: the default view shows it at a
#: tilt in half the frame, where at 64×64 the target is one pixel and the arm hardly more
REACHER_CAMERA = {"distance": 0.6, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.0, 0.0, 0.0]}

SUITE: dict[str, Task] = {
    "cartpole": Task("cartpole", "CartPole-v1", 500, SUCCESS_DEFINITIONS["cartpole"]),
    # Pendulum-v1 observes (cos θ, sin θ, θ̇)
    "pendulum": Task("pendulum", "Pendulum-v1", 200, SUCCESS_DEFINITIONS["pendulum"], circles=((0, 1),)),
    "mountaincar": Task("mountaincar", "MountainCarContinuous-v0", 999, SUCCESS_DEFINITIONS["mountaincar"]),
    "reacher": Task(
        "reacher",
        "Reacher-v5",
        50,
        SUCCESS_DEFINITIONS["reacher"],
        {"default_camera_config": REACHER_CAMERA},
        circles=((0, 2), (1, 3)),  # Reacher-v5 observes cos q1, cos q2, sin q1, sin q2 first
    ),
    "pusher": Task("pusher", "Pusher-v5", 100, SUCCESS_DEFINITIONS["pusher"]),
    "hopper": Task("hopper", "Hopper-v5", 1000),
    "halfcheetah": Task("halfcheetah", "HalfCheetah-v5", 1000),
}


def observation_circles(name: str | None) -> tuple[tuple[int, int], ...]:
    """The ``(cos, sin)`` index pairs of the suite task ``name`` (none outside the suite)."""
    task = _suite_task(name) if name else None
    return task.circles if task is not None else ()


def success_rule(name: str | None) -> SuccessDefinition | None:
    """The success definition of the suite task ``name`` (suite name or env id), ``None`` for a task
    outside the suite or none given: its success is then whatever its data or ``info`` says."""
    task = _suite_task(name) if name else None
    return task.success if task is not None else None


def _suite_task(name: str) -> Task | None:
    """The suite task named ``name`` (its suite name, any case, or its env id)."""
    return SUITE.get(name.lower()) or next((task for task in SUITE.values() if task.env_id == name), None)


def get_task(name: str, max_episode_steps: int | None = None) -> Task:
    """Look a task up by suite name, by the suite's env id, or take any registered Gymnasium id as-is.

    :param name: ``pendulum``, ``Pendulum-v1``, or e.g. ``Acrobot-v1``.
    :param max_episode_steps: override the task's default time limit.
    :raises TaskError: when ``name`` is neither in the suite nor registered with Gymnasium.
    """
    task = _suite_task(name)
    if task is None:
        try:
            spec = gym.spec(name)
        except Exception:
            raise TaskError(
                f"unknown task {name!r}: expected one of {', '.join(SUITE)} or a registered Gymnasium id"
            ) from None
        if spec.max_episode_steps is None and max_episode_steps is None:
            raise TaskError(f"task {name!r} has no time limit in its Gymnasium spec; give max_episode_steps")
        task = Task(name, name, spec.max_episode_steps or 0)
    if max_episode_steps is not None:
        if max_episode_steps < 1:
            raise TaskError(f"max_episode_steps must be a positive integer, got {max_episode_steps}")
        task = replace(task, max_episode_steps=max_episode_steps, make_kwargs=dict(task.make_kwargs))
    return task
