"""The end-to-end demo behind ``make demo``: each stage of the pipeline at small scale.

So far: collect experience on the default task, train a world model on it, and measure the model's
fidelity on held-out episodes. Later stages (imagine, rank, report) join as they land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset


def run_demo(
    out: Path, task: str = "pendulum", episodes: int = 100, seed: int = 0, train_steps: int = 1500
) -> dict[str, Any]:
    """Run the demo into ``out`` (replacing earlier demo output); returns the dataset and fidelity summaries."""
    from imaginarium.cli import _print_summary
    from imaginarium.models.evaluate import evaluate_model
    from imaginarium.models.train import train_world_model

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]1. collect[/] {episodes} episodes of {task}")
    result = collect(task, out / "dataset", policy="random", episodes=episodes, seed=seed, overwrite=True)
    console.print(f"wrote {result.episodes} episodes ({result.steps} steps) to {result.path}")
    dataset_summary = load_dataset(out / "dataset").summary()
    _print_summary(dataset_summary)

    console.rule("[bold]2. train[/] a world model (ensemble, preset xs)")
    trained = train_world_model(
        out / "dataset",
        out / "model",
        family="ensemble",
        preset="xs",
        config={"steps": train_steps, "seed": seed},
        overwrite=True,
    )
    console.print(f"trained for {trained.steps} steps in {trained.seconds:.0f} s; wrote {trained.directory}")

    console.rule("[bold]3. fidelity[/] on held-out episodes")
    fidelity = evaluate_model(out / "model", out / "dataset", horizon=50)["summary"]
    _print_summary(fidelity)
    console.print(f"plot: {out / 'model' / 'fidelity.png'}")
    return {"dataset": dataset_summary, "fidelity": fidelity}
