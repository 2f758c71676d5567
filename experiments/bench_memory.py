"""Memory over a long imagined run (issue #9): 10⁷ steps of ``WAMImagined-v0`` in one process.

The Hopper-sized ensemble (preset ``m``, one elite per sample) runs as the native vector env with
random actions; the process's resident memory is read every ``--every`` batched steps. After a
warm-up (the first 10% of the steps), peak growth must stay under 5%: no buffer, history or cache
may grow with the number of steps.

    python experiments/bench_memory.py [--steps 10000000] [--num-envs 1024]
    python experiments/bench_memory.py --smoke  # ten batched steps of 4 envs
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from common import machine, parse_config, write_report

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.envs.imagined import ImaginedVectorEnv
from imaginarium.models import build_model


@dataclass(frozen=True)
class Config:
    steps: int = 10_000_000
    num_envs: int = 1024
    every: int = 100
    warmup_fraction: float = 0.1
    #: random Hopper episodes the normalisers and start states come from
    episodes: int = 20
    out: str = "experiments/results/bench_memory.json"
    SMOKE: ClassVar[dict] = {"steps": 40, "num_envs": 4, "every": 1, "episodes": 3}


def resident_bytes() -> int:
    """The process's resident set size, from ``/proc/self/statm``."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as scratch:
        collect("hopper", Path(scratch) / "data", episodes=config.episodes, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    model = build_model("ensemble", dataset.observation_space, dataset.action_space, "m")
    model.fit_normalizers(dataset)
    model.fit_outcomes(dataset)
    envs = ImaginedVectorEnv(config.num_envs, model.eval(), dataset=dataset, track_uncertainty=False)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    batches = config.steps // config.num_envs
    warmup = int(batches * config.warmup_fraction)
    samples: list[tuple[int, float, int]] = []
    started = time.perf_counter()
    for batch in range(batches):
        envs.step(rng.uniform(-1, 1, (config.num_envs, 3)).astype(np.float32))
        if batch % config.every == 0 or batch == batches - 1:
            samples.append(((batch + 1) * config.num_envs, time.perf_counter() - started, resident_bytes()))
    seconds = time.perf_counter() - started
    after_warmup = [rss for steps, _, rss in samples if steps >= warmup * config.num_envs]
    base, peak = after_warmup[0], max(after_warmup)
    growth = (peak - base) / base
    print(
        f"{batches * config.num_envs:,} imagined steps in {seconds:.0f} s "
        f"({batches * config.num_envs / seconds:,.0f}/s); RSS after warm-up {base / 2**20:.0f} MiB, "
        f"peak {peak / 2**20:.0f} MiB: growth {100 * growth:.2f}%"
    )
    write_report(
        config.out,
        {
            "benchmark": "memory",
            "config": asdict(config),
            "machine": machine(),
            "torch_threads": torch.get_num_threads(),
            "steps": batches * config.num_envs,
            "seconds": seconds,
            "steps_per_s": batches * config.num_envs / seconds,
            "rss_after_warmup_bytes": base,
            "rss_peak_bytes": peak,
            "rss_growth_after_warmup": growth,
            "samples": [{"steps": s, "seconds": t, "rss_bytes": r} for s, t, r in samples],
            "threshold": {"growth_below": 0.05, "met": growth < 0.05},
        },
    )


if __name__ == "__main__":
    main()
