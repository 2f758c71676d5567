"""Fidelity of a world model on held-out episodes: does what happens inside predict what happens outside?

Measured (``imaginarium evaluate-model``):

- open-loop prediction error over horizons ``1..H``: from a real state (filtered through ``context``
  real steps), the model is fed the real actions and never sees another real observation; the error
  per dimension is normalised by that dimension's variance in the data, and set beside the trivial
  predictor that repeats the last real observation;
- reward error and R², success and continue AUC and Brier score, from one-step predictions;
- how the model's own uncertainty grows with the horizon.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import DatasetError, ImaginariumError, ModelError
from imaginarium.models import WorldModel, load_world_model
from imaginarium.models.base import teacher_forced_predictions
from imaginarium.models.checkpoint import write_card
from imaginarium.outputs import atomic_write_text, check_output


def held_out_episodes(model: WorldModel, dataset: Dataset) -> tuple[Dataset, str]:
    """The validation episodes of the model's own split when ``dataset`` is its training data; else all of it."""
    card = getattr(model, "card", {}) or {}
    trained_on = (card.get("dataset") or {}).get("fingerprint")
    if trained_on == dataset.fingerprint():
        split = card.get("train_config", {})
        _, validation = dataset.split(split.get("validation_fraction", 0.1), seed=split.get("seed", 0))
        return validation, "validation episodes of the training split"
    return dataset, "the whole dataset (not the model's training data)"


