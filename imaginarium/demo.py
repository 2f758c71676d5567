"""The end-to-end demo behind ``make demo``: each stage of the pipeline at small scale.

So far: collect a mixed-quality dataset on the default task and summarise it. Later stages (train a
world model, imagine, rank, report) join as they land.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset


def run_demo(out: Path, task: str = "pendulum", episodes: int = 100, seed: int = 0) -> dict:
    """Run the demo into ``out`` (replacing earlier demo output) and return the dataset summary."""
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]1. collect[/] {episodes} episodes of {task}")
    result = collect(task, out / "dataset", policy="random", episodes=episodes, seed=seed, overwrite=True)
    console.print(f"wrote {result.episodes} episodes ({result.steps} steps) to {result.path}")
    console.rule("[bold]dataset")
    summary = load_dataset(out / "dataset").summary()
    from imaginarium.cli import _print_summary

    _print_summary(summary)
    return summary
