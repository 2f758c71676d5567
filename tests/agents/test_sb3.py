from __future__ import annotations

from pathlib import Path

import pytest

from imaginarium.cli import main
from imaginarium.errors import ImaginariumError
from imaginarium.policy import detect_sb3_algorithm


def test_imagine_train_saves_an_agent_that_acts_on_the_real_task(
    cartpole_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ppo.zip"
    argv = [
        "imagine-train",
        "--model",
        str(cartpole_model),
        "--algo",
        "ppo",
        "--steps",
        "256",
        "--out",
        str(out),
    ]
    code = main([*argv, "--num-envs", "8", "--eval-episodes", "2", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0 and out.exists() and detect_sb3_algorithm(out) == "PPO"
    assert "imagined return" in stdout and "real return on cartpole" in stdout


def test_an_algorithm_that_cannot_act_in_the_space_is_refused(cartpole_model: Path, tmp_path: Path) -> None:
    from imaginarium.agents.sb3 import train_in_imagination

    with pytest.raises(ImaginariumError, match="sac cannot act in the model's discrete action space"):
        train_in_imagination(cartpole_model, "sac", 10, tmp_path / "a.zip")
