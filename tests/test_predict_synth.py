"""A known micro-expression inserted into a longer neutral video of a real face (microexp.synth): a small
flow model (STSTNet, onset->apex optical flow + strain) trained on synthetic clips finds each event in the
window that starts at it, and calls the neutral stretches neutral."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microexp.config import RunConfig
from microexp.predict import load
from microexp.synth import SynthConfig, generate, load_faces, render_clip, write_plain
from microexp.train.evaluate import evaluate

RENDER = {"fps": 30.0, "size": (64, 64), "intensity": 2.5, "blink": False}


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = generate(SynthConfig(n_subjects=4, clips_per_class=4, classes=("positive", "surprise", "neutral"),
                                 n_frames=24, seed=0, **RENDER))
    root = write_plain(clips, tmp_path_factory.mktemp("synth"))
    out = tmp_path_factory.mktemp("synth-run") / "run"
    config = RunConfig(dataset="plain", root=str(root), protocol="holdout", test_size=0.25, model="ststnet",
                       preprocess={"flow": "farneback", "flow_size": 56},
                       train={"epochs": 20, "lr": 0.05, "momentum": 0.9, "batch_size": 8})
    result = evaluate(config, out=out, progress=False, log=lambda _m: None)
    assert result.metrics["uar"] > 0.6  # chance 0.33
    return out


def test_event_window_gets_the_event_class(synth_run: Path) -> None:
    face = load_faces(5)[4]  # a face none of the 4 training subjects has
    # 96 frames, still head: neutral, a smile (AU6+12) with onset at frame 19 (0-based), neutral, then a brow
    # raise (AU1+2) with onset at 67; each event lasts 11 frames (rise 5, fall 5)
    smile = render_clip(face, "6+12", n_frames=48, onset=20, apex=25, offset=30, seed=3, jitter=0.0, **RENDER)
    brows = render_clip(face, "1+2", n_frames=48, onset=20, apex=25, offset=30, seed=4, jitter=0.0, **RENDER)
    frames = np.concatenate([smile.frames, brows.frames])
    result = load(synth_run, face="none").predict(frames, stride=2)  # face crops already
    assert result.n_frames == 96 and result.gaps == []
    by_start = {w.start_frame: w for w in result.windows}
    for start, label in ((20, "positive"), (68, "surprise")):  # the windows starting 1 frame after each onset
        w = by_start[start]
        assert max(w.probabilities, key=w.probabilities.get) == label, w
    # windows clear of both events (by 2 frames) see a still face
    still = [w for w in result.windows if w.end_frame < 17 or 32 <= w.start_frame and w.end_frame < 65
             or w.start_frame >= 80]
    assert len(still) >= 14 and sum(w.label == "neutral" for w in still) >= 0.9 * len(still)
    events = {(s.label, s.start_frame // 4) for s in result.segments if s.label != "neutral"}
    assert {label for label, _ in events} == {"positive", "surprise"}


def test_progress_callback_counts_frames_and_input_errors_name_the_input_as_given(synth_run: Path, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    from microexp.errors import InputError, UnusableInputError

    face = load_faces(5)[4]
    frames = render_clip(face, "6+12", n_frames=30, onset=8, apex=13, offset=18, seed=3, jitter=0.0, **RENDER).frames
    calls: list[tuple[int, int | None]] = []
    predictor = load(synth_run, face="none")
    predictor.predict(frames, stride=4, progress_callback=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 30) for i in range(1, 31)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with pytest.raises(InputError) as err:
        predictor.predict("notes.mp4")
    assert err.value.source == "notes.mp4" and str(err.value).startswith("notes.mp4: cannot read video")
    blank = np.full((20, 64, 64), 128, np.uint8)  # decodes, shows no face
    with pytest.raises(UnusableInputError) as err2:
        load(synth_run, face="dlib").predict(blank, fps=30)
    assert err2.value.source == "<frames>" and err2.value.reason.startswith("no face detected")


def test_explain_window_averages_the_runs_checkpoints_on_one_window(synth_run: Path, tmp_path: Path) -> None:
    import cv2

    from microexp.explain import explain_window
    from microexp.predict.windows import clip_record

    face = load_faces(5)[4]
    frames = render_clip(face, "6+12", n_frames=24, onset=6, apex=11, offset=16, seed=3, jitter=0.0, **RENDER).frames
    paths = []
    for i, f in enumerate(frames):
        paths.append(tmp_path / f"f{i:03d}.png")
        cv2.imwrite(str(paths[-1]), f)
    predictor = load(synth_run, face="none")
    record = clip_record(paths, 0, 30.0, "clip")
    models: dict = {}
    files = explain_window([c.path for c in predictor.checkpoints], record, predictor.classes.index("positive"),
                           tmp_path / "out" / "w", "clip | positive", preprocess=predictor.preprocess.to_dict(),
                           models=models)
    assert [f.name for f in files] == ["w.png", "w.gif"] and all(f.stat().st_size > 1000 for f in files)
    assert len(models) == len(predictor.checkpoints)  # loaded once, kept for the next window
