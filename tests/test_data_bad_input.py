"""Bad input at the data layer: each case is refused with one clear line and a non-zero exit, or becomes a named
exclusion seen the same way by ``data check`` and ``evaluate``; none silently changes the experiment."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from _real import REAL
from microexp.cli import main
from microexp.data.check import check_dataset
from microexp.data.registry import get_dataset, load_dataset
from microexp.errors import AnnotationError, ConfigError
from microexp.synth.fixtures import build_fixture, placeholder_renderer


def _one_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


@pytest.fixture
def plain_copy(blob_tree: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "plain"
    shutil.copytree(blob_tree, dst)
    return dst


@pytest.fixture(scope="module")
def casme2_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture("casme2", tmp_path_factory.mktemp("c2"), render=placeholder_renderer).root


# ------------------------------------------------------------------------------------- class protocols

def test_class_protocol_of_another_dataset_is_refused(casme2_tree: Path, capsys) -> None:
    with pytest.raises(ConfigError, match=r"class protocol 'samm-5' belongs to dataset samm, not casme2 "
                                          r"\(use one of: casme2-5, casme2-all, casme2-6, casme2-4, casme2-3, casme2-3-mmnet, "
                                          r"casme2-objective, casme2-objective-7, casme2-objective-rule, "
                                          r"casme2-objective-rule-7, all\)"):
        load_dataset("casme2", casme2_tree, classes="samm-5")
    err = _one_line(capsys, ["evaluate", "--dataset", "casme2", "--root", str(casme2_tree), "--classes", "samm-5",
                             "--epochs", "1", "--no-progress"])
    assert "'samm-5' belongs to dataset samm" in err
    err = _one_line(capsys, ["preprocess", "--dataset", "casme2", "--root", str(casme2_tree), "--classes", "samm-5"])
    assert "belongs to dataset samm" in err
    # a dataset may use the protocol it names as its default (SMIC-VIS uses SMIC's 3 classes)
    assert "smic-3" in get_dataset("smic_vis").accepted_protocols()


def test_class_protocol_leaving_a_class_without_clip_is_refused(tmp_path: Path) -> None:
    fx = build_fixture("casme2", tmp_path / "c2", render=placeholder_renderer)
    assert len(load_dataset("casme2", fx.root)) == 8  # 10 rows: sadness and fear are not casme2-5 classes
    repression = next(r for r in fx.rows if r.emotion == "repression")
    shutil.rmtree(fx.clip_folders[f"{repression.subject}/{repression.clip_id}"])
    with pytest.raises(ConfigError, match=r"class protocol casme2-5 on casme2 .*class\(es\) \['repression'\] have "
                                          r"no clip \(7 of 9 clips kept\)"):
        load_dataset("casme2", fx.root)
    assert len(load_dataset("casme2", fx.root, classes="casme2-4")) == 9  # repression is one of 'others' there


# ------------------------------------------------------------------------------- plain layout labels

def test_plain_label_typo_is_refused_when_labels_are_declared(plain_copy: Path, capsys) -> None:
    ann = plain_copy / "annotations.csv"
    table = pd.read_csv(ann, dtype=str)
    table.loc[6, "emotion"] = "joyful"
    table.to_csv(ann, index=False)
    # documented: undeclared, every label is a class (the typo is a fourth class, visible in the counts)
    assert load_dataset("plain", plain_copy).classes == ("down", "joyful", "none", "up")
    with pytest.raises(AnnotationError, match=r"annotations.csv, row 8, column 'emotion': label 'joyful' is not "
                                              r"one of the declared labels \['up', 'down', 'none'\]"):
        load_dataset("plain", plain_copy, labels="up,down,none")
    (plain_copy / "labels.txt").write_text("up\ndown\nnone  # the blob does not move\n")
    with pytest.raises(AnnotationError, match="row 8"):  # the tree's own declaration reaches every caller
        load_dataset("plain", plain_copy)
    err = _one_line(capsys, ["evaluate", "--dataset", "plain", "--root", str(plain_copy), "--epochs", "1",
                             "--no-progress"])
    assert "label 'joyful' is not one of the declared labels" in err
    assert main(["data", "check", "--dataset", "plain", "--root", str(plain_copy), "--no-images"]) == 1
    out = capsys.readouterr().out
    assert "unknown label: " in out and "'joyful' is not one of ['up', 'down', 'none']" in out


def test_declared_labels_fix_class_order_and_refuse_an_unused_label(plain_copy: Path, capsys) -> None:
    assert load_dataset("plain", plain_copy, labels=["up", "none", "down"]).classes == ("up", "none", "down")
    with pytest.raises(ConfigError, match=r"declared label\(s\) \['fear'\] have no clip"):
        load_dataset("plain", plain_copy, labels="up,down,none,fear")
    assert main(["data", "check", "--dataset", "plain", "--root", str(plain_copy), "--labels", "up,down,none,fear",
                 "--no-images"]) == 1
    assert "label with no clip: 'fear'" in capsys.readouterr().out


@pytest.mark.parametrize("dataset", ["plain", "synthetic"])
def test_data_check_accepts_the_plain_layouts(blob_tree: Path, dataset: str, capsys) -> None:
    assert main(["data", "check", "--dataset", dataset, "--root", str(blob_tree)]) == 0
    out = capsys.readouterr().out
    assert "clips found: 72 from 6 subjects" in out and "per class:   down 24, none 24, up 24" in out
    assert "no problems found" in out


# ----------------------------------------------------------------- frames missing or of another size

def test_missing_frames_are_a_recorded_repair_or_an_exclusion_and_odd_sizes_excluded_in_check_and_load(
        plain_copy: Path) -> None:
    (plain_copy / "s01" / "up0" / "frame_0010.png").unlink()  # 1 of 24: repaired
    for n in range(5, 10):  # 5 of 24 (more than 10 %): excluded
        (plain_copy / "s00" / "down0" / f"frame_{n:04d}.png").unlink()
    odd = plain_copy / "s02" / "down1" / "frame_0005.png"
    cv2.imwrite(str(odd), np.full((40, 40), 128, np.uint8))
    clips = load_dataset("plain", plain_copy)
    assert len(clips) == 70
    reasons = {e.clip: e.reason for e in clips.excluded}
    assert set(reasons) == {"plain/s00/down0", "plain/s02/down1"}
    assert reasons["plain/s00/down0"].startswith("missing frames: ") and \
        "5 frame number(s) absent in 1..24: 5, 6, 7, 8, 9 (more than 10% of the clip: not repaired)" in \
        reasons["plain/s00/down0"]
    assert reasons["plain/s02/down1"].startswith("frame size: ") and \
        "frame_0005.png is 40x40, the clip's first frame frame_0001.png is 32x32" in reasons["plain/s02/down1"]
    rec = next(r for r in clips if r.key == "plain/s01/up0")
    assert rec.frame_numbers == tuple(range(1, 25)) and rec.frames[9] == rec.frames[8]
    assert rec.frames[8].name == "frame_0009.png"
    assert rec.meta["repairs"] == ["missing frames: 1 frame number(s) absent in 1..24: 10; the frame before each "
                                   "hole repeated"]
    report = check_dataset("plain", plain_copy, read_images=False)
    found = {(p.kind, p.where): p.detail for p in report.problems}
    assert "(a recorded repair)" in found["missing frames", str(plain_copy / "s01" / "up0")]
    assert "loaders exclude the clip" in found["missing frames", str(plain_copy / "s00" / "down0")]
    assert ("frame size", str(plain_copy / "s02" / "down1")) in found
    assert len(report.records) == 70  # check counts the clips evaluate would use


def test_release_loader_repairs_a_hole_and_excludes_an_odd_frame(tmp_path: Path) -> None:
    fx = build_fixture("samm", tmp_path / "samm", render=placeholder_renderer)
    a, b = fx.rows[0], fx.rows[2]
    folder_a, folder_b = fx.clip_folders[f"{a.subject}/{a.clip_id}"], fx.clip_folders[f"{b.subject}/{b.clip_id}"]
    hole = sorted(folder_a.iterdir())[10]
    hole.unlink()
    big = sorted(folder_b.iterdir())[-3]
    cv2.imwrite(str(big), np.zeros((30, 24), np.uint8))
    clips = load_dataset("samm", fx.root, classes="all")
    reasons = {e.clip: e.reason for e in clips.excluded}
    assert f"samm/{a.subject}/{a.clip_id}" not in reasons
    repaired = next(r for r in clips if r.key == f"samm/{a.subject}/{a.clip_id}")
    assert any(x.startswith("missing frames: 1 frame number(s)") for x in repaired.meta["repairs"])
    assert reasons[f"samm/{b.subject}/{b.clip_id}"].startswith(f"frame size: {folder_b}: {big.name} is 24x30")
    report = check_dataset("samm", fx.root)
    assert ("frame size", str(folder_b)) in {(p.kind, p.where) for p in report.problems}
    assert {r.key for r in report.records} == {r.key for r in clips.records}


def test_evaluate_records_the_repairs_and_exclusions(plain_copy: Path, tmp_path: Path) -> None:
    from conftest import tiny_config
    from microexp.train.evaluate import evaluate

    (plain_copy / "s03" / "none2" / "frame_0012.png").unlink()
    for n in range(2, 20):
        (plain_copy / "s02" / "up1" / f"frame_{n:04d}.png").unlink()
    out = tmp_path / "run"
    result = evaluate(tiny_config(plain_copy, **{"train.epochs": 1}), out=out, progress=False, log=lambda _m: None)
    assert result.metrics["n_clips"] == 71 and result.metrics["n_excluded"] == 1
    assert result.metrics["n_repaired"] == 1
    excluded = pd.read_csv(out / "excluded.csv")
    assert excluded["clip"].tolist() == ["plain/s02/up1"] and excluded["reason"][0].startswith("missing frames")
    repairs = pd.read_csv(out / "repairs.csv")
    assert repairs["clip"].tolist() == ["plain/s03/none2"]
    assert repairs["repair"][0].startswith("missing frames: 1 frame number(s) absent in 1..24: 12")


# ------------------------------------------------------------------------------------------- synth

SYNTH_SMALL = ["--subjects", "1", "--clips-per-class", "1", "--classes", "positive", "--size", "16", "--no-progress"]


def test_synth_refuses_a_non_empty_out_unless_overwrite_which_clears_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--frames", "24", *SYNTH_SMALL]) == 0
    (out / "stale_subject" / "clip").mkdir(parents=True)
    err = _one_line(capsys, ["synth", "--out", str(out), "--frames", "12", *SYNTH_SMALL])
    assert f"--out {out} is not empty" in err and "--overwrite" in err
    assert main(["synth", "--out", str(out), "--frames", "12", "--overwrite", *SYNTH_SMALL]) == 0
    clips = load_dataset("synthetic", out)
    assert len(clips) == 1 and clips[0].n_frames == 12  # not 24: the earlier render's frames are gone
    assert not (out / "stale_subject").exists()
    err = _one_line(capsys, ["synth", "--layout", "samm", "--out", str(out), "--size", "16"])
    assert "is not empty" in err


def test_synth_dataset_layout_bad_options(tmp_path: Path, capsys) -> None:
    err = _one_line(capsys, ["synth", "--layout", "casme2", "--out", str(tmp_path / "a"), "--annotation",
                             str(tmp_path / "nope.xlsx")])
    assert err.endswith("nope.xlsx: annotation file not found")
    samm_file = REAL / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"
    if samm_file.exists():
        err = _one_line(capsys, ["synth", "--layout", "casme2", "--out", str(tmp_path / "b"), "--annotation",
                                 str(samm_file)])
        assert "this is the annotation file of samm, not of casme2" in err
        assert not (tmp_path / "b").exists()
    err = _one_line(capsys, ["synth", "--layout", "casme2", "--out", str(tmp_path / "c"), "--frames", "40"])
    assert "--frames has no effect with --layout casme2" in err
    err = _one_line(capsys, ["synth", "--layout", "nosuch", "--out", str(tmp_path / "d")])
    assert "unknown --layout 'nosuch' (known: plain, casme, casme2, casme3, casme_sq, samm, smic, samm_lv, casme_sq-long)" in err


def test_annotation_of_another_dataset_is_refused_by_load_and_check(casme2_tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
    shutil.copyfile(next(casme2_tree.glob("CASME2-coding-*.xlsx")), other)  # content aside, the name is SAMM's
    with pytest.raises(ConfigError, match="annotation file of samm, not of casme2"):
        load_dataset("casme2", casme2_tree, annotation=other)
    report = check_dataset("casme2", casme2_tree, annotation=other)
    assert [p.kind for p in report.problems] == ["layout"] and "annotation file of samm" in report.problems[0].detail


# ------------------------------------------------------------------------------------------------- ClipSet

def test_clipset_indexes_slices_and_iterates(blob_tree: Path) -> None:
    clips = load_dataset("plain", blob_tree)
    assert clips[0] is clips.records[0] and clips[-1] is clips.records[-1]
    assert list(clips) == clips.records
    head = clips[:5]
    assert len(head) == 5 and head.classes == clips.classes and head.records == clips.records[:5]
