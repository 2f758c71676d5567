from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from imaginarium.cli import main
from imaginarium.dataset import load_dataset


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_collect_then_info_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pendulum"
    code, stdout, _ = _run(
        [
            "collect",
            "--task",
            "pendulum",
            "--episodes",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--format",
            "arrow",
        ],
        capsys,
    )
    assert code == 0 and "wrote 3 episodes (600 steps)" in stdout
    code, stdout, _ = _run(["info", str(out), "--json"], capsys)
    summary = json.loads(stdout)
    assert code == 0 and summary["episodes"] == 3 and summary["data_format"] == "arrow"
    code, stdout, _ = _run(["info", str(out)], capsys)
    assert code == 0 and "upright_last_20" in stdout and "Pendulum-v1" in stdout


def test_tasks_lists_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(["tasks"], capsys)
    assert code == 0 and "Reacher-v5" in stdout and "within 0.02" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["collect", "--task", "pendulm", "--episodes", "2"], "unknown task 'pendulm'"),
        (
            ["collect", "--task", "pendulum", "--episodes", "2", "--policy", "expert"],
            "unknown policy 'expert'",
        ),
        (["collect", "--task", "pendulum", "--episodes", "0"], "positive integer"),
        (
            ["collect", "--task", "pendulum", "--episodes", "2", "--policy", "sb3:missing.zip"],
            "does not exist",
        ),
    ],
)
def test_bad_collect_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "ds"
    code, _, stderr = _run([*argv, "--out", str(out), "--no-progress"], capsys)
    assert code == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists() and not (tmp_path / "ds.partial").exists()


def test_info_on_bad_datasets_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pendulum_dataset_path: Path
) -> None:
    code, _, stderr = _run(["info", str(pendulum_dataset_path), "--task", "cartpole"], capsys)
    assert code == 2 and "for task 'cartpole'" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = _run(["info", str(tmp_path / "missing")], capsys)
    assert code == 2 and "not found" in stderr


