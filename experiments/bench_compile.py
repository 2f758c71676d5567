"""torch.compile of the imagined step (issue #9): whether it pays, per family and batch size.

``model.step`` is called as the imagined env calls it (sampling, the env's seeded generator, the
ensemble with one elite per sample), eagerly and compiled by ``torch.compile`` (inductor), on fresh
Hopper-sized models: ensemble preset ``m`` (7 × 4×200) and rssm preset ``s``; and once more without
the generator (unseeded draws), which dynamo cannot trace. The two are timed in alternating rounds
and the medians compared, since these machines are noisy. Also reported: the seconds the first
compiled call takes, how many graphs and graph breaks dynamo makes of the step (and why it breaks),
and whether the compiled step predicts what the eager one does. Inductor's caches are kept out, so the
compile time is what a first run pays.

    python experiments/bench_compile.py [--sizes 1,1024] [--rounds 5] [--seconds 1]
    python experiments/bench_compile.py --smoke  # batch 1, one round, dynamo's eager backend (no C++ build)
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="imaginarium-inductor-"))

import torch  # noqa: E402
import torch._inductor.config as inductor_config  # noqa: E402
from common import calls_per_second, machine, parse_config, write_report

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.models import build_model


@dataclass(frozen=True)
class Config:
    sizes: str = "1,1024"
    rounds: int = 5
    seconds: float = 1.0
    #: ``torch.compile``'s backend: ``eager`` traces with dynamo and compiles nothing, in seconds
    backend: str = "inductor"
    #: random Hopper episodes the normalisers and start states come from
    episodes: int = 30
    out: str = "experiments/results/bench_compile.json"
    SMOKE: ClassVar[dict] = {"sizes": "1", "rounds": 1, "seconds": 0.05, "backend": "eager", "episodes": 3}


def measure(model, observations: torch.Tensor, size: int, seeded: bool, config: Config) -> dict:
    """Eager against compiled ``model.step`` at ``size`` samples, and what dynamo made of it."""
    state = model.initial_state(observations[torch.arange(size) % len(observations)])
    actions = torch.rand(size, *model.action_space.shape) * 2 - 1
    generator = torch.Generator().manual_seed(0) if seeded else None
    ensemble = model.family == "ensemble"

    def call(step) -> None:
        with torch.inference_mode():
            step(state, actions, sample=True, uncertainty=not ensemble, generator=generator)

    torch._dynamo.reset()
    with torch.inference_mode():
        explained = torch._dynamo.explain(model.step)(
            state, actions, sample=True, uncertainty=not ensemble, generator=generator
        )
    torch._dynamo.reset()
    inductor_config.fx_graph_cache = False  # compiled kernels of an earlier run would be reused
    compiled = torch.compile(model.step, backend=config.backend)
    started = time.perf_counter()
    call(compiled)
    compile_seconds = time.perf_counter() - started
    with torch.inference_mode():
        eager_mean = model.step(state, actions, sample=False).state
        compiled_mean = compiled(state, actions, sample=False).state
    same = all(torch.allclose(eager_mean[key], compiled_mean[key], atol=1e-5) for key in eager_mean)
    eager_rates, compiled_rates = [], []
    for _ in range(config.rounds):
        eager_rates.append(size * calls_per_second(lambda: call(model.step), config.seconds))
        compiled_rates.append(size * calls_per_second(lambda: call(compiled), config.seconds))
    eager, fast = statistics.median(eager_rates), statistics.median(compiled_rates)
    return {
        "family": model.family,
        "batch": size,
        "seeded": seeded,
        "eager_samples_per_s": eager,
        "compiled_samples_per_s": fast,
        "speedup": fast / eager,
        "eager_rounds": eager_rates,
        "compiled_rounds": compiled_rates,
        "compile_seconds": compile_seconds,
        "graphs": explained.graph_count,
        "graph_breaks": explained.graph_break_count,
        "break_reasons": sorted({str(reason.reason).splitlines()[0] for reason in explained.break_reasons}),
        "same_predictions": same,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as scratch:
        collect("hopper", Path(scratch) / "data", episodes=config.episodes, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    observations = torch.as_tensor(dataset.observations)
    rows = []
    for family, preset in (("ensemble", "m"), ("rssm", "s")):
        model = build_model(family, dataset.observation_space, dataset.action_space, preset)
        model.fit_normalizers(dataset)
        model.fit_outcomes(dataset)
        model.eval()
        for size, seeded in itertools.product((int(size) for size in config.sizes.split(",")), (True, False)):
            row = measure(model, observations, size, seeded, config)
            rows.append(row)
            print(
                f"{family:>8} batch {size:>5} {'seeded  ' if seeded else 'unseeded'}: eager {row['eager_samples_per_s']:>11,.0f}/s, compiled "
                f"{row['compiled_samples_per_s']:>11,.0f}/s ({row['speedup']:.2f}×), compiling "
                f"{row['compile_seconds']:.1f} s, {row['graphs']} graphs, {row['graph_breaks']} breaks, "
                f"same predictions: {row['same_predictions']}"
            )
    write_report(
        config.out, {"benchmark": "compile", "config": asdict(config), "machine": machine(), "figures": rows}
    )


if __name__ == "__main__":
    main()
