"""Drawing imagined states with the real task's own renderer, where the observation determines the state.

Classic-control observations are the simulator's state (Pendulum's up to the angle's encoding), so
a decoded observation is drawn exactly. MuJoCo observations give joint positions and velocities, or
what they are computed from (Reacher's cos/sin of the angles, Pusher's object and goal positions),
with one gap: the locomotion tasks leave out the x position of the torso, so Hopper and HalfCheetah
are drawn at x = 0 (their cameras follow the torso, so only the floor's pattern differs). MuJoCo
draws offscreen through EGL (``MUJOCO_GL=egl`` unless the environment already chooses a backend).
Tasks outside the suite, whose observations are not known here, are refused by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from imaginarium.envs.suite import Task
from imaginarium.errors import ImaginariumError, TaskError


def _set_state(unwrapped: gym.Env, state: np.ndarray) -> None:
    unwrapped.state = state.astype(np.float64)


def _set_pendulum(unwrapped: gym.Env, observation: np.ndarray) -> None:
    unwrapped.state = np.array([np.arctan2(observation[1], observation[0]), observation[2]], dtype=np.float64)
    unwrapped.last_u = None  # no torque arrow: the action is not part of the observation


def _set_locomotion(unwrapped: gym.Env, observation: np.ndarray) -> None:
    """Hopper, HalfCheetah: ``qpos[1:]`` then ``qvel``; the torso's x is not observed and set to 0."""
    positions = unwrapped.model.nq - 1
    qpos = np.concatenate([[0.0], observation[:positions]])
    unwrapped.set_state(qpos, observation[positions : positions + unwrapped.model.nv])


def _set_reacher(unwrapped: gym.Env, observation: np.ndarray) -> None:
    """Reacher: cos and sin of the two arm angles, the target's position, the arm's velocities."""
    angles = np.arctan2(observation[2:4], observation[0:2])
    qpos = np.concatenate([angles, observation[4:6]])
    unwrapped.set_state(qpos, np.concatenate([observation[6:8], np.zeros(2)]))


def _set_pusher(unwrapped: gym.Env, observation: np.ndarray) -> None:
    """Pusher: arm ``qpos[:7]`` and ``qvel[:7]``, then fingertip, object and goal positions.

    The object and the goal sit on (y, x) slide joints: their offsets are the observed positions less
    where the bodies are with the slides at zero.
    """
    qpos = np.zeros(unwrapped.model.nq)
    qpos[:7] = observation[:7]
    unwrapped.set_state(qpos, np.zeros(unwrapped.model.nv))
    for body, offset, first in (("object", 17, 7), ("goal", 20, 9)):
        rest = unwrapped.get_body_com(body)
        qpos[first : first + 2] = observation[offset + 1] - rest[1], observation[offset] - rest[0]
    qvel = np.zeros(unwrapped.model.nv)
    qvel[:7] = observation[7:14]
    unwrapped.set_state(qpos, qvel)


