from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import imaginarium  # noqa: F401  (registers WAMImagined-v0)
from imaginarium.errors import ImaginariumError, ModelError
from imaginarium.models.rows import COMPILED_ROWS_TRACKED
from imaginarium.rewards.reward_rules import REWARD_RULES


@pytest.mark.parametrize("observation", ["decoded", "latent"])
@pytest.mark.parametrize("which", ["pendulum_model", "cartpole_model"])
def test_gymnasium_and_sb3_checkers_pass(
    which: str, observation: str, request: pytest.FixtureRequest
) -> None:
    env = gym.make(
        "imaginarium:WAMImagined-v0", model=request.getfixturevalue(which), observation=observation
    )
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


def test_episodes_start_from_real_initial_states(pendulum_model: Path, pendulum_dataset) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model)
    observation, info = env.reset(seed=3)
    real_starts = pendulum_dataset.observations[pendulum_dataset.episode_starts[:-1]]
    assert np.allclose(observation, real_starts[info["start_index"]], atol=1e-5)


def test_branched_episodes_start_from_any_recorded_state(pendulum_model: Path, pendulum_dataset) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model, starts="states", time_limit=5)
    vector = gym.make_vec("WAMImagined-v0", num_envs=64, model=pendulum_model, starts="states")
    observations, _ = vector.reset(seed=0)
    recorded = np.round(pendulum_dataset.observations, 5)
    firsts = {tuple(row) for row in recorded[pendulum_dataset.episode_starts[:-1]]}
    known = {tuple(row) for row in recorded}
    assert all(tuple(row) in known for row in np.round(observations, 5))
    assert sum(tuple(row) not in firsts for row in np.round(observations, 5)) > 50  # mid-episode
    env.reset(seed=1)
    lengths = [env.step(env.action_space.sample())[3] for _ in range(5)]
    assert lengths == [False] * 4 + [True]
    with pytest.raises(ImaginariumError, match="starts must be one of episodes, states"):
        gym.make("WAMImagined-v0", model=pendulum_model, starts="anywhere")


def test_seeded_envs_repeat_their_episodes(pendulum_model: Path) -> None:
    rollouts = []
    for _ in range(2):
        env = gym.make("WAMImagined-v0", model=pendulum_model)
        observation, _ = env.reset(seed=11)
        trace = [observation]
        for _ in range(5):
            observation, reward, *_ = env.step(np.array([0.5], np.float32))
            trace.append(observation)
        rollouts.append(np.array(trace))
    np.testing.assert_array_equal(rollouts[0], rollouts[1])


def test_a_bfloat16_vector_env_imagines_near_the_float32_one(pendulum_model: Path) -> None:
    """``precision="bfloat16"`` is an option of the env like any other: the same seeded episodes,
    rounded (a batch above what the compiled float32 step serves), and refused when unknown."""
    from imaginarium.envs.imagined import ImaginedVectorEnv

    traces = []
    for precision in ("float32", "bfloat16"):
        env = ImaginedVectorEnv(256, pendulum_model, precision=precision, termination="none")
        assert env.imagination.model.precision == precision
        observations, _ = env.reset(seed=3)
        trace = [observations]
        for _ in range(5):
            observations, *_ = env.step(np.full((256, 1), 0.5, np.float32))
            trace.append(observations)
        traces.append(np.array(trace))
    assert not np.array_equal(traces[0], traces[1])
    np.testing.assert_allclose(traces[1], traces[0], atol=0.05)
    with pytest.raises(ImaginariumError, match="precision must be one of"):
        gym.make("WAMImagined-v0", model=pendulum_model, precision="half")


def test_episode_truncates_at_the_time_limit(pendulum_model: Path) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model, time_limit=7)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]
    limited = gym.make("WAMImagined-v0", model=pendulum_model, max_episode_steps=3)
    limited.reset(seed=0)
    assert [limited.step(limited.action_space.sample())[3] for _ in range(3)] == [False, False, True]


def test_uncertainty_limit_truncates_and_flags(pendulum_model: Path) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model, uncertainty_limit=1e-6, uncertainty_penalty=1.0)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert truncated and info["uncertainty_limit_hit"] and info["uncertainty"] > 0


def test_untracked_uncertainty_leaves_it_out_and_cannot_go_with_a_penalty(pendulum_model: Path) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=8, model=pendulum_model, track_uncertainty=False)
    envs.reset(seed=0)
    observations, rewards, _, _, info = envs.step(np.zeros((8, 1), np.float32))
    assert "uncertainty" not in info and np.isfinite(observations).all() and np.isfinite(rewards).all()
    with pytest.raises(ImaginariumError, match="track_uncertainty=False cannot go with"):
        gym.make("WAMImagined-v0", model=pendulum_model, track_uncertainty=False, uncertainty_penalty=1.0)


