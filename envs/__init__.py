"""The Gymnasium face of Imaginarium: the real-task suite, and (later) ``WAMImagined-v0``."""

from __future__ import annotations

from imaginarium.envs.suite import SUITE, Task, get_task

__all__ = ["SUITE", "Task", "get_task"]
