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

Large tensors can also ask for transparent huge pages (:func:`empty_huge`, :func:`onto_huge_pages`): the fast
path's Dense gradient buffers, and the wide Dense weights when the models build them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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


# Huge pages for large tensors: on a virtual machine each 4 KB page costs a nested page walk as well as a fault.
HUGE_MIN = 64 * 2**20  # bytes from which a gradient buffer asks for huge pages
_MADV_HUGEPAGE = 14  # <sys/mman.h>, Linux


def _libc_madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


_madvise = _libc_madvise()

def empty_huge(shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """``torch.empty(shape)`` (float32), its pages marked for transparent huge pages (Linux ``MADV_HUGEPAGE``).

    A fresh 708 MB gradient is mapped by the kernel page by page on first write: 177,000 faults of 4 KB cost
    more than the product that writes it (alloc + fill + free: 0.28 s against 0.058 s with 2 MB pages, measured
    on 2 EPYC cores). Elsewhere, or where the kernel refuses the advice, it is a plain ``torch.empty``."""
    import torch

    out = torch.empty(shape, dtype=torch.float32)
    advise_huge(out)
    return out


def advise_huge(t: torch.Tensor) -> bool:
    """Ask the kernel for huge pages under a CPU tensor of at least ``HUGE_MIN`` bytes; whether it took the advice."""
    nbytes = t.numel() * t.element_size()
    if nbytes < HUGE_MIN or _madvise is None or t.device.type != "cpu":
        return False
    start = -(-t.data_ptr() // 4096) * 4096  # madvise wants page-aligned bounds
    return _madvise(start, (t.data_ptr() + nbytes) // 4096 * 4096 - start, _MADV_HUGEPAGE) == 0


def onto_huge_pages(weight: torch.Tensor) -> bool:
    """Move a CPU float32 weight of at least ``HUGE_MIN`` bytes onto memory advised for huge pages (the same values;
    the parameter object stays, its ``.data`` changes), once, when it is built. Every step streams a wide Dense
    layer's weights two or three times, and with 4 KB pages that read was slower (measured on 2 AVX-512 cores,
    FuseNet's 708 MB: the streamed forward 43.7 against 37.6 ms, the backward with the SGD step 74 against 71)."""
    import torch

    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.numel() * 4 < HUGE_MIN:
        return False
    buf = empty_huge(weight.shape)
    buf.copy_(weight.detach())
    weight.data = buf
    return True