def test_bad_actions_and_order_are_refused(pendulum_model: Path, cartpole_model: Path) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model, time_limit=1).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(1,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([np.nan], np.float32))
    env.step(np.array([50.0], np.float32))  # clipped to the box, as documented
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(np.zeros(1, np.float32))
    discrete = gym.make("WAMImagined-v0", model=cartpole_model).unwrapped
    discrete.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        discrete.step(2)


def test_a_single_env_refuses_a_batch_of_one_box_action(pendulum_model: Path, cartpole_model: Path) -> None:
    env = gym.make("WAMImagined-v0", model=pendulum_model).unwrapped
    env.reset(seed=0)
    for batched in (np.zeros((1, 1), np.float32), [[0.0]]):
        with pytest.raises(ValueError, match=r"action has shape \(1, 1\), expected \(1,\)"):
            env.step(batched)
    env.step([0.0])  # a list of the space's shape is an action too
    discrete = gym.make("WAMImagined-v0", model=cartpole_model).unwrapped
    discrete.reset(seed=0)
    discrete.step(1)
    discrete.step(np.array([0]))
    with pytest.raises(ValueError, match=r"shape \(1, 1\)"):
        discrete.step(np.array([[1]]))
    vector = gym.make_vec("WAMImagined-v0", num_envs=1, model=pendulum_model)
    vector.reset(seed=0)
    vector.step(np.zeros((1, 1), np.float32))  # the batched form is the vector env's


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), float("-inf"), "0.5"])
def test_non_finite_or_negative_uncertainty_penalty_is_refused(pendulum_model: Path, value: object) -> None:
    with pytest.raises(ImaginariumError, match="uncertainty_penalty must be a finite number ≥ 0"):
        gym.make("WAMImagined-v0", model=pendulum_model, uncertainty_penalty=value)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_uncertainty_limit_is_refused(pendulum_model: Path, value: float) -> None:
    with pytest.raises(ImaginariumError, match="uncertainty_limit must be a finite number > 0"):
        gym.make("WAMImagined-v0", model=pendulum_model, uncertainty_limit=value)


@pytest.mark.parametrize("value", [0, -3, 2.5, float("nan"), True])
def test_a_time_limit_that_is_not_a_positive_integer_is_refused(pendulum_model: Path, value: object) -> None:
    with pytest.raises(ImaginariumError, match="time_limit must be a positive integer"):
        gym.make("WAMImagined-v0", model=pendulum_model, time_limit=value)


@pytest.mark.parametrize(
    ("option", "value"),
    [("uncertainty_penalty", float("nan")), ("uncertainty_limit", 0.0), ("time_limit", 0), ("num_envs", 0)],
)
def test_vector_and_sb3_envs_refuse_the_same_bad_options(
    pendulum_model: Path, option: str, value: object
) -> None:
    from imaginarium.envs.sb3 import imagined_vec_env

    options = {"num_envs": 2, option: value}
    with pytest.raises(ImaginariumError, match=option):
        gym.make_vec("WAMImagined-v0", model=pendulum_model, **options)
    with pytest.raises(ImaginariumError, match=option):
        imagined_vec_env(pendulum_model, **options)


def test_a_model_of_another_task_is_refused_at_make(pendulum_model: Path) -> None:
    with pytest.raises(ModelError, match="not on 'cartpole'"):
        gym.make("WAMImagined-v0", model=pendulum_model, task="cartpole")


def test_unknown_options_are_refused(pendulum_model: Path) -> None:
    with pytest.raises(ImaginariumError, match="observation must be one of"):
        gym.make("WAMImagined-v0", model=pendulum_model, observation="image")
    with pytest.raises(ImaginariumError, match="termination must be one of"):
        gym.make("WAMImagined-v0", model=pendulum_model, termination="never")


