"""The rssm that sees frames: trained on a dataset's images, served as an env, acted in by Dreamer."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from imaginarium.agents.dreamer import DreamerPolicy, train_dreamer
from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.envs.render import FrameObservation
from imaginarium.envs.suite import get_task
from imaginarium.errors import DatasetError, ImaginariumError
from imaginarium.evaluation import real_rollouts
from imaginarium.models import load_world_model
from imaginarium.models.train import train_world_model

SIZE = 16
TINY = {
    "image_size": SIZE,
    "sequence_length": 8,
    "deter": 32,
    "hidden": 32,
    "batch_size": 8,
    "learning_rate": 1e-3,
}


@pytest.fixture(scope="module")
def pixel_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pixel_data") / "pendulum"
    task = get_task("pendulum", max_episode_steps=40)
    collect(task, out, episodes=8, seed=5, num_envs=4, pixels=SIZE, progress=False)
    return out


@pytest.fixture(scope="module")
def pixel_model(pixel_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pixel_model") / "rssm"
    config = {"steps": 60, "eval_every": 20, "patience": 100}
    return train_world_model(pixel_data, out, "rssm", "xs", TINY, config, progress=False)


def test_the_model_learns_the_frames_and_decodes_frames(pixel_model, pixel_data: Path) -> None:
    curve = np.array(pixel_model.card["training"]["curve"])
    assert curve[-1, 2] < 0.8 * curve[0, 2]  # the frames' reconstruction is most of the loss
    model = pixel_model.model
    assert model.observes_pixels and model.input_space.shape == (SIZE, SIZE, 3)
    dataset = load_dataset(pixel_data)
    frames = torch.as_tensor(dataset.images(np.arange(4)))
    with torch.no_grad():
        state = model.initial_state(frames)
        decoded = model.decode(state)
        out = model.step(state, torch.as_tensor(dataset.actions[:4]))
    assert decoded.dtype == torch.uint8 and decoded.shape == (4, SIZE, SIZE, 3)
    assert out.reward.shape == (4,) and torch.isfinite(out.reward).all()


def test_a_reloaded_pixel_model_gives_the_same_frames(pixel_model, pixel_data: Path) -> None:
    reloaded = load_world_model(pixel_model.directory)
    frames = torch.as_tensor(load_dataset(pixel_data).images(np.arange(3)))
    with torch.no_grad():
        assert torch.equal(
            pixel_model.model.decode(pixel_model.model.initial_state(frames)),
            reloaded.decode(reloaded.initial_state(frames)),
        )


def test_frames_missing_or_of_another_size_are_refused(
    pixel_data: Path, pendulum_dataset_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="holds none; collect it with --pixels 16"):
        train_world_model(pendulum_dataset_path, tmp_path / "a", "rssm", "xs", TINY, {"steps": 1})
    with pytest.raises(DatasetError, match=r"frames of shape \(32, 32, 3\), the dataset's are \(16, 16, 3\)"):
        train_world_model(pixel_data, tmp_path / "b", "rssm", "xs", {**TINY, "image_size": 32}, {"steps": 1})
    with pytest.raises(ImaginariumError, match="power of two"):
        train_world_model(pixel_data, tmp_path / "c", "rssm", "xs", {**TINY, "image_size": 24}, {"steps": 1})


def test_the_imagined_env_serves_decoded_frames_and_passes_both_checkers(pixel_model) -> None:
    env = gym.make("imaginarium:WAMImagined-v0", model=pixel_model.directory, render_mode="rgb_array")
    assert env.observation_space == gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    observation, _ = env.reset(seed=0)
    observation, reward, *_ = env.step(env.action_space.sample())
    assert observation.dtype == np.uint8 and np.isfinite(reward)
    assert np.array_equal(env.render(), observation)
    env.close()
    with pytest.raises(ImaginariumError, match="sees 16×16 frames; pixels=32"):
        gym.make("imaginarium:WAMImagined-v0", model=pixel_model.directory, observation="pixels", pixels=32)
    asked = gym.make("imaginarium:WAMImagined-v0", model=pixel_model.directory, observation="pixels")
    assert asked.observation_space.shape == (SIZE, SIZE, 3)  # its own frames, at its own size
    asked.close()
    envs = gym.make_vec("imaginarium:WAMImagined-v0", num_envs=3, model=pixel_model.directory)
    observations, _ = envs.reset(seed=1)
    assert observations.shape == (3, SIZE, SIZE, 3) and observations.dtype == np.uint8
    envs.close()


def test_a_reacher_model_learned_from_frames_serves_them_and_passes_both_checkers(tmp_path: Path) -> None:
    """Reacher, MuJoCo drawn offscreen from above, as well as classic control's pendulum above."""
    data = tmp_path / "reacher"
    collect(get_task("reacher", max_episode_steps=20), data, episodes=4, seed=0, pixels=SIZE, progress=False)
    config = {"steps": 10, "eval_every": 10, "patience": 100}
    model = train_world_model(data, tmp_path / "rssm", "rssm", "xs", TINY, config, progress=False)
    env = gym.make("imaginarium:WAMImagined-v0", model=model.directory)
    assert env.observation_space == gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    env.close()


