"""The fast path's autotuner (:mod:`microexp.fast.tune`): every candidate forced in turn gives the plain layers'
outputs, loss and gradients (fp32 exactly to rounding, bf16 to bf16's precision); choices are measured once, kept
in the cache under the machine's key and reused; ``MICROEXP_TUNE`` forces or switches off."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from microexp import precision as prec
from microexp.errors import ConfigError
from microexp.fast import conv, dense, tune
from microexp.models.stcnn import MicroExpSTCNN

SHAPE = (1, 21, 14, 14)


def _model(fast: bool) -> MicroExpSTCNN:
    torch.manual_seed(0)
    return MicroExpSTCNN(3, SHAPE, kernel=(3, 3, 5), filters=16, dense=16, dropout=0.0, fast=fast)


def _step(model: MicroExpSTCNN, x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[torch.Tensor, ...]:
    model.zero_grad(set_to_none=True)
    with prec.autocast(precision):
        out = model(clip=x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
    loss.backward()
    return out.float().detach(), loss.detach(), *(p.grad.clone() for p in model.parameters())


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, *SHAPE, generator=gen), torch.randint(0, 3, (5,), generator=gen)
    return x, y, _step(_model(False), x, y, "fp32")


@pytest.mark.parametrize("conv_c,linear_c", list(itertools.product(tune.CANDIDATES["conv_relu_pool"]["fp32"],
                                                                    tune.CANDIDATES["linear"]["fp32"])))
def test_each_fp32_candidate_equals_the_plain_layers(data, conv_c: str, linear_c: str) -> None:  # type: ignore[no-untyped-def]
    x, y, ref = data
    model = _model(True)
    with tune.force(f"conv_relu_pool={conv_c},linear={linear_c}"):
        got = _step(model, x, y, "fp32")
        with torch.no_grad():
            infer = model.eval()(clip=x)
    for a, b in zip(got, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (conv_c, linear_c, (a - b).abs().max())
    assert torch.allclose(infer, ref[0], rtol=1e-4, atol=1e-5)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("conv_c,linear_c", list(itertools.product(tune.CANDIDATES["conv_relu_pool"]["bf16"],
                                                                    tune.CANDIDATES["linear"]["bf16"])))
def test_each_bf16_candidate_is_as_close_to_fp32_as_autocast(data, conv_c: str, linear_c: str) -> None:  # type: ignore[no-untyped-def]
    """bf16 moves results (the conv weight gradient ~14 % here: rounding changes which element a max-pool window
    picks), so each candidate is held to the plain layers under autocast, today's bf16: no further from fp32."""
    x, y, ref = data
    autocast = _step(_model(False), x, y, "bf16")
    model = _model(True)
    with tune.force(f"conv_relu_pool={conv_c},linear={linear_c}"):
        got = _step(model, x, y, "bf16")
    for name, g, a, r in zip(["out", "loss", *dict(model.named_parameters())], got, autocast, ref, strict=True):
        assert _rel(g, r) <= 1.25 * _rel(a, r) + 2e-3, (conv_c, linear_c, name, _rel(g, r), _rel(a, r))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert 0 < _rel(got[0], ref[0]) < 0.02  # it really ran in bf16, and close


