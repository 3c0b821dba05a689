"""Checkpoints (microexp.runs): safetensors files with the metadata inside (no pickle), bf16 / fp16 storage with
its loss measured on a trained run, the save_checkpoints policy, and older ``.pt`` runs that keep loading."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from microexp import runs
from microexp.cli import main
from microexp.config import RunConfig
from microexp.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def trained(blob_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds, save_checkpoints: predict (the lowest seed's fold models only)."""
    from microexp.train.evaluate import evaluate

    out = tmp_path_factory.mktemp("ckpt") / "run"
    evaluate(tiny_config(blob_tree, **{"train.epochs": 6, "seeds": "[0, 1]", "save_checkpoints": "predict"}),
             out=out, progress=False, log=lambda _m: None)
    return out


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 3))


def test_a_checkpoint_round_trips_through_one_safetensors_file(tmp_path: Path) -> None:
    net = _net()
    net(torch.randn(4, 2, 8, 8))  # BatchNorm's running stats and its int64 counter change
    data = {"model": "m", "model_params": {"kernel": (3, 3)}, "state_dict": net.state_dict(), "classes": ["a", "b"],
            "preprocess": {"frames": 10}, "normaliser": {"mean": {"clip": 0.5}, "scale": {"clip": 2.0}},
            "clip": None, "epoch": 7, "spotter": {"micro": {"k": 3, "scale": 1.5, "state_dict": net.state_dict()}}}
    path = runs.save_checkpoint(tmp_path / "c.safetensors", data)
    # the file is a safetensors file: an 8-byte header length, then a JSON header (no pickle anywhere)
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert json.loads(header["__metadata__"]["microexp"])["data"]["model"] == "m"
    assert b"\x80\x02" not in raw[:2] and not any((tmp_path).glob("*.tmp"))
    back = runs.load_checkpoint(path)
    assert back["model_params"] == {"kernel": [3, 3]} and back["clip"] is None and back["epoch"] == 7
    assert back["normaliser"] == data["normaliser"] and back["classes"] == ["a", "b"]
    for sd in (back["state_dict"], back["spotter"]["micro"]["state_dict"]):
        assert list(sd) == list(net.state_dict())
        for k, v in net.state_dict().items():
            assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
    assert back["state_dict"]["1.num_batches_tracked"].item() == 1
    assert back["spotter"]["micro"]["k"] == 3


def test_reduced_precision_halves_the_file_and_reads_back_as_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    big = {"model": "m", "state_dict": {"w": torch.randn(256, 256), "n": torch.tensor(5)}}
    sizes = {d: runs.save_checkpoint(tmp_path / f"{d}.safetensors", big, dtype=d).stat().st_size
             for d in runs.CHECKPOINT_DTYPES}
    assert 0.49 < sizes["bf16"] / sizes["fp32"] < 0.51 and abs(sizes["fp16"] - sizes["bf16"]) < 64
    w = big["state_dict"]["w"]
    for dtype, eps in (("bf16", 2.0 ** -8), ("fp16", 2.0 ** -11)):
        back = runs.load_checkpoint(tmp_path / f"{dtype}.safetensors", keys=("state_dict",))["state_dict"]
        assert back["w"].dtype == torch.float32 and back["n"].dtype == torch.int64 and back["n"].item() == 5
        rel = ((back["w"] - w).abs() / w.abs()).max().item()
        assert 0 < rel <= eps  # rounded (so the cast happened), and by no more than half a unit of the format


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    back = runs.load_checkpoint(runs.save_checkpoint(tmp_path / "t.safetensors", {"state_dict": {"a": w, "b": w}}),
                                keys=("state_dict",))["state_dict"]
    assert torch.equal(back["a"], w) and torch.equal(back["b"], w)


def test_save_checkpoints_predict_keeps_the_lowest_seed_only(trained: Path) -> None:
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == [
        "seed0-fold1.safetensors", "seed0-fold2.safetensors", "seed0-fold3.safetensors"]
    assert runs.read_config(trained)["save_checkpoints"] == "predict"
    # explain asked for a seed the policy did not keep: one line saying why
    with pytest.raises(DataError, match="seed1-fold1.safetensors: no such checkpoint .*predict, which keeps the "
                                        "lowest seed's only"):
        runs.load_checkpoint(runs.checkpoint_path(trained, 1, "fold1"))


