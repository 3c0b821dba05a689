"""Compiled inner loops (numba) for the fast CPU path, where no PyTorch op does the job: ``taps_f32`` / ``taps_bf16``
and ``wino_taps`` (a conv work unit's input, the kernel rows as channels; the latter through Winograd's input
transform), ``pool_rows`` and ``wino_pool_rows`` (max-pool with the window offset of each maximum, from a work
unit's conv outputs), ``wino_products`` and ``wino_fused_unit`` (a Winograd unit whose products are made by
a register kernel, :func:`wino_mk`, and pooled as they are made), ``pool_weight_grad`` (below) and
``gemv_rows`` (the batch-1 Dense layer), ``outer8`` and
``gemm8`` (a wide Dense layer's backward, eight batch rows at a time), ``rows8_dot`` / ``rows8_axpy`` (its streamed
forward and input gradient) and ``rows8_sgd`` (its backward with the SGD step folded in; ``rows8_dot`` and
``rows8_sgd`` run explicit 16-lane loops, :func:`dot2x8` and :func:`sgd4x8`, with their running sums in registers;
``gemv_rows`` and ``rows8_dot`` also take bf16 weights), ``frames_last`` (a clip's rows with the frames innermost, in
bf16 for the AMX units: 16 x 16 register transposes, :func:`transpose16`). Each runs without the GIL, one call per
work unit on the thread pool of :mod:`microexp.fast.conv`, and is compiled on first use and cached (``cache=True``).
Where numba compiles for AVX-512 (``AVX512``), the weight gradient lists its terms 16 at a time
(:func:`list_terms16`: masked loads, a two-table permute, compress stores) and the pooling pass writes 16 channels x
16 columns at a time (:func:`write_pooled16`); elsewhere both go one element at a time, with the same results.

``pool_weight_grad``: the weight gradient of ``max_pool3d(conv3d(x, w))`` computed from the max-pool indices.
Max-pooling routes each pooled output's gradient to exactly one conv output (its window's maximum), so
``dL/dW[c] = sum over pooled outputs p of g[c, p] * patch(argmax(c, p))``: 1/27 of the multiply-adds of the dense
``(K x positions) @ (positions x C)`` product for 3x3x3 pooling, and pooled outputs that the ReLU blocked
(g == 0) cost nothing. Same sum, fewer zero terms; the order of summation over a work unit is fixed.

The clip is read in (C_in, H, W, T) layout so that a patch row's ``kt`` frames are contiguous, and each row is
accumulated with one 16-lane fused multiply-add (:func:`axpy16`). numba's own loop vectoriser does not vectorise
that 16-element loop (it cannot prove the accumulator and the clip apart, and a 16-trip loop is below its
interleaved vector width: measured scalar code, 5x slower), so the lanes are written as an LLVM vector directly;
LLVM lowers them to one AVX-512, two AVX2 or four SSE/NEON operations. For STCNN's and FuseNet's kernels (one
input channel, 3 x 3 taps, kt <= 16: nine 16-lane rows) each channel first lists its nonzero terms without a
branch, then :func:`grad_rows9` sums them with the nine rows in registers: 1.8x faster than a load and a store of
the accumulator per term (measured, one thread, 2026-12-07); the order of summation is the same. The terms are
taken ``GRAD_BLOCK_ROWS`` pooled rows at a time, every channel in turn, so the clip window they read stays in L1
(1.2-1.3x faster than each channel's whole unit at once, whose reads came from L2; the same sums, bit for bit).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

LANES = 16


def target_features() -> frozenset[str]:
    """The CPU features numba compiles for here (its target: ``NUMBA_CPU_FEATURES``, else this CPU's)."""
    import llvmlite.binding as ll
    from numba.core import config

    try:
        features = config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    except RuntimeError:  # llvmlite cannot read this CPU's features: assume none
        features = ""
    return frozenset(f[1:] for f in features.split(",") if f[:1] == "+")


def vector_bits() -> int:
    """The width of the vector registers numba compiles for here: 512 with AVX-512, 256 with AVX, else 128."""
    on = target_features()
    return 512 if "avx512f" in on else 256 if "avx" in on else 128


def _vec_ptr(context, builder, arrtype, arr, offset):  # type: ignore[no-untyped-def]
    """A pointer to the LANES elements of array ``arr`` from ``offset`` on, as one LLVM vector."""
    data = context.make_array(arrtype)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [offset]), ir.VectorType(data.type.pointee, LANES).as_pointer())


def _llvm_fn(builder, name: str, ret, args: list):  # type: ignore[no-untyped-def]
    """The LLVM function (an intrinsic) ``name`` of this module, declared on first use: ``ret (args)``."""
    mod = builder.module
    return mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ret, args), name=name)


def _elem_bytes(elem) -> int:  # type: ignore[no-untyped-def]
    """An LLVM element type's size in bytes (integers, or float32)."""
    return elem.width // 8 if isinstance(elem, ir.IntType) else 4


def _bf16_widen(builder, raw):  # type: ignore[no-untyped-def]
    """A vector of bfloat16 bits (int16 lanes) as float32, exactly: bf16 is a float32's top half."""
    ivec = ir.VectorType(ir.IntType(32), raw.type.count)
    wide = builder.shl(builder.zext(raw, ivec), ir.Constant(ivec, [16] * raw.type.count))
    return builder.bitcast(wide, ir.VectorType(ir.FloatType(), raw.type.count))


def _load16(context, builder, arrtype, arr, offset):  # type: ignore[no-untyped-def]
    """The LANES elements of ``arr`` from ``offset`` on as a float32 vector: float32 as they are, int16 (bfloat16
    bits) widened exactly."""
    ptr = _vec_ptr(context, builder, arrtype, arr, offset)
    if isinstance(arrtype.dtype, types.Integer):
        return _bf16_widen(builder, builder.load(ptr, align=2))
    return builder.load(ptr, align=4)


def _transpose_rows(builder, rows: list) -> list:  # type: ignore[no-untyped-def]
    """16 vectors of 16 lanes (row i, lane j) -> the transposed 16 (row j, lane i): four rounds of 16 two-vector
    shuffles, in registers."""
    rows = list(rows)
    i32 = ir.IntType(32)
    b = 1
    while b < LANES:  # round b: rows i and i + b swap their off-diagonal b x b sub-blocks
        lo = ir.Constant(ir.VectorType(i32, LANES), [j if j & b == 0 else LANES + j - b for j in range(LANES)])
        hi = ir.Constant(ir.VectorType(i32, LANES), [j + b if j & b == 0 else LANES + j for j in range(LANES)])
        for i in range(LANES):
            if not i & b:
                rows[i], rows[i + b] = (builder.shuffle_vector(rows[i], rows[i + b], lo),
                                        builder.shuffle_vector(rows[i], rows[i + b], hi))
        b *= 2
    return rows


def _splat(builder, value, vec):  # type: ignore[no-untyped-def]
    """``value`` in every lane of the vector type ``vec``."""
    lane0 = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(lane0, lane0, ir.Constant(ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count))


def _intrinsic5(emit):  # type: ignore[no-untyped-def]
    """An intrinsic ``f(a, a_off, b, c, c_off)`` that returns nothing, its code written by ``emit(context, builder,
    signature, args)`` (the shape of the Winograd transforms: read ``a`` from ``a_off`` with ``b``, write ``c``)."""

    @intrinsic
    def f(typingctx, a, a_off, b, c, c_off):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            emit(context, builder, signature, args)
            return context.get_dummy_value()

        return types.void(a, a_off, b, c, c_off), codegen

    return f


def widen(v):  # type: ignore[no-untyped-def]  # pragma: no cover - replaced in compiled code
    """A weight as float32: float32 as it is, int16 (bfloat16's bits) widened exactly."""
    return v


@overload(widen)
def _widen(v):  # type: ignore[no-untyped-def]
    if isinstance(v, types.Integer):
        return lambda v: np.int32(np.int32(v) << 16).view(np.float32)  # bf16 is a float32's top half
    return lambda v: v


@intrinsic
def axpy16(typingctx, dst, dst_off, src, src_off, alpha):  # type: ignore[no-untyped-def]
    """``dst[dst_off : dst_off + 16] += alpha * src[src_off : src_off + 16]`` (1-D float32 arrays, unchecked; ``src``
    may be bfloat16 bits as int16, widened exactly)."""
    sig = types.void(dst, dst_off, src, src_off, alpha)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        d, d_off, s, s_off, a = args
        dst_p = _vec_ptr(context, builder, signature.args[0], d, d_off)
        acc, row = builder.load(dst_p, align=4), _load16(context, builder, signature.args[2], s, s_off)
        splat = _splat(builder, a, ir.VectorType(ir.FloatType(), LANES))
        prod = builder.fmul(row, splat, flags=["contract"])  # contract: one fused multiply-add where there is one
        builder.store(builder.fadd(prod, acc, flags=["contract"]), dst_p, align=4)
        return context.get_dummy_value()

    return sig, codegen


