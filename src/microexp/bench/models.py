"""The per-model part of ``microexp bench``: every registered model's training and inference speed, peak memory
and the fraction of its roofline, against this machine's measured fp32 matmul rate and memory bandwidth.

Roofline: a step cannot take less than ``max(FLOPs / matmul rate, bytes / memory bandwidth)`` (the bound that
binds is named in ``roofline.bound``); ``roofline.fraction`` is that time over the measured one. FLOPs are counted
by :class:`torch.utils.flop_counter.FlopCounterMode` on the plain PyTorch layers (convolutions, matmuls and their
backward; pooling, activations, the loss and the optimiser are not counted), so a fast path that skips arithmetic
(STCNN's and FuseNet's) can exceed 1.0. Bytes: see :data:`BYTES_FORMULA`.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microexp.bench.timing import median_time, pair_ratio
from microexp.train.loop import train_step

BYTES_FORMULA = (
    "fp32 weight and input traffic only: inference = 4*P (every weight read once per batch) + input bytes; "
    "training step = 6*4*P (weights read by the forward and by the backward, gradient written, SGD reads weights "
    "and gradient and writes weights) + input bytes. Activations are not counted (they may stay in cache)."
)
ROOFLINE_FORMULA = ("roofline seconds = max(flops / matmul.best_gflops, bytes / memory.best_gbs) (the best rates "
                    "measured: the machine's ceiling); fraction = roofline seconds / measured seconds; flops "
                    "counted by torch.utils.flop_counter on the plain layers")
# --quick: inputs small enough for seconds per model; each is a size the model accepts (SMIC depth for the Reddy
# models). twostream is compute-bound (about 245 GFLOP a clip forward at full size), so it is reduced in full runs
# too (batch and repeats, REDUCED), and its quick size is much smaller than its real one.
QUICK_SHAPES: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "stcnn": {"clip": (1, 18, 32, 32)},
    "fusenet-intermediate": {"eyes": (1, 18, 32, 32), "mouth": (1, 18, 32, 32)},
    "fusenet-late": {"eyes": (1, 18, 32, 32), "mouth": (1, 18, 32, 32)},
    "joshi-2dcnn-vote": {"clip": (1, 9, 32, 32)},
    "joshi-3dcnn": {"clip": (1, 9, 32, 32)},
    "joshi-cnn-lstm": {"clip": (1, 9, 32, 32)},
    "joshi-convlstm": {"clip": (1, 9, 32, 32)},
    "regional-lstm": {"roi1": (1, 8, 40, 50), "roi2": (1, 8, 40, 50), "roi3": (1, 8, 40, 60),
                      "roi4": (1, 8, 30, 30), "roi5": (1, 8, 30, 30), "roi6": (1, 8, 30, 80)},
    "twostream": {"clip": (1, 8, 8, 8), "saliency": (1, 8, 8, 8)},
    "htnet": {"flow": (3, 1, 28, 28)},  # its real input (the 139.6 M parameters do not depend on it)
    "mmnet": {"clip": (3, 2, 64, 64)},  # onset + apex at 64x64 instead of 224x224
}
# full runs: models too slow for batch 8 and --repeats steps (twostream: ~6 TFLOP per batch-8 training step)
REDUCED = {"twostream": {"batch": 2, "repeats": 2, "warmup": 1,
                         "why": "compute-bound (about 245 GFLOP a clip forward): batch 2 and 2 timed runs"}}


def memory_gbs(mb: int = 512, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Measured read bandwidth: ``torch.sum`` over a preallocated fp32 tensor of ``mb`` MB on all torch threads
    (one read of every byte, no write), median of at least 5 runs after at least 2 warm-ups, on ordinary memory
    (``gbs``) and on memory advised for huge pages as the wide Dense weights are (``huge_pages_gbs``; on a virtual
    machine every 4 KB page costs a nested page walk: 21-22 against 32-35 GB/s measured on 2 AVX-512 cores).
    ``best_gbs`` is the best run of either, the rate the roofline divides by."""
    from microexp.runtime import advise_huge, empty_huge

    x = torch.ones(mb * 2**20 // 4)
    t, times = median_time(lambda: x.sum(), max(repeats, 5), max(warmup, 2))
    out: dict[str, Any] = {"mb": mb, "seconds": t, "gbs": round(x.numel() * 4 / t / 1e9, 1),
                           "plain_pages_best_gbs": round(x.numel() * 4 / min(times) / 1e9, 1),
                           "method": "torch.sum, read only"}
    x = torch.empty(0)  # its memory back before the second buffer
    h = empty_huge((mb * 2**20 // 4,))
    out["huge_pages"] = advise_huge(h)
    h.fill_(1.0)
    th, htimes = median_time(lambda: h.sum(), max(repeats, 5), max(warmup, 2))
    out["huge_pages_gbs"] = round(h.numel() * 4 / th / 1e9, 1)
    out["best_gbs"] = round(h.numel() * 4 / min(min(times), min(htimes)) / 1e9, 1)
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5), so the next
    :func:`model_peak_rss_mb` is the peak since now; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def model_peak_rss_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (VmHWM), else since the process started."""
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        if m:
            return round(int(m.group(1)) / 1024, 1)
    except OSError:
        pass
    from microexp.bench.timing import peak_rss_mb as process_peak

    return process_peak()


def _inputs(shapes: dict[str, tuple[int, ...]], batch: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, *v, generator=gen) for k, v in shapes.items()}


def count_flops(model: nn.Module, shapes: dict[str, tuple[int, ...]], n_classes: int) -> dict[str, int]:
    """FLOPs per clip of the plain layers (fast paths switched off while counting: their work runs on other
    threads, which the counter does not see): inference forward, and one training step (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    fast = getattr(model, "fast", None)
    if fast is not None:
        model.fast = False
    try:
        x = _inputs(shapes, 2, 2)  # two clips: batch normalisation cannot train on one
        model.eval()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(**x)
        infer = fc.get_total_flops()
        model.train()
        with FlopCounterMode(display=False) as fc:
            nn.functional.cross_entropy(model(**x), torch.zeros(2, dtype=torch.long)).backward()
        model.zero_grad(set_to_none=True)
        return {"inference": int(infer) // 2, "train_step": int(fc.get_total_flops()) // 2}
    finally:
        if fast is not None:
            model.fast = fast


def _step_fn(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        # the training loop's step; it frees the gradients at its end too, so that alternated with the plain
        # layers a step never pays for the other path's memory (4 KB against 2 MB pages for FuseNet's 708 MB)
        train_step(model, opt, x, y)

    return step


def _alternated(model: nn.Module, fn: Callable[[], None], repeats: int,
                warmup: int) -> tuple[list[float], list[float]]:
    """Seconds of each call of ``fn`` on the fast path and on the plain layers, timed alternately (ABAB, then
    BABA...) so that a machine whose speed drifts under other load treats both alike."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for fast in (True, False):
        model.fast = fast
        for _ in range(max(1, warmup)):  # the first fast call at a shape may tune it: never timed
            fn()
    for r in range(repeats):
        for fast in ((True, False) if r % 2 == 0 else (False, True)):
            model.fast = fast
            t0 = time.perf_counter()
            fn()
            times[fast].append(time.perf_counter() - t0)
    model.fast = True
    return times[True], times[False]


def _speedup(fast: list[float], plain: list[float]) -> dict[str, Any]:
    """fast / plain speed (:func:`~microexp.bench.timing.pair_ratio`, 2 digits) under this JSON's keys."""
    r = pair_ratio({"fast": fast, "plain": plain}, "fast", "plain", digits=2)
    return {"speedup": r["ratio"], "speedup_range": r["range"]}


def _roofline(flops: int, nbytes: int, seconds: float, peak_gflops: float, gbs: float) -> dict[str, Any]:
    compute, memory = flops / (peak_gflops * 1e9), nbytes / (gbs * 1e9)
    return {"flops": flops, "bytes": nbytes, "compute_seconds": round(compute, 6), "memory_seconds": round(memory, 6),
            "bound": "compute" if compute >= memory else "memory",
            "fraction": float(f"{max(compute, memory) / seconds:.3g}")}  # 3 significant digits: tiny ones stay > 0


def bench_model(name: str, quick: bool, repeats: int, warmup: int, peak_gflops: float,
                gbs: float) -> dict[str, Any]:
    """One registered model: training clips/s (SGD step, batch 8; quick 2), batch-1 latency, batch-8 throughput,
    peak RSS while it ran, FLOPs and bytes per clip and the roofline fraction of each figure."""
    from microexp.models import get

    spec = get(name)
    if spec.kind != "torch":
        return {"name": name, "kind": spec.kind,
                "skipped": f"{spec.kind} model (no gradient-descent training step or FLOP count to time)"}
    reduced = REDUCED.get(name, {})
    batch = 2 if quick else int(reduced.get("batch", 8))
    if not quick:
        repeats, warmup = min(repeats, int(reduced.get("repeats", repeats))), min(warmup, reduced.get("warmup", warmup))
    shapes = QUICK_SHAPES.get(name, spec.input_shapes()) if quick else spec.input_shapes()
    scoped = reset_peak_rss()
    torch.manual_seed(0)
    model = spec.builder(spec.classes, shapes, **spec.hparams)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, shapes, spec.classes)
    input_bytes = sum(4 * int(torch.Size(s).numel()) for s in shapes.values())
    out: dict[str, Any] = {
        "name": name, "kind": "torch", "precision": "fp32", "input": {k: list(v) for k, v in shapes.items()},
        "full_size": not quick, "parameters": params, "batch": batch, "repeats": repeats,
        "flops_per_clip": flops,
        "bytes_per_clip": {"inference": 4 * params + input_bytes, "train_step": 24 * params // batch + input_bytes}}
    if quick and name == "twostream":
        out["reduced"] = "quick: 8x8x8 clips instead of 152x32x32 (compute-bound, ~245 GFLOP a clip at full size)"
    elif not quick and "why" in reduced:
        out["reduced"] = reduced["why"]
    x, y = _inputs(shapes, batch, 0), torch.arange(batch) % spec.classes
    model.train()
    step = _step_fn(model, x, y)
    fast_path = hasattr(model, "fast")  # the fast CPU path and the plain layers, alternated in this run
    if fast_path:
        times, plain = _alternated(model, step, repeats, warmup)
        t, t_plain = statistics.median(times), statistics.median(plain)
        out["train_plain"] = {"clips_per_s": round(batch / t_plain, 2), "seconds_per_step": round(t_plain, 4)}
        sp = _speedup(times, plain)
        out["train_speedup"], out["train_speedup_range"] = sp["speedup"], sp["speedup_range"]
    else:
        t, times = median_time(step, repeats, warmup)
    train_bytes = 24 * params + batch * input_bytes
    out["train"] = {"clips_per_s": round(batch / t, 2), "seconds_per_step": round(t, 4),
                    "clips_per_s_range": [round(batch / max(times), 2), round(batch / min(times), 2)],
                    "roofline": _roofline(batch * flops["train_step"], train_bytes, t, peak_gflops, gbs)}
    model.eval()
    for key, n, reps in (("infer_batch", batch, repeats), ("latency_batch1", 1, 3 * repeats)):
        xi = _inputs(shapes, n, 1)

        def run(xi: dict[str, torch.Tensor] = xi) -> None:
            with torch.no_grad():
                model(**xi)

        if fast_path:
            times, plain = _alternated(model, run, reps, warmup)
            ti = statistics.median(times)
        else:
            ti, times = median_time(run, reps, warmup)
        out[key] = {"batch": n, "clips_per_s": round(n / ti, 2), "latency_ms": round(ti * 1000, 2),
                    "latency_ms_range": [round(min(times) * 1000, 2), round(max(times) * 1000, 2)],
                    "roofline": _roofline(n * flops["inference"], 4 * params + n * input_bytes, ti, peak_gflops,
                                          gbs)}
        if fast_path:
            out[key] |= {"plain_latency_ms": round(statistics.median(plain) * 1000, 2), **_speedup(times, plain)}
    out["peak_rss_mb"] = model_peak_rss_mb()
    out["peak_rss_scope"] = "this model (clear_refs)" if scoped else "process so far"
    return out


def bench_models(names: list[str] | None, quick: bool, repeats: int, warmup: int, peak_gflops: float, gbs: float,
                 log: Callable[[str], None] = lambda _m: None) -> list[dict[str, Any]]:
    """:func:`bench_model` for each name (default: every registered model), one after another."""
    from microexp.models import names as registered

    results = []
    for name in names or registered():
        log(f"{name} ...")
        results.append(bench_model(name, quick, repeats, warmup, peak_gflops, gbs))
    return results


def stream_fps(quick: bool) -> dict[str, Any]:
    """Frames/s of the streamed video predictor end to end (640x480, 30 fps; :mod:`microexp.bench.stream`)."""
    from microexp.bench.stream import stream_fps as measure

    return {"source": "microexp.bench.stream.stream_fps", **measure(quick)}
