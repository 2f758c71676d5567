"""Video pretraining study (issue #8): what observation-only episodes are worth when a few have actions.

On the same ``--episodes`` mixed-quality episodes of the task, three world models:

- ``labelled_only``: the ``--labelled`` share of episodes that kept their actions, alone;
- ``video_pretrained``: those, plus every other episode with its actions and rewards removed, whose
  actions an inverse-dynamics labeller learned from the labelled share infers (``--action-free label``);
- ``all_labelled``: every episode with its actions.

Each is scored by its open-loop prediction error at ``--horizon`` steps on held-out real episodes
collected separately (normalised MSE), and by how well its imagined returns rank a policy zoo
against the zoo's real returns (Spearman). Stages are cached under ``--workdir``.

Thresholds: ``video_pretrained`` better than ``labelled_only`` on both figures, and within 25% of
``all_labelled`` on both.

With ``--pixels 64`` (pendulum) the episodes are frames: the video-only ones keep their frames alone
(their states are unknown, as in an imported video), the labeller and the three rssm models learn
from frames, the prediction error is measured on frames, and the zoo is :mod:`frame_zoo`'s (the state
zoo's agents behind a frame reader), scored on the real env's own frames. ``--dataset`` takes an
existing dataset with frames as the episodes (the pixel study's), and ``--train-only NAME`` trains one
model and stops, so the models can train side by side in separate processes.

    python experiments/video_pretraining_study.py [--task pendulum] [--episodes 60] [--labelled 0.1]
    python experiments/video_pretraining_study.py --pixels 64 --dataset experiments/results/pixels/pendulum/data \
        --family rssm --model-steps 2000 --labeller-batch 64 --zoo graded \
        --workdir experiments/results/video_pretraining_pixels \
        --out experiments/results/video_pretraining_pixels.json
    python experiments/video_pretraining_study.py --smoke [--pixels 64 --family rssm]  # 6 episodes, 2 steps
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from common import is_trained, machine, parse_config, write_report
from fidelity_study import mixed_policy
from zoo import graded_zoo, zoo

from imaginarium.collect import collect
from imaginarium.dataset import Dataset, Episode, load_dataset, write_dataset
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import imagined_rollouts, real_rollouts, start_states
from imaginarium.metrics import ranking_metrics
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import read_card
from imaginarium.models.evaluate import open_loop_errors
from imaginarium.models.train import train_world_model
from imaginarium.policy import Policy, load_policy


@dataclass(frozen=True)
class Config:
    task: str = "pendulum"
    episodes: int = 60
    labelled: float = 0.1
    test_episodes: int = 10
    family: str = "ensemble"
    preset: str = "s"
    model_steps: int = 3_000
    horizon: int = 10
    starts: int = 64
    real_episodes: int = 10
    #: steps of each real and imagined episode the zoo is scored over (0: the task's time limit)
    episode_steps: int = 0
    seed: int = 0
    workdir: str = "experiments/results/video_pretraining"
    out: str = "experiments/results/video_pretraining_study.json"
    #: frame size (0: the episodes are states)
    pixels: int = 0
    cnn_depth: int = 16
    #: windows per training step of a model of frames
    pixel_batch: int = 16
    #: an existing dataset (with frames when ``pixels``) to take as the episodes instead of collecting
    dataset: str = ""
    #: windows per step of the inverse-dynamics labeller (frames cost 0.43 s a step at 256 on 2 CPUs)
    labeller_batch: int = 256
    labeller_steps: int = 3_000
    #: the policies ranked: ``checkpoints`` (the zoo's SB3 checkpoints and random) or ``graded`` (its
    #: best under a ladder of action noise, and random: returns spread evenly, no ties)
    zoo: str = "checkpoints"
    #: a further model scored beside the three (e.g. one trained longer), outside the verdict
    reference_model: str = ""
    #: train only this model (labelled_only, video_pretrained, all_labelled), then stop
    train_only: str = ""
    #: three labelled episodes (two to train on: a batch's worth of windows) and three videos; the graded
    #: zoo (the checkpoint zoo is the ranking study's)
    SMOKE: ClassVar[dict] = {
        "episodes": 6,
        "labelled": 0.5,
        "test_episodes": 1,
        "preset": "xs",
        "model_steps": 2,
        "horizon": 2,
        "starts": 2,
        "real_episodes": 1,
        "episode_steps": 20,
        "cnn_depth": 4,
        "pixel_batch": 2,
        "labeller_batch": 8,
        "labeller_steps": 2,
        "zoo": "graded",
    }


def _datasets(config: Config, folder: Path) -> dict[str, Path]:
    """The collected episodes, and the three variants of them (written once)."""
    full, test = Path(config.dataset) if config.dataset else folder / "all_labelled", folder / "test"
    pixels = config.pixels or None
    if config.dataset and not (full / "data" / "metadata.json").exists():
        raise SystemExit(f"--dataset {full} holds no dataset (the pixel study's is made by pixel_study.py)")
    if not (full / "data" / "metadata.json").exists():
        policy = mixed_policy(config.task)
        collect(config.task, full, policy, config.episodes, seed=config.seed, overwrite=True, pixels=pixels)
    if not (test / "data" / "metadata.json").exists():
        policy = mixed_policy(config.task)
        seed = config.seed + 10_000
        collect(config.task, test, policy, config.test_episodes, seed=seed, overwrite=True, pixels=pixels)
    dataset = load_dataset(full)
    count = max(2, round(config.labelled * dataset.num_episodes))
    keep = set(np.random.default_rng(config.seed).choice(dataset.num_episodes, count, replace=False).tolist())
    paths = {"all_labelled": full, "test": test}
    for name in ("labelled_only", "video_pretrained"):
        paths[name] = folder / name
        if not (paths[name] / "data" / "metadata.json").exists():
            write_dataset(paths[name], _variant(dataset, keep, name), dataset.task, overwrite=True)
    return paths


def _variant(dataset: Dataset, keep: set[int], name: str):
    for index in range(dataset.num_episodes):
        episode = dataset.episode(index)
        if index in keep:
            yield episode
        elif name == "video_pretrained" and episode.images is not None:  # a video: frames alone
            unknown = np.full_like(episode.observations, np.nan)
            yield Episode.observations_only(unknown, dataset.action_space, images=episode.images)
        elif name == "video_pretrained":
            yield Episode.observations_only(episode.observations, dataset.action_space)


def _zoo(config: Config) -> list[tuple[str, Policy]]:
    """The policies to rank (``--zoo``), acting on states or, through a frame reader, on frames."""
    if config.zoo not in ("checkpoints", "graded"):
        raise SystemExit(f"--zoo must be checkpoints or graded, got {config.zoo!r}")
    if config.zoo == "graded":
        specs = graded_zoo(config.task, config.seed)
    else:
        specs = [f"sb3:{path}" for path in zoo(config.task, config.seed)] + ["random"]
    if config.pixels:
        from frame_zoo import frame_policies

        return frame_policies(specs, config.seed)
    task = get_task(config.task)
    return [(spec, load_policy(spec, *task.spaces, seed=config.seed)) for spec in specs]


def _real_values(config: Config, policies: list[tuple[str, Policy]]) -> list[float]:
    task = get_task(config.task)
    return [
        real_rollouts(
            task, policy, config.real_episodes, seed=10_000, max_episode_steps=config.episode_steps or None
        ).return_["mean"]
        for _, policy in policies
    ]


def _score(
    model_dir: Path, test: Dataset, policies: list[tuple[str, Policy]], real: list[float], config: Config
) -> dict:
    """The model's open-loop error on ``test`` and how its imagined returns rank against ``real``."""
    model = load_world_model(model_dir)
    errors = open_loop_errors(model, test, config.horizon, starts=256, seed=config.seed)
    task = get_task(config.task)
    starts = start_states(model.inputs(test, test.episode_starts[:-1]), config.starts, config.seed)
    steps = config.episode_steps or task.max_episode_steps
    imagined = [
        imagined_rollouts(model, policy, starts, steps, seed=config.seed).return_["mean"]
        for _, policy in policies
    ]
    return {
        f"nmse_at_{config.horizon}": errors["nmse"][config.horizon - 1],
        "ranking": ranking_metrics(imagined, real),
        "imagined_returns": imagined,
    }


