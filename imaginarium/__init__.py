"""Imaginarium: learned world models of real environments, served as Gymnasium environments.

Data flows one way: real env -> dataset -> world model -> imagined env -> agents / evaluation -> reports.
"""

from __future__ import annotations

import gymnasium as gym

from imaginarium.errors import ImaginariumError

__version__ = "0.1.0"

if "WAMImagined-v0" not in gym.registry:
    gym.register(
        "WAMImagined-v0",
        entry_point="imaginarium.envs.imagined:ImaginedEnv",
        vector_entry_point="imaginarium.envs.imagined:ImaginedVectorEnv",
    )

__all__ = ["ImaginariumError", "__version__"]
