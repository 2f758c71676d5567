"""The policies that ranking and evaluation take: the batched ``Policy`` protocol and its loaders.

``load_policy`` accepts what users hand over: a file, found by what it is, or a policy spec::

    load_policy("zoo/ppo_50k.zip", obs_space, act_space)            # SB3, algorithm read from the file
    load_policy("zoo/actor.pt", obs_space, act_space)               # TorchScript module
    load_policy("random", obs_space, act_space)
    load_policy("sb3:zoo/sac.zip@noise=0.3", obs_space, act_space)  # any spec of imaginarium.policy
    load_policy("py:mypkg.policies:greedy", obs_space, act_space, allow_code=True)
    load_policy("agents/dreamer", obs_space, act_space)             # a Dreamer agent folder
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import gymnasium as gym

from imaginarium.errors import PolicySpecError
from imaginarium.policy import Policy, check_policy_spaces, parse_policy

__all__ = ["Policy", "load_policy", "policy_spec", "policy_name"]

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")


def policy_spec(source: str | Path) -> str:
    """The spec string for ``source``: files become ``sb3:`` or ``torchscript:`` specs by their
    contents; anything else is taken as a spec already."""
    text = str(source).strip()
    path = Path(text)
    if path.is_file():
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
        if "data" in names:  # SB3 writes its JSON description as the archive's "data" entry
            return f"sb3:{text}"
        if path.suffix.lower() in TORCHSCRIPT_SUFFIXES or any(name.endswith("/data.pkl") for name in names):
            return f"torchscript:{text}"
        raise PolicySpecError(
            f"cannot tell what kind of policy {text!r} is: expected an SB3 .zip or a TorchScript "
            f"module ({', '.join(TORCHSCRIPT_SUFFIXES)})"
        )
    if (path / "dreamer.json").is_file():
        return f"dreamer:{text}"
    if path.suffix.lower() in (".zip", *TORCHSCRIPT_SUFFIXES) and ":" not in text:
        raise PolicySpecError(f"policy file {text!r} not found")
    return text


def _dreamer_policy(folder: Path, observation_space: gym.Space, action_space: gym.Space) -> Policy:
    from imaginarium.agents.dreamer import DreamerPolicy
    from imaginarium.errors import ImaginariumError

    try:
        policy = DreamerPolicy(folder)
    except ImaginariumError as error:
        raise PolicySpecError(f"cannot load Dreamer agent {str(folder)!r}: {error}") from None
    check_policy_spaces(policy, observation_space, action_space, f"Dreamer agent {str(folder)!r}")
    return policy


def policy_name(source: str | Path) -> str:
    """A short name for reports: the file's stem, or the spec with each file in it shortened to its stem
    (``sb3:zoo/sac_10k.zip@noise=0.3`` -> ``sac_10k@noise=0.3``)."""
    text = str(source).strip()
    if Path(text).is_file() or (Path(text) / "dreamer.json").is_file():
        return Path(text).name if Path(text).is_dir() else Path(text).stem
    return re.sub(r"(?:sb3|torchscript):([^@+\s]+)", lambda match: Path(match.group(1)).stem, text)


def load_policy(
    source: str | Path,
    observation_space: gym.Space,
    action_space: gym.Space,
    seed: int = 0,
    allow_code: bool = False,
) -> Policy:
    """The policy ``source`` names, checked against the spaces it must act in.

    :param allow_code: accept ``py:MODULE:FUNCTION`` callables (importing them runs code).
    :raises PolicySpecError: a missing or unreadable file, an unknown kind, or spaces that do not fit.
    """
    text = str(source).strip()
    folder = Path(text.removeprefix("dreamer:"))
    if text.startswith("dreamer:") or (folder / "dreamer.json").is_file():
        return _dreamer_policy(folder, observation_space, action_space)
    return parse_policy(
        policy_spec(source), observation_space, action_space, seed=seed, allow_code=allow_code
    )
