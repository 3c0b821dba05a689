"""The fast CPU Dense layer and dropout of MicroExpSTCNN: same values and gradients as PyTorch's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from microexp import runtime
from microexp.fast import dense as fastdense
from microexp.fast.dropout import dropout


def test_linear_matches_torch_in_output_and_all_three_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastdense, "BLOCK", 300)  # several blocks and a ragged last one over 1,000 features
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1000, generator=gen, requires_grad=True)
    w = (torch.randn(7, 1000, generator=gen) * 0.05).requires_grad_()
    b = torch.randn(7, generator=gen, requires_grad=True)
    g = torch.randn(5, 7, generator=gen)
    ref = F.linear(x, w, b)
    out = fastdense.linear(x, w, b)
    torch.testing.assert_close(out, ref)
    for got, want in zip(torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # only the gradients asked for are computed
    gx, = torch.autograd.grad(fastdense.linear(x, w.detach(), b.detach()), (x,), g)
    torch.testing.assert_close(gx, g @ w.detach(), rtol=1e-5, atol=1e-6)


def test_dropout_keeps_one_minus_p_scales_and_routes_the_gradient_through_its_mask() -> None:
    x = torch.full((400, 500), 2.0, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.5, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.005  # 200,000 draws: 5 sigma is 0.0056
    assert torch.all(y[kept] == 4.0)  # 2.0 / (1 - 0.5)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 2.0)
    torch.manual_seed(3)
    assert torch.equal(dropout(x.detach(), 0.5, training=True), y.detach())  # seeded: same mask
    assert abs((dropout(x.detach(), 0.2, True) != 0).float().mean().item() - 0.8) < 0.005  # torch.rand
    # the p = 0.5 masks come from random bits: neighbouring features are independent, not one bit repeated
    pairs = kept.view(-1, 2).float()
    assert abs((pairs[:, 0] * pairs[:, 1]).mean().item() - 0.25) < 0.01
    assert dropout(x, 0.5, training=False) is x
    assert torch.all(dropout(x, 1.0, training=True) == 0)


@pytest.mark.parametrize("rows", [7, 128], ids=["ragged-row-blocks", "stcnn-rows"])
def test_one_row_inference_gemv_matches_f_linear(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    # batch-1 inference takes the compiled GEMV (row blocks on the thread pool); 7 rows in 4 parts of 2 leave
    # blocks of two and one row beside the four-row kernel
    monkeypatch.setattr(fastdense, "GEMV_MIN", 1000)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 50_000, generator=gen)
    w = torch.randn(rows, 50_000, generator=gen) * 0.05
    b = torch.randn(rows, generator=gen)
    with torch.no_grad():
        out = fastdense.linear(x, w, b)
        big = fastdense.linear(x.expand(2, -1).contiguous(), w, b)  # two rows: MKL's GEMM
    ref = F.linear(x.double(), w.double(), b.double()).float()
    assert out.shape == (1, rows)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)  # |out| ~ 11: float32 sums of 50,000 terms
    torch.testing.assert_close(big[:1], ref, rtol=1e-5, atol=1e-4)
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before > 1 else 2)
    try:  # fixed row blocks and summation order: the result does not depend on the thread count
        with torch.no_grad():
            assert torch.equal(fastdense.linear(x, w, b), out)
    finally:
        torch.set_num_threads(before)


def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small sizes through the wide layer's compiled backward: several units, a ragged last chunk and unit."""
    monkeypatch.setattr(fastdense, "GEMV_MIN", 1000)
    monkeypatch.setattr(fastdense, "WIDE_UNIT", 1700)
    monkeypatch.setattr(fastdense, "CHUNK", 500)


@pytest.mark.parametrize("rows", [1, 5, 8, 13, 16])
@pytest.mark.parametrize("outputs", [7, 130])
def test_wide_backward_matches_float64_for_any_batch_and_output_count(monkeypatch: pytest.MonkeyPatch, rows: int,
                                                                       outputs: int) -> None:
    # batches in groups of eight rows (a short group padded with zero rows), outputs in fours and a remainder
    _wide(monkeypatch)
    gen = torch.Generator().manual_seed(rows * 1000 + outputs)
    x = torch.randn(rows, 5003, generator=gen, requires_grad=True)
    w = (torch.randn(outputs, 5003, generator=gen) * 0.05).requires_grad_()
    b = torch.randn(outputs, generator=gen, requires_grad=True)
    g = torch.randn(rows, outputs, generator=gen)
    got = torch.autograd.grad(fastdense.linear(x, w, b), (x, w, b), g)
    want = torch.autograd.grad(F.linear(x.double(), w.double(), b.double()), (x, w, b), g.double())
    for a, ref in zip(got, want, strict=True):
        assert a.dtype == torch.float32 and a.shape == ref.shape
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    gx, = torch.autograd.grad(fastdense.linear(x, w.detach(), b.detach()), (x,), g)  # input gradient alone
    torch.testing.assert_close(gx, got[0], rtol=0, atol=0)
    gw, = torch.autograd.grad(fastdense.linear(x.detach(), w, b.detach()), (w,), g)  # weight gradient alone
    torch.testing.assert_close(gw, got[1], rtol=0, atol=0)


def test_wide_backward_does_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    _wide(monkeypatch)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(9, 6000, generator=gen, requires_grad=True)
    w = (torch.randn(33, 6000, generator=gen) * 0.05).requires_grad_()
    b = torch.zeros(33, requires_grad=True)
    g = torch.randn(9, 33, generator=gen)
    before, outs = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(torch.autograd.grad(fastdense.linear(x, w, b), (x, w), g))
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:  # bit for bit: fixed units, groups and order of summation
        assert all(torch.equal(a, c) for a, c in zip(other, outs[0], strict=True))


