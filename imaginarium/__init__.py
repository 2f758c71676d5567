"""Imaginarium: learned world models of real environments, served as Gymnasium environments.

Data flows one way: real env -> dataset -> world model -> imagined env -> agents / evaluation -> reports.
"""

from __future__ import annotations

from imaginarium.threads import prefer_sleeping_threads

prefer_sleeping_threads()  # before anything loads torch: OpenMP reads it then (imaginarium/threads.py)

import gymnasium as gym  # noqa: E402

from imaginarium.errors import ImaginariumError  # noqa: E402

__version__ = "0.1.0"

if "WAMImagined-v0" not in gym.registry:
    gym.register(
        "WAMImagined-v0",
        entry_point="imaginarium.envs.imagined:ImaginedEnv",
        vector_entry_point="imaginarium.envs.imagined:ImaginedVectorEnv",
    )

__all__ = ["ImaginariumError", "__version__"]
