"""Training a world model: early stopping on held-out episodes, TensorBoard, resumable checkpoints.

The dataset is split by whole episodes; the validation loss decides the best weights and when to
stop. After training, what must be chosen on held-out data is chosen (the ensemble's elites) and the
success and continue heads are calibrated on it. A non-finite loss stops training with a clear error
and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaginarium import __version__
from imaginarium.config import check_number, config_from_dict, config_to_dict
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import DatasetError, ImaginariumError, ModelError, TrainingError
from imaginarium.models import WorldModel, build_model, load_world_model, save_world_model
from imaginarium.models.base import check_device, teacher_forced_predictions
from imaginarium.models.checkpoint import (
    CARD_FILE,
    SEED_FOLDER,
    TRAINING_STATE_FILE,
    WEIGHTS_FILE,
    assert_is_new_or_resumable,
    load_tensors,
    read_card,
    save_tensors,
    spaces_to_card,
)
from imaginarium.models.labeller import LabellerConfig, label_actions, train_labeller
from imaginarium.models.starts import STARTS_FILE, save_starts, starts_of
from imaginarium.progress import Progress, tracking
from imaginarium.samplers import Batch, SequenceSampler

ACTION_FREE_MODES = ("refuse", "drop", "label")


#: what picks a model's best weights (:attr:`TrainConfig.selection`)
SELECTIONS = ("loss", "open_loop")

#: held-out windows the ``open_loop`` selection predicts at each check, after this many real steps
SELECTION_STARTS = 256
SELECTION_CONTEXT = 8


@dataclass(frozen=True)
class TrainConfig:
    """How long and how carefully to train (the family's own hyperparameters live in its config)."""

    steps: int = 20_000
    eval_every: int = 250
    #: evaluations without a better validation loss before stopping early
    patience: int = 8
    validation_fraction: float = 0.1
    eval_batches: int = 8
    grad_clip: float = 100.0
    seed: int = 0
    #: what picks the best weights and stops training: ``loss``, the validation loss (one step ahead
    #: for an ensemble), or ``open_loop``, the held-out episodes' mean normalised squared error of
    #: open-loop predictions over ``selection_horizon`` steps, the error imagination compounds
    selection: str = "loss"
    selection_horizon: int = 10

    def __post_init__(self) -> None:
        """Refuse settings that mean nothing (a zero step count, a NaN clip), where the config is built."""
        if self.selection not in SELECTIONS:
            raise ImaginariumError(
                f"train config: 'selection' must be one of {', '.join(SELECTIONS)}, got {self.selection!r}"
            )
        for name in ("steps", "eval_every", "patience", "eval_batches", "selection_horizon"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where="train config")
        check_number(self.validation_fraction, "validation_fraction", above=0, below=1, where="train config")
        check_number(self.grad_clip, "grad_clip", above=0, allow_inf=True, where="train config")
        check_number(self.seed, "seed", at_least=0, integer=True, where="train config")


@dataclass
class TrainResult:
    """A trained model and where it was written."""

    model: WorldModel
    directory: Path
    card: dict[str, Any]
    steps: int
    stopped_early: bool
    seconds: float


def train_world_model(
    dataset: Dataset | str | Path,
    out: str | Path,
    family: str = "ensemble",
    preset: str = "s",
    model_overrides: dict[str, Any] | None = None,
    config: TrainConfig | dict[str, Any] | None = None,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | Progress = True,
    action_free: str = "refuse",
    labeller: LabellerConfig | dict[str, Any] | None = None,
) -> TrainResult:
    """Train a world model of ``family`` on ``dataset`` and write it to ``out``.

    :param dataset: a :class:`Dataset`, or a dataset path or Minari id.
    :param out: the model folder (weights, card, TensorBoard logs under ``tb/``).
    :param preset: ``xs``, ``s`` or ``m``; ``model_overrides`` change single hyperparameters.
    :param config: training length, early stopping and split (:class:`TrainConfig` or a dict).
    :param device: ``cpu`` or ``cuda``.
    :param resume: continue from ``out``'s last checkpoint (same family, config and dataset).
    :param overwrite: discard a model already in ``out``.
    :param progress: told the steps and the validation loss (:mod:`imaginarium.progress`; ``True``: a bar).
    :param action_free: what to do with episodes that hold observations only: ``refuse`` them,
        ``drop`` them, or ``label`` them: an inverse-dynamics labeller learned from the episodes with
        actions infers theirs, and the model learns its dynamics from every episode (rewards only
        from recorded ones). ``labeller`` configures it (:class:`LabellerConfig`).
    :raises TrainingError: when the loss becomes non-finite (the last good checkpoint is kept).
    :raises DatasetError: action-free episodes with ``action_free="refuse"``.
    """
    started = time.perf_counter()
    config = (
        config if isinstance(config, TrainConfig) else config_from_dict(TrainConfig, config, "train config")
    )
    dataset = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if action_free not in ACTION_FREE_MODES:
        raise ImaginariumError(
            f"action_free must be one of {', '.join(ACTION_FREE_MODES)}, got {action_free!r}"
        )
    device = check_device(device)
    torch.manual_seed(config.seed)
    # built before ``out`` is touched, so a meaningless setting never costs the model it would overwrite
    model = build_model(family, dataset.observation_space, dataset.action_space, preset, model_overrides)
    model.circles = dataset.task.circles if dataset.task is not None else ()
    out = Path(out)
    assert_is_new_or_resumable(out, resume, overwrite)
    resuming = resume and (out / TRAINING_STATE_FILE).exists()
    if resume and not resuming:
        raise ImaginariumError(f"nothing to resume in {str(out)!r}: it has no {TRAINING_STATE_FILE}")
    if overwrite and not resuming:
        for name in (WEIGHTS_FILE, CARD_FILE, TRAINING_STATE_FILE, STARTS_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "tb", ignore_errors=True)
    model.check_frames(dataset)
    dataset, labelling = _action_free_episodes(dataset, model, action_free, labeller, device, progress)
    train, validation = dataset.split(config.validation_fraction, seed=config.seed)
    if config.selection == "open_loop" and validation.episode_lengths.max() < SELECTION_CONTEXT:
        raise DatasetError(
            f"selection 'open_loop' needs held-out episodes longer than {SELECTION_CONTEXT} steps"
        )
    model.fit_normalizers(train)
    model.fit_outcomes(train)
    model.to(device)
    sampler = SequenceSampler(
        train,
        model.config.batch_size,
        model.sequence_length,
        device,
        config.seed,
        model.within_episodes,
        model.observes_pixels,
    )
    windows_per_step = model.config.batch_size * model.draws_per_step
    validation_batches = _validation_batches(model, validation, config, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=model.config.learning_rate, weight_decay=model.config.weight_decay
    )
    card = _card(model, dataset, preset, config, device)
    if labelling is not None:
        card["action_free"] = labelling
    progress_state = {"step": 0, "best_loss": float("inf"), "best_step": 0, "bad_evals": 0, "curve": []}
    if resuming:
        progress_state = _restore(out, model, optimizer, sampler, card)
    model.starts = starts_of(model, dataset, seed=config.seed)
    save_starts(out, model.starts)

    from torch.utils.tensorboard import SummaryWriter

    stopped_early = False
    with (
        SummaryWriter(str(out / "tb")) as board,
        tracking(progress, f"train {family}", config.steps, progress_state["step"]) as bar,
    ):
        train_losses: list[float] = []
        while progress_state["step"] < config.steps and not stopped_early:
            model.train()
            loss, parts = model.loss(sampler.sample(windows_per_step))
            step = progress_state["step"] + 1
            if not torch.isfinite(loss):
                raise TrainingError(_nan_message(out, step, progress_state))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            progress_state["step"] = step
            train_losses.append(float(loss.detach()))
            if step % config.eval_every == 0 or step == config.steps:
                validation_loss = _validation_loss(model, validation_batches)
                if not np.isfinite(validation_loss):
                    raise TrainingError(_nan_message(out, step, progress_state))
                score = validation_loss
                if config.selection == "open_loop":
                    score = _open_loop_error(model, validation, config)
                    board.add_scalar("selection/open_loop_nmse", score, step)
                train_loss = float(np.mean(train_losses))
                train_losses.clear()
                board.add_scalar("loss/train", train_loss, step)
                board.add_scalar("loss/validation", validation_loss, step)
                for name, value in parts.items():
                    board.add_scalar(f"train/{name}", value, step)
                progress_state["curve"].append([step, train_loss, validation_loss])
                if score < progress_state["best_loss"]:
                    progress_state.update(best_loss=score, best_step=step, bad_evals=0)
                    save_world_model(
                        model, out, {**card, "status": "training", "training": _summary(progress_state)}
                    )
                else:
                    progress_state["bad_evals"] += 1
                    stopped_early = progress_state["bad_evals"] >= config.patience
                _save_training_state(out, model, optimizer, sampler, progress_state)
                bar.update(step, f"val {validation_loss:.4g}")

    model.load_state_dict(load_tensors(out / WEIGHTS_FILE, device)["state_dict"])
    model.eval()
    with torch.no_grad():
        finalize = model.finalize(validation)
    calibration = calibrate_heads(model, validation, seed=config.seed)
    seconds = time.perf_counter() - started
    training = {**_summary(progress_state), "stopped_early": stopped_early, "seconds": round(seconds, 1)}
    card = {
        **card,
        "status": "trained",
        "training": training,
        "finalize": finalize,
        "calibration": calibration,
    }
    save_world_model(model, out, card)
    model.card = card
    return TrainResult(model, out, card, progress_state["step"], stopped_early, seconds)


def train_world_models(
    dataset: Dataset | str | Path,
    out: str | Path,
    seeds: int,
    config: TrainConfig | dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool | Progress = True,
    **options: Any,
) -> list[TrainResult]:
    """Train ``seeds`` models of the same data independently, into ``out/seed-<seed>``: each its own
    weights, batches and held-out split (the config's seed, then the next ones). Ranked together
    (``rank_policies`` with the folder), their disagreement measures how far one training run can be
    trusted.

    :param resume: keep the models already trained and continue or start the others.
    :param options: as :func:`train_world_model` takes them.
    """
    if seeds < 1:
        raise ImaginariumError(f"seeds must be a positive number of models, got {seeds}")
    config = (
        config if isinstance(config, TrainConfig) else config_from_dict(TrainConfig, config, "train config")
    )
    dataset = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    out = Path(out)
    if (out / CARD_FILE).exists():
        raise ImaginariumError(f"{str(out)!r} holds one model; train several models into another folder")
    results = []
    for seed in range(config.seed, config.seed + seeds):
        directory = out / SEED_FOLDER.format(seed)
        card = read_card(directory) if (directory / CARD_FILE).is_file() else {}
        if resume and card.get("status") == "trained":
            model = load_world_model(directory)
            training = card["training"]
            steps, early = training["steps_done"], training["stopped_early"]
            results.append(TrainResult(model, directory, card, steps, early, training["seconds"]))
            continue
        results.append(
            train_world_model(
                dataset,
                directory,
                config=replace(config, seed=seed),
                resume=resume and (directory / TRAINING_STATE_FILE).exists(),
                progress=progress,
                **options,
            )
        )
    return results


def _action_free_episodes(
    dataset: Dataset,
    model: WorldModel,
    mode: str,
    labeller: LabellerConfig | dict[str, Any] | None,
    device: str,
    progress: bool | Progress = False,
) -> tuple[Dataset, dict[str, Any] | None]:
    """The dataset the model learns from, and what was done with its action-free episodes."""
    if not dataset.has_action_free:
        return dataset, None
    free = dataset.episode_action_free()
    stateless = ~dataset.episode_has_states()
    if mode != "refuse" and stateless.any() and not model.observes_pixels:
        # imported videos have frames only: a model of states cannot learn from them
        dataset, free = dataset.subset(np.flatnonzero(~stateless)), free[~stateless]
        if not free.any():
            return dataset, {"mode": mode, "episodes": 0, "without_states_dropped": int(stateless.sum())}
    if mode == "refuse":
        raise DatasetError(
            f"{int(free.sum())} of the dataset's {dataset.num_episodes} episodes hold observations only; "
            "label their actions with an inverse-dynamics labeller learned from the others "
            "(action_free='label', CLI --action-free label) or leave them out ('drop')"
        )
    if mode == "drop":
        return dataset.subset(np.flatnonzero(~free)), {"mode": "drop", "episodes": int(free.sum())}
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    if not isinstance(labeller, LabellerConfig):
        labeller = config_from_dict(LabellerConfig, labeller or {}, where="labeller config")
    with (
        torch.random.fork_rng(devices=devices),  # the model's own seeding stays as it was
        tracking(progress, "train labeller", labeller.steps) as bar,
    ):
        inverse, figures = train_labeller(
            dataset, model.observes_pixels, labeller, device, on_step=bar.update
        )
    labelled = label_actions(dataset, inverse, device)
    return labelled, {"mode": "label", "episodes": int(free.sum()), "labeller": figures}


def calibrate_heads(
    model: WorldModel, validation: Dataset, seed: int = 0, windows: int = 256
) -> dict[str, float]:
    """Fit the temperatures of the success and continue heads on held-out transitions."""
    predictions = teacher_forced_predictions(model, validation, windows, seed)
    features = predictions["head_features"]
    return {
        "success_temperature": model.success_head.calibrate(features, predictions["success"]),
        "continue_temperature": model.continue_head.calibrate(features, predictions["continue"]),
    }


def _validation_batches(
    model: WorldModel, validation: Dataset, config: TrainConfig, device: str
) -> list[Batch]:
    try:
        sampler = SequenceSampler.capped(
            validation,
            model.config.batch_size,
            model.sequence_length,
            device,
            config.seed + 1,
            model.within_episodes,
            model.observes_pixels,
        )
    except DatasetError as error:
        raise DatasetError(f"validation episodes are too few or too short: {error}") from None
    return [sampler.sample(sampler.batch_size * model.draws_per_step) for _ in range(config.eval_batches)]


def _validation_loss(model: WorldModel, batches: list[Batch]) -> float:
    """Mean loss on fixed batches, with fixed randomness (the rssm samples latents), so checks compare."""
    model.eval()
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        return float(np.mean([float(model.loss(batch)[0]) for batch in batches]))


def _open_loop_error(model: WorldModel, validation: Dataset, config: TrainConfig) -> float:
    """The held-out episodes' normalised squared error of open-loop predictions, averaged over
    horizons 1..``selection_horizon`` (infinite when the predictions are not finite: never the best)."""
    from imaginarium.models.evaluate import open_loop_errors

    model.eval()
    errors = open_loop_errors(
        model, validation, config.selection_horizon, SELECTION_STARTS, SELECTION_CONTEXT, config.seed + 2
    )["nmse"]
    value = float(np.nanmean(errors))
    return value if np.isfinite(value) else float("inf")


def _card(
    model: WorldModel, dataset: Dataset, preset: str, config: TrainConfig, device: str
) -> dict[str, Any]:
    task = dataset.task
    return {
        "format_version": 1,
        "imaginarium_version": __version__,
        "preset": preset,
        "task": task.name if task else None,
        "env_id": task.env_id if task else None,
        "max_episode_steps": task.max_episode_steps if task else None,
        **spaces_to_card(dataset.observation_space, dataset.action_space),
        "dataset": {
            "path": str(dataset.path) if dataset.path else None,
            "fingerprint": dataset.fingerprint(),
            "episodes": dataset.num_episodes,
            "steps": dataset.num_steps,
            "has_success": dataset.has_success,
        },
        "train_config": config_to_dict(config),
        "device": device,
        "fidelity": None,
    }


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps_done": state["step"],
        "best_step": state["best_step"],
        "best_validation_loss": state["best_loss"],
        "curve": state["curve"],
    }


