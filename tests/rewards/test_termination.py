"""The termination rules say what the simulators say: every step of random episodes, on numpy and torch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from imaginarium.rewards.termination import TERMINATION_RULES, terminates, termination_rule


@pytest.mark.parametrize("env_id", sorted(TERMINATION_RULES))
def test_a_rule_ends_exactly_the_steps_the_simulator_ends(env_id: str) -> None:
    env = gym.make(env_id)
    env.action_space.seed(0)
    rule = termination_rule(env_id)
    states, ended = [], []
    observation, _ = env.reset(seed=0)
    for _ in range(600):
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        states.append(observation)
        ended.append(terminated)
        if terminated or truncated:
            observation, _ = env.reset()
    states_array = np.asarray(states, dtype=np.float64)
    assert rule(states_array).tolist() == ended
    assert rule(torch.as_tensor(states_array)).tolist() == ended


def test_a_task_without_a_known_rule_has_none() -> None:
    assert termination_rule("Acrobot-v1") is None and termination_rule(None) is None


def test_the_rules_flip_at_their_thresholds() -> None:
    flag = termination_rule("MountainCarContinuous-v0")
    assert flag(np.array([[0.44, 0.1], [0.45, 0.0], [0.5, -0.01]])).tolist() == [False, True, False]
    pole = termination_rule("CartPole-v1")
    assert pole(np.array([[2.39, 0, 0.2, 0], [2.41, 0, 0, 0], [0, 0, -0.21, 0]])).tolist() == [
        False,
        True,
        True,
    ]
    assert terminates("CartPole-v1") and terminates("Acrobot-v1") and not terminates("Pendulum-v1")
