"""The fast CPU Dense layer and dropout of MicroExpSTCNN: same values and gradients as PyTorch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microexp.fast import dense as fastdense


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
    y = fastdense.dropout(x, 0.5, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.005  # 200,000 draws: 5 sigma is 0.0056
    assert torch.all(y[kept] == 4.0)  # 2.0 / (1 - 0.5)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 2.0)
    torch.manual_seed(3)
    assert torch.equal(fastdense.dropout(x.detach(), 0.5, training=True), y.detach())  # seeded: same mask
    assert abs((fastdense.dropout(x.detach(), 0.2, True) != 0).float().mean().item() - 0.8) < 0.005  # torch.rand
    # the p = 0.5 masks come from random bits: neighbouring features are independent, not one bit repeated
    pairs = kept.view(-1, 2).float()
    assert abs((pairs[:, 0] * pairs[:, 1]).mean().item() - 0.25) < 0.01
    assert fastdense.dropout(x, 0.5, training=False) is x
    assert torch.all(fastdense.dropout(x, 1.0, training=True) == 0)


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
