"""bf16 conv -> ReLU -> max-pool on AMX tiles, pooled as the tiles are made (the ``amx_half`` / ``amx_quarter``
candidates of :mod:`microexp.fast.conv` for the ``bf16`` precision).

oneDNN's bf16 convolution on AMX is bound by writing its outputs (about one value a cycle a core here, whatever the
layout of its input), and the pooling pass then reads them back. Here a conv output block (16 consecutive frames
of one conv row and column, 32 filters) is two 16 x 16 fp32 tiles summed by ``tdpbf16ps`` over the kh x kw kernel
taps, each a 16 x 16 bf16 tile loaded straight from the clip with a stride of one frame (row i holds frames i ..
i + 15: the kt time taps, no im2col; the kernel's 16th time tap is zero), two blocks sharing each weight tile; a
pooled column's blocks are stored to a 36 KB buffer in L1 and max-pooled from there. Nothing the size of the conv
output is ever written. The sums are fp32 (``tdpbf16ps``
accumulates in fp32 and its products of bf16 values are exact), so the outputs are not rounded to bf16 before the
pooling as oneDNN's are.

AMX needs the CPU's ``amx_bf16`` / ``amx_tile`` flags, numba compiling for them, and the kernel's leave for this
process (``arch_prctl(ARCH_REQ_XCOMP_PERM)``, asked for once, as oneDNN does); :func:`available` checks all three,
and elsewhere the candidates run as oneDNN's bf16
units of the same size. The tile instructions are LLVM's ``llvm.x86.*`` intrinsics (LLVM 12 or newer), compiled by
numba on first use.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from microexp.fast.kernels import (
    LANES,
    _i64,
    _llvm_fn,
    _write_pooled,
    target_features,
    window_max16,
    window_offsets,
)

T_TILE = 16  # frames a tile: rows of the output and of the input tiles
K_TAPS = 16  # time taps a tile row holds (kt <= 16; the ones past kt have zero weight)
FILTERS = 32  # two 16-wide output tiles
_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158


@functools.cache
def available() -> bool:
    """Whether this process can run AMX tiles: Linux on x86-64, the CPU reports ``amx_bf16`` and ``amx_tile``,
    numba compiles for them (not held to another CPU by ``NUMBA_CPU_FEATURES``), and the kernel grants the tile
    data state (asked for once)."""
    if not sys.platform.startswith("linux") or not {"amx-bf16", "amx-tile"} <= target_features():
        return False
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
        if not {"amx_bf16", "amx_tile"} <= set(flags):
            return False
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)) == 0
    except (OSError, AttributeError, ValueError):
        return False


def _tile_fn(builder, name: str, args: list[ir.Type]):  # type: ignore[no-untyped-def]
    """A tile instruction's intrinsic (they return nothing)."""
    return _llvm_fn(builder, name, ir.VoidType(), args)


def _data_ptr(context, builder, arrtype, arr, offset=None):  # type: ignore[no-untyped-def]
    data = context.make_array(arrtype)(context, builder, arr).data
    if offset is not None:
        data = builder.gep(data, [offset])
    return builder.bitcast(data, ir.IntType(8).as_pointer())


@intrinsic
def tile_config(typingctx, cfg):  # type: ignore[no-untyped-def]
    """``ldtilecfg``: the tile shapes (a 64-byte palette-1 configuration) for this thread."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i8p = ir.IntType(8).as_pointer()
        builder.call(_tile_fn(builder, "llvm.x86.ldtilecfg", [i8p]),
                     [_data_ptr(context, builder, signature.args[0], args[0])])
        return context.get_dummy_value()
    return types.void(cfg), codegen


@intrinsic
def tile_release(typingctx):  # type: ignore[no-untyped-def]
    """``tilerelease``: the thread's tiles back to their initial state."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        builder.call(_tile_fn(builder, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()
    return types.void(), codegen


def _conv_blocks(blocks: int):  # type: ignore[no-untyped-def]
    """The intrinsic for ``blocks`` (1 or 2) conv output blocks sharing their weight tiles: block b's ``out[off_b:]``
    (16 frames x 32 filters, fp32, rows 32 apart) = sum over u < kh, q < kw of A_b(u, q) @ B(u, q), A_b(u, q) the
    16 x 16 bf16 tile at ``xt[x_b + u rs + q cs]`` with rows one frame (2 bytes) apart, B(u, q) its two 8 x 16 x 2
    weight tiles (VNNI pairs) at ``wts[(2 (u kw + q) + h) 256]``. Tiles (:func:`config`): 0-3 the sums (block,
    half), 4-5 the inputs, 6-7 the weights, so two blocks load the weights once for four products."""

    @intrinsic
    def blocks_fn(typingctx, xt, x0, x1, rs, cs, kh, kw, wts, out, o0, o1):  # type: ignore[no-untyped-def]
        sig = types.void(xt, x0, x1, rs, cs, kh, kw, wts, out, o0, o1)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            x_a, x0_, x1_, rs_, cs_, kh_, kw_, w_a, o_a, o0_, o1_ = args
            i8, i8p, i64 = ir.IntType(8), ir.IntType(8).as_pointer(), ir.IntType(64)
            x0_, x1_, rs_, cs_, kh_, kw_, o0_, o1_ = (_i64(builder, v) for v in
                                                      (x0_, x1_, rs_, cs_, kh_, kw_, o0_, o1_))
            load = _tile_fn(builder, "llvm.x86.tileloadd64", [i8, i8p, i64])
            dot = _tile_fn(builder, "llvm.x86.tdpbf16ps", [i8, i8, i8])
            zero = _tile_fn(builder, "llvm.x86.tilezero", [i8])
            store = _tile_fn(builder, "llvm.x86.tilestored64", [i8, i8p, i64])
            for t in range(2 * blocks):
                builder.call(zero, [i8(t)])
            with cgutils.for_range(builder, kh_) as rows, cgutils.for_range(builder, kw_) as cols:
                at = builder.add(builder.mul(rows.index, rs_), builder.mul(cols.index, cs_))
                for b, xb in enumerate((x0_, x1_)[:blocks]):
                    builder.call(load, [i8(4 + b), _data_ptr(context, builder, signature.args[0], x_a,
                                                             builder.add(xb, at)), i64(2)])
                pair = builder.add(builder.mul(rows.index, kw_), cols.index)
                for h in range(2):
                    w_at = builder.mul(builder.add(builder.mul(pair, i64(2)), i64(h)), i64(256))
                    builder.call(load, [i8(6 + h), _data_ptr(context, builder, signature.args[7], w_a, w_at),
                                        i64(64)])
                    for b in range(blocks):
                        builder.call(dot, [i8(2 * b + h), i8(4 + b), i8(6 + h)])
            for b, ob in enumerate((o0_, o1_)[:blocks]):
                for h in range(2):
                    at = builder.add(ob, i64(16 * h))
                    builder.call(store, [i8(2 * b + h), _data_ptr(context, builder, signature.args[8], o_a, at),
                                         i64(4 * FILTERS)])
            return context.get_dummy_value()

        return sig, codegen

    return blocks_fn