def test_bf16_inference_keeps_one_bf16_copy_of_the_weights_until_they_change() -> None:
    w, b, x = torch.randn(4, 70_000), torch.zeros(4), torch.randn(1, 70_000)
    with torch.no_grad(), tune.force("linear=bf16"), prec.autocast("bf16"):
        first = dense.linear(x, w, b)
        copy = dense.bf16_weight(w)
        assert dense.bf16_weight(w) is copy
        w.add_(1.0)  # an update moves the version counter: a fresh copy
        assert dense.bf16_weight(w) is not copy
        assert not torch.allclose(dense.linear(x, w, b), first)
    ref = x @ w.t()
    assert torch.allclose(dense.linear(x, w, b), ref, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("rows", [1, 3, 8, 11])
def test_stream_bf16_streams_the_bf16_copy_against_the_fp32_input(rows: int) -> None:
    """``stream_bf16`` in inference: the kept bf16 weights, widened exactly, times the fp32 input (the batch-1 GEMV
    and ``rows8_dot``, an odd number of outputs and columns past the last 16), against float64 arithmetic on the
    same bf16 weights; it is not the fp32 product (so the bf16 copy was read), and training runs ``stream``."""
    gen = torch.Generator().manual_seed(8)
    w, b = torch.randn(5, 70_013, generator=gen), torch.randn(5, generator=gen)
    x = torch.randn(rows, 70_013, generator=gen)
    with torch.no_grad(), tune.force("linear=stream_bf16"), prec.autocast("bf16"):
        got = dense.linear(x, w, b)
    ref = (x.double() @ w.to(torch.bfloat16).double().t() + b.double()).float()
    assert got.dtype == torch.float32 and got.shape == (rows, 5)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-4)
    assert (got - (x @ w.t() + b)).abs().max() > 1e-2  # bf16 weights: ~3 significant digits
    wt = w.clone().requires_grad_()
    with tune.force("linear=stream_bf16"), prec.autocast("bf16"):
        out = dense.linear(x, wt, b)
    out.sum().backward()
    torch.testing.assert_close(out, x @ w.t() + b, rtol=1e-4, atol=1e-3)  # training: fp32, as stream
    torch.testing.assert_close(wt.grad, torch.ones(rows, 5).t() @ x)


