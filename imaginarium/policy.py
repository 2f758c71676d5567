"""Policies that act on batches of observations, and the one grammar that names them everywhere.

Every command and API that takes a policy (``collect``, ``rank``, ``video``, ``load_policy``) reads
the same spec:

- ``random`` — uniform over the action space;
- ``sb3:PATH`` — a Stable-Baselines3 checkpoint (``.zip``) of any algorithm, detected from the file
  and rebuilt without running code it holds (:mod:`imaginarium.sb3_archive`);
- ``torchscript:PATH`` — a TorchScript module mapping a float batch of observations to actions
  (for discrete actions: integer actions, or one score per action whose argmax is taken);
- ``dreamer:FOLDER`` — a Dreamer agent folder (``imaginarium dream``);
- ``plan:MODEL_DIR`` — a planner that imagines short futures in the world model at every step and acts
  on the best (:mod:`imaginarium.agents.planner`); its settings as options, e.g.
  ``plan:models/pendulum@method=cem,horizon=20,samples=512``;
- ``shield:MODEL_DIR[@OPTIONS]:SPEC`` — the policy ``SPEC``, checked a few imagined steps ahead at each
  step; where the model foresees the episode ending the planner of ``MODEL_DIR`` acts instead
  (:mod:`imaginarium.agents.shield`; options ``lookahead``, ``risk``, ``particles``, ``outside`` and
  the planner's);
- ``py:MODULE:FUNCTION`` — a Python callable ``f(observations) -> actions``; importing it runs code, so
  it is only accepted when the caller allows code (``allow_code=True``, ``--allow-code``);
- ``PATH`` alone — a file or folder, its kind found from its contents (an SB3 ``.zip``, a TorchScript
  module, a Dreamer folder);
- ``SPEC@noise=S`` — the policy with action noise: Gaussian with std ``S`` × half the action range for
  continuous actions, a random action with probability ``S`` for discrete ones;
- ``W*SPEC + W*SPEC ...`` — a mixture: each episode is run by one component, drawn in proportion to
  the weights, so a dataset holds experience of varied quality.

A new kind of policy is one entry of :data:`POLICY_SOURCES`.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from imaginarium.config import config_from_dict
from imaginarium.envs.suite import space_mismatch
from imaginarium.errors import ImaginariumError, PolicySpecError
from imaginarium.sb3_archive import UnsafeArchiveError, read_policy_description

LOGGER = logging.getLogger(__name__)


@runtime_checkable
class Policy(Protocol):
    """Batched policy: ``act`` maps observations ``(N, *obs_shape)`` to actions ``(N, *act_shape)``."""

    def act(self, observations: np.ndarray) -> np.ndarray: ...

    def reset(self, slots: np.ndarray) -> None:
        """New episodes begin in the batch rows ``slots``; stateful policies re-draw their state there."""


def mark_slots(marks: np.ndarray | None, slots: np.ndarray) -> np.ndarray:
    """``marks`` (a bool per batch row, or ``None`` for none yet) with the rows ``slots`` set, grown to
    hold them: how a stateful policy's ``reset`` remembers which rows start afresh at the next ``act``."""
    slots = np.asarray(slots, dtype=np.int64).reshape(-1)
    known = 0 if marks is None else len(marks)
    grown = np.zeros(max(known, int(slots.max()) + 1 if len(slots) else 0), dtype=bool)
    if known:
        grown[:known] = marks
    grown[slots] = True
    return grown


