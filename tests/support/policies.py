"""Policy functions for ranking tests, imported by name (``py:support.policies:NAME``; pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np


def push(observations: np.ndarray) -> np.ndarray:
    """Full torque one way: a poor but steady Pendulum policy."""
    return np.full((len(observations), 1), 2.0, np.float32)


def wrong_shape(observations: np.ndarray) -> np.ndarray:
    return np.zeros((len(observations), 3), np.float32)


def raises(observations: np.ndarray) -> np.ndarray:
    raise RuntimeError("this policy always fails")


def dies_once(observations: np.ndarray) -> np.ndarray:
    """Kills its own process the first time (as an out-of-memory kill would), then acts like ``push``."""
    marker = Path(os.environ["IMAGINARIUM_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return push(observations)


def always_dies(observations: np.ndarray) -> np.ndarray:
    """Kills its own process every time (a policy that crashes its worker outright)."""
    os.kill(os.getpid(), signal.SIGKILL)
    return push(observations)


def records_node_address(observations: np.ndarray) -> np.ndarray:
    """Writes the address of the Ray node it runs on and its torch threads (to the marker file), then
    acts like ``push``."""
    import ray
    import torch

    marker = Path(os.environ["IMAGINARIUM_TEST_MARKER"])
    marker.write_text(f"{ray.util.get_node_ip_address()} {torch.get_num_threads()}")
    return push(observations)


def records_node(observations: np.ndarray) -> np.ndarray:
    """Adds the id of the Ray node it runs on to the marker folder (one file per node), then acts like
    ``push``. The first call on a node waits (up to a minute) until a second node has noted itself too,
    as a real group of policies would keep its node busy: else one node, warmed first, could finish
    every group before the other's worker has started, and the test would say nothing of where a
    ranking puts its work. Outside Ray it only acts (asking Ray for the node would connect this
    process to it)."""
    import ray

    if ray.is_initialized():
        folder = Path(os.environ["IMAGINARIUM_TEST_NODES"])
        marker = folder / ray.get_runtime_context().get_node_id()
        if not marker.exists():
            marker.touch()
            deadline = time.monotonic() + 60.0
            while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
    return push(observations)
