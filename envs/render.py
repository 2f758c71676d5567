"""Drawing imagined states with the real task's own renderer, where the observation determines the state.

Classic-control observations are the simulator's state (Pendulum's up to the angle's encoding), so
a decoded observation is drawn exactly. MuJoCo observations leave out parts of the state (Hopper's
x position) and need offscreen GL, which comes with the pixels work; those tasks are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from imaginarium.envs.suite import Task
from imaginarium.errors import ImaginariumError


def _set_state(unwrapped: gym.Env, state: np.ndarray) -> None:
    unwrapped.state = state.astype(np.float64)


def _set_pendulum(unwrapped: gym.Env, observation: np.ndarray) -> None:
    unwrapped.state = np.array([np.arctan2(observation[1], observation[0]), observation[2]], dtype=np.float64)
    unwrapped.last_u = None  # no torque arrow: the action is not part of the observation


STATE_SETTERS: dict[str, Callable[[gym.Env, np.ndarray], None]] = {
    "cartpole": _set_state,
    "pendulum": _set_pendulum,
    "mountaincar": _set_state,
}


class StateRenderer:
    """Renders observations of ``task`` as RGB frames with the real environment's renderer."""

    def __init__(self, task: Task) -> None:
        if task.name not in STATE_SETTERS:
            raise ImaginariumError(
                f"render_mode 'rgb_array' draws classic-control tasks ({', '.join(STATE_SETTERS)}); "
                f"{task.name!r} observations do not determine a drawable state"
            )
        self.env = task.make(render_mode="rgb_array")
        self.env.reset(seed=0)
        self.set_state = STATE_SETTERS[task.name]

    def render(self, observation: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 frame of the state the observation describes."""
        self.set_state(self.env.unwrapped, np.asarray(observation))
        return self.env.render()

    def close(self) -> None:
        self.env.close()