class RandomPolicy:
    """Uniform random actions, drawn for the whole batch in one call."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        if isinstance(action_space, gym.spaces.Box) and not action_space.is_bounded():
            raise PolicySpecError(f"policy 'random' needs a bounded action space, got {action_space}")
        if not isinstance(action_space, gym.spaces.Box | gym.spaces.Discrete):
            raise PolicySpecError(f"policy 'random' supports Box and Discrete actions, got {action_space}")

    def act(self, observations: np.ndarray) -> np.ndarray:
        n = len(observations)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return self.rng.integers(space.start, space.start + space.n, size=n)
        return self.rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)

    def reset(self, slots: np.ndarray) -> None:
        pass


# The module of a saved policy class names the algorithm; PPO and A2C share theirs and differ in keys.
_SB3_POLICY_MODULES = {
    "stable_baselines3.sac.policies": "SAC",
    "stable_baselines3.td3.policies": "TD3",
    "stable_baselines3.dqn.policies": "DQN",
}


def detect_sb3_algorithm(path: str | Path) -> str:
    """Name the SB3 algorithm (``PPO``, ``A2C``, ``SAC``, ``TD3``, ``DQN``) that saved ``path``.

    :raises PolicySpecError: when the file is missing or not an SB3 checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise PolicySpecError(f"SB3 checkpoint {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
        raise PolicySpecError(f"{str(path)!r} is not a Stable-Baselines3 checkpoint: {error}") from None
    module = data.get("policy_class", {}).get("__module__", "")
    if module in _SB3_POLICY_MODULES:
        return _SB3_POLICY_MODULES[module]
    if module == "stable_baselines3.common.policies":
        return "PPO" if "clip_range" in data else "A2C"
    raise PolicySpecError(f"{str(path)!r} was saved by an unsupported policy class from {module!r}")


def load_sb3_policy(path: Path, algorithm: str, device: str = "cpu", allow_code: bool = False) -> Any:
    """The policy network of the SB3 checkpoint ``path`` (an SB3 ``BasePolicy``), in evaluation mode.

    The network is built from the checkpoint's own description, read without running code
    (:mod:`imaginarium.sb3_archive`), and given its saved weights (``weights_only``); the rest of the
    archive (optimiser states, the algorithm) is not read. Only with ``allow_code`` may a checkpoint
    that cannot be rebuilt so be loaded the way SB3 loads it, which unpickles whatever the file holds.
    Loaded networks are kept (by path, size, modification time and the weights' checksum) and shared
    by every policy that names the file, since rankings name one checkpoint many times (``@noise=``
    variants): acting changes nothing in them, and callers must not train or move them.

    :raises PolicySpecError: when the checkpoint cannot be loaded safely (and SB3 cannot load it
        either, where code is allowed).
    """
    path = path.resolve()
    stat = path.stat()
    try:  # the weights' checksum, from the archive's directory: a save within one mtime tick differs
        with zipfile.ZipFile(path) as archive:
            checksum = archive.getinfo("policy.pth").CRC
    except (zipfile.BadZipFile, KeyError, OSError):
        checksum = None
    return _load_sb3_policy(
        str(path), stat.st_size, stat.st_mtime_ns, checksum, algorithm, device, allow_code
    )


@functools.lru_cache(maxsize=64)
def _load_sb3_policy(
    path: str,
    size: int,
    modified: int,
    checksum: int | None,
    algorithm: str,
    device: str,
    allow_code: bool,
) -> Any:
    try:
        policy = _rebuild_sb3_policy(path, device)
    except UnsafeArchiveError:
        if not allow_code:
            raise
        policy = _sb3_own_load(path, algorithm, device, "it names globals outside the allowlist")
    except PolicySpecError as reason:
        if not allow_code:
            raise PolicySpecError(
                f"{reason}; SB3's own loader might read it, but it runs code the file holds: "
                "pass --allow-code (allow_code=True in Python) if you trust the file"
            ) from None
        policy = _sb3_own_load(path, algorithm, device, str(reason))
    policy.set_training_mode(False)
    return policy


def _rebuild_sb3_policy(path: str, device: str) -> Any:
    """The policy network built from the archive's description and loaded with its weights alone.

    :raises UnsafeArchiveError: the description names a global outside the allowlist.
    :raises PolicySpecError: the network cannot be rebuilt from it, or the weights do not fit.
    """
    import inspect

    import torch

    description = read_policy_description(path)
    missing = [
        field for field in ("policy_class", "observation_space", "action_space") if field not in description
    ]
    if missing:
        raise PolicySpecError(f"SB3 checkpoint {path!r} lacks {missing[0]!r}")
    options = description.get("policy_kwargs") or {}
    if not isinstance(options, dict):
        raise PolicySpecError(f"SB3 checkpoint {path!r} has policy_kwargs that are not a mapping")
    options = dict(options)
    policy_class = description["policy_class"]
    from stable_baselines3.common.policies import BasePolicy

    if not (isinstance(policy_class, type) and issubclass(policy_class, BasePolicy)):
        raise PolicySpecError(f"SB3 checkpoint {path!r} names {policy_class!r} as its policy class")
    for field in ("observation_space", "action_space"):
        if not isinstance(description[field], gym.Space):
            raise PolicySpecError(f"SB3 checkpoint {path!r} has {description[field]!r} as its {field}")
    if "use_sde" in description and "use_sde" in inspect.signature(policy_class).parameters:
        options.setdefault("use_sde", description["use_sde"])  # on-policy agents pass it beside the kwargs
    try:
        with zipfile.ZipFile(path) as archive:
            weights = torch.load(
                io.BytesIO(archive.read("policy.pth")), map_location=device, weights_only=True
            )
        policy = policy_class(
            description["observation_space"], description["action_space"], lambda _: 0.0, **options
        )
        policy.load_state_dict(weights, assign=True)  # strict: a network built otherwise is refused
    except Exception as error:  # torch and SB3 raise many kinds for archives that do not fit
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PolicySpecError(f"cannot rebuild the policy of SB3 checkpoint {path!r}: {first}") from None
    return policy.to(device)


def _sb3_own_load(path: str, algorithm: str, device: str, reason: str) -> Any:
    """The policy of ``algorithm.load(path)``: SB3's loader, which unpickles the whole archive."""
    import stable_baselines3

    LOGGER.warning("SB3 checkpoint %s loaded by SB3's own loader (code allowed): %s", path, reason)
    try:
        return getattr(stable_baselines3, algorithm).load(path, device=device).policy
    except Exception as error:  # SB3 surfaces many error kinds from torch and zip loading
        raise PolicySpecError(f"cannot load SB3 checkpoint {path!r}: {error}") from None


def forget_loaded_sb3_policies() -> None:
    """Drop the networks :func:`load_sb3_policy` keeps, so the next load reads its file again."""
    _load_sb3_policy.cache_clear()


def check_policy_spaces(
    policy: Any, observation_space: gym.Space, action_space: gym.Space, name: str
) -> None:
    """Refuse a loaded ``policy`` whose spaces cannot stand for the ones it must act in.

    :raises PolicySpecError: naming ``name``, the space and why.
    """
    for what, theirs, ours in (
        ("observation", policy.observation_space, observation_space),
        ("action", policy.action_space, action_space),
    ):
        problem = space_mismatch(theirs, ours, compare_bounds=what == "action")
        if problem:
            raise PolicySpecError(f"{name} has {what} space {theirs}, expected {ours} ({problem})")


class SB3Policy:
    """A Stable-Baselines3 agent acting deterministically on a batch of observations.

    Only the agent's policy network is loaded (:func:`load_sb3_policy`): ranking and evaluation load
    many checkpoints, and the whole algorithm (its optimisers' state, a SAC's replay buffer) would
    cost three times as long for nothing it acts with.
    """

    @classmethod
    def from_agent(cls, agent: Any) -> SB3Policy:
        """An agent already in memory (e.g. while it trains) as a policy."""
        policy = cls.__new__(cls)
        policy.path, policy.algorithm, policy.policy = None, type(agent).__name__, agent.policy
        return policy

    def __init__(self, path: str | Path, device: str = "cpu", allow_code: bool = False) -> None:
        self.path = Path(path)
        self.algorithm = detect_sb3_algorithm(self.path)
        self.policy = load_sb3_policy(self.path, self.algorithm, device, allow_code)

    @property
    def observation_space(self) -> gym.Space:
        """What the agent acts on: frames channel-last, as envs give them (SB3 keeps them channel-first
        inside a ``CnnPolicy`` and transposes what it is given)."""
        from stable_baselines3.common.preprocessing import is_image_space

        space = self.policy.observation_space
        if is_image_space(space, check_channels=True) and space.shape[0] in (1, 3, 4):
            channels, height, width = space.shape
            return gym.spaces.Box(0, 255, (height, width, channels), space.dtype)
        return space

    @property
    def action_space(self) -> gym.Space:
        return self.policy.action_space

    def act(self, observations: np.ndarray) -> np.ndarray:
        """What ``model.predict(observations, deterministic=True)`` gives, without its per-call walk
        over every module to set evaluation mode (a third of the call on small policies) and, for a
        batch of state vectors, without its checks of the batch's shape."""
        import torch

        policy = self.policy
        if policy.training:
            policy.set_training_mode(False)
        space = policy.observation_space
        core = None
        if (
            isinstance(space, gym.spaces.Box)
            and len(space.shape) == 1
            and np.shape(observations)[1:] == space.shape
        ):
            tensor = torch.as_tensor(np.ascontiguousarray(observations), device=policy.device)
            vectorized = True
            if not hasattr(self, "_core"):  # an agent given by from_agent keeps its layers as it learns
                self._core = _deterministic_core(policy)
            core = self._core
        else:
            tensor, vectorized = policy.obs_to_tensor(observations)
        with torch.no_grad():
            actions = policy._predict(tensor, deterministic=True) if core is None else core(tensor)
        actions = actions.cpu().numpy().reshape((-1, *policy.action_space.shape))
        if isinstance(policy.action_space, gym.spaces.Box):
            if policy.squash_output:
                actions = policy.unscale_action(actions)
            else:
                actions = np.clip(actions, policy.action_space.low, policy.action_space.high)
        return actions if vectorized else actions.squeeze(axis=0)

    def reset(self, slots: np.ndarray) -> None:
        pass


def _deterministic_core(policy: Any) -> Callable[[Any], Any] | None:
    """The deterministic action of the common SB3 policies on a batch of state vectors, as the few
    layers it comes from; ``None`` for any other policy (which then acts through SB3's ``_predict``).

    SB3 reaches the same numbers through a features extractor that only flattens, a distribution
    built and discarded, and a dozen wrapper calls: twice the time of the layers on 64 rows, paid by
    every policy at every imagined step of a ranking.
    """
    from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    if isinstance(policy, SACPolicy | TD3Policy | DQNPolicy):
        network = policy.q_net if isinstance(policy, DQNPolicy) else policy.actor
        if not isinstance(network.features_extractor, FlattenExtractor):
            return None
        if isinstance(policy, DQNPolicy):
            return lambda states: network.q_net(states.float()).argmax(dim=1)
        if isinstance(policy, TD3Policy):
            return lambda states: network.mu(states.float())
        if network.use_sde:
            return None
        return lambda states: network.mu(network.latent_pi(states.float())).tanh()
    if (
        isinstance(policy, ActorCriticPolicy)
        and isinstance(policy.pi_features_extractor, FlattenExtractor)
        and not policy.use_sde
    ):
        if type(policy.action_dist) is DiagGaussianDistribution:
            return lambda states: policy.action_net(policy.mlp_extractor.forward_actor(states.float()))
        if type(policy.action_dist) is CategoricalDistribution:
            return lambda states: _finite(
                policy.action_net(policy.mlp_extractor.forward_actor(states.float()))
            ).argmax(dim=1)
    return None


def _finite(logits: Any) -> Any:
    """``logits``, or the error SB3's categorical distribution raises where they are not finite."""
    import torch

    if not bool(torch.isfinite(logits).all()):
        raise ValueError("the policy's action logits are not finite")
    return logits


class NoisyPolicy:
    """Another policy with action noise, so one agent yields experience of graded quality."""

    def __init__(self, base: Policy, action_space: gym.Space, scale: float, seed: int | None = None) -> None:
        if not 0.0 <= scale <= (1.0 if isinstance(action_space, gym.spaces.Discrete) else np.inf):
            raise PolicySpecError(f"noise must be ≥ 0 (and ≤ 1 for discrete actions), got {scale}")
        self.base, self.action_space, self.scale = base, action_space, scale
        self.rng = np.random.default_rng(seed)

    def act(self, observations: np.ndarray) -> np.ndarray:
        actions = self.base.act(observations)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            replace = self.rng.random(len(actions)) < self.scale
            random_actions = self.rng.integers(space.start, space.start + space.n, size=len(actions))
            return np.where(replace, random_actions, actions)
        half_range = (space.high - space.low) / 2.0
        noisy = actions + self.rng.normal(size=actions.shape) * self.scale * half_range
        return np.clip(noisy, space.low, space.high).astype(space.dtype)

    def reset(self, slots: np.ndarray) -> None:
        self.base.reset(slots)


class MixturePolicy:
    """Each episode is acted by one component policy, drawn per episode with the given weights."""

    def __init__(self, components: list[Policy], weights: list[float], seed: int | None = None) -> None:
        weights_array = np.asarray(weights, dtype=np.float64)
        if len(components) != len(weights_array) or not np.all(
            np.isfinite(weights_array) & (weights_array > 0)
        ):
            raise PolicySpecError(f"mixture weights must be positive, one per component, got {weights}")
        self.components = components
        self.probabilities = weights_array / weights_array.sum()
        self.rng = np.random.default_rng(seed)
        self.slot_component = np.zeros(0, dtype=np.int64)

    def reset(self, slots: np.ndarray) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) and slots.max() >= len(self.slot_component):
            grown = np.zeros(slots.max() + 1, dtype=np.int64)
            grown[: len(self.slot_component)] = self.slot_component
            self.slot_component = grown
        self.slot_component[slots] = self.rng.choice(
            len(self.components), size=len(slots), p=self.probabilities
        )
        for component in self.components:
            component.reset(slots)

    def act(self, observations: np.ndarray) -> np.ndarray:
        if len(self.slot_component) < len(observations):
            self.reset(np.arange(len(self.slot_component), len(observations)))
        chosen = self.slot_component[: len(observations)]
        actions: np.ndarray | None = None
        for index, component in enumerate(self.components):
            rows = np.flatnonzero(chosen == index)
            if len(rows) == 0:
                continue
            part = np.asarray(component.act(observations[rows]))
            if actions is None:
                actions = np.empty((len(observations), *part.shape[1:]), dtype=part.dtype)
            actions[rows] = part
        assert actions is not None
        return actions


