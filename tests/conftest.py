"""Shared fixtures: small datasets made by running the real simulators for a few hundred steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from imaginarium.collect import collect  # noqa: E402
from imaginarium.dataset import Dataset, load_dataset  # noqa: E402
from imaginarium.envs.suite import get_task  # noqa: E402


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
