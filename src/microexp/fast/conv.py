"""A fast CPU path for ``maxpool3d(relu(conv3d(x, w, b)), p)`` with few input channels (MicroExpSTCNN's hot spot).

Same mathematics as the PyTorch layers, computed in a layout that fast kernels like:

- Forward: a work unit is a few pooled rows of one clip. Its 3-D conv is one oneDNN conv2d over (T, W), with
  the clip's rows as the batch and the kernel's kh rows as input channels (input row h, channel (c, u) = clip row
  h + u: a kh-fold copy of the unit's rows, channels-last) and a (kt, kw) kernel. oneDNN runs that at the fp32
  GEMM rate here (~100 GFLOP/s a thread, measured), where its conv3d on the one-channel clip reaches ~40 %.
- Only the conv outputs that the pooling windows cover are computed (pooling floors the size, so e.g. the last of
  82 frames and the last 2 rows/cols of 62 never reach the output).
- The unit's conv outputs (3.7 MB for STCNN) are max-pooled right away, from cache, by one compiled pass that also
  records which window offset held each maximum, 16 channels at a time with the window's running maximum in
  registers (:func:`microexp.fast.kernels.pool_rows`); ties break as ``torch.nn.MaxPool3d`` does (the first
  maximum in (t, h, w) order).
- The Winograd candidates (``wino*``) take the width taps by Winograd F(m, 3); the fused ones
  (``wino_fused_*``) make the products with a compiled register kernel, a pooled row and a span of frames at a
  time, and pool them from L2 straight away, where the oneDNN GEMM of the others writes a unit's products
  (12 MB for a quarter of an STCNN clip) out to memory and the pooling pass reads them back (measured: conv
  1.3-1.7x faster, 2 AVX-512 cores).
- ReLU and the bias commute with the max (both monotone), so they are applied to the pooled tensor, 27x smaller,
  by the pooling pass itself, which marks the outputs the ReLU blocked in the max-pool indices (the backward's mask).
- Backward computes only the weight and bias gradients (the clip needs no gradient). Max-pooling sends each pooled
  output's gradient to one conv output, so the weight gradient is a sum over the pooled outputs, not over every
  conv output: 1/27 of the dense product's multiply-adds, and none for outputs the ReLU blocked
  (:func:`microexp.fast.kernels.pool_weight_grad`). The same sum without its zero terms.
- Per-thread buffers are reused across units and calls: fresh multi-MB temporaries cost more in page faults than
  the arithmetic done on them (measured).
- Parallelism is over work units on a small persistent thread pool, each unit single-threaded: per-op OpenMP
  threading would put a barrier after every small conv, which on a shared, oversubscribed CPU stalls for whole
  scheduler time slices (measured: 10x slower steps at load 6 on 2 cores). The partition and the order of the
  final sums do not depend on the thread count, so neither do the results.

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

from microexp.fast.dropout import apply_words, dropout_words
from microexp.fast.dropout import dropout as drop_out

CHUNK_FRAMES = 27  # conv frames per weight-gradient work unit (9 pooled frames at pool 3; 6-81 measured, 27 best balanced)
ROWS_PER_UNIT = 2  # pooled rows per forward work unit: 6 x 81 x 60 x 32 conv outputs (3.7 MB) for STCNN; 1-4 measured


class _Scratch(threading.local):
    """Per-thread buffers, reused across work units and calls."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype:
            buf = self.buffers[name] = torch.empty(n, dtype=dtype)
        return buf[:n].view(shape)


_SCRATCH = _Scratch()
_NO_DROP = torch.empty(0, dtype=torch.int32)  # no dropout words: the pooling pass keeps every output
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
    from microexp.fast import kernels

    return kernels


def _geometry(x: torch.Tensor, weight: torch.Tensor, pool: int) -> tuple[int, ...]:
    _n, _c, t, h, w = x.shape
    cout, _cin, kt, kh, kw = weight.shape
    tp, hp, wp = (t - kt + 1) // pool, (h - kh + 1) // pool, (w - kw + 1) // pool
    return cout, kt, kh, kw, tp, hp, wp, tp * pool, hp * pool, wp * pool


