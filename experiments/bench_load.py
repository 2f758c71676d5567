"""Speed on a busy machine (issue #26): each workload timed alone and with a CPU-bound process busy on
every core, as the package runs it when the user has chosen no threads and under other thread settings.

Workloads, each in a fresh process (OpenMP reads its settings when torch loads):

- ``train`` — world-model optimisation steps (ensemble preset ``s``, Pendulum data);
- ``imagined`` — steps of a ``WAMImagined-v0`` vector env of 16 envs, zero actions;
- ``sb3`` — SAC trained in that model on one env (SB3's usual way), with the demo's SAC settings
  (imagined steps a second, its first updates included);
- ``demo`` — ``imaginarium demo`` end to end (off unless named: it takes minutes).

Settings: ``package``, as the package runs when the user has set nothing (today: torch's defaults,
libgomp's threads spinning a while before they sleep); ``passive`` (``OMP_WAIT_POLICY=PASSIVE``: idle
threads sleep at once); ``spin`` (``GOMP_SPINCOUNT=20000``: a short spin); ``one``
(``OMP_NUM_THREADS=1``). The load is one ``while True: pass`` process per core this process may run
on, started before and killed after each loaded run. A figure is the median of ``repeats`` runs; the
ratio is idle speed over loaded speed (2.0: twice as slow under load). A report already at ``--out``
keeps its other figures, so workloads measured one at a time add up in one file.

    python experiments/bench_load.py [--workloads train,imagined,sb3,demo] [--repeats 3]
    python experiments/bench_load.py --smoke  # tiny workloads, one run each
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from common import calls_per_second, machine, parse_config, smoke, write_report

ROOT = Path(__file__).resolve().parent.parent
#: what each setting's workload process runs after ``import imaginarium`` and before torch loads
#: (``package``: nothing, the package's own choice, today torch's defaults)
SETTINGS: dict[str, str] = {
    "package": "",
    # idle OpenMP threads sleep at once instead of spinning for a while first
    "passive": "import os; os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'; ",
    # OpenMP's default wait with a short spin before sleeping (libgomp's default spins 300,000 times)
    "spin": "import os; os.environ['GOMP_SPINCOUNT'] = '20000'; ",
    # one thread: nothing to wait for
    "one": "import os; os.environ['OMP_NUM_THREADS'] = '1'; ",
}
#: variables that would choose threads for the workloads: removed, so the measured choice is the package's
CHOSEN = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class Config:
    workloads: str = "train,imagined,sb3"
    settings: str = "package,passive,one"
    repeats: int = 3
    #: seconds each timed loop runs for (``train``, ``imagined``), and imagined steps of ``sb3``
    seconds: float = 5.0
    sb3_steps: int = 300
    #: the issue's bounds: loaded over idle time, at most
    bound: float = 2.5
    demo_bound: float = 2.0
    out: str = "experiments/results/bench_load.json"
    SMOKE: ClassVar[dict] = {"settings": "package", "repeats": 1, "seconds": 0.3, "sb3_steps": 16}


def prepare(folder: Path, smoke: bool) -> Path:
    """A small Pendulum dataset and a model trained on it, which the workloads read."""
    from imaginarium.run.pipeline import collect_train_evaluate

    prepared = collect_train_evaluate(
        "pendulum", folder / "data", folder / "model", episodes=4 if smoke else 20, preset="s",
        train_config={"steps": 20 if smoke else 300}, horizon=10, progress=False,
    )  # fmt: skip
    return prepared.model


def workload(name: str, model: Path, config: Config) -> float:
    """Runs one workload in this process and returns its speed (units a second; higher is faster)."""
    import gymnasium as gym
    import numpy as np

    import imaginarium  # noqa: F401  (registers WAMImagined-v0)
    from imaginarium.dataset import load_dataset

    if name == "train":
        from bench_train import optimisation_step

        _, step, _ = optimisation_step("ensemble", "s", load_dataset(model.parent / "data"), "cpu")
        return calls_per_second(step, config.seconds)
    if name == "imagined":
        envs = gym.make_vec(
            "WAMImagined-v0", num_envs=16, model=str(model), vectorization_mode="vector_entry_point"
        )
        envs.reset(seed=0)
        actions = np.zeros((16, *envs.single_action_space.shape), dtype=np.float32)
        return 16 * calls_per_second(lambda: envs.step(actions), config.seconds)
    if name == "sb3":
        from imaginarium.agents.sb3 import train_in_imagination
        from imaginarium.run.demo import AGENTS

        _, _, kwargs = AGENTS["pendulum"]
        kwargs = {**kwargs, "learning_starts": min(kwargs["learning_starts"], config.sb3_steps // 4)}
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            train_in_imagination(
                model, "sac", config.sb3_steps, Path(scratch) / "agent", num_envs=1, algo_kwargs=kwargs
            )
            return config.sb3_steps / (time.perf_counter() - started)
    raise SystemExit(f"unknown workload {name!r}")


def run(name: str, setting: str, model: Path, config: Config, loaded: bool) -> float:
    """The workload's speed in a fresh process under ``setting``, with every core busy if ``loaded``."""
    env = {key: value for key, value in os.environ.items() if key not in CHOSEN}
    # the package imported first, as the command line and the studies import it
    prelude = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import imaginarium; {SETTINGS[setting]}"
    if name == "demo":
        code = prelude + "from imaginarium.cli import main; sys.exit(main(sys.argv[1:]))"
    else:
        code = prelude + f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
    burners: list[subprocess.Popen] = []
    try:
        for _ in range(len(os.sched_getaffinity(0)) if loaded else 0):
            burners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        with tempfile.TemporaryDirectory() as scratch:
            if name == "demo":
                arguments = ["demo", "--out", scratch]
            else:
                arguments = ["--child", name, str(model), json.dumps(asdict(config))]
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code, *arguments], env=env, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the {name} workload ({setting}) failed:\n{done.stderr[-4000:]}")
        return 1.0 / seconds if name == "demo" else float(done.stdout.strip().splitlines()[-1])
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    report: dict[str, Any] = {
        "benchmark": "load",
        "config": asdict(config),
        "machine": machine(),
        "figures": {},
    }
    if Path(config.out).exists() and not smoke():  # workloads run one at a time add up in one file
        report["figures"] = json.loads(Path(config.out).read_text()).get("figures", {})
    with tempfile.TemporaryDirectory() as scratch:
        model = prepare(Path(scratch), smoke())
        for name in config.workloads.split(","):
            bound = config.demo_bound if name == "demo" else config.bound
            for setting in config.settings.split(","):
                rounds: dict[str, list[float]] = {"idle": [], "loaded": []}
                for _ in range(config.repeats):
                    for state in ("idle", "loaded"):
                        rounds[state].append(run(name, setting, model, config, state == "loaded"))
                idle, loaded = (statistics.median(rounds[state]) for state in ("idle", "loaded"))
                slowdown = idle / loaded
                report["figures"][f"{name}/{setting}"] = {
                    "workload": name,
                    "setting": setting,
                    "idle_per_s": idle,
                    "loaded_per_s": loaded,
                    "slowdown": slowdown,
                    "bound": bound,
                    "met": slowdown <= bound,
                    "rounds": rounds,
                }
                shown = (
                    f"idle {1 / idle:,.0f} s, loaded {1 / loaded:,.0f} s"
                    if name == "demo"
                    else f"idle {idle:,.1f}/s, loaded {loaded:,.1f}/s"
                )
                print(f"{name} ({setting}): {shown}, {slowdown:.2f}x slower", flush=True)
                write_report(config.out, report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(workload(sys.argv[2], Path(sys.argv[3]), Config(**json.loads(sys.argv[4]))))
    else:
        main()