class TorchScriptPolicy:
    """A TorchScript module acting on a batch of observations (CPU, no gradients)."""

    def __init__(self, path: str | Path, action_space: gym.Space) -> None:
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise PolicySpecError(f"TorchScript policy {str(self.path)!r} not found")
        try:
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as error:  # torch raises RuntimeError, ValueError and more for bad archives
            raise PolicySpecError(f"cannot load TorchScript module {str(self.path)!r}: {error}") from None
        self.action_space = action_space

    def act(self, observations: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            output = self.module(torch.as_tensor(np.asarray(observations), dtype=torch.float32))
        actions = output.detach().cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Discrete) and actions.ndim == 2:
            return actions.argmax(axis=1)
        return actions

    def reset(self, slots: np.ndarray) -> None:
        pass


class CallablePolicy:
    """``module:function`` imported and called on each batch of observations."""

    def __init__(self, target: str) -> None:
        import importlib

        module_name, _, function_name = target.partition(":")
        if not module_name or not function_name:
            raise PolicySpecError(f"expected 'py:MODULE:FUNCTION', got 'py:{target}'")
        try:
            self.function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise PolicySpecError(f"cannot import policy function {target!r}: {error}") from None
        if not callable(self.function):
            raise PolicySpecError(f"{target!r} is not callable")

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(self.function(observations))

    def reset(self, slots: np.ndarray) -> None:
        pass


