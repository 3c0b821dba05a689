"""Fixture trees in the real layouts load back to exactly the annotated records, pass ``data check``, and every
planted fault is named. Trees mirroring the real annotation files are built once per module (fast placeholder
frames); the small generated trees use the default renderer."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from _real import REAL
from microexp.data import megc2019
from microexp.data.check import check_dataset, hints
from microexp.data.registry import load_dataset
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.pipeline import select_positions
from microexp.synth import fixtures
from microexp.synth.fixtures import Fixture, build_fixture, placeholder_renderer

REAL_FILES = {
    "casme2": REAL / "casme2" / "CASME2-coding-20190701.xlsx",
    "samm": REAL / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx",
    "smic": REAL / "megc2019" / "combined_3class_gt.csv",  # SMIC has no annotation: the GT lists its clips
    "casme_sq": REAL / "casme_sq" / "CAS(ME)^2code_final(Updated).csv",
    "casme": None,  # no public CASME annotation: generated from docs/datasets.md
    "casme3": REAL / "casme3" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
}
EXPECTED_CLIPS = {"casme2": 255, "samm": 159, "smic": 164, "casme_sq": 357, "casme": 12, "casme3": 859}


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    """Trees mirroring the real files hold ~70k tiny frames: on tmpfs when there is one (10x faster on a busy disk)."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="microexp-data-", dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) \
        else tmp_path_factory.mktemp("real")
    cache: dict[str, Fixture] = {}

    def get(layout: str) -> Fixture:
        if layout not in cache:
            ann = REAL_FILES[layout]
            if ann is not None and not ann.exists():
                pytest.skip(f"{ann} not available")
            cache[layout] = build_fixture(layout, base / layout, ann, render=placeholder_renderer)
        return cache[layout]

    yield get
    shutil.rmtree(base, ignore_errors=True)


def _expected(fx: Fixture) -> dict[tuple[str, str], tuple]:
    return {(r.subject, r.clip_id): (r.emotion, r.onset, r.apex, r.offset) for r in fx.rows}


@pytest.mark.parametrize("layout", list(REAL_FILES))
def test_fixture_from_real_annotation_loads_back_exactly(real_tree, layout):
    fx = real_tree(layout)
    clipset = load_dataset(layout, fx.root, classes="all")
    assert len(clipset) == EXPECTED_CLIPS[layout] == len(fx.rows)
    got = {(r.subject, r.clip_id): (r.emotion, r.onset, r.apex, r.offset) for r in clipset.records}
    assert got == _expected(fx)
    for rec in clipset.records:
        end = rec.offset if rec.offset is not None else rec.apex
        assert rec.frame_numbers == tuple(range(rec.onset, end + 1)), rec.key  # absolute numbers, true order
        assert rec.frames[0].parent == fx.clip_folders[f"{rec.subject}/{rec.clip_id}"]
    # only the release's own known errors are excluded (CAS(ME)^3 v2: one row with onset after offset)
    assert [e.clip for e in clipset.excluded] == (["casme3/spNO.216/d_3647"] if layout == "casme3" else [])


@pytest.mark.parametrize("layout", list(REAL_FILES))
def test_data_check_passes_on_real_fixture(real_tree, layout):
    fx = real_tree(layout)
    report = check_dataset(layout, fx.root, read_images=layout in ("samm", "smic", "casme"))
    assert report.ok, report.text()
    assert len(report.records) == EXPECTED_CLIPS[layout]
    assert sum(report.per_class().values()) == EXPECTED_CLIPS[layout]


def test_frame_selection_on_every_loader(real_tree):
    modes = {m: PreprocessConfig(selection=m) for m in ("whole", "onset_offset", "onset_apex", "keyframes")}
    for layout in REAL_FILES:
        for rec in load_dataset(layout, real_tree(layout).root, classes="all").records:
            n = rec.n_frames
            on, ap = rec.position(rec.onset), rec.position(rec.apex)
            assert select_positions(rec, modes["whole"]) == list(range(n))
            assert select_positions(rec, modes["onset_offset"]) == list(range(on, n if rec.offset is None else
                                                                             rec.position(rec.offset) + 1))
            assert select_positions(rec, modes["onset_apex"]) == list(range(on, ap + 1))
            keys = select_positions(rec, modes["keyframes"])
            assert keys[:2] == [on, ap] and keys == sorted(keys)


