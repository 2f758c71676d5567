"""What every study and benchmark script shares: its config from the command line, its JSON report."""

from __future__ import annotations

import argparse
import json
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


def parse_config(config_class: type[ConfigT], description: str) -> ConfigT:
    """One ``--flag`` per field of the script's config dataclass, defaulting to the field's default.

    A default path under ``experiments/`` is made absolute from the repository's root; a path given on
    the command line is the user's, relative to where they are.
    """
    parser = argparse.ArgumentParser(description=description)
    for field, default in asdict(config_class()).items():  # type: ignore[call-overload]
        if isinstance(default, str) and default.startswith("experiments/"):
            default = str(ROOT / default)
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    return config_class(**vars(parser.parse_args()))


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
