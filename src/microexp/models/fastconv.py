"""A fast CPU path for ``maxpool3d(relu(conv3d(x, w, b)), p)`` with few input channels (MicroExpSTCNN's hot spot).

Same mathematics as the PyTorch layers, computed in a layout that fast kernels like:

- The input is unfolded over the *spatial* taps only: ``P[t, (c, i, j), h, w] = x[c, t, h + i, w + j]`` (a
  ``C_in*kh*kw``-fold copy, 9x for STCNN). The 3-D conv is then a 2-D conv with the taps as input channels and a
  (kt, 1) kernel, which oneDNN runs at ~90 % of the fp32 GEMM peak on the channels-last copy of ``P`` (its conv3d
  on the raw one-channel clip reaches ~40 % a thread; an MKL GEMM per frame ~70 %).
- The weight gradient is one ``(K x H'W') @ (H'W' x C_out)`` GEMM per frame on the row layout of ``P``, where
  the ``kt*C_in*kh*kw`` rows of output frame ``t`` are the contiguous block ``P[t : t + kt]`` (no 135-fold
  im2col copy). oneDNN's own backward-weights kernel for this shape runs at a third of that speed (measured).
- Only the conv outputs that the pooling windows cover are computed (pooling floors the size, so e.g. the last of
  82 frames and the last 2 rows/cols of 62 never reach the output).
- Work units are a few pooled frames of one clip, so a unit's conv outputs (2.8 MB for STCNN) stay in cache while
  they are pooled (channels innermost, each window offset a contiguous slab), and the per-thread buffers are
  reused across units and calls: fresh multi-MB temporaries cost more in page faults than the arithmetic done on
  them (measured).
- ReLU and the bias commute with the max (both monotone), so they are applied to the pooled tensor, 27x smaller.
- Backward computes only the weight and bias gradients (the clip needs no gradient). The ReLU mask is taken from
  the pooled output, and the max-pool indices route the gradient; ties break as ``torch.nn.MaxPool3d`` does
  (the first maximum in (t, h, w) order).
- Parallelism is over work units on a small persistent thread pool, each unit single-threaded: per-op OpenMP
  threading would put a barrier after every small conv or GEMM, which on a shared, oversubscribed CPU stalls for
  whole scheduler time slices (measured: 10x slower steps at load 6 on 2 cores). The partition and the order of the
  final sum do not depend on the thread count, so neither do the results.

The GPU (and any input that needs a gradient) takes the plain PyTorch layers.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CHUNK_FRAMES = 6  # conv frames per work unit (2 pooled frames at pool 3): 32 x 6 x 3600 floats = 2.8 MB
UNFOLD_FRAMES = 8  # input frames per unfold job, so that even one clip's unfold runs on every thread


class _Scratch(threading.local):
    """Per-thread float32 buffers, reused across work units and calls."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n:
            buf = self.buffers[name] = torch.empty(n)
        return buf[:n].view(shape)

    def get_int(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n:
            buf = self.buffers[name] = torch.empty(n, dtype=torch.int32)
        return buf[:n].view(shape)


_SCRATCH = _Scratch()
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), threads)  # a forked child must not reuse its parent's (threadless) pool
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="microexp-conv")
    return _POOLS[key]


def _unit_call(fn: Callable[[Any], Any], item: Any) -> Any:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    with torch.no_grad():  # grad mode is per thread; these threads only ever see detached data
        return fn(item)


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Run ``fn`` over ``items`` on torch's thread count, each call single-threaded.

    Whole work units per thread instead of intra-op threading: one GEMM/reduction per unit would otherwise be an
    OpenMP barrier each, and on a shared (oversubscribed) CPU a barrier waits for a descheduled thread.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    torch.set_num_threads(1)  # the units' GEMMs and convs stay single-threaded; restored below
    try:
        return list(_pool(threads).map(lambda item: _unit_call(fn, item), items))
    finally:
        torch.set_num_threads(threads)


def _kernels() -> Any:
    """The compiled loops, imported on first use: numba loads (or compiles) them then, not when microexp imports."""
    from microexp.models import kernels

    return kernels


