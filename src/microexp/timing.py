"""A/B timing for ratios on a shared machine: variants timed in turn within every repeat, so that a machine that
slows down or speeds up during the run shifts them alike (used by ``bench --vs-keras`` and the bf16 bench)."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in turn within every repeat (A, B, C, A, B, C, ...)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summarise(times: dict[str, list[float]], batch: int, base: str) -> dict[str, Any]:
    """Median seconds, clips/s and ms per call of each variant, and its speed ratio to ``base`` (> 1: faster)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch,
            "clips_per_s": {k: round(batch / t, 2) for k, t in med.items()},
            "ms": {k: round(t * 1000, 2) for k, t in med.items()},
            "ratios": {k: round(med[base] / t, 3) for k, t in med.items()},
            "seconds": {k: [round(s, 4) for s in v] for k, v in times.items()}}


def median_time(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, list[float]]:
    """The median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, and every time."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 ** 2 if platform.system() == "Darwin" else 1024), 1)
