"""MicroExpSTCNN in detail: training steps and inference with the plain layers and the fast path, their FLOP
counts (the direct-convolution count and what the fast path performs) and rates against the measured peak."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from microexp.bench.timing import median_time

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