BLOCKED = 255  # max-pool index of a pooled output whose ReLU blocked it (window offsets are < pool ** 3)


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def window_offsets(pool: int, st: int, sh: int, sw: int, size: int = 0) -> np.ndarray:  # pragma: no cover
    """A max-pool window's offsets: window offset o = (dt, dh, dw), in (t, h, w) order as ``torch.nn.MaxPool3d``
    numbers them, -> ``dt st + dh sh + dw sw`` (the strides of the buffer the window is read from); zeros past
    ``pool ** 3`` up to ``size`` entries."""
    out = np.zeros(max(size, pool ** 3), np.int64)
    for o in range(pool ** 3):
        out[o] = (o // (pool * pool)) * st + ((o // pool) % pool) * sh + (o % pool) * sw
    return out


# pooled rows a block of pool_weight_grad: each channel sums the block, whose clip window stays in L1 (1-10 measured)
GRAD_BLOCK_ROWS = 2
NVEC = 9  # 16-lane accumulator rows that grad_rows9 holds in registers: C_in * kh * kw * (lanes / 16) for STCNN


@intrinsic
def grad_rows9(typingctx, xf, src, gvals, count, koff, acc, acc_off):  # type: ignore[no-untyped-def]
    """``acc[acc_off + 16k : +16] += sum_{q < count} gvals[q] * xf[src[q] + koff[k] : +16]`` for k = 0 .. 8
    (float32 ``gvals``, ``acc``; ``xf`` float32 or bfloat16 bits as int16; int64 ``src``, ``koff``): one channel's weight gradient over its
    nonzero pooled outputs, the nine 16-lane sums held in registers across the whole loop (written to memory once)
    instead of a load and a store of the accumulator per term; no branch inside the loop."""
    sig = types.void(xf, src, gvals, count, koff, acc, acc_off)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        x_a, src_a, g_a, n, koff_a, acc_a, a_off = args
        src_data = context.make_array(signature.args[1])(context, builder, src_a).data
        g_data = context.make_array(signature.args[2])(context, builder, g_a).data
        koff_data = context.make_array(signature.args[4])(context, builder, koff_a).data
        vec = ir.VectorType(ir.FloatType(), LANES)
        offs = [builder.load(builder.gep(koff_data, [ir.Constant(ir.IntType(64), k)])) for k in range(NVEC)]
        dst = [_vec_ptr(context, builder, signature.args[5], acc_a,
                        builder.add(a_off, a_off.type(k * LANES))) for k in range(NVEC)]
        slots = [cgutils.alloca_once_value(builder, builder.load(p, align=4)) for p in dst]  # promoted to registers
        with cgutils.for_range(builder, n) as loop:
            base = builder.load(builder.gep(src_data, [loop.index]))
            splat = _splat(builder, builder.load(builder.gep(g_data, [loop.index])), vec)
            for k in range(NVEC):
                row = _load16(context, builder, signature.args[0], x_a, builder.add(base, offs[k]))
                prod = builder.fmul(row, splat, flags=["contract"])
                builder.store(builder.fadd(prod, builder.load(slots[k]), flags=["contract"]), slots[k])
        for p, slot in zip(dst, slots, strict=True):
            builder.store(builder.load(slot), p, align=4)
        return context.get_dummy_value()

    return sig, codegen


def _masked_load(builder, ptr, mask, elem):  # type: ignore[no-untyped-def]
    """``llvm.masked.load``: the lanes of ``mask`` from ``ptr`` (a vector pointer), zero elsewhere; nothing read
    for the other lanes, so a short last group cannot read past an array."""
    vec, i32 = ir.VectorType(elem, LANES), ir.IntType(32)
    fn = _llvm_fn(builder, f"llvm.masked.load.v{LANES}{_vname(elem)}.p0", vec, [ptr.type, i32, mask.type, vec])
    return builder.call(fn, [ptr, i32(_elem_bytes(elem)), mask, ir.Constant(vec, None)])


def _vname(elem) -> str:  # type: ignore[no-untyped-def]
    return f"i{elem.width}" if isinstance(elem, ir.IntType) else "f32"


def _compress_store(builder, value, ptr, mask):  # type: ignore[no-untyped-def]
    """``llvm.masked.compressstore``: the lanes of ``value`` that ``mask`` selects, stored contiguously at ``ptr``."""
    fn = _llvm_fn(builder, f"llvm.masked.compressstore.v{LANES}{_vname(value.type.element)}", ir.VoidType(),
                  [value.type, ptr.type, mask.type])
    builder.call(fn, [value, ptr, mask])


@intrinsic
def list_terms16(typingctx, idx, g, pos, j, count, corner, table, scale, src, vals, n, bsum):  # type: ignore[no-untyped-def]
    """AVX-512 only (``vpermi2d``, ``vpcompress``): for the ``count`` (<= 16) pooled outputs ``j ..`` of one
    channel's row of ``idx`` / ``g`` (uint8 window offsets, ``BLOCKED`` for none; float32 gradients), the terms of
    :func:`pool_weight_grad` that are not zero, appended at ``n``: ``src`` (int64) = ``corner + pos[j] +
    table[idx[j]]`` (``table``: the 32 int32 window offsets), ``vals`` = ``g[j] * scale``; adds the values to the 16
    lanes of ``bsum`` and returns the new ``n``. No branch and no scalar loop: a vector of outputs at a time."""
    sig = types.int64(idx, g, pos, j, count, corner, table, scale, src, vals, n, bsum)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        idx_a, g_a, pos_a, j_, count_, corner_, tab_a, scale_, src_a, vals_a, n_, b_a = args
        i8, i32, i64, f32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
        j_, count_, corner_, n_ = (_i64(builder, v) for v in (j_, count_, corner_, n_))
        mask = builder.icmp_unsigned("<", ir.Constant(ir.VectorType(i64, LANES), list(range(LANES))),
                                     _splat(builder, count_, ir.VectorType(i64, LANES)))
        arr = context.make_array

        def at(k, value, offset, elem):  # type: ignore[no-untyped-def]
            data = arr(signature.args[k])(context, builder, value).data
            return builder.bitcast(builder.gep(data, [offset]), ir.VectorType(elem, LANES).as_pointer())

        ix = builder.zext(_masked_load(builder, at(0, idx_a, j_, i8), mask, i8), ir.VectorType(i32, LANES))
        scale_f = builder.fptrunc(scale_, f32) if scale_.type != f32 else scale_
        gv = builder.fmul(_masked_load(builder, at(1, g_a, j_, f32), mask, f32),
                          _splat(builder, scale_f, ir.VectorType(f32, LANES)))
        live = builder.icmp_unsigned("!=", ix, ir.Constant(ir.VectorType(i32, LANES), [BLOCKED] * LANES))
        gv = builder.select(live, gv, ir.Constant(ir.VectorType(f32, LANES), [0.0] * LANES))
        keep = builder.fcmp_unordered("!=", gv, ir.Constant(ir.VectorType(f32, LANES), [0.0] * LANES))
        tab = arr(signature.args[6])(context, builder, tab_a).data
        halves = [builder.load(builder.bitcast(builder.gep(tab, [i64(h * LANES)]),
                                               ir.VectorType(i32, LANES).as_pointer()), align=4) for h in range(2)]
        vt = ir.VectorType(i32, LANES)
        perm = _llvm_fn(builder, "llvm.x86.avx512.vpermi2var.d.512", vt, [vt, vt, vt])
        off = builder.sext(builder.call(perm, [halves[0], ix, halves[1]]), ir.VectorType(i64, LANES))
        src = builder.add(builder.add(off, _masked_load(builder, at(2, pos_a, j_, i64), mask, i64)),
                          _splat(builder, corner_, ir.VectorType(i64, LANES)))
        _compress_store(builder, src, builder.gep(arr(signature.args[8])(context, builder, src_a).data, [n_]), keep)
        _compress_store(builder, gv, builder.gep(arr(signature.args[9])(context, builder, vals_a).data, [n_]), keep)
        bp = _vec_ptr(context, builder, signature.args[11], b_a, i64(0))
        builder.store(builder.fadd(builder.load(bp, align=4), gv), bp, align=4)
        bits = builder.bitcast(keep, ir.IntType(LANES))
        pop = _llvm_fn(builder, "llvm.ctpop.i16", ir.IntType(LANES), [ir.IntType(LANES)])
        return builder.add(n_, builder.zext(builder.call(pop, [bits]), i64))

    return sig, codegen


AVX512 = vector_bits() == 512  # compiled for AVX-512: list_terms16 and write_pooled16 (elsewhere one at a time)


def _pool_weight_grad(vector: bool):  # type: ignore[no-untyped-def]
    @njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
    def pool_weight_grad(xt: np.ndarray, g: np.ndarray, idx: np.ndarray, a0: int, a1: int, pool: int, kh: int,
                         kw: int, wp: int, lanes: int, acc: np.ndarray, bacc: np.ndarray,
                         scale: float) -> None:  # pragma: no cover - compiled
        """Add pooled frames ``a0 .. a1 - 1`` of one clip's weight gradient into ``acc`` and its bias gradient into
        ``bacc``.

        xt: (C_in, H, W, Tpad) clip, float32 or bfloat16 bits as int16 (:func:`frames_last`), Tpad >= T - kt +
        lanes so that every ``lanes``-wide row load stays inside; g, idx: (C_out, tp, hp*wp) pooled-output
        gradient (float32, before the ReLU's mask) and window offset of each maximum (uint8, in (t, h, w) order;
        ``BLOCKED`` where the ReLU blocked it: no term); acc: (C_out, C_in*kh*kw*lanes) float32, row layout (c_in,
        i, j, frame); bacc: (C_out,) float32; ``scale``: a dropout's 1 / (1 - p) on the kept outputs (the dropped
        ones are ``BLOCKED``), else 1. With AVX-512 the terms are listed 16 at a time (:func:`list_terms16`; the
        bias gradient then sums in 16 lanes, added in lane order at the end).
        """
        cin, h, w, tpad = xt.shape
        cout, cols = g.shape[0], g.shape[2]
        xf, af = xt.ravel(), acc.ravel()
        wt, hwt = w * tpad, h * w * tpad
        offsets = window_offsets(pool, 1, wt, tpad, 256)  # window offset -> its conv output in xt (BLOCKED: unused)
        row = cin * kh * kw * lanes
        if row == NVEC * LANES:  # STCNN's and FuseNet's shape: each channel's sums in registers (grad_rows9)
            koff = np.empty(NVEC, np.int64)
            k = 0
            for ci in range(cin):
                for u in range(kh):
                    for v in range(kw):
                        for lane in range(0, lanes, LANES):
                            koff[k] = ci * hwt + u * wt + v * tpad + lane
                            k += 1
            hp = cols // wp
            src = np.empty(GRAD_BLOCK_ROWS * wp + LANES, np.int64)
            vals = np.empty(GRAD_BLOCK_ROWS * wp + LANES, np.float32)
            if vector:
                table = offsets[:2 * LANES].astype(np.int32)
                pos = np.empty(cols, np.int64)
                for j in range(cols):
                    pos[j] = (j // wp) * pool * wt + (j % wp) * pool * tpad
                lanes_b = np.zeros((cout, LANES), np.float32)
            for a in range(a0, a1):
                for h0 in range(0, hp, GRAD_BLOCK_ROWS):  # a few pooled rows at a time: their clip window in L1
                    h1 = min(hp, h0 + GRAD_BLOCK_ROWS)
                    for c in range(cout):
                        n = 0
                        if vector:
                            for j in range(h0 * wp, h1 * wp, LANES):
                                n = list_terms16(idx[c, a], g[c, a], pos, j, min(LANES, h1 * wp - j), a * pool,
                                                 table, scale, src, vals, n, lanes_b[c])
                        else:
                            bsum = bacc[c]
                            for jh in range(h0, h1):
                                corner = jh * pool * wt + a * pool
                                for jw in range(wp):  # the nonzero terms, listed without a branch
                                    j = jh * wp + jw
                                    ix = idx[c, a, j]
                                    live = -np.int32(ix != BLOCKED)  # a mask: a branch mispredicts on dropout's bits
                                    gv = np.int32(np.float32(g[c, a, j] * np.float32(scale)).view(np.int32)
                                                  & live).view(np.float32)
                                    src[n] = corner + jw * pool * tpad + offsets[ix]
                                    vals[n] = gv
                                    bsum += gv
                                    n += gv != 0.0
                            bacc[c] = bsum
                        grad_rows9(xf, src, vals, n, koff, af, c * row)
            if vector:
                for c in range(cout):
                    for lane in range(LANES):
                        bacc[c] += lanes_b[c, lane]
            return
        for c in range(cout):
            for a in range(a0, a1):
                for j in range(cols):
                    gv = g[c, a, j] * np.float32(scale)
                    if gv == 0.0 or idx[c, a, j] == BLOCKED:  # ReLU-blocked (or zero) gradient: nothing to add
                        continue
                    bacc[c] += gv
                    base = (j // wp) * pool * wt + (j % wp) * pool * tpad + a * pool + offsets[idx[c, a, j]]
                    d = c * row
                    for ci in range(cin):
                        for u in range(kh):
                            for v in range(kw):
                                s = ci * hwt + base + u * wt + v * tpad
                                for lane in range(0, lanes, LANES):
                                    axpy16(af, d, xf, s + lane, gv)
                                    d += LANES

    return pool_weight_grad


pool_weight_grad = _pool_weight_grad(AVX512)
# for tests: the one-at-a-time listing on any CPU (without AVX-512 that is pool_weight_grad itself)
pool_weight_grad_scalar = _pool_weight_grad(False) if AVX512 else pool_weight_grad


@intrinsic
def window_max16(typingctx, src, base, offsets, best, best_off, arg):  # type: ignore[no-untyped-def]
    """16 lanes of a max-pool window: ``best[best_off:+16]`` = the maximum over q of ``src[base + offsets[q]:+16]``
    (float32, or bfloat16 given as its int16 bits, widened exactly to float32) and ``arg[best_off:+16]`` = the first q that holds it (int32; strict compares, so the first maximum
    wins ties, as in ``torch.nn.MaxPool3d``). The running maximum stays in registers across the window."""
    sig = types.void(src, base, offsets, best, best_off, arg)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        s, s_base, offs, b, b_off, a = args
        src_data = context.make_array(signature.args[0])(context, builder, s).data
        offs_arr = context.make_array(signature.args[2])(context, builder, offs)
        vec, ivec = ir.VectorType(ir.FloatType(), LANES), ir.VectorType(ir.IntType(32), LANES)

        bf16 = isinstance(signature.args[0].dtype, types.Integer)  # int16 bits of bfloat16 values

        def load_at(q):  # type: ignore[no-untyped-def]
            off = builder.load(builder.gep(offs_arr.data, [q]))
            ptr = builder.gep(src_data, [builder.add(s_base, off)])
            if not bf16:
                return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=4)
            raw = builder.load(builder.bitcast(ptr, ir.VectorType(ir.IntType(16), LANES).as_pointer()), align=2)
            return _bf16_widen(builder, raw)

        intp = s_base.type
        best_slot = cgutils.alloca_once_value(builder, load_at(intp(0)))  # promoted to registers by LLVM
        arg_slot = cgutils.alloca_once_value(builder, ir.Constant(ivec, [0] * LANES))
        count = builder.extract_value(offs_arr.shape, 0)
        with cgutils.for_range(builder, count, start=intp(1)) as loop:
            new, old, old_arg = load_at(loop.index), builder.load(best_slot), builder.load(arg_slot)
            take = builder.fcmp_ordered(">", new, old)
            builder.store(builder.select(take, new, old), best_slot)
            builder.store(builder.select(take, _splat(builder, builder.trunc(loop.index, ir.IntType(32)), ivec),
                                         old_arg), arg_slot)
        builder.store(builder.load(best_slot), _vec_ptr(context, builder, signature.args[3], b, b_off), align=4)
        builder.store(builder.load(arg_slot), _vec_ptr(context, builder, signature.args[5], a, b_off), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def _write_pooled1(best: np.ndarray, arg: np.ndarray, bias: np.ndarray, col: int, a: int, wp: int, c: int,
                   want_idx: bool, pre: np.ndarray, idx: np.ndarray, drop: np.ndarray,
                   e0: int) -> None:  # pragma: no cover
    """One pooled row's maxima (+ bias, after the ReLU) from ``best`` into ``pre[:, a, col:col + wp]``; with
    ``want_idx`` (training) each maximum's window offset into ``idx``, ``BLOCKED`` where the ReLU blocked it (the
    backward's mask, so no separate mask or ReLU pass over the output is needed).

    ``drop`` (int32 random words; empty: none) is a dropout of rate 1/2 after the ReLU: the output's element
    ``e0 + e`` (e its flat index in ``pre``) is kept, doubled, where bit ``e % 32`` of word ``e // 32`` is set, and
    is otherwise zero and ``BLOCKED`` (the mask of :func:`microexp.fast.dropout.dropout`, from the same words)."""
    tp, cols = pre.shape[1], pre.shape[2]
    dropping = drop.size > 0
    for j in range(wp):
        for k in range(c):
            v = best[j * c + k] + bias[k]
            out = max(v, np.float32(0.0))
            live = np.int32(v > 0.0)
            if dropping:  # masks, not branches: the random bits would mispredict half the time (4x slower, measured)
                e = e0 + (k * tp + a) * cols + col + j
                keep = (drop[e >> 5] >> (e & 31)) & np.int32(1)
                bits = np.float32(out * np.float32(2.0)).view(np.int32) & -keep  # kept: doubled; dropped: +0.0
                out = np.int32(bits).view(np.float32)
                live = live & keep
            pre[k, a, col + j] = out
            if want_idx:
                idx[k, a, col + j] = live * arg[j * c + k] + (1 - live) * BLOCKED


def _masked_store(builder, value, ptr, mask):  # type: ignore[no-untyped-def]
    """``llvm.masked.store``: the lanes of ``value`` that ``mask`` selects, to their places from ``ptr``."""
    elem, i32 = value.type.element, ir.IntType(32)
    fn = _llvm_fn(builder, f"llvm.masked.store.v{LANES}{_vname(elem)}.p0", ir.VoidType(),
                  [value.type, ptr.type, i32, mask.type])
    builder.call(fn, [value, ptr, i32(_elem_bytes(elem)), mask])


@intrinsic
def write_pooled16(typingctx, best, arg, bias, jb, k0, c, count, pre, idx, off, kstride, want_idx, drop, e0):  # type: ignore[no-untyped-def]
    """:func:`_write_pooled1` for 16 channels ``k0 ..`` and the ``count`` (<= 16) pooled columns ``jb ..`` of a
    row, in registers: the 16 x 16 blocks of ``best`` and ``arg`` (column j, channel k at ``j c + k``) transposed
    (:func:`_transpose_rows`), so that each channel's columns are one vector, stored with one masked store each to
    ``pre`` / ``idx`` (flat; channel k0 + i's from ``off + i kstride``). Dropout bits: element ``e0 + off + i kstride
    + j`` of ``drop`` (empty: none), 16 at a time from two words."""
    sig = types.void(best, arg, bias, jb, k0, c, count, pre, idx, off, kstride, want_idx, drop, e0)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        best_a, arg_a, bias_a, jb_, k0_, c_, count_, pre_a, idx_a, off_, ks_, want_, drop_a, e0_ = args
        i8, i32, i64, f32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
        jb_, k0_, c_, count_, off_, ks_, e0_ = (_i64(builder, v) for v in (jb_, k0_, c_, count_, off_, ks_, e0_))
        vf, vi = ir.VectorType(f32, LANES), ir.VectorType(i32, LANES)
        lanes64 = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
        mask = builder.icmp_unsigned("<", lanes64, _splat(builder, count_, ir.VectorType(i64, LANES)))
        allm = ir.Constant(ir.VectorType(ir.IntType(1), LANES), [1] * LANES)
        nom = ir.Constant(ir.VectorType(ir.IntType(1), LANES), [0] * LANES)
        arr = context.make_array

        def data(k, value):  # type: ignore[no-untyped-def]
            return arr(signature.args[k])(context, builder, value).data

        def rows_of(k, value, elem):  # type: ignore[no-untyped-def]
            out = []
            for r in range(LANES):  # column jb + r's 16 channels; none read past the row's last column
                at = builder.add(builder.mul(builder.add(jb_, i64(r)), c_), k0_)
                ptr = builder.bitcast(builder.gep(data(k, value), [at]), ir.VectorType(elem, LANES).as_pointer())
                out.append(_masked_load(builder, ptr, builder.select(builder.icmp_unsigned("<", i64(r), count_),
                                                                     allm, nom), elem))
            return _transpose_rows(builder, out)

        vals, args_ = rows_of(0, best_a, f32), rows_of(1, arg_a, i32)
        drop_arr = arr(signature.args[12])(context, builder, drop_a)
        n_words = builder.extract_value(drop_arr.shape, 0)
        dropping = builder.icmp_unsigned("!=", n_words, i64(0))
        starts = [builder.add(off_, builder.mul(ks_, i64(i))) for i in range(LANES)]  # channel k0 + i's row
        kept = []
        with builder.if_else(dropping) as (then, otherwise):
            with then:  # each row's 16 bits from two words; no word read past the last, none without dropout
                for at in starts:
                    e = builder.add(e0_, builder.add(at, jb_))
                    w = builder.lshr(e, i64(5))
                    more = builder.icmp_signed("<", w, builder.sub(n_words, i64(1)))
                    lo = builder.zext(builder.load(builder.gep(drop_arr.data, [w])), i64)
                    hi = builder.zext(builder.load(builder.gep(drop_arr.data, [builder.select(
                        more, builder.add(w, i64(1)), w)])), i64)
                    both = builder.or_(lo, builder.shl(builder.select(more, hi, i64(0)), i64(32)))
                    kept.append(builder.trunc(builder.lshr(both, builder.and_(e, i64(31))), i32))
                then_block = builder.block
            with otherwise:
                else_block = builder.block
        bits = []
        for k in kept:
            phi = builder.phi(i32)
            phi.add_incoming(k, then_block)
            phi.add_incoming(i32(-1), else_block)  # no dropout: every output kept, not doubled
            bits.append(phi)
        zero = ir.Constant(vf, [0.0] * LANES)
        lane_bit = ir.Constant(vi, [1 << j for j in range(LANES)])
        for i, at in enumerate(starts):
            b = builder.load(builder.gep(data(2, bias_a), [builder.add(k0_, i64(i))]))
            v = builder.fadd(vals[i], _splat(builder, b, vf))
            live = builder.fcmp_ordered(">", v, zero)
            out = builder.select(live, v, zero)
            keep = builder.icmp_unsigned("!=", builder.and_(_splat(builder, bits[i], vi), lane_bit),
                                         ir.Constant(vi, [0] * LANES))
            out = builder.select(dropping, builder.select(keep, builder.fmul(out, ir.Constant(vf, [2.0] * LANES)),
                                                          zero), out)
            live = builder.and_(live, keep)
            pp = builder.bitcast(builder.gep(data(7, pre_a), [builder.add(at, jb_)]), vf.as_pointer())
            _masked_store(builder, out, pp, mask)
            ix = builder.trunc(builder.select(live, args_[i], ir.Constant(vi, [BLOCKED] * LANES)),
                               ir.VectorType(i8, LANES))
            ip = builder.bitcast(builder.gep(data(8, idx_a), [builder.add(at, jb_)]),
                                 ir.VectorType(i8, LANES).as_pointer())
            _masked_store(builder, ix, ip, builder.select(want_, mask, nom))
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def _write_pooled16(best: np.ndarray, arg: np.ndarray, bias: np.ndarray, col: int, a: int, wp: int, c: int,
                    want_idx: bool, pre: np.ndarray, idx: np.ndarray, drop: np.ndarray,
                    e0: int) -> None:  # pragma: no cover
    """:func:`_write_pooled1`, 16 channels x 16 columns at a time (:func:`write_pooled16`; channels in sixteens,
    else one at a time): 2.5 against 5.1 ms for a batch-8 STCNN forward's rows with the dropout, one AVX-512 core,
    rows in cache (measured)."""
    if c % LANES:
        _write_pooled1(best, arg, bias, col, a, wp, c, want_idx, pre, idx, drop, e0)
        return
    tp, cols = pre.shape[1], pre.shape[2]
    pf, xf = pre.reshape(-1), idx.reshape(-1)
    for jb in range(0, wp, LANES):
        for k0 in range(0, c, LANES):
            write_pooled16(best, arg, bias, jb, k0, c, min(LANES, wp - jb), pf, xf, (k0 * tp + a) * cols + col,
                           tp * cols, want_idx, drop, e0)


_write_pooled = _write_pooled16 if AVX512 else _write_pooled1


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def pool_rows(conv: np.ndarray, r0: int, pool: int, wp: int, bias: np.ndarray, pre: np.ndarray, idx: np.ndarray,
              want_idx: bool, best: np.ndarray, arg: np.ndarray, drop: np.ndarray,
              e0: int) -> None:  # pragma: no cover - compiled
    """Max-pool one work unit's conv outputs (pooled rows ``r0 ..``) into ``pre`` (+ bias), and the window offset
    of each maximum, in (t, h, w) order, into ``idx``; without ``want_idx``, ``relu(pre)`` and no offsets.

    conv: (rows, tu, wu, C) float32, channels innermost (or bfloat16 as int16 bits, for C a multiple of 16); pre: (C, tp, hp*wp) float32; idx: (C, tp, hp*wp) uint8;
    best, arg: float32/int32 scratch of at least wp*C + 16. A window's C channels are contiguous at each of its
    offsets, so 16 channels at a time take the maximum over the window in registers (:func:`window_max16`).
    """
    rows, tu, wu, c = conv.shape
    cf = conv.ravel()
    vec = c - c % LANES
    offsets = window_offsets(pool, wu * c, tu * wu * c, c)  # flat offsets from the window's corner
    for li in range(rows // pool):
        for a in range(tu // pool):
            for j in range(wp):
                corner = ((li * pool * tu + a * pool) * wu + j * pool) * c
                for k in range(0, vec, LANES):
                    window_max16(cf, corner + k, offsets, best, j * c + k, arg)
                for k in range(vec, c):  # channels past the last full 16 lanes
                    top, at = cf[corner + k], 0
                    for o in range(1, pool ** 3):
                        if cf[corner + offsets[o] + k] > top:
                            top, at = cf[corner + offsets[o] + k], o
                    best[j * c + k], arg[j * c + k] = top, at
            _write_pooled(best, arg, bias, (r0 + li) * wp, a, wp, c, want_idx, pre, idx, drop, e0)


def _wino_out(tile: int):  # type: ignore[no-untyped-def]
    """The intrinsic for 16 lanes of Winograd F(tile, 3)'s output transform ``y = A^T m`` (tile 4: points 0, +-1,
    +-2, infinity; tile 6: also +-1/2): from the ``tile + 2`` products ``m[m_off + p c:+16]`` the ``tile`` outputs
    ``out[out_off + k c:+16]`` (flat float32 arrays). Each pair of points +-b enters as the sum (even k) or the
    difference (odd k) of its two products times b^k."""
    points = (1.0, 2.0, 0.5)[:tile // 2]

    def emit(context, builder, signature, args):  # type: ignore[no-untyped-def]  # (m, m_off, c, out, out_off)
        m_a, mo, cv, o_a, oo = args
        i64 = ir.IntType(64)
        mo, cv, oo = (_i64(builder, v) for v in (mo, cv, oo))
        vec = ir.VectorType(ir.FloatType(), LANES)
        p = [builder.load(_vec_ptr(context, builder, signature.args[0], m_a,
                                   builder.add(mo, builder.mul(cv, i64(k)))), align=4) for k in range(tile + 2)]
        sums = [builder.fadd(p[2 * q + 1], p[2 * q + 2]) for q in range(len(points))]
        diffs = [builder.fsub(p[2 * q + 1], p[2 * q + 2]) for q in range(len(points))]
        for k in range(tile):
            part = sums if k % 2 == 0 else diffs
            y = builder.fadd(p[0], part[0]) if k == 0 else part[0]
            for q in range(1, len(points)):
                y = builder.fadd(y, builder.fmul(ir.Constant(vec, [points[q] ** k] * LANES), part[q]))
            if k == tile - 1:
                y = builder.fadd(y, p[tile + 1])
            builder.store(y, _vec_ptr(context, builder, signature.args[3], o_a,
                                      builder.add(oo, builder.mul(cv, i64(k)))), align=4)

    return _intrinsic5(emit)


wino_out16 = _wino_out(4)
wino6_out16 = _wino_out(6)


@intrinsic
def taps3x16(typingctx, x, o0, o1, o2, out, out_off):  # type: ignore[no-untyped-def]
    """``out[out_off + 3 w + u] = x[o_u + w]`` for w < 16 and u < 3 (flat float32 ``x``): three clip rows'
    16 columns interleaved as a 3-row kernel's taps, one 48-value store; ``out`` float32, or int16 for the bfloat16
    bits of the values (rounded to nearest even as PyTorch rounds, NaN as the quiet NaN 0x7FC0)."""
    sig = types.void(x, o0, o1, o2, out, out_off)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        x_a, a0, a1, a2, o_a, oo = args
        ivec = ir.VectorType(ir.IntType(32), LANES)
        rows = [builder.load(_vec_ptr(context, builder, signature.args[0], x_a, _i64(builder, o)), align=4)
                for o in (a0, a1, a2)]
        if isinstance(signature.args[4].dtype, types.Integer):  # bfloat16 bits: round to nearest even
            def bf16(v):  # type: ignore[no-untyped-def]
                bits = builder.bitcast(v, ivec)
                lsb = builder.and_(builder.lshr(bits, ir.Constant(ivec, [16] * LANES)), ir.Constant(ivec, [1] * LANES))
                up = builder.add(builder.add(bits, ir.Constant(ivec, [0x7FFF] * LANES)), lsb)
                top = builder.lshr(up, ir.Constant(ivec, [16] * LANES))
                nan = builder.fcmp_unordered("uno", v, v)
                return builder.trunc(builder.select(nan, ir.Constant(ivec, [0x7FC0] * LANES), top),
                                     ir.VectorType(ir.IntType(16), LANES))
            rows = [bf16(v) for v in rows]
        i32 = ir.IntType(32)
        both = ir.Constant(ir.VectorType(i32, 2 * LANES), list(range(2 * LANES)))  # two vectors as one
        ab, c2 = builder.shuffle_vector(rows[0], rows[1], both), builder.shuffle_vector(rows[2], rows[2], both)
        order = [k for w in range(LANES) for k in (w, LANES + w, 2 * LANES + w)]
        taps = builder.shuffle_vector(ab, c2, ir.Constant(ir.VectorType(i32, 3 * LANES), order))
        o_data = context.make_array(signature.args[4])(context, builder, o_a).data
        ptr = builder.gep(o_data, [_i64(builder, oo)])
        builder.store(taps, builder.bitcast(ptr, taps.type.as_pointer()), align=2)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", inline="always")
def _bf16_bits(v: float) -> int:  # pragma: no cover
    """The bfloat16 bits (as int16) of float32 ``v``, rounded to nearest even as PyTorch rounds; NaN as 0x7FC0."""
    b = np.float32(v).view(np.uint32)
    top = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return np.int16(np.uint16(np.uint32(0x7FC0) if v != v else top))


def _bf16_round(builder, v):  # type: ignore[no-untyped-def]
    """A float32 vector's bfloat16 bits (int16 lanes), rounded to nearest even with NaN as 0x7FC0, as
    :func:`_bf16_bits` (and PyTorch) round each value."""
    n = v.type.count
    ivec = ir.VectorType(ir.IntType(32), n)
    bits = builder.bitcast(v, ivec)
    odd = builder.and_(builder.lshr(bits, ir.Constant(ivec, [16] * n)), ir.Constant(ivec, [1] * n))
    top = builder.lshr(builder.add(builder.add(bits, ir.Constant(ivec, [0x7FFF] * n)), odd),
                       ir.Constant(ivec, [16] * n))
    top = builder.select(builder.fcmp_unordered("uno", v, v), ir.Constant(ivec, [0x7FC0] * n), top)
    return builder.trunc(top, ir.VectorType(ir.IntType(16), n))


@intrinsic
def transpose16(typingctx, src, s_off, s_stride, dst, d_off, d_stride):  # type: ignore[no-untyped-def]
    """``dst[d_off + j d_stride + i] = src[s_off + i s_stride + j]`` for i, j < 16: a 16 x 16 block transposed in
    registers (16 row loads, four rounds of 16 two-vector shuffles, 16 row stores). ``src`` float32; ``dst``
    float32, or int16 for the bfloat16 bits (:func:`_bf16_round`)."""
    sig = types.void(src, s_off, s_stride, dst, d_off, d_stride)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        s_a, so, ss, d_a, do, ds = args
        so, ss, do, ds = (_i64(builder, v) for v in (so, ss, do, ds))
        i64 = ir.IntType(64)
        rows = _transpose_rows(builder, [
            builder.load(_vec_ptr(context, builder, signature.args[0], s_a, builder.add(so, builder.mul(ss, i64(r)))),
                         align=4) for r in range(LANES)])
        bf16 = isinstance(signature.args[3].dtype, types.Integer)
        for r, v in enumerate(rows):
            at = _vec_ptr(context, builder, signature.args[3], d_a, builder.add(do, builder.mul(ds, i64(r))))
            builder.store(_bf16_round(builder, v) if bf16 else v, at, align=2 if bf16 else 4)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def frames_last(x: np.ndarray, out: np.ndarray, h0: int) -> None:  # pragma: no cover
    """Clip rows ``h0 ..`` of one channel with the frames innermost: ``out[r, w, t] = x[t, h0 + r, w]`` (x: (T, H,
    W) float32; out: (rows, W, F >= T), float32 or int16 for the bfloat16 bits, rounded as PyTorch rounds; zeros
    past T). 16 x 16 blocks transposed in registers (:func:`transpose16`), rounded to bf16 in the same pass:
    PyTorch's strided copy to bf16 ran 1.9x slower on one thread (measured; in float32 the two were alike)."""
    t_all, _h, width = x.shape
    frames = out.shape[2]
    tb, wb = t_all - t_all % LANES, width - width % LANES
    xf, of = x.reshape(-1), out.reshape(-1)
    plane = x.shape[1] * width
    for r in range(out.shape[0]):
        h = h0 + r
        for t0 in range(0, tb, LANES):
            for w0 in range(0, wb, LANES):
                transpose16(xf, t0 * plane + h * width + w0, plane, of, (r * width + w0) * frames + t0, frames)
        for w in range(width):
            first = 0 if w >= wb else tb  # the columns past the last full 16, then the frames past the last 16
            for t in range(first, t_all):
                out[r, w, t] = _cast_like(x[t, h, w], out[r, w, 0])
            for t in range(t_all, frames):
                out[r, w, t] = 0


def _cast_like(v, like):  # type: ignore[no-untyped-def]  # pragma: no cover - replaced in compiled code
    """``v`` (float32) as ``like``'s type: float32 as it is, int16 the bfloat16 bits (:func:`_bf16_bits`)."""
    return v


@overload(_cast_like)
def _cast_like_impl(v, like):  # type: ignore[no-untyped-def]
    if isinstance(like, types.Integer):
        return lambda v, like: _bf16_bits(v)
    return lambda v, like: v


def _taps_kernel(bf16: bool):  # type: ignore[no-untyped-def]
    @njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
    def taps(x: np.ndarray, t_in: int, w_in: int, h0: int, kh: int, out: np.ndarray) -> None:  # pragma: no cover
        """The taps of a work unit's conv rows: ``out[r, t, w, c kh + u] = x[c, t, h0 + r + u, w]`` for t < t_in,
        w < w_in (x: (C, T, H, W) float32, C-contiguous; out: (rows, t_in, w_in, C kh), float32 for ``taps_f32``,
        the bfloat16 bits as int16 for ``taps_bf16``): the kernel rows as input channels. A 3-row kernel on one
        channel (the Reddy models') interleaves 16 columns of the three rows at a time (:func:`taps3x16`)."""
        cin, t_all, h_all, width = x.shape
        ch = cin * kh
        xf, of = x.ravel(), out.ravel()
        for r in range(out.shape[0]):
            for t in range(t_in):
                base = (r * t_in + t) * w_in * ch
                for c in range(cin):
                    row = ((c * t_all + t) * h_all + h0 + r) * width
                    if kh == 3 and cin == 1 and w_in >= LANES:  # 16 columns at a time, the last block overlapping
                        for w0 in range(0, w_in, LANES):
                            w = min(w0, w_in - LANES)
                            taps3x16(xf, row + w, row + width + w, row + 2 * width + w, of, base + 3 * w)
                        continue
                    for u in range(kh):
                        for w in range(w_in):
                            v = xf[row + u * width + w]
                            of[base + w * ch + c * kh + u] = _bf16_bits(v) if bf16 else v

    return taps


taps_f32 = _taps_kernel(False)
taps_bf16 = _taps_kernel(True)


def _wino_in(n: int):  # type: ignore[no-untyped-def]
    """The intrinsic for one tile of Winograd's input transform ``B^T d`` as an ``n``-lane vector: ``out[out_off +
    p] = sum_q btc[q n + p] x[x_off + q]`` for p < n (flat float32 arrays; ``btc`` holds B^T's columns, so column q
    is one vector load): n broadcasts and n vector multiply-adds instead of n * n scalar ones. Each lane adds its
    products in q order, unfused, as the scalar loop did."""

    def emit(context, builder, signature, args):  # type: ignore[no-untyped-def]  # (x, x_off, btc, out, out_off)
        x_a, xo, b_a, o_a, oo = args
        i64 = ir.IntType(64)
        xo, oo = _i64(builder, xo), _i64(builder, oo)
        vec = ir.VectorType(ir.FloatType(), n)
        x_data = context.make_array(signature.args[0])(context, builder, x_a).data
        b_data = context.make_array(signature.args[2])(context, builder, b_a).data
        o_data = context.make_array(signature.args[3])(context, builder, o_a).data
        acc = ir.Constant(vec, [0.0] * n)
        for q in range(n):
            xq = builder.load(builder.gep(x_data, [builder.add(xo, i64(q))]))
            col = builder.load(builder.bitcast(builder.gep(b_data, [i64(q * n)]), vec.as_pointer()), align=4)
            acc = builder.fadd(acc, builder.fmul(col, _splat(builder, xq, vec)))
        builder.store(acc, builder.bitcast(builder.gep(o_data, [oo]), vec.as_pointer()), align=4)

    return _intrinsic5(emit)


wino_in6 = _wino_in(6)
wino_in8 = _wino_in(8)


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def wino_taps(x: np.ndarray, t_in: int, h0: int, hr: int, tiles: int, btc: np.ndarray, kh: int,
              d: np.ndarray, row: np.ndarray) -> None:  # pragma: no cover
    """Winograd F(m, 3)'s input transform along the width, written straight into the work unit's taps: for clip
    rows ``h0 .. h0 + hr - 1`` each tile's ``B^T d`` (:func:`wino_in8` / :func:`wino_in6`), and each value copied
    to the ``kh`` conv rows that read it as input channel (c, u): ``d[r, t, j, p C kh + c kh + u] = sum_q bt[p, q]
    x[c, t, h0 + r + u, m j + q]`` (x: (C, T, H, W), C-contiguous, at least m tiles + 2 wide; d: (hr - kh + 1,
    t_in, tiles, (m + 2) C kh); btc: B^T's columns, ``btc[q (m + 2) + p] = bt[p, q]``; row: float32 scratch of
    tiles (m + 2)). One pass instead of a transform into a buffer and a strided copy of it kh times."""
    n = row.size // tiles
    m = n - 2
    cin, t_all, h_all, width = x.shape
    ch = cin * kh
    nrows = hr - kh + 1
    xf, df = x.ravel(), d.ravel()
    for c in range(cin):
        for t in range(t_in):
            for h in range(hr):
                base = ((c * t_all + t) * h_all + h0 + h) * width
                for j in range(tiles):
                    if n == 8:
                        wino_in8(xf, base + m * j, btc, row, j * n)
                    else:
                        wino_in6(xf, base + m * j, btc, row, j * n)
                for u in range(kh):
                    r = h - u
                    if r < 0 or r >= nrows:
                        continue
                    o = (r * t_in + t) * tiles * n * ch + c * kh + u
                    for k in range(tiles * n):
                        df[o + k * ch] = row[k]


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def wino_pool_rows(m: np.ndarray, tile: int, r0: int, pool: int, wp: int, bias: np.ndarray, pre: np.ndarray,
                   idx: np.ndarray, want_idx: bool, best: np.ndarray, arg: np.ndarray, block: np.ndarray,
                   drop: np.ndarray, e0: int, a0: int = 0) -> None:  # pragma: no cover
    """:func:`pool_rows` for a work unit convolved by Winograd F(tile, 3) along the width (tile 4 or 6): ``m``
    (rows, tu, tiles, (tile + 2) C, C a multiple of 16) holds each tile's products (channel p C + c). For each
    pooling window row, a span of whole tiles and whole windows at a time (12 outputs for F(4, 3) and pool 3, 6
    for F(6, 3)), the pool x pool conv rows it covers are turned back into outputs (:func:`wino_out16`,
    :func:`wino6_out16`: ``y = A^T m``) in ``block`` (pool, pool, span, C: in L1; a whole row's 69 KB overflowed
    it, 1.5x slower), whose windows then take their maxima as in :func:`pool_rows` (:func:`window_max16`: strict
    compares in (t, h, w) order, the first maximum wins as in ``torch.nn.MaxPool3d``). best, arg: float32/int32
    scratch of wp C. ``m`` may hold a span of frames: its first is pooled frame ``a0``'s."""
    rows, tu, tiles, pc = m.shape
    c = pc // (tile + 2)
    g, b = pool, tile
    while b:
        g, b = b, g % b
    span = tile * pool // g  # outputs a span: whole tiles and whole windows
    mf, bf = m.ravel(), block.ravel()
    offsets = window_offsets(pool, span * c, pool * span * c, c)  # flat offsets in the block
    for li in range(rows // pool):
        for a in range(tu // pool):
            for s0 in range(0, wp * pool, span):
                t0, t1 = s0 // tile, min(tiles, (s0 + span) // tile)
                for dh in range(pool):
                    for dt in range(pool):
                        src = ((li * pool + dh) * tu + a * pool + dt) * tiles * pc
                        dst = (dh * pool + dt) * span * c
                        for j in range(t0, t1):
                            for k in range(0, c, LANES):
                                if tile == 4:
                                    wino_out16(mf, src + j * pc + k, c, bf, dst + 4 * (j - t0) * c + k)
                                else:
                                    wino6_out16(mf, src + j * pc + k, c, bf, dst + 6 * (j - t0) * c + k)
                j0 = s0 // pool
                for j in range(j0, min(wp, j0 + span // pool)):
                    for k in range(0, c, LANES):
                        window_max16(bf, (j - j0) * pool * c + k, offsets, best, j * c + k, arg)
            _write_pooled(best, arg, bias, (r0 + li) * wp, a0 + a, wp, c, want_idx, pre, idx, drop, e0)


# Frames a call of the Winograd-domain register kernel, so that its 2 x WMK_T sums, 2 weight vectors and a
# broadcast fit the registers: 32 of 16 lanes with AVX-512 (9: 81 = 9 x 9 frames), 16 of 8 lanes with AVX2 (a
# 16-lane sum takes two; 2 measured 1.1x faster than 3, 4 spilled, with the compiler held to AVX2 here)
WMK_T = {512: 9, 256: 2}.get(vector_bits(), 1)


def _wino_mk(nt: int):  # type: ignore[no-untyped-def]
    """The Winograd-domain products' register kernel for ``nt`` consecutive frames and 32 filters (two 16-lane
    sums a frame): ``out[out_off + f os + 16 v + l] = sum over u < kh, k < kt of uw[u_off + (u kt + k) step
    + 16 v + l] * xh[x_off + u rs + (f + k) ts]`` (flat float32 arrays), in (u, k) order, by fused
    multiply-adds. The sums stay in registers over the whole loop (LLVM promotes the slots), stored once."""

    @intrinsic
    def mk(typingctx, xh, x_off, ts, rs, kh, kt,  # type: ignore[no-untyped-def]
           uw, u_off, step, out, out_off, os):
        sig = types.void(xh, x_off, ts, rs, kh, kt, uw, u_off, step, out, out_off, os)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            x_a, xo, ts_, rs_, kh_, kt_, u_a, uo, step_, o_a, oo, os_ = args
            i64 = ir.IntType(64)
            xo, ts_, rs_, kh_, kt_, uo, step_, oo, os_ = (_i64(builder, v) for v in
                                                          (xo, ts_, rs_, kh_, kt_, uo, step_, oo, os_))
            vec = ir.VectorType(ir.FloatType(), LANES)
            x_data = context.make_array(signature.args[0])(context, builder, x_a).data
            zero = ir.Constant(vec, [0.0] * LANES)
            slots = [[cgutils.alloca_once_value(builder, zero) for _v in range(2)] for _f in range(nt)]
            with cgutils.for_range(builder, kh_) as rows:
                with cgutils.for_range(builder, kt_) as taps:
                    step_no = builder.add(builder.mul(rows.index, kt_), taps.index)
                    u_at = builder.add(uo, builder.mul(step_no, step_))
                    uv = [builder.load(_vec_ptr(context, builder, signature.args[6], u_a,
                                                builder.add(u_at, i64(LANES * v))), align=4)
                          for v in range(2)]
                    at = builder.add(builder.mul(rows.index, rs_), builder.mul(taps.index, ts_))
                    base = builder.add(xo, at)
                    for f in range(nt):
                        xs = builder.load(builder.gep(x_data, [builder.add(base, builder.mul(ts_, i64(f)))]))
                        b = _splat(builder, xs, vec)
                        for v in range(2):
                            prod = builder.fmul(uv[v], b, flags=["contract"])
                            builder.store(builder.fadd(prod, builder.load(slots[f][v]), flags=["contract"]),
                                          slots[f][v])
            for f in range(nt):
                for v in range(2):
                    at = builder.add(oo, builder.add(builder.mul(os_, i64(f)), i64(LANES * v)))
                    builder.store(builder.load(slots[f][v]),
                                  _vec_ptr(context, builder, signature.args[9], o_a, at), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


wino_mk = _wino_mk(WMK_T)
wino_mk1 = _wino_mk(1)


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def wino_products(xh: np.ndarray, row0: int, nrows: int, t0: int, nt: int, kh: int, kt: int, uw: np.ndarray,
                  m: np.ndarray) -> None:  # pragma: no cover
    """The Winograd-domain products of conv rows ``row0 .. row0 + nrows - 1``, frames ``t0 .. t0 + nt - 1``:
    ``m[r, f, j, p C + c] = sum over u < kh, k < kt of uw[p, u, k, c] xh[row0 + r + u, t0 + f + k, j, p]``
    (xh: (clip rows, t_in, tiles, planes), each clip row's ``B^T d``, :func:`wino_taps` with one kernel row;
    uw: (planes, kh, kt, C), ``G g``; m: (nrows, nt, tiles, planes C); C a multiple of 32). ``WMK_T`` frames
    and 32 filters a call of the register kernel (:func:`wino_mk`; frames left over one at a time)."""
    _r, t_in, tiles, planes = xh.shape
    cout = uw.shape[3]
    xf, mf, uf = xh.ravel(), m.ravel(), uw.ravel()
    ts = tiles * planes
    rs = t_in * ts
    os_ = tiles * planes * cout
    full = nt - nt % WMK_T
    for r in range(nrows):
        for j in range(tiles):
            for p in range(planes):
                for c0 in range(0, cout, 2 * LANES):
                    u0 = p * kh * kt * cout + c0
                    for f in range(0, full, WMK_T):
                        x0 = ((row0 + r) * t_in + t0 + f) * ts + j * planes + p
                        o0 = ((r * nt + f) * tiles + j) * planes * cout + p * cout + c0
                        wino_mk(xf, x0, ts, rs, kh, kt, uf, u0, cout, mf, o0, os_)
                    for f in range(full, nt):
                        x0 = ((row0 + r) * t_in + t0 + f) * ts + j * planes + p
                        o0 = ((r * nt + f) * tiles + j) * planes * cout + p * cout + c0
                        wino_mk1(xf, x0, ts, rs, kh, kt, uf, u0, cout, mf, o0, os_)


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def wino_fused_unit(x: np.ndarray, t_in: int, h0: int, hr: int, tiles: int, btc: np.ndarray, xh: np.ndarray,
                    row: np.ndarray, kt: int, uw: np.ndarray, m: np.ndarray, span: int, tile: int, r0: int,
                    r1: int, pool: int, wp: int, bias: np.ndarray, pre: np.ndarray, idx: np.ndarray,
                    want_idx: bool,
                    best: np.ndarray, arg: np.ndarray, block: np.ndarray, drop: np.ndarray,
                    e0: int) -> None:  # pragma: no cover
    """A Winograd work unit (pooled rows ``r0 .. r1 - 1`` of a one-channel clip) without its products in
    memory: the clip rows' ``B^T d`` once (:func:`wino_taps`, one kernel row), then for each pooled row
    ``span`` frames at a time (a multiple of ``pool``; ``m``: float32 scratch of pool x span x tiles x planes
    C, sized to stay in L2), the products (:func:`wino_products`) and straight away their outputs and maxima
    (:func:`wino_pool_rows`)."""
    wino_taps(x, t_in, h0, hr, tiles, btc, 1, xh, row)
    kh = hr - (r1 - r0) * pool + 1
    tu = t_in - kt + 1
    pc = xh.shape[3] * uw.shape[3]
    for li in range(r1 - r0):
        for f0 in range(0, tu, span):
            nt = min(span, tu - f0)
            mv = m[:pool * nt * tiles * pc].reshape((pool, nt, tiles, pc))
            wino_products(xh, li * pool, pool, f0, nt, kh, kt, uw, mv)
            wino_pool_rows(mv, tile, r0 + li, pool, wp, bias, pre, idx, want_idx, best, arg, block, drop, e0,
                           f0 // pool)


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
def gemv_rows(x: np.ndarray, w: np.ndarray, r0: int, r1: int, out: np.ndarray) -> None:  # pragma: no cover
    """``out[r] = w[r] . x`` for rows ``r0 .. r1 - 1``, four rows at a time (four weight streams in flight, one
    load of ``x``). Memory-bound: with one such job per thread it streams MicroExpSTCNN's 177 MB Dense-128
    weights 1.35x faster than MKL's GEMV on 2 cores (measured). Reassociation lets LLVM vectorise the dot
    products (no other fast-math assumption: NaN and inf propagate); their order of summation is fixed. ``w``:
    float32, or bfloat16 as int16 bits (half the bytes to stream; widened exactly)."""
    n = x.shape[0]
    end4 = r1 - (r1 - r0) % 4
    for r in range(r0, end4, 4):
        wa, wb, wc, wd = w[r], w[r + 1], w[r + 2], w[r + 3]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for q in range(n):
            f = x[q]
            s0 += widen(wa[q]) * f
            s1 += widen(wb[q]) * f
            s2 += widen(wc[q]) * f
            s3 += widen(wd[q]) * f
        out[r], out[r + 1], out[r + 2], out[r + 3] = s0, s1, s2, s3
    for r in range(end4, r1):
        wr = w[r]
        s = np.float32(0.0)
        for q in range(n):
            s += widen(wr[q]) * x[q]
        out[r] = s


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
def outer8(gt: np.ndarray, x: np.ndarray, c0: int, c1: int, accumulate: bool,
           out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Columns ``c0 .. c1 - 1`` of a Dense layer's weight gradient from eight batch rows: ``out[o, c] (+)= sum_k
    gt[o, k] * x[k, c]`` for every output ``o`` (gt: (O, 8), x: (8, F), out: (O, F); ``accumulate`` adds to
    ``out`` instead of overwriting it). One pass writes each gradient element once, with the eight ``x`` rows of
    the chunk in cache and the eight coefficients of a row in registers; MKL's GEMM for this K = 8 product ran at
    half to two thirds of the speed (measured on 2 EPYC cores). The slices keep the column index non-negative, which
    LLVM needs to vectorise the loop (with a plain index it ran 8x slower: measured)."""
    x0, x1, x2, x3 = x[0, c0:c1], x[1, c0:c1], x[2, c0:c1], x[3, c0:c1]
    x4, x5, x6, x7 = x[4, c0:c1], x[5, c0:c1], x[6, c0:c1], x[7, c0:c1]
    n = c1 - c0
    for o in range(gt.shape[0]):
        a0, a1, a2, a3 = gt[o, 0], gt[o, 1], gt[o, 2], gt[o, 3]
        a4, a5, a6, a7 = gt[o, 4], gt[o, 5], gt[o, 6], gt[o, 7]
        row = out[o, c0:c1]
        if accumulate:
            for f in range(n):
                row[f] += (a0 * x0[f] + a1 * x1[f] + a2 * x2[f] + a3 * x3[f]) + (
                    a4 * x4[f] + a5 * x5[f] + a6 * x6[f] + a7 * x7[f])
        else:
            for f in range(n):
                row[f] = (a0 * x0[f] + a1 * x1[f] + a2 * x2[f] + a3 * x3[f]) + (
                    a4 * x4[f] + a5 * x5[f] + a6 * x6[f] + a7 * x7[f])


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
def gemm8(g: np.ndarray, w: np.ndarray, c0: int, c1: int, acc: np.ndarray,
          out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Columns ``c0 .. c1 - 1`` of a Dense layer's input gradient for eight batch rows: ``out[r, c] = sum_o g[r, o]
    * w[o, c]`` (g: (8, O), w: (O, F), out: (8, F); acc: float32 scratch of at least (8, c1 - c0)). Four weight
    rows at a time update two batch rows' accumulators, which stay in L1 across the whole sum over ``o``; the
    order of summation is fixed. MKL's GEMM for this M = 8 product ran at half to two thirds of the speed."""
    n = c1 - c0
    for r in range(8):
        acc[r, :n] = 0.0
    n_out = w.shape[0]
    end4 = n_out - n_out % 4
    for o in range(0, end4, 4):
        w0, w1, w2, w3 = w[o, c0:c1], w[o + 1, c0:c1], w[o + 2, c0:c1], w[o + 3, c0:c1]
        for r in range(0, 8, 2):
            b0, b1, b2, b3 = g[r, o], g[r, o + 1], g[r, o + 2], g[r, o + 3]
            e0, e1, e2, e3 = g[r + 1, o], g[r + 1, o + 1], g[r + 1, o + 2], g[r + 1, o + 3]
            ar, br = acc[r, :n], acc[r + 1, :n]
            for f in range(n):
                p0, p1, p2, p3 = w0[f], w1[f], w2[f], w3[f]
                ar[f] = ar[f] + b0 * p0 + b1 * p1 + b2 * p2 + b3 * p3
                br[f] = br[f] + e0 * p0 + e1 * p1 + e2 * p2 + e3 * p3
    for o in range(end4, n_out):
        wo = w[o, c0:c1]
        for r in range(8):
            b = g[r, o]
            ar = acc[r, :n]
            for f in range(n):
                ar[f] += b * wo[f]
    for r in range(8):
        out[r, c0:c1] = acc[r, :n]


PREFETCH_ROWS = 2  # weight rows ahead that rows8_dot prefetches (0-4 measured: 2 best, 2 AVX-512 cores)
DOT_PIECE = 1024  # rows8_dot's columns a piece for one group of eight rows (their 32 KB stay in L1; 256-2,048 measured)


def _prefetch_fn(builder):  # type: ignore[no-untyped-def]
    """``llvm.prefetch`` (read, keep in all levels, data): no fault on any address, so none is checked."""
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    return _llvm_fn(builder, "llvm.prefetch.p0", ir.VoidType(), [i8p, i32, i32, i32])


def _i64(builder, v):  # type: ignore[no-untyped-def]
    return builder.sext(v, ir.IntType(64)) if v.type.width < 64 else v


@intrinsic
def dot2x8(typingctx, w, wa_off, wb_off, x, x_off, x_stride, n16, acc, acc_off, pf):  # type: ignore[no-untyped-def]
    """For r < 8 and lanes l < 16: ``acc[acc_off + 16 r + l] += sum_i w[wa_off + 16 i + l] * x[x_off + r x_stride
    + 16 i + l]`` over i < n16, and ``acc[acc_off + 16 (8 + r) + l]`` the same from ``wb_off`` (flat float32
    arrays): the sixteen 16-lane sums are loaded, held in registers over the run and stored back, so a caller can
    run a long sum in pieces with the same per-lane order; ``w[w*_off + pf + i]`` is prefetched (the weight rows'
    pieces that come next). ``w`` may hold bfloat16 weights as int16 bits (widened exactly)."""
    sig = types.void(w, wa_off, wb_off, x, x_off, x_stride, n16, acc, acc_off, pf)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        w_a, a_off, b_off, x_a, xo, xs, n, acc_a, ao, pf_v = args
        i64, i32, i8p = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
        a_off, b_off, xo, xs, pf_v, ao = (_i64(builder, v) for v in (a_off, b_off, xo, xs, pf_v, ao))
        prefetch = _prefetch_fn(builder)
        sums = [_vec_ptr(context, builder, signature.args[7], acc_a, builder.add(ao, i64(LANES * k)))
                for k in range(16)]
        slots = [cgutils.alloca_once_value(builder, builder.load(p, align=4)) for p in sums]
        xrow = [builder.add(xo, builder.mul(xs, i64(r))) for r in range(8)]
        wt = signature.args[0]
        bf16 = isinstance(wt.dtype, types.Integer)  # bfloat16 weights as int16 bits: widened exactly in registers

        def load_w(off):  # type: ignore[no-untyped-def]
            v = builder.load(_vec_ptr(context, builder, wt, w_a, off), align=2 if bf16 else 4)
            if not bf16:
                return v
            return _bf16_widen(builder, v)

        with cgutils.for_range(builder, n) as loop:
            i = builder.mul(loop.index, i64(LANES))
            va, vb = load_w(builder.add(a_off, i)), load_w(builder.add(b_off, i))
            for base in (a_off, b_off):
                ahead = _vec_ptr(context, builder, wt, w_a, builder.add(builder.add(base, pf_v), i))
                builder.call(prefetch, [builder.bitcast(ahead, i8p), i32(0), i32(3), i32(1)])
            for r in range(8):
                xv = builder.load(_vec_ptr(context, builder, signature.args[3], x_a, builder.add(xrow[r], i)),
                                  align=4)
                for k, wv in ((r, va), (8 + r, vb)):
                    prod = builder.fmul(wv, xv, flags=["contract"])
                    builder.store(builder.fadd(prod, builder.load(slots[k]), flags=["contract"]), slots[k])
        for slot, p in zip(slots, sums, strict=True):
            builder.store(builder.load(slot), p, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")  # no reassociation: the lanes add in order
def rows8_dot(x: np.ndarray, w: np.ndarray, c0: int, c1: int, out: np.ndarray,
              acc: np.ndarray) -> None:  # pragma: no cover
    """Columns ``c0 .. c1 - 1`` of a Dense layer's forward for groups of eight batch rows, as a partial sum:
    ``out[o, g, r] = sum_{c0 <= c < c1} w[o, c] * x[g, r, c]`` (x: (G, 8, F), w: (O, F), out: (O, G, 8), all
    C-contiguous; w float32, or bfloat16 as int16 bits; ``acc``: float32 scratch of at least ``256 G ceil(O /
    2)``).

    The columns are taken in pieces of ``DOT_PIECE // G`` (the batch rows' 32 KB of them stay in L1), and for
    each piece two weight rows at a time against the eight batch rows of each group (:func:`dot2x8`: sixteen
    16-lane sums in registers, kept in ``acc`` between pieces; the next rows' pieces prefetched). Each weight
    row's piece is read from memory once and kept in cache for the further groups. At M = 8 the product is bound
    by reading the weights, which MKL's GEMM for ``x @ w.T`` did at a third to half of the rate this reaches on
    2 AVX-512 cores; with the whole chunk's batch rows (512 KB) re-read from L2 for every pair of weight rows
    instead of pieces in L1, the loop ran at half the FMA rate and 1.3-1.5x slower (measured). Each lane's sum
    runs over the columns in order, whatever the piece size; the order of summation is fixed."""
    n_out, groups, feats = w.shape[0], x.shape[0], w.shape[1]
    n16 = (c1 - c0) // LANES
    tail = c0 + n16 * LANES
    piece = max(LANES, DOT_PIECE // groups // LANES * LANES)
    size = 256 * groups * ((n_out + 1) // 2)
    acc[:size] = 0.0
    wf, xf = w.reshape(-1), x.reshape(-1)
    for s in range(c0, tail, piece):
        n = (min(tail, s + piece) - s) // LANES
        for o in range(0, n_out, 2):
            ob = min(o + 1, n_out - 1)  # an odd last row pairs with itself
            if ob + PREFETCH_ROWS < n_out:
                pf = PREFETCH_ROWS * feats
            elif s + piece < tail:  # the first rows of the next piece
                pf = (PREFETCH_ROWS - n_out) * feats + piece
            else:
                pf = 0
            for g in range(groups):
                dot2x8(wf, o * feats + s, ob * feats + s, xf, g * 8 * feats + s, feats, n, acc,
                       ((o // 2) * groups + g) * 256, pf)
    for o in range(0, n_out, 2):
        ob = min(o + 1, n_out - 1)
        for g in range(groups):
            a = ((o // 2) * groups + g) * 256
            for r in range(8):
                sa, sb = acc[a + LANES * r], acc[a + LANES * (8 + r)]
                for lane in range(1, LANES):  # the lanes in order, as the sum in registers did
                    sa += acc[a + LANES * r + lane]
                    sb += acc[a + LANES * (8 + r) + lane]
                for f in range(tail, c1):
                    sa += widen(w[o, f]) * x[g, r, f]
                    sb += widen(w[ob, f]) * x[g, r, f]
                out[o, g, r] = sa
                out[ob, g, r] = sb if ob != o else sa


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
def rows8_axpy(gt: np.ndarray, w: np.ndarray, c0: int, c1: int, out: np.ndarray) -> None:  # pragma: no cover
    """Columns ``c0 .. c1 - 1`` of a Dense layer's input gradient for groups of eight batch rows: ``out[g, r, c] =
    sum_o gt[o, g, r] * w[o, c]`` (gt: (O, G, 8), w: (O, F), out: (G, 8, F)). Four weight rows' pieces at a time
    update each batch row's piece of ``out``, which stays in cache across the sum over ``o``; the order of
    summation is fixed. MKL's GEMM for this M = 8 product read the weights at 55-60 % of the rate a plain sum
    reaches on 2 AVX-512 cores; this ran 1.1-1.4x faster than it (measured)."""
    n_out, groups, n = w.shape[0], gt.shape[1], c1 - c0
    for g in range(groups):
        for r in range(8):
            out[g, r, c0:c1] = 0.0
    end4 = n_out - n_out % 4
    for o in range(0, end4, 4):
        w0, w1, w2, w3 = w[o, c0:c1], w[o + 1, c0:c1], w[o + 2, c0:c1], w[o + 3, c0:c1]
        for g in range(groups):
            for r in range(8):
                b0, b1, b2, b3 = gt[o, g, r], gt[o + 1, g, r], gt[o + 2, g, r], gt[o + 3, g, r]
                row = out[g, r, c0:c1]
                for f in range(n):
                    row[f] += b0 * w0[f] + b1 * w1[f] + b2 * w2[f] + b3 * w3[f]
    for o in range(end4, n_out):
        wo = w[o, c0:c1]
        for g in range(groups):
            for r in range(8):
                b = gt[o, g, r]
                row = out[g, r, c0:c1]
                for f in range(n):
                    row[f] += b * wo[f]


SGD_PIECE = 256  # rows8_sgd's columns a piece: the batch rows' pieces of x and of the input gradient stay in L1
SGD_ROWS = 4  # weight rows per pass of the folded backward over the batch rows' pieces (2, 4, 8, 16 measured: 4);
# it prefetches the next block of SGD_ROWS rows


@intrinsic
def sgd4x8(typingctx, w, w_off, w_stride, x, out, c_off, stride, n16, coef, groups, lr, keep, pf):  # type: ignore[no-untyped-def]
    """For i < 16 n16, the ``8 groups`` batch rows r and the ``SGD_ROWS`` weight rows k at ``w_off + k w_stride``
    (flat float32 arrays): ``out[c_off + r stride + i] += sum_k coef[32 (r // 8) + 8k + r % 8] * w[row k, i]`` from
    the weights before the step, then ``w[row k, i] = keep * w[row k, i] - lr * sum_r coef[...] * x[c_off + r stride
    + i]``; the next rows' pieces (``pf`` further on) are prefetched. One group (eight rows) keeps its 32
    coefficients in registers; more groups load them in their loop."""
    sig = types.void(w, w_off, w_stride, x, out, c_off, stride, n16, coef, groups, lr, keep, pf)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        w_a, wo, wst, x_a, o_a, co, st, n, coef_a, n_groups, lr_v, keep_v, pf_v = args
        i64, i32, f32, i8p = ir.IntType(64), ir.IntType(32), ir.FloatType(), ir.IntType(8).as_pointer()
        vec = ir.VectorType(f32, LANES)
        wo, wst, co, st, pf_v, n_groups = (_i64(builder, v) for v in (wo, wst, co, st, pf_v, n_groups))
        lr_v, keep_v = (builder.fptrunc(v, f32) if v.type != f32 else v for v in (lr_v, keep_v))
        coef_data = context.make_array(signature.args[8])(context, builder, coef_a).data
        per = 8 * SGD_ROWS

        def splats(first):  # type: ignore[no-untyped-def]
            return [_splat(builder, builder.load(builder.gep(coef_data, [builder.add(first, i64(k))])), vec)
                    for k in range(per)]

        one = splats(i64(0))  # the one-group case: hoisted out of every loop
        lr_s, keep_s = _splat(builder, lr_v, vec), _splat(builder, keep_v, vec)
        wrows = [builder.add(wo, builder.mul(wst, i64(k))) for k in range(SGD_ROWS)]
        prefetch = _prefetch_fn(builder)
        wt, c = signature.args[0], ["contract"]
        slots = [cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * LANES)) for _ in range(SGD_ROWS)]

        def group(i, ws, cs, first_row, sums):  # type: ignore[no-untyped-def]
            """Rows first_row .. + 7: their input-gradient pieces; their terms added to ``sums`` (returned)."""
            for r in range(8):
                row = builder.add(co, builder.mul(st, builder.add(first_row, i64(r))))
                po = _vec_ptr(context, builder, signature.args[4], o_a, builder.add(row, i))
                acc = builder.load(po, align=4)
                for k in range(SGD_ROWS):
                    acc = builder.fadd(builder.fmul(cs[8 * k + r], ws[k], flags=c), acc, flags=c)
                builder.store(acc, po, align=4)
                xv = builder.load(_vec_ptr(context, builder, signature.args[3], x_a, builder.add(row, i)), align=4)
                for k in range(SGD_ROWS):
                    t = builder.fmul(cs[8 * k + r], xv, flags=c)
                    sums[k] = t if sums[k] is None else builder.fadd(t, sums[k], flags=c)
            return sums

        def columns(grouped: bool) -> None:
            """The loop over the columns; the group loop (or the one group) inside: two loops, no branch in them."""
            with cgutils.for_range(builder, n) as loop:
                i = builder.mul(loop.index, i64(LANES))
                ptrs = [_vec_ptr(context, builder, wt, w_a, builder.add(b, i)) for b in wrows]
                for b in wrows:
                    ahead = _vec_ptr(context, builder, wt, w_a, builder.add(builder.add(b, pf_v), i))
                    builder.call(prefetch, [builder.bitcast(ahead, i8p), i32(0), i32(3), i32(1)])
                ws = [builder.load(p, align=4) for p in ptrs]
                if grouped:
                    for slot in slots:
                        builder.store(ir.Constant(vec, [0.0] * LANES), slot)
                    with cgutils.for_range(builder, n_groups) as gl:
                        part = group(i, ws, splats(builder.mul(gl.index, i64(per))), builder.mul(gl.index, i64(8)),
                                     [None] * SGD_ROWS)
                        for slot, v in zip(slots, part, strict=True):
                            builder.store(builder.fadd(builder.load(slot), v, flags=c), slot)
                    sums = [builder.load(slot) for slot in slots]
                else:
                    sums = group(i, ws, one, i64(0), [None] * SGD_ROWS)
                for k in range(SGD_ROWS):
                    step = builder.fsub(builder.fmul(keep_s, ws[k]), builder.fmul(lr_s, sums[k], flags=c), flags=c)
                    builder.store(step, ptrs[k], align=4)

        with builder.if_else(builder.icmp_unsigned("==", n_groups, i64(1))) as (then, otherwise):
            with then:
                columns(False)
            with otherwise:
                columns(True)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def rows8_sgd(gt: np.ndarray, x: np.ndarray, w: np.ndarray, c0: int, c1: int, lr: float, keep: float,
              out: np.ndarray) -> None:  # pragma: no cover
    """Columns ``c0 .. c1 - 1`` of a Dense layer's backward with the SGD step folded in, for batch rows in groups
    of eight: ``out[b, c] = sum_o gt[o, b] * w[o, c]`` (the input gradient, from the weights before the step), then
    ``w[o, c] = keep * w[o, c] - lr * sum_b gt[o, b] * x[b, c]`` (``keep = 1 - lr * weight_decay``; gt: (O, B), x
    and out: (B, F), w: (O, F), B a multiple of 8, all C-contiguous). ``SGD_ROWS`` weight rows a pass
    (:func:`sgd4x8`, the next rows' pieces prefetched) over pieces of ``SGD_PIECE`` columns: each piece of the
    weights is read from memory once and written once, while the batch rows' pieces of ``x`` and ``out`` stay in L1
    (with the whole chunk's pieces in L2 instead: 1.1-1.3x slower, measured). Separately, the input gradient, the
    weight gradient's write and the optimiser's read-read-write of weights and gradient pass over the weights five
    times; this passes twice (measured on 2 AVX-512 cores, 1,024 x 172,800 on huge pages, batch 8: 38-40 ms against
    137-142 ms separately; two rows a pass 48-54 ms, and 62-72 ms for that loop compiled by numba's own vectoriser,
    which spilled its registers). The order of summation is fixed."""
    n_out, feats, batch = w.shape[0], w.shape[1], x.shape[0]
    groups = batch // 8
    n16 = (c1 - c0) // LANES
    tail = c0 + n16 * LANES
    for b in range(batch):
        out[b, c0:c1] = 0.0
    wf, xf, of = w.reshape(-1), x.reshape(-1), out.reshape(-1)
    blocked = n_out - n_out % SGD_ROWS
    coef = np.empty((blocked // SGD_ROWS, groups * 8 * SGD_ROWS), np.float32)
    for o in range(0, blocked, SGD_ROWS):
        for g in range(groups):
            for k in range(SGD_ROWS):
                for r in range(8):
                    coef[o // SGD_ROWS, (g * SGD_ROWS + k) * 8 + r] = gt[o + k, 8 * g + r]
    for s in range(c0, tail, SGD_PIECE):
        n = (min(tail, s + SGD_PIECE) - s) // LANES
        for o in range(0, blocked, SGD_ROWS):
            if o + 2 * SGD_ROWS <= n_out:
                pf = SGD_ROWS * feats
            elif s + SGD_PIECE < tail:  # the first rows of the next piece
                pf = SGD_PIECE - o * feats
            else:
                pf = 0
            sgd4x8(wf, o * feats + s, feats, xf, of, s, feats, n, coef[o // SGD_ROWS], groups, lr, keep, pf)
    for o in range(0, blocked, SGD_ROWS):
        _sgd_scalar(gt, x, w, o, o + SGD_ROWS, tail, c1, lr, keep, out)  # the columns after the last 16
    _sgd_scalar(gt, x, w, blocked, n_out, c0, c1, lr, keep, out)  # the last rows, fewer than SGD_ROWS


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def _sgd_scalar(gt: np.ndarray, x: np.ndarray, w: np.ndarray, o0: int, o1: int, f0: int, f1: int, lr: float,
                keep: float, out: np.ndarray) -> None:  # pragma: no cover
    """:func:`rows8_sgd` for weight rows ``o0 .. o1 - 1`` and columns ``f0 .. f1 - 1``, one element at a time."""
    for o in range(o0, o1):
        for f in range(f0, f1):
            u = w[o, f]
            s = np.float32(0.0)
            for b in range(x.shape[0]):
                out[b, f] += gt[o, b] * u
                s += gt[o, b] * x[b, f]
            w[o, f] = keep * u - lr * s
