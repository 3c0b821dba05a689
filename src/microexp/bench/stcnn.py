"""MicroExpSTCNN in detail: training steps and inference with the plain layers and the fast path, their FLOP
counts (the direct-convolution count and what the fast path performs) and rates against the measured peak."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from microexp.bench.timing import alternate
from microexp.train.loop import train_step

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


def _rates(model: Any, batch: int, key: str, seconds: float, peak: float) -> dict[str, Any]:
    """GFLOP/s and fraction of peak by the direct-convolution count; for the fast path also by what it performs."""
    flops = stcnn_flops(model, batch)[key]
    out = {"gflops": round(flops / seconds / 1e9, 1), "fraction_of_peak": round(flops / seconds / 1e9 / peak, 3)}
    if model.fast:
        done = fast_path_flops(model, batch)[key]
        out |= {"performed_gflops": round(done / seconds / 1e9, 1),
                "performed_fraction_of_peak": round(done / seconds / 1e9 / peak, 3)}
    return out


def bench_paths(model: Any, batch: int, repeats: int, warmup: int, peak: float) -> dict[str, Any]:
    """The plain layers (``naive``) and the fast path, **alternated** within every repeat (naive, fast, naive,
    fast, ...): training steps, batch-``batch`` inference and batch-1 latency (5 x ``repeats`` runs). Each figure
    keeps every time (``step_seconds``/``seconds``) and its min-max; ``speedup_range`` is the min-max of the
    per-repeat fast / naive ratios."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.input_shape, generator=gen)
    y = torch.randint(0, model.fc2.out_features, (batch,), generator=gen)
    x1 = x[:1].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    warmup = max(1, warmup)  # the first fast call at a shape may tune it (microexp.fast.tune): never timed

    def step(fast: bool) -> Any:
        def run() -> None:
            model.fast = fast
            model.train()
            train_step(model, opt, {"clip": x}, y, loss_fn)  # the loop's step; it frees its own gradients
        return run

    def infer(fast: bool, inp: torch.Tensor) -> Any:
        def run() -> None:
            model.fast = fast
            model.eval()
            with torch.no_grad():
                model(clip=inp)
        return run

    out: dict[str, Any] = {}
    train = alternate({"naive": step(False), "fast": step(True)}, repeats, warmup)
    batch_t = alternate({"naive": infer(False, x), "fast": infer(True, x)}, repeats, warmup)
    single = alternate({"naive": infer(False, x1), "fast": infer(True, x1)}, 5 * repeats, warmup)
    for path in ("naive", "fast"):
        model.fast = path == "fast"
        t = statistics.median(train[path])
        out[f"train_{path}"] = {"batch": batch, "seconds_per_step": round(t, 4), "clips_per_s": round(batch / t, 2),
                                "clips_per_s_range": [round(batch / max(train[path]), 2),
                                                      round(batch / min(train[path]), 2)],
                                **_rates(model, batch, "train_step", t, peak),
                                "step_seconds": [round(v, 4) for v in train[path]]}
        out[f"infer_{path}"] = {k: _infer_figure(model, n, times[path], peak)
                                for k, n, times in (("batch", batch, batch_t), ("single", 1, single))}
    model.fast = True
    ratios = [a / b for a, b in zip(train["naive"], train["fast"], strict=True)]
    out["train_speedup"] = round(out["train_fast"]["clips_per_s"] / out["train_naive"]["clips_per_s"], 2)
    out["train_speedup_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return out


def _infer_figure(model: Any, batch: int, times: list[float], peak: float) -> dict[str, Any]:
    t = statistics.median(times)
    return {"batch": batch, "repeats": len(times), "latency_ms": round(t * 1000, 2),
            "latency_ms_range": [round(min(times) * 1000, 2), round(max(times) * 1000, 2)],
            "clips_per_s": round(batch / t, 2), **_rates(model, batch, "inference", t, peak)}
