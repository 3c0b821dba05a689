"""evaluate end to end on a small tree whose class is a moving blob, and bad input through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from microexp.cli import main
from microexp.config import RunConfig
from microexp.train.evaluate import evaluate

SMALL = ["--frames", "20", "--size", "32", "--no-progress"]


def _config(root: Path, **kw) -> RunConfig:
    base = RunConfig(dataset="plain", root=str(root), protocol="kfold", folds=3,
                     preprocess={"frames": 20, "selection": "whole",
                                 "streams": [{"name": "clip", "region": "face", "size": [32, 32], "kind": "raw"}]})
    return base.with_overrides([f"{k}={v}" for k, v in kw.items()])


def test_run_directory_contents_and_metrics(blob_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = evaluate(_config(blob_tree, **{"train.epochs": 4}), out=out, progress=False, log=lambda _m: None)
    for name in ("config.yaml", "metrics.json", "predictions.csv", "history.csv", "excluded.csv"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "seed0-fold1.safetensors", "seed0-fold2.safetensors", "seed0-fold3.safetensors"]
    m = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "uf1", "uar", "confusion", "per_class", "per_subject", "epoch_policy", "seeds"):
        assert key in m
    assert m["epoch_policy"] == {**m["epoch_policy"], "name": "fixed", "leaky": False, "chosen_epochs": [4]}
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 72 and set(preds.fold) == {"fold1", "fold2", "fold3"}
    assert sum(sum(r) for r in m["confusion"]) == 72
    # the blob's direction is trivially learnable: near-perfect across subjects
    assert m["uf1"] > 0.9 and result.metrics["uar"] > 0.9
    # the saved configuration reproduces the run exactly
    again = evaluate(RunConfig.from_yaml(out / "config.yaml"), progress=False)
    assert again.metrics["uf1"] == m["uf1"] and again.predictions["p_up"].tolist() == preds["p_up"].tolist()


def test_shuffled_labels_score_at_chance_and_real_labels_do_not(blob_tree: Path) -> None:
    result = evaluate(_config(blob_tree, control="shuffle", **{"train.epochs": 4}), progress=False)
    assert result.metrics["uar"] > 0.9
    assert result.metrics["control"]["uar"] < 0.5  # 3 classes: chance 0.33


def test_validation_and_test_peek_policies_are_labelled(blob_tree: Path) -> None:
    val = evaluate(_config(blob_tree, **{"train.epochs": 3, "train.epoch_policy": "validation"}), progress=False)
    assert val.metrics["epoch_policy"]["leaky"] is False and "val_uf1" in val.history.columns
    assert "test_uf1" not in val.history.columns
    peek = evaluate(_config(blob_tree, **{"train.epochs": 3, "train.epoch_policy": "test-peek"}), progress=False)
    assert peek.metrics["epoch_policy"]["leaky"] is True and "test_uf1" in peek.history.columns


def test_cli_evaluate_prints_results(blob_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--dataset", "plain", "--root", str(blob_tree), "--protocol", "holdout",
                 "--epochs", "2", "--out", str(tmp_path / "r"), *SMALL])
    out = capsys.readouterr().out
    assert code == 0 and "UF1" in out and "UAR" in out and "holdout" in out


def _one_line_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    code = main(["evaluate", *args, "--epochs", "1", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_input_is_one_line_naming_the_problem(blob_tree: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing"
    assert str(missing) in _one_line_error(capsys, ["--dataset", "plain", "--root", str(missing)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: empty folder" in _one_line_error(capsys, ["--dataset", "plain", "--root", str(empty)])
    tree = tmp_path / "tree"
    shutil.copytree(blob_tree, tree)
    shutil.rmtree(tree / "s02" / "none1")
    (tree / "s02" / "none1").mkdir()
    assert "s02/none1: clip folder has no frames" in _one_line_error(
        capsys, ["--dataset", "plain", "--root", str(tree)])
    err = _one_line_error(capsys, ["--dataset", "plain", "--root", str(blob_tree), "--model", "nosuchnet"])
    assert "unknown model 'nosuchnet'" in err and "stcnn" in err
    assert "unknown dataset 'casme9'" in _one_line_error(capsys, ["--dataset", "casme9", "--root", str(blob_tree)])


def test_console_script_exit_code_on_bad_root(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "microexp", "evaluate", "--dataset", "plain", "--root",
                           str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("does not exist")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_scikit_learn_baseline_trains_through_evaluate(blob_tree: Path, tmp_path: Path) -> None:
    """LBP-TOP + linear SVM (kind=sklearn) goes through the same protocol, metrics and run directory."""
    config = RunConfig(dataset="plain", root=str(blob_tree), model="lbptop-svm", protocol="kfold", folds=3,
                       control="shuffle",
                       preprocess={"frames": 12, "selection": "whole",
                                   "streams": [{"name": "clip", "region": "face", "size": [32, 32], "kind": "raw"}]},
                       model_params={"grid": [2, 2]})
    result = evaluate(config, out=tmp_path / "run", progress=False, log=lambda _m: None)
    assert result.metrics["uar"] > 0.8 and result.metrics["control"]["uar"] < 0.5
    assert len(list((tmp_path / "run" / "checkpoints").glob("*.joblib"))) == 3
    assert main(["predict", str(blob_tree / "s00" / "up0"), "--run", str(tmp_path / "run")]) == 2


def test_evaluate_fills_and_reuses_the_preprocessing_cache(blob_tree: Path, tmp_path: Path, monkeypatch) -> None:
    import microexp.preprocess.pipeline as pipeline

    monkeypatch.setenv("MICROEXP_CACHE", str(tmp_path / "cache"))
    config = _config(blob_tree, **{"train.epochs": 1, "preprocess.frames": 18})
    first = evaluate(config, progress=False)
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 72

    def no_work(*_a, **_k):
        raise AssertionError("a cached clip was preprocessed again")

    monkeypatch.setattr(pipeline, "preprocess_clip", no_work)
    second = evaluate(config, progress=False)
    assert second.metrics["uf1"] == first.metrics["uf1"]