def load_policy(
    source: str | Path,
    observation_space: gym.Space,
    action_space: gym.Space,
    seed: int = 0,
    allow_code: bool = False,
) -> Policy:
    """The policy ``source`` names (grammar in the module docstring), checked against the spaces it
    must act in.

    :param allow_code: accept policies that run code when loaded (``py:`` callables, SB3 files
        outside the safe loader's allowlist).
    :raises PolicySpecError: with the offending part of the spec, for anything that does not parse,
        is missing or unreadable, or does not fit the spaces.
    """
    spec = str(source).strip()
    if not spec:
        raise PolicySpecError("empty policy spec: expected e.g. 'random' or 'sb3:agent.zip@noise=0.2'")
    return _load_spec(spec, observation_space, action_space, np.random.SeedSequence(seed), allow_code)


def _load_spec(
    spec: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    seeds: np.random.SeedSequence,
    allow_code: bool,
) -> Policy:
    """A whole spec: a shield around a spec, a mixture of components, or one component."""
    if spec.startswith("shield:"):
        return _shield(spec, observation_space, action_space, seeds, allow_code)
    parts = split_spec(spec)
    if len(parts) == 1 and "*" not in spec:
        return _load_component(parts[0][1], observation_space, action_space, seeds, allow_code)
    components, weights = [], []
    for (weight_text, component_spec), child_seed in zip(parts, seeds.spawn(len(parts)), strict=True):
        try:
            weights.append(float(weight_text))
        except ValueError:
            raise PolicySpecError(f"mixture weight {weight_text!r} in {spec!r} is not a number") from None
        components.append(
            _load_component(component_spec, observation_space, action_space, child_seed, allow_code)
        )
    return MixturePolicy(components, weights, seed=int(seeds.generate_state(1)[0]))


