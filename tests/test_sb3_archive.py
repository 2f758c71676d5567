"""SB3 checkpoints are untrusted input: rebuilt from an allowlist, never by running what they hold."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from support.malicious import booby_trap

import imaginarium.policy
from imaginarium.envs.suite import SUITE
from imaginarium.errors import PolicySpecError
from imaginarium.policy import forget_loaded_sb3_policies, load_policy
from imaginarium.sb3_archive import UnsafeArchiveError, read_policy_description

PENDULUM = SUITE["pendulum"]
CARTPOLE = SUITE["cartpole"]


def _spaces(agent_path: Path) -> tuple[gym.Space, gym.Space]:
    """The suite task whose spaces the agent was made for."""
    description = read_policy_description(agent_path)
    task = CARTPOLE if isinstance(description["action_space"], gym.spaces.Discrete) else PENDULUM
    return task.spaces


@pytest.mark.parametrize(
    "name",
    ["ppo", "a2c", "sac", "td3", "dqn", "ppo_custom", "a2c_custom", "sac_custom", "td3_custom", "dqn_custom"],
)
def test_every_algorithm_loads_through_the_safe_path_and_acts_as_sb3_loads_it(
    name: str, sb3_zoo: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import stable_baselines3

    forget_loaded_sb3_policies()

    def no_fallback(*args: object) -> None:
        raise AssertionError("fell back to SB3's own loader")

    monkeypatch.setattr(imaginarium.policy, "_sb3_own_load", no_fallback)
    observation_space, action_space = _spaces(sb3_zoo[name])
    policy = load_policy(f"sb3:{sb3_zoo[name]}", observation_space, action_space)
    agent = getattr(stable_baselines3, name.split("_")[0].upper()).load(sb3_zoo[name])
    observation_space.seed(1)
    observations = np.stack([observation_space.sample() for _ in range(16)])
    expected, _ = agent.predict(observations, deterministic=True)
    np.testing.assert_array_equal(policy.act(observations), expected)
    forget_loaded_sb3_policies()


@pytest.mark.parametrize("field", ["policy_class", "observation_space", "action_space", "policy_kwargs"])
def test_a_checkpoint_whose_description_runs_code_is_refused_naming_the_global(
    field: str, sb3_zoo: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = booby_trap(sb3_zoo["sac"], tmp_path / "evil.zip", field, marker)
    with pytest.raises(UnsafeArchiveError, match=r"builtins\.exec.*--allow-code"):
        load_policy(f"sb3:{evil}", *PENDULUM.spaces)
    assert not marker.exists()


def test_fields_that_rebuilding_does_not_need_are_never_unpickled(
    sb3_zoo: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = booby_trap(sb3_zoo["sac"], tmp_path / "evil.zip", "extra_field", marker)
    description = read_policy_description(evil)
    assert "extra_field" not in description
    policy = load_policy(f"sb3:{evil}", *PENDULUM.spaces)
    assert policy.act(np.zeros((2, 3), dtype=np.float32)).shape == (2, 1)
    assert not marker.exists()


def test_allow_code_lets_sb3_load_what_the_allowlist_refuses(
    sb3_zoo: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    trusted = booby_trap(sb3_zoo["sac"], tmp_path / "trusted.zip", "policy_kwargs", marker)
    with pytest.raises(PolicySpecError):  # SB3 gets an exec result (None) as policy_kwargs, and says so
        load_policy(f"sb3:{trusted}", *PENDULUM.spaces, allow_code=True)
    assert marker.read_text() == "code ran"  # the opt-in really hands the file to SB3's unpickler


def test_a_network_that_does_not_fit_its_weights_is_refused_without_falling_back(
    sb3_zoo: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import zipfile

    mismatched = tmp_path / "mismatched.zip"
    with zipfile.ZipFile(sb3_zoo["td3_custom"]) as source, zipfile.ZipFile(mismatched, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                data["policy_kwargs"] = {"net_arch": [64, 64]}
                content = json.dumps(data).encode()
            target.writestr(item, content)
    with pytest.raises(PolicySpecError, match="cannot rebuild.*--allow-code"):
        load_policy(f"sb3:{mismatched}", *PENDULUM.spaces)


def test_a_zoo_ranks_the_same_through_the_safe_path_as_through_sb3s_loader(
    sb3_zoo: dict[str, Path], pendulum_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaginarium.run.rank import rank_policies

    policies = [str(sb3_zoo[name]) for name in ("sac", "td3", "ppo_custom", "sac_custom", "td3_custom")]
    settings = {"starts": 4, "horizon": 20, "workers": 0, "progress": False}
    forget_loaded_sb3_policies()
    safe = rank_policies(pendulum_model, policies, **settings)
    forget_loaded_sb3_policies()

    def refuse(path: str, device: str) -> None:
        raise UnsafeArchiveError("forced")

    monkeypatch.setattr(imaginarium.policy, "_rebuild_sb3_policy", refuse)
    by_sb3 = rank_policies(pendulum_model, policies, allow_code=True, **settings)
    forget_loaded_sb3_policies()
    assert all(entry.error is None for entry in safe.policies)
    assert [(entry.path, entry.imagined_return) for entry in safe.policies] == [
        (entry.path, entry.imagined_return) for entry in by_sb3.policies
    ]
