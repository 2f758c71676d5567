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

from imaginarium.agents.sb3 import imagined_return, real_return, train_in_imagination
from imaginarium.dataset import load_dataset
from imaginarium.report import markdown_report, write_report
from imaginarium.run.console import interval, print_summary
from imaginarium.run.pipeline import collect_train_evaluate
from imaginarium.run.rank import rank_policies

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

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    stages = iter(range(1, 10))
    prepared = collect_train_evaluate(
        task, out / "dataset", out / "model", episodes=episodes, seed=seed, preset="xs",
        train_config={"steps": train_steps, "seed": seed}, fresh=True, progress=True,
        announce=lambda title: console.rule(f"[bold]{next(stages)}.[/] {title}"),
    )  # fmt: skip
    assert prepared.collected is not None and prepared.trained is not None and prepared.fidelity is not None
    collected, trained = prepared.collected, prepared.trained
    console.print(f"wrote {collected.episodes} episodes ({collected.steps} steps) to {collected.path}")
    console.print(f"trained for {trained.steps} steps in {trained.seconds:.0f} s; wrote {trained.directory}")
    dataset_summary = load_dataset(prepared.dataset).summary()
    print_summary(dataset_summary)
    print_summary(prepared.fidelity)
    console.print(f"plot: {prepared.model / 'fidelity.png'}")
    summary: dict[str, Any] = {"dataset": dataset_summary, "fidelity": prepared.fidelity}

    algo, default_steps, algo_kwargs = AGENTS.get(task, ("ppo", 50_000, {}))
    agent_steps = default_steps if agent_steps is None else agent_steps
    if agent_steps <= 0:
        return summary
    console.rule(
        f"[bold]{next(stages)}. imagine[/] train {algo.upper()} for {agent_steps} steps inside the model only"
    )
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
        console.print(f"  {label:<32} {interval(figures)}")
    summary["agent"] = {"algo": algo, "steps": agent_steps, "imagined_return": imagined, "real_return": real}

    console.rule(
        f"[bold]{next(stages)}. rank[/] candidate policies inside the model, checked on the real task"
    )

    candidates = ["random", f"sb3:{agent}"] + [f"sb3:{agent}@noise={noise}" for noise in (0.3, 1.0)]
    ranking = rank_policies(
        out / "model", candidates, starts=16, real_env=task, real_episodes=eval_episodes, seed=seed
    )
    paths = write_report(ranking, out / "report", model_dir=out / "model", videos=2, overwrite=True)
    console.print(markdown_report(ranking))
    console.print(f"report: {paths['html']}")
    summary["ranking"] = ranking.metrics
    return summary
