"""``microexp bench``: how fast this machine trains and runs MicroExpSTCNN (in detail) and every registered model
(:mod:`microexp.bench.models`: speed, memory, roofline fraction), preprocesses clips, spots and multiplies
matrices, in one process and one run. See docs/bench.md for how to read it.

Every figure is the median of ``repeats`` timed runs after warm-up runs. FLOPs are direct-convolution counts
(:func:`microexp.bench.stcnn.stcnn_flops`), so "fraction of peak" compares a model step with this machine's measured fp32 GEMM rate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from microexp.bench.machine import machine_facts, matmul_gflops
from microexp.bench.stcnn import (
    FLOP_FORMULA,
    PERFORMED_FORMULA,
    bench_paths,
    fast_path_flops,
    stcnn_flops,
)
from microexp.bench.timing import peak_rss_mb, spread


def bench_preprocessing(n_clips: int, quick: bool) -> dict[str, Any]:
    """The preprocessing benchmark (:func:`microexp.bench.preprocess.bench_preprocess`): face detection and
    alignment on a tree of real face photographs, then the same from the cache."""
    from microexp.bench.preprocess import bench_preprocess

    out = bench_preprocess(n_clips=n_clips, **({"size": 32} if quick else {}))
    return {"source": "microexp.bench.preprocess.bench_preprocess", **out}


# Further sections of the run, after spotting: (JSON key, progress label, function(quick) -> JSON-ready dict).
# A part of microexp with a figure of its own adds one entry to this literal, its function importing its module
# lazily (the bench imports nothing it does not run); the summary prints nothing for it, the JSON keeps it.
SECTIONS: list[tuple[str, str, Callable[[bool], dict[str, Any]]]] = []


def run_bench(repeats: int = 5, warmup: int = 2, quick: bool = False, threads: int | None = None,
              log: Callable[[str], None] = lambda _m: None, models: list[str] | None = None) -> dict[str, Any]:
    """Everything ``microexp bench`` reports, as a JSON-ready dict. ``models``: the registered models to time
    (default all of them)."""
    from microexp.bench.models import BYTES_FORMULA, ROOFLINE_FORMULA, bench_models, memory_gbs, stream_fps
    from microexp.models.stcnn import MicroExpSTCNN

    torch.set_num_threads(threads or os.cpu_count() or 1)
    facts = machine_facts()
    # quick keeps a 1,024 matmul: a smaller one is timed mostly waking threads, which on a loaded machine put the
    # roofline's compute ceiling far too low
    shape, batch, n = ((1, 20, 32, 32), 2, 1024) if quick else ((1, 96, 64, 64), 8, 2048)
    log(f"fp32 matmul {n}x{n} ...")
    mm = matmul_gflops(n, repeats, warmup)
    peak = mm["gflops"]
    log("memory bandwidth ...")
    bw = memory_gbs(64 if quick else 512, repeats, warmup)
    result: dict[str, Any] = {"machine": facts, "repeats": repeats, "warmup": warmup, "quick": quick,
                              "matmul": mm, "memory": bw, "flop_formula": FLOP_FORMULA,
                              "performed_formula": PERFORMED_FORMULA, "roofline_formula": ROOFLINE_FORMULA,
                              "bytes_formula": BYTES_FORMULA}
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, shape)
    flops = {k: v // batch for k, v in stcnn_flops(model, batch).items()}
    result["model"] = {"name": "stcnn", "input": list(shape), "parameters": sum(p.numel() for p in model.parameters()),
                       "flops_per_clip": flops,
                       "fast_path_flops_per_clip": {k: v // batch for k, v in fast_path_flops(model, batch).items()}}
    log("stcnn: plain layers and fast path, alternated: training steps, batch and batch-1 inference ...")
    result |= bench_paths(model, batch, repeats, warmup, peak)
    result["peak_rss_mb_after_stcnn"] = peak_rss_mb()
    result["models"] = bench_models(models, quick, repeats, warmup, mm["best_gflops"], bw["best_gbs"], log)
    log("video stream ...")
    result["stream"] = stream_fps(quick)
    log("bf16 against fp32 ...")
    from microexp.bench.precision import bench_precision

    result["precision"] = bench_precision(quick, repeats, warmup, log=log)
    log("preprocessing ...")
    result["preprocess"] = bench_preprocessing(4 if quick else 16, quick)
    log("spotting ...")
    from microexp.bench.spotting import bench_spotting

    # the whole streamed spotting path (decode, face detection, crop, flow, MDMD) on a 640x480 video
    result["spotting"] = bench_spotting(seconds=1.0 if quick else 10.0,
                                        size=(120, 160) if quick else (480, 640))
    for key, label, fn in SECTIONS:  # further figures registered by other parts of microexp
        log(f"{label} ...")
        result[key] = fn(quick)
    from microexp.bench.tuning import tuned_choices

    result["tuned"] = tuned_choices()
    result["peak_rss_mb"] = peak_rss_mb()
    result["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def summary(r: dict[str, Any]) -> str:
    m, inp = r["machine"], "x".join(str(v) for v in r["model"]["input"][1:])
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"load {m['load_average_at_start'][0]} -> {m['load_average_at_end'][0]}",
             f"fp32 matmul {r['matmul']['n']}^2: {r['matmul']['gflops']} GFLOP/s (the peak below)",
             f"stcnn {inp} (T x H x W), {r['model']['parameters']:,} parameters"]
    for path in ("naive", "fast"):
        t, ib, i1 = r[f"train_{path}"], r[f"infer_{path}"]["batch"], r[f"infer_{path}"]["single"]
        done = (f" (performed {t['performed_gflops']:.1f} = {t['performed_fraction_of_peak']:.0%})"
                if "performed_gflops" in t else "")
        lines.append(f"  {path:5s} train batch {t['batch']}: {t['clips_per_s']:7.2f} clips/s  "
                     f"{t['gflops']:6.1f} GFLOP/s = {t['fraction_of_peak']:.0%} of peak{done} | "
                     f"infer batch {ib['batch']}: {ib['clips_per_s']:7.2f} clips/s | batch 1: {i1['latency_ms']:.1f} ms")
    p = r["preprocess"]
    lo, hi = r.get("train_speedup_range", [r["train_speedup"]] * 2)
    lines += [f"  training speed-up fast/naive: {r['train_speedup']}x ({lo}-{hi} over the alternated repeats)",
              f"preprocess: {p['frames_per_s']} frames/s ({p['frames']} frames in {p['seconds']} s)",
              *(f"spotting {s['size']} at {s['fps']:g} fps: {s['frames_per_s']:.1f} frames/s "
                f"({s['real_time_factor']:.2f}x real time)" for s in r.get("spotting", [])),
              f"peak RSS: {r['peak_rss_mb']} MB"]
    st = r.get("stream", {})
    if "frames_per_s" in st:
        lines.insert(-1, f"predict stream {st['video']}: {st['frames_per_s']} frames/s ({st['realtime']}x real time, "
                         f"{st['face_detections']} face detection(s))")
    pr = r.get("precision", {})
    if "speedup_vs_fp32_fast" in pr:
        lines.insert(-1, "bf16 / fp32 fast path (median, min-max of the alternated repeats): "
                         + ", ".join(f"{k} {spread(pr[k], 'bf16')}" for k in ("train", "infer_batch", "infer_single"))
                         + (f" [{pr['note']}]" if "note" in pr else ""))
    elif pr:
        lines.insert(-1, f"bf16: {pr.get('note', 'not measured')}")
    if "memory" in r:
        lines.insert(2, f"memory read bandwidth: {r['memory']['gbs']} GB/s")
    lines += model_table(r.get("models", []))
    from microexp.bench.tuning import lines as tuned_lines

    lines += tuned_lines(r.get("tuned", {}))
    return "\n".join(lines)


def model_table(models: list[dict[str, Any]]) -> list[str]:
    """One line per model: training clips/s (and fast/plain), batch-N clips/s, batch-1 ms, roofline fractions."""
    lines = ["model                  params  train clips/s (roofline)  fast/plain (min-max)  infer clips/s (roofline)  "
             "batch-1 ms (roofline)  peak RSS"] if models else []
    for m in models:
        if "skipped" in m:
            lines.append(f"{m['name']:20s}  skipped: {m['skipped']}")
            continue
        t, ib, i1 = m["train"], m["infer_batch"], m["latency_batch1"]
        ratio = (f"{m['train_speedup']:.2f}x ({m['train_speedup_range'][0]:.1f}-{m['train_speedup_range'][1]:.1f})"
                 if "train_speedup" in m else "-")
        lines.append(f"{m['name']:20s} {m['parameters'] / 1e6:6.1f}M  {t['clips_per_s']:9.2f} "
                     f"({t['roofline']['fraction']:.0%} {t['roofline']['bound'][:3]})  {ratio:>18s}  "
                     f"{ib['clips_per_s']:9.2f} b{ib['batch']} ({ib['roofline']['fraction']:.0%})  "
                     f"{i1['latency_ms']:10.1f} ({i1['roofline']['fraction']:.0%})  {m['peak_rss_mb']:.0f} MB"
                     + (f"  [{m['reduced']}]" if "reduced" in m else ""))
    return lines
