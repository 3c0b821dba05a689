"""Fast CPU paths for the Reddy models' very wide Dense layers (STCNN's 345,600 -> 128, FuseNet's 172,800 -> 1,024).
Same mathematics. (Their dropouts: :mod:`microexp.fast.dropout`.)

- ``linear``: the forward is one MKL GEMM for a narrow layer (STCNN's) and fixed column blocks summed on the
  thread pool for one with many outputs (FuseNet's: MKL packs its transposed weights first). The backward computes
  the input and weight gradients together, one block of features per work unit on the thread pool of
  :mod:`microexp.fast.conv`, so each pass over the weights is shared by both gradients and the weight gradient is
  written once. For the wide layers (>= ``GEMV_MIN`` inputs) a unit runs two compiled kernels on the batch eight
  rows at a time (:func:`microexp.fast.kernels.gemm8`, :func:`~microexp.fast.kernels.outer8`): MKL's GEMMs for
  these M = 8 and K = 8 products ran at ~28-31 GFLOP/s on 2 EPYC cores, the kernels at ~40-50, and FuseNet's
  Dense-1024 backward took 0.21 s against 0.48 s (measured, alternated). One row without gradients (batch-1
  inference) is a GEMV in fixed row blocks on the same pool (:func:`microexp.fast.kernels.gemv_rows`): it is bound
  by reading the weights, which MKL's GEMV did at ~28 GB/s and this at ~38 GB/s on 2 cores (measured).
- The weight gradient's memory is kept and reused from one backward to the next once nothing else holds it
  (:func:`_grad_buffer`), in huge pages where Linux gives them (:func:`microexp.runtime.empty_huge`): a fresh 708 MB gradient each
  step cost more in page faults than the product that fills it.
- Inside :func:`sgd_in_backward` (the training loop's step), a layer whose weight a plain SGD optimiser steps
  takes that step in its backward (:func:`microexp.fast.kernels.rows8_sgd`): two passes over the weights instead
  of five, no weight gradient at all; the tuner keeps the separate step where that is faster (op ``linear_sgd``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch

from microexp.fast.conv import _SCRATCH, _kernels, _parallel
from microexp.runtime import empty_huge

# the storage reference count (torch's own tests use it); without it every backward takes a fresh buffer
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)
_GRAD_BUFFERS: dict[int, tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}  # id(weight) -> (weight, buffer)
BLOCK = 2048  # features per backward work unit of a narrow layer (MKL): measured best of 2,048..32,768
WIDE_UNIT = 8192  # features per backward work unit of a wide layer (the compiled kernels)
CHUNK = 1024  # features per kernel call: the eight batch rows' 32 KB of them stay in cache (512..2,048 measured)
GEMV_PARTS = 4  # row blocks of a one-row product: measured best of 2..16 on 2 cores
GEMV_MIN = 65536  # inputs below which MKL's GEMV is left to it (small layers are not memory-bound)
BLOCKED_MIN_OUT = 512  # outputs from which the forward GEMM is blocked over columns (see _forward)
FORWARD_BLOCK = 2048  # columns per forward work unit
UNITS = 11  # work units of the streamed forward and of the folded backward: FuseNet's 172,800 columns took
# 16,384 a unit and STCNN's 345,600 32,768 to run fastest (2 AVX-512 cores; 4,096-65,536 measured), 11 units each
STREAM_CHUNK: int | None = None  # columns per work unit of the streamed forward (None: 1/UNITS of them)
STREAM_MAX_ROWS = 32  # batch rows up to which the streamed forward applies (beyond, the product is compute-bound)
STREAM_GX_CHUNK = 2048  # columns per work unit of the streamed input gradient (2,048..16,384 measured)
SGD_CHUNK: int | None = None  # columns per work unit of the backward with the SGD step folded in (None: 1/UNITS)
SGD_MAX_ROWS = 32  # batch rows up to which the SGD step is folded into the backward (groups of eight)


def _grad_buffer(weight: torch.Tensor) -> torch.Tensor:
    """Memory for ``weight``'s gradient: the buffer of the last backward when nothing else holds it any more (the
    optimiser's ``zero_grad`` dropped the ``.grad`` that autograd made of it), else a fresh one, kept for the next.

    A fresh 708 MB buffer costs its pages every step, and on a virtual machine much more when they come from
    memory the previous step did not use (measured: FuseNet's backward 0.19 s reusing, 0.26 s fresh in steady
    training and 0.52-0.78 s after a step that freed other memory). The buffer is returned as a new tensor on the
    same memory, which autograd keeps as ``.grad`` without a copy; the storage's reference count tells when it is
    free, so a gradient still held anywhere (accumulation, a user's reference) is never overwritten. Dropped by a
    forward without gradients (:func:`release`), so evaluation frees it."""
    if _storage_use_count is None:  # no way to tell when the memory is free: never reuse it
        return empty_huge(weight.shape)
    key = id(weight)
    entry = _GRAD_BUFFERS.get(key)
    buf = entry[1] if entry is not None and entry[0]() is weight else None
    if buf is None or buf.shape != weight.shape or \
            _storage_use_count(buf.untyped_storage()._cdata) != 2:  # 2: buf and the temporary storage object
        buf = empty_huge(weight.shape)
        _GRAD_BUFFERS[key] = (weakref.ref(weight, lambda _r: _GRAD_BUFFERS.pop(key, None)), buf)
    return buf.view(buf.shape)


def release(weight: torch.Tensor | None = None) -> None:
    """Forget the gradient buffer kept for ``weight`` (all of them: ``None``); memory still used as a ``.grad``
    stays with it."""
    if weight is None:
        _GRAD_BUFFERS.clear()
    else:
        _GRAD_BUFFERS.pop(id(weight), None)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _forward(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad
        g = g.contiguous()
        grad_x, grad_w = _backward(g, x, weight, want_x, want_w) if want_x or want_w else (None, None)
        return grad_x, grad_w, g.sum(0) if want_b else None


def _backward(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, want_x: bool,
              want_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The input and weight gradients together, one block of features per work unit, so that each unit reads its
    columns of the weights and writes those of the gradient once. A wide layer's units run the compiled kernels
    :func:`~microexp.fast.kernels.gemm8` and :func:`~microexp.fast.kernels.outer8` on the batch eight rows at a
    time (a short last group padded with zero rows); a narrow one's (few inputs) MKL's GEMMs."""
    n, features = x.shape
    grad_w = _grad_buffer(weight) if want_w else None
    if features < GEMV_MIN:
        grad_x = torch.empty_like(x) if want_x else None
        gt = g.t()

        def unit(j0: int) -> None:
            j1 = min(features, j0 + BLOCK)
            if grad_x is not None:
                torch.mm(g, weight[:, j0:j1], out=grad_x[:, j0:j1])
            if grad_w is not None:
                torch.mm(gt, x[:, j0:j1], out=grad_w[:, j0:j1])

        _parallel(unit, list(range(0, features, BLOCK)))
        return grad_x, grad_w
    kernels = _kernels()
    # zero rows add nothing to the weight gradient, and their input gradient is dropped
    x, g = _pad_rows8(x.detach().contiguous()), _pad_rows8(g.detach())
    rows = x.shape[0]
    groups = [(g[r:r + 8].numpy(), g[r:r + 8].t().contiguous().numpy(), x[r:r + 8].numpy())
              for r in range(0, rows, 8)]
    grad_x = torch.empty(rows, features) if want_x else None
    w_np = weight.detach().numpy()
    gx_np = grad_x.numpy() if grad_x is not None else None
    gw_np = grad_w.numpy() if grad_w is not None else None

    def wide_unit(j0: int) -> None:
        acc = _SCRATCH.get("dense_acc", (8, CHUNK)).numpy()
        end = min(features, j0 + WIDE_UNIT)
        for c0 in range(j0, end, CHUNK):
            c1 = min(end, c0 + CHUNK)
            for k, (gk, gtk, xk) in enumerate(groups):
                if gw_np is not None:
                    kernels.outer8(gtk, xk, c0, c1, k > 0, gw_np)  # fixed group order: deterministic sums
                if gx_np is not None:
                    kernels.gemm8(gk, w_np, c0, c1, acc, gx_np[8 * k:8 * k + 8])

    _parallel(wide_unit, list(range(0, features, WIDE_UNIT)))
    return (grad_x[:n] if grad_x is not None and rows != n else grad_x), grad_w


def _pad_rows8(t: torch.Tensor) -> torch.Tensor:
    """``t`` (rows, columns) with zero rows appended up to a multiple of eight: the kernels take the batch eight
    rows at a time, and zero rows add nothing."""
    extra = -t.shape[0] % 8
    return t if extra == 0 else torch.cat([t, t.new_zeros(extra, t.shape[1])])


def _chunk(features: int, chunk: int | None) -> int:
    """Columns a work unit: ``chunk``, else 1/``UNITS`` of ``features`` in whole 1,024s (the same on any thread
    count, so the partial sums and their order do not depend on it)."""
    return chunk or -(-features // (UNITS * 1024)) * 1024


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias``. A wide layer with many outputs (FuseNet's Dense-1024) is summed over fixed column
    blocks on the thread pool: MKL's one GEMM for it packs the transposed weights first and ran 1.5-2x slower
    (measured, 8 x 172,800 by 1,024). Narrow ones (STCNN's Dense-128) keep MKL's GEMM, which is memory-bound there."""
    if weight.shape[0] < BLOCKED_MIN_OUT or weight.shape[1] < GEMV_MIN:
        return torch.addmm(bias, x, weight.t())
    starts = list(range(0, x.shape[1], FORWARD_BLOCK))
    parts = torch.empty(len(starts), x.shape[0], weight.shape[0], dtype=x.dtype)

    def unit(k: int) -> None:
        j0, j1 = starts[k], min(x.shape[1], starts[k] + FORWARD_BLOCK)
        torch.mm(x[:, j0:j1], weight[:, j0:j1].t(), out=parts[k])

    _parallel(unit, list(range(len(starts))))
    return parts.sum(0).add_(bias)  # fixed blocks and order: the result does not depend on the thread count


def _gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One row: ``GEMV_PARTS`` fixed row blocks of the weights on the thread pool (thread-count independent)."""
    kernels = _kernels()
    out = torch.empty(weight.shape[0], dtype=torch.float32)
    xs, ws, os_ = x[0].numpy(), weight.numpy(), out.numpy()
    step = -(-weight.shape[0] // GEMV_PARTS)
    _parallel(lambda r0: kernels.gemv_rows(xs, ws, r0, min(weight.shape[0], r0 + step), os_),
              list(range(0, weight.shape[0], step)))
    return (out + bias).unsqueeze(0)


def _fast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, train: bool) -> torch.Tensor:
    if not train:
        release(weight)  # evaluation: training has paused, so its gradient buffer need not stay
        if x.shape[0] == 1 and x.is_contiguous() and weight.is_contiguous() and weight.shape[1] >= GEMV_MIN:
            with torch.no_grad():
                return _gemv(x.detach(), weight.detach(), bias.detach())
        with torch.no_grad():
            return _forward(x.detach(), weight.detach(), bias.detach())
    return _Linear.apply(x, weight, bias)


def _stream_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias`` for a few rows (at most ``STREAM_MAX_ROWS``; more take MKL's GEMM), bound by
    reading the weights: fixed chunks of columns (:func:`_chunk`) on the thread pool, each reading its pieces of
    the weight rows once in contiguous runs for every batch row (:func:`microexp.fast.kernels.rows8_dot`, the rows
    eight at a time, a short last group padded with zeros), the chunks' partial sums added in a fixed order (the
    result does not depend on the thread count)."""
    n, features = x.shape
    if n > STREAM_MAX_ROWS:
        return torch.addmm(bias, x, weight.t())
    kernels = _kernels()
    xg = _pad_rows8(x.contiguous())
    rows = xg.shape[0]
    xs, ws = xg.view(rows // 8, 8, features).numpy(), weight.contiguous().numpy()
    chunk = _chunk(features, STREAM_CHUNK)
    starts = list(range(0, features, chunk))
    parts = torch.empty(len(starts), weight.shape[0], rows // 8, 8)
    ps = parts.numpy()
    scratch = 256 * (rows // 8) * -(-weight.shape[0] // 2)  # rows8_dot's running sums between pieces

    def unit(k: int) -> None:
        kernels.rows8_dot(xs, ws, starts[k], min(features, starts[k] + chunk), ps[k],
                          _SCRATCH.get("dot", (scratch,)).numpy())

    _parallel(unit, list(range(len(starts))))
    return parts.sum(0).view(weight.shape[0], rows)[:, :n].t().add(bias)


def _stream_grad_input(g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``g @ weight`` for a few rows (at most ``STREAM_MAX_ROWS``; more take MKL's GEMM): fixed chunks of
    ``STREAM_GX_CHUNK`` columns on the thread pool (:func:`microexp.fast.kernels.rows8_axpy`, the rows eight at a
    time, a short last group padded with zeros); each chunk is summed whole by one unit, so the result does not
    depend on the thread count."""
    n, n_out = g.shape
    if n > STREAM_MAX_ROWS:
        return torch.mm(g, weight)
    kernels = _kernels()
    gp = _pad_rows8(g)
    rows = gp.shape[0]
    gt = gp.t().contiguous().view(n_out, rows // 8, 8).numpy()
    features = weight.shape[1]
    out = torch.empty(rows // 8, 8, features)
    os_, ws = out.numpy(), weight.contiguous().numpy()
    _parallel(lambda c0: kernels.rows8_axpy(gt, ws, c0, min(features, c0 + STREAM_GX_CHUNK), os_),
              list(range(0, features, STREAM_GX_CHUNK)))
    return out.view(rows, features)[:n]


class _StreamLinear(torch.autograd.Function):
    """The streamed forward (:func:`_stream_forward`) and input gradient (:func:`_stream_grad_input`); the weight
    gradient is MKL's GEMM (it runs at the write bandwidth here), written into the buffer kept from the last step
    (:func:`_grad_buffer`)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _stream_forward(x.detach(), weight.detach(), bias.detach())

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad
        g = g.contiguous()
        grad_x = _stream_grad_input(g, weight.detach()) if want_x else None
        grad_w = torch.mm(g.t(), x, out=_grad_buffer(weight)) if want_w else None
        return grad_x, grad_w, g.sum(0) if want_b else None


def _stream(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, train: bool) -> torch.Tensor:
    if train:
        return _StreamLinear.apply(x, weight, bias)
    release(weight)
    with torch.no_grad():
        return _stream_forward(x.detach(), weight.detach(), bias.detach())


_SGD: dict[int, tuple[weakref.ref[torch.Tensor], dict[str, Any]]] = {}  # id(weight) -> (weight, param group)


def foldable(group: dict[str, Any]) -> bool:
    """Whether a ``torch.optim.SGD`` parameter group's step is ``w -= lr * (grad + weight_decay * w)`` alone: no
    momentum (it would need its buffer), no ``maximize``, no differentiable step."""
    return (float(group.get("momentum", 0.0)) == 0.0 and not group.get("maximize", False)
            and not group.get("differentiable", False))


@contextlib.contextmanager
def sgd_in_backward(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block, a training forward of a wide Dense layer on the fast path (at most ``SGD_MAX_ROWS`` batch
    rows) whose weight ``optimizer`` steps as plain SGD (:func:`foldable`) and has no gradient yet records that
    group, and its backward then applies the group's step to the weight itself (:func:`_sgd_backward`, the
    group's ``lr`` and ``weight_decay`` as they are at that moment) and leaves ``.grad`` None, so that
    ``optimizer.step()`` skips it: two passes over the weights instead of five. The same update within float
    rounding; the tuner keeps the separate step where it is faster (op ``linear_sgd``). Use it around the forward
    of one step that ends in ``backward`` and ``optimizer.step()``
    (:func:`microexp.train.loop.train_step`): the weight changes during ``backward``, and a gradient clipped or
    inspected afterwards would not include it."""
    added = []
    if type(optimizer) is torch.optim.SGD:
        for group in optimizer.param_groups:
            if not foldable(group):
                continue
            for p in group["params"]:
                if p.dim() == 2 and p.shape[1] >= GEMV_MIN and p.grad is None and id(p) not in _SGD:
                    _SGD[id(p)] = (weakref.ref(p), group)
                    added.append(id(p))
    try:
        yield
    finally:
        for k in added:
            _SGD.pop(k, None)


def _sgd_group(weight: torch.Tensor) -> dict[str, Any] | None:
    entry = _SGD.get(id(weight))
    return entry[1] if entry is not None and entry[0]() is weight and weight.grad is None else None


def _sgd_backward(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, lr: float,
                  weight_decay: float) -> torch.Tensor:
    """The input gradient ``g @ weight`` (weights before the step) and, in the same pass, ``weight -= lr * (g.T @ x
    + weight_decay * weight)`` in place: fixed chunks of columns (:func:`_chunk`) on the thread pool
    (:func:`microexp.fast.kernels.rows8_sgd`; the batch padded with zero rows to a multiple of eight, which add nothing)."""
    kernels = _kernels()
    n, features = x.shape
    x, g = _pad_rows8(x), _pad_rows8(g)
    gt, xs = g.t().contiguous().numpy(), x.contiguous().numpy()
    out = torch.empty(x.shape[0], features)
    os_, ws = out.numpy(), weight.numpy()
    keep = 1.0 - lr * weight_decay
    chunk = _chunk(features, SGD_CHUNK)
    _parallel(lambda c0: kernels.rows8_sgd(gt, xs, ws, c0, min(features, c0 + chunk), lr, keep, os_),
              list(range(0, features, chunk)))
    return out[:n]


class _SGDLinear(torch.autograd.Function):
    """The fp32 forward, streamed (:func:`_stream_forward`) or MKL's (``stream=False``); a backward that steps the
    weight (:func:`_sgd_backward`) and returns no weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, group: dict[str, Any],
                stream: bool) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.group = group
        x, w, b = x.detach(), weight.detach(), bias.detach()
        return _stream_forward(x, w, b) if stream else torch.addmm(b, x, w.t())

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        want_x, _want_w, want_b = ctx.needs_input_grad[:3]
        g = g.contiguous()
        with torch.no_grad():
            grad_x = _sgd_backward(g, x.detach(), weight.detach(), float(ctx.group["lr"]),
                                   float(ctx.group.get("weight_decay", 0.0)))
        torch.autograd.graph.increment_version(weight)  # changed in place: a second backward through it fails
        return grad_x if want_x else None, None, g.sum(0) if want_b else None, None, None


def _sgd_trial(how: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, linear_how: str,
               precision: str) -> Any:
    """One training step of the layer for the tuner: ``fused`` / ``fused_mkl`` (:class:`_SGDLinear`, streamed or
    MKL forward) or ``plain`` (the ``linear`` candidate ``linear_how`` and a separate ``torch.optim.SGD`` step), on
    a copy of the weights."""
    xs = x.detach().requires_grad_(x.requires_grad)
    w, b = weight.detach().clone().requires_grad_(), bias.detach().requires_grad_()
    opt = torch.optim.SGD([w, b], lr=1e-6)

    def run() -> None:
        with torch.enable_grad():
            if how != "plain":
                out = _SGDLinear.apply(xs, w, b, opt.param_groups[0], how == "fused")
            else:
                out = _run(linear_how, xs, w, b, True, precision)
            out.backward(torch.ones_like(out))
            opt.step()
            xs.grad = w.grad = b.grad = None
            release(w)
    return run


_BF16: dict[int, tuple[weakref.ref[torch.Tensor], int, torch.Tensor]] = {}  # id(weight) -> (weight, version, copy)


def bf16_weight(weight: torch.Tensor) -> torch.Tensor:
    """A bf16 copy of ``weight`` kept until the weight changes (its version counter moves) or dies: inference
    streams half the bytes and does not re-cast the weights at every call."""
    key = id(weight)
    entry = _BF16.get(key)
    if entry is not None and entry[0]() is weight and entry[1] == weight._version:
        return entry[2]
    copy = weight.detach().to(torch.bfloat16)
    _BF16[key] = (weakref.ref(weight, lambda _r: _BF16.pop(key, None)), weight._version, copy)
    return copy


def _run(how: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, train: bool,
         precision: str) -> torch.Tensor:
    if how == "fast":
        return _fast(x.float(), weight, bias, train)
    if how == "stream":
        return _stream(x.float(), weight, bias, train)
    if how == "stream_bf16":
        if train:  # the weights change every step: a bf16 copy would be remade each time; fp32 as "stream"
            return _stream(x.float(), weight, bias, True)
        if x.shape[0] <= STREAM_MAX_ROWS and weight.shape[1] >= GEMV_MIN:
            release(weight)
            with torch.no_grad():
                wb = bf16_weight(weight).view(torch.int16)  # the kernels widen the bits exactly
                xf, b = x.detach().float().contiguous(), bias.detach()
                return _gemv(xf, wb, b) if x.shape[0] == 1 else _stream_forward(xf, wb, b)
        how = "bf16"  # narrow or many rows: MKL's bf16 GEMM
    if how == "bf16":
        if not train:
            with torch.no_grad():
                return torch.addmm(bias.detach().to(torch.bfloat16), x.detach().to(torch.bfloat16),
                                   bf16_weight(weight).t()).float()
        return torch.nn.functional.linear(x.to(torch.bfloat16), weight.to(torch.bfloat16),
                                          bias.to(torch.bfloat16)).float()
    if precision == "bf16":  # plain, as autocast runs it
        return torch.nn.functional.linear(x.to(torch.bfloat16), weight.to(torch.bfloat16),
                                          bias.to(torch.bfloat16)).float()
    return torch.nn.functional.linear(x, weight, bias)


def _trial(how: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, train: bool,
           precision: str) -> Any:
    """One run of candidate ``how`` for the tuner, on detached leaves (the model's gradients are untouched)."""
    xs = x.detach().requires_grad_(train and x.requires_grad)
    w, b = weight.detach().requires_grad_(train), bias.detach().requires_grad_(train)

    def run() -> None:
        with torch.set_grad_enabled(train):
            out = _run(how, xs, w, b, train, precision)
            if train:
                out.backward(torch.ones_like(out))
                xs.grad = w.grad = b.grad = None
                release(w)
    return run


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias`` for a 2-D CPU ``x``, by the implementation measured fastest for this shape on this
    machine (:mod:`microexp.fast.tune`): ``fast`` (the backward blocked on the thread pool, and one row without
    gradients a GEMV of our own, :func:`microexp.fast.kernels.gemv_rows`), ``stream`` (the forward streamed over
    the weights by :func:`microexp.fast.kernels.rows8_dot`, MKL's backward), ``bf16`` (bf16 precision only: bf16
    weights and input, float32 out), ``stream_bf16`` (bf16 precision only: in inference the kept bf16 copy of the
    weights streamed by the same two kernels against the float32 input, half the bytes to read; in training
    ``stream``) or ``plain``. In a training step under :func:`sgd_in_backward` the layer's
    SGD step is folded into its backward (:class:`_SGDLinear`), where the tuner's op ``linear_sgd`` finds that
    faster than the separate step."""
    from microexp.fast import tune

    precision = tune.precision_now()
    train = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad)
    how = tune.choose("linear", train, (tuple(x.shape), tuple(weight.shape)),
                      lambda c: _trial(c, x, weight, bias, train, precision),
                      what=f"{x.shape[0]} x {weight.shape[1]} -> {weight.shape[0]}")
    foldable_call = train and weight.requires_grad and weight.is_contiguous() and x.shape[0] <= SGD_MAX_ROWS
    group = _sgd_group(weight) if foldable_call else None
    if group is not None and how != "bf16" and not (how == "plain" and precision == "bf16"):  # fp32 arithmetic
        folded = tune.choose("linear_sgd", train, (tuple(x.shape), tuple(weight.shape)),
                             lambda c: _sgd_trial(c, x, weight, bias, how, precision),
                             what=f"{x.shape[0]} x {weight.shape[1]} -> {weight.shape[0]}, SGD step after {how}")
        if folded != "plain":
            with torch.autocast("cpu", enabled=False):
                return _SGDLinear.apply(x.float(), weight, bias, group, folded == "fused")
    with torch.autocast("cpu", enabled=False):
        return _run(how, x, weight, bias, train, precision)