def _train(path: Path, model_dir: Path, config: Config) -> None:
    overrides = {}
    if config.pixels:
        overrides = {
            "image_size": config.pixels,
            "cnn_depth": config.cnn_depth,
            "batch_size": config.pixel_batch,
        }
    train_world_model(
        path,
        model_dir,
        config.family,
        config.preset,
        overrides,
        config={"steps": config.model_steps, "seed": config.seed},
        overwrite=True,
        action_free="label",
        labeller={"batch_size": config.labeller_batch, "steps": config.labeller_steps, "seed": config.seed},
    )


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    folder = Path(config.workdir) / config.task
    paths = _datasets(config, folder)
    names = ("labelled_only", "video_pretrained", "all_labelled")
    if config.train_only:
        if config.train_only not in names:
            raise SystemExit(f"--train-only must be one of {', '.join(names)}, got {config.train_only!r}")
        model_dir = folder / f"model_{config.train_only}"
        if not is_trained(model_dir):
            _train(paths[config.train_only], model_dir, config)
        return
    policies = _zoo(config)
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "models": {}}
    report["policies"] = [name for name, _ in policies]
    report["real_returns"] = _real_values(config, policies)
    test = load_dataset(paths["test"])
    for name in names:
        model_dir = folder / f"model_{name}"
        started = time.perf_counter()
        if not is_trained(model_dir):
            _train(paths[name], model_dir, config)
        card = read_card(model_dir)
        figures = _score(model_dir, test, policies, report["real_returns"], config)
        report["models"][name] = {
            "episodes": card["dataset"]["episodes"],
            "labeller": (card.get("action_free") or {}).get("labeller"),
            "train_seconds": card["training"].get("seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            **figures,
        }
        print(
            f"{name}: {card['dataset']['episodes']} episodes, nmse@{config.horizon} "
            f"{figures[f'nmse_at_{config.horizon}']:.4f}, spearman {figures['ranking']['spearman']:.3f}"
        )
        write_report(config.out, report)
    if config.reference_model:
        figures = _score(Path(config.reference_model), test, policies, report["real_returns"], config)
        card = read_card(config.reference_model)
        report["reference"] = {
            "model": config.reference_model,
            "steps": card["training"]["steps_done"],
            **figures,
        }
        print(
            f"reference: nmse@{config.horizon} {figures[f'nmse_at_{config.horizon}']:.4f}, "
            f"spearman {figures['ranking']['spearman']:.3f}"
        )
    report["verdict"] = _verdict(report["models"], config.horizon)
    write_report(config.out, report)
    print(report["verdict"])


def _verdict(models: dict[str, dict], horizon: int) -> dict[str, bool]:
    """The thresholds: video beats labelled-only and is within 25% of all-labelled, on both figures."""
    error = {name: figures[f"nmse_at_{horizon}"] for name, figures in models.items()}
    spearman = {name: figures["ranking"]["spearman"] for name, figures in models.items()}
    return {
        "error_better_than_labelled_only": error["video_pretrained"] < error["labelled_only"],
        "spearman_better_than_labelled_only": spearman["video_pretrained"] > spearman["labelled_only"],
        "error_within_25_percent_of_all_labelled": error["video_pretrained"] <= 1.25 * error["all_labelled"],
        "spearman_within_25_percent_of_all_labelled": spearman["video_pretrained"]
        >= spearman["all_labelled"] - 0.25 * abs(spearman["all_labelled"]),
    }


if __name__ == "__main__":
    main()
