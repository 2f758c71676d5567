"""Ray Tune callbacks that break a search on purpose, for the search tests (run on the driver)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from ray.tune import Callback


class KillsFirstTrial(Callback):
    """SIGKILLs the process of the first trial that reports (as an out-of-memory kill would)."""

    def __init__(self) -> None:
        self.killed: str | None = None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.killed is None:
            self.killed = trial.trial_id
            os.kill(result["pid"], signal.SIGKILL)


class InterruptsOnce(Callback):
    """Sends Ctrl+C (SIGINT) to this process at a trial's second result, once per ``marker`` file
    (the first result's checkpoint is registered by then; the one just reported is not)."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result["training_iteration"] >= 2 and not self.marker.exists():
            self.marker.write_text(trial.trial_id)
            signal.raise_signal(signal.SIGINT)
