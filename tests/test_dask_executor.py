"""Folds on a local Dask cluster (2 workers, loopback) give the same run as the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from microexp.cli import main
from microexp.config import RunConfig
from microexp.train.arrays import load_arrays, save_arrays
from microexp.train.dask_executor import DaskExecutor
from microexp.train.evaluate import fold_tasks, prepare, run_fold

SMALL = ["--frames", "20", "--size", "32", "--no-progress", "--protocol", "kfold", "--folds", "3", "--epochs", "1"]


def _numbers(path: Path) -> dict:
    m = json.loads(path.read_text())
    m.pop("seconds")  # wall time, the only field allowed to differ
    return m


def test_dask_run_writes_the_same_metrics_and_predictions_as_a_local_run(blob_tree: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    base = ["evaluate", "--dataset", "plain", "--root", str(blob_tree), *SMALL]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--out", str(tmp_path / "dask"), "--executor", "dask", "--workers", "2"]) == 0
    assert "UF1" in capsys.readouterr().out
    local, dask = _numbers(tmp_path / "local" / "metrics.json"), _numbers(tmp_path / "dask" / "metrics.json")
    assert local["n_folds"] == 3 and local["n_clips"] == 72
    assert dask == local  # exact: every task is seeded from itself, and torch's results here do not depend on threads
    for name in ("predictions.csv", "history.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / name), pd.read_csv(tmp_path / "local" / name))
    assert sorted(p.name for p in (tmp_path / "dask" / "checkpoints").iterdir()) == [
        "seed0-fold1.pt", "seed0-fold2.pt", "seed0-fold3.pt"]


def test_workers_reading_memory_mapped_files_match_in_process_folds(blob_tree: Path, tmp_path: Path) -> None:
    config = RunConfig(dataset="plain", root=str(blob_tree), protocol="kfold", folds=3, save_checkpoints=False,
                       preprocess={"frames": 20, "selection": "whole",
                                   "streams": [{"name": "clip", "region": "face", "size": [32, 32], "kind": "raw"}]}
                       ).with_overrides(["train.epochs=1"])
    ctx = prepare(config, progress=False)
    tasks = fold_tasks(ctx)[:2]
    expected = [run_fold(ctx, t) for t in tasks]
    with DaskExecutor(workers=2, data="files", data_dir=tmp_path / "arrays", progress=False) as ex:
        got = ex.run(ctx, tasks)
        assert all(w.startswith("tcp://127.0.0.1:") for w in ex.client().scheduler_info()["workers"])
    assert [o.task.name for o in got] == [t.name for t in tasks]
    for a, b in zip(got, expected, strict=True):
        assert a.rows == b.rows and a.history == b.history
    # the files are the arrays, and mapping them copies nothing into memory
    (path,) = list((tmp_path / "arrays").glob("clip-*.npy"))
    mapped = load_arrays({"clip": path})["clip"]
    assert torch.equal(mapped, ctx.inputs["clip"])
    assert save_arrays(ctx.inputs, tmp_path / "arrays") == {"clip": str(path)}  # same bytes, same file
    raw = np.load(path, mmap_mode="r")
    assert isinstance(raw, np.memmap) and mapped.untyped_storage().nbytes() == raw.nbytes
