"""A killed evaluation resumes at its next unfinished fold and ends with the same results as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_config
from microexp.cli import main
from microexp.errors import ConfigError
from microexp.train.evaluate import evaluate
from microexp.train.folds import FoldOutput, FoldTask, RunContext, run_fold


class Killed(Exception):
    pass


class KillAfter:
    """Runs folds like LocalExecutor but dies (as a killed process would) once ``n`` folds have finished."""

    def __init__(self, n: int):
        self.n, self.ran = n, 0

    def run(self, ctx: RunContext, tasks: list[FoldTask]) -> list[FoldOutput]:
        outputs = []
        for task in tasks:
            if self.ran == self.n:
                raise Killed(task.name)
            outputs.append(run_fold(ctx, task))
            self.ran += 1
        return outputs


class Counting:
    def __init__(self) -> None:
        self.names: list[str] = []

    def run(self, ctx: RunContext, tasks: list[FoldTask]) -> list[FoldOutput]:
        self.names += [t.name for t in tasks]
        return [run_fold(ctx, t) for t in tasks]


def test_killed_then_resumed_run_equals_uninterrupted(blob_tree: Path, tmp_path: Path) -> None:
    config = tiny_config(blob_tree, control="shuffle", **{"train.epochs": 1})
    full = evaluate(config, out=tmp_path / "full", progress=False, log=lambda _m: None)

    run = tmp_path / "killed"
    with pytest.raises(Killed, match="seed0-fold3"):
        evaluate(config, out=run, progress=False, log=lambda _m: None, executor=KillAfter(2))
    assert sorted(p.name for p in (run / "folds").iterdir()) == ["seed0-fold1.json", "seed0-fold2.json"]
    assert not (run / "metrics.json").exists()

    with pytest.raises(ConfigError, match="already holds a run; resume it"):
        evaluate(config, out=run, progress=False, log=lambda _m: None)
    changed = config.with_overrides(["train.lr=0.5"])
    with pytest.raises(ConfigError, match=r"cannot resume, the configuration differs \(train.lr: 0.01"):
        evaluate(changed, out=run, progress=False, log=lambda _m: None, resume=True)

    logs: list[str] = []
    counting = Counting()
    resumed = evaluate(config, out=run, progress=False, log=logs.append, executor=counting, resume=True)
    # only the unfinished folds ran: the third real fold and the shuffle-control folds
    assert counting.names == ["seed0-fold3", "control-seed0-fold1", "control-seed0-fold2", "control-seed0-fold3"]
    assert "resuming: 2 of 3 fold(s) already finished, running 1" in logs
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "uf1", "uar", "confusion", "per_class", "per_subject", "epoch_policy", "control"):
        assert a[key] == b[key], key
    assert resumed.metrics["uf1"] == full.metrics["uf1"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "predictions.csv"),
                                  pd.read_csv(run / "predictions.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "history.csv"), pd.read_csv(run / "history.csv"))


def test_cli_resume_continues_and_refuses_a_changed_configuration(blob_tree: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "r"
    config = tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 1})
    with pytest.raises(Killed):
        evaluate(config, out=run, progress=False, log=lambda _m: None, executor=KillAfter(0))
    assert (run / "config.yaml").is_file() and not list((run / "folds").glob("*.json"))
    assert main(["evaluate", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
    assert "cannot resume, the configuration differs (train.epochs: 1 in the run, 3 now)" in capsys.readouterr().err
    assert main(["evaluate", "--resume", str(run), "--no-progress"]) == 0
    assert "UF1" in capsys.readouterr().out and (run / "metrics.json").is_file()
    assert main(["evaluate", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
