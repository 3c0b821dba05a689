"""A fast CPU path for ``maxpool3d(relu(conv3d(x, w, b)), p)`` with few input channels (MicroExpSTCNN's hot spot).

Same mathematics as the PyTorch layers, computed in a GEMM-friendly layout:

- The input is unfolded over the *spatial* taps only: ``P[t, (c, i, j), h, w] = x[c, t, h + i, w + j]`` (a
  ``C_in*kh*kw``-fold copy, 9x for STCNN). Then the ``kt*C_in*kh*kw`` patch matrix of output frame ``t`` is the
  contiguous block ``P[t : t + kt]``: the conv is a batch of ``(C_out x K) @ (K x H'W')`` GEMMs read straight from
  ``P`` through strided views, with no 135-fold im2col copy.
- Only the conv outputs that the pooling windows cover are computed (pooling floors the size, so e.g. the last of
  82 frames and the last 2 rows/cols of 62 never reach the output).
- ReLU and the bias commute with the max (both monotone), so they are applied to the pooled tensor, 27x smaller.
- Backward computes only the weight and bias gradients (the clip needs no gradient). The ReLU mask is taken from
  the pooled output, and the max-pool indices route the gradient; ties break as ``torch.nn.MaxPool3d`` does
  (the first maximum in (t, h, w) order).
- GEMMs run over column tiles so the reused patch rows stay in cache.
- Parallelism is over work units (clip x block of pooled frames) on a small thread pool, each unit
  single-threaded: per-op OpenMP threading would put a barrier after every small GEMM, which on a shared,
  oversubscribed CPU stalls for whole scheduler time slices (measured: 10x slower steps at load 6 on 2 cores).
  The partition does not depend on the thread count, so neither do the results.

The GPU (and any input that needs a gradient) takes the plain PyTorch layers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F

CHUNK_FRAMES = 27  # conv frames held at once: 32 x 27 x 3600 floats = 12 MB per buffer (below glibc's mmap limit)
TILE = 1200  # GEMM columns per call: measured best of 256..3600 on a 2-core EPYC (patch rows stay in L2/L3)


def _unfold_spatial(x: torch.Tensor, kh: int, kw: int, hp: int, wp: int, pool: int) -> torch.Tensor:
    """(C, T, H, W) -> (T, C*kh*kw, pool*pool*hp*wp): the spatial taps of every used output position.

    Positions are ordered (dh, dw, hp, wp) with h = pool*hp + dh, so that each of the pool*pool offsets inside
    a pooling window is one contiguous block of hp*wp columns: pooling then reduces contiguous slabs.
    """
    c, t, _h, _w = x.shape
    s = x.stride()
    view = x.as_strided((t, c, kh, kw, pool, pool, hp, wp),
                        (s[1], s[0], s[2], s[3], s[2], s[3], pool * s[2], pool * s[3]))
    return view.contiguous().view(t, c * kh * kw, pool * pool * hp * wp)


def _frames_view(p: torch.Tensor, t0: int, nt: int, kt: int, j0: int, j1: int) -> torch.Tensor:
    """The (K x cols) patch matrices of output frames t0..t0+nt-1, columns j0:j1, as one strided view of ``p``."""
    _t, ckk, hw = p.shape
    return p.as_strided((nt, kt * ckk, j1 - j0), (ckk * hw, hw, 1), p.storage_offset() + t0 * ckk * hw + j0)


def _geometry(x: torch.Tensor, weight: torch.Tensor, pool: int) -> tuple[int, ...]:
    _n, _c, t, h, w = x.shape
    cout, _cin, kt, kh, kw = weight.shape
    tp, hp, wp = (t - kt + 1) // pool, (h - kh + 1) // pool, (w - kw + 1) // pool
    return cout, kt, kh, kw, tp, hp, wp, tp * pool, hp * pool, wp * pool


def _weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, kt, kh, kw) -> (C_out, kt*C_in*kh*kw) in the patch order (kt, c, i, j)."""
    return weight.permute(0, 2, 1, 3, 4).reshape(weight.shape[0], -1)


def _first_max(conv: torch.Tensor, value: torch.Tensor, win: int) -> torch.Tensor:
    """Offset (uint8) of the first maximum along dim 2, the max-pool tie rule, via vectorised compare-and-max
    (``torch.max(dim=...)`` with indices is several times slower here)."""
    rank = torch.arange(win, 0, -1, dtype=torch.uint8).view(1, 1, win, 1)
    hit = torch.eq(conv, value.unsqueeze(2)).view(torch.uint8).mul_(rank)
    return torch.sub(win, hit.amax(dim=2), alpha=1).to(torch.uint8)