conv_block = _conv_blocks(1)
conv_block2 = _conv_blocks(2)


def config() -> np.ndarray:
    """The tile shapes: 0-3 the sums (16 x 16 fp32), 4-5 the inputs (16 frames x 16 taps, bf16), 6-7 the
    weights (8 tap pairs x 16 filters x 2)."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1  # palette 1
    shapes = [(T_TILE, 64)] * 4 + [(T_TILE, 2 * K_TAPS)] * 2 + [(K_TAPS // 2, 64)] * 2
    for t, (rows, colsb) in enumerate(shapes):
        cfg[16 + 2 * t], cfg[17 + 2 * t], cfg[48 + t] = colsb & 255, colsb >> 8, rows
    return cfg


def weights(weight: np.ndarray) -> np.ndarray:
    """(32, 1, kt, kh, kw) float32 -> the B tiles as int16 bits of bf16: (kh, kw, half, tap pair, filter, 2), the
    time taps past kt zero (kt <= 16), rounded to bf16 as PyTorch rounds."""
    import torch

    w = torch.as_tensor(weight)
    cout, _cin, kt, kh, kw = w.shape
    pad = torch.zeros(cout, K_TAPS, kh, kw)
    pad[:, :kt] = w[:, 0]
    b = pad.view(2, 16, K_TAPS // 2, 2, kh, kw).permute(4, 5, 0, 2, 1, 3).contiguous()
    return b.to(torch.bfloat16).view(torch.int16).numpy()


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def pool_unit(xt: np.ndarray, wts: np.ndarray, kh: int, kw: int, cfg: np.ndarray, r0: int, r1: int, pool: int,
              wp: int, tp: int, bias: np.ndarray, pre: np.ndarray, idx: np.ndarray, want_idx: bool,
              best: np.ndarray, arg: np.ndarray, out: np.ndarray, drop: np.ndarray,
              e0: int) -> None:  # pragma: no cover
    """Pooled rows ``r0 .. r1 - 1`` of one clip: ``xt`` (the unit's clip rows, width, frames + padding) as int16
    bits of bf16, frames innermost; for each pooled row, block of 16 // pool pooled frames and pooled column, the
    pool x pool conv blocks of its windows (:func:`conv_block`) and their maxima over the windows, the first
    maximum in (t, h, w) order winning ties as in ``torch.nn.MaxPool3d``; then bias, ReLU, dropout and indices as
    :func:`microexp.fast.kernels.pool_rows` writes them (best, arg: float32 / int32 scratch of (16 // pool, wp 32);
    out: float32 scratch of 2 x pool x pool x 16 x 32: two pooled columns' conv blocks, in L1)."""
    hr, width, t_pad = xt.shape
    rs, cs = width * t_pad, t_pad
    xf, wf, of = xt.ravel(), wts.ravel(), out.ravel()
    frames = T_TILE // pool  # pooled frames a block
    c = FILTERS
    span = pool * pool * T_TILE * c  # a pooled column's conv blocks in ``out``
    offsets = window_offsets(pool, c, pool * T_TILE * c, T_TILE * c)  # a window's conv outputs in ``out``
    tile_config(cfg)
    for li in range(r1 - r0):
        for a0 in range(0, tp, frames):
            na = min(frames, tp - a0)
            for j0 in range(0, wp, 2):  # two pooled columns at a time share each weight tile
                for dh in range(pool):
                    for dw in range(pool):
                        x0 = ((li * pool + dh) * width + j0 * pool + dw) * t_pad + a0 * pool
                        o0 = (dh * pool + dw) * T_TILE * c
                        if j0 + 1 < wp:
                            conv_block2(xf, x0, x0 + pool * t_pad, rs, cs, kh, kw, wf, of, o0, o0 + span)
                        else:
                            conv_block(xf, x0, x0, rs, cs, kh, kw, wf, of, o0, o0)
                for j in range(j0, min(wp, j0 + 2)):
                    for al in range(na):
                        for k in range(0, c, LANES):
                            window_max16(of, (j - j0) * span + al * pool * c + k, offsets, best[al], j * c + k,
                                         arg[al])
            for al in range(na):
                _write_pooled(best[al], arg[al], bias, (r0 + li) * wp, a0 + al, wp, c, want_idx, pre, idx, drop,
                              e0)
    tile_release()


__all__ = ["available", "config", "pool_unit", "weights"]
