"""``microexp bench``: how fast this machine trains and runs MicroExpSTCNN (in detail) and every registered model
(:mod:`microexp.bench_models`: speed, memory, roofline fraction), preprocesses clips, spots and multiplies
matrices, in one process and one run. See docs/bench.md for how to read it.

Every figure is the median of ``repeats`` timed runs after warm-up runs. FLOPs are direct-convolution counts
(:func:`stcnn_flops`), so "fraction of peak" compares a model step with this machine's measured fp32 GEMM rate.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microexp import __version__
from microexp.runtime import tune_allocator
from microexp.timing import median_time, peak_rss_mb

FLOP_FORMULA = (
    "conv = 2*N*C_out*T'*H'*W'*C_in*kT*kH*kW (valid conv output T'=T-kT+1, ...); "
    "dense = 2*N*(F*D + D*K) for Dense-D on F features and K classes; "
    "inference = conv + dense; training step = 2*conv (forward + weight gradient; the clip needs no input "
    "gradient) + 3*dense (forward + input and weight gradients). Pooling, ReLU, dropout, loss and the "
    "optimiser are not counted. fraction_of_peak divides this count by the step time, for both paths."
)
PERFORMED_FORMULA = (
    "fast path only: conv over the outputs that pooling uses (T'' = (T'//p)*p, ...) + weight gradient from the "
    "max-pool indices, 2*N*C_out*(T'//p)*(H'//p)*(W'//p)*C_in*kT*kH*kW (an upper bound: outputs the ReLU blocked "
    "cost nothing) + 3*dense; the arithmetic the fast path does, as opposed to the direct-convolution count."
)


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
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


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


def stcnn_flops(model: Any, batch: int) -> dict[str, int]:
    """Direct-convolution FLOPs of one MicroExpSTCNN step on ``batch`` clips (see FLOP_FORMULA)."""
    c, t, h, w = model.input_shape
    cout, cin, kt, kh, kw = model.conv.weight.shape
    conv = 2 * batch * cout * (t - kt + 1) * (h - kh + 1) * (w - kw + 1) * cin * kt * kh * kw
    dense = 2 * batch * (model.fc1.in_features * model.fc1.out_features
                         + model.fc2.in_features * model.fc2.out_features)
    return {"conv": conv, "dense": dense, "inference": conv + dense, "train_step": 2 * conv + 3 * dense}


def fast_path_flops(model: Any, batch: int) -> dict[str, int]:
    """FLOPs the fast CPU path performs for one step on ``batch`` clips (see PERFORMED_FORMULA)."""
    c, t, h, w = model.input_shape
    cout, cin, kt, kh, kw = model.conv.weight.shape
    p = model.pool.kernel_size
    tp, hp, wp = (t - kt + 1) // p, (h - kh + 1) // p, (w - kw + 1) // p
    taps = cin * kt * kh * kw
    conv = 2 * batch * cout * tp * hp * wp * p ** 3 * taps
    weight_grad = 2 * batch * cout * tp * hp * wp * taps
    dense = stcnn_flops(model, batch)["dense"]
    return {"conv": conv, "weight_grad": weight_grad, "dense": dense, "inference": conv + dense,
            "train_step": conv + weight_grad + 3 * dense}


def bench_training(model: Any, batch: int, repeats: int, warmup: int, peak: float) -> dict[str, Any]:
    """One SGD step as the training loop does it: zero_grad, forward, cross-entropy, backward, step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.input_shape, generator=gen)
    y = torch.randint(0, model.fc2.out_features, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(clip=x), y).backward()
        opt.step()

    t, times = median_time(step, repeats, warmup)
    return {"batch": batch, "seconds_per_step": round(t, 4), "clips_per_s": round(batch / t, 2),
            **_rates(model, batch, "train_step", t, peak), "step_seconds": [round(v, 4) for v in times]}


def _rates(model: Any, batch: int, key: str, seconds: float, peak: float) -> dict[str, Any]:
    """GFLOP/s and fraction of peak by the direct-convolution count; for the fast path also by what it performs."""
    flops = stcnn_flops(model, batch)[key]
    out = {"gflops": round(flops / seconds / 1e9, 1), "fraction_of_peak": round(flops / seconds / 1e9 / peak, 3)}
    if model.fast:
        done = fast_path_flops(model, batch)[key]
        out |= {"performed_gflops": round(done / seconds / 1e9, 1),
                "performed_fraction_of_peak": round(done / seconds / 1e9 / peak, 3)}
    return out


