"""Clip records and the plain-layout reader: exact records back, and one clear error per malformed input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from microexp.data.classes import ClassProtocol
from microexp.data.frames import list_frames
from microexp.data.plain import load_plain
from microexp.data.registry import load_dataset
from microexp.errors import AnnotationError, DataError


def test_plain_tree_loads_every_clip(blob_tree: Path) -> None:
    records, excluded = load_plain(blob_tree)
    assert len(records) == 6 * 3 * 4 and excluded == []
    r = next(r for r in records if r.subject == "s03" and r.clip_id == "down2")
    assert r.emotion == "down" and r.label == "down"
    assert (r.onset, r.apex, r.offset, r.fps) == (1, 12, 24, 30.0)
    assert r.frame_numbers == tuple(range(1, 25)) and r.frames[0].name == "frame_0001.png"
    assert r.key == "plain/s03/down2" and r.position(12) == 11


def test_frames_sort_numerically_not_by_name(tmp_path: Path) -> None:
    for n in (10, 9, 100, 1):
        (tmp_path / f"img{n}.jpg").write_bytes(b"x")
    frames, numbers = list_frames(tmp_path)
    assert numbers == (1, 9, 10, 100)
    assert [f.name for f in frames] == ["img1.jpg", "img9.jpg", "img10.jpg", "img100.jpg"]


def test_class_protocol_maps_and_lists_exclusions(blob_tree: Path) -> None:
    records, _ = load_plain(blob_tree)
    protocol = ClassProtocol("moving", ("moving", "still"), {"up": "moving", "down": "moving", "none": None})
    clips = protocol.apply(records)
    assert clips.counts() == {"moving": 48, "still": 0}
    assert len(clips.excluded) == 24 and "not used by class protocol moving" in clips.excluded[0].reason
    assert list(clips.targets[:2]) == [0, 0]


def test_identity_protocol_through_registry(blob_tree: Path) -> None:
    clips = load_dataset("plain", blob_tree)
    assert clips.classes == ("down", "none", "up") and len(clips) == 72 and len(set(clips.subjects)) == 6


def _copy(tree: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    shutil.copytree(tree, dst)
    return dst


@pytest.mark.parametrize(
    ("edit", "error", "needle"),
    [
        (lambda t: t.drop(columns=["onset"]), AnnotationError, "missing column(s) ['onset']"),
        (lambda t: t.assign(apex=["x"] + list(t.apex[1:])), AnnotationError, "row 2, column 'apex': 'x' is not"),
        (lambda t: pd.concat([t, t.iloc[[5]]]), AnnotationError, "row 74, column 'clip': duplicate clip"),
        (lambda t: t.assign(offset=[99] + list(t.offset[1:])), AnnotationError, "offset frame 99 is not among"),
    ],
)
def test_malformed_annotation_names_file_row_column(blob_tree: Path, tmp_path: Path, edit, error, needle) -> None:
    tree = _copy(blob_tree, tmp_path)
    ann = tree / "annotations.csv"
    edit(pd.read_csv(ann, dtype=str)).to_csv(ann, index=False)
    with pytest.raises(error) as info:
        load_plain(tree)
    assert str(ann) in str(info.value) and needle in str(info.value)


def test_missing_root_empty_tree_and_empty_clip_folder(blob_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_plain(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        load_plain(tmp_path / "empty")
    tree = _copy(blob_tree, tmp_path)
    for f in (tree / "s01" / "up0").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"s01/up0: clip folder has no frames"):
        load_plain(tree)