def test_weight_gradient_memory_is_reused_only_when_nothing_else_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    if fastdense._storage_use_count is None:
        pytest.skip("this torch has no storage reference count: every backward takes fresh memory")
    _wide(monkeypatch)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3000, generator=gen)
    w = torch.nn.Parameter(torch.randn(10, 3000, generator=gen) * 0.05)
    b = torch.nn.Parameter(torch.zeros(10))
    opt = torch.optim.SGD([w, b], lr=0.1)

    def grad_of(scale: float, w: torch.nn.Parameter) -> torch.Tensor:
        (fastdense.linear(x * scale, w, b) ** 2).sum().backward()
        assert w.grad is not None
        return w.grad

    first = grad_of(1.0, w)
    value, buffer = first.clone(), fastdense._GRAD_BUFFERS[id(w)][1]
    assert first.data_ptr() == buffer.data_ptr()  # autograd kept the buffer as .grad, without a copy
    del first
    opt.zero_grad(set_to_none=True)
    second = grad_of(1.0, w)
    assert fastdense._GRAD_BUFFERS[id(w)][1] is buffer  # the optimiser dropped the .grad: the same buffer again
    assert second.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(second, value, rtol=0, atol=0)
    kept = second  # a user's reference to the last gradient...
    opt.zero_grad(set_to_none=True)
    third = grad_of(2.0, w)
    assert third.data_ptr() != kept.data_ptr()  # ...so the next backward writes elsewhere
    assert fastdense._GRAD_BUFFERS[id(w)][1] is not buffer
    del buffer
    torch.testing.assert_close(kept, value, rtol=0, atol=0)
    del kept, second
    # accumulation (no zero_grad): the held .grad is added to, never overwritten by the next gradient
    fourth = grad_of(1.0, w)
    torch.testing.assert_close(fourth, value * 5, rtol=1e-5, atol=1e-5 * float(value.abs().max()))  # 4x + x
    # evaluation forgets the buffer, and so does the weight's end
    with torch.no_grad():
        fastdense.linear(x, w, b)
    assert id(w) not in fastdense._GRAD_BUFFERS
    opt.zero_grad(set_to_none=True)
    grad_of(1.0, w)
    assert id(w) in fastdense._GRAD_BUFFERS
    key = id(w)
    del opt, w, fourth, third
    assert key not in fastdense._GRAD_BUFFERS


def test_large_gradients_and_weights_ask_for_huge_pages() -> None:
    out = runtime.empty_huge((3, runtime.HUGE_MIN // 4))
    assert out.shape == (3, runtime.HUGE_MIN // 4) and out.dtype == torch.float32 and out.is_contiguous()
    linux_thp = sys.platform.startswith("linux") and Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
    if linux_thp:
        assert runtime._madvise is not None and runtime.advise_huge(out)
    assert not runtime.advise_huge(torch.empty(10))  # below HUGE_MIN: left alone
    # a wide weight moves onto such memory with its values, the parameter object unchanged
    layer = torch.nn.Linear(runtime.HUGE_MIN // 4 // 16, 16)
    before, param = layer.weight.detach().clone(), layer.weight
    assert runtime.onto_huge_pages(layer.weight) and layer.weight is param and torch.equal(layer.weight, before)
    assert not runtime.onto_huge_pages(torch.nn.Linear(100, 16).weight)  # small: left where it is


@pytest.mark.parametrize("n", [1, 5, 8, 13, 40], ids=["one-row", "padded", "one-group", "two-groups", "mkl"])
@pytest.mark.parametrize("outs", [7, 16], ids=["odd-outputs", "even-outputs"])
def test_the_streamed_forward_and_its_backward_equal_f_linear(monkeypatch: pytest.MonkeyPatch, n: int,
                                                              outs: int) -> None:
    """``stream``: chunks of columns (a ragged last one), rows eight at a time (padded), an odd last weight row,
    and above ``STREAM_MAX_ROWS`` rows MKL's GEMM; forward, all three gradients, and inference."""
    from microexp.fast import tune

    monkeypatch.setattr(fastdense, "STREAM_CHUNK", 384)
    monkeypatch.setattr(fastdense, "STREAM_GX_CHUNK", 300)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(n, 1000, generator=gen, requires_grad=True)
    w = (torch.randn(outs, 1000, generator=gen) * 0.05).requires_grad_()
    b = torch.randn(outs, generator=gen, requires_grad=True)
    g = torch.randn(n, outs, generator=gen)
    with tune.force("linear=stream"):
        out = fastdense.linear(x, w, b)
        with torch.no_grad():
            infer = fastdense.linear(x, w, b)
    ref = F.linear(x.double(), w.double(), b.double())
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-5)
    assert torch.equal(infer, out.detach())
    for got, want in zip(torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g.double()),
                         strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


def test_the_streamed_products_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastdense, "STREAM_CHUNK", 256)  # fixed chunks, partial sums added in a fixed order
    gen = torch.Generator().manual_seed(8)
    x, w, b = torch.randn(8, 3000, generator=gen), torch.randn(9, 3000, generator=gen), torch.randn(9, generator=gen)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append((fastdense._stream_forward(x, w, b), fastdense._stream_grad_input(x[:, :9], w)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b_) for other in outs[1:] for a, b_ in zip(outs[0], other, strict=True))
