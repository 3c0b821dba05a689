"""Typed configuration: values from YAML, ``--set`` and CLI options are coerced and checked when the configuration
is built, and bad ones are one line naming the key and the value, exit 2, before any data is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microexp.cli import main
from microexp.config import RunConfig, TrainConfig
from microexp.contract.values import load_yaml
from microexp.errors import ConfigError
from microexp.preprocess.config import PreprocessConfig


def test_exponent_numbers_from_set_and_yaml_are_floats(tmp_path: Path) -> None:
    c = RunConfig().with_overrides(["train.lr=1e-3", "train.weight_decay=5e-4", "model_params.eps=1E-5",
                                    "train.momentum=0.9"])
    assert c.train.lr == 0.001 and isinstance(c.train.lr, float)
    assert c.train.weight_decay == 0.0005 and c.train.momentum == 0.9
    assert c.model_params == {"eps": 1e-5}  # untyped values read as YAML 1.2 numbers too
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5.0e-4\n  epochs: '12'\nfolds: 4\n")
    loaded = RunConfig.from_yaml(path)
    assert (loaded.train.lr, loaded.train.weight_decay, loaded.train.epochs, loaded.folds) == (0.001, 0.0005, 12, 4)
    assert TrainConfig(lr="2e-2").lr == 0.02  # type: ignore[arg-type]  # coerced on construction too
    assert load_yaml("[1e-3, 1e2, -5E+1, 1.5, 7, abc, 1e]") == [0.001, 100.0, -50.0, 1.5, 7, "abc", "1e"]


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=abc", "train.lr='abc' is not a number"),
    ("train.lr=0", "train.lr=0.0 must be > 0"),
    ("train.lr=.nan", "train.lr=nan is not a finite number"),
    ("train.weight_decay=-1e-4", "train.weight_decay=-0.0001 must be >= 0"),
    ("train.momentum=1", "train.momentum=1.0 must be in [0, 1)"),
    ("train.epochs=1.5", "train.epochs=1.5 is not an integer"),
    ("train.epochs=0", "train.epochs=0 and train.batch_size=8 must be >= 1"),
    ("train.batch_size=eight", "train.batch_size='eight' is not an integer"),
    ("train.patience=0", "train.patience=0 must be >= 1"),
    ("train.device=gpu", "train.device='gpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ("folds=1", "folds=1 must be at least 2"),
    ("folds=0", "folds=0 must be at least 2"),
    ("folds=-2", "folds=-2 must be at least 2"),
    ("folds=two", "folds='two' is not an integer"),
    ("seeds=[]", "seeds=[] is empty"),
    ("seeds=3", "seeds=3 is not a list"),
    ("seeds=[0, 0]", "seeds=[0, 0] must be distinct and >= 0"),
    ("seeds=[a]", "seeds[0]='a' is not an integer"),
    ("test_size=1.5", "test_size=1.5 must be in (0, 1)"),
    ("cache=maybe", "cache='maybe' is not true or false"),
    ("preprocess_workers=0", "preprocess_workers=0 must be at least 1"),
    ("model_params=3", "model_params=3 is not a mapping"),
    ("dataset=[a, b]", "dataset=['a', 'b'] is not a string"),
    ("train=5", "train=5 is not a mapping"),
    ("nosuch=1", "unknown option(s) ['nosuch']"),
    ("train.lr=[", "the value is not valid YAML"),
])
def test_bad_values_are_one_config_error_naming_key_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides([override])
    assert message in str(err.value)


@pytest.mark.parametrize(("d", "message"), [
    ({"frames": "x"}, "preprocess.frames='x' is not an integer"),
    ({"frames": 2.5}, "preprocess.frames=2.5 is not an integer"),
    ({"window": [1]}, "preprocess.window=[1] needs 2 values"),
    ({"flow_size": "big"}, "preprocess.flow_size='big' is not an integer"),
    ({"streams": [{"name": "c", "size": [8, "y"]}]}, "preprocess.streams[c].size[1]='y' is not an integer"),
])
def test_bad_preprocessing_values_name_key_and_value(d: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        PreprocessConfig.from_dict(d)
    assert message in str(err.value)


def test_preprocessing_values_are_coerced() -> None:
    p = PreprocessConfig.from_dict({"frames": "12", "flow_size": 64.0, "window": ["1", 5],
                                    "streams": [{"name": "clip", "size": 32}]})
    assert (p.frames, p.flow_size, p.window, p.streams[0].size) == (12, 64, (1, 5), (32, 32))


def test_old_workers_key_loads_as_preprocess_workers(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("dataset: plain\nworkers: 3\n")
    old = RunConfig.from_yaml(path)
    assert old.preprocess_workers == 3
    old.to_yaml(tmp_path / "new.yaml")
    text = (tmp_path / "new.yaml").read_text()
    assert "preprocess_workers: 3" in text and "\nworkers:" not in text
    assert RunConfig().with_overrides(["workers=2"]).preprocess_workers == 2
    with pytest.raises(ConfigError, match="'workers' is the old name of 'preprocess_workers'"):
        RunConfig.from_dict({"workers": 2, "preprocess_workers": 4})


def test_cuda_without_cuda_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from microexp.train.loop import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"train.device='{device}': CUDA is not available"):
            TrainConfig(device=device).check_device()
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(device)
    TrainConfig(device="cpu").check_device()
    assert resolve_device("auto").type == "cpu"


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (argv, captured.out, err)
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


@pytest.mark.parametrize(("options", "message"), [
    (["--set", "train.lr=abc"], "train.lr='abc' is not a number"),
    (["--set", "train.weight_decay=x"], "train.weight_decay='x' is not a number"),
    (["--folds", "1"], "folds=1 must be at least 2"),
    (["--folds", "0"], "folds=0 must be at least 2"),
    (["--folds", "-2"], "folds=-2 must be at least 2"),
    (["--seeds", "0"], "--seeds=0 must be at least 1"),
    (["--seeds", "-1"], "--seeds=-1 must be at least 1"),
    (["--epochs", "0"], "train.epochs=0"),
    (["--lr", "-0.1"], "train.lr=-0.1 must be > 0"),
    (["--device", "gpu"], "train.device='gpu' is not one of"),
    (["--frames", "0"], "preprocess.frames=0 must be positive"),
    (["--size", "0"], "--size=0 must be at least 1"),
    (["--preprocess-workers", "0"], "preprocess_workers=0 must be at least 1"),
    (["--set", "preprocess.frames=many"], "preprocess.frames='many' is not an integer"),
])
def test_evaluate_refuses_bad_numbers_before_reading_data(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          options: list[str], message: str) -> None:
    # the root does not exist: had the configuration been checked later, the error would name the root
    err = _cli_error(capsys, ["evaluate", "--dataset", "plain", "--root", str(tmp_path / "none"), *options])
    assert err.startswith("microexp evaluate: error: ") and message in err


def test_evaluate_device_cuda_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _cli_error(capsys, ["evaluate", "--dataset", "plain", "--root", str(tmp_path / "none"),
                              "--device", "cuda"])
    assert "train.device='cuda': CUDA is not available on this machine" in err


def test_sweep_grid_of_exponent_floats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from microexp.train.sweep import parse_grid, run_sweep

    grid = parse_grid(["train.lr=[1e-3,1e-2]", "train.weight_decay=5e-4"])
    assert grid == {"train.lr": [0.001, 0.01], "train.weight_decay": [0.0005]}
    calls = []

    def never(*_a: object, **_k: object) -> None:
        calls.append(1)
        raise AssertionError("a point ran although a later one is invalid")

    with pytest.raises(ConfigError, match="train.lr='abc' is not a number"):
        run_sweep(RunConfig(), {"train.lr": [0.01, "abc"]}, evaluate_fn=never, log=lambda _m: None)
    assert calls == []
    err = _cli_error(capsys, ["sweep", "--dataset", "plain", "--root", str(tmp_path / "none"),
                              "--grid", "train.lr=[1e-3,abc]"])
    assert "train.lr='abc' is not a number" in err
    err = _cli_error(capsys, ["sweep", "--dataset", "plain", "--root", str(tmp_path / "none"),
                              "--grid", "train.lr=[1e-3]", "--seeds", "0"])
    assert "--seeds=0 must be at least 1" in err


def test_demo_refuses_bad_folds_before_rendering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folds, message in (("1", "folds=1 must be at least 2"), ("20", "folds=20 needs at least as many subjects")):
        err = _cli_error(capsys, ["demo", "--out", str(tmp_path / "d"), "--folds", folds, "--no-progress"])
        assert message in err
    assert not (tmp_path / "d").exists()


def _tree(root: Path) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    rows = ["subject,clip,emotion,onset,apex,offset"]
    for c in range(2):
        folder = root / "s1" / f"c{c}"
        folder.mkdir(parents=True)
        for k in range(1, 9):
            cv2.imwrite(str(folder / f"frame_{k:04d}.png"), rng.integers(0, 256, (24, 24), dtype=np.uint8))
        rows.append(f"s1,c{c},{('happiness', 'surprise')[c]},1,4,8")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def test_preprocess_takes_frames_size_and_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from microexp.cli.preprocess import resolve_config

    c = resolve_config(None, None, frames=6, size=20, overrides=["preprocess.normalise=none", "selection=whole",
                                                                 "window=[1, 5]"])
    assert (c.frames, c.normalise, c.selection, c.window, c.streams[0].size) == (6, "none", "whole", (1, 5), (20, 20))
    data = _tree(tmp_path / "data")
    args = ["preprocess", "--dataset", "plain", "--root", str(data), "--cache", str(tmp_path / "cache"),
            "--preprocess-workers", "1", "--no-progress", "--frames", "5", "--size", "12", "--set", "selection=whole",
            "--out", str(tmp_path / "o.npz")]
    assert main(args) == 0
    assert "stream clip: (2, 1, 5, 12, 12)" in capsys.readouterr().out
    assert np.load(tmp_path / "o.npz")["stream_clip"].shape == (2, 1, 5, 12, 12)
    base = ["preprocess", "--dataset", "plain", "--root", str(tmp_path / "none")]
    for options, message in ((["--set", "frames=abc"], "preprocess.frames='abc' is not an integer"),
                             (["--set", "nosuch=1"], "unknown preprocess option(s) ['nosuch']"),
                             (["--set", "frames"], "--set 'frames' is not KEY=VALUE"),
                             (["--set", "streams.size=3"], "give a whole preprocessing key"),
                             (["--size", "0"], "--size=0 must be at least 1"),
                             (["--preprocess-workers", "0"], "--workers=0 must be at least 1"),
                             (["--frames", "-1"], "preprocess.frames=-1 must be positive")):
        assert message in _cli_error(capsys, base + options)


def test_config_diff_compares_an_old_key_under_its_new_name() -> None:
    from microexp.config import config_diff

    new = RunConfig(preprocess_workers=3).to_dict()
    old = {("workers" if k == "preprocess_workers" else k): v for k, v in new.items()}
    assert config_diff(old, new) == []
    assert config_diff(old, RunConfig(preprocess_workers=2).to_dict()) == [("preprocess_workers", 3, 2)]
