"""World-model training speed: transitions per second for each family and preset on this machine.

A transition counted once per window step it appears in (ensemble: members × batch × horizon;
rssm: batch × sequence length). Timed over full optimisation steps (forward, backward, AdamW) after a
warm-up, on a real Pendulum dataset.

    python experiments/bench_train.py [--steps 30] [--device cpu] [--out experiments/results/bench_train.json]
    python experiments/bench_train.py --smoke  # one step of each family's smallest preset
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from common import machine, parse_config, write_report

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.models import build_model
from imaginarium.samplers import SequenceSampler


@dataclass(frozen=True)
class Config:
    steps: int = 30
    warmup: int = 3
    device: str = "cpu"
    presets: str = "xs,s,m"
    dataset_steps: int = 20_000
    out: str = "experiments/results/bench_train.json"
    SMOKE: ClassVar[dict] = {"steps": 1, "warmup": 1, "presets": "xs", "dataset_steps": 400}


def optimisation_step(
    family: str, preset: str, dataset: Any, device: str
) -> tuple[Any, Callable[[], None], int]:
    """A fresh ``family`` model fitted to ``dataset``'s scales, one full optimisation step of it on a
    batch of the dataset's windows (forward, backward, AdamW), and the windows in a batch."""
    torch.manual_seed(0)
    model = build_model(family, dataset.observation_space, dataset.action_space, preset)
    model.fit_normalizers(dataset)
    model.fit_outcomes(dataset)
    model.to(device)
    sampler = SequenceSampler(
        dataset, model.config.batch_size, model.sequence_length, device, 0, model.within_episodes
    )
    windows = model.config.batch_size * model.draws_per_step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def one_step() -> None:
        loss, _ = model.loss(sampler.sample(windows))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return model, one_step, windows


def measure(family: str, preset: str, dataset, config: Config) -> dict:
    model, one_step, windows = optimisation_step(family, preset, dataset, config.device)
    for _ in range(config.warmup):
        one_step()
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(config.steps):
        one_step()
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / config.steps
    transitions = windows * model.sequence_length
    return {
        "family": family,
        "preset": preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "transitions_per_step": transitions,
        "seconds_per_step": seconds,
        "samples_per_s": transitions / seconds,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as scratch:
        collect("pendulum", Path(scratch) / "data", steps=config.dataset_steps, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    rows = []
    for family in ("ensemble", "rssm"):
        for preset in config.presets.split(","):
            row = measure(family, preset, dataset, config)
            rows.append(row)
            print(
                f"{family:>8} {preset:>2}: {row['parameters']:>9,} params  {row['seconds_per_step'] * 1e3:8.1f} ms/step  "
                f"{row['samples_per_s']:>10,.0f} samples/s"
            )
    report = {
        "benchmark": "train",
        "config": asdict(config),
        "machine": machine(),
        "figures": rows,
    }
    write_report(config.out, report)


if __name__ == "__main__":
    main()