def _chunk(tp: int, n: int, pool: int) -> int:
    """Pooled frames per work unit: buffers stay under ~12 MB and a batch has at least 4 units. Independent of
    the thread count, so results do not depend on it."""
    return max(1, min(tp, CHUNK_FRAMES // pool, -(-tp * n // 4)))


def _no_grad_call(fn: Callable[[Any], Any], item: Any) -> Any:
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
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(threads, len(items)), initializer=torch.set_num_threads,
                                initargs=(1,)) as pool:
            return list(pool.map(lambda item: _no_grad_call(fn, item), items))
    finally:
        torch.set_num_threads(threads)


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, tile: int,
             want_indices: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pre-activation pooled maxima (bias added) and, for training, the window offset of each maximum."""
    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    n, hw, win, cols = x.shape[0], hu * wu, pool ** 3, hp * wp
    wm = _weight_matrix(weight)
    chunk = _chunk(tp, n, pool)
    pre = torch.empty(n, cout, tp, cols, dtype=x.dtype)
    indices = torch.empty(n, cout, tp, cols, dtype=torch.uint8) if want_indices else None
    patches = _parallel(lambda i: _unfold_spatial(x[i], kh, kw, hp, wp, pool), list(range(n)))

    def unit(job: tuple[int, int]) -> None:
        i, a = job
        b = min(tp, a + chunk)
        buf = torch.empty(cout, (b - a) * pool, hw, dtype=x.dtype)
        for j0 in range(0, hw, tile):
            j1 = min(hw, j0 + tile)
            torch.matmul(wm, _frames_view(patches[i], a * pool, (b - a) * pool, kt, j0, j1),
                         out=buf.permute(1, 0, 2)[:, :, j0:j1])
        # (C, frames, dt, dh, dw, hp*wp): the window offsets in (t, h, w) order, each a contiguous slab
        slabs = buf.view(cout, b - a, win, cols)
        torch.amax(slabs, dim=2, out=pre[i, :, a:b])
        if indices is not None:
            indices[i, :, a:b] = _first_max(slabs, pre[i, :, a:b], win)

    _parallel(unit, [(i, a) for i in range(n) for a in range(0, tp, chunk)])
    pre += bias.view(1, -1, 1, 1)
    return pre.view(n, cout, tp, hp, wp), indices


class _ConvReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                tile: int) -> torch.Tensor:
        pre, indices = _forward(x, weight, bias, pool, tile, want_indices=True)
        ctx.save_for_backward(x, weight, indices, pre > 0)
        ctx.geometry = (pool, tile)
        return pre.clamp_min_(0)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, indices, mask = ctx.saved_tensors
        pool, tile = ctx.geometry
        cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
        n, hw, win, cols = x.shape[0], hu * wu, pool ** 3, hp * wp
        if ctx.needs_input_grad[0]:
            raise RuntimeError("conv_relu_pool: the fast path does not compute an input gradient")
        g = (grad_out * mask).view(n, cout, tp, cols)
        grad_b = g.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            chunk = _chunk(tp, n, pool)
            patches = _parallel(lambda i: _unfold_spatial(x[i], kh, kw, hp, wp, pool), list(range(n)))

            def unit(job: tuple[int, int]) -> torch.Tensor:
                i, a = job
                b = min(tp, a + chunk)
                dense = torch.zeros(cout, b - a, win, cols, dtype=x.dtype)  # this unit's conv-output gradient
                dense.scatter_(2, indices[i, :, a:b].unsqueeze(2).long(), g[i, :, a:b].unsqueeze(2))
                frames = dense.view(cout, (b - a) * pool, hw).permute(1, 0, 2)
                acc = torch.zeros(cout, weight[0].numel(), dtype=x.dtype)
                for j0 in range(0, hw, tile):
                    j1 = min(hw, j0 + tile)
                    view = _frames_view(patches[i], a * pool, (b - a) * pool, kt, j0, j1).transpose(1, 2)
                    acc += torch.bmm(frames[:, :, j0:j1], view).sum(0)
                return acc

            acc = torch.stack(_parallel(unit, [(i, a) for i in range(n) for a in range(0, tp, chunk)])).sum(0)
            cin = weight.shape[1]
            grad_w = acc.view(cout, kt, cin, kh, kw).permute(0, 2, 1, 3, 4).contiguous()
        return None, grad_w, grad_b, None, None


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path applies: CPU float32, 5-D input that needs no gradient, and not while tracing for
    TorchScript/ONNX export (the thread-pool kernels are opaque to the tracer, which would bake in constants)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return (x.device.type == "cpu" and weight.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.dim() == 5 and not x.requires_grad)


def conv_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                   tile: int = TILE) -> torch.Tensor:
    """``max_pool3d(relu(conv3d(x, weight, bias)), pool)`` (stride = pool, no padding), fast on CPU."""
    if not usable(x, weight):
        return F.max_pool3d(torch.relu(F.conv3d(x, weight, bias)), pool)
    x = x.contiguous()
    if torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad):
        return _ConvReluPool.apply(x, weight, bias, pool, tile)
    with torch.no_grad():
        return _forward(x, weight, bias, pool, tile, want_indices=False)[0].clamp_min_(0)
