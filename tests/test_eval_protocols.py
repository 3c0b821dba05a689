"""Protocols: MEGC2019 composite LOSO and leave-one-dataset-out are leak-free, composite per-dataset
metrics equal the ones recomputed from predictions.csv, and the shuffle control scores at chance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from conftest import tiny_config
from microexp.data.records import ClipSet
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError
from microexp.train.evaluate import evaluate
from microexp.train.protocols import make_folds, validation_split

# 12 subjects in 3 datasets (4 each), 10 clips per subject, 3 classes
Y = np.tile([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 12)
DS = np.repeat(["smic", "casme2", "samm"], 40).astype(object)
G = np.array([f"{d}/s{i // 10:02d}" for i, d in enumerate(DS)], dtype=object)
SOURCE = {"s00": "smic", "s01": "smic", "s02": "casme2", "s03": "casme2", "s04": "samm", "s05": "samm"}


def _subjects(idx: np.ndarray) -> set[str]:
    return set(G[idx].tolist())


ALL = [("loso", {}), ("kfold", {"n_splits": 4}), ("holdout", {}), ("holdout", {"subject_aware": True}),
       ("megc2019", {}), ("lodo", {}), ("lodo", {"test_dataset": "casme2", "train_datasets": ["samm"]})]


@pytest.mark.parametrize(("protocol", "kw"), ALL)
def test_no_subject_in_train_and_test_and_validation_subjects_never_tested(protocol: str, kw: dict) -> None:
    folds = make_folds(protocol, Y, G, seed=2, datasets=DS, **kw)
    assert folds
    for fold in folds:
        assert not _subjects(fold.train) & _subjects(fold.test)
        fit, val = validation_split(fold.train, Y, G, seed=0, fraction=0.25)
        assert _subjects(val) and not _subjects(val) & _subjects(fold.test) and not _subjects(val) & _subjects(fit)


def test_megc2019_is_loso_over_dataset_qualified_subjects() -> None:
    folds = make_folds("megc2019", Y, G, datasets=DS)
    assert [f.name for f in folds] == sorted(set(G.tolist())) and len(folds) == 12
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(Y)))
    with pytest.raises(ConfigError, match="needs a composite clip set"):
        make_folds("megc2019", Y, G, datasets=np.full(len(Y), "casme2", dtype=object))


def test_lodo_holds_out_whole_datasets_and_honours_source_and_target() -> None:
    folds = make_folds("lodo", Y, G, datasets=DS)
    assert [f.name for f in folds] == ["casme2", "samm", "smic"]
    for f in folds:
        assert set(DS[f.test].tolist()) == {f.name} and f.name not in set(DS[f.train].tolist())
        assert len(f.train) == 80 and len(f.test) == 40
    (joshi,) = make_folds("lodo", Y, G, datasets=DS, test_dataset="casme2", train_datasets=["samm"])
    assert set(DS[joshi.train].tolist()) == {"samm"} and set(DS[joshi.test].tolist()) == {"casme2"}
    with pytest.raises(ConfigError, match="'casme3' is not in the clip set"):
        make_folds("lodo", Y, G, datasets=DS, test_dataset="casme3")
    with pytest.raises(ConfigError, match="also among train_datasets"):
        make_folds("lodo", Y, G, datasets=DS, test_dataset="samm", train_datasets=["samm"])
    y = Y.copy()
    y[DS == "samm"] = 0  # samm has no class 1 or 2: a samm -> casme2 model could never predict them
    with pytest.raises(ConfigError, match="class protocols must agree"):
        make_folds("lodo", y, G, datasets=DS, test_dataset="casme2", train_datasets=["samm"])


@pytest.fixture(scope="module")
def composite(blob_tree: Path) -> ClipSet:
    plain = load_dataset("plain", blob_tree)
    records = [dataclasses.replace(r, dataset=SOURCE[r.subject]) for r in plain.records]
    return ClipSet("composite", records, plain.classes)


def _recomputed(df: pd.DataFrame, classes: list[str]) -> dict[str, float]:
    yt = df["true"].map(classes.index).to_numpy()
    yp = df["predicted"].map(classes.index).to_numpy()
    return {"accuracy": accuracy_score(yt, yp), "n": len(df),
            "uf1": f1_score(yt, yp, labels=list(range(len(classes))), average="macro", zero_division=0),
            "uar": recall_score(yt, yp, labels=sorted(set(yt)), average="macro", zero_division=0)}


def test_megc2019_run_reports_per_dataset_metrics_equal_to_recomputed(composite: ClipSet, tmp_path: Path) -> None:
    config = tiny_config(Path("unused"), protocol="megc2019", dataset="megc2019", **{"train.epochs": 2})
    result = evaluate(config, out=tmp_path / "run", clips=composite, progress=False, log=lambda _m: None)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"subject": str})
    assert m["n_folds"] == 6 and m["n_subjects"] == 6 and len(preds) == 72
    assert sorted(preds["fold"].unique()) == sorted(f"{d}/{s}" for s, d in SOURCE.items())
    assert set(m["per_dataset"]) == {"smic", "casme2", "samm"}
    for ds, sub in preds.groupby("dataset"):
        want = _recomputed(sub, m["classes"])
        assert m["per_dataset"][ds]["n"] == want["n"] == 24
        for key in ("accuracy", "uf1", "uar"):
            assert m["per_dataset"][ds][key] == pytest.approx(want[key], abs=1e-12), (ds, key)
    overall = _recomputed(preds, m["classes"])
    assert m["uf1"] == pytest.approx(overall["uf1"], abs=1e-12) and result.metrics["uar"] == pytest.approx(
        overall["uar"], abs=1e-12)


def test_lodo_run_trains_on_source_and_scores_target_only(composite: ClipSet) -> None:
    config = tiny_config(Path("unused"), protocol="lodo", test_dataset="casme2", train_datasets="[samm]")
    result = evaluate(config, clips=composite, progress=False, log=lambda _m: None)
    assert result.metrics["n_folds"] == 1 and list(result.metrics["per_dataset"]) == ["casme2"]
    assert set(result.predictions["dataset"]) == {"casme2"} and len(result.predictions) == 24
    assert set(result.predictions["fold"]) == {"casme2"}


@pytest.fixture(scope="module")
def synth_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from microexp.synth import SynthConfig, generate, write_plain

    clips = generate(SynthConfig(n_subjects=6, clips_per_class=4, size=(32, 32), n_frames=12, seed=5))
    return write_plain(clips, tmp_path_factory.mktemp("synth"))


def _at_chance(m: dict, n_classes: int = 3) -> float:
    """p-value of 'more correct than chance' under a binomial model of the pooled predictions."""
    correct = int(np.trace(np.asarray(m["confusion"])))
    return binomtest(correct, int(np.sum(m["confusion"])), 1 / n_classes, alternative="greater").pvalue


def test_shuffle_control_scores_at_chance_on_synthetic_data(synth_tree: Path) -> None:
    config = tiny_config(synth_tree, control="shuffle", **{"train.epochs": 3})
    result = evaluate(config, progress=False, log=lambda _m: None)
    control = result.metrics["control"]
    assert control["n"] == 72 and len(control["per_seed"]) == 1
    for m in control["per_seed"]:  # pooled control predictions: not distinguishable from guessing
        assert _at_chance(m) > 0.01, m["confusion"]
        assert abs(m["uar"] - 1 / 3) < 0.2
    assert "shuffle" in control["kind"]


def test_shuffle_control_at_chance_while_the_real_labels_are_learnt(blob_tree: Path) -> None:
    result = evaluate(tiny_config(blob_tree, control="shuffle", **{"train.epochs": 6, "train.momentum": 0.9}),
                      progress=False, log=lambda _m: None)
    # binomial p < 1e-6 against guessing; 64 of 72 right with the fast dropout's masks (65+ with bernoulli_'s)
    assert _at_chance(result.metrics) < 1e-6 and result.metrics["uar"] > 0.85
    assert _at_chance(result.metrics["control"]) > 0.01


@pytest.fixture(scope="module")
def megc_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three MEGC2019 sources in their release layouts (placeholder frames), read by the real loaders."""
    from microexp.synth.fixtures import build_fixture, placeholder_renderer

    root = tmp_path_factory.mktemp("megc")
    for layout in ("casme2", "samm", "smic"):
        build_fixture(layout, root / layout.upper(), render=placeholder_renderer, size=24)
    return root


