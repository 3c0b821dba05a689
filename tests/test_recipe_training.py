"""The trainer features seed recipes need (issue #15): the Keras plateau scheduler, repeated / clip-level k-fold,
the tail and quota splits, the length filter, the LEAKY reproduction switches and the leaks list, the whole-set
epoch policy and the mean ± std over a range of epochs."""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.model_selection import train_test_split

from conftest import tiny_config
from microexp import runs
from microexp.cli import main
from microexp.config import RunConfig, TrainConfig
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError
from microexp.train.evaluate import evaluate
from microexp.train.loop import plateau_scheduler
from microexp.train.protocols import make_folds, quota_split
from microexp.train.reproduce import smic_surprise_duplication
from microexp.train.trainers import TRAINERS, ClipTrainer

QUIET = {"progress": False, "log": lambda _m: None}


# ---- scheduler: Keras' ReduceLROnPlateau rule ----------------------------------------------------------------

def keras_rule(losses: list[float], lr: float, factor: float, patience: int, min_lr: float) -> list[float]:
    """Keras' documented rule (callbacks.ReduceLROnPlateau, mode min, min_delta 1e-4, cooldown 0): improvement is
    ``loss < best - min_delta``; after ``patience`` epochs without one the rate becomes max(lr * factor, min_lr)
    if lr > min_lr, and the wait restarts. The rate after each epoch."""
    best, wait, out = math.inf, 0, []
    for loss in losses:
        if loss < best - 1e-4:
            best, wait = loss, 0
        else:
            wait += 1
            if wait >= patience and lr > np.float32(min_lr):
                lr, wait = max(lr * factor, min_lr), 0
        out.append(lr)
    return out


def test_plateau_scheduler_follows_keras_rule_on_a_hand_made_loss_sequence() -> None:
    # Joshi's callback: factor 0.5, patience 3, min_lr 1e-4, from Adam 3e-3. Epoch 4 improves by 5e-4 > 1e-4
    # (an improvement for Keras' absolute min_delta, not for a relative 1e-4 threshold); epoch 8 by 5e-5 (none).
    losses = [10.0, 9.0, 9.0, 8.9995, 9.1, 9.2, 9.3, 8.99945, 5.0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]
    expected = [3e-3] * 6 + [1.5e-3] * 5 + [7.5e-4] * 3 + [3.75e-4] * 3 + [1.875e-4] * 3 + [1e-4] * 5
    assert keras_rule(losses, 3e-3, 0.5, 3, 1e-4) == pytest.approx(expected)
    cfg = TrainConfig(lr=3e-3, optimizer="adam", scheduler="plateau", scheduler_factor=0.5, scheduler_patience=3,
                      min_lr=1e-4)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = plateau_scheduler(opt, cfg)
    got = []
    for loss in losses:
        sched.step(loss)
        got.append(opt.param_groups[0]["lr"])
    assert got == pytest.approx(expected)
    # patience 1 lowers the rate on the first epoch without improvement (torch's own rule waits one more)
    assert keras_rule([1.0, 1.0, 1.0], 0.1, 0.1, 1, 0.0) == pytest.approx([0.1, 0.01, 0.001])
    sched = plateau_scheduler(opt := torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                              TrainConfig(scheduler="plateau", scheduler_patience=1))
    got = []
    for loss in (1.0, 1.0, 1.0):
        sched.step(loss)
        got.append(opt.param_groups[0]["lr"])
    assert got == pytest.approx([0.1, 0.01, 0.001])


# ---- protocols ----------------------------------------------------------------------------------------------

Y = np.repeat(np.arange(3), 40)
G = np.array([f"s{i % 10}" for i in range(120)], dtype=object)


def test_repeated_kfold_fold_count_names_and_disjointness() -> None:
    folds = make_folds("kfold", Y, G, seed=1, n_splits=4, repeats=3)
    assert [f.name for f in folds] == [f"r{r}-fold{i}" for r in (1, 2, 3) for i in (1, 2, 3, 4)]
    for r in range(3):
        tests = [f.test for f in folds[4 * r:4 * r + 4]]
        assert sorted(np.concatenate(tests).tolist()) == list(range(120))  # each repeat covers every clip once
        for f in folds[4 * r:4 * r + 4]:
            assert not set(G[f.train]) & set(G[f.test])  # subject-grouped
            assert sorted(np.concatenate([f.train, f.test]).tolist()) == list(range(120))
    assert any(not np.array_equal(folds[i].test, folds[i + 4].test) for i in range(4))  # fresh shuffles
    assert [f.name for f in make_folds("kfold", Y, G, seed=1, n_splits=4)] == [f"fold{i}" for i in (1, 2, 3, 4)]


