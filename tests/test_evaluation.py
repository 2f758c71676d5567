"""Rollout figures: confidence intervals, start states, and what counts as outside the model's data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import KnownStates, bootstrap_interval, real_rollouts, start_states
from imaginarium.policy import RandomPolicy


@pytest.mark.parametrize("count", [12, 64, 20_000])
def test_bootstrap_interval_matches_scipys_percentile_bootstrap(count: int) -> None:
    from scipy import stats

    values = np.random.default_rng(3).gamma(2.0, size=count)
    ours = bootstrap_interval(values, seed=0)
    theirs = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    width = theirs.high - theirs.low
    assert abs(ours["ci_low"] - theirs.low) < 0.1 * width and abs(ours["ci_high"] - theirs.high) < 0.1 * width


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    few, many = bootstrap_interval(rng.normal(size=10)), bootstrap_interval(rng.normal(size=1000))
    for figure in (few, many):
        assert figure["ci_low"] < figure["mean"] < figure["ci_high"]
    assert many["ci_high"] - many["ci_low"] < few["ci_high"] - few["ci_low"]
    assert bootstrap_interval(np.full(5, 3.0)) == {"mean": 3.0, "ci_low": 3.0, "ci_high": 3.0}


def test_start_states_are_real_initial_states_drawn_without_replacement_while_possible() -> None:
    initial = np.arange(10, dtype=np.float32)[:, None]
    drawn = start_states(initial, 10, seed=0)
    assert sorted(drawn[:, 0].tolist()) == list(range(10))
    assert len(start_states(initial, 25, seed=0)) == 25
    with pytest.raises(ImaginariumError, match="no episodes"):
        start_states(initial[:0], 3)


def test_data_like_states_are_inside_and_far_ones_outside() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5000, 3)).astype(np.float32)
    known = KnownStates(data, seed=0)
    fresh = torch.as_tensor(rng.normal(size=(2000, 3)), dtype=torch.float32)
    assert known.outside_fraction(fresh) < 0.05
    assert known.outside_fraction(fresh + 6.0) == 1.0
    assert known.outside_fraction(torch.full((4, 3), float("nan"))) == 1.0


def test_rollouts_that_diverge_stop_counting_and_are_reported(pendulum_model, monkeypatch) -> None:
    from imaginarium.evaluation import imagined_rollouts
    from imaginarium.models import load_world_model
    from imaginarium.models.ensemble import EnsembleModel

    model = load_world_model(pendulum_model)
    original, calls = EnsembleModel.step, {"count": 0}

    def blows_up(self, state, actions, *args, **kwargs):
        out = original(self, state, actions, *args, **kwargs)
        calls["count"] += 1
        if calls["count"] == 3:  # the first two rows leave the reals at the third step
            out.state["observation"][:2] = float("inf")
            out.reward[:2] = float("nan")
        return out

    monkeypatch.setattr(EnsembleModel, "step", blows_up)
    starts = np.zeros((4, 3), np.float32)
    starts[:, 0] = 1.0
    result = imagined_rollouts(model, RandomPolicy(model.action_space, seed=0), starts, horizon=6)
    assert result.diverged == 2 and np.isfinite(result.return_["mean"])
    assert all(np.isfinite(result.per_start)) and np.isfinite(result.success)
    assert list(result.to_json()) == [
        "return", "per_start", "member_returns", "member_spread", "success", "uncertainty",
        "outside_fraction", "length", "diverged", "horizon", "success_source",
    ]  # fmt: skip


def test_imagined_success_is_the_tasks_rule_over_the_imagined_states_not_the_head(
    pendulum_model, monkeypatch
) -> None:
    """Starts 0 and 1 are held upright for the whole rollout, 2 and 3 hang down, while the head says
    success everywhere: pendulum's rule (upright over the last 20 steps) gives half, as the real
    task would, where the head would give one."""
    from imaginarium.evaluation import imagined_rollouts
    from imaginarium.models import load_world_model
    from imaginarium.models.ensemble import EnsembleModel

    model = load_world_model(pendulum_model)
    original = EnsembleModel.step

    def scripted(self, state, actions, *args, **kwargs):
        out = original(self, state, actions, *args, **kwargs)
        upright = torch.tensor([1.0, 0.0, 0.0]).repeat(len(out.reward), 1)
        upright[torch.arange(len(out.reward)) % 4 >= 2] = torch.tensor([-1.0, 0.0, 0.0])
        out.state["observation"] = upright.to(out.state["observation"])
        out.success_prob = torch.ones_like(out.success_prob)
        return out

    monkeypatch.setattr(EnsembleModel, "step", scripted)
    starts = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (4, 1))
    policy = RandomPolicy(model.action_space, seed=0)
    result = imagined_rollouts(model, policy, starts, horizon=30, termination=False, members="one")
    assert result.success_source == "rule:upright_last_20"
    assert result.success == pytest.approx(0.5)
    short = imagined_rollouts(model, policy, starts, horizon=19, termination=False, members="one")
    assert short.success == 0.0  # nobody has been upright for 20 steps yet


@pytest.mark.parametrize("members", ["each", "one"])
def test_policies_in_lockstep_get_what_each_gets_alone_and_a_failing_one_harms_none(
    pendulum_model, members: str
) -> None:
    from imaginarium.evaluation import imagined_rollouts, imagined_rollouts_lockstep
    from imaginarium.models import load_world_model
    from imaginarium.policy import CallablePolicy

    model = load_world_model(pendulum_model)
    starts = np.zeros((5, 3), np.float32)
    starts[:, 0] = np.cos(np.linspace(0, 3, 5))
    starts[:, 1] = np.sin(np.linspace(0, 3, 5))
    policies = [
        RandomPolicy(model.action_space, seed=0),
        CallablePolicy("support.policies:raises"),
        CallablePolicy("support.policies:push"),
    ]
    together = imagined_rollouts_lockstep(model, policies, starts, horizon=12, seed=3, members=members)
    assert isinstance(together[1], RuntimeError) and "always fails" in str(together[1])
    for index in (0, 2):
        policy = RandomPolicy(model.action_space, seed=0) if index == 0 else policies[index]
        alone = imagined_rollouts(model, policy, starts, horizon=12, seed=3, members=members)
        assert together[index].per_start == pytest.approx(alone.per_start, rel=1e-6)
        assert together[index].member_returns == pytest.approx(alone.member_returns, rel=1e-6)
    assert together[0].per_start != together[2].per_start  # the blocks are not mixed up


def test_episode_rollouts_record_each_episodes_steps_and_whether_it_terminated() -> None:
    cartpole = get_task("cartpole")
    fallen = real_rollouts(cartpole, RandomPolicy(cartpole.action_space, seed=0), episodes=3, seed=0)
    assert fallen.terminated == [True, True, True]  # a random pole falls long before the time limit
    assert fallen.lengths == [int(value) for value in fallen.per_episode]  # a reward of 1 per step
    assert fallen.length == pytest.approx(np.mean(fallen.lengths))
    pendulum = get_task("pendulum", max_episode_steps=20)
    timed_out = real_rollouts(pendulum, RandomPolicy(pendulum.action_space, seed=0), episodes=2, seed=0)
    assert timed_out.terminated == [False, False] and timed_out.lengths == [20, 20]
    figures = timed_out.to_json()
    assert list(figures) == ["return", "per_episode", "success", "length", "lengths", "terminated"]
    assert figures["return"] == timed_out.return_