def _units(n: int, tp: int, pool: int) -> list[tuple[int, int, int]]:
    """(clip, first, end) pooled-frame ranges; independent of the thread count, so results do not depend on it."""
    step = max(1, CHUNK_FRAMES // pool)
    return [(i, a, min(tp, a + step)) for i in range(n) for a in range(0, tp, step)]


HALF, QUARTER = -2, -4  # rows per unit: half (a quarter) of a clip's pooled rows, rounded up: 2 (4) units a clip
ROWS_CANDIDATES = {"fused": None, "fused1": 1, "fused4": 4, "fused_half": HALF,  # tuner candidates: pooled rows a
                   "wino": None, "wino_quarter": QUARTER, "wino_half": HALF, "wino_f4": HALF,  # unit
                   "wino_fused_quarter": QUARTER, "wino_fused_half": HALF, "amx_quarter": QUARTER, "amx_half": HALF}
# Winograd F(tile, 3) along the width: F(6, 3) (1.8x fewer multiplies) measured faster than F(4, 3) (1.5x) at every
# shape tried here; F(4, 3) stays a candidate for widths that F(6, 3)'s tiles would pad more
WINO_TILE = {"wino": 6, "wino_quarter": 6, "wino_half": 6, "wino_f4": 4, "wino_fused_quarter": 6,
             "wino_fused_half": 6}
# the Winograd candidates whose products come from the compiled register kernel, pooled as they are made
# (:func:`_wino_fused_forward`), instead of one oneDNN GEMM a unit written out and read back
WINO_FUSED = frozenset({"wino_fused_quarter", "wino_fused_half"})
# the bf16 candidates on AMX tiles pooled as they are made (:mod:`microexp.fast.amx`; elsewhere oneDNN's bf16 units)
AMX = frozenset({"amx_quarter", "amx_half"})
SPAN_BYTES = 1 << 20  # fused candidates' product span: in L2 with the unit's B^T d (256 KB-3 MB measured)

# Winograd F(m, 3): m outputs of a 3-tap correlation from m + 2 products (Lavin & Gray, "Fast Algorithms for
# Convolutional Neural Networks", CVPR 2016, doi:10.1109/CVPR.2016.435): y = A^T [(G g) * (B^T d)]; points 0, +-1,
# +-2 (and +-1/2 for m = 6), infinity. A^T is applied by the pooling pass (microexp.fast.kernels.wino_pool_rows).
_WINO_BT = {4: torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                             [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float32),
            6: torch.tensor([[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0], [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                             [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0], [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                             [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0], [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                             [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0], [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]],
                            dtype=torch.float32)}
_WINO_G = {4: torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                            [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64),
           6: torch.tensor([[1, 0, 0], [-2 / 9, -2 / 9, -2 / 9], [-2 / 9, 2 / 9, -2 / 9], [1 / 90, 1 / 45, 2 / 45],
                            [1 / 90, -1 / 45, 2 / 45], [32 / 45, 16 / 45, 8 / 45], [32 / 45, -16 / 45, 8 / 45],
                            [0, 0, 1]], dtype=torch.float64)}


def wino_usable(weight: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the Winograd candidates apply: fp32 arithmetic, a 3-wide kernel and filters in sixteens (others run
    as ``fused``)."""
    return dtype == torch.float32 and weight.shape[4] == 3 and weight.shape[0] % 16 == 0


def wino_fused_usable(weight: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the fused Winograd candidates apply: as :func:`wino_usable`, one input channel and filters in
    thirty-twos (others run as the Winograd units of the same size)."""
    return wino_usable(weight, dtype) and weight.shape[1] == 1 and weight.shape[0] % 32 == 0


def amx_frames(frames: int) -> int:
    """Frames (with zero padding) the AMX candidates read of a clip of ``frames``: a last block's tile rows and taps
    run past the end."""
    from microexp.fast import amx

    return frames + amx.T_TILE + amx.K_TAPS


def amx_usable(weight: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the AMX candidates apply: bf16, one input channel, 32 filters, at most 16 time taps, and a CPU and
    kernel that run AMX tiles (:func:`microexp.fast.amx.available`)."""
    if dtype != torch.bfloat16 or weight.shape[0] != 32 or weight.shape[1] != 1 or weight.shape[2] > 16:
        return False
    from microexp.fast import amx

    return amx.available()


def _row_units(n: int, hp: int, rows: int | None = None) -> list[tuple[int, int, int]]:
    """(clip, first, end) pooled-row ranges of the forward (``rows`` a unit, default ``ROWS_PER_UNIT``; ``HALF`` /
    ``QUARTER``: two / four units a clip); independent of the thread count."""
    step = -(-hp // -rows) if rows is not None and rows < 0 else rows or ROWS_PER_UNIT
    return [(i, r, min(hp, r + step)) for i in range(n) for r in range(0, hp, step)]


def _outputs(n: int, cout: int, tp: int, cols: int, want_indices: bool, bias: torch.Tensor,
             drop: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, tuple[np.ndarray, ...]]:
    """The forward's pooled outputs (N, C, tp, cols) and, for training, their max-pool indices, with the numpy
    views the pooling pass writes and reads: outputs, bias, indices (a dummy without), dropout words (empty
    without)."""
    pre = torch.empty(n, cout, tp, cols, dtype=torch.float32)
    indices = torch.empty(n, cout, tp, cols, dtype=torch.uint8) if want_indices else None
    idx = indices if indices is not None else torch.empty(1, 1, 1, 1, dtype=torch.uint8)
    views = (pre.numpy(), bias.detach().contiguous().numpy(), idx.numpy(),
             (drop if drop is not None else _NO_DROP).view(-1).numpy())
    return pre, indices, views


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, want_indices: bool,
             dtype: torch.dtype = torch.float32, rows: int | None = None, wino: int = 0,
             drop: torch.Tensor | None = None, fused: bool = False, amx: bool = False,
             keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled maxima with the bias, after the ReLU, (N, C, tp, hp*wp) (the model's layout); for training with the
    window offset of each maximum (same layout, uint8; ``kernels.BLOCKED`` where the ReLU blocked it).

    A work unit is a few pooled rows of one clip. Its 3-D conv is one oneDNN conv2d over (T, W) with the clip's
    rows as the batch and the kh kernel rows as input channels: input row h, channel (c, u) is clip row h + u, so
    the channels-last input is a kh-fold copy of the unit's rows (:func:`microexp.fast.kernels.taps_f32`,
    ``taps_bf16``), and the kernel is (kt, kw). oneDNN runs this shape at ~100 GFLOP/s a thread here (measured;
    its conv3d on the one-channel clip reaches ~40 %).

    ``wino`` = m (4 or 6; fp32, kw = 3: :func:`wino_usable`): the width taps by Winograd F(m, 3), 1.5x
    (F(4, 3)) or 1.8x (F(6, 3)) fewer multiplies (:func:`_wino_forward`). ``drop``: the words of a rate-1/2 dropout
    applied by the pooling pass (:func:`microexp.fast.dropout.dropout_words`). ``fused`` (with ``wino``; one
    input channel, filters in 32s: :func:`wino_fused_usable`): the products by the compiled register kernel,
    pooled as they are made (:func:`_wino_fused_forward`). ``amx`` (bf16: :func:`amx_usable`): on AMX tiles
    (:func:`_amx_forward`, which fills ``keep``).
    """
    if amx and amx_usable(weight, dtype):
        return _amx_forward(x, weight, bias, pool, want_indices, rows, drop, keep)
    if wino and fused and wino_fused_usable(weight, dtype):
        return _wino_fused_forward(x, weight, bias, pool, want_indices, rows, wino, drop)
    if wino and wino_usable(weight, dtype):
        return _wino_forward(x, weight, bias, pool, want_indices, rows, wino, drop)
    kernels = _kernels()
    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    n, cin, cols = x.shape[0], x.shape[1], hp * wp
    t_in, w_in = tu + kt - 1, wu + kw - 1  # only the conv outputs that pooling uses are computed
    # (C_out, C_in, kt, kh, kw) -> (C_out, (c, u), kt, kw): the kernel rows become input channels
    w2 = weight.detach().permute(0, 1, 3, 2, 4).reshape(cout, cin * kh, kt, kw).to(dtype)
    pre, indices, (pre_np, bias_np, idx_np, drop_np) = _outputs(n, cout, tp, cols, want_indices, bias, drop)
    xs = x.numpy()  # contiguous (conv_relu_pool)

    def unit(job: tuple[int, int, int]) -> None:
        i, r0, r1 = job
        rows = (r1 - r0) * pool
        buf = _SCRATCH.get("rows", (rows, t_in, w_in, cin * kh), dtype)
        if dtype == torch.bfloat16:
            kernels.taps_bf16(xs[i], t_in, w_in, r0 * pool, kh, buf.view(torch.int16).numpy())
        else:
            kernels.taps_f32(xs[i], t_in, w_in, r0 * pool, kh, buf.numpy())
        conv = F.conv2d(buf.permute(0, 3, 1, 2), w2)  # (rows, C, tu, wu), channels-last like its input
        best = _SCRATCH.get("best", (wp * cout + kernels.LANES,))
        arg = _SCRATCH.get("arg", (wp * cout + kernels.LANES,), torch.int32)
        cl = conv.permute(0, 2, 3, 1).contiguous()  # oneDNN's output is channels-last already: no copy
        # bf16 outputs go to the pooling pass as they are (its 16-lane loads widen them), saving a conversion pass
        cl = cl.view(torch.int16) if cl.dtype == torch.bfloat16 and cout % kernels.LANES == 0 else cl.float()
        kernels.pool_rows(cl.numpy(), r0, pool, wp, bias_np, pre_np[i], idx_np[i if indices is not None else 0],
                          indices is not None, best.numpy(), arg.numpy(), drop_np, i * cout * tp * cols)

    _parallel(unit, _row_units(n, hp, rows))
    return pre, indices


def _wino_tiles(x: torch.Tensor, weight: torch.Tensor, pool: int, tile: int) -> tuple[int, int, int, np.ndarray]:
    """A Winograd unit's frames read (t_in), tiles along the width, width the tiles read (w_need) and B^T's
    columns (one vector load each)."""
    _cout, kt, _kh, _kw, _tp, _hp, _wp, tu, _hu, wu = _geometry(x, weight, pool)
    tiles = -(-wu // tile)
    return tu + kt - 1, tiles, tile * tiles + 2, _WINO_BT[tile].t().contiguous().view(-1).numpy()


def _wino_clip(x: torch.Tensor, i: int, r0: int, pool: int, hr: int, t_in: int,
               w_need: int) -> tuple[np.ndarray, int]:
    """Clip ``i`` as a Winograd unit of pooled rows from ``r0`` (``hr`` clip rows) reads it, and its first row to
    read: the clip itself, or where the last tile reads past its width, the unit's rows zero-padded to ``w_need``
    (zeros whose outputs pooling never uses)."""
    if x.shape[4] < w_need:
        return F.pad(x[i][:, :t_in, r0 * pool:r0 * pool + hr], (0, w_need - x.shape[4])).numpy(), 0
    return x[i].numpy(), r0 * pool


def _wino_pool_scratch(wp: int, cout: int, pool: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch of :func:`microexp.fast.kernels.wino_pool_rows`: best, arg, block."""
    return (_SCRATCH.get("wino_best", (wp * cout,)).numpy(),
            _SCRATCH.get("wino_arg", (wp * cout,), torch.int32).numpy(),
            _SCRATCH.get("wino_block", (pool, pool, tile * pool // math.gcd(tile, pool), cout)).numpy())


def _wino_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, want_indices: bool,
                  rows: int | None, tile: int,
                  drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_forward` with the conv's width taps by Winograd F(tile, 3), in the same work units.

    Each tile of ``tile`` conv outputs along the width takes ``tile + 2`` products instead of ``3 tile``: each clip
    row is transformed once (``B^T d``, ``tile + 2`` planes of the tiles) and written as the taps of the conv rows
    that read it, the kernel rows as input channels as in :func:`_forward` (:func:`microexp.fast.kernels.wino_taps`),
    and convolved by one grouped oneDNN conv2d (``tile + 2`` groups, a (kt, 1) kernel, the weights transformed in
    float64, ``G g``); the pooling pass turns each conv row back into its outputs (``A^T m``) in L1 before taking
    the maxima (:func:`microexp.fast.kernels.wino_pool_rows`). Not bit-identical to the direct conv: fp32 rounding
    of the transforms (max difference ~1e-6 of the outputs' scale, measured)."""
    kernels = _kernels()
    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    n, cin = x.shape[0], x.shape[1]
    planes = tile + 2
    t_in, tiles, w_need, btc = _wino_tiles(x, weight, pool, tile)
    ch = cin * kh
    w2 = weight.detach().permute(0, 1, 3, 2, 4).reshape(cout, ch, kt, kw).double()
    u = torch.einsum("pq,ockq->pock", _WINO_G[tile], w2).reshape(planes * cout, ch, kt, 1).float()
    pre, indices, (pre_np, bias_np, idx_np, drop_np) = _outputs(n, cout, tp, hp * wp, want_indices, bias, drop)

    def unit(job: tuple[int, int, int]) -> None:
        i, r0, r1 = job
        nrows = (r1 - r0) * pool
        hr = nrows + kh - 1
        xs, h0 = _wino_clip(x, i, r0, pool, hr, t_in, w_need)
        d = _SCRATCH.get("wino_d", (nrows, t_in, tiles, planes * ch))
        kernels.wino_taps(xs, t_in, h0, hr, tiles, btc, kh, d.numpy(),
                          _SCRATCH.get("wino_row", (tiles * planes,)).numpy())
        # (rows, tu, tiles, planes C), channels-last
        m = F.conv2d(d.permute(0, 3, 1, 2), u, groups=planes).permute(0, 2, 3, 1)
        kernels.wino_pool_rows(m.contiguous().numpy(), tile, r0, pool, wp, bias_np, pre_np[i],
                               idx_np[i if indices is not None else 0], indices is not None,
                               *_wino_pool_scratch(wp, cout, pool, tile), drop_np, i * cout * tp * hp * wp)

    _parallel(unit, _row_units(n, hp, rows))
    return pre, indices


def _wino_fused_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                        want_indices: bool, rows: int | None, tile: int,
                        drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_wino_forward` without the unit's products in memory (one input channel, filters in 32s).

    The oneDNN GEMM of :func:`_wino_forward` writes a unit's products (12 MB for a quarter of an STCNN clip)
    and the pooling pass reads them back, from L3 or DRAM; here a compiled register kernel makes them for one
    pooled row and a span of frames at a time (``SPAN_BYTES``, in L2), ``WMK_T`` frames (9 with AVX-512) and
    32 filters a call with its sums in registers (:func:`microexp.fast.kernels.wino_products`), and the
    pooling pass takes their outputs and maxima straight away (:func:`microexp.fast.kernels.wino_fused_unit`).
    Each clip row's ``B^T d`` is made once, not once for each of the kh conv rows that read it. The same sums
    as :func:`_wino_forward` in another order (measured against the plain layers within the same tolerance)."""
    kernels = _kernels()
    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    n = x.shape[0]
    planes = tile + 2
    t_in, tiles, w_need, btc = _wino_tiles(x, weight, pool, tile)
    w2 = weight.detach().permute(0, 1, 3, 2, 4).reshape(cout, kh, kt, kw).double()
    uw = torch.einsum("pq,oukq->puko", _WINO_G[tile], w2).float().contiguous().numpy()
    per_frame = pool * tiles * planes * cout * 4  # bytes of products a frame of a pooled row
    step = math.lcm(pool, kernels.WMK_T)  # whole pooling windows and whole register-kernel calls a span
    span = step * max(1, SPAN_BYTES // (per_frame * step))
    pre, indices, views = _outputs(n, cout, tp, hp * wp, want_indices, bias, drop)
    pre_np, bias_np, idx_np, drop_np = views

    def unit(job: tuple[int, int, int]) -> None:
        i, r0, r1 = job
        hr = (r1 - r0) * pool + kh - 1
        xs, h0 = _wino_clip(x, i, r0, pool, hr, t_in, w_need)
        xh = _SCRATCH.get("wfused_xh", (hr, t_in, tiles, planes))
        m = _SCRATCH.get("wfused_m", (span * per_frame // 4,))
        row = _SCRATCH.get("wino_row", (tiles * planes,)).numpy()
        kernels.wino_fused_unit(xs, t_in, h0, hr, tiles, btc, xh.numpy(), row, kt, uw, m.numpy(), span, tile, r0,
                                r1, pool, wp, bias_np, pre_np[i], idx_np[i if indices is not None else 0],
                                indices is not None, *_wino_pool_scratch(wp, cout, pool, tile), drop_np,
                                i * cout * tp * hp * wp)

    _parallel(unit, _row_units(n, hp, rows))
    return pre, indices


def _amx_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, want_indices: bool,
                 rows: int | None, drop: torch.Tensor | None = None,
                 keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_forward` in bf16 on AMX tiles, pooled as the tiles are made (:mod:`microexp.fast.amx`), in the same
    work units: each unit's clip rows in bf16 with the frames innermost (:func:`microexp.fast.kernels.frames_last`,
    in L2), then :func:`microexp.fast.amx.pool_unit`. ``keep`` (training): the clips' bf16 copy in
    :func:`time_last`'s layout with ``amx_frames`` frames, filled by the units with their own rows for the weight
    gradient (a separate pass over the clips cost 2-3 ms a batch of 8 STCNN clips, measured)."""
    from microexp.fast import amx

    cout, kt, kh, kw, tp, hp, wp, tu, hu, wu = _geometry(x, weight, pool)
    kernels = _kernels()
    n, frames, width = x.shape[0], x.shape[2], x.shape[4]
    xs = x.detach().numpy()
    wts = amx.weights(weight.detach().float().contiguous().numpy())
    cfg = amx.config()
    pre, indices, views = _outputs(n, cout, tp, hp * wp, want_indices, bias, drop)
    pre_np, bias_np, idx_np, drop_np = views
    per_block = amx.T_TILE // pool

    def unit(job: tuple[int, int, int]) -> None:
        i, r0, r1 = job
        hr = (r1 - r0) * pool + kh - 1
        # the unit's clip rows in bf16, frames innermost; the last blocks' rows and taps read past the clip: zeros
        tb = _SCRATCH.get("amx_xt", (hr, width, amx_frames(frames)), torch.int16)
        kernels.frames_last(xs[i, 0], tb.numpy(), r0 * pool)
        if keep is not None:  # its own rows (the last unit: to the clip's end) kept for the weight gradient
            own = hr if r1 == hp else (r1 - r0) * pool
            keep[i, 0, r0 * pool:r0 * pool + own].copy_(tb[:own])
        best = _SCRATCH.get("amx_best", (per_block, wp * cout))
        arg = _SCRATCH.get("amx_arg", (per_block, wp * cout), torch.int32)
        out = _SCRATCH.get("amx_out", (2 * pool * pool * amx.T_TILE * cout,))
        amx.pool_unit(tb.numpy(), wts, kh, kw, cfg, r0, r1, pool, wp, tp, bias_np, pre_np[i],
                      idx_np[i if indices is not None else 0], indices is not None, best.numpy(), arg.numpy(),
                      out.numpy(), drop_np, i * cout * tp * hp * wp)

    _parallel(unit, _row_units(n, hp, rows))
    return pre, indices


def _aligned_zeros(shape: tuple[int, int]) -> np.ndarray:
    """float32 zeros starting on a 64-byte boundary: the weight-gradient kernel's 16-lane read-modify-writes of it
    then never straddle two cache lines (numpy aligns to 16 bytes; measured 1.3-1.6x faster kernel, 2 cores)."""
    n = shape[0] * shape[1]
    raw = np.zeros(n + 16, dtype=np.float32)
    start = (-(raw.ctypes.data // 4)) % 16
    return raw[start:start + n].reshape(shape)


def time_last(x: torch.Tensor, frames: int) -> torch.Tensor:
    """The clips (N, C, T, H, W) as (N, C, H, W, ``frames``), float32, each pixel's frames contiguous and zeros
    past T: the weight gradient's layout (a patch row's kt frames in one load). PyTorch's permuted copy, which is
    memory-bound: as fast as :func:`microexp.fast.kernels.frames_last` on one thread and faster on two (measured).
    The AMX units use that kernel for their bf16 rows, where it rounds in the same pass (1.9x faster than PyTorch's
    copy to bf16)."""
    n, c, t, h, w = x.shape
    xt = torch.empty(n, c, h, w, frames, dtype=torch.float32)
    xt[..., :t].copy_(x.permute(0, 1, 3, 4, 2))
    xt[..., t:].zero_()  # only the pad: zeroing all of it first was a second pass over the clip
    return xt


def _weight_grad(x: torch.Tensor, weight: torch.Tensor, indices: torch.Tensor, g: torch.Tensor,
                 pool: int, scale: float = 1.0,
                 xt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW and dL/db from the pooled-output gradient ``g`` (N, C, tp, hp*wp), routed through the max-pool
    ``indices`` (``BLOCKED`` where the ReLU blocked the output): only the window maxima with a nonzero gradient
    contribute (:func:`microexp.fast.kernels.pool_weight_grad`). ``xt``: the clips in :func:`time_last`'s layout
    if the forward made them (the AMX candidates: their bf16 bits, so that the gradient is taken against the bf16
    clip, as autocast takes it), else made here (float32)."""
    kernels = _kernels()
    cout, cin, kt, kh, kw = weight.shape
    n, _c, t, h, w = x.shape
    tp, wp = g.shape[2], _geometry(x, weight, pool)[6]
    lanes = kernels.LANES * -(-kt // kernels.LANES)
    if xt is None or xt.shape[-1] < t + lanes - kt:
        xt = time_last(x, t + lanes - kt)
    xs, gs, ids = xt.numpy(), g.numpy(), indices.numpy()

    def unit(job: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, a, b = job
        acc, bacc = _aligned_zeros((cout, cin * kh * kw * lanes)), np.zeros(cout, np.float32)
        kernels.pool_weight_grad(xs[i], gs[i], ids[i], a, b, pool, kh, kw, wp, lanes, acc, bacc, scale)
        return torch.from_numpy(acc), torch.from_numpy(bacc)

    parts = _parallel(unit, _units(n, tp, pool))
    acc = torch.stack([p[0] for p in parts]).sum(0)  # fixed partition and order: thread-independent
    grad_b = torch.stack([p[1] for p in parts]).sum(0)
    return acc.view(cout, cin, kh, kw, lanes)[..., :kt].permute(0, 1, 4, 2, 3).contiguous(), grad_b


class _ConvReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                dtype: torch.dtype, rows: int | None = None, wino: int = 0,
                drop: torch.Tensor | None = None, fused: bool = False, amx: bool = False) -> torch.Tensor:
        xt = None
        if amx and amx_usable(weight, dtype):  # the AMX units keep their bf16 rows for the weight gradient
            n, c, _t, h, w = x.shape
            xt = torch.empty(n, c, h, w, amx_frames(x.shape[2]), dtype=torch.int16)
            xt[:, :, _geometry(x, weight, pool)[5] * pool + weight.shape[3] - 1:].zero_()  # rows no unit reads
        out, indices = _forward(x, weight, bias, pool, want_indices=True, dtype=dtype, rows=rows, wino=wino,
                                drop=drop, fused=fused, amx=amx, keep=xt)
        ctx.xt = xt
        ctx.save_for_backward(x, weight, indices)  # indices also mark the ReLU's (and dropout's) blocked outputs
        ctx.pool, ctx.scale = pool, 1.0 if drop is None else 2.0
        hp, wp = _geometry(x, weight, pool)[5:7]
        return out.view(x.shape[0], -1, out.shape[2], hp, wp)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, indices = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise RuntimeError("conv_relu_pool: the fast path does not compute an input gradient")
        g = grad_out.float().reshape(indices.shape).contiguous()
        if ctx.needs_input_grad[1]:
            grad_w, grad_b = _weight_grad(x, weight.detach().float(), indices, g, ctx.pool, ctx.scale, ctx.xt)
        else:
            grad_w, grad_b = None, g.masked_fill(indices == _kernels().BLOCKED, 0.0).sum((0, 2, 3)) * ctx.scale
        ctx.xt = None  # the clips' copy is not kept past the backward
        return (None, grad_w, grad_b if ctx.needs_input_grad[2] else None, None, None, None, None, None, None,
                None)


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path applies: CPU float32, 5-D input that needs no gradient, not while tracing for
    TorchScript/ONNX export (the thread-pool kernels are opaque to the tracer, which would bake in constants), and
    no autocast other than CPU bf16 (the ``bf16`` precision, which the fast path runs itself)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    if torch.is_autocast_enabled(x.device.type) and not (x.device.type == "cpu" and _tune().precision_now() == "bf16"):
        return False
    return (x.device.type == "cpu" and weight.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.dim() == 5 and not x.requires_grad)


def _tune() -> Any:
    from microexp.fast import tune

    return tune


def _plain(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, dtype: torch.dtype) -> torch.Tensor:
    """The PyTorch layers (in ``dtype``, as autocast would run them); float32 out."""
    out = F.max_pool3d(torch.relu(F.conv3d(x.to(dtype), weight.to(dtype), bias.to(dtype))), pool)
    return out.float()


def _onednn_cl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
               dtype: torch.dtype) -> torch.Tensor:
    """The PyTorch layers on channels-last (NDHWC) input and weights, in ``dtype``: oneDNN's own conv3d kernels for
    that layout (native bf16 ones where the CPU has them); float32 out, in the usual layout."""
    cl = torch.channels_last_3d
    out = F.max_pool3d(torch.relu(F.conv3d(x.to(dtype, memory_format=cl), weight.to(dtype, memory_format=cl),
                                           bias.to(dtype))), pool)
    return out.to(torch.float32, memory_format=torch.contiguous_format)


def _run(how: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, dtype: torch.dtype,
         train: bool, drop: torch.Tensor | None = None) -> torch.Tensor:
    """Candidate ``how``; ``drop``: the words of a rate-1/2 dropout after the pooling
    (:func:`microexp.fast.dropout.dropout_words`), applied by the fused variants' pooling pass, else afterwards."""
    if how in ("plain", "onednn_cl"):
        out = (_plain if how == "plain" else _onednn_cl)(x, weight, bias, pool, dtype)
        if drop is None:
            return out
        return apply_words(out, drop)
    rows, wino = ROWS_CANDIDATES[how], WINO_TILE.get(how, 0)  # one of the fused variants
    fused, amx = how in WINO_FUSED, how in AMX
    if train:
        return _ConvReluPool.apply(x, weight, bias, pool, dtype, rows, wino, drop, fused, amx)
    with torch.no_grad():
        hp, wp = _geometry(x, weight, pool)[5:7]
        out = _forward(x, weight, bias, pool, want_indices=False, dtype=dtype, rows=rows, wino=wino,
                       drop=drop, fused=fused, amx=amx)[0]  # ReLU (and dropout) applied by the pooling pass
        return out.view(x.shape[0], -1, out.shape[2], hp, wp)


def _trial(how: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, dtype: torch.dtype,
           train: bool) -> Callable[[], None]:
    """One run of candidate ``how`` for the tuner: forward, and for training the backward to the weights (on
    detached leaves, so the model's own gradients are untouched)."""
    w, b = weight.detach().requires_grad_(train), bias.detach().requires_grad_(train)

    def run() -> None:
        with torch.set_grad_enabled(train):
            out = _run(how, x, w, b, pool, dtype, train)
            if train:
                out.backward(torch.ones_like(out))
                w.grad = b.grad = None
    return run


def conv_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int,
                   dropout: float = 0.0) -> torch.Tensor:
    """``max_pool3d(relu(conv3d(x, weight, bias)), pool)`` (stride = pool, no padding), fast on CPU: the
    implementation measured fastest for this shape on this machine (:mod:`microexp.fast.tune`), in bf16 inside a
    CPU bf16 autocast region (float32 out either way); then ``dropout`` (a rate; pass 0 outside training) as
    :func:`microexp.fast.dropout.dropout` draws it. At rate 1/2 (the Reddy models') the fused variants apply it in
    their pooling pass and mark the dropped outputs for the backward: the same mask from the same random words, no
    passes of its own over the output."""
    if not usable(x, weight) or pool ** 3 >= _kernels().BLOCKED:  # window offsets must fit below the marker
        return drop_out(F.max_pool3d(torch.relu(F.conv3d(x, weight, bias)), pool), dropout, dropout > 0.0)
    if dropout not in (0.0, 0.5):
        return drop_out(conv_relu_pool(x, weight, bias, pool), dropout, True)
    tune = _tune()
    x = x.contiguous()
    dtype = torch.bfloat16 if tune.precision_now() == "bf16" else torch.float32
    train = torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad)
    how = tune.choose("conv_relu_pool", train, (tuple(x.shape), tuple(weight.shape), (pool,)),
                      lambda c: _trial(c, x, weight, bias, pool, dtype, train),
                      what=f"clips {'x'.join(map(str, x.shape))}, {weight.shape[0]} filters")
    cout, tp, hp, wp = weight.shape[0], *_geometry(x, weight, pool)[4:7]
    drop = dropout_words(x.shape[0] * cout * tp * hp * wp) if dropout == 0.5 else None
    with torch.autocast("cpu", enabled=False):
        return _run(how, x, weight, bias, pool, dtype, train, drop)
