"""Process-level settings for fast CPU training: glibc's malloc keeps the memory that tensors free.

Training allocates and frees the same large buffers every step (STCNN's 177 MB fc1 gradient, 12 MB unfolded clips).
By default glibc hands each one back to the kernel when it is freed and maps it afresh on the next step, and the
first-touch page faults then cost more than the arithmetic on the buffer: measured on 2 EPYC cores, a fresh 177 MB
tensor filled once takes 93 ms against 10 ms for a reused one, and an STCNN training step (batch 8) took 618 ms with
glibc's defaults against 505-525 ms with the setting (same code, back to back). It is the effect people get by
preloading jemalloc or tcmalloc, done at run time with ``mallopt``. The cost: the process keeps its peak heap until
it exits, and glibc's aligned allocations leave holes in it for the first few steps (a loop over one 64 MB tensor
settles after at most 9 cycles at 0.5-0.7 GB resident, against 0.2 GB with the defaults; ``microexp bench`` peaks at
2.2 GB against 1.8).

Applied by ``fit`` (so by ``evaluate``, the demo and Dask workers), by ``microexp bench`` and by ``predict``.
``MICROEXP_MALLOC=system`` leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
_state: str | None = None


def tune_allocator() -> str:
    """Keep freed memory in the heap (no trimming, no per-allocation mmap). Idempotent; returns the state:
    ``"tuned"``, ``"system"`` (opted out with MICROEXP_MALLOC=system) or ``"unavailable"`` (not glibc)."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get("MICROEXP_MALLOC", "").lower() == "system":
        _state = "system"
        return _state
    _state = "unavailable"
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others have no mallopt
            return _state
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        if mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(M_MMAP_MAX, 0):
            _state = "tuned"
    return _state