def split_spec(spec: str) -> list[tuple[str, str]]:
    """A spec's mixture parts as ``(weight, component)`` texts, split but not checked (a part with no
    weight has ``"1"``); a spec that is no mixture is one part."""
    parts = []
    for part in (part.strip() for part in spec.strip().split("+")):
        weight_text, star, component = part.partition("*")
        parts.append((weight_text, component.strip()) if star else ("1", part))
    return parts


@dataclass(frozen=True)
class SourceRequest:
    """What a policy source builds its policy from: the spec's text after ``KIND:``, the spaces the
    policy must act in, a seed, whether loading may run code, and the options after ``@`` other than
    ``noise``."""

    argument: str
    observation_space: gym.Space
    action_space: gym.Space
    seed: int
    allow_code: bool
    options: dict[str, Any]

    def no_options(self) -> None:
        """Refuse options, for the sources that take none."""
        if self.options:
            raise PolicySpecError(
                f"unknown policy option {sorted(self.options)[0]!r}; this kind of policy takes only noise"
            )

    def check(self, policy: Any, name: str) -> None:
        """Refuse a loaded policy whose spaces do not fit (:func:`check_policy_spaces`)."""
        check_policy_spaces(policy, self.observation_space, self.action_space, name)


def _random(request: SourceRequest) -> Policy:
    request.no_options()
    return RandomPolicy(request.action_space, seed=request.seed)