def test_demo_collects_trains_imagines_ranks_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imaginarium.run.demo import run_demo

    summaries = run_demo(tmp_path / "demo", episodes=6, train_steps=300, agent_steps=300, eval_episodes=2)
    assert load_dataset(tmp_path / "demo" / "dataset").num_episodes == 6
    assert (tmp_path / "demo" / "model" / "fidelity.png").exists()
    assert summaries["fidelity"]["nmse_at_1"] < summaries["fidelity"]["repeat_last_nmse_at_1"]
    assert (tmp_path / "demo" / "agent.zip").exists()
    assert -16.3 * 200 <= summaries["agent"]["real_return"]["mean"] <= 0.0  # 200 rewards in [-16.3, 0]
    assert np.isfinite(summaries["agent"]["imagined_return"]["mean"])
    printed = capsys.readouterr().out
    assert "fingerprint" in printed and "imagined return" in printed and "real return" in printed
    assert (tmp_path / "demo" / "report" / "report.html").exists() and "| 1 |" in printed
    assert set(summaries["ranking"]) >= {"spearman", "regret_at_1"}
    ranking = json.loads((tmp_path / "demo" / "report" / "ranking.json").read_text())
    rows = {row["name"]: row for row in ranking["policies"]}
    assert {row["success_source"] for row in rows.values()} == {"rule:upright_last_20"}
    assert rows["random"]["imagined_success"] == rows["random"]["real_success"] == 0.0
    report = (tmp_path / "demo" / "report" / "report.md").read_text()
    assert ranking["success_gap"] is not None and "Imagined success applies the task's own rule" in report
    assert f"differs from real success by {ranking['success_gap']:.2f} on average" in report


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_the_complete_episodes_and_says_so(tmp_path: Path, sent: signal.Signals) -> None:
    out = tmp_path / "ds"
    arguments = ["collect", "--task", "pendulum", "--episodes", "100000", "--out", str(out), "--no-progress"]
    # A shell runs a background job (``make test &``) with Ctrl-C ignored, which Python then keeps
    # ignored in every child: the CLI is started with Python's usual handler, as from a terminal.
    as_from_a_terminal = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['imaginarium', *{arguments!r}]; runpy.run_module('imaginarium.cli', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", as_from_a_terminal],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    staging = tmp_path / "ds.partial" / "data" / "main_data.hdf5"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (staging.exists() and staging.stat().st_size > 100_000):
            time.sleep(0.2)
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # a collector that missed the signal would otherwise run on after a failure
    assert process.returncode == 130, stderr
    assert "interrupted: wrote the" in stderr and "Traceback" not in stderr
    written = int(stderr.split("wrote the ")[1].split()[0])
    dataset = load_dataset(out)
    assert dataset.num_episodes == written >= 100
    assert (dataset.episode_lengths == 200).all()
    assert not (tmp_path / "ds.partial").exists()


def test_train_then_evaluate_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pendulum_dataset_path: Path
) -> None:
    out = tmp_path / "model"
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  hidden: 32\ntrain:\n  eval_every: 20\n")
    argv = [
        "train",
        "--data",
        str(pendulum_dataset_path),
        "--preset",
        "xs",
        "--out",
        str(out),
        "--steps",
        "40",
    ]
    code, stdout, _ = _run([*argv, "--config", str(config), "--set", "layers=1", "--no-progress"], capsys)
    assert code == 0 and "trained ensemble for 40 steps" in stdout
    code, stdout, _ = _run(
        ["evaluate-model", str(out), "--data", str(pendulum_dataset_path), "--horizon", "10"], capsys
    )
    assert code == 0 and "nmse at 1" in stdout and (out / "fidelity.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "hiden=3"], "unknown key 'hiden'"),
        (["--set", "hidden"], "--set takes key=value"),
        pytest.param(
            ["--device", "cuda:0"],
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        (["--set", "sequence_length=500", "--model", "rssm"], "no window of length 500"),
    ],
)
def test_bad_train_input_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pendulum_dataset_path: Path,
    extra: list[str],
    message: str,
) -> None:
    argv = [
        "train",
        "--data",
        str(pendulum_dataset_path),
        "--out",
        str(tmp_path / "m"),
        "--no-progress",
        *extra,
    ]
    code, _, stderr = _run(argv, capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_rank_writes_the_three_reports_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pendulum_model: Path
) -> None:
    code, stdout, _ = _run(
        ["rank", "--model", str(pendulum_model), "--policies", "random", "missing.zip", "--starts", "4",
         "--workers", "0", "--videos", "0", "--report", str(tmp_path / "r"), "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "| 1 | random |" in stdout and "missing.zip" in stdout
    assert "s in this process" in stdout
    assert {path.name for path in (tmp_path / "r").iterdir()} == {"ranking.json", "report.md", "report.html"}


def test_dream_learns_offline_and_scores_the_actor_on_the_real_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pendulum_model: Path
) -> None:
    out = tmp_path / "agent"
    argv = ["dream", "--model", str(pendulum_model), "--steps", "3", "--set", "batch_size=16", "--set",
            "horizon=3", "--eval-episodes", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    code, stdout, _ = _run(argv, capsys)
    assert code == 0 and "3 imagined updates" in stdout and "real return on pendulum" in stdout
    assert (out / "dreamer.json").exists() and (out / "model" / "model.pt").exists()
    from imaginarium.agents.dreamer import score_dreamer
    from imaginarium.run.console import interval

    score = score_dreamer(out, episodes=1)
    assert score.task == "pendulum" and f"real return on pendulum: {interval(score.real)}" in stdout
    code, _, stderr = _run(["dream", "--out", str(tmp_path / "other")], capsys)
    assert code == 2 and "--model MODEL_DIR" in stderr


def test_option_defaults_are_read_from_the_library_so_they_cannot_drift() -> None:
    import argparse

    from imaginarium.cli import LibraryDefault, build_parser, given
    from imaginarium.models.train import TrainConfig
    from imaginarium.run.rank import rank_policies

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    defaults = [
        (name, action.dest, action.default)
        for name, parser in commands.choices.items()
        for action in parser._actions
        if isinstance(action.default, LibraryDefault)
    ]
    assert len(defaults) >= 30
    for name, dest, default in defaults:  # each names a parameter or field that exists
        assert str(default), f"{name} --{dest}"
    args = build_parser().parse_args(["train", "--data", "d", "--out", "m", "--steps", "7"])
    assert str(args.patience) == str(TrainConfig().patience)
    assert given(args, "steps", "patience", "seed") == {"steps": 7}  # unset options are not passed
    args = build_parser().parse_args(["rank", "--model", "m", "--policies", "random", "--report", "r"])
    assert str(args.starts) == str(inspect.signature(rank_policies).parameters["starts"].default)