@pytest.mark.parametrize("num_envs", [16, COMPILED_ROWS_TRACKED + 1])
def test_vector_env_steps_the_whole_batch_with_one_model_call(
    pendulum_model: Path, monkeypatch, num_envs: int
) -> None:
    """A small batch is one compiled call, a larger one one call of the model's torch step."""
    envs = gym.make_vec("imaginarium:WAMImagined-v0", num_envs=num_envs, model=pendulum_model)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    observations, info = envs.reset(seed=0)
    assert observations.shape == (num_envs, 3) and info["start_index"].shape == (num_envs,)
    imagination = envs.unwrapped.imagination
    calls = {"model": 0, "compiled": 0}
    real_step, compiled_step = imagination.model.step, imagination.rows.step
    monkeypatch.setattr(
        imagination.model,
        "step",
        lambda *a, **k: calls.update(model=calls["model"] + 1) or real_step(*a, **k),
    )
    monkeypatch.setattr(
        imagination.rows,
        "step",
        lambda *a, **k: calls.update(compiled=calls["compiled"] + 1) or compiled_step(*a, **k),
    )
    observations, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    small = num_envs <= COMPILED_ROWS_TRACKED  # the env tracks the uncertainty
    assert calls == {"model": 0 if small else 1, "compiled": 1 if small else 0}
    assert observations.shape == (num_envs, 3)
    assert rewards.shape == terminated.shape == truncated.shape == (num_envs,)
    assert info["uncertainty"].shape == (num_envs,) and info["_uncertainty"].all()


def test_vector_env_resets_finished_envs_in_the_same_step(pendulum_model: Path, pendulum_dataset) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=4, model=pendulum_model, time_limit=2, termination="none")
    envs.reset(seed=1)
    envs.step(np.zeros((4, 1), np.float32))
    observations, _, _, truncated, info = envs.step(np.zeros((4, 1), np.float32))
    assert truncated.all() and info["_final_obs"].all()
    real_starts = pendulum_dataset.observations[pendulum_dataset.episode_starts[:-1]]
    for row in observations:  # the returned observations are fresh real start states
        assert np.abs(real_starts - row).max(1).min() < 1e-5
    assert not any(
        np.allclose(final, now) for final, now in zip(info["final_obs"], observations, strict=True)
    )
    final = info["final_info"]  # Gymnasium's layout: arrays over the envs, each with its mask
    assert final["_continue_prob"].all() and final["continue_prob"].shape == (4,)
    assert np.array_equal(final["continue_prob"], info["continue_prob"])


def test_final_info_is_laid_out_as_gymnasiums_own_vector_envs_lay_it_out(pendulum_model: Path) -> None:
    ours = gym.make_vec("WAMImagined-v0", num_envs=3, model=pendulum_model, time_limit=2, termination="none")
    theirs = gym.make_vec(
        "WAMImagined-v0",
        num_envs=3,
        vectorization_mode="sync",
        model=pendulum_model,
        termination="none",
        max_episode_steps=2,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    infos = []
    for envs in (ours, theirs):
        envs.reset(seed=0)
        envs.step(np.zeros((3, 1), np.float32))
        infos.append(envs.step(np.zeros((3, 1), np.float32))[4])
    for key, value in infos[1]["final_info"].items():
        assert np.shape(infos[0]["final_info"][key]) == np.shape(value), key
    assert set(infos[1]["final_info"]) <= set(infos[0]["final_info"])


def test_success_is_the_tasks_rule_over_each_imagined_episode(pendulum_model: Path, monkeypatch) -> None:
    """The model is held upright while its head says failure everywhere: pendulum's rule (upright for
    the last 20 steps) says success from the 20th step of every episode, and every reset starts it over."""
    import torch

    from imaginarium.models.ensemble import EnsembleModel
    from imaginarium.models.rows import RowStepper

    original = EnsembleModel.step

    def upright(self, state, actions, *args, **kwargs):
        out = original(self, state, actions, *args, **kwargs)
        out.state["observation"] = torch.tensor([1.0, 0.0, 0.0]).repeat(len(out.reward), 1)
        out.success_prob = torch.zeros_like(out.success_prob)
        return out

    compiled = RowStepper.step

    def rows_upright(self, observations, actions, *args, **kwargs):
        out = compiled(self, observations, actions, *args, **kwargs)
        out.observations[:] = [1.0, 0.0, 0.0]
        out.success_prob = np.zeros_like(out.success_prob)
        return out

    monkeypatch.setattr(EnsembleModel, "step", upright)
    monkeypatch.setattr(RowStepper, "step", rows_upright)
    envs = gym.make_vec("WAMImagined-v0", num_envs=3, model=pendulum_model, time_limit=25, termination="none")
    assert envs.unwrapped.imagination.success_source == "rule:upright_last_20"
    envs.reset(seed=0)
    labels = np.stack([envs.step(np.zeros((3, 1), np.float32))[4]["success"] for _ in range(60)])
    step_of_episode = np.arange(60) % 25 + 1
    assert np.array_equal(labels, np.repeat((step_of_episode >= 20)[:, None], 3, axis=1))
    env = gym.make("WAMImagined-v0", model=pendulum_model, time_limit=25, termination="none")
    env.reset(seed=0)
    single = [env.step(np.zeros(1, np.float32))[4]["success"] for _ in range(25)]
    env.reset(seed=1)
    assert (
        single == (step_of_episode[:25] >= 20).tolist()
        and not env.step(np.zeros(1, np.float32))[4]["success"]
    )


def test_vector_env_honours_reset_mask(pendulum_model: Path) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=6, model=pendulum_model)
    envs.reset(seed=2)
    stepped, *_ = envs.step(np.zeros((6, 1), np.float32))
    mask = np.array([True, False, True, False, False, False])
    observations, info = envs.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(observations[~mask], stepped[~mask])
    assert (info["start_index"][mask] >= 0).all() and (info["start_index"][~mask] == -1).all()
    with pytest.raises(ValueError, match="expected \\(6, 1\\)"):
        envs.step(np.zeros((5, 1), np.float32))