def _geometry(x: torch.Tensor, weight: torch.Tensor, pool: int) -> tuple[int, ...]:
    _n, _c, t, h, w = x.shape
    cout, _cin, kt, kh, kw = weight.shape
    tp, hp, wp = (t - kt + 1) // pool, (h - kh + 1) // pool, (w - kw + 1) // pool
    return cout, kt, kh, kw, tp, hp, wp, tp * pool, hp * pool, wp * pool


def _unfold_spatial(x: torch.Tensor, kh: int, kw: int, hp: int, wp: int, pool: int, frames: int) -> torch.Tensor:
    """The spatial taps of every used output position of (N, C, T, H, W) clips, channels-last
    ``(N, frames, positions, C*kh*kw)``, returned as the (N, C*kh*kw, frames, positions) view that oneDNN convolves.

    Positions are ordered (dh, dw, hp, wp) with h = pool*hp + dh, so that each of the pool*pool offsets inside
    a pooling window is one contiguous block of hp*wp positions: pooling then reduces contiguous slabs.
    """
    n, c = x.shape[:2]
    s = x.stride()
    ckk, hw = c * kh * kw, pool * pool * hp * wp
    last = torch.empty(n, frames, hw, ckk, dtype=x.dtype)

    def job(item: tuple[int, int]) -> None:
        i, t0 = item
        t1 = min(frames, t0 + UNFOLD_FRAMES)
        taps = x[i].as_strided((t1 - t0, c, kh, kw, pool, pool, hp, wp),
                               (s[2], s[1], s[3], s[4], s[3], s[4], pool * s[3], pool * s[4]),
                               x[i].storage_offset() + t0 * s[2])
        # gather into the row layout, then transpose: 5x faster than gathering into channels-last (measured)
        rows = _SCRATCH.get("rows", (t1 - t0, ckk, hw))
        rows.view(taps.shape).copy_(taps)
        last[i, t0:t1].copy_(rows.transpose(1, 2))

    _parallel(job, [(i, t0) for i in range(n) for t0 in range(0, frames, UNFOLD_FRAMES)])
    return last.permute(0, 3, 1, 2)


