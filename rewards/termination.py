"""Termination rules of the real tasks, as the simulators state them: whether a state ends the episode.

The continue head learns termination from the data, and where the data never went (a pole past its
limit on one side, a cart past the track's end) it guesses. A task whose rule is known can use it
instead (mbrl-lib calls these termination functions); the rule reads the observation the model
predicts, so it needs a model of states. Rules are keyed by Gymnasium id and work on numpy arrays and
torch tensors alike, ``(..., D) -> (...) bool``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

TerminationRule = Callable[[Any], Any]


def _finite(states: Any) -> Any:
    return np.isfinite(states).all(-1) if isinstance(states, np.ndarray) else states.isfinite().all(-1)


def _absolute(values: Any) -> Any:
    return np.abs(values) if isinstance(values, np.ndarray) else values.abs()


def _cartpole(states: Any) -> Any:
    """CartPole-v1: the cart leaves ±2.4 or the pole tilts past 12 degrees."""
    return (_absolute(states[..., 0]) > 2.4) | (_absolute(states[..., 2]) > 12 * 2 * np.pi / 360)


def _inverted_pendulum(states: Any) -> Any:
    """InvertedPendulum-v5: the pole tilts past 0.2 rad, or the state is not finite."""
    return ~_finite(states) | (_absolute(states[..., 1]) > 0.2)


def _hopper(states: Any) -> Any:
    """Hopper-v5 (positions excluded): unhealthy when the torso is below 0.7, tilts past 0.2 rad, or
    any other coordinate leaves ±100."""
    height, angle = states[..., 0], states[..., 1]
    wild = (_absolute(states[..., 1:]) > 100.0).any(-1)
    return ~_finite(states) | wild | (height < 0.7) | (_absolute(angle) > 0.2)


def _walker(states: Any) -> Any:
    """Walker2d-v5 (positions excluded): unhealthy when the torso leaves heights 0.8–2 or tilts past 1 rad."""
    height, angle = states[..., 0], states[..., 1]
    return ~_finite(states) | (height < 0.8) | (height > 2.0) | (_absolute(angle) > 1.0)


def _mountaincar(states: Any) -> Any:
    """MountainCarContinuous-v0: the car reaches the flag (position ≥ 0.45, moving right or still)."""
    return (states[..., 0] >= 0.45) & (states[..., 1] >= 0.0)


def _never(states: Any) -> Any:
    """Tasks that only end at their time limit."""
    return _finite(states) & False


#: Gymnasium id -> the rule its simulator ends episodes by
TERMINATION_RULES: dict[str, TerminationRule] = {
    "CartPole-v1": _cartpole,
    "InvertedPendulum-v5": _inverted_pendulum,
    "Hopper-v5": _hopper,
    "Walker2d-v5": _walker,
    "MountainCarContinuous-v0": _mountaincar,
    "Pendulum-v1": _never,
    "Reacher-v5": _never,
    "Pusher-v5": _never,
    "HalfCheetah-v5": _never,
}


def termination_rule(env_id: str | None) -> TerminationRule | None:
    """The rule of ``env_id``, or ``None`` where none is known."""
    return TERMINATION_RULES.get(env_id or "")


def terminates(env_id: str | None) -> bool:
    """Whether episodes of ``env_id`` can end before their time limit (unknown tasks: assumed so)."""
    return termination_rule(env_id) is not _never