def test_vector_env_takes_discrete_actions(cartpole_model: Path) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=5, model=cartpole_model)
    envs.reset(seed=0)
    observations, *_ = envs.step(np.array([0, 1, 1, 0, 1]))
    assert observations.shape == (5, 4)
    with pytest.raises(ValueError, match="outside"):
        envs.step(np.array([0, 1, 2, 0, 1]))


def test_sb3_adapter_gives_terminal_observations_and_time_limit_flags(pendulum_model: Path) -> None:
    from imaginarium.envs.sb3 import imagined_vec_env

    venv = imagined_vec_env(pendulum_model, num_envs=3, time_limit=2, termination="none")
    venv.seed(0)
    first = venv.reset()
    assert first.shape == (3, 3)
    venv.step(np.zeros((3, 1), np.float32))
    observations, rewards, dones, infos = venv.step(np.zeros((3, 1), np.float32))
    assert dones.all() and rewards.dtype == np.float32
    assert all(info["TimeLimit.truncated"] and info["terminal_observation"].shape == (3,) for info in infos)


def test_an_sb3_agent_trains_inside_the_model(cartpole_model: Path) -> None:
    from stable_baselines3 import PPO

    from imaginarium.envs.sb3 import imagined_vec_env

    venv = imagined_vec_env(cartpole_model, num_envs=8)
    agent = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0)
    agent.learn(256)
    assert agent.num_timesteps >= 256
    actions, _ = agent.predict(venv.reset(), deterministic=True)
    assert actions.shape == (8,)


def test_rgb_array_draws_the_imagined_state_with_the_real_renderer(pendulum_model: Path) -> None:
    import gymnasium as gym

    env = gym.make("WAMImagined-v0", model=pendulum_model, render_mode="rgb_array")
    observation, _ = env.reset(seed=0)
    frame = env.render()
    real = gym.make("Pendulum-v1", render_mode="rgb_array")
    real.reset(seed=0)
    real.unwrapped.state = np.array([np.arctan2(observation[1], observation[0]), observation[2]])
    real.unwrapped.last_u = None
    assert frame.shape == (500, 500, 3) and frame.dtype == np.uint8
    assert np.abs(frame.astype(int) - real.render().astype(int)).mean() < 2.0
    env.step(np.array([2.0], np.float32))
    assert env.render().shape == (500, 500, 3)
    env.close()


@pytest.mark.parametrize("task", ["reacher", "pusher", "hopper"])
def test_mujoco_observations_are_drawn_as_the_real_env_draws_them(task: str) -> None:
    from imaginarium.envs.render import StateRenderer
    from imaginarium.envs.suite import get_task

    renderer = StateRenderer(get_task(task))  # chooses offscreen EGL before the real env renders
    real = get_task(task).make(render_mode="rgb_array")
    observation, _ = real.reset(seed=1)
    for _ in range(5):
        observation, *_ = real.step(real.action_space.sample())
    drawn = renderer.render(observation)
    assert drawn.shape == (480, 480, 3) and drawn.std() > 10  # a scene, not a blank frame
    assert np.abs(drawn.astype(int) - real.render().astype(int)).mean() < 1.0
    real.close()
    renderer.close()


def test_rgb_array_refuses_tasks_whose_observations_it_does_not_know(tmp_path: Path, tiny_ensemble) -> None:
    from imaginarium.collect import collect

    data = collect("InvertedPendulum-v5", tmp_path / "data", steps=300, progress=False).path
    model = tiny_ensemble(data, tmp_path / "model", steps=20)
    with pytest.raises(ImaginariumError, match="observations are not known to determine a drawable state"):
        gym.make("WAMImagined-v0", model=model, render_mode="rgb_array")