STATE_SETTERS: dict[str, Callable[[gym.Env, np.ndarray], None]] = {
    "cartpole": _set_state,
    "pendulum": _set_pendulum,
    "mountaincar": _set_state,
    "reacher": _set_reacher,
    "pusher": _set_pusher,
    "hopper": _set_locomotion,
    "halfcheetah": _set_locomotion,
}


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frame`` as ``(height, width, 3)`` uint8, resized bilinearly."""
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(image, np.uint8)


def check_pixels(pixels: int) -> int:
    """A frame size that can be drawn and learned from, as an int.

    :raises ImaginariumError: outside 8..1024.
    """
    if not 8 <= pixels <= 1024:
        raise ImaginariumError(f"pixels must be between 8 and 1024, got {pixels}")
    return int(pixels)


def offscreen() -> None:
    """Draw without a screen: MuJoCo through EGL, pygame (classic control) with SDL's dummy video
    driver; a choice already in the environment is kept."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class StateRenderer:
    """Renders observations of ``task`` as RGB frames with the real environment's renderer."""

    def __init__(self, task: Task) -> None:
        if task.name not in STATE_SETTERS:
            raise ImaginariumError(
                f"render_mode 'rgb_array' draws the suite's tasks ({', '.join(STATE_SETTERS)}); "
                f"{task.name!r} observations are not known to determine a drawable state"
            )
        offscreen()
        self.env = task.make(render_mode="rgb_array")
        self.env.reset(seed=0)
        self.set_state = STATE_SETTERS[task.name]

    def render(self, observation: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 frame of the state the observation describes."""
        self.set_state(self.env.unwrapped, np.asarray(observation))
        return self.env.render()

    def frame(self, observation: np.ndarray, pixels: int) -> np.ndarray:
        """``(pixels, pixels, 3)`` uint8: the observation drawn and resized (bilinear)."""
        return resize_frame(self.render(observation), pixels, pixels)

    def close(self) -> None:
        self.env.close()


#: the ``info`` key under which the frame wrappers keep the state each frame shows
FRAME_STATE_KEY = "frame_state"


class PixelObservation(gym.ObservationWrapper):
    """A real suite env whose observations are its states drawn as ``pixels`` × ``pixels`` RGB frames,
    exactly as ``WAMImagined-v0`` draws imagined states (``observation="pixels"``), so an agent trained
    on imagined frames acts on real ones drawn the same way."""

    def __init__(self, env: gym.Env, task: Task, pixels: int = 64) -> None:
        super().__init__(env)
        self.pixels = check_pixels(pixels)
        self.renderer = StateRenderer(task)
        self.observation_space = gym.spaces.Box(0, 255, (self.pixels, self.pixels, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.renderer.frame(np.asarray(observation), self.pixels)

    def reset(self, **options: Any) -> tuple[np.ndarray, dict]:
        state, info = self.env.reset(**options)
        return self.observation(state), {**info, FRAME_STATE_KEY: state}  # the state, for success rules

    def step(self, action: object) -> tuple[np.ndarray, float, bool, bool, dict]:
        state, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(state), reward, terminated, truncated, {**info, FRAME_STATE_KEY: state}

    def close(self) -> None:
        self.renderer.close()
        super().close()


def rendering_env(task: Task, pixels: int, **make_options: object) -> gym.Env:
    """The task's env drawing offscreen: MuJoCo at ``pixels`` × ``pixels`` directly, classic control at
    its own size (:func:`rendered_frame` resizes)."""
    offscreen()
    try:
        return task.make(render_mode="rgb_array", width=pixels, height=pixels, **make_options)
    except TaskError:  # classic control takes no size
        return task.make(render_mode="rgb_array", **make_options)


def rendered_frame(env: gym.Env, pixels: int) -> np.ndarray:
    """The env's current frame as ``(pixels, pixels, 3)`` uint8 (bilinear resize where needed)."""
    frame = np.asarray(env.render())[..., :3]
    if frame.shape[:2] != (pixels, pixels):
        frame = resize_frame(frame, pixels, pixels)
    return frame.astype(np.uint8, copy=False)


class FrameObservation(gym.Wrapper):
    """A real suite env whose observations are its own rendered frames, exactly as ``collect --pixels``
    stores them, for agents of a world model that learned from those frames. ``info[FRAME_STATE_KEY]`` keeps
    the state the frame shows, so the task's success rule can still be applied."""

    def __init__(self, task: Task, pixels: int = 64, **make_options: object) -> None:
        self.pixels = check_pixels(pixels)
        super().__init__(rendering_env(task, self.pixels, **make_options))
        self.observation_space = gym.spaces.Box(0, 255, (self.pixels, self.pixels, 3), np.uint8)

    def reset(self, **kwargs: object) -> tuple[np.ndarray, dict]:
        state, info = self.env.reset(**kwargs)
        return rendered_frame(self.env, self.pixels), {**info, FRAME_STATE_KEY: state}

    def step(self, action: object) -> tuple[np.ndarray, float, bool, bool, dict]:
        state, reward, terminated, truncated, info = self.env.step(action)
        return (
            rendered_frame(self.env, self.pixels),
            reward,
            terminated,
            truncated,
            {**info, FRAME_STATE_KEY: state},
        )