def test_clip_level_kfold_is_stratified_and_mixes_subjects() -> None:
    folds = make_folds("kfold", Y, G, seed=0, n_splits=5, repeats=3, subject_aware=False)
    assert len(folds) == 15
    for f in folds:
        assert np.bincount(Y[f.test]).tolist() == [8, 8, 8]  # StratifiedKFold: 40/5 per class
    assert any(set(G[f.train]) & set(G[f.test]) for f in folds)


def test_tail_split_is_the_last_20_percent_and_the_plain_split_is_sklearns() -> None:
    y = np.repeat(np.arange(3), [100, 60, 46])  # 206 clips, the class blocks as the reference code stacked them
    g = np.arange(206).astype(str).astype(object)
    (tail,) = make_folds("holdout", y, g, test_size=0.2, subject_aware=False, stratify=False, shuffle=False)
    assert tail.test.tolist() == list(range(164, 206)) and tail.train.tolist() == list(range(164))  # ceil(41.2)
    (plain,) = make_folds("holdout", y, g, seed=4, test_size=0.2, subject_aware=False, stratify=False)
    tr, te = train_test_split(np.arange(206), test_size=0.2, random_state=4)  # Reddy's STCNN split
    assert plain.test.tolist() == sorted(te.tolist()) and plain.train.tolist() == sorted(tr.tolist())


def test_quota_split_counts() -> None:
    classes = ["happiness", "surprise", "anger", "fear", "disgust", "contempt", "sadness"]
    y = np.repeat(np.arange(7), [26, 15, 57, 8, 9, 12, 6])  # Joshi's SAMM 7-class counts (133 clips)
    quota = {"happiness": 19, "surprise": 10, "anger": 41, "fear": 5, "disgust": 5, "contempt": 7, "sadness": 3}
    fold = quota_split(np.random.default_rng(0).permutation(y), classes, quota, seed=3)
    yy = np.random.default_rng(0).permutation(y)
    assert np.bincount(yy[fold.train], minlength=7).tolist() == [19, 10, 41, 5, 5, 7, 3]
    assert np.bincount(yy[fold.test], minlength=7).tolist() == [7, 5, 16, 3, 4, 5, 3]
    assert len(fold.train) == 90 and len(fold.test) == 43 and not set(fold.train) & set(fold.test)
    again = make_folds("quota", yy, np.zeros(133, object), seed=3, quota=quota, classes=classes)[0]
    assert np.array_equal(again.train, fold.train)
    assert not np.array_equal(quota_split(yy, classes, quota, seed=4).train, fold.train)
    with pytest.raises(ConfigError, match=r"quota: class 'sadness' has 6 clip\(s\), fewer than its training quota 7"):
        quota_split(yy, classes, {**quota, "sadness": 7}, seed=0)
    with pytest.raises(ConfigError, match=r"class\(es\) \['other'\] are not among .*class\(es\) \['sadness'\] have no"):
        quota_split(yy, classes, {**{k: v for k, v in quota.items() if k != "sadness"}, "other": 1}, seed=0)


# ---- the SMIC duplication of the FuseNet scripts --------------------------------------------------------------

def test_smic_surprise_duplication_counts() -> None:
    classes = ["negative", "positive", "surprise"]
    y = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [66, 47, 43]))
    rows, labels = smic_surprise_duplication(y, classes)
    assert len(rows) == 66 + 47 + 2 * 43 == 199
    assert y[rows].tolist() == [0] * 66 + [1] * 47 + [2] * 86  # class blocks, surprise clips twice
    assert np.array_equal(rows[113::2], rows[114::2])  # each surprise clip twice in a row
    assert labels.tolist() == [0] * 66 + [1] * 47 + [2] * 43 + [0] * 43  # labels filled for [0, 156) only
    assert np.bincount(labels).tolist() == [109, 47, 43]
    with pytest.raises(ConfigError, match="needs the SMIC classes"):
        smic_surprise_duplication(y, ["negative", "positive", "other"])


# ---- the leaks list ------------------------------------------------------------------------------------------

