"""Processes that run a world model keep freed memory, sparing each step its page faults."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

STEPS = textwrap.dedent(
    """
    import resource, sys, torch
    if sys.argv[1] == "build":
        import gymnasium as gym, numpy as np
        from imaginarium.models import build_model
        box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        build_model("ensemble", box, box)
    def step():
        for mebibytes in (40, 3, 17, 1):  # buffers of a step, each freed before the next is made
            torch.ones(mebibytes << 18)
    step(); step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _page_faults(mode: str) -> int:
    """Minor page faults of 20 steps after two of warm-up, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_process_that_built_a_model_reuses_freed_memory() -> None:
    plain, built = _page_faults("plain"), _page_faults("build")
    assert plain > 20 * 40 * 256 // 2  # glibc gives the 40 MiB buffer back and faults it in each step
    assert built < 1000


def test_the_setting_is_skipped_where_it_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    from imaginarium import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is False
    finally:
        allocator.keep_freed_memory.cache_clear()
