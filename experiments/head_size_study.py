"""Success/continue head width against imagination speed (a question #9 left open).

The Hopper-sized ensemble's two learned Bernoulli heads (2 × 128 hidden units with LayerNorm) take
about a quarter of an imagined step at 1024 envs. This trains the ensemble preset ``m`` on the hopper
dataset of ``experiments/fidelity_study.py`` with each head width, then reports the held-out
success/continue AUC and Brier score beside the bare ``model.step`` rate at 1024 samples.

    python experiments/head_size_study.py [--widths 128,64] [--steps 3000]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import calls_per_second, machine, parse_config, write_report

from imaginarium.models import load_world_model
from imaginarium.models.evaluate import evaluate_model
from imaginarium.models.train import train_world_model


@dataclass(frozen=True)
class Config:
    widths: str = "128,64"
    steps: int = 3000
    data: str = "experiments/results/fidelity/hopper/data"
    workdir: str = "experiments/results/head_size"
    out: str = "experiments/results/head_size_study.json"


def step_rate(model_dir: Path, batch: int = 1024, seconds: float = 3.0) -> float:
    model = load_world_model(model_dir).eval()
    generator = torch.Generator()
    with torch.inference_mode():
        state = model.initial_state(torch.randn(batch, model.obs_dim))
        actions = torch.rand(batch, model.action_dim) * 2 - 1
        return batch * calls_per_second(
            lambda: model.step(state, actions, uncertainty=False, generator=generator), seconds, 10
        )


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    rows = []
    for width in (int(value) for value in config.widths.split(",")):
        folder = Path(config.workdir) / f"m_heads_{width}"
        train_world_model(
            config.data, folder, "ensemble", "m", model_overrides={"head_hidden": width},
            config={"steps": config.steps}, overwrite=True, progress=False,
        )  # fmt: skip
        summary = evaluate_model(folder, config.data, horizon=10)["summary"]
        row = {
            "head_hidden": width,
            **{
                key: summary.get(key)
                for key in ("success_auc", "continue_auc", "continue_brier", "nmse_at_1")
            },
            "bare_steps_per_s_at_1024": step_rate(folder),
        }
        rows.append(row)
        print(row)
    write_report(config.out, {"config": asdict(config), "machine": machine(), "figures": rows})


if __name__ == "__main__":
    main()
