"""Shared fixtures: small datasets made by running the real simulators for a few hundred steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from imaginarium.collect import collect  # noqa: E402
from imaginarium.dataset import Dataset, load_dataset  # noqa: E402
from imaginarium.envs.suite import get_task  # noqa: E402

#: fixtures that train a model (these session ones, and the module ones of test_world_models.py and
#: test_pixel_rssm.py): a test using one is an integration test
TRAINING_FIXTURES = frozenset(
    {"pendulum_model", "cartpole_model", "tiny_ensemble", "trained", "pixel_model", "seed_models"}
)
#: node-id prefixes of the other integration tests: those over about a second on two shared cores
#: (``pytest --durations=0``) and those that start Ray, a browser or subprocesses doing real work
INTEGRATION_TESTS: tuple[str, ...] = (
    "tests/agents/test_dreamer.py::test_the_online_loop_acts_refits_imagines_and_writes_its_learning_curve",
    "tests/agents/test_dreamer.py::test_discrete_actions_are_learned_over_the_rssm_family_too",
    "tests/envs/test_imagined.py::test_mujoco_observations_are_drawn_as_the_real_env_draws_them",
    "tests/envs/test_imagined.py::test_rgb_array_refuses_tasks_whose_observations_it_does_not_know",
    "tests/models/test_ensemble.py::test_a_single_sample_is_dealt_to_every_member_over_steps",
    "tests/models/test_ensemble.py::test_the_fast_path_follows_weight_and_elite_changes",
    "tests/models/test_labeller.py::test_the_labeller_infers_pendulum_torques_from_states",
    "tests/models/test_labeller.py::test_training_refuses_drops_or_labels_action_free_episodes",
    "tests/models/test_pixel_rssm.py",
    "tests/models/test_vision.py::test_an_encoder_and_decoder_learn_to_give_each_frame_back",
    "tests/models/test_world_models.py::test_every_family_trains_and_steps_on_every_suite_task",
    "tests/models/test_world_models.py::test_validation_loss_falls",
    "tests/models/test_world_models.py::test_discrete_actions_train_and_step",
    "tests/models/test_world_models.py::test_training_into_an_existing_model_needs_resume_or_overwrite",
    "tests/models/test_world_models.py::test_resume_refuses_a_missing_state_and_another_split",
    "tests/models/test_world_models.py::test_non_finite_loss_stops_with_a_clear_error",
    "tests/rewards/test_heads.py::test_reward_head_learns_a_reward_function",
    "tests/run/test_pipeline.py::test_a_second_run_reuses_the_data_and_model_and_fresh_makes_them_anew",
    "tests/test_allocator.py::test_a_process_that_built_a_model_reuses_freed_memory",
    "tests/test_cli.py::test_collect_then_info_from_the_command_line",
    "tests/test_cli.py::test_demo_collects_trains_imagines_ranks_and_reports",
    "tests/test_cli.py::test_a_signal_keeps_the_complete_episodes_and_says_so",
    "tests/test_cli.py::test_train_then_evaluate_from_the_command_line",
    "tests/test_evaluation.py::test_bootstrap_interval_matches_scipys_percentile_bootstrap[20000]",
    "tests/test_experiments_smoke.py::test_benchmark_runs_on_its_smallest_setting",
    "tests/test_experiments_smoke.py::test_script_runs_on_its_smallest_setting",
    "tests/test_readme.py::test_readme_python_examples_run_in_order",
    "tests/test_sb3_archive.py::test_every_algorithm_loads_through_the_safe_path_and_acts_as_sb3_loads_it",
    "tests/test_tune.py::test_the_default_spaces_are_valid_and_a_file_can_replace_them",
    "tests/test_video_import.py::test_videos_become_observation_only_episodes_with_their_frames",
    "tests/test_video_import.py::test_a_pixel_model_learns_from_the_videos_and_a_state_model_leaves_them_out",
)


def _is_integration(item: pytest.Item) -> bool:
    """Whether ``item`` trains a model (a training fixture, asked for by name or through a parameter
    such as ``request.getfixturevalue(which)``) or is one of :data:`INTEGRATION_TESTS`."""
    callspec = getattr(item, "callspec", None)
    params = {value for value in callspec.params.values() if isinstance(value, str)} if callspec else set()
    fixtures = set(getattr(item, "fixturenames", ())) | params
    return bool(TRAINING_FIXTURES & fixtures) or item.nodeid.startswith(INTEGRATION_TESTS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tier (``-m integration``); the rest is the fast unit tier (``make test-fast``)."""
    for item in items:
        if _is_integration(item):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _isolated_minari_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Minari's default dataset root out of the user's home during tests."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari_root")))


