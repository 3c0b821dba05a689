"""predict on new videos / frame folders, ensembles, ONNX export parity, and bad input through the CLI.

The event test trains a tiny run on clips where a bright blob rises and falls back (up / down) or stays
still (none), like a micro-expression's onset -> apex -> offset, then predicts on a longer still video with one
up event and one down event inserted: the windows covering the events must get their classes.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import microexp
from microexp.cli import main
from microexp.config import RunConfig
from microexp.errors import ConfigError, DataError
from microexp.predict import (
    Gap,
    Prediction,
    export_onnx,
    load,
    load_onnx,
    merge_segments,
    parse_span,
    window_starts,
)
from microexp.train.evaluate import evaluate

CLIP = 16  # frames per training clip (30 fps)
SIZE = 32
AMP = 6  # px the blob moves at the apex


def _blob_frame(rng: np.random.Generator, x0: int, dy: float) -> np.ndarray:
    img = rng.normal(120, 8, (SIZE, SIZE)).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (x0, int(round(SIZE // 2 + dy))), 3, 210, -1)
    return img


def _envelope(n: int) -> np.ndarray:
    """Rise to the apex in the middle and back: 0 at the first and last frame."""
    return np.sin(np.linspace(0, np.pi, n))


def write_event_tree(root: Path, subjects: int = 4, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for label, sign in (("up", -1), ("down", 1), ("none", 0)):
            for k in range(per_class):
                clip = root / f"s{s}" / f"{label}{k}"
                clip.mkdir(parents=True)
                x0 = int(rng.integers(10, SIZE - 10))
                for t, e in enumerate(_envelope(CLIP)):
                    cv2.imwrite(str(clip / f"frame_{t + 1:04d}.png"), _blob_frame(rng, x0, sign * AMP * e))
                rows.append({"subject": f"s{s}", "clip": f"{label}{k}", "emotion": label, "onset": 1,
                             "apex": CLIP // 2, "offset": CLIP, "fps": 30})
    with open(root / "annotations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def long_video_frames(events: dict[int, int], n: int = 96, seed: int = 5) -> np.ndarray:
    """A still blob for ``n`` frames with a rise-and-fall event of sign (-1 up, +1 down) at each start."""
    rng = np.random.default_rng(seed)
    dy = np.zeros(n)
    for start, sign in events.items():
        dy[start:start + CLIP] = sign * AMP * _envelope(CLIP)
    return np.stack([_blob_frame(rng, 14, d) for d in dy])


def write_video(path: Path, frames: np.ndarray, fps: float = 30.0) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames.shape[2], frames.shape[1]),
                        frames.ndim == 4)
    for f in frames:
        w.write(f)
    w.release()
    return path


@pytest.fixture(scope="module")
def event_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_event_tree(tmp_path_factory.mktemp("events"))
    out = tmp_path_factory.mktemp("run") / "run"
    config = RunConfig(dataset="plain", root=str(root), protocol="kfold", folds=2,
                       preprocess={"frames": 20, "selection": "onset_offset",
                                   "streams": [{"name": "clip", "region": "face", "size": [SIZE, SIZE],
                                                "kind": "raw"}]},
                       train={"epochs": 6})
    result = evaluate(config, out=out, progress=False, log=lambda _m: None)
    assert result.metrics["uar"] > 0.9  # the run itself learned the events
    return out


EVENTS = {24: -1, 64: 1}  # up at frames 24-39, down at 64-79


@pytest.fixture(scope="module")
def event_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "events.avi", long_video_frames(EVENTS))


def test_window_covering_each_event_gets_its_class(event_run: Path, event_video: Path) -> None:
    predictor = load(event_run, face="none")  # blob frames: no face to detect
    assert predictor.models == ["seed0-fold1", "seed0-fold2"]  # the default is the ensemble of both folds
    result = predictor.predict(event_video, stride=4)
    # default window = the training clips' median duration (16 frames at 30 fps) at the video's 30 fps
    assert (result.window, result.stride, result.n_frames, result.fps) == (CLIP, 4, 96, 30.0)
    assert [w.start_frame for w in result.windows] == list(range(0, 96 - CLIP + 1, 4))
    by_start = {w.start_frame: w for w in result.windows}
    for start, label in ((24, "up"), (64, "down")):
        w = by_start[start]
        assert w.end_frame == start + CLIP - 1 and w.start_time == pytest.approx(start / 30)
        assert w.label == label and max(w.probabilities, key=w.probabilities.get) == label
        assert sum(w.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # windows of the still stretches well away from both events are "none"
    for start in (0, 44, 80):
        assert by_start[start].label == "none", by_start[start]
    # the merged segments place each event inside a segment of its class
    labels_at = {f: s.label for s in result.segments for f in range(s.start_frame, s.end_frame + 1)}
    assert labels_at[31] == "up" and labels_at[71] == "down" and labels_at[2] == "none"
    assert result.gaps == []


def test_frames_folder_and_arrays_give_the_same_windows(event_run: Path, tmp_path: Path) -> None:
    frames = long_video_frames(EVENTS)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), f)
    predictor = microexp.load(event_run, fold="fold1", face="none")
    assert predictor.models == ["seed0-fold1"]
    from_folder = predictor.predict(folder, window=CLIP, stride="200ms")  # 200 ms at 30 fps = 6 frames
    from_arrays = predictor.predict(frames, window="0.5333s", stride=6)
    assert from_folder.stride == 6 and from_arrays.window == CLIP
    assert [(w.start_frame, w.label) for w in from_folder.windows] == \
        [(w.start_frame, w.label) for w in from_arrays.windows]
    np.testing.assert_allclose([list(w.probabilities.values()) for w in from_folder.windows],
                               [list(w.probabilities.values()) for w in from_arrays.windows], atol=1e-6)


def test_ensemble_is_the_mean_of_the_folds(event_run: Path) -> None:
    frames = long_video_frames(EVENTS)
    both = load(event_run, face="none").predict(frames, stride=8)
    folds = [load(event_run, fold=f, face="none").predict(frames, stride=8) for f in ("fold1", "seed0-fold2")]
    for i, w in enumerate(both.windows):
        for c in both.classes:
            assert w.probabilities[c] == pytest.approx(
                (folds[0].windows[i].probabilities[c] + folds[1].windows[i].probabilities[c]) / 2, abs=1e-6)
    with pytest.raises(ConfigError, match="no checkpoint for fold 'fold9'.*fold1, fold2"):
        load(event_run, fold="fold9")


def test_onnx_export_matches_pytorch(event_run: Path, event_video: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    for fold in ("fold2", None):  # one fold, and the averaging graph of all folds
        path = export_onnx(event_run, tmp_path / f"m-{fold}.onnx", fold=fold)
        onnx_pred = load_onnx(path, face="none")
        assert onnx_pred.classes == ["down", "none", "up"] and onnx_pred.preprocess == load(event_run, face="none").preprocess
        a = load(event_run, fold=fold, face="none").predict(event_video, stride=4)
        b = onnx_pred.predict(event_video, stride=4)
        pa = np.array([[w.probabilities[c] for c in a.classes] for w in a.windows])
        pb = np.array([[w.probabilities[c] for c in b.classes] for w in b.windows])
        assert pa.shape == pb.shape == (21, 3)
        np.testing.assert_allclose(pa, pb, atol=1e-4, rtol=0)
        assert [w.label for w in a.windows] == [w.label for w in b.windows]


def test_cli_predict_table_json_csv_and_export(event_run: Path, event_video: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from microexp.predict.predictor import Predictor

    batch_sizes: list[int] = []  # what each CLI call passed on to the predictor
    real_predict = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, *a, **kw: batch_sizes.append(kw["batch_size"])
                        or real_predict(self, *a, **kw))
    assert main(["predict", str(event_video), "--run", str(event_run), "--stride", "4", "--face", "none",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "96 frames at 30 fps; window 16 frames, stride 4" in out and "segments:" in out and "gaps: none" in out
    assert main(["predict", str(event_video), "--run", str(event_run), "--stride", "4", "--json", "--face", "none",
                 "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["windows"]) == 21 and data["classes"] == ["down", "none", "up"]
    # --batch-size changes how many windows go through the model at once, not the result
    assert main(["predict", str(event_video), "--run", str(event_run), "--stride", "4", "--json", "--face", "none",
                 "--batch-size", "3", "--no-progress"]) == 0
    batched = json.loads(capsys.readouterr().out)
    assert batch_sizes == [16, 16, 3]
    assert [w["label"] for w in batched["windows"]] == [w["label"] for w in data["windows"]]
    for a, b in zip(batched["windows"], data["windows"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    assert {w["start_frame"]: w["label"] for w in data["windows"]}[24] == "up"
    assert main(["predict", str(event_video), "--run", str(event_run), "--fold", "fold1", "--csv", "--face", "none",
                 "--window", "16", "--stride", "8", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "status,start_frame,end_frame,start_time,end_time,predicted,p_down,p_none,p_up,reason"
    assert len(lines) == 1 + 11
    onnx_file = tmp_path / "run.onnx"
    if importlib.util.find_spec("onnxruntime") is not None:
        assert main(["export", str(event_run), "--onnx", str(onnx_file), "--fold", "fold1"]) == 0
        assert onnx_file.is_file() and "exported" in capsys.readouterr().out
        assert main(["predict", str(event_video), "--onnx", str(onnx_file), "--csv", "--window", "16",
                     "--face", "none", "--stride", "8", "--no-progress"]) == 0
        onnx_lines = capsys.readouterr().out.strip().splitlines()
        assert [r.split(",")[5] for r in onnx_lines] == [r.split(",")[5] for r in lines]


def test_windows_spans_segments_and_gaps_units() -> None:
    assert parse_span("100ms", 30) == 3 and parse_span("0.5s", 30) == 15 and parse_span(12, 200) == 12
    assert parse_span("12", 200) == 12 and parse_span(None, 30) is None
    with pytest.raises(ConfigError, match="--stride 'fast'"):
        parse_span("fast", 30, "--stride")
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # the last window ends on the last frame
    assert window_starts(3, 4, 2) == [0]
    classes = ["a", "b"]
    wins = [Prediction(0, 3, 0, 0.4, "a", {"a": 0.9, "b": 0.1}), Prediction(2, 5, 0.2, 0.6, "a", {"a": 0.7, "b": 0.3}),
            Prediction(8, 11, 0.8, 1.2, "b", {"a": 0.2, "b": 0.8})]
    segs = merge_segments(wins, 12, 10.0, classes)
    assert [(s.start_frame, s.end_frame, s.label) for s in segs] == [(0, 5, "a"), (8, 11, "b")]
    # frames 0-2 nearest the first window's centre (1.5), 3-5 the second's (3.5)
    assert segs[0].probability == pytest.approx((0.9 * 3 + 0.7 * 3) / 6)
    from microexp.predict import find_gaps

    gaps = find_gaps(wins, [(4, 7, "no face detected"), (6, 9, "no face detected")], 12, 10.0)
    assert gaps == [Gap(6, 7, 0.6, 0.8, "no face detected")]


# ------------------------------------------------------------------------------------------------- bad input
def _one_line_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    code = main([*args, "--no-progress"] if args[0] == "predict" else args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_naming_it(event_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video\n" * 20)
    err = _one_line_error(capsys, ["predict", str(junk), "--run", str(event_run)])
    assert err == f"microexp predict: error: {junk}: cannot read video (not a video file, or a codec neither " \
                  "OpenCV nor PyAV decodes)"
    empty = tmp_path / "empty.mp4"
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 32), False)
    w.release()  # a header without frames
    assert f"{empty}: video has no frames" in _one_line_error(capsys, ["predict", str(empty), "--run", str(event_run)])
    zero = tmp_path / "zero.avi"
    zero.touch()
    assert f"{zero}: empty file (0 bytes)" in _one_line_error(capsys, ["predict", str(zero), "--run", str(event_run)])
    missing = tmp_path / "nope.mov"
    assert f"{missing}: no such file" in _one_line_error(capsys, ["predict", str(missing), "--run", str(event_run)])
    assert "--batch-size 0" in _one_line_error(capsys, ["predict", str(missing), "--run", str(event_run),
                                                         "--batch-size", "0"])
    video = write_video(tmp_path / "v.avi", long_video_frames({}, n=20))
    bare = tmp_path / "bare-run"
    bare.mkdir()
    (bare / "config.yaml").write_text("model: stcnn\n")
    assert f"{bare}: no checkpoint in this run directory" in _one_line_error(
        capsys, ["predict", str(video), "--run", str(bare)])
    assert f"{tmp_path / 'norun'}: run directory does not exist" in _one_line_error(
        capsys, ["predict", str(video), "--run", str(tmp_path / "norun")])
    assert f"{bare}: no checkpoint" in _one_line_error(capsys, ["export", str(bare), "--onnx", str(tmp_path / "x.onnx")])
    short = write_video(tmp_path / "short.avi", long_video_frames({}, n=20)[:1])
    # one frame is enough for uniform resampling; a window longer than the video shrinks to it
    assert load(event_run, fold="fold1", face="none").predict(short).window == 1
    with pytest.raises(DataError, match="no frames given"):
        load(event_run, fold="fold1").predict(np.zeros((0, 8, 8), np.uint8))


@pytest.mark.parametrize("normalise", ["zscore", "global"])
def test_predict_reproduces_the_runs_own_test_predictions(event_run: Path, normalise: str,
                                                          tmp_path: Path) -> None:
    """One preprocessing path: a test clip's folder predicted as a single window gives exactly the
    probabilities evaluate recorded for it (global normalisation: with the fold's saved training statistics)."""
    import pandas as pd

    config = RunConfig.from_yaml(event_run / "config.yaml")
    run = event_run
    if normalise != "zscore":
        run = tmp_path / "run"
        config.preprocess["normalise"] = normalise
        config.train.epochs = 2
        evaluate(config, out=run, progress=False, log=lambda _m: None)
    preds = pd.read_csv(run / "predictions.csv")
    checked = 0
    for row in preds.groupby("fold").head(3).itertuples():
        predictor = load(run, fold=row.fold, face="none")
        assert predictor.preprocess.normalise == normalise
        result = predictor.predict(Path(config.root) / row.subject / row.clip_id, window=CLIP)
        assert len(result.windows) == 1 and (result.windows[0].start_frame, result.windows[0].end_frame) == (0, 15)
        got = result.windows[0].probabilities
        for c in result.classes:
            assert got[c] == pytest.approx(getattr(row, f"p_{c}"), abs=1e-5)
        checked += 1
    assert checked == 6


@pytest.mark.parametrize(("model", "overrides", "params"), [
    ("ststnet", {}, {}), ("twostream", {"frames": 24}, {"widths": [8, 16, 32], "dense": 16})])
def test_onnx_export_of_multi_input_models_matches_pytorch(model: str, overrides: dict, params: dict,
                                                          tmp_path: Path) -> None:
    """Flow+strain and two-stream (clip + saliency) models, with a fitted global normaliser baked into the graph:
    onnxruntime's probabilities equal PyTorch's on the same preprocessed inputs."""
    pytest.importorskip("onnxruntime")
    import torch

    from microexp.models import registry
    from microexp.preprocess.config import PreprocessConfig

    spec = registry.get(model)
    pconf = PreprocessConfig.from_dict({**spec.preprocess.to_dict(), **overrides, "normalise": "global"})
    streams = [s.name for s in pconf.streams]
    torch.manual_seed(0)
    net = spec.build(3, pconf, **params)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": model, "model_params": params, "state_dict": net.state_dict(), "preprocess": pconf.to_dict(),
                "classes": ["a", "b", "c"], "seed": 0, "fold": "fold1", "epoch": 1, "microexp_version": "test",
                "normaliser": {"mean": dict.fromkeys(streams, 0.25), "scale": dict.fromkeys(streams, 3.0)},
                "clip": None}, run / "checkpoints" / "seed0-fold1.pt")
    onnx_file = export_onnx(run, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    x = {s: rng.normal(size=(3, *pconf.stream_shape(s))).astype(np.float32) for s in streams}
    torch_p = load(run).probabilities(x)
    onnx_p = load_onnx(onnx_file).probabilities(x)
    assert torch_p.shape == (3, 3)
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4, rtol=0)
    # the normaliser is part of both: without it the probabilities differ
    plain = load(run)
    plain.checkpoints[0].data["normaliser"] = {"mean": dict.fromkeys(streams, 0.0), "scale": dict.fromkeys(streams, 1.0)}
    assert np.abs(plain.probabilities(x) - torch_p).max() > 1e-3
