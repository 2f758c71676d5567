"""Collect → train → evaluate: the pipeline every job starts with, keeping what is already done.

A dataset that is whole and a model whose training finished are reused, so a study run again picks
up where it stopped; ``fresh=True`` makes everything anew (the demo).

    from imaginarium.run.pipeline import collect_train_evaluate
    prepared = collect_train_evaluate("pendulum", "data/pendulum", "models/pendulum", episodes=100)
    prepared.model, prepared.fidelity
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaginarium.collect import CollectResult, collect
from imaginarium.envs.suite import Task, get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import closed_loop_fidelity
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import CARD_FILE, read_card
from imaginarium.models.evaluate import FIDELITY_FILE, evaluate_model
from imaginarium.models.starts import keep_starts, read_starts
from imaginarium.models.train import TrainResult, train_world_model
from imaginarium.outputs import atomic_write_text, check_output
from imaginarium.policy import Policy
from imaginarium.report import write_fidelity_plot

#: the figure :func:`evaluate_fidelity` draws beside ``fidelity.json``
FIDELITY_PLOT = "fidelity.png"


@dataclass(frozen=True)
class Prepared:
    """What the pipeline left in its folder, and what it did this time (``None``: reused)."""

    dataset: Path
    model: Path
    collected: CollectResult | None
    trained: TrainResult | None
    fidelity: dict[str, Any] | None


def is_trained(folder: str | Path) -> bool:
    """Whether ``folder`` holds a model whose training finished."""
    return (Path(folder) / CARD_FILE).exists() and read_card(folder).get("status") == "trained"


def is_collected(folder: str | Path) -> bool:
    """Whether ``folder`` holds a whole dataset (one appears only once complete, see ``collect``)."""
    return (Path(folder) / "data" / "metadata.json").is_file()


def collect_train_evaluate(
    task: str | Task,
    data: str | Path,
    model: str | Path,
    policy: str | Policy = "random",
    episodes: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    family: str = "ensemble",
    preset: str = "s",
    model_overrides: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    horizon: int = 50,
    fresh: bool = False,
    progress: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Prepared:
    """Make the dataset ``data`` (``policy`` in ``task``), the model ``model`` trained on it, and the
    model's fidelity on its held-out episodes, each only where it is missing (all of them with
    ``fresh``); a model retrained because its data is new is evaluated again.

    :param model_overrides: settings of the model family's config over the preset's (``batch_size``, ...).
    :param train_config: :class:`imaginarium.models.train.TrainConfig` fields (``steps``, ``seed``, ...).
    :param horizon: open-loop steps of the fidelity figures.
    :param announce: told the title of each stage as it starts (a console rule, a log line).
    """
    data, model = Path(data), Path(model)
    announce = announce or (lambda title: None)
    collected = trained = fidelity = None
    if fresh or not is_collected(data):
        announce(f"collect {episodes or steps} {'episodes' if episodes else 'steps'} of {task}")
        collected = collect(
            task, data, policy=policy, episodes=episodes, steps=steps, seed=seed, overwrite=True,
            progress=progress,
        )  # fmt: skip
    if fresh or collected is not None or not is_trained(model):
        announce(f"train a world model ({family}, preset {preset})")
        trained = train_world_model(
            data, model, family=family, preset=preset, model_overrides=model_overrides, config=train_config,
            overwrite=True, progress=progress,
        )  # fmt: skip
        announce("fidelity on held-out episodes")
        fidelity = evaluate_fidelity(model, data, horizon=horizon, overwrite=True)["summary"]
    elif read_starts(model) is None:  # trained before models kept their start states
        keep_starts(model)
    return Prepared(data, model, collected, trained, fidelity)


def evaluate_fidelity(
    model: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    overwrite: bool = False,
    policies: Sequence[str] = (),
    episodes: int = 5,
    allow_code: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """:func:`imaginarium.models.evaluate.evaluate_model` of the model folder ``model`` on ``data``,
    with its figure: ``fidelity.json`` and ``fidelity.png`` in ``out`` (default the model folder),
    both checked before the work.

    :param policies: policy specs also run closed loop, ``episodes`` each on the real task of the
        model's card and in the model from the same starts (:func:`closed_loop_fidelity`): their
        figures go into ``fidelity.json`` as ``closed_loop``.
    :param options: ``horizon``, ``starts``, ``context``, ``seed``, ``visual``, ``precision`` of
        ``evaluate_model`` (the closed-loop runs imagine in that ``precision`` too).
    """
    folder = Path(out) if out is not None else Path(model)
    check_output(folder, overwrite, files=(FIDELITY_FILE, FIDELITY_PLOT))
    card = read_card(model)
    if policies and not card.get("task"):
        raise ImaginariumError("closed-loop fidelity needs a model whose card names its task")
    report = evaluate_model(model, data, out=folder, overwrite=True, **options)
    if policies:
        imagined = load_world_model(model)
        imagined.set_precision(options.get("precision", "float32"))
        closed = closed_loop_fidelity(
            imagined, get_task(card["task"]), policies, episodes=episodes,
            seed=options.get("seed", 0), allow_code=allow_code,
        )  # fmt: skip
        report["closed_loop"] = closed.to_json()
        atomic_write_text(folder / FIDELITY_FILE, json.dumps(report, indent=2))
    title = f"{card.get('family', '')} on {card.get('task', '')}"
    write_fidelity_plot(report, folder / FIDELITY_PLOT, title=title)
    return report
