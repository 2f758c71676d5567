"""Pixel study (issue #8): an agent trained only in a world model learned from 64×64 frames, against
one trained in the same family learned from states, both scored on the real task.

For each task: collect one mixed-quality dataset with the rendered frame beside every state, train
the rssm twice on it (``--pixels``: from the frames alone; and from the states), learn a Dreamer
actor-critic inside each model, and run each actor for ``--episodes`` real episodes (the pixel agent
sees the real env's own rendered frames, filtered through its model). Stages are cached under
``--workdir``, so a rerun only does what is missing (a larger ``--model-steps`` resumes the cached
models' training); the JSON is written after every task.

Threshold: the pixel agent's real mean return within 20% of the state agent's. A random policy's
real return is reported beside them, since the comparison means something only where the state
agent beats it.

    python experiments/pixel_study.py [--tasks pendulum,reacher] [--model-steps 1500] [--pixel-model-steps 6000]
    python experiments/pixel_study.py --smoke  # pendulum: 2 steps of each model and agent, 1 episode
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import is_trained, machine, parse_config, write_report
from fidelity_study import mixed_policy

from imaginarium.agents.dreamer import DreamerPolicy, train_dreamer
from imaginarium.collect import collect
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.models.checkpoint import read_card
from imaginarium.models.train import train_world_model
from imaginarium.policy import load_policy


@dataclass(frozen=True)
class Config:
    tasks: str = "pendulum,reacher"
    dataset_steps: int = 20_000
    #: env copies collecting side by side (each ends its episode, so at least this many episodes)
    num_envs: int = 8
    pixels: int = 64
    preset: str = "s"
    cnn_depth: int = 16
    #: windows per step of the pixel model (the state model keeps its preset's)
    pixel_batch: int = 16
    model_steps: int = 1_500
    #: training steps of the pixel model (0: ``model_steps``); on pendulum 1,500 left its agent at
    #: -1417 and 6,000 brought it within 2% of the state agent
    pixel_model_steps: int = 6_000
    dreamer_updates: int = 800
    episodes: int = 20
    seed: int = 0
    workdir: str = "experiments/results/pixels"
    out: str = "experiments/results/pixel_study.json"
    SMOKE: ClassVar[dict] = {
        "tasks": "pendulum",
        "dataset_steps": 400,
        "num_envs": 3,
        "preset": "xs",
        "cnn_depth": 4,
        "pixel_batch": 2,
        "model_steps": 2,
        "pixel_model_steps": 2,
        "dreamer_updates": 2,
        "episodes": 1,
    }


def study_task(task: str, config: Config, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task's figures; ``previous`` (this task's last figures) spares an agent whose model is
    unchanged from being trained and scored again."""
    folder = Path(config.workdir) / task
    data = folder / "data"
    if not (data / "data" / "metadata.json").exists():
        collect(
            task,
            data,
            policy=mixed_policy(task),
            steps=config.dataset_steps,
            seed=config.seed,
            num_envs=config.num_envs,
            pixels=config.pixels,
            overwrite=True,
        )
    overrides = {
        "state": {},
        "pixels": {
            "image_size": config.pixels,
            "cnn_depth": config.cnn_depth,
            "batch_size": config.pixel_batch,
        },
    }
    result: dict[str, Any] = {}
    for kind, model_overrides in overrides.items():
        model = folder / f"rssm_{kind}"
        started = time.perf_counter()
        steps = (
            config.pixel_model_steps if kind == "pixels" and config.pixel_model_steps else config.model_steps
        )
        done = read_card(model)["training"]["steps_done"] if is_trained(model) else 0
        earlier = (previous or {}).get(kind) or {}
        if (
            done >= steps
            and earlier.get("model_steps") == done
            and earlier.get("dreamer_updates") == config.dreamer_updates
        ):
            result[kind] = earlier
            print(
                f"{task} {kind}: model and agent unchanged, real return {earlier['real_return']['mean']:.1f}"
            )
            continue
        if done < steps:  # a model trained for fewer steps goes on from where it stopped
            train_world_model(
                data,
                model,
                "rssm",
                config.preset,
                model_overrides,
                {"steps": steps, "seed": config.seed},
                overwrite=not done,
                resume=bool(done),
            )
        model_seconds = time.perf_counter() - started
        agent = folder / f"dreamer_{kind}"
        started = time.perf_counter()
        summary = train_dreamer(
            model, agent, {"steps": config.dreamer_updates, "seed": config.seed}, overwrite=True
        )
        real = real_rollouts(get_task(task), DreamerPolicy(agent), config.episodes, seed=10_000)
        result[kind] = {
            "settings": {"model_steps": steps, "dreamer_updates": config.dreamer_updates},
            "model_steps": read_card(model)["training"]["steps_done"],
            "model_seconds": round(model_seconds, 1),
            "best_validation_loss": read_card(model)["training"]["best_validation_loss"],
            "dreamer_updates": summary.updates,
            "dreamer_seconds": round(time.perf_counter() - started, 1),
            "imagined_return": summary.last["imagined_return"],
            "real_return": real.return_,
            "real_success": real.success,
        }
        print(f"{task} {kind}: real return {real.return_['mean']:.1f}")
    real_task = get_task(task)
    random = load_policy("random", *real_task.spaces, seed=config.seed)
    result["random_return"] = real_rollouts(real_task, random, config.episodes, seed=10_000).return_
    state, pixels = result["state"]["real_return"]["mean"], result["pixels"]["real_return"]["mean"]
    # "within 20%" means something only where the state agent learned: it must beat acting at random
    result["state_beats_random"] = state > result["random_return"]["ci_high"]
    result["gap"] = abs(pixels - state) / abs(state)
    result["within_20_percent"] = result["gap"] <= 0.2
    return result


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "tasks": {}}
    if Path(config.out).exists():  # tasks run one at a time (each with its own settings) add up
        report["tasks"] = json.loads(Path(config.out).read_text()).get("tasks", {})
    for task in filter(None, config.tasks.split(",")):
        report["tasks"][task] = study_task(task, config, report["tasks"].get(task))
        write_report(config.out, report)
    for task, figures in report["tasks"].items():
        print(
            f"{task}: state {figures['state']['real_return']['mean']:.1f}, pixels "
            f"{figures['pixels']['real_return']['mean']:.1f}, random {figures['random_return']['mean']:.1f}, "
            f"gap {figures['gap']:.0%} "
            f"({'within' if figures['within_20_percent'] else 'not within'} 20%)"
        )


if __name__ == "__main__":
    main()
