from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from imaginarium.cli import main
from imaginarium.errors import ImaginariumError
from imaginarium.policy import detect_sb3_algorithm


def _imagine_ppo(model: Path, out: Path, steps: int) -> list[str]:
    """``imagine-train`` of PPO in ``model`` for ``steps`` imagined steps into ``out``."""
    return ["imagine-train", "--model", str(model), "--algo", "ppo", "--steps", str(steps), "--out", str(out)]


def test_imagine_train_saves_an_agent_that_acts_on_the_real_task(
    cartpole_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ppo.zip"
    argv = _imagine_ppo(cartpole_model, out, steps=256)
    temporary = set(Path(tempfile.gettempdir()).glob("SB3-*"))
    code = main([*argv, "--num-envs", "8", "--eval-episodes", "2", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0 and out.exists() and detect_sb3_algorithm(out) == "PPO"
    assert set(Path(tempfile.gettempdir()).glob("SB3-*")) == temporary  # SB3 left no log folder behind
    assert "imagined return" in stdout and "real return on cartpole" in stdout


def test_an_agent_is_scored_in_its_model_and_on_the_task_its_card_names(
    cartpole_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imaginarium.agents.sb3 import score_agent
    from imaginarium.run.console import interval

    out = tmp_path / "ppo.zip"
    argv = _imagine_ppo(cartpole_model, out, steps=64)
    assert main([*argv, "--num-envs", "2", "--eval-episodes", "2", "--no-progress"]) == 0
    score = score_agent(out, cartpole_model, episodes=2)
    assert score.task == "cartpole" and score.episodes == 2 and score.real is not None
    assert score.imagined["ci_low"] <= score.imagined["mean"] <= score.imagined["ci_high"]
    # the command prints the library's figures (same seeds), nothing of its own
    assert f"imagined return {interval(score.imagined)}" in capsys.readouterr().out


def test_an_algorithm_that_cannot_act_in_the_space_is_refused(cartpole_model: Path, tmp_path: Path) -> None:
    from imaginarium.agents.sb3 import train_in_imagination

    with pytest.raises(ImaginariumError, match="sac cannot act in the model's discrete action space"):
        train_in_imagination(cartpole_model, "sac", 10, tmp_path / "a.zip")


def test_a_pixel_agent_trains_on_imagined_frames_and_acts_on_real_frames_drawn_the_same_way(
    pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from imaginarium.envs.imagined import ImaginedEnv
    from imaginarium.envs.render import PixelObservation
    from imaginarium.envs.suite import get_task

    out = tmp_path / "a2c_pixels.zip"
    argv = [
        "imagine-train",
        "--model",
        str(pendulum_model),
        "--algo",
        "a2c",  # PPO would collect its 2,048-step rollouts whatever --steps says: 4,096 frames drawn
        "--steps",
        "64",
        "--out",
        str(out),
    ]
    code = main([*argv, "--pixels", "40", "--num-envs", "2", "--eval-episodes", "1", "--no-progress"])
    assert code == 0 and "real return on pendulum" in capsys.readouterr().out
    task = get_task("pendulum")
    real = PixelObservation(task.make(), task, pixels=40)
    imagined = ImaginedEnv(pendulum_model, observation="pixels", pixels=40)
    real_frame, _ = real.reset(seed=3)
    imagined_frame, _ = imagined.reset(options={"start_observation": real.unwrapped._get_obs()})
    assert real_frame.shape == (40, 40, 3) and np.array_equal(real_frame, imagined_frame)
    with pytest.raises(ImaginariumError, match="decoded states or pixels"):
        from imaginarium.agents.sb3 import train_in_imagination

        train_in_imagination(
            pendulum_model, "ppo", 8, tmp_path / "a.zip", env_options={"observation": "latent"}
        )
    real.close()
    imagined.close()


def test_real_transitions_are_stored_as_the_replay_buffer_stores_them(pendulum_dataset) -> None:
    import numpy as np

    from imaginarium.agents.sb3 import real_transitions

    space = pendulum_dataset.action_space
    real = real_transitions(pendulum_dataset, space)
    assert len(real) == pendulum_dataset.num_steps and real.observations.shape == real.next_observations.shape
    # SAC stores actions scaled to [-1, 1]: Pendulum's torque of 2 is 1
    expected = pendulum_dataset.actions.reshape(len(real), -1) / space.high
    np.testing.assert_allclose(real.actions, expected, atol=1e-6)
    np.testing.assert_array_equal(real.dones[:, 0], pendulum_dataset.terminated)  # a time limit bootstraps


def test_a_mixed_replay_batch_draws_the_real_share_from_the_dataset(pendulum_dataset) -> None:
    import numpy as np

    from imaginarium.agents.sb3 import MixedReplayBuffer, real_transitions

    real = real_transitions(pendulum_dataset, pendulum_dataset.action_space)
    buffer = MixedReplayBuffer(
        100, pendulum_dataset.observation_space, pendulum_dataset.action_space, "cpu",
        real=real, real_ratio=0.25, seed=0,
    )  # fmt: skip
    imagined = np.full((1, 3), 99.0, np.float32)  # nothing real lies there: tells imagined rows apart
    for _ in range(50):
        buffer.add(imagined, imagined, np.zeros((1, 1), np.float32), np.zeros(1), np.zeros(1), [{}])
    batch = buffer.sample(4000)
    from_data = (batch.observations != 99.0).all(1).float().mean().item()
    assert batch.observations.shape == (4000, 3) and abs(from_data - 0.25) < 0.03
    known = {tuple(row) for row in np.round(real.observations, 5)}
    drawn = batch.observations[(batch.observations != 99.0).all(1)].numpy()
    assert all(tuple(row) in known for row in np.round(drawn[:50], 5))


def test_sac_trains_on_branched_rollouts_with_real_transitions_and_ppo_is_refused_a_real_ratio(
    pendulum_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaginarium.agents import sb3
    from imaginarium.agents.sb3 import train_in_imagination

    trained: dict = {}
    original = sb3.MixedReplayBuffer.sample

    def sample(buffer, batch_size, env=None):  # the batches SAC learns from, as it draws them
        trained.setdefault("ratio", buffer.real_ratio)
        return original(buffer, batch_size, env)

    monkeypatch.setattr(sb3.MixedReplayBuffer, "sample", sample)
    out = tmp_path / "sac.zip"
    argv = ["imagine-train", "--model", str(pendulum_model), "--algo", "sac", "--steps", "300"]
    argv += ["--out", str(out), "--num-envs", "4", "--starts", "states", "--time-limit", "5"]
    assert main([*argv, "--real-ratio", "0.5", "--eval-episodes", "0", "--no-progress"]) == 0
    assert detect_sb3_algorithm(out) == "SAC" and trained == {"ratio": 0.5}
    from stable_baselines3 import SAC

    loaded = SAC.load(out)
    assert loaded.gradient_steps == 4  # one update per imagined transition, as with one env
    assert loaded.replay_buffer_kwargs == {}  # the dataset is not saved inside the agent
    with pytest.raises(ImaginariumError, match="ppo has none"):
        train_in_imagination(pendulum_model, "ppo", 10, tmp_path / "ppo", real_ratio=0.5)
    with pytest.raises(ImaginariumError, match="real_ratio"):
        train_in_imagination(pendulum_model, "sac", 10, tmp_path / "sac2", real_ratio=1.5)


def test_agents_train_with_the_tasks_own_rules_unless_told_otherwise() -> None:
    from types import SimpleNamespace

    from imaginarium.agents.sb3 import with_task_rules

    hopper = SimpleNamespace(card={"env_id": "Hopper-v5"})  # a termination rule, no reward rule
    assert with_task_rules(hopper, None) == {"termination": "rule"}
    pendulum = SimpleNamespace(card={"env_id": "Pendulum-v1"})
    assert with_task_rules(pendulum, {"reward": "model"}) == {"termination": "rule", "reward": "model"}
    frames = SimpleNamespace(card={"env_id": "Pendulum-v1", "config": {"image_size": 64}})
    assert with_task_rules(frames, {"uncertainty_penalty": 1.0}) == {"uncertainty_penalty": 1.0}
    assert with_task_rules(SimpleNamespace(card={"env_id": "Unknown-v0"}), None) == {}
