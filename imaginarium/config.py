"""Configuration as frozen dataclasses: defaults in code, overrides from YAML or keyword arguments.

Unknown keys are an error, named in the message, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from pathlib import Path
from typing import Any, TypeVar

import yaml

from imaginarium.errors import ImaginariumError

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], values: dict[str, Any] | None, where: str = "config") -> ConfigT:
    """Build ``cls`` from ``values``, refusing unknown keys and values of the wrong kind.

    :param where: names the source in error messages (a file path, ``--set``).
    """
    if values is not None and not isinstance(values, dict):
        raise ImaginariumError(f"{where} must be a mapping of keys to values, got {values!r}")
    values = dict(values or {})
    known = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ImaginariumError(
            f"unknown key {unknown[0]!r} in {where} for {cls.__name__}; known keys: {', '.join(sorted(known))}"
        )
    defaults = cls()
    for key, value in values.items():
        values[key] = _coerce(key, value, type(getattr(defaults, key)), where)
    return dataclasses.replace(defaults, **values)  # type: ignore[type-var]


def _coerce(key: str, value: Any, expected: type, where: str) -> Any:
    """``value`` as the type of the field's default, or an error naming the key.

    YAML 1.1 reads ``1e-3`` as a string, so numbers given as strings are parsed; a bool is never
    taken for a number.
    """
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if expected in (int, float) and not isinstance(value, bool):
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value) if expected is float else int(value)
        if expected is float and isinstance(value, int):
            return float(value)
    if expected in (int, float, str, bool) and (
        not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))
    ):
        raise ImaginariumError(f"{where}: {key!r} must be {expected.__name__}, got {value!r}")
    return value


def check_number(
    value: Any,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
    allow_inf: bool = False,
    where: str = "",
) -> None:
    """Refuse ``value`` unless it is a number (an integer when ``integer``; finite unless ``allow_inf``)
    within the bounds given, so a meaningless setting fails where it enters instead of deep in torch.

    NaN passes every comparison, so a lone ``< 0`` check lets it through; this refuses it by name.

    :param where: names the config in the message (``"train config: 'steps' must be ..."``).
    :raises ImaginariumError: naming the option, the value and the expected range.
    """
    low = above if above is not None else at_least
    high = below if below is not None else at_most
    if integer and low == 1 and high is None and above is None:
        expected = "a positive integer"
    else:
        kind = "an integer" if integer else "a number" if allow_inf else "a finite number"
        if low is not None and high is not None:
            left, right = "(" if above is not None else "[", ")" if below is not None else "]"
            expected = f"{kind} in {left}{low:g}, {high:g}{right}"
        elif low is not None:
            expected = f"{kind} {'>' if above is not None else '≥'} {low:g}"
        elif high is not None:
            expected = f"{kind} {'<' if below is not None else '≤'} {high:g}"
        else:
            expected = kind
    label = f"{where}: {name!r}" if where else name
    is_number = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(
        value, bool
    )
    number = float(value) if is_number else math.nan
    if (
        math.isnan(number)
        or (math.isinf(number) and not allow_inf)
        or (above is not None and number <= above)
        or (at_least is not None and number < at_least)
        or (below is not None and number >= below)
        or (at_most is not None and number > at_most)
    ):
        shown = value if is_number else repr(value)
        raise ImaginariumError(f"{label} must be {expected}, got {shown}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing file or a document that is not a mapping."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ImaginariumError(f"cannot read config {str(path)!r}: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ImaginariumError(f"config {str(path)!r} must be a mapping of keys to values")
    return loaded


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass."""
    return {key: list(v) if isinstance(v, tuple) else v for key, v in dataclasses.asdict(config).items()}
