"""Checkpoints that are safe to load: tensors only, plus a JSON model card.

A model folder holds ``model.pt`` (a state dict, loaded with ``weights_only=True`` so a file
that would run code is refused), ``model_card.json`` (task, spaces, dataset fingerprint, family and
hyperparameters, training summary, fidelity figures), and while training ``training_state.pt``
(optimizer and progress, for resuming). Every file is written to a temporary name and renamed, so
a crash mid-write never leaves a damaged checkpoint in place of a good one.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from minari.serialization import deserialize_space, serialize_space

from imaginarium.envs.suite import Task, get_task
from imaginarium.errors import ImaginariumError, ModelError, TaskError
from imaginarium.outputs import atomic_write_bytes, check_writable

WEIGHTS_FILE = "model.pt"
CARD_FILE = "model_card.json"
TRAINING_STATE_FILE = "training_state.pt"
CARD_VERSION = 1


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """Save a (nested) dict of tensors and plain values atomically."""
    atomic_write_bytes(path, lambda handle: torch.save(tensors, handle))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load what :func:`save_tensors` wrote, refusing anything but tensors and plain values.

    :raises ModelError: missing, corrupted, or a pickle that would construct arbitrary objects.
    """
    if not path.is_file():
        raise ModelError(f"checkpoint file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelError(
            f"refusing to load {str(path)!r}: it holds objects other than tensors, which could run code "
            f"({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelError(f"checkpoint {str(path)!r} is corrupted or truncated: {error}") from None


def write_card(directory: Path, card: dict[str, Any]) -> None:
    atomic_write_bytes(
        directory / CARD_FILE, lambda handle: handle.write(json.dumps(card, indent=2).encode())
    )


#: the folder of one seed's model among those ``train --seeds N`` writes
SEED_FOLDER = "seed-{}"


def _seed_folders(directory: Path) -> list[Path]:
    """The models a folder holds one per seed (:data:`SEED_FOLDER`), by seed."""
    prefix = SEED_FOLDER.format("")
    held = [
        path
        for path in directory.glob(SEED_FOLDER.format("*"))
        if path.name[len(prefix) :].isdigit() and (path / CARD_FILE).is_file()
    ]
    return sorted(held, key=lambda path: int(path.name[len(prefix) :]))


def model_folders(directory: str | Path) -> list[Path]:
    """The model folders ``directory`` names: itself when it is one, else the models it holds one per
    seed (``train --seeds``), in seed order.

    :raises ModelError: a folder that is neither.
    """
    directory = Path(directory)
    if (directory / CARD_FILE).is_file():
        return [directory]
    held = _seed_folders(directory) if directory.is_dir() else []
    if not held:
        read_card(directory)  # says what is wrong
    return held


def read_card(directory: str | Path) -> dict[str, Any]:
    """The model card of a model folder.

    :raises ModelError: when the folder or card is missing or unreadable.
    """
    path = Path(directory) / CARD_FILE
    if not Path(directory).is_dir():
        raise ModelError(f"model folder {str(directory)!r} does not exist")
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        held = _seed_folders(Path(directory))
        if held:
            raise ModelError(
                f"{str(directory)!r} holds {len(held)} models (train --seeds), not one: name one of them, "
                f"e.g. {str(held[0])!r}, or rank with all of them"
            ) from None
        raise ModelError(f"{str(directory)!r} is not a model folder (no {CARD_FILE})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"model card {str(path)!r} is unreadable: {error}") from None
    for key in ("family", "config", "observation_space", "action_space"):
        if key not in card:
            raise ModelError(f"model card {str(path)!r} lacks {key!r}")
    return card


def spaces_to_card(observation_space: Any, action_space: Any) -> dict[str, str]:
    return {
        "observation_space": serialize_space(observation_space),
        "action_space": serialize_space(action_space),
    }


def spaces_from_card(card: dict[str, Any]) -> tuple[Any, Any]:
    try:
        return deserialize_space(card["observation_space"]), deserialize_space(card["action_space"])
    except Exception as error:  # Minari raises several kinds for malformed space JSON
        raise ModelError(f"model card has unreadable spaces: {error}") from None


def check_card_task(card: dict[str, Any], task: str | Task, source: str) -> Task:
    """Refuse a model made for another task: names and spaces must agree.

    :raises ModelError: naming both tasks.
    """
    task = get_task(task) if isinstance(task, str) else task
    if card.get("env_id") and card["env_id"] != task.env_id:
        raise ModelError(
            f"{source} was trained on {card.get('task')!r} ({card['env_id']}), not on {task.name!r} ({task.env_id})"
        )
    observation_space, action_space = spaces_from_card(card)
    try:
        task.check_spaces(observation_space, action_space, source)
    except TaskError as error:
        raise ModelError(str(error)) from None
    return task


def assert_is_new_or_resumable(directory: Path, resume: bool, overwrite: bool) -> None:
    """Training into a folder that already holds a model needs ``resume`` or ``overwrite``; one that
    cannot be written is refused before training starts."""
    holds_model = (directory / CARD_FILE).exists() or (directory / TRAINING_STATE_FILE).exists()
    if holds_model and not (resume or overwrite):
        raise ImaginariumError(
            f"{str(directory)!r} already holds a model; pass resume to continue it or overwrite to start over"
        )
    if directory.exists() and not directory.is_dir():
        raise ImaginariumError(f"{str(directory)!r} is a file, not a folder to write a model into")
    check_writable(directory)