@torch.no_grad()
def open_loop_rollouts(
    model: WorldModel, dataset: Dataset, horizon: int = 50, starts: int = 256, context: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """Open-loop predictions from ``starts`` random real states (each filtered through ``context`` real
    steps), fed the real actions: ``predicted`` and ``real`` ``(H, N, *obs)`` observations (``real`` NaN
    past the episode's end), ``repeat`` ``(N, *obs)`` (the last real observation), ``uncertainty``
    ``(H, N)``. Observations are what the model sees: states, or frames (then at most 32 starts).
    """
    rng = np.random.default_rng(seed)
    lengths = dataset.episode_lengths
    candidates = [
        (episode, t0) for episode, length in enumerate(lengths) for t0 in range(context - 1, int(length))
    ]
    if not candidates:
        raise DatasetError(f"no held-out episode is longer than the context of {context} steps")
    chosen = [
        candidates[i] for i in rng.choice(len(candidates), size=min(starts, len(candidates)), replace=False)
    ]
    if model.observes_pixels:  # frames are large: a few starts show how they drift
        chosen = chosen[:32]
    device = model.device
    count = len(chosen)
    shape = model.input_space.shape
    predicted = np.full((horizon, count, *shape), np.nan, np.float32)
    real = np.full((horizon, count, *shape), np.nan, np.float32)
    repeat = np.zeros((count, *shape), np.float32)
    uncertainty = np.full((horizon, count), np.nan)
    history_obs, history_actions, future_actions = [], [], []
    for index, (episode, t0) in enumerate(chosen):
        base = dataset.episode_starts[episode]
        rows = np.arange(base + t0 - context + 1, base + t0 + 1)
        history_obs.append(model.inputs(dataset, rows))
        history_actions.append(dataset.actions[rows[:-1]])
        steps = min(horizon, int(lengths[episode]) - t0)
        future = np.arange(base + t0, base + t0 + steps)
        real[:steps, index] = model.next_inputs(dataset, future)
        padded = np.concatenate(
            [dataset.actions[future], np.repeat(dataset.actions[future[-1:]], horizon - steps, 0)]
        )
        future_actions.append(padded)
        repeat[index] = model.inputs(dataset, np.array([base + t0]))[0]
    state = model.observe(
        torch.as_tensor(np.stack(history_obs), device=device),
        torch.as_tensor(np.stack(history_actions), device=device),
    )
    actions = torch.as_tensor(np.stack(future_actions), device=device)  # (N, H, ...)
    for h in range(horizon):
        out = model.step(state, actions[:, h], sample=False)
        state = out.state
        predicted[h] = model.decode(state).cpu().numpy()
        uncertainty[h] = out.uncertainty.cpu().numpy()
    return {"predicted": predicted, "real": real, "repeat": repeat, "uncertainty": uncertainty}


def open_loop_errors(
    model: WorldModel, dataset: Dataset, horizon: int = 50, starts: int = 256, context: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Normalised MSE of open-loop predictions at each horizon, the repeat-last baseline, and uncertainty.

    :return: lists indexed by ``h - 1``: ``nmse``, ``repeat_last_nmse``, ``nmse_per_dim`` (H × D),
        ``uncertainty``, and ``count`` (starts that reach each horizon).
    """
    rollouts = open_loop_rollouts(model, dataset, horizon, starts, context, seed)
    predicted, real, repeat, uncertainty = (
        rollouts[key] for key in ("predicted", "real", "repeat", "uncertainty")
    )
    obs_dim = predicted.shape[-1]  # a state's dimensions, or a frame's channels
    if model.observes_pixels:
        sample = np.random.default_rng(seed).choice(len(dataset.frames), min(1024, len(dataset.frames)))
        variance = dataset.frames[sample].reshape(-1, obs_dim).astype(np.float64).var(0).clip(min=1e-8)
    else:
        variance = np.concatenate([dataset.observations, dataset.next_observations]).var(0).clip(min=1e-8)
    count = predicted.shape[1]
    reached = ~np.isnan(real.reshape(horizon, count, -1)[..., 0])  # (H, N)

    def per_dimension(values: np.ndarray) -> np.ndarray:  # (H, N, *obs) -> (H, N, D): pixels averaged
        return values.reshape(*values.shape[:2], -1, obs_dim).mean(2)

    squared = per_dimension((predicted - real) ** 2 / variance)
    repeat_squared = per_dimension((repeat[None] - real) ** 2 / variance)
    per_dim = np.array(
        [
            squared[h][reached[h]].mean(0) if reached[h].any() else np.full(obs_dim, np.nan)
            for h in range(horizon)
        ]
    )
    return {
        "nmse": [float(row.mean()) for row in per_dim],  # NaN where no start reaches that far
        "repeat_last_nmse": [
            float(repeat_squared[h][reached[h]].mean()) if reached[h].any() else float("nan")
            for h in range(horizon)
        ],
        "nmse_per_dim": per_dim.tolist(),
        "uncertainty": [
            float(uncertainty[h][reached[h]].mean()) if reached[h].any() else float("nan")
            for h in range(horizon)
        ],
        "count": reached.sum(1).tolist(),
    }


def visual_fidelity(
    model: WorldModel,
    dataset: Dataset,
    horizon: int = 50,
    starts: int = 8,
    context: int = 8,
    seed: int = 0,
    size: int = 64,
) -> dict[str, Any]:
    """PSNR and SSIM of imagined frames against real ones at each open-loop horizon.

    Both trajectories of :func:`open_loop_rollouts` are drawn by the task's own renderer (the real
    observations and the model's decoded ones) or, for a model that sees frames, are its decoded
    frames and the real ones; resized to ``size`` pixels square, and compared with scikit-image's
    metrics; averaged over the starts that reach each horizon.

    :raises ImaginariumError: a dataset without a suite task, or a task the renderer cannot draw.
    """
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from imaginarium.envs.render import StateRenderer

    renderer = None
    if not model.observes_pixels:
        if dataset.task is None:
            raise ImaginariumError("visual fidelity draws the suite's tasks; this dataset names no task")
        renderer = StateRenderer(dataset.task)
    rollouts = open_loop_rollouts(model, dataset, horizon, starts, context, seed)

    def frame(observation: np.ndarray) -> np.ndarray:
        drawn = observation.astype(np.uint8) if renderer is None else renderer.render(observation)
        return np.asarray(Image.fromarray(drawn).resize((size, size)))

    psnr, ssim = [], []
    try:
        for h in range(horizon):
            pairs = [
                (frame(real), frame(imagined))
                for real, imagined in zip(rollouts["real"][h], rollouts["predicted"][h], strict=True)
                if np.isfinite(real).all() and np.isfinite(imagined).all()
            ]
            # identical frames have infinite PSNR: capped at 100 dB, far above any real difference
            psnr.append(
                float(np.mean([min(peak_signal_noise_ratio(a, b, data_range=255), 100.0) for a, b in pairs]))
                if pairs
                else float("nan")
            )
            ssim.append(
                float(
                    np.mean([structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in pairs])
                )
                if pairs
                else float("nan")
            )
    finally:
        if renderer is not None:
            renderer.close()
    return {"psnr": psnr, "ssim": ssim, "size": size, "starts": int(rollouts["real"].shape[1])}


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); ``None`` when one class is absent."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    unique, first_index, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first_index + (counts + 1) / 2.0
    ranks[order] = np.repeat(average_rank, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def one_step_figures(
    model: WorldModel, dataset: Dataset, windows: int = 512, seed: int = 0
) -> dict[str, Any]:
    """Reward MSE and R², success and continue AUC and Brier score from teacher-forced one-step predictions."""
    predictions = {
        key: value.float().cpu().numpy()
        for key, value in teacher_forced_predictions(model, dataset, windows, seed).items()
    }
    reward, reward_hat = predictions["reward"], predictions["reward_prediction"]
    spread = np.sum((reward - reward.mean()) ** 2)
    figures: dict[str, Any] = {
        "reward_mse": float(np.mean((reward - reward_hat) ** 2)),
        # R² is undefined when every reward is the same (CartPole's constant +1): reported as None.
        "reward_r2": float(1.0 - np.sum((reward - reward_hat) ** 2) / spread) if spread > 1e-12 else None,
    }
    for name in ("success", "continue"):
        labels, probabilities = predictions[name], predictions[f"{name}_prob"]
        figures[f"{name}_auc"] = auc(probabilities, labels)
        figures[f"{name}_brier"] = float(np.mean((probabilities - labels) ** 2))
        figures[f"{name}_positive_rate"] = float(labels.mean())
    return figures


#: what :func:`evaluate_model` writes into its folder
FIDELITY_FILE = "fidelity.json"


def evaluate_model(
    model: WorldModel | str | Path,
    dataset: Dataset | str | Path,
    horizon: int = 50,
    starts: int = 256,
    context: int = 8,
    seed: int = 0,
    out: str | Path | None = None,
    visual: bool = False,
    overwrite: bool = False,
    precision: str = "float32",
) -> dict[str, Any]:
    """Measure fidelity on held-out episodes; write ``fidelity.json`` to ``out`` (its figure:
    :func:`imaginarium.report.write_fidelity_plot`).

    :param model: a model or a model folder (then ``out`` defaults to it, and its card gets the summary).
    :param dataset: the model's dataset (its held-out split is used) or another dataset of the same task.
    :param visual: also draw real and imagined trajectories and report PSNR and SSIM over the horizon
        (:func:`visual_fidelity`).
    :param overwrite: replace the figures of an earlier evaluation in ``out`` (else refused up front).
    :param precision: the number format the model imagines in (:meth:`WorldModel.set_precision`), to
        see what ``bfloat16`` costs; the card keeps the ``float32`` figures (planners read them).
    """
    for name, value in (("horizon", horizon), ("starts", starts), ("context", context)):
        if value < 1:
            raise ImaginariumError(f"{name} must be a positive integer, got {value}")
    model_dir = Path(model) if isinstance(model, str | Path) else None
    dataset = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if model_dir is not None:
        model = load_world_model(model_dir, task=dataset.task)
    for what, theirs, ours in (
        ("observation", dataset.observation_space, model.observation_space),
        ("action", dataset.action_space, model.action_space),
    ):
        if theirs.shape != ours.shape or type(theirs) is not type(ours):
            raise ModelError(f"the dataset's {what} space {theirs} does not fit the model's {ours}")
    out_dir = Path(out) if out is not None else model_dir
    if out_dir is not None:  # before the work, not after it
        check_output(out_dir, overwrite, files=(FIDELITY_FILE,))
    card = getattr(model, "card", None) or {}
    model.eval()
    held_out, which = held_out_episodes(model, dataset)
    before = model.precision
    model.set_precision(precision)
    try:
        errors = open_loop_errors(model, held_out, horizon, starts, context, seed)
        figures = one_step_figures(model, held_out, seed=seed)
    finally:
        model.set_precision(before)
    summary = {
        "precision": precision,
        "held_out": which,
        "episodes": held_out.num_episodes,
        **{f"nmse_at_{h}": errors["nmse"][h - 1] for h in (1, 5, 10, 25, 50) if h <= horizon},
        **{
            f"repeat_last_nmse_at_{h}": errors["repeat_last_nmse"][h - 1] for h in (1, 25, 50) if h <= horizon
        },
        "beats_repeat_last_at_every_horizon": bool(
            all(
                m < r
                for m, r in zip(errors["nmse"], errors["repeat_last_nmse"], strict=True)
                if np.isfinite(r)
            )
        ),
        **figures,
    }
    report = {"summary": summary, "horizon": horizon, "context": context, "open_loop": errors}
    if visual:
        report["visual"] = visual_fidelity(model, held_out, horizon, context=context, seed=seed)
        for h in (1, 10, 25, 50):
            if h <= horizon:
                summary[f"psnr_at_{h}"] = report["visual"]["psnr"][h - 1]
                summary[f"ssim_at_{h}"] = report["visual"]["ssim"][h - 1]
    if out_dir is not None:
        atomic_write_text(out_dir / FIDELITY_FILE, json.dumps(report, indent=2))
    if model_dir is not None and card and precision == "float32":
        write_card(model_dir, {**card, "fidelity": summary})
    return report
