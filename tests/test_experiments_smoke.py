"""Every script in ``experiments/`` runs, on its smallest setting, so a study cannot rot silently.

Each runs in its own process as a user runs it, with ``--smoke`` (every count cut to the least that
still runs each code path) where it has one, and writes only under pytest's temporary folders: its
report under the test's ``tmp_path``, and the caches the studies share (experts, zoos, the fidelity
study's datasets and models) in one session folder named by ``IMAGINARIUM_RESULTS``, so a study that
needs another's model makes it once. ``common.py`` is the library every script imports. The
benchmarks run as ``make bench`` runs them: one ``bench.py --smoke`` starts each ``bench_<name>.py``
in its own process, and each benchmark's case checks its part of that run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
#: modules of experiments/ that are no script, and what runs them
LIBRARIES = {"common.py": "every script"}
#: experiments/bench_<name>.py for each name of experiments/bench.py's ``SCRIPTS``
BENCHMARKS = ("collect", "train", "imagined", "flops", "compile", "dreamer", "memory", "rank", "load", "mbrl")
#: the name, up to its parameter, of the test each benchmark is a case of
BENCHMARK_TEST = "test_benchmark_runs_on_its_smallest_setting["
#: test id -> (script, arguments); in them ``{out}`` is the report's path, ``{tmp}`` the test's tmp_path,
#: ``{results}`` the shared results folder and ``{docs}`` a copy of the repository's docs/
CASES: dict[str, tuple[str, list[str]]] = {
    "architecture_metrics.py": ("architecture_metrics.py", ["--out", "{out}"]),
    "experts.py": ("experts.py", ["--task", "pendulum", "--smoke"]),
    "zoo.py": ("zoo.py", ["--task", "pendulum", "--smoke"]),
    "fidelity_study.py": ("fidelity_study.py", ["--smoke", "--out", "{out}"]),
    "ranking_study.py": (
        "ranking_study.py",
        [
            "--smoke",
            "--data",
            "mixed,medium",
            "--reports",
            "{tmp}/reports",
            "--out",
            "{results}/ranking_study.json",
        ],
    ),
    "seed_study.py": ("seed_study.py", ["--smoke", "--workdir", "{tmp}/models", "--out", "{out}"]),
    "head_size_study.py": ("head_size_study.py", ["--smoke", "--workdir", "{tmp}/models", "--out", "{out}"]),
    "imagined_agents.py": ("imagined_agents.py", ["--smoke", "--out", "{out}"]),
    "dreamer_study.py": ("dreamer_study.py", ["--smoke", "--workdir", "{tmp}/agents", "--out", "{out}"]),
    "tune_study.py": ("tune_study.py", ["--smoke", "--out", "{tmp}/search", "--report", "{out}"]),
    "pixel_study.py": ("pixel_study.py", ["--smoke", "--out", "{out}"]),
    "video_pretraining_study.py": (
        "video_pretraining_study.py",
        ["--smoke", "--workdir", "{tmp}/work", "--out", "{out}"],
    ),
    # frame_zoo is the frame-reading zoo of the video study's pixel mode: that mode runs it
    "frame_zoo.py": (
        "video_pretraining_study.py",
        ["--smoke", "--pixels", "64", "--family", "rssm", "--episodes", "4", "--zoo", "checkpoints"]
        + ["--workdir", "{tmp}/work", "--out", "{out}"],
    ),
    "offline_datasets.py": ("offline_datasets.py", ["--smoke", "--out", "{out}"]),
    "peers_study.py": ("peers_study.py", ["--smoke", "--out", "{out}"]),
    "planner_study.py": ("planner_study.py", ["--smoke", "--out", "{out}"]),
    "agents_study.py": ("agents_study.py", ["--smoke", "--out", "{out}"]),
    "trust_study.py": ("trust_study.py", ["--smoke", "--out", "{out}"]),
    "success_study.py": ("success_study.py", ["--smoke", "--out", "{out}"]),
    # after the benchmarks and ranking_study.py: their tables are redrawn from their smoke reports
    "docs_tables.py": ("docs_tables.py", ["--results", "{results}", "--docs", "{docs}"]),
}
#: what a script makes other than ``{out}``, and so the test checks
MADE = {
    "experts.py": "{results}/experts/pendulum.zip",
    "zoo.py": "{results}/zoo/pendulum",
    "ranking_study.py": "{results}/ranking_study.json",
    "docs_tables.py": "{docs}",
}
TIMEOUT_S = 600
#: scripts that run in another environment than the tests' (``make peers`` makes .venv-peers: d3rlpy
#: pins an older Gymnasium, so it stays out of the project's own)
INTERPRETERS = {"peers_study.py": ROOT / ".venv-peers" / "bin" / "python"}


@dataclass
class Run:
    """One script's process: how it ended, what it printed, how long it took."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def failure(self, label: str) -> str:
        return f"{label} failed ({' '.join(self.command[1:])}):\n{self.stdout[-4000:]}\n{self.stderr[-8000:]}"


