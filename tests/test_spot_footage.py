"""The second renderer (landmark-anchored bumps, other faces, varied blinks, head turns, talking) and blinks as
their own events: the renderer's layout reads back through the real loader, its blinks are found as blinks, and
an eye movement that comes with a brow or mouth movement is not taken for a blink."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microexp.spot.blinks import blink_mask, blinks_of
from microexp.spot.data import load_spot_data
from microexp.spot.features import FeatureConfig, extract_features, region_masks
from microexp.synth.bumps import BumpConfig, other_faces, plan_bumps, write_bump_layout
from microexp.synth.faces import load_faces

B = BumpConfig(n_subjects=2, videos_per_subject=1, n_frames=450, fps=30.0, size=64, micro_per_video=2,
               macro_per_video=1, seed=1, turn_every_s=6.0)


@pytest.fixture(scope="module")
def lvb(tmp_path_factory) -> Path:
    return write_bump_layout(B, tmp_path_factory.mktemp("bumps"))


def test_the_second_renderer_uses_other_faces_and_reads_back(lvb):
    first = {f.name for f in load_faces(4)}
    assert not first & {f.name for f in other_faces(4)}
    data = load_spot_data("samm_lv", lvb)
    assert data.fps == 30.0 and len(data.videos) == 2
    planned = sorted((v.subject_index, e.onset, e.offset, e.type) for v in plan_bumps(B) for e in v.events)
    read = sorted((int(i.subject) - 1, i.onset, i.offset, i.type) for i in data.gt.intervals)
    assert read == planned and len(read) == 6
    side = json.loads((lvb / "distractors.json").read_text())
    assert side["renderer"] == "bumps" and set(side["videos"]) == {"001_1", "002_1"}
    for v in plan_bumps(B):  # talking and head turns keep clear of the expressions
        for a, b, *_ in v.distractors.turns + [(*t, 0) for t in v.distractors.talk]:
            assert all(b < e.onset or a > e.offset for e in v.events)
    assert plan_bumps(B)[0].distractors == plan_bumps(B)[0].distractors  # deterministic


def test_region_masks_sit_on_the_eyes_brows_and_mouth():
    from microexp.preprocess.face import TEMPLATE

    masks = region_masks(TEMPLATE * 64, 64)
    rows = [np.flatnonzero(m.any(1)) for m in masks]
    eyes, brows, mouth = rows
    assert brows.max() < eyes.min() < eyes.max() < mouth.min()  # top to bottom, disjoint
    assert not (masks[0] & masks[1]).any() and not (masks[0] & masks[2]).any()


def test_blinks_are_found_as_blinks_and_expressions_are_not(lvb):
    hits = n = 0
    for v in plan_bumps(B):
        name = f"{v.subject_index + 1:03d}_{v.video_index + 1}"
        feat = extract_features(lvb / "SAMM_longvideos" / name, (4,), 30.0, FeatureConfig(crop=64, face="none"))
        found = blinks_of(feat)
        alone = [(a, b) for a, b, _ in v.distractors.blinks
                 if all(b < e.onset or a > e.offset for e in v.events)]
        n += len(alone)
        hits += sum(any(f.onset <= b and a <= f.offset for f in found) for a, b in alone)
        # every blink event is a true blink (precision 1 here)
        assert all(any(f.onset <= b and a <= f.offset for a, b, _ in v.distractors.blinks) for f in found), name
        mask = blink_mask(feat)
        for e in v.events:  # no expression's apex is vetoed as a blink
            assert not mask[np.searchsorted(feat.numbers, e.apex)], (name, e)
    assert n >= 5 and hits / n >= 0.8


def test_blinks_reach_the_json_csv_and_table():
    from microexp.spot.api import SpotResult
    from microexp.spot.blinks import Blink
    from microexp.spot.metrics import Spot

    r = SpotResult("clip.mp4", 30.0, 300, [Spot("input", "s1", "clip", 40, 52, "micro", 0.9)], blinks=[
        Blink(100, 108, 12.5)], subject="s1", name="clip")
    body = json.loads(r.to_json())
    assert body["blinks"] == [{"type": "blink", "onset": 100, "offset": 108, "score": 12.5, "onset_s": 100 / 30,
                               "offset_s": 108 / 30}]
    assert [s["type"] for s in body["spots"]] == ["micro"]  # a blink is not a spotted expression
    assert r.to_csv().splitlines()[1:] == ["s1,clip,40,52,", "s1,clip,100,108,blink"]
    table = r.table().splitlines()
    assert "1 spotted interval(s), 1 blink(s)" in table[0] and table[2].startswith("  blink frames 100-108")


def test_the_cnn_detector_finds_the_turned_faces_hog_misses():
    """On a head turn of the second renderer (30 degrees of yaw) HOG loses the face; dlib-mmod (HOG, then dlib's
    MMOD CNN detector) finds it in every one of those frames."""
    from microexp.preprocess.face import get_backend
    from microexp.synth.bumps import render_bump_video

    config = BumpConfig(n_subjects=6, videos_per_subject=2, n_frames=600, fps=30, size=64, micro_per_video=3,
                        macro_per_video=1, neutral_videos=1, seed=21)  # the cross-renderer set of docs/spotting.md
    video = next(v for v in plan_bumps(config) if (v.subject_index, v.video_index) == (5, 1))
    assert (386, 468, -29.59) in video.distractors.turns
    import cv2

    frames: dict[int, np.ndarray] = {}

    def keep(i: int, frame: np.ndarray) -> None:  # as written to disk (JPEG quality 85)
        if 401 <= i <= 405:
            frames[i] = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], 0)

    render_bump_video(video, config, keep)
    hog, mmod = get_backend("dlib"), get_backend("dlib-mmod")
    assert [hog.detect(frames[i]) for i in range(401, 406)] == [None] * 5
    found = [mmod.detect(frames[i]) for i in range(401, 406)]
    assert all(f is not None and f.landmarks.shape == (68, 2) for f in found)


def test_synth_cli_writes_the_second_renderer_and_refuses_it_elsewhere(tmp_path, capsys):
    """`microexp synth --layout samm_lv --renderer bumps`: the second renderer's tree, its distractors and frame rate;
    any other layout with --renderer bumps is one line."""
    import json

    from microexp.cli import main
    from microexp.spot.data import load_spot_data

    out = tmp_path / "B"
    assert main(["synth", "--layout", "samm_lv", "--renderer", "bumps", "--subjects", "1", "--videos", "1",
                 "--frames", "400", "--fps", "30", "--size", "48", "--seed", "3", "--no-progress",
                 "--out", str(out)]) == 0
    assert "second renderer: bumps" in capsys.readouterr().out
    distractors = json.loads((out / "distractors.json").read_text())
    assert distractors["renderer"] == "bumps" and distractors["config"]["n_frames"] == 400
    data = load_spot_data("samm_lv", out)
    assert data.fps == 30 and len(data.videos) == 2  # one video with expressions, one neutral
    assert main(["synth", "--layout", "casme_sq-long", "--renderer", "bumps", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--renderer bumps writes the samm_lv layout only (got --layout casme_sq-long)")
