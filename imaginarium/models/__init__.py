"""World-model families behind one interface, and how to build, save and load them.

from imaginarium.models import load_world_model
model = load_world_model("models/pendulum", task="pendulum")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from imaginarium.allocator import keep_freed_memory
from imaginarium.config import config_from_dict, config_to_dict
from imaginarium.envs.suite import Task, observation_circles
from imaginarium.errors import ImaginariumError, ModelError
from imaginarium.models.base import State, StepOutput, TransitionPredictions, WorldModel, check_device
from imaginarium.models.checkpoint import (
    WEIGHTS_FILE,
    check_card_task,
    load_tensors,
    model_folders,
    read_card,
    save_tensors,
    spaces_from_card,
    write_card,
)
from imaginarium.models.ensemble import EnsembleModel, ensemble_config
from imaginarium.models.rssm import RSSMModel, rssm_config
from imaginarium.models.starts import read_starts

FAMILIES: dict[str, tuple[type[WorldModel], Any]] = {
    "ensemble": (EnsembleModel, ensemble_config),
    "rssm": (RSSMModel, rssm_config),
}


def build_model(
    family: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    preset: str = "s",
    overrides: dict[str, Any] | None = None,
) -> WorldModel:
    """A fresh model of ``family`` sized by ``preset``, with config ``overrides`` (unknown keys refused).

    This process keeps freed heap memory from now on (:func:`keep_freed_memory`): model steps reuse it."""
    if family not in FAMILIES:
        raise ImaginariumError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    model_class, make_config = FAMILIES[family]
    keep_freed_memory()
    return model_class(observation_space, action_space, make_config(preset, **(overrides or {})))


def save_world_model(model: WorldModel, directory: str | Path, card: dict[str, Any]) -> None:
    """Write the weights and the card (``family`` and ``config`` are filled in from the model)."""
    directory = Path(directory)
    save_tensors(directory / WEIGHTS_FILE, {"state_dict": model.state_dict()})
    write_card(directory, {**card, "family": model.family, "config": config_to_dict(model.config)})


def load_world_model(
    directory: str | Path, task: str | Task | None = None, device: str | torch.device = "cpu"
) -> WorldModel:
    """Load a trained model, checked against ``task`` when given.

    :raises ModelError: missing, corrupted or unsafe files, or a model of another task.
    """
    keep_freed_memory()  # as in build_model
    device = check_device(device)
    card = read_card(directory)
    if task is not None:
        check_card_task(card, task, f"model {str(directory)!r}")
    family = card["family"]
    if family not in FAMILIES:
        raise ModelError(f"model {str(directory)!r} has unknown family {family!r}")
    model_class, _ = FAMILIES[family]
    observation_space, action_space = spaces_from_card(card)
    try:
        config = config_from_dict(
            model_class.config_class, card["config"], where=f"model card of {str(directory)!r}"
        )
    except ImaginariumError as error:
        raise ModelError(f"this version cannot read the model: {error}") from None
    model = model_class(observation_space, action_space, config)
    state = load_tensors(Path(directory) / WEIGHTS_FILE, device="cpu")
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as error:
        raise ModelError(f"weights in {str(directory)!r} do not fit its model card: {error}") from None
    model.card = card
    model.circles = observation_circles(card.get("task") or card.get("env_id"))
    model.starts = read_starts(directory)
    return model.to(device).eval()


__all__ = [
    "FAMILIES",
    "EnsembleModel",
    "RSSMModel",
    "State",
    "StepOutput",
    "TransitionPredictions",
    "WorldModel",
    "build_model",
    "load_world_model",
    "model_folders",
    "save_world_model",
]
