"""Fast CPU paths for the Reddy models' very wide Dense layers (STCNN's 345,600 -> 128, FuseNet's 172,800 -> 1,024)
and their dropouts. Same mathematics.

- ``linear``: the forward is one MKL GEMM for a narrow layer (STCNN's) and fixed column blocks summed on the
  thread pool for one with many outputs (FuseNet's: MKL packs its transposed weights first); the backward computes the input and weight gradients together, one
  block of 2,048 features per work unit on the thread pool of :mod:`microexp.fast.conv`, so each 177 MB
  pass over the weights is shared by both gradients and the weight gradient is written once (MKL's K=8 GEMM for it
  took 30 ms against 19 ms blocked, measured on 2 EPYC cores). One row without gradients (batch-1 inference) is
  a GEMV in fixed row blocks on the same pool (:func:`microexp.fast.kernels.gemv_rows`): it is bound by reading
  the 177 MB of weights, which MKL's GEMV did at ~28 GB/s and this at ~38 GB/s on 2 cores (measured).
- ``dropout``: the keep-mask comes from ``torch.rand`` (``u >= p``) instead of ``bernoulli_``, which is about 4x
  slower on CPU (38 ms against 10 ms for the 2.8 M features of a batch of 8), and at p = 0.5 (STCNN's rate) from
  the bits of random 32-bit words, one generator draw per 32 features (2 ms). The same Bernoulli(1 - p) mask
  distribution and 1/(1 - p) scaling, from the same seeded generator; only the random stream differs.
"""

from __future__ import annotations

from typing import Any

import torch

from microexp.fast.conv import _kernels, _parallel

_SHIFTS = torch.arange(32, dtype=torch.int32)
BLOCK = 2048  # features per backward work unit: measured best of 2,048..32,768
GEMV_PARTS = 4  # row blocks of a one-row product: measured best of 2..16 on 2 cores
GEMV_MIN = 65536  # inputs below which MKL's GEMV is left to it (small layers are not memory-bound)
BLOCKED_MIN_OUT = 512  # outputs from which the forward GEMM is blocked over columns (see _forward)
FORWARD_BLOCK = 2048  # columns per forward work unit


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
        grad_x = torch.empty_like(x) if want_x else None
        grad_w = torch.empty_like(weight) if want_w else None
        gt = g.t()

        def unit(j0: int) -> None:
            j1 = min(x.shape[1], j0 + BLOCK)
            if grad_x is not None:
                torch.mm(g, weight[:, j0:j1], out=grad_x[:, j0:j1])
            if grad_w is not None:
                torch.mm(gt, x[:, j0:j1], out=grad_w[:, j0:j1])

        if want_x or want_w:
            _parallel(unit, list(range(0, x.shape[1], BLOCK)))
        return grad_x, grad_w, g.sum(0) if want_b else None


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


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias`` for a 2-D CPU float32 ``x``; the backward runs blocked on the thread pool, and one
    row without gradients (batch-1 inference) is a GEMV of our own (:func:`microexp.fast.kernels.gemv_rows`)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad or bias.requires_grad):
        if x.shape[0] == 1 and x.is_contiguous() and weight.is_contiguous() and weight.shape[1] >= GEMV_MIN:
            with torch.no_grad():
                return _gemv(x.detach(), weight.detach(), bias.detach())
        with torch.no_grad():
            return _forward(x.detach(), weight.detach(), bias.detach())
    return _Linear.apply(x, weight, bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout like ``torch.nn.functional.dropout``, with the keep-mask drawn by ``torch.rand``."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if p == 0.5:
        n = x.numel()
        words = torch.randint(-(2**31), 2**31, (-(-n // 32), 1), dtype=torch.int32, device=x.device)
        bits = words.bitwise_right_shift(_SHIFTS.to(x.device)).bitwise_and_(1).view(-1)[:n]
        return x * bits.view(x.shape).to(x.dtype).mul_(2.0)
    keep = torch.rand(x.shape, dtype=x.dtype, device=x.device) >= p
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))