@pytest.fixture(scope="session")
def pendulum_dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight random Pendulum episodes of 50 steps, written as a Minari HDF5 dataset."""
    out = tmp_path_factory.mktemp("data") / "pendulum"
    collect(get_task("pendulum", max_episode_steps=50), out, episodes=8, seed=3, num_envs=3, progress=False)
    return out


@pytest.fixture(scope="session")
def pendulum_dataset(pendulum_dataset_path: Path) -> Dataset:
    return load_dataset(pendulum_dataset_path)


@pytest.fixture(scope="session")
def cartpole_dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random CartPole episodes (they end early, at varied lengths)."""
    out = tmp_path_factory.mktemp("data") / "cartpole"
    collect("cartpole", out, episodes=12, seed=0, progress=False)
    return out


def _train_tiny_ensemble(dataset_path: Path, out: Path, steps: int = 150) -> Path:
    """A small ensemble trained for a few seconds: enough to be better than repeating the last state."""
    from imaginarium.models.train import train_world_model

    train_world_model(
        dataset_path,
        out,
        family="ensemble",
        preset="xs",
        config={"steps": steps, "eval_every": 50},
        model_overrides={"batch_size": 32},
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_ensemble():
    """The trainer behind the model fixtures, for tests that need a model of another dataset."""
    return _train_tiny_ensemble


@pytest.fixture(scope="session")
def pendulum_model(tmp_path_factory: pytest.TempPathFactory, pendulum_dataset_path: Path) -> Path:
    return _train_tiny_ensemble(pendulum_dataset_path, tmp_path_factory.mktemp("models") / "pendulum")


@pytest.fixture(scope="session")
def cartpole_model(tmp_path_factory: pytest.TempPathFactory, cartpole_dataset_path: Path) -> Path:
    return _train_tiny_ensemble(cartpole_dataset_path, tmp_path_factory.mktemp("models") / "cartpole")


@pytest.fixture(scope="session")
def sb3_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny untrained agents of every supported algorithm, with SB3's default network and with a
    custom one (and PPO with state-dependent exploration), seeded and saved the way SB3 saves them."""
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3

    custom = {"net_arch": [32, 16], "activation_fn": torch.nn.Tanh}
    folder = tmp_path_factory.mktemp("sb3_zoo")
    agents = {
        "ppo": PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0),
        "a2c": A2C("MlpPolicy", "CartPole-v1", seed=0),
        "sac": SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0),
        "td3": TD3("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0),
        "dqn": DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0),
        "ppo_sde": PPO("MlpPolicy", "Pendulum-v1", n_steps=16, batch_size=16, use_sde=True, seed=0),
        "ppo_custom": PPO(
            "MlpPolicy",
            "Pendulum-v1",
            n_steps=16,
            batch_size=16,
            seed=0,
            policy_kwargs={
                "net_arch": {"pi": [8], "vf": [16]},
                "activation_fn": torch.nn.ELU,
                "optimizer_class": torch.optim.RMSprop,
                "optimizer_kwargs": {"alpha": 0.9, "eps": 1e-5},
            },
        ),
        "a2c_custom": A2C("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=custom),
        "sac_custom": SAC(
            "MlpPolicy",
            "Pendulum-v1",
            buffer_size=100,
            seed=0,
            policy_kwargs={"net_arch": {"pi": [32], "qf": [16]}, "activation_fn": torch.nn.LeakyReLU},
        ),
        "td3_custom": TD3("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0, policy_kwargs=custom),
        "dqn_custom": DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0, policy_kwargs=custom),
    }
    paths = {}
    for name, agent in agents.items():
        paths[name] = folder / f"{name}.zip"
        agent.save(paths[name])
    return paths