def _sb3(request: SourceRequest) -> Policy:
    request.no_options()
    policy = SB3Policy(request.argument, allow_code=request.allow_code)
    request.check(policy, f"SB3 agent {request.argument!r}")
    return policy


def _torchscript(request: SourceRequest) -> Policy:
    request.no_options()
    return TorchScriptPolicy(request.argument, request.action_space)


def _dreamer(request: SourceRequest) -> Policy:
    request.no_options()
    # A Dreamer actor filters observations through its world model: agents and models sit above this
    # module (collect, which needs policies, comes before them in the chain), so they load on demand.
    from imaginarium.agents.dreamer import DreamerPolicy

    try:
        policy = DreamerPolicy(request.argument)
    except ImaginariumError as error:
        raise PolicySpecError(f"cannot load Dreamer agent {request.argument!r}: {error}") from None
    request.check(policy, f"Dreamer agent {request.argument!r}")
    return policy


def _callable(request: SourceRequest) -> Policy:
    request.no_options()
    if not request.allow_code:
        raise PolicySpecError(
            f"policy 'py:{request.argument}' imports and runs Python code; allow it explicitly "
            "(--allow-code on the command line, allow_code=True in Python)"
        )
    return CallablePolicy(request.argument)


def _planner(request: SourceRequest) -> Policy:
    # The planner imagines in a world model, which sits above this module in the chain (as for dreamer:).
    from imaginarium.agents.planner import Planner, planner_config
    from imaginarium.models import load_world_model

    try:
        config = planner_config(
            {"seed": request.seed, **request.options}, where=f"policy 'plan:{request.argument}'"
        )
    except ImaginariumError as error:
        raise PolicySpecError(str(error)) from None
    try:
        model = load_world_model(request.argument)
    except ImaginariumError as error:
        raise PolicySpecError(f"cannot load the planner's model {request.argument!r}: {error}") from None
    try:
        policy = Planner(model, config)
    except ImaginariumError as error:
        raise PolicySpecError(f"policy 'plan:{request.argument}': {error}") from None
    request.check(policy, f"the planner's model {request.argument!r}")
    return policy


