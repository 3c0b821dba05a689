"""Folds on a local Dask cluster (2 workers, loopback) give the same run as the local executor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from microexp.cli import build_parser
from microexp.cli._executor import executor_from_args
from microexp.cli.evaluate import config_from_args
from microexp.config import RunConfig
from microexp.errors import ConfigError
from microexp.train.arrays import load_arrays, save_arrays
from microexp.train.dask_executor import DaskExecutor
from microexp.train.evaluate import evaluate, fold_tasks, prepare
from microexp.train.executor import LocalExecutor
from microexp.train.folds import run_fold

SMALL = ["--frames", "20", "--size", "32", "--no-progress", "--protocol", "kfold", "--folds", "3", "--epochs", "1"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    """One 2-worker LocalCluster for the module (starting one takes seconds)."""
    with DaskExecutor(workers=2, progress=False) as ex:
        yield ex


def _numbers(path: Path) -> dict:
    m = json.loads(path.read_text())
    m.pop("seconds")  # wall time, the only field allowed to differ
    return m


def test_dask_run_writes_the_same_metrics_and_predictions_as_a_local_run(blob_tree: Path, tmp_path: Path,
                                                                         cluster: DaskExecutor) -> None:
    args = build_parser().parse_args(["evaluate", "--dataset", "plain", "--root", str(blob_tree), *SMALL])
    config = config_from_args(args)
    evaluate(config, out=tmp_path / "local", progress=False, log=lambda _m: None)  # torch on 2 threads here
    evaluate(config, out=tmp_path / "dask", progress=False, log=lambda _m: None, executor=cluster)  # 1 thread
    assert all(w.startswith("tcp://127.0.0.1:") for w in cluster.client().scheduler_info()["workers"])
    local, dask = _numbers(tmp_path / "local" / "metrics.json"), _numbers(tmp_path / "dask" / "metrics.json")
    assert local["n_folds"] == 3 and local["n_clips"] == 72
    assert dask == local  # exact: every task is seeded from itself, and the fast path does not depend on threads
    for name in ("predictions.csv", "history.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / name), pd.read_csv(tmp_path / "local" / name))
    assert sorted(p.name for p in (tmp_path / "dask" / "checkpoints").iterdir()) == [
        "seed0-fold1.safetensors", "seed0-fold2.safetensors", "seed0-fold3.safetensors"]


def test_cli_options_build_the_dask_executor(blob_tree: Path) -> None:
    args = build_parser().parse_args(["evaluate", "--dataset", "plain", "--root", str(blob_tree), "--executor", "dask",
                                      "--scheduler", "tcp://10.0.0.1:8786", "--threads-per-worker", "3",
                                      "--dask-data", "files", "--data-dir", "/shared/arrays"])
    with executor_from_args(args) as ex:  # nothing connects before run()
        assert isinstance(ex, DaskExecutor)
        assert (ex.scheduler, ex.torch_threads, ex.data, str(ex.data_dir)) == (
            "tcp://10.0.0.1:8786", 3, "files", "/shared/arrays")
    local = build_parser().parse_args(["evaluate", "--dataset", "plain"])
    with executor_from_args(local) as ex:
        assert isinstance(ex, LocalExecutor)
    with pytest.raises(ConfigError, match="needs a data_dir"):
        DaskExecutor(scheduler="tcp://10.0.0.1:8786", data="files")._files(None)  # type: ignore[arg-type]


def test_workers_reading_memory_mapped_files_match_in_process_folds(blob_tree: Path, tmp_path: Path,
                                                                   cluster: DaskExecutor, one_torch_thread) -> None:
    # one torch thread here, as in the workers: on AVX-512 hosts oneDNN's eval-mode kernels round differently at
    # 1 and 2 threads (probabilities 3e-8 apart), and this test is about the files, not the thread count
    config = RunConfig(dataset="plain", root=str(blob_tree), protocol="kfold", folds=3, save_checkpoints=False,
                       preprocess={"frames": 20, "selection": "whole",
                                   "streams": [{"name": "clip", "region": "face", "size": [32, 32], "kind": "raw"}]}
                       ).with_overrides(["train.epochs=1"])
    ctx = prepare(config, progress=False)
    tasks = fold_tasks(ctx)[:2]
    expected = [run_fold(ctx, t) for t in tasks]
    cluster.data, cluster.data_dir = "files", tmp_path / "arrays"
    try:
        got = cluster.run(ctx, tasks)
    finally:
        cluster.data, cluster.data_dir = "scatter", None
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
