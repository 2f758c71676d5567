from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC

from imaginarium.envs.suite import SUITE
from imaginarium.errors import PolicySpecError
from imaginarium.policy import (
    MixturePolicy,
    NoisyPolicy,
    RandomPolicy,
    SB3Policy,
    detect_sb3_algorithm,
    load_policy,
    policy_name,
)

PENDULUM = SUITE["pendulum"]
CARTPOLE = SUITE["cartpole"]


@pytest.fixture(scope="module")
def sb3_checkpoints(sb3_zoo: dict[str, Path]) -> dict[str, Path]:
    """Tiny untrained agents of every algorithm with SB3's default network, by algorithm name."""
    return {name.upper(): sb3_zoo[name] for name in ("ppo", "a2c", "sac", "td3", "dqn", "ppo_sde")}


def _observations(space: gym.Space, n: int) -> np.ndarray:
    space.seed(0)
    return np.stack([space.sample() for _ in range(n)])


def test_random_policy_acts_in_bounds_for_a_batch() -> None:
    policy = load_policy("random", *PENDULUM.spaces, seed=1)
    actions = policy.act(_observations(PENDULUM.observation_space, 64))
    assert actions.shape == (64, 1) and actions.dtype == np.float32
    assert np.all(actions >= -2.0) and np.all(actions <= 2.0) and actions.std() > 0.5


def test_random_policy_on_discrete_actions_gives_integers() -> None:
    actions = load_policy("random", *CARTPOLE.spaces).act(_observations(CARTPOLE.observation_space, 200))
    assert actions.shape == (200,) and set(np.unique(actions)) == {0, 1}


def test_same_seed_same_actions() -> None:
    observations = _observations(PENDULUM.observation_space, 8)
    first = load_policy("random@noise=0.1", *PENDULUM.spaces, seed=5).act(observations)
    second = load_policy("random@noise=0.1", *PENDULUM.spaces, seed=5).act(observations)
    np.testing.assert_array_equal(first, second)


def test_noise_perturbs_a_deterministic_policy_and_stays_in_bounds(sb3_checkpoints: dict[str, Path]) -> None:
    observations = _observations(PENDULUM.observation_space, 256)
    clean = SB3Policy(sb3_checkpoints["SAC"]).act(observations)
    noisy = load_policy(f"sb3:{sb3_checkpoints['SAC']}@noise=0.5", *PENDULUM.spaces).act(observations)
    assert isinstance(load_policy("random@noise=0.5", *PENDULUM.spaces), NoisyPolicy)
    assert np.abs(noisy - clean).mean() > 0.2
    assert np.all(np.abs(noisy) <= 2.0)


def test_discrete_noise_one_replaces_every_action_at_random() -> None:
    base = RandomPolicy(CARTPOLE.action_space, seed=0)
    policy = NoisyPolicy(base, CARTPOLE.action_space, 1.0, seed=0)
    actions = policy.act(_observations(CARTPOLE.observation_space, 400))
    assert 0.35 < actions.mean() < 0.65


def test_mixture_keeps_one_component_per_episode_until_reset() -> None:
    constant_zero = NoisyPolicy(RandomPolicy(PENDULUM.action_space, 0), PENDULUM.action_space, 0.0)
    constant_zero.base.act = lambda obs: np.zeros((len(obs), 1), np.float32)  # type: ignore[method-assign]
    mixture = MixturePolicy([constant_zero, RandomPolicy(PENDULUM.action_space, 1)], [1.0, 1.0], seed=0)
    mixture.reset(np.arange(32))
    observations = _observations(PENDULUM.observation_space, 32)
    zero_rows = mixture.act(observations)[:, 0] == 0.0
    for _ in range(5):
        np.testing.assert_array_equal(mixture.act(observations)[:, 0] == 0.0, zero_rows)
    assert 4 < zero_rows.sum() < 28
    mixture.reset(np.arange(32))
    assert not np.array_equal(mixture.act(observations)[:, 0] == 0.0, zero_rows)


