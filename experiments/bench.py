"""Every benchmark in one run (``make bench``): one JSON with the machine and each figure, and a table.

Runs each ``experiments/bench_*.py`` script in its own process (so one cannot slow another through
leftover threads or memory), reads the JSON it writes, and picks its headline figures. These machines
are shared and noisy, so every figure that depends on the machine's speed is also given as a ratio to
a reference measured in the same run: the real Hopper-v5's steps/s (for simulator-like speeds) or the
fp32 matmul's FLOP/s (for compute-bound work). The references are measured before and after the
scripts; the table shows the mean and the JSON both.

    python experiments/bench.py [--only imagined,flops] [--out experiments/results/bench.json]
    python experiments/bench.py --smoke  # every script with --smoke: does the whole chain still run?
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench_flops import matmul_flops
from bench_imagined import real_hopper_steps_per_second
from common import ROOT, machine, parse_config, smoke, write_report

#: script name -> extra arguments for its run here
SCRIPTS: dict[str, list[str]] = {
    "collect": [],
    "train": [],
    "imagined": ["--sizes", "1,1024,4096"],
    "flops": [],
    "compile": [],
    "dreamer": [],
    "memory": [],
    "rank": [],
    "load": [],
    "mbrl": [],
}


@dataclass(frozen=True)
class Config:
    only: str = ""
    #: how long each reference is timed, before the scripts and after, and the matmul's size
    reference_seconds: float = 3.0
    matmul_size: int = 1024
    results: str = "experiments/results/bench"
    out: str = "experiments/results/bench.json"
    SMOKE: ClassVar[dict] = {"reference_seconds": 0.05, "matmul_size": 64}


def references(config: Config) -> dict[str, float]:
    """Real Hopper-v5's steps/s and the fp32 matmul's FLOP/s: what the figures are set beside."""
    return {
        "real_hopper_steps_per_s": real_hopper_steps_per_second(config.reference_seconds),
        "matmul_flops_per_s": matmul_flops(config.matmul_size, config.reference_seconds, "cpu"),
    }


def figure(name: str, value: float, unit: str, ratio: float | None = None, ratio_to: str | None = None,
           target: str | None = None, met: bool | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "ratio": ratio,
        "ratio_to": ratio_to,
        "target": target,
        "met": met,
    }


def headlines(name: str, report: dict[str, Any], ref: dict[str, float]) -> list[dict[str, Any]]:
    """The figures of one script's report, each machine-dependent one with its ratio."""
    hopper, gflops = ref["real_hopper_steps_per_s"], ref["matmul_flops_per_s"] / 1e9
    rows: list[dict[str, Any]] = []
    if name == "collect":
        for policy, entry in report["figures"].items():
            rows.append(figure(f"collect pendulum ({policy})", entry["collect_steps_per_s"], "steps/s",
                               entry["ratio"], "the bare env, same policy, same run"))  # fmt: skip
    elif name == "train":
        for entry in report["figures"]:
            rows.append(figure(f"train {entry['family']} {entry['preset']}", entry["samples_per_s"], "samples/s",
                               entry["samples_per_s"] / gflops, "matmul GFLOP/s"))  # fmt: skip
    elif name == "imagined":
        real = report["real_hopper_steps_per_s"]
        for entry in report["figures"]:
            key = f"{entry['family']} {entry['preset']} n={entry['num_envs']}" + (
                "" if entry["family"] == "rssm" else f" uncertainty {'on' if entry['uncertainty'] else 'off'}"
            )
            asked = entry["family"] == "ensemble" and entry["num_envs"] == 1024 and not entry["uncertainty"]
            ratio = entry["env_steps_per_s"] / real
            rows.append(figure(f"WAMImagined-v0 {key}", entry["env_steps_per_s"], "steps/s", ratio,
                               "real Hopper-v5 steps/s, same run", "≥ 40" if asked else None,
                               ratio >= 40 if asked else None))  # fmt: skip
    elif name == "flops":
        for entry in report["figures"]:
            asked = entry["family"] == "rssm"
            share = entry["share_of_matmul"]
            rows.append(figure(f"{entry['family']} {entry['preset']} step FLOP/s @ {entry['batch']}",
                               entry["flops_per_s"], "FLOP/s", share, "fp32 matmul FLOP/s, same run",
                               "≥ 0.5" if asked else None, share >= 0.5 if asked else None))  # fmt: skip
    elif name == "compile":
        for entry in report["figures"]:
            seeded = "seeded" if entry["seeded"] else "unseeded"
            rows.append(figure(f"torch.compile of model.step, {entry['family']} batch {entry['batch']}, {seeded}",
                               entry["compiled_samples_per_s"], "samples/s", entry["speedup"],
                               "the eager step, same run"))  # fmt: skip
    elif name == "dreamer":
        for entry in report["figures"]:
            rows.append(figure(f"Dreamer imagination {entry['family']} {entry['preset']}",
                               entry["imagined_steps_per_s"], "latent steps/s",
                               entry["imagined_steps_per_s"] / gflops, "matmul GFLOP/s"))  # fmt: skip
    elif name == "memory":
        growth = report["rss_growth_after_warmup"]
        rows.append(figure(f"RSS growth over {report['steps']:,} imagined steps", growth, "fraction",
                           target="< 0.05", met=growth < 0.05))  # fmt: skip
        rows.append(figure("long run WAMImagined-v0 (continue head on, resets)", report["steps_per_s"],
                           "steps/s", report["steps_per_s"] / hopper, "real Hopper-v5 steps/s"))  # fmt: skip
    elif name == "rank":
        task = report["config"]["task"]
        size = f"{report['policies']} policies × {report['starts']} × {report['horizon']} ({task})"
        # --members one rolls each start once: the same number of episodes as the real reference, so the
        # target applies there; the default rolls each once per elite, five times the episodes
        for label, key, seconds, targeted in (
            ("--members one, no Ray running, workers left to choose", "screening_default_speedup_over_real", "screening_default_seconds", True),
            ("--members one, 2 workers, Ray started by the call", "screening_speedup_over_real_2_workers", "screening_seconds_2_workers", True),
            ("--members one, 2 workers, Ray already running", "screening_warm_speedup_over_real_2_workers", "screening_warm_seconds_2_workers", True),
            ("every elite, no Ray running, workers left to choose", "default_speedup_over_real", "default_seconds", False),
            ("every elite, 2 workers, Ray started by the call", "speedup_over_real_2_workers", "seconds_2_workers", False),
            ("every elite, 2 workers, Ray already running", "warm_speedup_over_real_2_workers", "warm_seconds_2_workers", False),
        ):  # fmt: skip
            if key not in report:  # run with --no-screening
                continue
            ratio = report[key]
            rows.append(figure(f"rank {size}, {label}", report[seconds], "s", ratio,
                               f"real {task} time, same number of whole episodes (÷ this)",
                               "≥ 10" if targeted else None, ratio >= 10 if targeted else None))  # fmt: skip
        capped = report["speedup_over_real_capped_2_workers"]
        rows.append(figure("rank, against real episodes cut at the same horizon", report["seconds_2_workers"],
                           "s", capped, f"real {task} time, episodes ≤ {report['horizon']} steps (÷ this)"))  # fmt: skip
        for label, key in (
            ("every elite, Ray started by the call", "speedup_2_over_1"),
            ("every elite, Ray already running", "warm_speedup_2_over_1"),
            ("--members one, Ray started by the call", "screening_speedup_2_over_1"),
            ("--members one, Ray already running", "screening_warm_speedup_2_over_1"),
        ):
            if key not in report:
                continue
            speedup, rounds = report[key], report.get(f"{key}_rounds") or []
            spread = f" (rounds {min(rounds):.2f}–{max(rounds):.2f})" if len(rounds) > 1 else ""
            rows.append(figure(f"rank: 2 Ray workers over 1, {label}, median times{spread}", speedup, "×",
                               target="≥ 1.6", met=speedup >= 1.6))  # fmt: skip
    elif name == "mbrl":
        for entry in report["figures"]:
            if "ours_over_mbrl_lib" in entry:
                ratio = entry["ours_over_mbrl_lib"]
                rows.append(figure(f"WAMImagined-v0 vector env, n={entry['num_envs']}, one thread, beside mbrl-lib ModelEnv",
                                   entry["ours_steps_per_s"], "steps/s", ratio, "mbrl-lib ModelEnv steps/s, same run",
                                   "≥ 1.2", ratio >= 1.2))  # fmt: skip
                low = entry["ours_bfloat16_over_mbrl_lib"]
                rows.append(figure(f"the same in bfloat16 (precision='bfloat16'), n={entry['num_envs']}",
                                   entry["ours_bfloat16_steps_per_s"], "steps/s", low,
                                   "mbrl-lib ModelEnv steps/s, same run (float32)", "≥ 1.2", low >= 1.2))  # fmt: skip
        single = report["single_env_over_real_hopper"]
        rows.append(figure("one gym.make('WAMImagined-v0'), one thread", report["single_env_steps_per_s"], "steps/s",
                           single, "real Hopper-v5 steps/s, same run", "≥ 2", single >= 2))  # fmt: skip
    elif name == "load":
        for entry in report["figures"].values():
            setting = {"package": "as the package runs", "passive": "OMP_WAIT_POLICY=PASSIVE",
                       "spin": "GOMP_SPINCOUNT=20000", "one": "one thread"}.get(entry["setting"], entry["setting"])  # fmt: skip
            rows.append(figure(f"{entry['workload']} under load ({setting}): idle over loaded speed",
                               entry["slowdown"], "×", target=f"≤ {entry['bound']}", met=entry["met"]))  # fmt: skip
    return rows


