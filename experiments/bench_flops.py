"""Imagination against the machine's matmul speed (issue #9): FLOP/s reached by a model's imagined step.

The FLOPs of one ``model.step`` at the batch size are counted by PyTorch's ``FlopCounterMode`` (every
matmul, by module, so the arithmetic is in the JSON), the step is timed, and the FLOP/s it reaches is
set beside the FLOP/s of a plain fp32 matmul measured in the same run. Asked: rssm preset ``s`` at
batch 1024 reaches ≥ 50% of the matmul's. The ensemble (preset ``m``, one elite per sample) is shown
beside it. Speed does not depend on training, so the models are fresh.

    python experiments/bench_flops.py [--batch 1024] [--seconds 3]
    python experiments/bench_flops.py --smoke  # a few calls at batch 8
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from common import calls_per_second, machine, parse_config, write_report
from torch.utils.flop_counter import FlopCounterMode

from imaginarium.envs.suite import get_task
from imaginarium.models import build_model


@dataclass(frozen=True)
class Config:
    batch: int = 1024
    seconds: float = 3.0
    matmul_size: int = 1024
    device: str = "cpu"
    out: str = "experiments/results/bench_flops.json"
    SMOKE: ClassVar[dict] = {"batch": 8, "seconds": 0.05, "matmul_size": 64}


def matmul_flops(size: int, seconds: float, device: str) -> float:
    """FLOP/s of a square fp32 matmul: the best of three runs (the machine is shared)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return max(2 * size**3 * calls_per_second(lambda: a @ b, seconds / 3, 5) for _ in range(3))


def step_flops(family: str, preset: str, config: Config) -> dict:
    """FLOPs of one imagined step at ``config.batch``, by module, and the FLOP/s the step reaches."""
    task = get_task("hopper")
    model = build_model(family, task.observation_space, task.action_space, preset).to(config.device).eval()
    uncertainty = family == "rssm"  # the rssm's uncertainty (prior entropy) costs no extra matmul
    generator = torch.Generator(config.device)
    with torch.inference_mode():
        state = model.initial_state(torch.randn(config.batch, task.observation_space.shape[0]))
        actions = torch.rand(config.batch, task.action_space.shape[0], device=config.device) * 2 - 1
        counter = FlopCounterMode(display=False)
        by_module = _count_by_child(model, counter)
        with counter:
            model.step(state, actions, uncertainty=uncertainty, generator=generator)
        flops = counter.get_total_flops()
        steps_per_s = calls_per_second(
            lambda: model.step(state, actions, uncertainty=uncertainty, generator=generator), config.seconds
        )
    by_module["(outside these layers: the ensemble's members, batched by hand)"] = flops - sum(
        by_module.values()
    )
    return {
        "family": family,
        "preset": preset,
        "batch": config.batch,
        "flops_per_step": int(flops),
        "flops_per_sample": flops / config.batch,
        "flops_by_module": by_module,
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s * config.batch,
        "flops_per_s": flops * steps_per_s,
    }


def _count_by_child(model: torch.nn.Module, counter: FlopCounterMode) -> dict[str, int]:
    """FLOPs of each outermost layer stack (``Sequential``, ``Linear``, ``GRUCell``), filled in while
    ``counter`` runs (hooks read its total before and after each call), so the JSON shows where the
    step's arithmetic goes."""
    by_module: dict[str, int] = {}
    hooked: list[str] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") for outer in hooked)
        if inside or not isinstance(module, torch.nn.Sequential | torch.nn.Linear | torch.nn.GRUCell):
            continue
        hooked.append(name)

        def before(module, inputs, name=name):
            by_module[f"_{name}"] = counter.get_total_flops()

        def after(module, inputs, output, name=name):
            by_module[name] = by_module.get(name, 0) + counter.get_total_flops() - by_module.pop(f"_{name}")

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)
    return by_module


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    peak = matmul_flops(config.matmul_size, config.seconds, config.device)
    print(f"fp32 matmul {config.matmul_size}²: {peak / 1e9:.1f} GFLOP/s")
    rows = []
    for family, preset in (("rssm", "s"), ("ensemble", "m")):
        row = step_flops(family, preset, config)
        row["share_of_matmul"] = row["flops_per_s"] / peak
        row["arithmetic"] = (
            f"{row['flops_per_step']:,} FLOP/step × {row['steps_per_s']:.1f} steps/s = "
            f"{row['flops_per_s'] / 1e9:.1f} GFLOP/s; ÷ matmul {peak / 1e9:.1f} GFLOP/s = {row['share_of_matmul']:.2f}"
        )
        rows.append(row)
        print(f"{family} {preset} @ {config.batch}: {row['arithmetic']}")
    rssm = rows[0]
    write_report(
        config.out,
        {
            "benchmark": "flops",
            "config": asdict(config),
            "machine": machine(),
            "matmul_flops_per_s": peak,
            "figures": rows,
            "threshold": {"rssm_share_of_matmul_at_least": 0.5, "met": rssm["share_of_matmul"] >= 0.5},
        },
    )


if __name__ == "__main__":
    main()
