"""Dreamer study (issue #5): the actor-critic learned in imagination, scored on the real task.

Offline: from the 50k-step mixed datasets and ensemble models of ``experiments/fidelity_study.py``
(made if missing), ``imaginarium dream`` learns from the model alone; the actor then runs 20 real
episodes. Online: ``dream --task pendulum --online`` from scratch, with its learning curve (real steps
against real return) written beside the agent as ``curve.json`` and ``curve.png``.

Thresholds: offline real mean return ≥ 475 on cartpole and ≥ −200 on pendulum; online pendulum
≥ −200 within 20k real steps.

    python experiments/dreamer_study.py [--offline cartpole,pendulum] [--online pendulum]
        [--updates cartpole=3000,pendulum=800]
    python experiments/dreamer_study.py --smoke  # pendulum: 2 updates offline, 2 short rounds online
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import default_config, machine, parse_config, smoke, write_report
from ranking_study import Config as StudyConfig
from ranking_study import model_for

from imaginarium.agents.dreamer import DreamerPolicy, train_dreamer
from imaginarium.envs.suite import get_task
from imaginarium.evaluation import real_rollouts
from imaginarium.run.online import dream_online

THRESHOLDS = {"cartpole": 475.0, "pendulum": -200.0}
#: the online loop of a smoke run: two rounds (the second after exploring), each as short as it gets
#: (the first dataset needs three episodes: one to validate on, two to fill a batch of windows)
ONLINE_SMOKE = {
    "initial_steps": 600,
    "round_steps": 200,
    "model_preset": "xs",
    "model_steps": 2,
    "updates_per_round": 2,
    "eval_episodes": 1,
}


@dataclass(frozen=True)
class Config:
    offline: str = "cartpole,pendulum"
    online: str = "pendulum"
    updates: str = "cartpole=3000,pendulum=800"
    episodes: int = 20
    online_real_steps: int = 20_000
    workdir: str = "experiments/results/dreamer"
    out: str = "experiments/results/dreamer_study.json"
    SMOKE: ClassVar[dict] = {
        "offline": "pendulum",
        "updates": "pendulum=2",
        "episodes": 1,
        "online_real_steps": 800,
    }


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {"config": asdict(config), "machine": machine(), "offline": {}, "online": {}}
    for task in filter(None, config.offline.split(",")):
        model = model_for(task, default_config(StudyConfig))
        agent = Path(config.workdir) / f"{task}_offline"
        updates = dict(item.split("=") for item in config.updates.split(","))
        summary = train_dreamer(model, agent, {"steps": int(updates[task])}, overwrite=True)
        real = real_rollouts(get_task(task), DreamerPolicy(agent), config.episodes, seed=10_000)
        entry = {
            "updates": summary.updates,
            "seconds": summary.seconds,
            "imagined_return": summary.last.get("imagined_return"),
            "real_return": real.return_,
            "threshold": THRESHOLDS[task],
            "met": real.return_["mean"] >= THRESHOLDS[task],
        }
        report["offline"][task] = entry
        print(f"offline {task}: real return {real.return_['mean']:.1f} after {summary.updates} updates "
              f"({summary.seconds:.0f} s); threshold {THRESHOLDS[task]} met: {entry['met']}")  # fmt: skip
        write_report(config.out, report)
    for task in filter(None, config.online.split(",")):
        agent = Path(config.workdir) / f"{task}_online"
        online = {"real_steps": config.online_real_steps, **(ONLINE_SMOKE if smoke() else {})}
        result = dream_online(task, agent, online, overwrite=True)
        reached = [point["real_steps"] for point in result.curve if point["mean"] >= THRESHOLDS[task]]
        report["online"][task] = {
            "curve": result.curve,
            "seconds": result.seconds,
            "first_real_steps_at_threshold": reached[0] if reached else None,
            "threshold": THRESHOLDS[task],
            "met": bool(reached),
            "curve_png": str(agent / "curve.png"),
        }
        print(f"online {task}: threshold reached at {reached[0] if reached else 'never'} real steps")
        write_report(config.out, report)


if __name__ == "__main__":
    main()
