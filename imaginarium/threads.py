"""Threads chosen for the work when the user has chosen none (issue #26).

Measured by ``experiments/bench_load.py`` on a 2-core machine, each workload alone and beside a
CPU-bound process on every core (docs/benchmarks.md, "A busy machine"): with torch's defaults,
OpenMP's idle threads spin for their turn and take the core the working thread needs, and
world-model training ran 30× slower, imagined stepping 34×, SAC in the model 4.6×. So:

- idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``), set when :mod:`imaginarium` is
  imported before torch (OpenMP reads it when torch loads; Ray workers and subprocesses inherit it);
- small networks trained one small batch at a time (SB3 agents of states in the model) use one
  thread (:func:`threads_for`), where a second only adds waiting;
- single and small vector envs step in one compiled, single-threaded call (``models/rows.py``).

A user who sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``
has chosen, and nothing here changes threads then; nor does it when torch was imported first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: variables with which a user chooses threads; any of them set leaves threads alone
USER_CHOICES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: set by :func:`prefer_sleeping_threads`, so a user's own ``OMP_WAIT_POLICY`` can be told from ours
_OURS = "IMAGINARIUM_CHOSE_THREADS"


def user_chose() -> bool:
    """Whether the user has chosen threads through the environment (our own choice does not count)."""
    if os.environ.get(_OURS) == "1":
        return any(name in os.environ for name in USER_CHOICES if name != "OMP_WAIT_POLICY")
    return any(name in os.environ for name in USER_CHOICES)


def prefer_sleeping_threads() -> None:
    """Make OpenMP's idle threads sleep at once, unless the user chose threads or torch is loaded."""
    if user_chose() or "torch" in sys.modules:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ[_OURS] = "1"


@contextmanager
def threads_for(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block, then restored; untouched where the
    user chose threads."""
    import torch

    if user_chose():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(count, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)
