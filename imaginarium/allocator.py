"""Keep freed heap memory for reuse in processes that step a world model.

Each imagined step allocates and frees the same few activation buffers (about 1 MB each for a
Hopper-sized model at a batch of 1,280). glibc's malloc hands buffers of that size back to the OS when
they are freed (``mmap``/trim thresholds that start at 128 KiB), so the next step faults every page of
them in again: a fresh ranking worker spent about a tenth of its CPU time in such page faults
(``getrusage``: 86,000-130,000 minor faults and 0.2-0.3 s of system time for 20 policies × 64 starts ×
200 steps). Raising both thresholds keeps those buffers in the heap, where the next step reuses them.
The cost is that up to :data:`TRIM_THRESHOLD` of freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import functools
import sys

#: ``mallopt`` parameters of glibc's ``malloc.h``
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: buffers below this come from the heap and are reused; glibc accepts at most 64 MiB on 64-bit
#: systems (32 MiB on some older releases, tried next)
MMAP_THRESHOLDS = (64 << 20, 32 << 20)

#: freed memory at the top of the heap is given back to the OS only beyond this
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; whether they were raised.

    A no-op (``False``) where the C library is not glibc (macOS, Windows, musl), which manage memory
    their own way."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