def test_choices_are_measured_once_stored_under_the_machine_key_and_reused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MICROEXP_TUNE_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.delenv("MICROEXP_TUNE")
    monkeypatch.setattr(tune, "LOAD_PER_CORE", 1e9)  # stored whatever this shared machine's load
    tune.clear_memory()
    lines: list[str] = []
    monkeypatch.setattr(tune, "log", lines.append)
    calls: dict[str, int] = {}
    sleep = {"fused": 0.0, "fused1": 0.03, "fused4": 0.03, "fused_half": 0.03, "wino": 0.03, "wino_quarter": 0.03,
             "wino_half": 0.03, "wino_f4": 0.03, "wino_fused_quarter": 0.03, "wino_fused_half": 0.03,
             "onednn_cl": 0.02, "plain": 0.01}

    def make(c: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            calls[c] = calls.get(c, 0) + 1
            torch.empty(1)
            import time
            time.sleep(sleep[c])
        return run

    shapes = ((8, 1, 96, 64, 64), (32, 1, 15, 3, 3))
    assert tune.choose("conv_relu_pool", True, shapes, make) == "fused"
    assert calls == {c: 1 + tune.REPEATS for c in sleep}  # one warm-up and the timed runs each, nothing more
    assert any("tuning conv_relu_pool" in m for m in lines) and any("tuned conv_relu_pool: fused" in m for m in lines)
    stored = json.loads((tmp_path / "tune.json").read_text())
    (k, rec), = stored.items()
    m = tune.machine()
    assert k.startswith(f"{m['cpu']}|{m['flags_sha1']}|torch {torch.__version__}|") and "8x1x96x64x64" in k
    assert rec["winner"] == "fused" and rec["speedup_vs_plain"] > 1 and set(rec["seconds"]) == set(sleep)
    # this process remembers it, and a new process (memory cleared) reads it back: nothing is timed again
    tune.clear_memory()
    assert tune.choose("conv_relu_pool", True, shapes, make) == "fused"
    assert calls == {c: 1 + tune.REPEATS for c in sleep}
    assert tune.decisions[k]["winner"] == "fused"
    # another shape is another key; leaving the default takes a confirmation round of the two
    sleep.update(fused=0.03)
    assert tune.choose("conv_relu_pool", True, ((1, 1, 96, 64, 64), shapes[1]), make) == "plain"
    confirm = 2 * (1 + tune.REPEATS) + 1 + tune.CONFIRM_REPEATS  # onednn_cl also beat fused: confirmed too
    assert calls == {"fused": confirm, "onednn_cl": confirm, "fused1": 2 * (1 + tune.REPEATS),
                     "fused4": 2 * (1 + tune.REPEATS), "fused_half": 2 * (1 + tune.REPEATS),
                     "wino": 2 * (1 + tune.REPEATS), "wino_quarter": 2 * (1 + tune.REPEATS),
                     "wino_half": 2 * (1 + tune.REPEATS), "wino_f4": 2 * (1 + tune.REPEATS),
                     "wino_fused_quarter": 2 * (1 + tune.REPEATS), "wino_fused_half": 2 * (1 + tune.REPEATS),
                     "plain": confirm}
    # a challenger other than plain: the confirmation round times the default, it and plain
    sleep.update(fused=0.03, onednn_cl=0.0, plain=0.015)
    assert tune.choose("conv_relu_pool", True, ((2, 1, 96, 64, 64), shapes[1]), make) == "onednn_cl"
    assert calls["plain"] == 3 * (1 + tune.REPEATS) + 2 * (1 + tune.CONFIRM_REPEATS)
    # never better than fused: not confirmed
    assert calls["fused1"] == calls["fused4"] == calls["fused_half"] == calls["wino"] == 3 * (1 + tune.REPEATS)
    assert len(json.loads((tmp_path / "tune.json").read_text())) == 3
    # measured on an overloaded machine: used by this process, not written to the cache
    monkeypatch.setattr(tune, "LOAD_PER_CORE", 0.0)
    assert tune.choose("conv_relu_pool", False, shapes, make) == "onednn_cl"
    assert len(json.loads((tmp_path / "tune.json").read_text())) == 3 and "kept for this process only" in lines[-1]
    assert tune.choose("conv_relu_pool", False, shapes, make) == "onednn_cl"  # remembered in memory
    tune.clear_memory()


def test_pick_keeps_the_default_unless_clearly_beaten() -> None:
    assert tune.pick({"fused": [1.0], "onednn_cl": [0.97], "plain": [2.0]}, "fused") == "fused"
    assert tune.pick({"fused": [1.0], "onednn_cl": [0.9], "plain": [2.0]}, "fused") == "onednn_cl"
    assert tune.pick({"fused": [3.0], "onednn_cl": [2.5], "plain": [2.0]}, "fused") == "plain"
    assert tune.pick({"fast": [1.02], "bf16": [1.1], "plain": [1.0]}, "fast") == "plain"  # never slower than plain
    assert all("plain" in c for op in tune.CANDIDATES.values() for c in op.values())


def test_the_environment_variable_forces_or_switches_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MICROEXP_TUNE", "conv_relu_pool=onednn_cl")
    assert tune.forced("conv_relu_pool", "fp32") == "onednn_cl" and tune.forced("linear", "fp32") is None
    monkeypatch.setenv("MICROEXP_TUNE", "plain")
    assert tune.forced("linear", "bf16") == "plain"
    with tune.force("linear=bf16"):  # the innermost force wins
        assert tune.forced("linear", "bf16") == "bf16"
    monkeypatch.setenv("MICROEXP_TUNE", "off")
    assert tune.forced("conv_relu_pool", "bf16") == "fused" and tune.forced("linear", "fp32") == "fast"
    monkeypatch.setenv("MICROEXP_TUNE", "linear=bf16")
    with pytest.raises(ConfigError, match="linear has no candidate 'bf16' for fp32"):
        tune.forced("linear", "fp32")


def test_the_tuner_times_the_real_op_without_touching_the_model(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MICROEXP_TUNE_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.delenv("MICROEXP_TUNE")
    monkeypatch.setattr(tune, "log", lambda m: None)
    tune.clear_memory()
    model = _model(True)
    x = torch.randn(2, *SHAPE)
    model(clip=x).sum().backward()
    ops = {d["op"]: d for d in tune.decisions.values()}
    assert set(ops) == {"conv_relu_pool", "linear"} and all(d["mode"] == "train" for d in ops.values())
    ref = _model(False)
    ref(clip=x).sum().backward()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):  # tuning runs left no gradient behind
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5)
    tune.clear_memory()
    assert conv.usable(x, model.conv.weight)


