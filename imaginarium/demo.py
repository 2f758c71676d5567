"""The end-to-end demo behind ``make demo``: each stage of the pipeline at small scale.

So far: collect experience on the default task, train a world model on it, measure the model's
fidelity on held-out episodes, then train an SB3 agent only inside the model and score it both in the
model and on the real task, and finally rank a handful of candidate policies inside the model (Ray),
checked against real episodes, into ``demo/report`` (``report.html``, ``report.md``, ``ranking.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from imaginarium.collect import collect
from imaginarium.dataset import load_dataset

#: the agent the demo trains in imagination, per task: algorithm, agent steps, SB3 keyword arguments
AGENTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "pendulum": ("sac", 8_000, {"learning_rate": 1e-3, "gradient_steps": 4, "learning_starts": 1_000}),
    "cartpole": ("ppo", 50_000, {"n_steps": 256, "batch_size": 256}),
}


def run_demo(
    out: Path,
    task: str = "pendulum",
    episodes: int = 100,
    seed: int = 0,
    train_steps: int = 1500,
    agent_steps: int | None = None,
    eval_episodes: int = 10,
) -> dict[str, Any]:
    """Run the demo into ``out`` (replacing earlier demo output).

    :param agent_steps: imagined steps for the SB3 agent (default per task; 0 skips that stage).
    :returns: the dataset and fidelity summaries, and the agent's imagined and real returns.
    """
    from imaginarium.agents.sb3 import imagined_return, real_return, train_in_imagination
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
    fidelity = evaluate_model(out / "model", out / "dataset", horizon=50, overwrite=True)["summary"]
    _print_summary(fidelity)
    console.print(f"plot: {out / 'model' / 'fidelity.png'}")
    summary: dict[str, Any] = {"dataset": dataset_summary, "fidelity": fidelity}

    algo, default_steps, algo_kwargs = AGENTS.get(task, ("ppo", 50_000, {}))
    agent_steps = default_steps if agent_steps is None else agent_steps
    if agent_steps <= 0:
        return summary
    console.rule(f"[bold]4. imagine[/] train {algo.upper()} for {agent_steps} steps inside the model only")
    agent = train_in_imagination(
        out / "model",
        algo,
        agent_steps,
        out / "agent.zip",
        num_envs=4,
        seed=seed,
        algo_kwargs=algo_kwargs,
        progress=True,
        overwrite=True,
    )
    imagined = imagined_return(agent, out / "model", episodes=eval_episodes)
    real = real_return(agent, task, episodes=eval_episodes)
    console.print(f"wrote {agent}; {eval_episodes} episodes each, from the same seeds:")
    for label, figures in (("imagined return (in the model)", imagined), (f"real return (on {task})", real)):
        console.print(f"  {label:<32} {figures['mean']:9.1f} ± {figures['stderr']:.1f}")
    summary["agent"] = {"algo": algo, "steps": agent_steps, "imagined_return": imagined, "real_return": real}

    console.rule("[bold]5. rank[/] candidate policies inside the model, checked on the real task")
    from imaginarium.ranking import rank_policies
    from imaginarium.report import markdown_report, write_report

    candidates = ["random", f"sb3:{agent}"] + [f"sb3:{agent}@noise={noise}" for noise in (0.3, 1.0)]
    ranking = rank_policies(
        out / "model", candidates, starts=16, real_env=task, real_episodes=eval_episodes, seed=seed
    )
    paths = write_report(ranking, out / "report", model_dir=out / "model", videos=2, overwrite=True)
    console.print(markdown_report(ranking))
    console.print(f"report: {paths['html']}")
    summary["ranking"] = ranking["metrics"]
    return summary