def test_leaks_lists_policies_and_every_reproduce_switch() -> None:
    assert runs.leaks(RunConfig()) == []
    assert [x["switch"] for x in runs.leaks(RunConfig.from_dict({"train": {"epoch_policy": "whole-set"}}))] == [
        "whole-set"]
    config = RunConfig.from_dict({"train": {"epoch_policy": "test-peek", "augment": "joshi3d"},
                                  "reproduce": ["reuse-model-across-folds", "augment-before-split"]})
    listed = runs.leaks(config)
    assert [x["switch"] for x in listed] == ["test-peek", "reuse-model-across-folds", "augment-before-split"]
    assert all(x["description"].startswith("LEAKY") for x in listed)
    assert runs.leaks(config.to_dict()) == listed  # from a run's config.yaml too


# ---- bad values: one line naming key and value ------------------------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("train.scheduler=cosine", "train.scheduler='cosine' is not one of ['none', 'plateau', 'exponential']"),
    ("train.scheduler_factor=1.5", "train.scheduler_factor=1.5 must be in (0, 1)"),
    ("train.scheduler_patience=0", "train.scheduler_patience=0 must be >= 1"),
    ("train.scheduler_monitor=test_loss", "train.scheduler_monitor='test_loss' is not one of"),
    ("train.epoch_metric=auc", "train.epoch_metric='auc' is not one of ['uf1', 'accuracy']"),
    ("train.epoch_policy=best", "train.epoch_policy='best' is not one of"),
    ("train.val_by=dataset", "train.val_by='dataset' is not one of ['subject', 'clip']"),
    ("train.augment=mixup", "train.augment='mixup' is not one of ['none', 'joshi3d', 'joshi2d']"),
    ("train.report_epochs=[91,101]", "train.report_epochs=[91, 101] must be [first, last] with 1 <= first"),
    ("reproduce=[smic-duplication]", "reproduce: unknown switch 'smic-duplication' (known: smic-surprise-dup"),
    ("reproduce=[augment-before-split]", "reproduce augment-before-split needs train.augment"),
    ("repeats=3", "repeats=3 applies to protocol kfold only (protocol is loso)"),
    ("shuffle=false", "shuffle=false applies to protocol holdout with subject_aware=false only"),
    ("min_frames=0", "min_frames=0 must be >= 1 (or null)"),
    ("quota={a: 2}", "quota={'a': 2} applies to protocol quota only"),
])
def test_bad_values_are_one_line_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides([override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_switch_through_the_cli_is_one_line_exit_2(blob_tree: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--dataset", "plain", "--root", str(blob_tree), "--set", "reproduce=[nope]",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "reproduce: unknown switch 'nope'" in err


# ---- end to end on the blob tree ---------------------------------------------------------------------------------

def test_whole_set_policy_marks_the_run_leaky(blob_tree: Path) -> None:
    config = tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 2, "train.epoch_policy": "whole-set",
                                                           "train.epoch_metric": "accuracy"})
    result = evaluate(config, **QUIET)
    m = result.metrics
    assert m["epoch_policy"]["leaky"] is True and m["epoch_policy"]["metric"] == "accuracy"
    assert [x["switch"] for x in m["leaks"]] == ["whole-set"]
    assert {"whole_accuracy", "whole_uf1"} <= set(result.history.columns)
    # chosen on every clip of the run: the held-out score of the chosen epoch is the best of both epochs
    best = result.history.groupby("epoch")["whole_accuracy"].first()
    assert best[m["epoch_policy"]["chosen_epochs"][0]] == best.max()


def test_epoch_range_mean_and_std_by_hand(blob_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tiny_config(blob_tree, **{"train.epochs": 3, "train.report_epochs": "[2, 3]"})
    result = evaluate(config, out=out, **QUIET)
    folds = [json.loads(p.read_text()) for p in sorted((out / "folds").glob("*.json"))]
    assert len(folds) == 3
    y = {r["clip_id"] + r["subject"]: r["true"] for f in folds for r in f["rows"]}
    classes = result.metrics["classes"]
    scores: dict[str, list[float]] = {"accuracy": [], "uf1": [], "uar": []}
    for epoch in ("2", "3"):
        yt = [classes.index(y[r["clip_id"] + r["subject"]]) for f in folds for r in f["rows"]]
        yp = [p for f in folds for p in f["epoch_predictions"][epoch]]
        assert len(yp) == 72
        scores["accuracy"].append(accuracy_score(yt, yp))
        scores["uf1"].append(f1_score(yt, yp, average="macro"))
        scores["uar"].append(recall_score(yt, yp, average="macro"))
    er = json.loads((out / "metrics.json").read_text())["epoch_range"]
    assert (er["first"], er["last"], er["n_epochs"]) == (2, 3, 2)
    for key, values in scores.items():
        assert er[key]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert er[key]["std"] == pytest.approx(np.std(values), abs=1e-12)
    # the fixed policy scores the last epoch: epoch 3's predictions are the run's predictions
    last = [classes[p] for f in folds for p in f["epoch_predictions"]["3"]]
    assert last == [r["predicted"] for f in folds for r in f["rows"]]
    assert result.metrics["epoch_policy"]["leaky"] is False  # scored, never chosen on


def test_min_frames_exclusions_are_listed(blob_tree: Path, tmp_path: Path) -> None:
    clips = load_dataset("plain", blob_tree)
    short = {r.key for r in clips.records[::9]}  # 8 clips cut to 20 frames
    records = [replace(r, frames=r.frames[:20], frame_numbers=r.frame_numbers[:20], offset=r.frame_numbers[19])
               if r.key in short else r for r in clips.records]
    clips = replace(clips, records=records)
    out = tmp_path / "run"
    result = evaluate(tiny_config(blob_tree, protocol="holdout", min_frames=21, **{"train.epochs": 1}),
                      out=out, clips=clips, **QUIET)
    excluded = pd.read_csv(out / "excluded.csv")
    assert sorted(excluded["clip"]) == sorted(short) and set(excluded["reason"]) == {"fewer than 21 frames (20)"}
    assert result.metrics["n_clips"] == 64 and result.metrics["n_excluded"] == 8
    with pytest.raises(Exception, match=r"no usable clips \(72 excluded; first reason: more than 10 frames"):
        evaluate(tiny_config(blob_tree, max_frames=10), clips=clips, **QUIET)


def test_scheduler_on_val_loss_with_a_clip_level_validation_split(blob_tree: Path) -> None:
    config = tiny_config(blob_tree, protocol="holdout", **{
        "train.epochs": 3, "train.scheduler": "plateau", "train.scheduler_monitor": "val_loss",
        "train.scheduler_patience": 1, "train.scheduler_factor": 0.5, "train.val_by": "clip",
        "train.val_fraction": 0.27, "train.lr": 0.01})
    result = evaluate(config, **QUIET)
    h = result.history
    assert "val_loss" in h.columns and h["lr"].iloc[0] == 0.01
    assert set(h["lr"]) <= {0.01, 0.005, 0.0025}
    # each epoch's rate follows the Keras rule applied to the previous epochs' validation losses
    expected = [0.01] + keras_rule(h["val_loss"].tolist(), 0.01, 0.5, 1, 0.0)[:-1]
    assert h["lr"].tolist() == pytest.approx(expected)
    assert result.metrics["training"]["scheduler"]["monitor"] == "val_loss"


def _spy_trainer(models: list) -> str:
    class Spy(ClipTrainer):
        def fit(self, model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
            models.append(model)  # the object itself: an id alone can be reused once a model is freed
            return super().fit(model, *args, **kwargs)

    name = f"spy-{id(models)}"
    TRAINERS.add(name, Spy())
    return name


def test_reuse_model_across_folds_trains_one_model_object(blob_tree: Path) -> None:
    fresh: list = []
    evaluate(tiny_config(blob_tree, **{"train.epochs": 1, "train.trainer": _spy_trainer(fresh)}), **QUIET)
    assert len({id(m) for m in fresh}) == 3  # a new model per fold
    reused: list = []
    result = evaluate(tiny_config(blob_tree, reproduce="[reuse-model-across-folds]",
                                  **{"train.epochs": 1, "train.trainer": _spy_trainer(reused)}), **QUIET)
    assert len(reused) == 3 and len({id(m) for m in reused}) == 1
    assert [x["switch"] for x in result.metrics["leaks"]] == ["reuse-model-across-folds"]
    assert result.metrics["epoch_policy"]["leaky"] is True


@pytest.fixture
def fake_augment(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A stand-in ``microexp.train.augment``: every row plus one brightened copy; records the rows it was given."""
    calls: list[int] = []

    def augment_set(name, inputs, y, classes, rng, value_range, with_source=False):  # noqa: ANN001, ANN202
        assert name == "joshi3d" and isinstance(rng, np.random.Generator) and value_range == (-1.0, 1.0)
        calls.append(len(y))
        out = {k: torch.cat([v, v + 1]) for k, v in inputs.items()}
        y2 = np.concatenate([np.asarray(y), np.asarray(y)])
        source = np.concatenate([np.arange(len(y)), np.arange(len(y))])
        return (out, y2, source) if with_source else (out, y2)

    stand_in = types.SimpleNamespace(augment_set=augment_set, value_range=lambda normalise: (-1.0, 1.0))
    monkeypatch.setitem(sys.modules, "microexp.train.augment", stand_in)
    monkeypatch.setattr("microexp.train.augment", stand_in, raising=False)
    return calls


def test_augment_enlarges_the_training_rows_only(blob_tree: Path, fake_augment: list[int]) -> None:
    config = tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 2, "train.augment": "joshi3d",
                                                           "train.batch_size": 8})
    result = evaluate(config, **QUIET)
    n_train = 72 - len(result.predictions)
    assert fake_augment == [n_train]  # once per fold, on its training rows; the test rows are scored as they are
    assert len(result.predictions) == 72 - n_train
    assert result.metrics["leaks"] == [] and result.metrics["training"]["augment"] == "joshi3d"


def test_augment_before_split_doubles_the_clip_set_and_is_leaky(blob_tree: Path, fake_augment: list[int]) -> None:
    config = tiny_config(blob_tree, reproduce="[augment-before-split]", **{"train.epochs": 1,
                                                                           "train.augment": "joshi3d"})
    result = evaluate(config, **QUIET)
    assert fake_augment == [72]  # once over the whole clip set before the split, never again per fold
    assert result.metrics["n_clips"] == 144 and len(result.predictions) == 144
    assert [x["switch"] for x in result.metrics["leaks"]] == ["augment-before-split"]


def test_smic_duplication_end_to_end_with_the_tail_split(blob_tree: Path) -> None:
    clips = load_dataset("plain", blob_tree)
    rename = {"down": "negative", "none": "positive", "up": "surprise"}
    clips = replace(clips, records=[r.with_label(rename[r.label]) for r in clips.records],
                    classes=("negative", "positive", "surprise"))
    config = tiny_config(blob_tree, protocol="holdout", subject_aware=False, stratify=False, shuffle=False,
                         reproduce="[smic-surprise-duplication]", **{"train.epochs": 1})
    result = evaluate(config, clips=clips, **QUIET)
    assert result.metrics["n_clips"] == 24 + 24 + 2 * 24
    # the tail split's test part is the last 20 (ceil(0.2 * 96)) rows: duplicated surprise clips labelled negative
    assert len(result.predictions) == 20 and set(result.predictions["true"]) == {"negative"}
    assert set(result.predictions["clip_id"].str[:2]) == {"up"}


def test_a_run_saved_before_the_new_keys_still_resumes(blob_tree: Path, tmp_path: Path) -> None:
    import yaml

    out = tmp_path / "run"
    config = tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 1})
    first = evaluate(config, out=out, **QUIET)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    for key in ("repeats", "stratify", "shuffle", "quota", "min_frames", "max_frames", "reproduce"):
        del saved[key]
    for key in ("scheduler", "epoch_metric", "report_epochs", "val_by", "augment", "trainer"):
        del saved["train"][key]
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    again = evaluate(config, out=out, resume=True, **QUIET)
    assert again.predictions.equals(first.predictions)
    with pytest.raises(ConfigError, match="cannot resume, the configuration differs"):
        evaluate(tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 1, "train.val_by": "clip"}),
                 out=out, resume=True, **QUIET)


def test_report_epochs_on_a_model_without_epochs_is_refused() -> None:
    from microexp.train.evaluate import check_model

    with pytest.raises(ConfigError, match=r"train.report_epochs=\[1, 2\]: model lbptop-svm is not trained by epochs"):
        check_model(RunConfig.from_dict({"model": "lbptop-svm", "train": {"report_epochs": [1, 2]}}))


def test_batch_bounds_keep_every_row_or_drop_the_keras_remainder() -> None:
    from microexp.train.loop import batch_bounds

    assert batch_bounds(35, 16) == [(0, 16), (16, 32), (32, 35)]
    assert batch_bounds(33, 16) == [(0, 16), (16, 33)]  # a lone last row joins the batch before (batch norm)
    assert batch_bounds(1, 16) == [(0, 1)]
    assert batch_bounds(35, 16, drop_last=True) == [(0, 16), (16, 32)]  # Keras: steps_per_epoch = 35 // 16
    assert batch_bounds(10, 16, drop_last=True) == [(0, 10)]  # fewer rows than a batch: one batch, not none
