"""Freed memory kept in the process for reuse, for training loops (glibc's malloc).

A training step allocates and frees the same tens of megabytes every step (activations, gradients, the native
kernels' outputs). glibc's malloc returns the top of its heap to the system whenever more than its trim threshold
lies free there, and maps large blocks afresh each time, so the next step touches new pages: each first touch is a
page fault and a zeroed page. On an AMD EPYC (Zen 3), mnist-cnn at batch 64 took 2,000-4,500 page faults per
step (full precision and orders 1-3 on the native path), with the settings below 0-256, and its steps 10-20% less
time (``python benchmarks/heap_faults.py``; docs/TRAINING.md).

:func:`keep_freed_memory` sets glibc's thresholds once per process: blocks up to 32 MiB (glibc's largest mmap
threshold on 64-bit) come from the heap, and the heap's top is returned to the system only beyond 1 GiB free.
The process's peak memory is what its steps hold at once, as before; it just keeps that much mapped. ``horq
train``, ``horq demo`` and ``horq bench training`` call it (the last for every configuration alike, full precision
included); elsewhere (other C libraries, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Largest block served from the heap rather than its own mapping: glibc's maximum on 64-bit.
MMAP_THRESHOLD = 32 << 20
#: Free bytes at the heap's top beyond which glibc returns them to the system.
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Sets the thresholds above for this process (glibc only); True when they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
