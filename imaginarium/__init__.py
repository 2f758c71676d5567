"""Imaginarium: learned world models of real environments, served as Gymnasium environments.

Data flows one way: real env -> dataset -> world model -> imagined env -> agents / evaluation -> reports.
"""

from __future__ import annotations

import os
import sys

#: OpenMP threads that wait for work sleep instead of spinning, unless the user chose otherwise. On a
#: machine busy with other work a spinning thread takes a core from the thread it waits for, and a
#: small Adam loop on two threads ran 5x slower (``experiments/bench_load.py`` measures the package's
#: workloads). OpenMP reads it as torch loads, so it is set only where ``imaginarium`` is imported
#: first (the command line, the studies), never after ``import torch``, where it would reach only the
#: processes this one starts.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
