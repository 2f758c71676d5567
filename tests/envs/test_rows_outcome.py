"""A single env works out its step's outcome in Python scalars (``Imagination._outcome_row``), a
vector env in arrays (``Imagination._outcome``): given the same predictions and draws, the two agree
on reward, termination, truncation and every ``info`` entry, across the env's options and the edge
cases (rows outside the data's limits, non-finite rewards, uncertainty limits, the task's rules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imaginarium.envs.imagined import Imagination, _Predicted
from imaginarium.models.rows import RowPredictions

OPTIONS = {
    "pendulum_model": [
        {"termination": "continue"},
        {"termination": "both"},
        {"termination": "none", "uncertainty_penalty": 0.5, "uncertainty_limit": 0.3},
        {"termination": "success", "reward": "rule"},
        {"termination": "both", "head_success": True},
        {"termination": "success", "head_success": True, "reward": "rule"},
    ],
    "cartpole_model": [{"termination": "rule", "reward": "rule"}, {"termination": "continue"}],
}
CASES = [(name, options) for name, variants in OPTIONS.items() for options in variants]


@pytest.mark.parametrize(("model_fixture", "options"), CASES)
def test_a_single_envs_outcome_is_the_batched_outcome_of_its_row(
    model_fixture: str, options: dict, request: pytest.FixtureRequest
) -> None:
    options = dict(options)
    head_success = options.pop("head_success", False)
    imagination = Imagination(request.getfixturevalue(model_fixture), **options)
    if head_success:  # as for a task without a success rule: the head decides
        imagination.success_rule = None
    model, limits = imagination.model, imagination.limits
    data = np.random.default_rng(0)
    tracked = imagination.track_uncertainty
    for trial in range(300):
        span = limits.state_high - limits.state_low
        observations = (limits.state_low + data.uniform(-0.1, 1.1, (1, model.obs_dim)) * span).astype(
            np.float32
        )
        if trial % 17 == 0:
            observations[0, 0] = np.nan
        reward = data.uniform(limits.reward_low - 1, limits.reward_high + 1)
        if trial % 13 == 0:
            reward = np.inf
        rewards = np.array([reward])
        inside = limits.within(torch.as_tensor(observations), torch.as_tensor(rewards)).numpy()
        probs = data.uniform(0, 1, 3).astype(np.float32)
        uncertainty = probs[2:] if tracked else None
        before = observations[:, ::-1].copy() if imagination.reward_rule is not None else None
        if before is not None and trial % 11 == 0:
            before[:] = np.inf  # the rule's reward is then not finite where the model's is
        action = imagination.check_actions(imagination.action_space.sample(), 1)
        judges = [imagination.judge(1), imagination.judge(1)]
        history = data.uniform(limits.state_low, limits.state_high, (25, 1, model.obs_dim)).astype(np.float32)
        for judge in judges:
            for states in history[: trial % 25] if judge is not None else []:
                judge.push(states)
        predictions = RowPredictions(observations, rewards.copy(), probs[:1], probs[1:2], uncertainty, inside)
        row = imagination._outcome_row(predictions, before, action, np.random.default_rng(trial), judges[0])
        predicted = _Predicted(
            {"observation": torch.from_numpy(observations)},
            observations,
            observations if imagination.needs_states else None,
            before,
            rewards.copy(),
            probs[:1],
            probs[1:2],
            uncertainty,
            inside,
        )
        batch = imagination._outcome(predicted, action, np.random.default_rng(trial), judges[1]).first()
        assert (row.reward, row.terminated, row.truncated) == pytest.approx(
            (batch.reward, batch.terminated, batch.truncated), nan_ok=True
        ), (trial, options)
        assert row.info.keys() == batch.info.keys()
        for key, value in row.info.items():
            assert value == pytest.approx(batch.info[key], nan_ok=True), (trial, key)
        np.testing.assert_array_equal(row.observation, batch.observation)
