"""Progress of long work, told through a callback the caller chooses (SB3's ``BaseCallback`` is the
model): the stages report how far they are and never draw anything themselves.

``progress=True`` in any API is the console bar (:class:`ConsoleBar`, rich, imported only when a bar
starts); ``False`` is silence; any :class:`Progress` subclass receives the figures instead (a log, a
notebook widget, a test)::

    class Log(Progress):
        def update(self, done: int, note: str | None = None) -> None:
            print(done, note)

    train_world_model("data/pendulum", "models/pendulum", progress=Log())
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Progress:
    """Told once when work starts, as it goes, and once when it ends; every method may be left as is."""

    def start(self, label: str, total: int, done: int = 0) -> None:
        """Work named ``label`` of ``total`` units starts, ``done`` of them done already (a resume)."""

    def update(self, done: int, note: str | None = None) -> None:
        """``done`` units are done; ``note`` is the latest figure worth showing (a loss, a return)."""

    def end(self) -> None:
        """The work ended, finished or not."""


class ConsoleBar(Progress):
    """A rich progress bar on the terminal: the label, the bar, done of total, the note, time left."""

    def start(self, label: str, total: int, done: int = 0) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar: Any = RichProgress(
            TextColumn(f"[bold]{label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeRemainingColumn(),
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, completed=done, note="")

    def update(self, done: int, note: str | None = None) -> None:
        self._bar.update(self._task, completed=done, **({} if note is None else {"note": note}))

    def end(self) -> None:
        self._bar.stop()


def as_progress(progress: bool | Progress | None) -> Progress:
    """``progress`` as a callback: a :class:`Progress` as given, ``True`` the console bar, else silence."""
    if isinstance(progress, Progress):
        return progress
    return ConsoleBar() if progress else Progress()


@contextlib.contextmanager
def tracking(progress: bool | Progress | None, label: str, total: int, done: int = 0) -> Iterator[Progress]:
    """The callback of ``progress``, started for ``label`` and ended however the block ends."""
    callback = as_progress(progress)
    callback.start(label, total, done)
    try:
        yield callback
    finally:
        callback.end()