def test_mixture_spec_parses_weights_and_components(sb3_checkpoints: dict[str, Path]) -> None:
    policy = load_policy(f"0.25*random + 0.75*sb3:{sb3_checkpoints['PPO']}@noise=0.1", *CARTPOLE.spaces)
    assert isinstance(policy, MixturePolicy)
    np.testing.assert_allclose(policy.probabilities, [0.25, 0.75])
    assert policy.act(_observations(CARTPOLE.observation_space, 10)).shape == (10,)


@pytest.mark.parametrize("algorithm", ["PPO", "A2C", "SAC"])
def test_sb3_algorithm_is_detected_from_the_file(algorithm: str, sb3_checkpoints: dict[str, Path]) -> None:
    assert detect_sb3_algorithm(sb3_checkpoints[algorithm]) == algorithm


@pytest.mark.parametrize("name", ["PPO", "A2C", "SAC", "TD3", "DQN", "PPO_SDE"])
def test_sb3_policy_acts_like_the_agent_sb3_loads(name: str, sb3_checkpoints: dict[str, Path]) -> None:
    """Only the policy network is loaded, rebuilt from the checkpoint: it must act as the whole agent."""
    import stable_baselines3

    agent = getattr(stable_baselines3, name.split("_")[0]).load(sb3_checkpoints[name])
    observations = _observations(agent.observation_space, 16)
    expected, _ = agent.predict(observations, deterministic=True)
    np.testing.assert_array_equal(SB3Policy(sb3_checkpoints[name]).act(observations), expected)
    single = SB3Policy(sb3_checkpoints[name]).act(observations[0])  # one row: the same up to rounding
    np.testing.assert_allclose(single, expected[0], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_saved_again_at_the_same_path_is_loaded_anew(tmp_path: Path) -> None:
    path = tmp_path / "agent.zip"
    observations = _observations(PENDULUM.observation_space, 32)
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0).save(path)
    first = SB3Policy(path).act(observations)
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=1).save(path)
    assert not np.allclose(SB3Policy(path).act(observations), first)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty policy spec"),
        ("greedy", "unknown policy 'greedy'"),
        ("random@noise", "must look like key=value"),
        ("random@noise=lots", "needs a number"),
        ("random@temperature=1", "unknown policy option 'temperature'"),
        ("x*random + random", "mixture weight 'x'"),
        ("0*random + 1*random", "weights must be positive"),
        ("random@noise=-1", "noise must be"),
        ("sb3:/no/such/agent.zip", "does not exist"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(PolicySpecError, match=message):
        load_policy(spec, *PENDULUM.spaces)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "agent.zip"
    bogus.write_bytes(b"not a zip at all")
    with pytest.raises(PolicySpecError, match="not a Stable-Baselines3 checkpoint"):
        load_policy(f"sb3:{bogus}", *PENDULUM.spaces)


def test_an_agent_for_another_task_is_refused(sb3_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(PolicySpecError, match="observation space"):
        load_policy(f"sb3:{sb3_checkpoints['PPO']}", *PENDULUM.spaces)


def test_sb3_policy_acts_on_any_batch_layout(sb3_checkpoints: dict[str, Path]) -> None:
    policy = SB3Policy(sb3_checkpoints["SAC"])
    observations = _observations(PENDULUM.observation_space, 8)
    reversed_view = observations[::-1]  # negative strides: torch cannot wrap this without a copy
    np.testing.assert_array_equal(policy.act(reversed_view), policy.act(observations)[::-1])


def test_a_bare_file_is_read_by_its_contents_in_any_part_of_a_spec(sb3_checkpoints: dict[str, Path]) -> None:
    policy = load_policy(f"0.5*{sb3_checkpoints['SAC']}@noise=0.1 + 0.5*random", *PENDULUM.spaces)
    assert isinstance(policy, MixturePolicy)
    noisy, uniform = policy.components
    assert isinstance(noisy, NoisyPolicy) and isinstance(noisy.base, SB3Policy)
    assert isinstance(uniform, RandomPolicy)
    assert policy_name(f"sb3:{sb3_checkpoints['SAC']}@noise=0.1") == "sac@noise=0.1"
    assert policy_name(str(sb3_checkpoints["SAC"])) == "sac"
