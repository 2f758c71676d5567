from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from imaginarium.rewards.success import SUCCESS_DEFINITIONS, SuccessJudge, episode_success


def _flags(steps: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(steps, dtype=bool), np.zeros(steps, dtype=bool)


def test_pendulum_succeeds_only_after_twenty_upright_steps_in_a_row() -> None:
    cos_theta = np.full(60, 1.0)
    cos_theta[30] = 0.5  # one dip restarts the count
    observations = np.stack([cos_theta, np.zeros(60), np.zeros(60)], axis=1)
    success = SUCCESS_DEFINITIONS["pendulum"](observations, *_flags(60))
    assert not success[:19].any()
    assert success[19:30].all()
    assert not success[30:50].any()
    assert success[50:].all()


def test_pendulum_threshold_is_strict_at_cos_095() -> None:
    observations = np.tile([0.95, 0.3, 0.0], (25, 1))
    assert not SUCCESS_DEFINITIONS["pendulum"](observations, *_flags(25)).any()


def test_cartpole_episode_succeeds_only_when_the_time_limit_ends_a_live_episode() -> None:
    observations = np.zeros((3, 4))
    definition = SUCCESS_DEFINITIONS["cartpole"]
    truncated_alive = definition(observations, np.array([0, 0, 0], bool), np.array([0, 0, 1], bool))
    fallen = definition(observations, np.array([0, 0, 1], bool), np.array([0, 0, 0], bool))
    assert episode_success(truncated_alive) and not episode_success(fallen)
    assert truncated_alive.all() and fallen.tolist() == [True, True, False]


def test_mountaincar_succeeds_at_the_goal_position() -> None:
    observations = np.array([[0.44, 0.01], [0.45, 0.02]])
    assert SUCCESS_DEFINITIONS["mountaincar"](observations, *_flags(2)).tolist() == [False, True]


@pytest.mark.parametrize(
    ("task", "env_id", "first", "second", "threshold"),
    [("reacher", "Reacher-v5", "fingertip", "target", 0.02), ("pusher", "Pusher-v5", "object", "goal", 0.1)],
)
def test_mujoco_success_reads_the_distance_the_simulator_reports(
    task: str, env_id: str, first: str, second: str, threshold: float
) -> None:
    env = gym.make(env_id)
    observation, _ = env.reset(seed=1)
    data = env.unwrapped
    true_distance = np.linalg.norm((data.get_body_com(first) - data.get_body_com(second))[:2])
    definition = SUCCESS_DEFINITIONS[task]
    labels = definition(observation[None], *_flags(1))
    assert labels[0] == (true_distance < threshold)
    # Moving the first body onto the second makes the state a success.
    moved = observation.copy()
    if task == "reacher":
        moved[8:10] = 0.0
    else:
        moved[17:20] = moved[20:23]
    assert definition(moved[None], *_flags(1))[0]
    env.close()


def test_episode_success_is_the_last_step() -> None:
    assert not episode_success(np.array([True, False]))
    assert episode_success(np.array([False, True]))
    assert not episode_success(np.array([], dtype=bool))


@pytest.mark.parametrize("task", sorted(SUCCESS_DEFINITIONS))
def test_a_batch_of_episodes_is_labelled_as_each_episode_alone(task: str) -> None:
    rng = np.random.default_rng(0)
    size = {"cartpole": 4, "pendulum": 3, "mountaincar": 2, "reacher": 10, "pusher": 23}[task]
    observations = rng.uniform(-1, 1, (5, 40, size))
    observations[..., 0] = np.where(rng.random((5, 40)) < 0.9, 0.99, 0.0)  # long upright runs
    observations[..., 8:10] *= 0.02  # reacher: fingertip near the target at times
    observations[..., 17:23] *= 0.04  # pusher: object near the goal at times
    terminated = rng.random((5, 40)) < 0.1
    truncated = np.zeros((5, 40), dtype=bool)
    definition = SUCCESS_DEFINITIONS[task]
    batched = definition(observations, terminated, truncated)
    alone = np.stack([definition(observations[row], terminated[row], truncated[row]) for row in range(5)])
    assert np.array_equal(batched, alone) and batched.any()


def test_the_judge_labels_each_step_as_the_rule_labels_the_whole_episode() -> None:
    """Step by step, from the trailing window alone, with episodes of two rows restarting at
    different steps: the labels are those of the rule over each whole episode."""
    rng = np.random.default_rng(1)
    definition = SUCCESS_DEFINITIONS["pendulum"]
    cos_theta = np.where(rng.random((2, 90)) < 0.97, 1.0, 0.0)
    observations = np.stack([cos_theta, np.zeros((2, 90)), np.zeros((2, 90))], axis=-1)
    restarts = {0: 35, 1: 60}  # row -> the step whose state begins a new episode
    judge = SuccessJudge(definition, rows=2, observation_size=3)
    labels = np.zeros((2, 90), dtype=bool)
    for step in range(90):
        for row, first in restarts.items():
            if step == first:
                judge.restart(np.arange(2) == row)
        judge.push(observations[:, step])
        labels[:, step] = judge.label(False)
    for row, first in restarts.items():
        for episode in (slice(0, first), slice(first, 90)):
            expected = definition(observations[row, episode], *_flags(episode.stop - episode.start))
            assert np.array_equal(labels[row, episode], expected)
    assert labels.any() and not labels.all()


def test_the_judge_counts_a_terminated_episode_as_failed_where_the_rule_does() -> None:
    judge = SuccessJudge(SUCCESS_DEFINITIONS["cartpole"], rows=3, observation_size=4)
    judge.push(np.zeros((3, 4)))
    assert judge.label(np.array([False, True, False])).tolist() == [True, False, True]
    assert not judge.label(True).any()
