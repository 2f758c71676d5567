import gymnasium as gym
import numpy as np
import pytest

from imaginarium.rewards.reward_rules import REWARD_RULES, reward_rule


def _transitions(env_id: str, steps: int = 300) -> tuple[np.ndarray, ...]:
    env = gym.make(env_id)
    env.action_space.seed(0)
    observation, _ = env.reset(seed=0)
    rows = []
    for _ in range(steps):
        action = env.action_space.sample()
        next_observation, reward, terminated, truncated, _ = env.step(action)
        rows.append((observation, np.atleast_1d(action), next_observation, reward))
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return tuple(np.array(column) for column in zip(*rows, strict=True))


@pytest.mark.parametrize("env_id", sorted(REWARD_RULES))
def test_reward_rule_gives_the_simulators_own_rewards(env_id: str) -> None:
    states, actions, next_states, rewards = _transitions(env_id)
    actions = actions.reshape(len(actions), -1) if actions.ndim > 1 else actions
    np.testing.assert_allclose(
        reward_rule(env_id)(states, actions, next_states), rewards, rtol=1e-4, atol=1e-4
    )


def test_mountaincar_rule_pays_the_flag() -> None:
    env = gym.make("MountainCarContinuous-v0")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.449, 0.05])
    state = np.array([[0.449, 0.05]], np.float32)
    next_state, reward, terminated, _, _ = env.step(np.array([0.5], np.float32))
    assert terminated and reward > 99
    rule = reward_rule("MountainCarContinuous-v0")(state, np.array([[0.5]], np.float32), next_state[None])
    np.testing.assert_allclose(rule, [reward], rtol=1e-6)


def test_tasks_without_a_known_reward_have_no_rule() -> None:
    assert reward_rule("Hopper-v5") is None and reward_rule(None) is None
