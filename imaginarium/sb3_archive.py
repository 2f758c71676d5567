"""Reading a Stable-Baselines3 ``.zip`` without running anything it holds.

SB3 stores an agent's description in the archive's ``data`` entry as JSON, with every value that is
not plain JSON (the policy class, the spaces, ``policy_kwargs``) cloudpickled in it. Unpickling runs
whatever callables the pickle names, so SB3's own loader executes code a checkpoint's author chose.
Here only the fields needed to rebuild the policy network are unpickled, by an unpickler that
resolves nothing outside an explicit allowlist: SB3 policy and feature-extractor classes, Gymnasium
spaces, torch activations and optimisers, numpy arrays and dtypes, and a few builtins. Anything else
is refused with an :class:`UnsafeArchiveError` naming the global.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

from imaginarium.errors import PolicySpecError

# What rebuilding a policy network reads; the rest of ``data`` (schedules, buffers, custom fields) is
# never unpickled.
POLICY_FIELDS = ("policy_class", "observation_space", "action_space", "policy_kwargs", "use_sde")

_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "range", "set"}
    | {"slice", "str", "tuple"}
)
# numpy's array and scalar reconstructors (under both the 1.x and 2.x module names) and the bit
# generators a seeded space carries.
_NUMPY = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy.random._pcg64", "PCG64DXSM"),
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._philox", "Philox"),
        ("numpy.random._sfc64", "SFC64"),
        ("numpy.random._generator", "Generator"),
        ("numpy.random.bit_generator", "SeedSequence"),
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
    }
)
_SB3_POLICY_MODULES = frozenset(
    f"stable_baselines3.{name}.policies" for name in ("common", "ppo", "a2c", "sac", "td3", "dqn")
)


class UnsafeArchiveError(PolicySpecError):
    """A checkpoint names a global outside the allowlist: loading it could run code."""


def _allowed_class(module: str, name: str) -> Any | None:
    """The class ``module.name`` if it is of a kind a policy description may name, else ``None``."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    kinds: tuple[type, ...]
    if module in _SB3_POLICY_MODULES:
        kinds = (BasePolicy,)
    elif module == "stable_baselines3.common.torch_layers":
        kinds = (BaseFeaturesExtractor,)
    elif module == "torch.nn.modules.activation":
        kinds = (torch.nn.Module,)
    elif module.startswith("torch.optim."):
        kinds = (torch.optim.Optimizer,)
    elif module.startswith("gymnasium.spaces."):
        kinds = (gym.spaces.Space,)
    else:
        return None
    if "." in name:
        return None
    found = getattr(importlib.import_module(module), name, None)
    return found if isinstance(found, type) and issubclass(found, kinds) else None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a policy description needs."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        try:
            found = _allowed_class(module, name)
        except ImportError:
            found = None
        if found is None:
            raise UnsafeArchiveError(f"{module}.{name}")
        return found


def _unpickle(field: str, value: Any, path: Path) -> Any:
    """``value`` as SB3 stored it: plain JSON as is, a cloudpickled value through the allowlist."""
    if not (isinstance(value, dict) and ":serialized:" in value):
        return value
    try:
        payload = base64.b64decode(value[":serialized:"], validate=True)
        return RestrictedUnpickler(io.BytesIO(payload)).load()
    except UnsafeArchiveError as refused:
        raise UnsafeArchiveError(
            f"refusing to load SB3 checkpoint {str(path)!r}: its {field!r} names {refused}, which is "
            "not a policy, space, activation, optimiser or array type, and loading it could run code; "
            "pass --allow-code (allow_code=True in Python) if you trust the file"
        ) from None
    except (pickle.UnpicklingError, binascii.Error, EOFError, ValueError, TypeError) as error:
        raise PolicySpecError(f"SB3 checkpoint {str(path)!r} has an unreadable {field!r}: {error}") from None


def read_policy_description(path: str | Path) -> dict[str, Any]:
    """The fields of an SB3 archive's ``data`` that rebuild its policy (:data:`POLICY_FIELDS`),
    decoded without running code; fields the archive lacks are left out.

    :raises UnsafeArchiveError: a field names a global outside the allowlist.
    :raises PolicySpecError: the archive or a field cannot be read.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise PolicySpecError(f"{str(path)!r} is not a Stable-Baselines3 checkpoint: {error}") from None
    if not isinstance(data, dict):
        raise PolicySpecError(f"{str(path)!r} is not a Stable-Baselines3 checkpoint: 'data' is no mapping")
    return {field: _unpickle(field, data[field], path) for field in POLICY_FIELDS if field in data}