def run_script(script: str, arguments: list[str], cwd: Path, results: Path) -> Run:
    """Run ``experiments/<script>`` as a user does, its shared caches in ``results``, from ``cwd``."""
    interpreter = INTERPRETERS.get(script, Path(sys.executable))
    if not interpreter.exists():
        pytest.fail(f"{script} runs in {interpreter.parent.parent.name}, which is missing: run make peers")
    command = [str(interpreter), str(EXPERIMENTS / script), *arguments]
    env = {
        **os.environ,
        "IMAGINARIUM_RESULTS": str(results),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        # one thread: on two shared cores a second one spins, and SB3 and torch then run ten times slower
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("IMAGINARIUM_SMOKE", None)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{script} ran past {TIMEOUT_S} s: {' '.join(command)}\n{error.stdout}\n{error.stderr}")
    return Run(command, done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if "__pycache__" not in path.parts}


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The caches the smoke runs share, in place of ``experiments/results``."""
    return tmp_path_factory.mktemp("experiments_results")


@pytest.fixture(scope="session")
def bench_run(
    request: pytest.FixtureRequest, results_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Run, dict, set[Path]]:
    """One ``bench.py --smoke`` over the benchmarks this session selected (as ``make bench`` runs them,
    each in its own process), its report (written where docs_tables.py's case reads it), and the files it
    wrote into the repository's experiments/ folder."""
    ours = [item for item in request.session.items if item.name.startswith(BENCHMARK_TEST)]
    names = ",".join(item.callspec.params["name"] for item in ours)
    out = results_root / "bench.json"
    arguments = ["--smoke", "--only", names, "--results", str(results_root / "bench"), "--out", str(out)]
    before = _files(EXPERIMENTS)
    run = run_script("bench.py", arguments, tmp_path_factory.mktemp("bench"), results_root)
    return run, json.loads(out.read_text()) if out.exists() else {}, _files(EXPERIMENTS) - before


def test_every_script_has_a_smoke_case() -> None:
    """A new script in experiments/ gets a case here, or is named as a library."""
    scripts = {path.name for path in EXPERIMENTS.glob("*.py")}
    covered = set(LIBRARIES) | {script for script, _ in CASES.values()} | set(CASES)
    covered |= {"bench.py", *(f"bench_{name}.py" for name in BENCHMARKS)}
    assert scripts <= covered, f"no smoke case for {sorted(scripts - covered)}"


@pytest.mark.parametrize("name", BENCHMARKS, ids=[f"bench_{name}.py" for name in BENCHMARKS])
def test_benchmark_runs_on_its_smallest_setting(name: str, bench_run: tuple[Run, dict, set[Path]]) -> None:
    """``bench_<name>.py --smoke`` ran from ``bench.py --smoke``, which drew its figures from its report.
    (First of the cases: the benchmarks make the pendulum caches the studies then reuse.)"""
    run, bench, written = bench_run
    assert name in bench.get("reports", {}), run.failure(f"bench_{name}.py, run by bench.py")
    report = bench["reports"][name]
    assert report["smoke"] and report["benchmark"] == name
    assert any(row["name"] for row in bench["figures"]), "bench.py drew no figure"
    assert run.returncode == 0, run.failure(f"bench.py, running bench_{name}.py")
    assert not written, f"bench.py wrote into the repository: {sorted(map(str, written))}"
    print(f"bench_{name}.py: {report['wall_seconds']:.1f} s")


@pytest.mark.parametrize("case", list(CASES))
def test_script_runs_on_its_smallest_setting(case: str, tmp_path: Path, results_root: Path) -> None:
    """The script ends without error, writes its report (or what it makes), and nothing in the
    repository's experiments/ folder."""
    script, arguments = CASES[case]
    places = {
        "out": tmp_path / "report.json",
        "tmp": tmp_path,
        "results": results_root,
        "docs": tmp_path / "docs",
    }
    if "{docs}" in arguments:
        shutil.copytree(ROOT / "docs", places["docs"])
    before = _files(EXPERIMENTS)
    run = run_script(script, [argument.format(**places) for argument in arguments], tmp_path, results_root)
    assert run.returncode == 0, run.failure(case)
    written = _files(EXPERIMENTS) - before
    assert not written, f"{case} wrote into the repository: {sorted(map(str, written))}"
    made = Path(MADE.get(case, "{out}").format(**places))
    assert made.exists(), f"{case} made no {made}"
    if made.suffix == ".json":
        report = json.loads(made.read_text())
        assert report.get("smoke") or "--smoke" not in arguments, f"{case}'s report is not marked smoke"
    print(f"{case}: {run.seconds:.1f} s")
