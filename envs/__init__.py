"""The Gymnasium face of Imaginarium: the real-task suite and ``WAMImagined-v0``.

``ImaginedEnv`` is imported lazily (it needs torch); ``gym.make("imaginarium:WAMImagined-v0")`` finds it.
"""

from __future__ import annotations

from imaginarium.envs.suite import SUITE, Task, get_task

__all__ = ["SUITE", "Task", "get_task"]