def _nan_message(out: Path, step: int, state: dict[str, Any]) -> str:
    kept = (
        f"the last good checkpoint (step {state['best_step']}) is kept in {str(out)!r}"
        if state["best_step"]
        else "no checkpoint had been written yet"
    )
    return f"the loss became non-finite at step {step}; {kept}. Try a lower learning rate or check the data."


def _save_training_state(
    out: Path,
    model: WorldModel,
    optimizer: torch.optim.Optimizer,
    sampler: SequenceSampler,
    state: dict[str, Any],
) -> None:
    save_tensors(
        out / TRAINING_STATE_FILE,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "progress": {k: v for k, v in state.items() if k != "curve"},
            "curve": torch.tensor(state["curve"], dtype=torch.float64).reshape(-1, 3),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if model.device.type == "cuda" else [],
            "sampler_rng": sampler.generator.get_state(),
        },
    )


def _split(train_config: dict[str, Any]) -> tuple[Any, Any]:
    """What decides which episodes are held out: resuming with another split would leak them."""
    return train_config.get("validation_fraction"), train_config.get("seed")


def _restore(
    out: Path,
    model: WorldModel,
    optimizer: torch.optim.Optimizer,
    sampler: SequenceSampler,
    card: dict[str, Any],
) -> dict[str, Any]:
    previous = read_card(out)
    for key, same in (
        ("family", previous.get("family") == model.family),
        ("config", previous.get("config") == config_to_dict(model.config)),
        ("dataset", previous.get("dataset", {}).get("fingerprint") == card["dataset"]["fingerprint"]),
        ("split", _split(previous.get("train_config", {})) == _split(card["train_config"])),
    ):
        if not same:
            raise ModelError(f"cannot resume {str(out)!r}: its {key} differs from this run's")
    saved = load_tensors(out / TRAINING_STATE_FILE)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng") and model.device.type == "cuda":
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    sampler.generator.set_state(saved["sampler_rng"])
    state = dict(saved["progress"])
    state["curve"] = saved["curve"].tolist()
    return state