def run_script(name: str, arguments: list[str], results: Path) -> dict[str, Any]:
    """Run ``bench_<name>.py`` in its own process (with ``--smoke`` alone in a smoke run) and read its JSON."""
    arguments = ["--smoke"] if smoke() else arguments
    out = results / f"bench_{name}.json"
    command = [sys.executable, str(ROOT / "experiments" / f"bench_{name}.py"), *arguments, "--out", str(out)]
    print(f"== {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    report = json.loads(out.read_text())
    report["wall_seconds"] = time.perf_counter() - started
    return report


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Imaginarium benchmarks")
    for column in ("figure", "value", "ratio", "to", "asked", "met"):
        table.add_column(column)
    for row in rows:
        value, unit = row["value"], row["unit"]
        if unit == "FLOP/s":
            value, unit = value / 1e9, "GFLOP/s"
        shown = f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"
        table.add_row(
            row["name"], f"{shown} {unit}", "" if row["ratio"] is None else f"{row['ratio']:.2f}",
            row["ratio_to"] or "", row["target"] or "", {None: "", True: "yes", False: "NO"}[row["met"]],
        )  # fmt: skip
    Console(width=160).print(table)


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    chosen = [name for name in SCRIPTS if not config.only or name in config.only.split(",")]
    results = Path(config.results)
    results.mkdir(parents=True, exist_ok=True)
    before = references(config)
    reports: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in chosen:
        try:
            reports[name] = run_script(name, SCRIPTS[name], results)
        except subprocess.CalledProcessError as error:  # one broken benchmark must not hide the others
            failures[name] = str(error)
    after = references(config)
    ref = {key: (before[key] + after[key]) / 2 for key in before}
    rows = [row for name, report in reports.items() for row in headlines(name, report, ref)]
    print_table(rows)
    report = {
        "machine": machine(),
        "config": asdict(config),
        "references": {"mean": ref, "before": before, "after": after},
        "figures": rows,
        "failures": failures,
        "reports": reports,
    }
    write_report(config.out, report)
    if failures:
        raise SystemExit(f"benchmarks failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
