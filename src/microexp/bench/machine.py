"""The machine a bench runs on: CPU model and flags, torch build and threads, allocator, load; its measured fp32
matmul rate and memory read bandwidth (the roofline's two ceilings)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from microexp import __version__
from microexp.bench.timing import median_time
from microexp.runtime import tune_allocator


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(), "python": platform.python_version(),
            "platform": platform.platform(), "microexp": __version__,
            "malloc": tune_allocator(), "thp_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "numba": _numba_version(),
            "cpu_flags": cpu_flags(), "bf16_native": _bf16_native(),
            "tune": os.environ.get("MICROEXP_TUNE", "measured (microexp.fast.tune)"),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
              "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_flags() -> list[str]:
    """The vector-instruction flags this CPU reports (those in ``SIMD_FLAGS``: what decides which kernels win)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") or line.startswith("Features"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def _bf16_native() -> bool:
    from microexp.precision import cpu_support

    return bool(cpu_support()["native"])


def _numba_version() -> str:
    try:
        import numba
    except ImportError:
        return "missing"
    return str(numba.__version__)


def matmul_gflops(n: int = 2048, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Measured fp32 GEMM rate: torch.mm of two n x n matrices into a preallocated output, 2*n^3 FLOPs, all torch
    threads, median of at least 10 runs after at least 3 warm-ups (a fresh output would add its allocation and
    page faults to the GEMM: measured 130 against 175 GFLOP/s here)."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    t, times = median_time(lambda: torch.mm(a, b, out=c), max(repeats, 10), max(warmup, 3))
    return {"n": n, "seconds": t, "gflops": round(2 * n ** 3 / t / 1e9, 1),
            "best_gflops": round(2 * n ** 3 / min(times) / 1e9, 1)}


