"""What every study and benchmark script shares: its config from the command line, its JSON report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch

ConfigT = TypeVar("ConfigT")

#: the repository's root: default paths (``experiments/results/...``) are taken from here, so a script
#: run from inside ``experiments/`` writes where one run from the root does
ROOT = Path(__file__).resolve().parent.parent
#: ``1`` in a smoke run: set by ``--smoke``, and so inherited by the scripts ``bench.py`` starts; the
#: caches of :mod:`experts` and :mod:`zoo` read it too
SMOKE_ENV = "IMAGINARIUM_SMOKE"
#: where default outputs and caches go instead of ``experiments/results`` (the smoke test's tmp_path)
RESULTS_ENV = "IMAGINARIUM_RESULTS"


def smoke() -> bool:
    """Whether this is a smoke run: every count at the least that still runs each code path."""
    return os.environ.get(SMOKE_ENV) == "1"


def start_smoke() -> None:
    """Make this process, and those it starts, a smoke run."""
    os.environ[SMOKE_ENV] = "1"


def results_dir() -> Path:
    """Where default outputs and caches go: ``$IMAGINARIUM_RESULTS``, else ``experiments/results``, or
    ``experiments/results/smoke`` in a smoke run, so its tiny agents and models never stand in for a
    study's."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).resolve()
    return ROOT / "experiments" / "results" / ("smoke" if smoke() else "")


def _default(value: Any) -> Any:
    """A default path under ``experiments/results/`` moved into :func:`results_dir`, one elsewhere under
    ``experiments/`` made absolute from the repository's root; any other value as it is."""
    if isinstance(value, str) and value.startswith("experiments/results/"):
        return str(results_dir() / value.removeprefix("experiments/results/"))
    if isinstance(value, str) and value.startswith("experiments/"):
        return str(ROOT / value)
    return value


def _defaults(config_class: type[ConfigT]) -> dict[str, Any]:
    """The config's field defaults with paths resolved, and its ``SMOKE`` sizes over them in a smoke run."""
    values = asdict(config_class())  # type: ignore[call-overload]
    if smoke():
        values.update(getattr(config_class, "SMOKE", {}))
    return {field: _default(value) for field, value in values.items()}


def default_config(config_class: type[ConfigT]) -> ConfigT:
    """A config as a run with no flags gets it: for a study that uses another's settings."""
    return config_class(**_defaults(config_class))


def parse_config(config_class: type[ConfigT], description: str) -> ConfigT:
    """One ``--flag`` per field of the script's config dataclass, defaulting to the field's default.

    A default path under ``experiments/results/`` lands in :func:`results_dir`, one elsewhere under
    ``experiments/`` is made absolute from the repository's root; a path given on the command line is
    the user's, relative to where they are. A config class with ``SMOKE`` sizes (a ``ClassVar``) takes
    ``--smoke``: those sizes become the defaults (flags given still win) and the outputs default to
    ``experiments/results/smoke/``.
    """
    parser = argparse.ArgumentParser(description=description)
    if hasattr(config_class, "SMOKE"):
        parser.add_argument("--smoke", action="store_true", help="the smallest run that exercises every path")
        first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --smoke sets the defaults
        first.add_argument("--smoke", action="store_true")
        if first.parse_known_args()[0].smoke:
            start_smoke()
    defaults = _defaults(config_class)
    for field in dataclasses.fields(config_class):  # type: ignore[arg-type]
        default = defaults[field.name]
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    values = vars(parser.parse_args())
    values.pop("smoke", None)
    return config_class(**values)


def machine() -> dict[str, Any]:
    """Where the figures were measured: these machines are shared, so say which one."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON, marked ``"smoke": true`` in a smoke run so it is never taken for a figure."""
    if smoke():
        report = {"smoke": True, **report}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def calls_per_second(call: Callable[[], object], seconds: float, warmup: int = 3) -> float:
    """How many times a second ``call`` runs, timed for about ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        calls += 1
    return calls / (time.perf_counter() - started)


def is_trained(folder: str | Path) -> bool:
    """Whether ``folder`` holds a model whose training finished (studies reuse it instead of retraining)."""
    from imaginarium.models.checkpoint import read_card

    return (Path(folder) / "model_card.json").exists() and read_card(folder).get("status") == "trained"
