"""Both MicroExpFuseNets on the fast CPU path equal their plain PyTorch layers: outputs, loss, every gradient and
the parameters after several SGD steps, at the CAS(ME)^2 depth (96 frames) and the SMIC depth (18)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microexp.fast import dense as fastdense
from microexp.models.fusenet import IntermediateFuseNet, LateFuseNet

# 96 frames on 8x8 crops keeps the Dense-1024 small (6,912 inputs); 18 frames on 32x32 is the real SMIC input
SHAPES = {"casme2-depth-96": (1, 96, 8, 8), "smic-depth-18": (1, 18, 32, 32)}
MODELS = {"intermediate": IntermediateFuseNet, "late": LateFuseNet}


def _pair(cls: type, shape: tuple[int, ...], **kw: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    # no dropout: the fast path draws its masks from another random stream (tests/test_fast_dense.py)
    fast = cls(3, shape, shape, dropout=0.0, **kw)
    plain = cls(3, shape, shape, dropout=0.0, fast=False, **kw)
    plain.load_state_dict(fast.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    return fast, plain


def _inputs(shape: tuple[int, ...], n: int = 4) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return ({"eyes": torch.randn(n, *shape, generator=gen), "mouth": torch.randn(n, *shape, generator=gen)},
            torch.tensor([0, 2, 1, 1][:n]))


def _taken(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the fused conv, to show which path ran."""
    from microexp.fast import conv

    calls: list[int] = []
    real = conv.conv_relu_pool
    monkeypatch.setattr(conv, "conv_relu_pool", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("depth", list(SHAPES))
@pytest.mark.parametrize("kind", list(MODELS))
def test_fast_and_plain_agree_on_outputs_loss_and_every_gradient(kind: str, depth: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fast, plain = _pair(MODELS[kind], SHAPES[depth])
    x, y = _inputs(SHAPES[depth])
    calls = _taken(fast, monkeypatch)
    grads, losses = [], []
    for model in (fast, plain):
        model.train()
        loss = F.cross_entropy(model(**x), y)
        losses.append(loss.detach())
        grads.append({k: torch.autograd.grad(loss, p, retain_graph=True)[0] for k, p in model.named_parameters()})
    assert len(calls) == 2  # both streams took the fused conv; the plain model never calls it
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for name, g in grads[1].items():
        assert float(g.abs().max()) > 0, name  # every parameter gets a gradient: none is compared at zero
        torch.testing.assert_close(grads[0][name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()), msg=name)
    fast.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**x), plain(**x), rtol=1e-5, atol=1e-5)
        one = {k: v[:1] for k, v in x.items()}  # batch 1: the GEMV path where it applies
        torch.testing.assert_close(fast(**one), plain(**one), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(MODELS))
def test_five_sgd_steps_with_momentum_end_at_the_same_parameters(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a blocked forward over several ragged column blocks, as the full-size Dense-1024 takes it
    monkeypatch.setattr(fastdense, "GEMV_MIN", 1000)
    monkeypatch.setattr(fastdense, "FORWARD_BLOCK", 1500)
    monkeypatch.setattr(fastdense, "BLOCK", 700)
    monkeypatch.setattr(fastdense, "WIDE_UNIT", 1700)  # the wide backward's kernels over ragged units and chunks
    monkeypatch.setattr(fastdense, "CHUNK", 500)
    fast, plain = _pair(MODELS[kind], SHAPES["casme2-depth-96"], profile="paper")
    x, y = _inputs(SHAPES["casme2-depth-96"])
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    for model in (fast, plain):
        model.train()
        # lr 0.01: at 0.05 the loss diverged (1.5 -> 11), which amplified one max-pool tie that AVX-512 rounding
        # broke the other way into a 1.6 % conv-weight difference on an AVX-512 host; converging, both agree to 1e-6
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(**x), y).backward()
            opt.step()
    after_fast, after_plain = fast.state_dict(), plain.state_dict()
    for name, p in after_plain.items():
        moved = float((p - start[name]).abs().max())
        assert moved > 0, name  # the steps changed every parameter, so agreeing means something
        torch.testing.assert_close(after_fast[name], p, rtol=1e-4, atol=1e-3 * moved, msg=name)


def test_blocked_forward_does_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastdense, "GEMV_MIN", 1000)
    monkeypatch.setattr(fastdense, "FORWARD_BLOCK", 1500)
    gen = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(3, 7000, generator=gen), torch.randn(600, 7000, generator=gen), torch.randn(600)
    before, outs = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(fastdense.linear(x, w, b))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(outs[0], F.linear(x, w, b), rtol=1e-5, atol=1e-3)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])  # bit for bit: fixed blocks and order of summation


def test_hooks_input_gradients_and_fast_false_take_the_plain_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = SHAPES["smic-depth-18"]
    fast, plain = _pair(IntermediateFuseNet, shape)
    x, _ = _inputs(shape, 2)
    calls = _taken(fast, monkeypatch)
    plain(**x)
    assert calls == []
    handle = fast.fc1.register_forward_hook(lambda *a: None)  # a feature tap needs the module to run
    fast(**x)
    handle.remove()
    assert calls == []
    eyes = x["eyes"].clone().requires_grad_()  # saliency maps need d(logit)/d(input): plain layers
    fast(eyes=eyes, mouth=x["mouth"])[0, 1].backward()
    assert calls == [] and eyes.grad is not None and float(eyes.grad.abs().sum()) > 0
    fast(**x)
    assert calls == [1, 1]  # the control: without hook or input gradient it is taken