def test_pixel_observations_are_the_imagined_state_drawn_and_pass_both_checkers(pendulum_model: Path) -> None:
    from PIL import Image

    from imaginarium.envs.render import StateRenderer
    from imaginarium.envs.suite import get_task

    env = gym.make("WAMImagined-v0", model=str(pendulum_model), observation="pixels", pixels=48)
    assert env.observation_space == gym.spaces.Box(0, 255, (48, 48, 3), np.uint8)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    env.reset(seed=0)
    frame, *_ = env.step(np.array([1.0], np.float32))
    state = env.unwrapped._state["observation"][0].numpy()
    renderer = StateRenderer(get_task("pendulum"))
    drawn = np.asarray(Image.fromarray(renderer.render(state)).resize((48, 48), Image.Resampling.BILINEAR))
    assert frame.dtype == np.uint8 and np.abs(frame.astype(int) - drawn).max() <= 1
    env.close()


def test_an_sb3_cnn_agent_trains_on_imagined_frames(pendulum_model: Path) -> None:
    from stable_baselines3 import PPO

    from imaginarium.envs.sb3 import imagined_vec_env

    venv = imagined_vec_env(pendulum_model, num_envs=2, observation="pixels", track_uncertainty=False)
    agent = PPO("CnnPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    agent.learn(32)
    observations = venv.reset()
    assert observations.shape == (2, 64, 64, 3) and agent.predict(observations)[0].shape == (2, 1)
    with pytest.raises(ImaginariumError, match="pixels must be between 8 and 1024"):
        imagined_vec_env(pendulum_model, num_envs=1, observation="pixels", pixels=4)


def test_reward_rule_pays_the_tasks_own_reward_on_the_imagined_states(pendulum_model: Path) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=8, model=pendulum_model, reward="rule", termination="none")
    model_paid = gym.make_vec("WAMImagined-v0", num_envs=8, model=pendulum_model, termination="none")
    observations, _ = envs.reset(seed=3)
    model_paid.reset(seed=3)
    actions = np.linspace(-2, 2, 8, dtype=np.float32)[:, None]
    _, rewards, _, _, _ = envs.step(actions)
    _, learned, _, _, _ = model_paid.step(actions)
    angle = np.arctan2(observations[:, 1], observations[:, 0])
    expected = -(angle**2 + 0.1 * observations[:, 2] ** 2 + 0.001 * actions[:, 0] ** 2)
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)
    assert not np.allclose(learned, expected, rtol=1e-5)  # the model's own reward is not the rule's


def test_termination_rule_ends_episodes_where_the_task_would(cartpole_model: Path) -> None:
    envs = gym.make_vec("WAMImagined-v0", num_envs=16, model=cartpole_model, termination="rule")
    envs.reset(seed=0)
    for _ in range(60):  # always pushing right: every pole falls within a few dozen steps
        _, _, terminated, _, info = envs.step(np.ones(16, dtype=np.int64))
        if terminated.any():
            final = np.stack(list(info["final_obs"][terminated]))
            assert ((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 12 * 2 * np.pi / 360)).all()
            break
    else:
        raise AssertionError("no imagined episode ended by the rule")


def test_rules_are_refused_for_a_task_with_none_known(pendulum_model: Path, monkeypatch) -> None:
    monkeypatch.delitem(REWARD_RULES, "Pendulum-v1")
    with pytest.raises(ImaginariumError, match="reward='rule'.*'Pendulum-v1'"):
        gym.make("WAMImagined-v0", model=pendulum_model, reward="rule")
    with pytest.raises(ImaginariumError, match="reward must be one of"):
        gym.make("WAMImagined-v0", model=pendulum_model, reward="learned")


def test_a_single_env_steps_a_model_changed_in_place_from_its_next_episode(pendulum_model: Path) -> None:
    """The compiled step reads the model's weights at each episode's first step: a model trained or
    recalibrated in place is what the next episode imagines, as a fresh env over it would."""
    import torch

    from imaginarium.models import load_world_model

    model = load_world_model(pendulum_model)
    env = gym.make("WAMImagined-v0", model=model, termination="none")
    env.reset(seed=0)
    before = env.step(np.zeros(1, np.float32))[0]
    with torch.no_grad():
        model.target_norm.mean.add_(0.05)
        model.net[0].weight.mul_(1.3)
    fresh = gym.make("WAMImagined-v0", model=model, termination="none")
    steps = []
    for each in (env, fresh):
        each.reset(seed=0)
        steps.append(each.step(np.zeros(1, np.float32))[:2])
    np.testing.assert_array_equal(steps[0][0], steps[1][0])
    assert steps[0][1] == steps[1][1]
    assert not np.allclose(before, steps[0][0])
