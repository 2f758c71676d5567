"""Success/continue head width against imagination speed (a question #9 left open).

The Hopper-sized ensemble's two learned Bernoulli heads (2 × 128 hidden units with LayerNorm) take
about a quarter of an imagined step at 1024 envs. For each task this trains the ensemble (preset
``m`` on hopper, ``s`` elsewhere) on the dataset of ``experiments/fidelity_study.py`` with each head
width, then reports the held-out success/continue AUC and Brier score beside the bare
``model.step`` rate at 1024 samples. Hopper has terminations but no success labels; cartpole has
both; reacher has success labels and no terminations. Tasks already in the report are kept. The
fidelity study's dataset is made if missing.

    python experiments/head_size_study.py [--tasks hopper,cartpole,reacher] [--widths 128,64] [--steps 3000]
    python experiments/head_size_study.py --smoke  # hopper (preset m) and pendulum (s), a few steps each
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from common import calls_per_second, default_config, machine, parse_config, write_report
from ranking_study import Config as StudyConfig
from ranking_study import dataset_for

from imaginarium.models import load_world_model
from imaginarium.models.evaluate import evaluate_model
from imaginarium.models.train import train_world_model


@dataclass(frozen=True)
class Config:
    tasks: str = "hopper,cartpole,reacher"
    widths: str = "128,64"
    steps: int = 3000
    data: str = "experiments/results/fidelity/{task}/data"
    #: the batch and seconds ``model.step`` is timed at
    batch: int = 1024
    seconds: float = 3.0
    workdir: str = "experiments/results/head_size"
    out: str = "experiments/results/head_size_study.json"
    #: both presets: hopper's ``m`` and pendulum's ``s``
    SMOKE: ClassVar[dict] = {
        "tasks": "hopper,pendulum",
        "widths": "64",
        "steps": 2,
        "batch": 8,
        "seconds": 0.05,
    }


def step_rate(model_dir: Path, batch: int = 1024, seconds: float = 3.0) -> float:
    model = load_world_model(model_dir).eval()
    generator = torch.Generator()
    with torch.inference_mode():
        state = model.initial_state(torch.randn(batch, model.obs_dim))
        model.action_space.seed(0)
        actions = torch.as_tensor(np.stack([model.action_space.sample() for _ in range(batch)]))
        return batch * calls_per_second(
            lambda: model.step(state, actions, uncertainty=False, generator=generator), seconds, 10
        )


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    out = Path(config.out)
    previous = json.loads(out.read_text()).get("tasks", {}) if out.exists() else {}
    tasks = {}
    for task in config.tasks.split(","):
        data, preset = Path(config.data.format(task=task)), "m" if task == "hopper" else "s"
        study = default_config(StudyConfig)
        if data == Path(study.workdir) / task / "data":  # the fidelity study's: made if missing
            dataset_for(task, study)
        rows = []
        for width in (int(value) for value in config.widths.split(",")):
            folder = Path(config.workdir) / task / f"{preset}_heads_{width}"
            train_world_model(
                data, folder, "ensemble", preset, model_overrides={"head_hidden": width},
                config={"steps": config.steps}, overwrite=True, progress=False,
            )  # fmt: skip
            summary = evaluate_model(folder, data, horizon=10)["summary"]
            keys = ("success_auc", "success_brier", "continue_auc", "continue_brier", "nmse_at_1")
            row = {"task": task, "preset": preset, "head_hidden": width}
            row.update({key: summary.get(key) for key in keys})
            row[f"bare_steps_per_s_at_{config.batch}"] = step_rate(folder, config.batch, config.seconds)
            rows.append(row)
            print(row)
        tasks[task] = rows
        merged = {**previous, **tasks}
        write_report(out, {"config": asdict(config), "machine": machine(), "tasks": merged})


if __name__ == "__main__":
    main()
