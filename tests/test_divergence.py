"""Runaway imagination is contained: a model driven off its data on purpose (states and rewards far
beyond anything recorded, yet finite) ends those episodes as diverged at the step it happens, and no
such state or reward reaches an agent, a ranking or a report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imaginarium.agents.dreamer import DreamerConfig, DreamerLearner
from imaginarium.envs.imagined import ImaginedEnv, ImaginedVectorEnv
from imaginarium.evaluation import imagined_rollouts
from imaginarium.models import load_world_model
from imaginarium.models.ensemble import EnsembleModel
from imaginarium.models.rows import RowStepper
from imaginarium.models.starts import DIVERGENCE_STDS, data_limits
from imaginarium.policy import RandomPolicy
from imaginarium.ranking import assemble, evaluate_group


@pytest.fixture
def runaway(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the third step of every rollout, even rows' states and odd rows' rewards run away, in
    torch's step and in the compiled one of single and small vector envs alike."""
    original, compiled = EnsembleModel.step, RowStepper.step
    steps = {"count": 0, "rows": 0}

    def runs_away(self, state, actions, *args, **kwargs):  # noqa: ANN001, ANN202
        out = original(self, state, actions, *args, **kwargs)
        steps["count"] += 1
        if steps["count"] >= 3:
            out.state["observation"][0::2] = out.state["observation"][0::2] * 1e6 + 1e6
            out.reward[1::2] = 1e12
        return out

    def rows_run_away(self, observations, actions, rng, uncertainty=False, limits=None, **kwargs):  # noqa: ANN001, ANN202
        out = compiled(self, observations, actions, rng, uncertainty, limits, **kwargs)
        steps["rows"] += 1
        if steps["rows"] >= 3:
            out.observations[0::2] = out.observations[0::2] * 1e6 + 1e6
            out.rewards[1::2] = 1e12
            bounds = self.no_limits if limits is None else limits
            dims = out.observations.shape[1]
            out.inside = (
                (out.observations >= bounds[:dims]).all(1)
                & (out.observations <= bounds[dims : 2 * dims]).all(1)
                & (out.rewards >= bounds[-2])
                & (out.rewards <= bounds[-1])
            )
        return out

    monkeypatch.setattr(EnsembleModel, "step", runs_away)
    monkeypatch.setattr(RowStepper, "step", rows_run_away)


def test_the_limits_lie_far_beyond_the_data_and_no_nearer(pendulum_model: Path) -> None:
    model = load_world_model(pendulum_model)
    limits = data_limits(model)
    states, rewards = model.starts.states, model.starts.rewards
    assert limits is not None and rewards is not None
    spread = DIVERGENCE_STDS * states.std(0)
    assert np.allclose(limits.state_high, states.max(0) + spread)
    recorded = torch.as_tensor(states)
    both = min(len(states), len(rewards))
    assert bool(limits.within(recorded[:both], torch.as_tensor(rewards[:both])).all())
    assert not bool(limits.within(recorded[:1] + torch.as_tensor(2 * spread)).any())
    assert not bool(limits.within(recorded[:1], torch.tensor([float("nan")])).any())


def test_an_env_ends_a_runaway_episode_there_and_shows_nothing_beyond_the_limits(
    pendulum_model: Path, runaway: None
) -> None:
    limits = data_limits(load_world_model(pendulum_model))
    envs = ImaginedVectorEnv(4, model=pendulum_model)
    observations, _ = envs.reset(seed=0)
    seen_observations, seen_rewards, flagged = [observations], [], np.zeros(4, dtype=bool)
    for step in range(3):
        observations, rewards, terminated, truncated, info = envs.step(np.zeros((4, 1), np.float32))
        seen_observations.append(observations)
        seen_rewards.append(rewards)
        flagged |= info["diverged"]
        if step == 2:  # the step it happens: truncated, flagged, its reward 0
            assert info["diverged"].all() and truncated.all()
            assert (rewards == 0).all()
    seen = torch.as_tensor(np.concatenate(seen_observations))
    rewards = np.concatenate(seen_rewards)
    assert bool(limits.within(seen).all())
    assert ((rewards >= limits.reward_low) & (rewards <= limits.reward_high)).all()
    single = ImaginedEnv(model=pendulum_model)
    single.reset(seed=0)
    _, reward, _, truncated, info = single.step(np.zeros(1, np.float32))  # the model runs away at once now
    assert info["diverged"] and truncated and reward == 0.0


def test_rollouts_and_rankings_stop_at_the_limits_and_warn(pendulum_model: Path, runaway: None) -> None:
    model = load_world_model(pendulum_model)
    limits = data_limits(model)
    starts = model.starts.inputs[:4]
    result = imagined_rollouts(model, RandomPolicy(model.action_space, seed=0), starts, horizon=10)
    most = 10 * max(abs(limits.reward_low), abs(limits.reward_high))
    assert result.diverged == len(starts) * model.rollout_members
    assert all(abs(value) <= most for value in result.per_start)
    assert result.uncertainty is not None and result.uncertainty < 100  # no raw runaway disagreement
    entries = evaluate_group(model, ["random"], starts, 10, seed=0, allow_code=False, real=None)
    ranking = assemble(entries, reference=None)
    assert ranking.ranked[0].diverged and ranking.ranked[0].uncertainty_warning


def test_dreamer_learns_nothing_from_beyond_the_limits(pendulum_model: Path, runaway: None) -> None:
    model = load_world_model(pendulum_model)
    limits = data_limits(model)
    learner = DreamerLearner(model, DreamerConfig(horizon=5, batch_size=4, hidden=16))
    imagined = learner.imagine(model.initial_state(torch.as_tensor(model.starts.inputs[:4])))
    assert bool(
        ((imagined["rewards"] >= limits.reward_low) & (imagined["rewards"] <= limits.reward_high)).all()
    )
    assert bool((imagined["continues"][2:] == 0).all())  # every trajectory ended where it ran away
    assert bool(torch.isfinite(imagined["features"]).all())


def test_a_model_folder_from_before_rewards_were_kept_still_imagines_plans_and_ranks(
    pendulum_model: Path, tmp_path: Path
) -> None:
    import shutil

    from imaginarium.models.starts import STARTS_FILE
    from imaginarium.policy import load_policy

    old = tmp_path / "old_model"
    shutil.copytree(pendulum_model, old)
    with np.load(old / STARTS_FILE) as arrays:
        np.savez(old / STARTS_FILE, inputs=arrays["inputs"], states=arrays["states"])
    model = load_world_model(old)
    assert model.starts.rewards is None and data_limits(model).reward_low is None
    env = ImaginedEnv(model=old)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(1, np.float32))[1])
    planner = load_policy(f"plan:{old}@horizon=3,samples=8", model.observation_space, model.action_space)
    assert np.isfinite(planner.act(model.starts.inputs[:2])).all()
    entries = evaluate_group(
        model, ["random"], model.starts.inputs[:2], 5, seed=0, allow_code=False, real=None
    )
    assert entries[0].error is None
