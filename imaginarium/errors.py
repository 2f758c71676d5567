"""Errors raised where bad input enters, each naming the input and the form that was expected.

The CLI turns every :class:`ImaginariumError` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations


class ImaginariumError(ValueError):
    """Base of the errors a user can fix: bad task, policy spec, dataset or option."""


class TaskError(ImaginariumError):
    """An unknown task, or an environment that cannot be made."""


class PolicySpecError(ImaginariumError):
    """A policy spec that does not parse, names a missing file, or does not fit the task."""


class DatasetError(ImaginariumError):
    """A dataset that is missing, unreadable, corrupted, or does not match its task."""


class ModelError(ImaginariumError):
    """A model checkpoint that is missing, corrupted, unsafe, or made for another task."""


class TrainingError(ImaginariumError):
    """Training that cannot go on (a non-finite loss); the last good checkpoint is kept."""


class SearchInterrupted(ImaginariumError):
    """A policy search stopped (Ctrl+C) before its trials ended; its state is saved to resume from."""
