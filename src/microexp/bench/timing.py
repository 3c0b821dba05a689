"""A/B timing for ratios on a shared machine: variants timed in turn within every repeat, so that a machine that
slows down or speeds up during the run shifts them alike. Every figure comes with its spread: the min-max of the
variant's times, and for each ratio the min-max of the per-repeat ratios (each repeat's variants ran back to back)."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in turn within every repeat (A, B, C, A, B, C, ...)."""
    from microexp.fast.tune import measure  # the autotuner's timing loop: one loop for both

    return measure(fns, repeats, warmup)


def summarise(times: dict[str, list[float]], batch: int, base: str) -> dict[str, Any]:
    """Median seconds, clips/s and ms per call of each variant, and its speed ratio to ``base`` (> 1: faster),
    each with its spread (``*_range``: min-max over the repeats)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    per_repeat = {k: [b / t for b, t in zip(times[base], v, strict=True)] for k, v in times.items()}
    return {"batch": batch,
            "clips_per_s": {k: round(batch / t, 2) for k, t in med.items()},
            "clips_per_s_range": {k: [round(batch / max(v), 2), round(batch / min(v), 2)] for k, v in times.items()},
            "ms": {k: round(t * 1000, 2) for k, t in med.items()},
            "ms_range": {k: [round(min(v) * 1000, 2), round(max(v) * 1000, 2)] for k, v in times.items()},
            "ratios": {k: round(med[base] / t, 3) for k, t in med.items()},
            "ratio_range": {k: [round(min(r), 3), round(max(r), 3)] for k, r in per_repeat.items()},
            "repeats": len(times[base]), "load_average": round(os.getloadavg()[0], 2),
            "seconds": {k: [round(s, 4) for s in v] for k, v in times.items()}}


def pair_ratio(times: dict[str, list[float]], a: str, b: str, digits: int = 3) -> dict[str, Any]:
    """Speed of ``a`` over ``b`` (> 1: ``a`` faster) from the same alternated run: the ratio of the medians and the
    min-max of the per-repeat ratios (each repeat's calls ran back to back), rounded to ``digits``."""
    per = [tb / ta for ta, tb in zip(times[a], times[b], strict=True)]
    return {"ratio": round(statistics.median(times[b]) / statistics.median(times[a]), digits),
            "range": [round(min(per), digits), round(max(per), digits)]}


def spread(s: dict[str, Any], key: str) -> str:
    """``1.42x (1.30-1.55)``: a variant's median ratio and the range of its per-repeat ratios."""
    lo, hi = s["ratio_range"][key]
    return f"{s['ratios'][key]:.2f}x ({lo:.2f}-{hi:.2f})"


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
