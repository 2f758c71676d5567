"""Imagined-env speed (issue #4): vector-env steps/s beside the bare batched model and real Hopper.

For each family (Hopper-sized: ensemble preset ``m`` = 7 members × 4 × 200, rssm preset ``s``),
``WAMImagined-v0``'s native vector env is stepped with random actions at several batch sizes, next
to a bare ``model.step`` call on the same batch, and to real MuJoCo Hopper-v5 with the same random
policy, all in one run. Speed does not depend on training, so the models are fresh (normalisers fitted).
The ensemble is measured with the uncertainty tracked (every elite runs on every sample) and without
(``track_uncertainty=False``: one elite per sample, what SB3 training in the model uses).

    python experiments/bench_imagined.py [--seconds 3] [--sizes 1,64,1024,4096]
    python experiments/bench_imagined.py --smoke  # a few steps at batches 1 and 4
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from common import calls_per_second, machine, parse_config, write_report

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.envs.imagined import ImaginedVectorEnv
from imaginarium.envs.suite import get_task
from imaginarium.models import build_model


@dataclass(frozen=True)
class Config:
    seconds: float = 3.0
    sizes: str = "1,64,1024,4096"
    device: str = "cpu"
    #: random Hopper episodes the normalisers and start states come from
    episodes: int = 30
    out: str = "experiments/results/bench_imagined.json"
    SMOKE: ClassVar[dict] = {"seconds": 0.05, "sizes": "1,4", "episodes": 3}


def real_hopper_steps_per_second(seconds: float) -> float:
    actions = np.random.default_rng(0).uniform(-1, 1, (100_000, 3)).astype(np.float32)
    return env_steps_per_second(get_task("hopper").make(), actions, seconds)


def env_steps_per_second(env: Any, actions: np.ndarray, seconds: float) -> float:
    """Steps a second of one Gymnasium ``env`` taking ``actions`` in turn, reset as episodes end."""
    env.reset(seed=0)
    index = [0]

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(actions[index[0] % len(actions)])
        index[0] += 1
        if terminated or truncated:
            env.reset()

    return calls_per_second(step, seconds)


def measure(model, dataset, size: int, tracked: bool, config: Config) -> dict:
    """Vector-env and bare ``model.step`` rates at ``size`` envs, with or without the uncertainty."""
    envs = ImaginedVectorEnv(
        size, model, dataset=dataset, device=config.device, termination="none", track_uncertainty=tracked
    )
    envs.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (size, 3)).astype(np.float32)
    env_rate = size * calls_per_second(lambda: envs.step(actions), config.seconds)
    state, action_tensor = envs._state, torch.as_tensor(actions, device=config.device)
    generator = torch.Generator(config.device)

    def bare() -> None:
        with torch.inference_mode():
            model.step(state, action_tensor, sample=True, uncertainty=tracked, generator=generator)

    bare_rate = size * calls_per_second(bare, config.seconds)
    return {
        "num_envs": size,
        "uncertainty": tracked,
        "env_steps_per_s": env_rate,
        "bare_model_steps_per_s": bare_rate,
        "env_over_bare": env_rate / bare_rate,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    sizes = [int(size) for size in config.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        collect("hopper", Path(scratch) / "data", episodes=config.episodes, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    real = real_hopper_steps_per_second(config.seconds)
    print(f"real Hopper-v5: {real:,.0f} steps/s")
    rows = []
    for family, preset in (("ensemble", "m"), ("rssm", "s")):
        model = build_model(family, dataset.observation_space, dataset.action_space, preset)
        model.fit_normalizers(dataset)
        model.fit_outcomes(dataset)
        model.to(config.device).eval()
        modes = (True, False) if family == "ensemble" else (True,)
        for size in sizes:
            for tracked in modes:
                row = measure(model, dataset, size, tracked, config)
                row.update(family=family, preset=preset, env_over_real_hopper=row["env_steps_per_s"] / real)
                rows.append(row)
                print(
                    f"{family:>8} n={size:>5} uncertainty {'on ' if tracked else 'off'}: "
                    f"env {row['env_steps_per_s']:>11,.0f}/s  bare {row['bare_model_steps_per_s']:>11,.0f}/s  "
                    f"env/bare {row['env_over_bare']:.2f}  env/real {row['env_over_real_hopper']:.1f}×"
                )
    write_report(
        config.out,
        {
            "benchmark": "imagined",
            "config": asdict(config),
            "machine": machine(),
            "real_hopper_steps_per_s": real,
            "figures": rows,
        },
    )


if __name__ == "__main__":
    main()
