"""Every command, given bad input: exit 2, one line on stderr, no traceback, nothing half-written or
replaced; and no policy file runs code on load unless --allow-code is given."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from stable_baselines3 import SAC
from support.malicious import booby_trap

from imaginarium.cli import main
from imaginarium.collect import collect
from imaginarium.envs.suite import get_task


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], message: str = "") -> str:
    """Run the CLI and check it refused cleanly; returns the one line it printed on stderr."""
    code = main(argv)
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert message in stderr, stderr
    return stderr


@pytest.fixture(scope="module")
def sac_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agents") / "sac.zip"
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def frames_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "pendulum"
    collect(get_task("pendulum", max_episode_steps=10), out, episodes=2, seed=1, pixels=16, progress=False)
    return out


def _commands(
    out: Path, model: Path, data: Path, agent: Path, frames: Path, videos: Path
) -> dict[str, list[str]]:
    """Each writing command at its smallest, writing to ``out``."""
    return {
        "collect": ["collect", "--task", "pendulum", "--episodes", "1", "--no-progress", "--out", str(out)],
        "train": ["train", "--data", str(data), "--preset", "xs", "--steps", "2", "--no-progress",
                  "--out", str(out)],
        "rank": ["rank", "--model", str(model), "--policies", "random", "--starts", "2", "--workers", "0",
                 "--videos", "0", "--no-progress", "--report", str(out)],
        "evaluate-model": ["evaluate-model", str(model), "--data", str(data), "--starts", "4",
                           "--horizon", "5", "--out", str(out)],
        "imagine-train": ["imagine-train", "--model", str(model), "--algo", "ppo", "--steps", "64",
                          "--num-envs", "2", "--eval-episodes", "0", "--no-progress", "--out", str(out)],
        "video": ["video", "--model", str(model), "--policy", str(agent), "--steps", "3", "--size", "32",
                  "--out", str(out)],
        "dream": ["dream", "--model", str(model), "--steps", "2", "--set", "batch_size=8", "--set",
                  "horizon=3", "--eval-episodes", "0", "--no-progress", "--out", str(out)],
        "import-video": ["import-video", "--videos", str(videos), "--into", str(frames), "--out", str(out)],
    }  # fmt: skip


@pytest.fixture
def commands(
    tmp_path: Path, pendulum_model: Path, pendulum_dataset_path: Path, sac_agent: Path, frames_dataset: Path
):
    import imageio.v3 as iio

    from imaginarium.dataset import load_dataset

    videos = tmp_path / "videos"
    videos.mkdir()
    iio.imwrite(videos / "a.gif", load_dataset(frames_dataset).episode(0).images, duration=50, loop=0)
    return lambda out: _commands(
        out, pendulum_model, pendulum_dataset_path, sac_agent, frames_dataset, videos
    )


@pytest.mark.parametrize(
    "command",
    ["collect", "train", "rank", "evaluate-model", "imagine-train", "video", "dream", "import-video"],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    command: str, commands, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    suffix = {"imagine-train": "agent.zip", "video": "clip.gif"}.get(command, "out")
    _refused(commands(blocker / suffix)[command], capsys, "cannot write into")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("command", "existing"),
    [
        ("rank", "ranking.json"),
        ("evaluate-model", "fidelity.json"),
        ("imagine-train", None),
        ("video", None),
        ("collect", None),
        ("import-video", None),
    ],
)
def test_an_existing_output_is_never_replaced_without_overwrite(
    command: str, existing: str | None, commands, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = {"imagine-train": "agent.zip", "video": "clip.gif"}.get(command, "out")
    out = tmp_path / suffix
    if existing is None and command in ("collect", "import-video"):
        out.mkdir()
        (out / "keep.txt").write_text("earlier work")
        kept = out / "keep.txt"
    elif existing is None:
        out.write_text("earlier work")
        kept = out
    else:
        out.mkdir()
        kept = out / existing
        kept.write_text("earlier work")
    _refused(commands(out)[command], capsys, "--overwrite")
    assert kept.read_text() == "earlier work"


def test_overwrite_replaces_an_earlier_video(
    commands, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.gif"
    out.write_text("earlier work")
    assert main([*commands(out)["video"], "--overwrite"]) == 0
    assert out.read_bytes()[:3] == b"GIF"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no leftovers


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("rank", ["--workers", "-5"], "workers must be"),
        ("rank", ["--horizon", "0"], "horizon must be"),
        ("rank", ["--starts", "0"], "starts"),
        ("video", ["--steps", "0"], "steps must be"),
        ("imagine-train", ["--uncertainty-penalty", "nan"], "uncertainty_penalty"),
        ("imagine-train", ["--uncertainty-penalty", "inf"], "uncertainty_penalty"),
        ("imagine-train", ["--eval-episodes", "-1"], "--eval-episodes"),
        ("imagine-train", ["--num-envs", "0"], "num_envs"),
        ("train", ["--set", "learning_rate=-1"], "learning_rate"),
        ("train", ["--set", "learning_rate=.nan"], "learning_rate"),
        ("train", ["--set", "weight_decay=-0.1"], "weight_decay"),
        ("train", ["--set", "min_logvar=2", "--set", "max_logvar=1"], "min_logvar"),
    ],
)
def test_a_bad_number_is_one_line_and_writes_nothing(
    command: str,
    options: list[str],
    message: str,
    commands,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / {"imagine-train": "agent.zip", "video": "clip.gif"}.get(command, "out")
    _refused([*commands(out)[command], *options], capsys, message)
    assert not out.exists()


@pytest.mark.parametrize(("policy", "message"), [("wrong_shape", "shape (1, 3)"), ("raises", "always fails")])
def test_collect_refuses_a_policy_that_acts_wrongly_and_writes_nothing(
    policy: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    argv = ["collect", "--task", "pendulum", "--episodes", "2", "--num-envs", "1", "--no-progress",
            "--policy", f"py:support.policies:{policy}", "--allow-code", "--out", str(out)]  # fmt: skip
    _refused(argv, capsys, message)
    assert not out.exists() and not (tmp_path / "data.partial").exists()


def test_rank_fails_when_no_policy_could_be_ranked(
    pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["rank", "--model", str(pendulum_model), "--policies", "missing.zip", "py:support.policies:raises",
            "--allow-code", "--starts", "2", "--workers", "0", "--videos", "0", "--no-progress",
            "--report", str(tmp_path / "r")]  # fmt: skip
    _refused(argv, capsys, "none of the 2 policies could be ranked")
    assert "always fails" in (tmp_path / "r" / "report.md").read_text()  # the report says why


def test_rank_refuses_start_states_of_another_task_before_starting_ray(
    pendulum_model: Path, cartpole_dataset_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    argv = ["rank", "--model", str(pendulum_model), "--policies", "random", "--data", str(cartpole_dataset_path),
            "--workers", "1", "--videos", "0", "--no-progress", "--report", str(tmp_path / "r")]  # fmt: skip
    _refused(argv, capsys, "not of the model's task")
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert not (tmp_path / "r").exists()


def test_a_truncated_starts_file_is_one_line(
    pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(pendulum_model, model)
    starts = model / "starts.npz"
    starts.write_bytes(starts.read_bytes()[: starts.stat().st_size // 2])
    argv = ["rank", "--model", str(model), "--policies", "random", "--workers", "0", "--videos", "0",
            "--no-progress", "--report", str(tmp_path / "r")]  # fmt: skip
    _refused(argv, capsys, "starts.npz")


@pytest.fixture
def evil_agent(sac_agent: Path, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    return booby_trap(sac_agent, tmp_path / "evil.zip", "observation_space", marker), marker


def test_collect_never_runs_a_malicious_checkpoint(
    evil_agent: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil, marker = evil_agent
    argv = ["collect", "--task", "pendulum", "--episodes", "1", "--policy", f"sb3:{evil}", "--no-progress",
            "--out", str(tmp_path / "data")]  # fmt: skip
    _refused(argv, capsys, "builtins.exec")
    assert not marker.exists() and not (tmp_path / "data").exists()


def test_video_never_runs_a_malicious_checkpoint(
    evil_agent: tuple[Path, Path], pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil, marker = evil_agent
    argv = ["video", "--model", str(pendulum_model), "--policy", str(evil), "--steps", "3",
            "--out", str(tmp_path / "clip.gif")]  # fmt: skip
    _refused(argv, capsys, "builtins.exec")
    assert not marker.exists() and not (tmp_path / "clip.gif").exists()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_rank_never_runs_a_malicious_checkpoint_in_process_or_on_ray(
    workers: str,
    evil_agent: tuple[Path, Path],
    pendulum_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    evil, marker = evil_agent
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    argv = ["rank", "--model", str(pendulum_model), "--policies", str(evil), "--starts", "2",
            "--workers", workers, "--videos", "0", "--no-progress", "--report", str(tmp_path / "r")]  # fmt: skip
    _refused(argv, capsys, "could be ranked")
    assert "builtins.exec" in (tmp_path / "r" / "report.md").read_text()
    assert not marker.exists()
