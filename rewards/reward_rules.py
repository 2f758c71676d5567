"""Reward rules of the real tasks, as the simulators compute them from states and actions.

The model's reward is learned from the data, and a reward the data shows rarely (MountainCar's +100 at
the flag, some 55 times in 54k steps of medium data) it hardly learns at all, however right the
dynamics are. A task whose reward is a known function of the observation can use it instead
(``WAMImagined-v0``'s ``reward="rule"``; mbrl-lib's ``ModelEnv`` takes such ``reward_fn``s too). Rules
are keyed by Gymnasium id and read numpy arrays: ``(states (N, D), actions (N, A), next_states (N, D))
-> rewards (N,)``, actions as the env takes them (clipped to the action space). A task whose reward
needs more than its observation shows (Hopper's forward progress reads the hidden x position) has no
rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imaginarium.errors import ImaginariumError
from imaginarium.rewards.termination import TERMINATION_RULES

RewardRule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _pendulum(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """Pendulum-v1: minus the angle from upright squared, 0.1 × speed², 0.001 × torque², before the step."""
    angle = np.arctan2(states[:, 1], states[:, 0])
    torque = np.clip(actions[:, 0], -2.0, 2.0)
    return -(angle**2 + 0.1 * states[:, 2] ** 2 + 0.001 * torque**2)


def _mountaincar(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """MountainCarContinuous-v0: +100 on reaching the flag, minus 0.1 × force² every step."""
    reached = TERMINATION_RULES["MountainCarContinuous-v0"](next_states)
    return np.where(reached, 100.0, 0.0) - 0.1 * actions[:, 0] ** 2


def _cartpole(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """CartPole-v1: 1 for every step, the last one included."""
    return np.ones(len(states))


def _inverted_pendulum(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """InvertedPendulum-v5: 1 for every step that leaves the pole up, 0 for the one that ends it."""
    return (~TERMINATION_RULES["InvertedPendulum-v5"](next_states)).astype(np.float64)


def _reacher(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray) -> np.ndarray:
    """Reacher-v5: minus the fingertip's distance to the target after the step, minus the torques²."""
    return -np.linalg.norm(next_states[:, 8:10], axis=-1) - (actions**2).sum(-1)


#: Gymnasium id -> the reward its simulator gives
REWARD_RULES: dict[str, RewardRule] = {
    "Pendulum-v1": _pendulum,
    "MountainCarContinuous-v0": _mountaincar,
    "CartPole-v1": _cartpole,
    "InvertedPendulum-v5": _inverted_pendulum,
    "Reacher-v5": _reacher,
}


#: the known rules of each kind (``termination``, ``reward``), keyed by Gymnasium id
RULES: dict[str, dict[str, Callable]] = {"termination": TERMINATION_RULES, "reward": REWARD_RULES}


def reward_rule(env_id: str | None) -> RewardRule | None:
    """The reward rule of ``env_id``, or ``None`` where none is known."""
    return REWARD_RULES.get(env_id or "")


def task_rule(kind: str, env_id: str | None, frames: bool = False) -> Callable | None:
    """The ``kind`` rule (``termination`` or ``reward``) of ``env_id``; ``None`` where none is known or
    the model sees ``frames`` (no decoded state for a rule to read)."""
    return None if frames else RULES[kind].get(env_id or "")


def required_rule(kind: str, env_id: str | None, frames: bool, spelled: str) -> Callable:
    """:func:`task_rule`, refused by name where there is none: ``spelled`` is the option as the caller
    spells it (``termination='rule'``, ``reward=rule``)."""
    rule = task_rule(kind, env_id, frames)
    if rule is None:
        raise ImaginariumError(
            f"{spelled} needs a model of states of a task whose {kind} rule is known; this model's task is "
            f"{env_id!r} (known: {', '.join(sorted(RULES[kind]))})"
        )
    return rule