def bench_inference(model: Any, batch: int, repeats: int, warmup: int, peak: float) -> dict[str, Any]:
    x = torch.randn(batch, *model.input_shape, generator=torch.Generator().manual_seed(1))
    model.eval()

    def run() -> None:
        with torch.no_grad():
            model(clip=x)

    t, _ = median_time(run, repeats, warmup)
    return {"batch": batch, "repeats": repeats, "latency_ms": round(t * 1000, 2), "clips_per_s": round(batch / t, 2),
            **_rates(model, batch, "inference", t, peak)}


def bench_preprocessing(n_clips: int, quick: bool) -> dict[str, Any]:
    """The preprocessing benchmark (:func:`microexp.preprocess.bench.bench_preprocess`): face detection and
    alignment on a tree of real face photographs, then the same from the cache."""
    from microexp.preprocess.bench import bench_preprocess

    out = bench_preprocess(n_clips=n_clips, **({"size": 32} if quick else {}))
    return {"source": "microexp.preprocess.bench.bench_preprocess", **out}


def run_bench(repeats: int = 5, warmup: int = 2, quick: bool = False, threads: int | None = None,
              log: Callable[[str], None] = lambda _m: None, models: list[str] | None = None) -> dict[str, Any]:
    """Everything ``microexp bench`` reports, as a JSON-ready dict. ``models``: the registered models to time
    (default all of them)."""
    from microexp.bench_models import BYTES_FORMULA, ROOFLINE_FORMULA, bench_models, memory_gbs, stream_fps
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
    for path, fast in (("naive", False), ("fast", True)):
        model.fast = fast
        log(f"stcnn training steps ({path}) ...")
        train = bench_training(model, batch, repeats, warmup, peak)
        log(f"stcnn inference ({path}) ...")
        result[f"train_{path}"] = train
        result[f"infer_{path}"] = {"batch": bench_inference(model, batch, repeats, warmup, peak),
                                   # one clip takes ~20 ms: more repeats steady its median on a drifting machine
                                   "single": bench_inference(model, 1, 5 * repeats, warmup, peak)}
        result[f"peak_rss_mb_after_{path}"] = peak_rss_mb()
    result["train_speedup"] = round(result["train_fast"]["clips_per_s"] / result["train_naive"]["clips_per_s"], 2)
    result["models"] = bench_models(models, quick, repeats, warmup, mm["best_gflops"], bw["best_gbs"], log)
    log("video stream ...")
    result["stream"] = stream_fps(quick)
    log("bf16 against fp32 ...")
    from microexp.precision import bench_precision

    result["precision"] = bench_precision(quick, repeats, warmup, log=log)
    log("preprocessing ...")
    result["preprocess"] = bench_preprocessing(4 if quick else 16, quick)
    log("spotting ...")
    from microexp.spot.bench import bench_spotting

    # the whole streamed spotting path (decode, face detection, crop, flow, MDMD) on a 640x480 video
    result["spotting"] = bench_spotting(seconds=1.0 if quick else 10.0,
                                        size=(120, 160) if quick else (480, 640))
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
    lines += [f"  training speed-up fast/naive: {r['train_speedup']}x",
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
        s = pr["speedup_vs_fp32_fast"]
        lines.insert(-1, f"bf16 / fp32 fast path: train {s['train']}x, batch {s['infer_batch']}x, "
                         f"batch 1 {s['infer_single']}x")
    elif pr:
        lines.insert(-1, f"bf16: {pr.get('note', 'not measured')}")
    if "memory" in r:
        lines.insert(2, f"memory read bandwidth: {r['memory']['gbs']} GB/s")
    lines += model_table(r.get("models", []))
    return "\n".join(lines)


def model_table(models: list[dict[str, Any]]) -> list[str]:
    """One line per model: training clips/s (and fast/plain), batch-N clips/s, batch-1 ms, roofline fractions."""
    lines = ["model                  params  train clips/s (roofline)  fast/plain  infer clips/s (roofline)  "
             "batch-1 ms (roofline)  peak RSS"] if models else []
    for m in models:
        if "skipped" in m:
            lines.append(f"{m['name']:20s}  skipped: {m['skipped']}")
            continue
        t, ib, i1 = m["train"], m["infer_batch"], m["latency_batch1"]
        ratio = f"{m['train_speedup']:.2f}x" if "train_speedup" in m else "-"
        lines.append(f"{m['name']:20s} {m['parameters'] / 1e6:6.1f}M  {t['clips_per_s']:9.2f} "
                     f"({t['roofline']['fraction']:.0%} {t['roofline']['bound'][:3]})  {ratio:>10s}  "
                     f"{ib['clips_per_s']:9.2f} b{ib['batch']} ({ib['roofline']['fraction']:.0%})  "
                     f"{i1['latency_ms']:10.1f} ({i1['roofline']['fraction']:.0%})  {m['peak_rss_mb']:.0f} MB"
                     + (f"  [{m['reduced']}]" if "reduced" in m else ""))
    return lines
