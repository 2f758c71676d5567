"""The planner on data that does not hold the expert: its real return beside agents trained in the same
model and the policy that logged the data, and its cost per decision.

For each task and dataset kind (:mod:`offline_datasets`), an ensemble is trained on the dataset; then
on the real task, with the same episodes and seeds:

- ``plan`` — the planning policy ``plan:MODEL`` at its default settings (plus ``--planner`` options),
  and ``plan_rule`` the same judging futures by the task's own termination and reward rules where
  they are known;
- ``sac_in_model`` / ``ppo_in_model`` — SB3 trained ``agent_steps`` imagined steps in the same model;
- ``sac_offline`` / ``dqn_offline`` — the same steps trained the way offline model-based RL trains
  (``--offline``): short rollouts branched from any recorded state, reward penalised by the model's
  uncertainty (MOPO), a share of every replay batch real (MBPO);
- ``behaviour`` — the medium agent that logged the data (``medium`` and ``medium-replay``);
- ``peers`` — the best d3rlpy algorithm on the same data, from ``peers_study.py``'s report if present;
- ``shield`` — on tasks that terminate, the medium agent with action noise alone and shielded by the
  model's planner: terminations, return and the share of actions replaced;

with returns normalised as D4RL does (0 random, 1 expert), and the planner's decisions per second for
one env and for 64 envs.

    python experiments/planner_study.py --tasks pendulum,cartpole --kinds medium
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from common import calls_per_second, default_config, machine, parse_config, results_dir, write_report
from offline_datasets import Config as DatasetConfig
from offline_datasets import dataset, folder, normalised
from ranking_study import Config as RankingConfig
from ranking_study import model_on

from imaginarium.agents.sb3 import train_in_imagination
from imaginarium.agents.shield import ShieldPolicy
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import EpisodeRollouts, real_rollouts
from imaginarium.models import load_world_model
from imaginarium.policy import load_policy
from imaginarium.rewards.reward_rules import task_rule
from imaginarium.rewards.termination import terminates, termination_rule


@dataclass(frozen=True)
class Config:
    tasks: str = "pendulum,cartpole,InvertedPendulum-v5"
    kinds: str = "medium,medium-replay"
    #: real episodes per agent
    episodes: int = 10
    #: world-model training steps (early stopping may end it sooner)
    model_steps: int = 20_000
    #: imagined steps of the SB3 agent trained in the model (0 skips it)
    agent_steps: int = 30_000
    #: the offline agent's settings: ``WAMImagined-v0`` options and ``real_ratio`` ("" skips it)
    offline: str = "starts=states,time_limit=10,uncertainty_penalty=1.0,real_ratio=0.05"
    #: planner options over its defaults, ``key=value,...`` (e.g. ``horizon=20,method=cem``)
    planner: str = ""
    #: options of the ``plan_prior`` variant over ``planner``'s, for continuous actions ("" skips it):
    #: candidates proposed by behaviour cloning on the data (MBOP's and TD-MPC2's policy prior)
    prior: str = "prior=data,prior_share=0.9"
    #: seconds each decision rate is timed for
    speed_seconds: float = 5.0
    #: action noise of the medium agent the shield guards (0 skips the shield), and the shield's options
    shield_noise: float = 0.5
    shield: str = "lookahead=10,risk=0.3"
    seed: int = 0
    out: str = "experiments/results/planner_study.json"
    SMOKE: ClassVar[dict] = {
        "tasks": "pendulum",
        "kinds": "medium",
        "episodes": 1,
        "model_steps": 20,
        "agent_steps": 64,
        "planner": "horizon=3,samples=16",
        "prior": "prior=data,prior_share=0.5,prior_steps=20",
        "offline": "starts=states,time_limit=3,uncertainty_penalty=1.0,real_ratio=0.5",
        "speed_seconds": 0.2,
        "shield": "lookahead=2,risk=0.3,horizon=2,samples=8",
    }


def study(task_name: str, kind: str, config: Config) -> dict[str, Any]:
    task = get_task(task_name)
    data = dataset(task_name, kind, _dataset_config())
    model = model_on(
        task_name,
        kind,
        replace(default_config(RankingConfig), model_steps=config.model_steps, seed=config.seed),
    )
    work = model.parent
    agents: dict[str, Any] = {}
    result: dict[str, Any] = {"dataset": str(data), "agents": agents}
    options = [config.planner] if config.planner else []
    specs = {"plan": _spec(model, options)}
    rules = []
    if terminates(task.env_id) and termination_rule(task.env_id) is not None:
        rules.append("termination=rule")
    if task_rule("reward", task.env_id, frames=False) is not None:
        rules.append("reward=rule")
    if rules:
        specs["plan_rule"] = _spec(model, [*options, *rules])
    if config.prior and isinstance(task.action_space, gym.spaces.Box):
        specs["plan_prior"] = _spec(model, [*options, config.prior])
    for name, spec in specs.items():
        planner = load_policy(spec, task.observation_space, task.action_space, seed=config.seed)
        started = time.perf_counter()
        outcome = real_rollouts(task, planner, config.episodes, seed=1000)
        agents[name] = _scored(task_name, outcome, time.perf_counter() - started)
        agents[name]["settings"] = asdict(planner.config)
        if name == "plan":
            starts = load_world_model(model).starts.inputs
            agents[name]["decisions_per_second"] = {
                str(count): _decision_rate(planner, starts, count, config.speed_seconds) for count in (1, 64)
            }
    if config.agent_steps > 0:
        algo = "ppo" if isinstance(task.action_space, gym.spaces.Discrete) else "sac"
        agent = work / f"{algo}.zip"
        if not agent.exists():
            train_in_imagination(model, algo, config.agent_steps, agent, seed=config.seed, overwrite=True)
        policy = load_policy(f"sb3:{agent}", task.observation_space, task.action_space)
        agents[f"{algo}_in_model"] = _scored(
            task_name, real_rollouts(task, policy, config.episodes, seed=1000), 0.0
        )
    if config.agent_steps > 0 and config.offline:
        algo = "dqn" if isinstance(task.action_space, gym.spaces.Discrete) else "sac"
        agents[f"{algo}_offline"] = _offline_agent(task_name, model, algo, work, config)
    medium = folder(task_name) / "medium_agent.json"
    if kind in ("medium", "medium-replay") and medium.exists():
        behaviour = json.loads(medium.read_text())
        result["behaviour"] = {"return": behaviour["return"], "normalised": behaviour["normalised"]}
    peers = _peers(task_name, kind)
    if peers:
        result["peers"] = peers
    if (
        config.shield_noise > 0
        and terminates(task.env_id)
        and (folder(task_name) / "medium_agent.zip").exists()
    ):
        result["shield"] = _shield(task_name, model, config, "termination=rule" in specs.get("plan_rule", ""))
    best_plan = max(agents[name]["mean"] for name in specs)
    trained = [agents[name]["mean"] for name in agents if name not in specs]
    result["plan_at_least_trained_agents"] = bool(not trained or best_plan >= max(trained))
    if peers:
        result["plan_at_least_best_peer"] = bool(best_plan >= peers["best_return"])
    print(f"{task.name} {kind}: {json.dumps({k: v for k, v in result.items() if k != 'dataset'})}")
    return result


def _offline_agent(task_name: str, model: Path, algo: str, work: Path, config: Config) -> dict[str, Any]:
    """An off-policy agent trained in the model on branched, penalised rollouts with real transitions
    mixed into its replay, scored on the real task."""
    task = get_task(task_name)
    options: dict[str, Any] = {}
    for item in filter(None, config.offline.split(",")):
        key, _, value = item.partition("=")
        options[key] = value if key == "starts" else float(value)
    real_ratio = float(options.pop("real_ratio", 0.0))
    if "time_limit" in options:
        options["time_limit"] = int(options["time_limit"])
    agent = work / f"{algo}_offline_{config.offline.replace(',', '_').replace('=', '')}.zip"
    if not agent.exists():
        train_in_imagination(
            model, algo, config.agent_steps, agent, seed=config.seed, env_options=options,
            real_ratio=real_ratio, overwrite=True,
        )  # fmt: skip
    policy = load_policy(f"sb3:{agent}", task.observation_space, task.action_space)
    scored = _scored(task_name, real_rollouts(task, policy, config.episodes, seed=1000), 0.0)
    return {**scored, "settings": {**options, "real_ratio": real_ratio}}


def _spec(model: Path, options: list[str]) -> str:
    return f"plan:{model}" + (f"@{','.join(options)}" if options else "")


def _peers(task_name: str, kind: str) -> dict[str, Any] | None:
    """The best d3rlpy algorithm's real return on the same data, from the newest of ``peers_study.py``'s
    reports that has it (``peers_study*.json``: a study run per task may write its own)."""
    reports = sorted(
        results_dir().glob("peers_study*.json"), key=lambda path: path.stat().st_mtime, reverse=True
    )
    for report in reports:
        entry = json.loads(report.read_text()).get("results", {}).get(f"{task_name}/{kind}")
        if entry and "best" in entry:
            best = entry["best"]
            return {"best": best["algorithm"], "best_return": best["return"]["mean"], "source": str(report)}
    return None


def _shield(task_name: str, model: Path, config: Config, rule: bool) -> dict[str, Any]:
    """A noisy policy's real terminations and return, alone and shielded by the model's planner."""
    task = get_task(task_name)
    noisy = f"sb3:{folder(task_name) / 'medium_agent.zip'}@noise={config.shield_noise}"
    options = "termination=rule," if rule else ""
    shielded = f"shield:{model}@{options}{config.shield}:{noisy}"
    figures: dict[str, Any] = {"noisy_spec": noisy, "shielded_spec": shielded}
    for name, spec in (("alone", noisy), ("shielded", shielded)):
        policy = load_policy(spec, task.observation_space, task.action_space, seed=config.seed)
        outcome = real_rollouts(task, policy, config.episodes, seed=2000)
        figures[name] = {
            "return": outcome.return_["mean"],
            "terminations": int(sum(outcome.terminated)),
            "mean_length": outcome.length,
        }
        if isinstance(policy, ShieldPolicy):
            figures[name]["intervention_share"] = policy.interventions / max(1, policy.decisions)
    alone, kept = figures["alone"], figures["shielded"]
    figures["terminations_halved"] = kept["terminations"] <= alone["terminations"] / 2
    figures["return_cost"] = (alone["return"] - kept["return"]) / max(abs(alone["return"]), 1e-9)
    return figures


def _scored(task_name: str, outcome: EpisodeRollouts, seconds: float) -> dict[str, Any]:
    estimate = outcome.return_
    return {
        **estimate,
        "normalised": normalised(task_name, estimate["mean"]),
        "per_episode": outcome.per_episode,
        "success": outcome.success,
        "length": outcome.length,
        "seconds": seconds,
    }


def _decision_rate(planner: Any, starts: np.ndarray, count: int, seconds: float) -> float:
    """Decisions a second for ``count`` envs at once, from real start states."""
    observations = starts[np.arange(count) % len(starts)].astype(np.float32)
    planner.reset(np.arange(count))
    return count * calls_per_second(lambda: planner.act(observations), seconds, warmup=1)


def _dataset_config() -> DatasetConfig:
    return default_config(DatasetConfig)


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "results": {}}
    for task in filter(None, config.tasks.split(",")):
        for kind in filter(None, config.kinds.split(",")):
            report["results"][f"{task}/{kind}"] = study(task, kind, config)
            write_report(config.out, report)  # each pair kept as it finishes
    results = report["results"].values()
    report["plan_at_least_trained_agents"] = (
        f"{sum(r['plan_at_least_trained_agents'] for r in results)}/{len(results)}"
    )
    write_report(config.out, report)
    print(
        f"planner >= trained-in-model agents on {report['plan_at_least_trained_agents']} (task, dataset) pairs"
    )


if __name__ == "__main__":
    main()