def test_the_pooling_pass_reads_bf16_exactly_as_its_float32_widening() -> None:
    from microexp.fast import kernels

    gen = torch.Generator().manual_seed(3)
    pool, wp, c = 3, 4, 32
    out = torch.randn(6, 9, 12, c, generator=gen).to(torch.bfloat16)  # (rows, tu, wu, C): 2 pooled rows
    bias = torch.randn(c, generator=gen).numpy()
    res = {}
    for name, arr in (("bf16", out.view(torch.int16)), ("fp32", out.float())):
        pre, idx = torch.zeros(c, 3, 2 * wp), torch.zeros(c, 3, 2 * wp, dtype=torch.uint8)
        best, arg = torch.empty(wp * c + 16), torch.empty(wp * c + 16, dtype=torch.int32)
        kernels.pool_rows(arr.numpy(), 0, pool, wp, bias, pre.numpy(), idx.numpy(), True, best.numpy(), arg.numpy(),
                          np.empty(0, np.int32), 0)
        res[name] = (pre, idx)
    assert torch.equal(res["bf16"][0], res["fp32"][0]) and torch.equal(res["bf16"][1], res["fp32"][1])
    ref = torch.nn.functional.max_pool3d(out.float().permute(3, 1, 0, 2)[None], pool)[0]  # (C, tp, hp, wp)
    pre_act = ref + torch.from_numpy(bias).view(c, 1, 1, 1)
    assert torch.equal(res["bf16"][0].view(c, 3, 2, wp), pre_act.clamp_min(0))  # after the ReLU
    # the indices mark the outputs the ReLU blocked (the backward's mask)
    assert torch.equal(res["bf16"][1].view(c, 3, 2, wp) == kernels.BLOCKED, pre_act <= 0) and (pre_act <= 0).any()


def test_a_cached_choice_is_timed_again_when_the_op_gains_a_candidate(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MICROEXP_TUNE_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.delenv("MICROEXP_TUNE")
    monkeypatch.setattr(tune, "LOAD_PER_CORE", 1e9)
    monkeypatch.setattr(tune, "log", lambda m: None)
    tune.clear_memory()
    shapes = ((8, 345600), (128, 345600))
    k = tune.key("linear", False, "fp32", shapes)
    # a record from before the 'stream' candidate existed: its winner is still a candidate, but it never met stream
    (tmp_path / "tune.json").write_text(json.dumps({k: {"winner": "fast", "seconds": {"fast": 1.0, "plain": 1.1}}}))
    timed: list[str] = []

    def make(c: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            timed.append(c)
            import time
            time.sleep({"fast": 0.02, "stream": 0.0, "plain": 0.02}[c])
        return run

    assert tune.choose("linear", False, shapes, make) == "stream" and set(timed) == {"fast", "stream", "plain"}
    assert set(json.loads((tmp_path / "tune.json").read_text())[k]["seconds"]) == {"fast", "stream", "plain"}
    tune.clear_memory()


def test_a_lucky_first_round_does_not_hide_a_better_candidate(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """fused1 looks fastest in the first round only; fused4 also beat the default there: both are confirmed, and
    fused4, fastest over all the runs, is chosen (not the default, as when only the first-round winner was)."""
    import time

    monkeypatch.setenv("MICROEXP_TUNE_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.delenv("MICROEXP_TUNE")
    monkeypatch.setattr(tune, "log", lambda m: None)
    tune.clear_memory()
    calls = {"fused1": 0}

    def make(c: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            if c == "fused1":
                calls["fused1"] += 1
            lucky = c == "fused1" and calls["fused1"] <= 1 + tune.REPEATS
            time.sleep(0.0 if lucky else {"fused": 0.03, "fused1": 0.05, "fused4": 0.01}.get(c, 0.06))
        return run

    assert tune.choose("conv_relu_pool", False, ((3, 1, 30, 30, 30), (4, 1, 5, 3, 3), (3,)), make) == "fused4"
    tune.clear_memory()