def test_megc2019_dataset_end_to_end_per_dataset_scores_match_predictions(megc_tree: Path, tmp_path: Path) -> None:
    config = tiny_config(megc_tree, dataset="megc2019", protocol="megc2019", **{"train.epochs": 1})
    result = evaluate(config, out=tmp_path / "run", progress=False, log=lambda _m: None)
    m = result.metrics
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"subject": str, "fold": str})
    assert m["n_subjects"] == m["n_folds"] == preds["fold"].nunique() and m["n_excluded"] > 0
    assert set(m["per_dataset"]) == {"casme2", "samm", "smic"}
    for ds, sub in preds.groupby("dataset"):
        want = _recomputed(sub, m["classes"])
        for key in ("accuracy", "uf1", "uar", "n"):
            assert m["per_dataset"][ds][key] == pytest.approx(want[key], abs=1e-12), (ds, key)
    # fold names are dataset-qualified subjects; their checkpoint files are file-safe
    fold = preds["fold"].iloc[0]
    assert "/" in fold and (tmp_path / "run" / "checkpoints" / f"seed0-{fold.replace('/', '__')}.safetensors").is_file()


def test_cli_lodo_names_source_and_target(megc_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from microexp.cli import main

    args = ["evaluate", "--dataset", "megc2019", "--root", str(megc_tree), "--protocol", "lodo",
            "--train-datasets", "samm,smic", "--test-dataset", "casme2", "--epochs", "1", "--frames", "10",
            "--size", "16", "--set", "model_params.kernel=[3,3,3]", "--set", "model_params.filters=4",
            "--out", str(tmp_path / "lodo"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "protocol lodo (1 folds" in out and "casme2" in out
    preds = pd.read_csv(tmp_path / "lodo" / "predictions.csv")
    assert set(preds["dataset"]) == {"casme2"} and set(preds["fold"]) == {"casme2"}
    bad = ["evaluate", "--dataset", "megc2019", "--root", str(megc_tree), "--protocol", "lodo", "--test-dataset",
           "casme9", "--epochs", "1", "--frames", "10", "--size", "16", "--set", "model_params.kernel=[3,3,3]",
           "--out", str(tmp_path / "x"), "--no-progress"]
    assert main(bad) == 2 and "lodo: dataset 'casme9' is not in the clip set" in capsys.readouterr().err