def test_smic_frames_in_numeric_order_and_non_micro_ignored(real_tree):
    fx = real_tree("smic")
    clipset = load_dataset("smic", fx.root)
    assert clipset.counts() == {"negative": 70, "positive": 51, "surprise": 43}
    assert len(set(clipset.subjects)) == 16
    rec = clipset.records[0]
    assert [p.name for p in rec.frames] == [f"reg_image{n:06d}.bmp" for n in rec.frame_numbers]
    assert all("non_micro" not in str(r.frames[0]) for r in clipset.records)


def test_class_protocols_through_load_dataset(real_tree):
    assert load_dataset("casme2", real_tree("casme2").root).counts() == {
        "happiness": 32, "disgust": 63, "repression": 27, "surprise": 28, "others": 99}
    samm5 = load_dataset("samm", real_tree("samm").root)
    assert len(samm5) == 136 and len(samm5.excluded) == 23
    assert load_dataset("casme3", real_tree("casme3").root, classes="casme3-4").counts()["negative"] == 457 - 0
    seed = load_dataset("casme_sq", real_tree("casme_sq").root, classes="casme_sq-seed")
    assert seed.classes == ("angry", "happy", "disgust") and len(seed) == 357


@pytest.fixture(scope="module")
def megc_root(real_tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("megc")
    for name, layout in (("CASME2", "casme2"), ("SMIC", "smic"), ("SAMM", "samm")):
        fx = real_tree(layout)
        (root / name).symlink_to(fx.root.parent if layout == "smic" else fx.root, target_is_directory=True)
    shutil.copyfile(REAL_FILES["smic"], root / "combined_3class_gt.csv")
    return root


def _megc_counts(clipset) -> dict:
    return {ds: Counter(r.label for r in clipset.records if r.dataset == ds) for ds in megc2019.SOURCES}


def test_megc2019_composite_from_three_roots(megc_root, tmp_path):
    clipset = load_dataset("megc2019", megc_root)
    assert len(clipset) == 442 and len(set(clipset.subjects)) == 68
    assert clipset.counts() == {"negative": 250, "positive": 109, "surprise": 83}
    counts = _megc_counts(clipset)
    assert counts["casme2"] == {"negative": 88, "positive": 32, "surprise": 25}
    assert counts["smic"] == {"negative": 70, "positive": 51, "surprise": 43}
    assert counts["samm"] == {"negative": 92, "positive": 26, "surprise": 15}
    rec = next(r for r in clipset.records if r.dataset == "smic")
    assert (rec.subject, rec.clip_id, rec.meta["gt_subject"], rec.meta["gt_filename"]) == \
        ("smic_s1", "s1_ne_01", "s01", "s01_ne_01")
    assert next(r for r in clipset.records if r.dataset == "samm").subject == "samm_006"
    # a .yaml naming the roots, and no GT file (composite derived from the datasets' labels): same clips and labels
    spec = tmp_path / "megc.yaml"
    spec.write_text(yaml.safe_dump({k: str(megc_root / v) for k, v in
                                    (("casme2", "CASME2"), ("smic", "SMIC"), ("samm", "SAMM"))}))
    derived = load_dataset("megc2019", spec)
    assert {(r.key, r.label) for r in derived.records} == {(r.key, r.label) for r in clipset.records}
    assert all(r.meta["label_source"] == "derived" for r in derived.records)
    assert check_dataset("megc2019", megc_root, read_images=False).ok


# ------------------------------------------------------------------------------------------------ planted faults

def _unique_folder_rows(fx: Fixture) -> list:
    uses = Counter(fx.clip_folders[f"{r.subject}/{r.clip_id}"] for r in fx.rows)
    return [r for r in fx.rows if uses[fx.clip_folders[f"{r.subject}/{r.clip_id}"]] == 1]


def _frames_of(folder: Path, row) -> list[Path]:
    from microexp.data._common import numbered_frames

    frames, numbers = numbered_frames(folder)
    end = row.offset if row.offset is not None else row.apex
    return [p for p, n in zip(frames, numbers, strict=True) if row.onset <= n <= end]


NEW_ROWS = {  # a row whose clip folder does not exist
    "casme2": dict(subject="sub02", clip_id="EP99_01"), "samm": dict(subject="006", clip_id="006_9_9"),
    "casme": dict(subject="sub02", clip_id="EP09_9"), "casme3": dict(subject="spNO.99", meta={"video": "c"}),
    "casme_sq": dict(meta={"participant": 5, "type": "micro-expression", "self_report": "anger", "video": "anger1"}),
}
STRAY = {  # a folder no row refers to
    "casme2": "Cropped/sub02/EP77_07", "samm": "SAMM/006/006_7_7", "casme": "Cropped/sub02/EP07_7",
    "casme3": "part_A/data/part_A_split/part_A/spNO.77/b/color", "casme_sq": "rawpic/s15/15_0102eatingworms",
}


@pytest.mark.parametrize("layout", ["casme2", "samm", "casme", "casme3", "casme_sq"])
def test_data_check_names_six_planted_faults(tmp_path, layout):
    fx = build_fixture(layout, tmp_path / layout)  # generated annotation, default (synthetic) renderer
    assert check_dataset(layout, fx.root).ok
    a, b, c, d = _unique_folder_rows(fx)[:4]
    # 1. delete a clip folder
    gone = fx.clip_folders[f"{a.subject}/{a.clip_id}"]
    shutil.rmtree(gone)
    # 2. delete a middle frame
    frames_b = _frames_of(fx.clip_folders[f"{b.subject}/{b.clip_id}"], b)
    hole = frames_b[len(frames_b) // 2]
    hole.unlink()
    # 3. corrupt an image
    bad = _frames_of(fx.clip_folders[f"{c.subject}/{c.clip_id}"], c)[0]
    bad.write_bytes(b"not an image")
    # 4. an annotation row with no folder, 6. an unknown label (rewrite the annotation in its format)
    rows = list(fx.rows)
    new = type(d)(**{**vars(d), "meta": dict(d.meta), **NEW_ROWS[layout]})
    if layout == "casme3":
        new.clip_id = f"c_{new.onset}"
    if layout == "casme_sq":
        new.subject, new.clip_id = "s21", "anger1_1"
    rows.append(new)
    d.emotion = "joy"
    fixtures.write_annotation(layout, fx.annotation, rows)
    # 5. a folder with no row
    stray = fx.root / STRAY[layout]
    stray.mkdir(parents=True)
    (stray / ("img1.jpg" if layout != "samm" else "006_00001.jpg")).write_bytes((hole.parent / frames_b[0].name)
                                                                                   .read_bytes())
    report = check_dataset(layout, fx.root)
    assert not report.ok
    text = report.text(limit=100)
    found = {(p.kind, p.where) for p in report.problems}
    assert ("missing clip folder", str(gone)) in found, text
    assert any(k == "missing frames" and w == str(hole.parent) for k, w in found), text
    assert ("unreadable image", str(bad)) in found, text
    assert any(k == "missing clip folder" and w != str(gone) for k, w in found), text  # the row with no folder
    if layout in ("casme3", "casme_sq"):  # long-video trees: a video without expressions is only a note
        assert f"long video with no annotated expression: {stray}" in \
            report.notes, text
    else:
        assert ("folder with no row", str(stray)) in found, text
    assert any(p.kind == "unknown label" and "'joy'" in p.detail for p in report.problems), text
    missing = next(p for p in report.problems if p.kind == "missing frames")
    assert str(int(''.join(ch for ch in hole.stem.split('-')[-1].split('_')[-1] if ch.isdigit()))) in missing.detail


def test_smic_planted_faults(tmp_path):
    fx = build_fixture("smic", tmp_path / "smic")
    assert check_dataset("smic", fx.root).ok
    clips = list(fx.clip_folders.values())
    frames = sorted(clips[0].iterdir())
    frames[len(frames) // 2].unlink()  # middle frame
    bad = sorted(clips[1].iterdir())[0]
    bad.write_bytes(b"\x00garbage")
    odd = fx.root / "HS" / "s1" / "micro" / "happy" / "s1_ha_01"  # a label SMIC does not have
    shutil.copytree(clips[2], odd)
    empty = fx.root / "HS" / "s3" / "micro" / "negative" / "s3_ne_09"
    empty.mkdir(parents=True)
    report = check_dataset("smic", fx.root)
    kinds = {(p.kind, p.where) for p in report.problems}
    assert ("missing frames", str(clips[0])) in kinds
    assert ("unreadable image", str(bad)) in kinds
    assert any(p.kind == "unknown label" and "'happy'" in p.detail for p in report.problems)
    assert ("missing frames", str(empty)) in kinds


def test_hints_for_wrong_level_and_wrong_dataset(real_tree, tmp_path):
    fx = real_tree("samm")
    parent = tmp_path / "downloads"
    parent.mkdir()
    (parent / "SAMM_release").symlink_to(fx.root, target_is_directory=True)
    report = check_dataset("samm", parent)
    assert not report.ok and any("try --root" in h and "SAMM_release" in h for h in report.hints), report.text()
    subject = fx.root / "SAMM" / "006"
    report = check_dataset("samm", subject)
    assert any("subject folder" in h for h in report.hints), report.text()
    report = check_dataset("casme2", fx.root)
    assert any("looks like samm" in h and "--dataset samm" in h for h in report.hints), report.text()
    clip = next(iter(fx.clip_folders.values()))
    assert any("clip folder" in h for h in hints("samm", clip))


# ------------------------------------------------------------------------------------------- other tree variants

def _keys(clipset) -> set[tuple]:
    return {(r.subject, r.clip_id, r.emotion, r.onset, r.apex, r.offset, r.frame_numbers) for r in clipset.records}


def test_raw_trees_and_tree_choice(tmp_path):
    cropped = build_fixture("casme2", tmp_path / "c2", render=placeholder_renderer)
    raw = build_fixture("casme2", tmp_path / "c2", render=placeholder_renderer, raw=True)  # same release folder
    both = load_dataset("casme2", cropped.root, classes="all")
    assert all(r.frames[0].name.startswith("reg_img") for r in both.records)  # Cropped preferred
    only_raw = load_dataset("casme2", raw.root / "CASME2_RAW_selected", classes="all")  # pick a tree by pointing at it
    assert all(r.frames[0].name.startswith("img") for r in only_raw.records)
    assert _keys(both) == _keys(only_raw)
    smic_raw = build_fixture("smic", tmp_path / "smic", render=placeholder_renderer, raw=True)
    recs = load_dataset("smic", smic_raw.root).records
    assert recs and all(r.frames[0].name.startswith("image") for r in recs)
    assert _keys(load_dataset("smic", smic_raw.root.parent)) == _keys(load_dataset("smic", smic_raw.root / "HS"))


def test_casme3_me_clip_package_and_casme_sq_cropped_tree(tmp_path):
    full = build_fixture("casme3", tmp_path / "c3", render=placeholder_renderer)
    expected = load_dataset("casme3", full.root, classes="all")
    pkg = tmp_path / "c3clips"
    frame_dir = pkg / "Part_A_ME_clip" / "frame"
    for r in expected.records:  # the ME-clip package: spNo.<k>_<video>_<onset>/<N>.jpg ('spNo', as released)
        dest = frame_dir / f"spNo.{r.subject.split('.')[1]}_{r.meta['video']}_{r.onset}"
        dest.mkdir(parents=True)
        for p in r.frames:
            shutil.copyfile(p, dest / p.name)
    shutil.copyfile(full.annotation, pkg / full.annotation.name)
    assert _keys(load_dataset("casme3", pkg, classes="all")) == _keys(expected)

    sq = build_fixture("casme_sq", tmp_path / "sq", render=placeholder_renderer)
    spans = load_dataset("casme_sq", sq.root, classes="all")
    for r in spans.records:  # cropped/<NN>/<expression>/img<N>.jpg: no 's' on the subject folder
        dest = sq.root / "cropped" / r.subject[1:] / r.clip_id
        dest.mkdir(parents=True)
        for p, n in zip(r.frames, r.frame_numbers, strict=True):
            shutil.copyfile(p, dest / f"img{n}.jpg")
    assert _keys(load_dataset("casme_sq", sq.root / "cropped", annotation=sq.annotation, classes="all")) == \
        _keys(spans)
    assert any(r.offset is None and r.meta["repairs"] for r in spans.records)  # offset 0 -> ends at apex
    assert {r.subject for r in spans.records} == {"s15", "s19", "s40"}
    assert any("23_0502funnyerrors" in str(r.frames[0]) for r in spans.records)  # s19 quirk matched by video code