def _shield(
    spec: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    seeds: np.random.SeedSequence,
    allow_code: bool,
) -> Policy:
    """``shield:MODEL_DIR[@OPTIONS]:POLICY_SPEC``: the policy, with the planner of the model stepping
    in where the model foresees the episode ending (:mod:`imaginarium.agents.shield`); the options are
    the shield's and the planner's."""
    import dataclasses

    from imaginarium.agents.planner import PlannerConfig
    from imaginarium.agents.shield import ShieldConfig, ShieldPolicy

    head, colon, inner = spec.removeprefix("shield:").partition(":")
    model_dir, _, options_text = head.partition("@")
    if not colon or not model_dir.strip() or not inner.strip():
        raise PolicySpecError(f"expected 'shield:MODEL_DIR[@OPTIONS]:POLICY_SPEC', got {spec!r}")
    options = _parse_options(options_text, spec)
    shield_fields = {field.name for field in dataclasses.fields(ShieldConfig)}
    planner_fields = {field.name for field in dataclasses.fields(PlannerConfig)}
    unknown = set(options) - shield_fields - planner_fields
    if unknown:
        raise PolicySpecError(
            f"unknown shield option {sorted(unknown)[0]!r} in {spec!r}; known: "
            f"{', '.join(sorted(shield_fields))} and the planner's ({', '.join(sorted(planner_fields))})"
        )
    base_seeds, planner_seeds = seeds.spawn(2)
    base = _load_spec(inner.strip(), observation_space, action_space, base_seeds, allow_code)
    planner_options = {key: value for key, value in options.items() if key in planner_fields}
    planner_seed = int(planner_seeds.generate_state(1)[0])
    planner = _planner(
        SourceRequest(
            model_dir.strip(), observation_space, action_space, planner_seed, allow_code, planner_options
        )
    )
    try:
        config = config_from_dict(
            ShieldConfig,
            {key: _shield_value(key, value) for key, value in options.items() if key in shield_fields},
            where=f"shield options of {spec!r}",
        )
        return ShieldPolicy(base, planner, config)
    except ImaginariumError as error:
        raise PolicySpecError(str(error)) from None


def _shield_value(key: str, value: Any) -> Any:
    """A shield option as its field's type: ``outside`` a switch (1/0, true/false), ``risk`` a number,
    the others counts (checked by the config)."""
    if key == "outside":
        switch = {"1": True, "0": False, "true": True, "false": False}
        return switch.get(str(value).lower().removesuffix(".0"), value)
    if key == "risk" or not isinstance(value, float) or not value.is_integer():
        return value
    return int(value)


PolicySource = Callable[[SourceRequest], Policy]

