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

    python experiments/video_pretraining_study.py [--task pendulum] [--episodes 60] [--labelled 0.1]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import is_trained, machine, parse_config, write_report
from fidelity_study import mixed_policy
from zoo import zoo

from imaginarium.collect import collect
from imaginarium.dataset import Dataset, Episode, load_dataset, write_dataset
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import imagined_rollouts, real_rollouts, start_states
from imaginarium.metrics import ranking_metrics
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import read_card
from imaginarium.models.evaluate import open_loop_errors
from imaginarium.models.train import train_world_model
from imaginarium.policy import parse_policy


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
    seed: int = 0
    workdir: str = "experiments/results/video_pretraining"
    out: str = "experiments/results/video_pretraining_study.json"


def _datasets(config: Config, folder: Path) -> dict[str, Path]:
    """The collected episodes, and the three variants of them (written once)."""
    full, test = folder / "all_labelled", folder / "test"
    if not (full / "data" / "metadata.json").exists():
        collect(
            config.task, full, mixed_policy(config.task), config.episodes, seed=config.seed, overwrite=True
        )
    if not (test / "data" / "metadata.json").exists():
        policy = mixed_policy(config.task)
        collect(config.task, test, policy, config.test_episodes, seed=config.seed + 10_000, overwrite=True)
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
        elif name == "video_pretrained":
            yield Episode.observations_only(episode.observations, dataset.action_space)


def _real_values(config: Config, policies: list[str]) -> list[float]:
    task = get_task(config.task)
    values = []
    for spec in policies:
        policy = parse_policy(spec, *task.spaces, seed=config.seed)
        values.append(real_rollouts(task, policy, config.real_episodes, seed=10_000)["return"]["mean"])
    return values


def _score(model_dir: Path, test: Dataset, policies: list[str], real: list[float], config: Config) -> dict:
    model = load_world_model(model_dir)
    errors = open_loop_errors(model, test, config.horizon, starts=256, seed=config.seed)
    task = get_task(config.task)
    starts = start_states(test.observations[test.episode_starts[:-1]], config.starts, config.seed)
    imagined = []
    for spec in policies:
        policy = parse_policy(spec, *task.spaces, seed=config.seed)
        outcome = imagined_rollouts(model, policy, starts, task.max_episode_steps, seed=config.seed)
        imagined.append(outcome["return"]["mean"])
    return {
        f"nmse_at_{config.horizon}": errors["nmse"][config.horizon - 1],
        "ranking": ranking_metrics(imagined, real),
        "imagined_returns": imagined,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    folder = Path(config.workdir) / config.task
    paths = _datasets(config, folder)
    policies = [str(path) for path in zoo(config.task, config.seed)] + ["random"]
    policies = [spec if spec == "random" else f"sb3:{spec}" for spec in policies]
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "models": {}}
    report["policies"] = policies
    report["real_returns"] = _real_values(config, policies)
    test = load_dataset(paths["test"])
    for name in ("labelled_only", "video_pretrained", "all_labelled"):
        model_dir = folder / f"model_{name}"
        started = time.perf_counter()
        if not is_trained(model_dir):
            train_world_model(
                paths[name],
                model_dir,
                config.family,
                config.preset,
                config={"steps": config.model_steps, "seed": config.seed},
                overwrite=True,
                action_free="label",
            )
        card = read_card(model_dir)
        report["models"][name] = {
            "episodes": card["dataset"]["episodes"],
            "labeller": (card.get("action_free") or {}).get("labeller"),
            "train_seconds": round(time.perf_counter() - started, 1),
            **_score(model_dir, test, policies, report["real_returns"], config),
        }
        figures = report["models"][name]
        print(
            f"{name}: {figures['episodes']} episodes, nmse@{config.horizon} "
            f"{figures[f'nmse_at_{config.horizon}']:.4f}, spearman {figures['ranking']['spearman']:.3f}"
        )
        write_report(config.out, report)
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
