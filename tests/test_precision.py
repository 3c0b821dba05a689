"""bf16 (``train.precision``, ``predict --precision``, :mod:`microexp.precision`): support detection, the autocast
and the fast path stepping aside under it, and parity: a trained model's bf16 predictions agree with its fp32 ones.

This machine's CPU may lack bf16 instructions; bf16 then runs emulated with the same rounding, so the parity
figures hold either way (only the speed differs, which ``microexp bench`` measures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _models_helpers import blob_clips
from microexp import precision as prec
from microexp.config import RunConfig, TrainConfig
from microexp.errors import ConfigError
from microexp.models.stcnn import MicroExpSTCNN
from microexp.train.loop import fit, predict_proba

INTEL_SPR = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_ZEN2 = "processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16\n"


def test_cpu_flags_read_from_the_first_flags_line() -> None:
    assert prec.cpu_flags(INTEL_SPR) == ["avx512_bf16", "amx_bf16"]
    assert prec.cpu_support(INTEL_SPR)["native"] is True
    assert prec.cpu_flags(EPYC_ZEN2) == []  # only the first processor's line counts
    assert prec.cpu_support(EPYC_ZEN2) == {"native": False, "flags": [], "how": "/proc/cpuinfo"}
    assert prec.cpu_flags("Features\t: fp asimd bf16\n") == []  # ARM's bf16 is not one of ours


def test_precision_names_are_checked_in_one_line() -> None:
    assert TrainConfig().precision == "fp32"
    assert TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match=r"^train.precision='fp16' is not one of \['fp32', 'bf16'\]$"):
        TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match=r"^train.precision='half'"):
        RunConfig().with_overrides(["train.precision=half"])
    assert RunConfig().with_overrides(["train.precision=bf16"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match=r"^train.precision=bf16 runs on cpu or cuda, not 'mps' \(use fp32\)$"):
        prec.check("bf16", "mps", "train.precision")


def test_emulated_bf16_gets_a_note_and_native_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert prec.check("fp32", "cpu") is None
    monkeypatch.setattr(prec, "cpu_support", lambda cpuinfo=None: {"native": False, "flags": [], "how": "x"})
    assert prec.check("bf16", "cpu", "--precision") == (
        "--precision=bf16: this CPU has no bf16 instructions (AVX-512 BF16 or AMX); bf16 runs emulated, "
        "slower than fp32")
    monkeypatch.setattr(prec, "cpu_support", lambda cpuinfo=None: {"native": True, "flags": ["amx_bf16"], "how": "x"})
    assert prec.check("bf16", "cpu") is None


def test_autocast_computes_in_bf16_and_the_fast_path_runs_it() -> None:
    from microexp.fast.conv import usable

    torch.manual_seed(0)
    model = MicroExpSTCNN(3, (1, 18, 12, 12), kernel=(3, 3, 3), filters=4, dense=8).eval()
    x = torch.randn(4, 1, 18, 12, 12)
    with torch.no_grad():
        ref = model(clip=x)  # fp32, fast path
        with prec.autocast("bf16"):
            assert usable(x, model.conv.weight)  # the fast path runs bf16 itself (fp32 master weights)
            low = model(clip=x)
        with prec.autocast("bf16"), torch.autocast("cpu", dtype=torch.float16):
            assert not usable(x, model.conv.weight)  # any other autocast: the plain layers
        with prec.autocast("fp32"):
            assert usable(x, model.conv.weight)
    assert ref.dtype == torch.float32 and low.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: close to fp32, and not equal (it really ran in bf16)
    assert torch.allclose(low.float(), ref, atol=0.05, rtol=0.05)
    assert not torch.equal(low.float(), ref)


@pytest.fixture(scope="module")
def trained() -> tuple[MicroExpSTCNN, dict[str, torch.Tensor], torch.Tensor]:
    """A small STCNN trained in fp32 on 3-class moving-blob clips; 600 clips to score."""
    clips, y = blob_clips(660, 3, (12, 16, 16), seed=0)
    inputs, labels = {"clip": torch.from_numpy(clips)}, torch.from_numpy(y).long()
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, (1, 12, 16, 16), kernel=(3, 3, 5), filters=8, dense=32)
    fit(model, inputs, labels, np.arange(60), TrainConfig(epochs=12, optimizer="adam", lr=1e-3, device="cpu"),
        seed=0, n_classes=3)
    return model, inputs, labels


def test_bf16_predictions_of_a_trained_model_agree_with_fp32(trained) -> None:
    model, inputs, labels = trained
    idx = np.arange(60, 660)
    p32 = predict_proba(model, inputs, idx, 64)
    p16 = predict_proba(model, inputs, idx, 64, precision="bf16")
    assert p32.shape == p16.shape == (600, 3)
    assert (p32.argmax(1) == labels[idx].numpy()).mean() > 0.8  # a real model, not a constant one
    agree = (p32.argmax(1) == p16.argmax(1)).mean()
    assert agree >= 0.99
    diff = np.abs(p32 - p16)
    assert 0 < diff.max() < 0.05  # bf16 did run (not bit-identical), and stays close


def test_training_in_bf16_learns_and_scores_in_bf16(trained) -> None:
    fp32_model, inputs, labels = trained
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, (1, 12, 16, 16), kernel=(3, 3, 5), filters=8, dense=32)
    result = fit(model, inputs, labels, np.arange(60),
                 TrainConfig(epochs=12, optimizer="adam", lr=1e-3, device="cpu", precision="bf16"),
                 seed=0, n_classes=3)
    assert len(result.history) == 12 and prec.of(model) == "bf16" and prec.of(fp32_model) == "fp32"
    idx = np.arange(60, 660)
    p = predict_proba(model, inputs, idx, 64)  # in the precision it was trained in
    assert np.array_equal(p, predict_proba(model, inputs, idx, 64, precision="bf16"))
    assert not np.array_equal(p, predict_proba(model, inputs, idx, 64, precision="fp32"))
    acc16 = (p.argmax(1) == labels[idx].numpy()).mean()
    acc32 = (predict_proba(fp32_model, inputs, idx, 64).argmax(1) == labels[idx].numpy()).mean()
    assert acc16 > 0.8 and abs(acc16 - acc32) < 0.05
    # weights stay fp32 (autocast keeps fp32 master weights)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bench_precision_says_when_the_cpu_lacks_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from microexp.bench import precision as bench_prec

    monkeypatch.setattr(bench_prec, "cpu_support", lambda cpuinfo=None: {"native": False, "flags": [], "how": "x"})
    out = bench_prec.bench_precision(quick=True)
    assert out["supported"] is False and out["precision"] == "bf16" and "no bf16 instructions" in out["note"]
    assert "train" not in out


def test_bench_precision_measures_every_variant(one_torch_thread) -> None:
    from microexp.bench.precision import bench_precision

    out = bench_precision(quick=True, repeats=2, warmup=1, force=True)
    assert set(out["train"]["clips_per_s"]) == {"fp32_fast", "bf16", "bf16_plain"}
    assert set(out["infer_single"]["ms"]) == {"fp32_fast", "bf16", "bf16_plain"}
    assert out["train"]["ratios"]["fp32_fast"] == 1.0 and out["infer_batch"]["batch"] == 2
    assert out["train"]["ratio_range"]["fp32_fast"] == [1.0, 1.0] and out["train"]["repeats"] == 2
    for k in ("train", "infer_batch", "infer_single"):  # every figure with its spread
        lo, hi = out["speedup_range"][k]
        assert lo <= hi and out["speedup_vs_fp32_fast"][k] == out[k]["ratios"]["bf16"]
        assert all(a <= b for a, b in out[k]["ms_range"].values())


def test_predict_cli_precision(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """predict --precision bf16 on a tiny run gives the fp32 labels; --onnx with bf16 is one line, exit 2."""
    import json

    from conftest import tiny_config, write_blob_tree
    from microexp.cli import main
    from microexp.train.evaluate import evaluate

    root = write_blob_tree(tmp_path / "tree", subjects=3, per_class=2, frames=12, size=24)
    run = tmp_path / "run"
    evaluate(tiny_config(root, **{"train.epochs": 1}), out=run, progress=False, log=lambda _m: None)
    clip = sorted(p for p in (root / "s00").iterdir() if p.is_dir())[0]
    outs = {}
    for precision in ("fp32", "bf16"):
        code = main(["predict", str(clip), "--run", str(run), "--face", "none", "--window", "10", "--json",
                     "--no-progress", "--precision", precision])
        assert code == 0
        captured = capsys.readouterr()
        outs[precision] = json.loads(captured.out)
        if precision == "bf16" and not prec.cpu_support()["native"]:  # emulated: said once, on stderr
            assert "microexp: note: --precision=bf16: this CPU has no bf16 instructions" in captured.err
    w32, w16 = outs["fp32"]["windows"], outs["bf16"]["windows"]
    assert len(w32) == len(w16) > 0
    assert [w["label"] for w in w32] == [w["label"] for w in w16]
    for a, b in zip(w32, w16, strict=True):
        for k, v in a["probabilities"].items():
            assert b["probabilities"][k] == pytest.approx(v, abs=0.03)
    assert main(["predict", str(clip), "--onnx", str(tmp_path / "m.onnx"), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["microexp predict: error: --precision bf16 applies to PyTorch checkpoints (--run), not to --onnx"]