def test_the_real_env_shows_the_frames_collection_stored(pixel_data: Path) -> None:
    dataset = load_dataset(pixel_data)
    env = FrameObservation(get_task("pendulum"), SIZE)
    real = [env.reset(seed=seed)[0] for seed in range(5, 13)]  # the seeds the fixture collected with
    env.close()
    for stored in dataset.images(dataset.episode_starts[:-1]):
        assert any(np.array_equal(stored, frame) for frame in real)


def test_dreamer_learns_on_the_pixel_model_and_acts_on_real_frames(pixel_model, tmp_path: Path) -> None:
    train_dreamer(pixel_model.directory, tmp_path / "agent", {"steps": 4, "batch_size": 8}, progress=False)
    policy = DreamerPolicy(tmp_path / "agent")
    assert policy.pixels == SIZE
    outcome = real_rollouts(get_task("pendulum", max_episode_steps=20), policy, episodes=2, seed=0)
    assert len(outcome.per_episode) == 2 and outcome.length == 20


def test_pixel_agents_are_ranked_in_the_pixel_model_and_on_real_frames(pixel_model, tmp_path: Path) -> None:
    from imaginarium.run.rank import rank_policies
    from imaginarium.video import write_rollout_video

    train_dreamer(pixel_model.directory, tmp_path / "agent", {"steps": 2, "batch_size": 8}, progress=False)
    result = rank_policies(
        pixel_model.directory,
        ["random", str(tmp_path / "agent")],
        starts=4,
        horizon=10,
        real_env="pendulum",
        real_episodes=2,
        workers=0,
        progress=False,
    )
    assert [entry.error for entry in result.policies] == [None, None]
    assert all(entry.real_return is not None for entry in result.policies)
    assert result.outside_threshold is None  # measured in state space, which a frame model lacks
    video = write_rollout_video(
        pixel_model.directory, tmp_path / "agent", tmp_path / "v.gif", steps=5, size=32
    )
    assert video.real_steps == video.imagined_steps == 5


def test_an_sb3_cnn_policy_trains_on_decoded_frames_and_acts_on_real_ones(tmp_path: Path) -> None:
    from imaginarium.agents.sb3 import real_return, train_in_imagination

    collect(
        get_task("pendulum", max_episode_steps=20), tmp_path / "data", episodes=3, pixels=64, progress=False
    )
    model = tmp_path / "model"
    overrides = {**TINY, "image_size": 64, "cnn_depth": 4}
    train_world_model(
        tmp_path / "data", model, "rssm", "xs", overrides, {"steps": 2, "eval_every": 1}, progress=False
    )
    agent = train_in_imagination(
        model, "ppo", 32, tmp_path / "ppo", num_envs=2, algo_kwargs={"n_steps": 16, "batch_size": 16}
    )
    from stable_baselines3 import PPO

    assert type(PPO.load(agent).policy).__name__ == "ActorCriticCnnPolicy"
    figures = real_return(agent, "pendulum", episodes=1, pixels=64, rendered=True)
    assert np.isfinite(figures["mean"])


def test_evaluate_model_measures_a_pixel_model_on_frames(
    pixel_model, pixel_data: Path, tmp_path: Path
) -> None:
    from imaginarium.models.evaluate import evaluate_model

    report = evaluate_model(
        pixel_model.directory, pixel_data, horizon=5, context=2, out=tmp_path, visual=True
    )
    summary = report["summary"]
    assert len(report["open_loop"]["nmse_per_dim"][0]) == 3  # one figure per colour channel
    assert np.isfinite(summary["nmse_at_1"]) and np.isfinite(summary["repeat_last_nmse_at_1"])
    assert 0 < summary["psnr_at_1"] <= 100 and 0 < summary["ssim_at_1"] <= 1