def test_bf16_and_fp16_checkpoints_agree_with_fp32_on_a_trained_run(trained: Path, tmp_path: Path) -> None:
    """The measured loss of reduced-precision storage: the predicted class of every clip by every fold model,
    fp32 weights against the same weights stored in bf16 / fp16 (>= 99 % agreement; docs/bench.md)."""
    from microexp.data.registry import load_dataset
    from microexp.explain.saliency import clip_inputs, load_model

    config = RunConfig.from_yaml(trained / runs.CONFIG)
    records = load_dataset(config.dataset, Path(config.root), config.annotation, config.classes).records
    classes, agree, diff = {}, {"bf16": [], "fp16": []}, {"bf16": 0.0, "fp16": 0.0}
    for path in runs.checkpoint_files(trained):
        model, ckpt = load_model(path)
        x = {k: torch.cat([clip_inputs(r, ckpt)[k] for r in records]) for k in ("clip",)}
        with torch.no_grad():
            p32 = torch.softmax(model(**x), 1)
        classes[path.stem] = p32.argmax(1)
        for dtype in agree:
            small, _ = load_model(runs.save_checkpoint(tmp_path / dtype / path.name, ckpt, dtype=dtype))
            with torch.no_grad():
                p = torch.softmax(small(**x), 1)
            agree[dtype].append((p.argmax(1) == p32.argmax(1)).float())
            diff[dtype] = max(diff[dtype], (p - p32).abs().max().item())
    # the control: a trained model (more than one class predicted), and the cast changed the outputs
    assert all(len(set(c.tolist())) > 1 for c in classes.values())
    for dtype in agree:
        rate = torch.cat(agree[dtype]).mean().item()
        assert len(torch.cat(agree[dtype])) == 3 * len(records) == 216
        assert rate >= 0.99 and diff[dtype] > 0, (dtype, rate, diff[dtype])


def test_an_older_runs_pt_checkpoints_keep_loading(trained: Path, tmp_path: Path) -> None:
    from microexp.explain.saliency import load_model
    from microexp.predict import load

    old = tmp_path / "old"
    shutil.copytree(trained, old)
    for path in runs.checkpoint_files(old):
        torch.save(runs.load_checkpoint(path), path.with_suffix(".pt"))
        path.unlink()
    assert [p.name for p in runs.checkpoint_files(old)] == ["seed0-fold1.pt", "seed0-fold2.pt", "seed0-fold3.pt"]
    predictor = load(old)
    assert [c.name for c in predictor.checkpoints] == ["seed0-fold1", "seed0-fold2", "seed0-fold3"]
    # explain names the new file; the loader falls back to the old one beside it
    model, _ = load_model(runs.checkpoint_path(old, 0, "fold2"))
    new, _ = load_model(runs.checkpoint_path(trained, 0, "fold2"))
    for (k, a), b in zip(model.state_dict().items(), new.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_bad_checkpoints_and_settings_are_one_line(trained: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DataError, match=f"{garbage}: not a readable microexp checkpoint"):
        runs.load_checkpoint(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="not a readable microexp checkpoint .*without microexp metadata"):
        runs.load_checkpoint(foreign)
    for value, policy in ((True, "all"), (False, "none"), ("false", "none"), ("predict", "predict")):
        assert RunConfig(save_checkpoints=value).save_checkpoints == policy
    with pytest.raises(ConfigError, match=r"save_checkpoints='sometimes' is not one of all, predict, none"):
        RunConfig(save_checkpoints="sometimes")
    with pytest.raises(ConfigError, match=r"checkpoint_dtype='int8' is not one of fp32, bf16, fp16"):
        RunConfig(checkpoint_dtype="int8")
    code = main(["evaluate", "--dataset", "plain", "--root", str(tmp_path), "--set", "checkpoint_dtype=int8",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "checkpoint_dtype='int8'" in err, err