def _units(n: int, tp: int, pool: int) -> list[tuple[int, int, int]]:
    """(clip, first, end) pooled-frame ranges; independent of the thread count, so results do not depend on it."""
    step = max(1, CHUNK_FRAMES // pool)
    return [(i, a, min(tp, a + step)) for i in range(n) for a in range(0, tp, step)]


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
             want_indices: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pre-activation pooled maxima with the bias, (N, C, tp, hp*wp) (the model's layout); for training also the
    window offset of each maximum (same layout, uint8).

    The conv of a work unit is one oneDNN conv2d over the channels-last patches: the C*kh*kw spatial taps are
    its input channels and its kernel is (kt, 1). oneDNN's direct-conv kernels run at ~90 % of the fp32 GEMM
    peak on this shape (measured 86 GFLOP/s a thread), where an MKL GEMM with 32 rows reaches ~70 %.
    """
    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    n, cols = x.shape[0], hp * wp
    last = _unfold_spatial(x, kh, kw, hp, wp, pool, tu + kt - 1)
    # (C_out, C_in, kt, kh, kw) -> (C_out, (c, i, j), kt, 1): the patch channels' order
    w2 = weight.permute(0, 1, 3, 4, 2).reshape(cout, -1, kt, 1)
    kernels = _kernels()
    pre = torch.empty(n, cout, tp, cols, dtype=x.dtype)
    indices = torch.empty(n, cout, tp, cols, dtype=torch.uint8) if want_indices else None
    pre_np, bias_np = pre.numpy(), bias.detach().contiguous().numpy()
    idx_np = (indices if indices is not None else torch.empty(1, 1, 1, 1, dtype=torch.uint8)).numpy()
    slab = cols * cout + kernels.LANES

    def unit(job: tuple[int, int, int]) -> None:
        i, a, b = job
        conv = F.conv2d(last[i:i + 1, :, a * pool:b * pool + kt - 1], w2)  # (1, C, frames, positions), channels-last
        # memory (frames, positions, C): the positions of each window offset (dh, dw) are one contiguous block
        best, arg = _SCRATCH.get("best", (slab,)).numpy(), _SCRATCH.get_int("arg", (slab,)).numpy()
        kernels.pool_max(conv[0].permute(1, 2, 0).contiguous().numpy(), a, pool, bias_np, pre_np[i],
                         idx_np[i if indices is not None else 0], indices is not None, best, arg)

    _parallel(unit, _units(n, tp, pool))
    return pre, indices


def _weight_grad(x: torch.Tensor, weight: torch.Tensor, indices: torch.Tensor, g: torch.Tensor,
                 pool: int) -> torch.Tensor:
    """dL/dW from the pooled-output gradient ``g`` (N, C, tp, hp*wp), routed through the max-pool ``indices``:
    only the window maxima with a nonzero gradient contribute (:func:`microexp.models.kernels.pool_weight_grad`)."""
    kernels = _kernels()
    cout, cin, kt, kh, kw = weight.shape
    n, _c, t, h, w = x.shape
    tp, wp = g.shape[2], _geometry(x, weight, pool)[6]
    lanes = kernels.LANES * -(-kt // kernels.LANES)
    # (N, C_in, H, W, T + pad): each patch row's kt frames contiguous; the pad keeps the last lane loads inside
    xt = torch.zeros(n, cin, h, w, t + lanes - kt, dtype=x.dtype)
    xt[..., :t].copy_(x.permute(0, 1, 3, 4, 2))
    xs, gs, ids = xt.numpy(), g.numpy(), indices.numpy()

    def unit(job: tuple[int, int, int]) -> torch.Tensor:
        i, a, b = job
        acc = np.zeros((cout, cin * kh * kw * lanes), dtype=np.float32)
        kernels.pool_weight_grad(xs[i], gs[i], ids[i], a, b, pool, kh, kw, wp, lanes, acc)
        return torch.from_numpy(acc)

    acc = torch.stack(_parallel(unit, _units(n, tp, pool))).sum(0)  # fixed partition and order: thread-independent
    return acc.view(cout, cin, kh, kw, lanes)[..., :kt].permute(0, 1, 4, 2, 3).contiguous()


class _ConvReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int) -> torch.Tensor:
        pre, indices = _forward(x, weight, bias, pool, want_indices=True)
        ctx.save_for_backward(x, weight, indices, pre > 0)
        ctx.pool = pool
        hp, wp = _geometry(x, weight, pool)[5:7]
        return pre.clamp_min_(0).view(x.shape[0], -1, pre.shape[2], hp, wp)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, indices, mask = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise RuntimeError("conv_relu_pool: the fast path does not compute an input gradient")
        g = (grad_out.reshape(mask.shape) * mask).contiguous()
        grad_b = g.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        grad_w = _weight_grad(x, weight, indices, g, ctx.pool) if ctx.needs_input_grad[1] else None
        return None, grad_w, grad_b, None


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path applies: CPU float32, 5-D input that needs no gradient, and not while tracing for
    TorchScript/ONNX export (the thread-pool kernels are opaque to the tracer, which would bake in constants)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return (x.device.type == "cpu" and weight.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.dim() == 5 and not x.requires_grad)


def conv_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int) -> torch.Tensor:
    """``max_pool3d(relu(conv3d(x, weight, bias)), pool)`` (stride = pool, no padding), fast on CPU."""
    if not usable(x, weight):
        return F.max_pool3d(torch.relu(F.conv3d(x, weight, bias)), pool)
    x = x.contiguous()
    if torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad):
        return _ConvReluPool.apply(x, weight, bias, pool)
    with torch.no_grad():
        hp, wp = _geometry(x, weight, pool)[5:7]
        pre = _forward(x, weight, bias, pool, want_indices=False)[0]
        return pre.clamp_min_(0).view(x.shape[0], -1, pre.shape[2], hp, wp)

