"""The SGD step folded into a wide Dense layer's backward (:func:`microexp.fast.dense.sgd_in_backward`, the
training loop's :func:`~microexp.train.loop.train_step`): the same parameters as the plain layers with the
optimiser's own step, to float rounding, for STCNN and FuseNet; and the cases it must leave to the optimiser."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microexp import precision as prec
from microexp.fast import dense, tune
from microexp.models.fusenet import IntermediateFuseNet
from microexp.models.stcnn import MicroExpSTCNN
from microexp.train.loop import train_step

SHAPE = (1, 21, 14, 14)


def _stcnn(fast: bool) -> MicroExpSTCNN:
    torch.manual_seed(0)
    return MicroExpSTCNN(3, SHAPE, kernel=(3, 3, 5), filters=16, dense=16, dropout=0.0, fast=fast)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense, "GEMV_MIN", 100)  # these small models' Dense layers count as wide
    monkeypatch.setattr(dense, "SGD_CHUNK", 300)  # several ragged work units


def _folded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = dense._sgd_backward
    monkeypatch.setattr(dense, "_sgd_backward", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("n,n_out,decay", [(8, 16, 0.0), (5, 7, 0.01), (1, 3, 0.5), (16, 9, 0.01), (29, 12, 0.0)])
def test_the_kernel_is_the_input_gradient_and_the_sgd_step(n: int, n_out: int, decay: float) -> None:
    gen = torch.Generator().manual_seed(n)
    x, g, w = torch.randn(n, 1000, generator=gen), torch.randn(n, n_out, generator=gen), torch.randn(n_out, 1000, generator=gen)
    before = w.clone()
    grad_x = dense._sgd_backward(g, x, w, 0.05, decay)
    torch.testing.assert_close(grad_x, g @ before, rtol=1e-5, atol=1e-5)
    expected = before - 0.05 * (g.t() @ x + decay * before)
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-5)
    assert (w - before).abs().max() > 0.01


def _steps(model: torch.nn.Module, batches: list, opt: torch.optim.Optimizer, lrs: list[float]) -> None:
    model.train()
    for (x, y), lr in zip(batches, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr  # a scheduler's change between steps reaches the folded step too
        train_step(model, opt, x, y)


def _assert_same_parameters(fast: torch.nn.Module, plain: torch.nn.Module, start: dict) -> None:
    for name, p in plain.state_dict().items():
        moved = float((p - start[name]).abs().max())
        assert moved > 0, name  # every parameter moved, so agreeing means something
        torch.testing.assert_close(fast.state_dict()[name], p, rtol=1e-4, atol=1e-3 * moved, msg=name)


@pytest.mark.parametrize("decay,candidate", [(0.0, "fused"), (0.01, "fused"), (0.01, "fused_mkl"), (0.01, "plain")])
def test_stcnn_five_steps_folded_equal_the_plain_layers_and_optimiser(decay: float, candidate: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(tune.CANDIDATES["linear_sgd"]["fp32"]) == {"fused", "fused_mkl", "plain"}  # each one tested here
    calls = _folded(monkeypatch)
    fast, plain = _stcnn(True), _stcnn(False)
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    batches = [({"clip": torch.randn(n, *SHAPE, generator=gen)}, torch.randint(0, 3, (n,), generator=gen))
               for n in (8, 16, 5, 8, 27)]
    lrs = [0.05, 0.05, 0.02, 0.02, 0.01]
    with tune.force(f"linear_sgd={candidate}"):
        for model in (fast, plain):
            _steps(model, batches, torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=decay), lrs)
    # every step of the fast model folded its Dense step (unless the separate step is forced); the plain model's none
    assert len(calls) == (0 if candidate == "plain" else 5)
    _assert_same_parameters(fast, plain, start)


def test_fusenet_five_steps_folded_equal_the_plain_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _folded(monkeypatch)
    shape = (1, 96, 8, 8)
    torch.manual_seed(0)
    fast = IntermediateFuseNet(3, shape, shape, dropout=0.0, profile="paper")
    plain = IntermediateFuseNet(3, shape, shape, dropout=0.0, fast=False, profile="paper")
    plain.load_state_dict(fast.state_dict())
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    batches = [({"eyes": torch.randn(4, *shape, generator=gen), "mouth": torch.randn(4, *shape, generator=gen)},
                torch.tensor([0, 2, 1, 1])) for _ in range(5)]
    for model in (fast, plain):
        _steps(model, batches, torch.optim.SGD(model.parameters(), lr=0.01), [0.01] * 5)
    assert len(calls) == 5
    _assert_same_parameters(fast, plain, start)


@pytest.mark.parametrize("case", ["momentum", "adam", "batch-33", "grad-held", "forced-plain", "bf16-linear"])
def test_what_the_optimiser_must_step_itself_is_not_folded(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _folded(monkeypatch)
    model = _stcnn(True).train()
    n = 33 if case == "batch-33" else 8
    gen = torch.Generator().manual_seed(2)
    x, y = {"clip": torch.randn(n, *SHAPE, generator=gen)}, torch.randint(0, 3, (n,), generator=gen)
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if case == "momentum"
           else torch.optim.Adam(model.parameters()) if case == "adam" else torch.optim.SGD(model.parameters(), lr=0.01))
    spec = {"forced-plain": "linear_sgd=plain", "bf16-linear": "linear=bf16"}.get(case, "linear_sgd=fused")
    with tune.force(spec), dense.sgd_in_backward(opt), prec.autocast("bf16" if case == "bf16-linear" else "fp32"):
        if case == "grad-held":
            model.fc1.weight.grad = torch.zeros_like(model.fc1.weight)
        loss = F.cross_entropy(model(**x).float(), y)
    loss.backward()
    assert calls == []
    assert model.fc1.weight.grad is not None  # left to opt.step()


def test_the_folded_weight_cannot_be_backpropagated_through_twice() -> None:
    model = _stcnn(True).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(2, *SHAPE), torch.tensor([0, 1])
    with dense.sgd_in_backward(opt):
        loss = F.cross_entropy(model(clip=x), y)
    loss.backward(retain_graph=True)
    assert model.fc1.weight.grad is None
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bf16_training_folds_the_step_with_the_separate_steps_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the bf16 precision the Dense layer's arithmetic is fp32 either way, so folding the step changes
    nothing but rounding: the same parameters as the optimiser's own step after three bf16 steps."""
    calls = _folded(monkeypatch)
    gen = torch.Generator().manual_seed(3)
    batches = [({"clip": torch.randn(8, *SHAPE, generator=gen)}, torch.randint(0, 3, (8,), generator=gen))
               for _ in range(3)]
    models = {}
    for candidate in ("fused", "plain"):
        model = _stcnn(True).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with tune.force(f"linear=stream,linear_sgd={candidate}"):
            for x, y in batches:
                train_step(model, opt, x, y, precision="bf16")
        models[candidate] = model
    assert len(calls) == 3
    start = _stcnn(True).state_dict()
    _assert_same_parameters(models["fused"], models["plain"], start)
