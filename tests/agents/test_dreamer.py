"""The Dreamer-style actor-critic: returns, checkpoints, resuming, NaN, and the actor as a policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imaginarium.agents.dreamer import (
    DreamerConfig,
    DreamerPolicy,
    lambda_returns,
    train_dreamer,
)
from imaginarium.config import config_from_dict
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError, TrainingError
from imaginarium.policy import load_policy, policy_name
from imaginarium.run.online import OnlineConfig

FAST = {"batch_size": 16, "horizon": 5, "hidden": 32, "log_every": 5, "checkpoint_every": 5}


def test_lambda_returns_match_the_recursion_by_hand() -> None:
    rewards = torch.tensor([[1.0], [2.0]])
    continues = torch.tensor([[1.0], [0.5]])
    values = torch.tensor([[0.0], [10.0], [20.0]])
    returns = lambda_returns(rewards, continues, values, gamma=0.9, lambda_=0.5)
    second = 2.0 + 0.9 * 0.5 * (0.5 * 20.0 + 0.5 * 20.0)  # R_1 = r_1 + γ c_1 v_2 (R_2 = v_2)
    first = 1.0 + 0.9 * 1.0 * (0.5 * 10.0 + 0.5 * second)
    assert returns[:, 0].tolist() == pytest.approx([first, second])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("actor_lr", -3e-4),
        ("critic_lr", float("nan")),
        ("gamma", 0.0),
        ("gamma", 1.5),
        ("lambda_", float("inf")),
        ("max_std", 0.05),
        ("batch_size", 1),
        ("log_every", 0),
        ("unimix", 1.0),
        ("uncertainty_penalty", float("nan")),
        ("grad_clip", float("nan")),
    ],
)
def test_meaningless_dreamer_settings_are_refused_by_name(
    option: str, value: float, pendulum_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImaginariumError, match=f"dreamer config: '{option}' must be"):
        config_from_dict(DreamerConfig, {option: value})
    with pytest.raises(ImaginariumError, match=f"'{option}' must be"):
        train_dreamer(pendulum_model, tmp_path / "agent", {option: value}, progress=False)
    assert not (tmp_path / "agent").exists()


@pytest.mark.parametrize("option", ["real_steps", "round_steps", "eval_episodes"])
def test_online_counts_below_one_are_refused_by_name(option: str) -> None:
    with pytest.raises(ImaginariumError, match=f"online config: '{option}' must be a positive integer"):
        config_from_dict(OnlineConfig, {option: 0})


def test_a_trained_actor_acts_on_the_real_task_as_a_policy(pendulum_model: Path, tmp_path: Path) -> None:
    summary = train_dreamer(pendulum_model, tmp_path / "agent", {**FAST, "steps": 10}, progress=False)
    assert summary.updates == 10
    meta = json.loads((tmp_path / "agent" / "dreamer.json").read_text())
    assert meta["task"] == "pendulum" and meta["updates"] == 10
    task = get_task("pendulum")
    for source in (tmp_path / "agent", f"dreamer:{tmp_path / 'agent'}"):
        policy = load_policy(source, task.observation_space, task.action_space)
        actions = policy.act(np.zeros((4, 3), np.float32))
        assert actions.shape == (4, 1) and np.all(np.abs(actions) <= 2.0)
    assert policy_name(tmp_path / "agent") == "agent"
    with pytest.raises(Exception, match="action space"):
        load_policy(tmp_path / "agent", task.observation_space, get_task("cartpole").action_space)


def test_resuming_continues_from_the_last_checkpoint(pendulum_model: Path, tmp_path: Path) -> None:
    calls = {"count": 0}

    def interrupt_at_update_12(learner) -> float:
        calls["count"] += 1
        if learner.updates >= 12:
            raise KeyboardInterrupt
        return 0.0

    config = {**FAST, "steps": 20, "log_every": 6}
    with pytest.raises(KeyboardInterrupt):
        train_dreamer(
            pendulum_model, tmp_path / "agent", config, progress=False, evaluate=interrupt_at_update_12
        )
    assert json.loads((tmp_path / "agent" / "dreamer.json").read_text())["updates"] == 10
    with pytest.raises(ImaginariumError, match="already holds an agent; pass --resume or --overwrite"):
        train_dreamer(pendulum_model, tmp_path / "agent", config, progress=False)
    summary = train_dreamer(pendulum_model, tmp_path / "agent", config, resume=True, progress=False)
    assert summary.updates == 20 and summary.resumed_from == 10


def test_a_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_agent(
    pendulum_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaginarium.models.ensemble import EnsembleModel

    train_dreamer(pendulum_model, tmp_path / "agent", {**FAST, "steps": 5}, progress=False)
    original = EnsembleModel.step

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out.reward = out.reward * float("nan")
        return out

    monkeypatch.setattr(EnsembleModel, "step", poisoned)
    with pytest.raises(TrainingError, match="non-finite (loss|gradients) at update 6"):
        train_dreamer(pendulum_model, tmp_path / "agent", {**FAST, "steps": 10}, resume=True, progress=False)
    monkeypatch.undo()
    assert json.loads((tmp_path / "agent" / "dreamer.json").read_text())["updates"] == 5
    assert DreamerPolicy(tmp_path / "agent").act(np.zeros((1, 3), np.float32)).shape == (1, 1)


def test_discrete_actions_are_learned_over_the_rssm_family_too(
    tmp_path: Path, cartpole_dataset_path: Path
) -> None:
    from imaginarium.models.train import train_world_model

    train_world_model(
        cartpole_dataset_path, tmp_path / "rssm", family="rssm", preset="xs",
        config={"steps": 4, "eval_every": 2}, model_overrides={"batch_size": 4}, progress=False,
    )  # fmt: skip
    train_dreamer(tmp_path / "rssm", tmp_path / "agent", {**FAST, "steps": 3}, progress=False)
    policy = DreamerPolicy(tmp_path / "agent")
    observations = np.zeros((2, 4), np.float32)
    first = policy.act(observations)
    second = policy.act(observations)  # filtered with the first step's actions: the RSSM's state moves on
    assert first.shape == (2,) and set(first.tolist()) <= {0, 1} and second.shape == (2,)


def test_the_online_loop_acts_refits_imagines_and_writes_its_learning_curve(tmp_path: Path) -> None:
    from imaginarium.run.online import dream_online

    online = {
        "real_steps": 800, "initial_steps": 600, "round_steps": 200, "model_preset": "xs",
        "model_steps": 20, "updates_per_round": 3, "eval_episodes": 1,
    }  # fmt: skip
    result = dream_online("pendulum", tmp_path / "agent", online, FAST, progress=False)
    steps = [point["real_steps"] for point in result.curve]
    assert steps == [600, 800] and result.updates == 6
    assert json.loads((tmp_path / "agent" / "curve.json").read_text())["curve"] == result.curve
    assert (tmp_path / "agent" / "curve.png").stat().st_size > 1000
    assert DreamerPolicy(tmp_path / "agent").act(np.zeros((1, 3), np.float32)).shape == (1, 1)