#: the kinds of policy a spec can name, ``KIND:ARGUMENT@OPTIONS``: each builds the policy a
#: :class:`SourceRequest` describes, refusing options it does not know. ``random`` takes no argument.
POLICY_SOURCES: dict[str, PolicySource] = {
    "random": _random,
    "sb3": _sb3,
    "torchscript": _torchscript,
    "dreamer": _dreamer,
    "py": _callable,
    "plan": _planner,
}

#: file suffixes taken for TorchScript modules when a bare path names a policy
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")


def _kind_of_path(text: str) -> str | None:
    """The source kind of a bare path, from its contents; ``None`` when no such file or folder.

    :raises PolicySpecError: a file of no kind a policy can be.
    """
    path = Path(text)
    if path.is_file():
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
        if "data" in names:  # SB3 writes its JSON description as the archive's "data" entry
            return "sb3"
        if path.suffix.lower() in TORCHSCRIPT_SUFFIXES or any(name.endswith("/data.pkl") for name in names):
            return "torchscript"
        raise PolicySpecError(
            f"cannot tell what kind of policy {text!r} is: expected an SB3 .zip, a TorchScript module "
            f"({', '.join(TORCHSCRIPT_SUFFIXES)}) or a Dreamer folder"
        )
    if (path / "dreamer.json").is_file():
        return "dreamer"
    if path.suffix.lower() in (".zip", *TORCHSCRIPT_SUFFIXES):
        raise PolicySpecError(f"policy file {text!r} not found")
    return None


def _load_component(
    spec: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    seeds: np.random.SeedSequence,
    allow_code: bool,
) -> Policy:
    if spec.startswith("shield:"):  # a mixture's component
        return _shield(spec, observation_space, action_space, seeds, allow_code)
    base_spec, _, options_text = spec.partition("@")
    options = _parse_options(options_text, spec)
    policy_seed, noise_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(2))
    kind, colon, argument = base_spec.partition(":")
    if kind not in POLICY_SOURCES or (kind == "random") != (not colon):
        kind, argument = _kind_of_path(base_spec) or "", base_spec
    if kind not in POLICY_SOURCES or (kind != "random" and not argument):
        raise PolicySpecError(
            f"unknown policy {base_spec!r}: expected 'random', a policy file or folder, or "
            f"{', '.join(f'{name}:...' for name in POLICY_SOURCES if name != 'random')}, "
            "optionally with '@noise=S'"
        )
    noise = options.pop("noise", None)
    try:
        policy = POLICY_SOURCES[kind](
            SourceRequest(argument, observation_space, action_space, policy_seed, allow_code, options)
        )
    except PolicySpecError as error:
        if str(error).startswith("unknown policy option"):
            raise PolicySpecError(f"{error} (in {spec!r})") from None
        raise
    if noise is not None:
        if isinstance(noise, str):
            raise PolicySpecError(f"policy option 'noise' in {spec!r} needs a number, got {noise!r}")
        policy = NoisyPolicy(policy, action_space, noise, seed=noise_seed)
    return policy


def policy_name(source: str | Path) -> str:
    """A short name for reports: a policy file's stem (a folder's name), or the spec with each path in
    it shortened to its stem (``sb3:zoo/sac_10k.zip@noise=0.3`` -> ``sac_10k@noise=0.3``); a planner's
    or a shield's model keeps its kind (``plan:models/pendulum@horizon=20`` -> ``plan:pendulum@horizon=20``)."""
    text = str(source).strip()
    path = Path(text)
    if path.is_file() or (path / "dreamer.json").is_file():
        return path.name if path.is_dir() else path.stem
    text = re.sub(r"(plan|shield):([^@+:\s]+)", lambda match: f"{match[1]}:{Path(match[2]).name}", text)
    return re.sub(r"(?:sb3|torchscript|dreamer):([^@+\s]+)", lambda match: Path(match.group(1)).stem, text)


def _parse_options(text: str, spec: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals:
            raise PolicySpecError(f"policy option {item!r} in {spec!r} must look like key=value")
        value = value.strip()
        try:
            options[key.strip()] = float(value)
        except ValueError:
            options[key.strip()] = value  # a word (``method=cem``); sources check their own options
    return options
