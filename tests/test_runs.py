"""The run directory (microexp.runs): the one checkpoint policy (a malicious pickle is refused by every loader),
one global normalisation for training, explain and predict, run files honouring the umask, and the bad inputs of
predict / export / report / explain / evaluate outputs: one line naming the file or value, exit 2."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_config
from microexp import runs
from microexp.cli import main
from microexp.errors import ConfigError, DataError, PreprocessError
from microexp.fileio import write_atomic
from microexp.preprocess.normalise import GlobalNormaliser
from microexp.train.evaluate import evaluate


class Evil:
    """Unpickling this calls os.mkdir(marker): what a checkpoint from a stranger could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


@pytest.fixture(scope="module")
def run_dir(blob_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run trained on blob clips (face: none, like CASME II's ready-made crops)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    evaluate(tiny_config(blob_tree, **{"train.epochs": 1}), out=out, progress=False, log=lambda _m: None)
    return out


def _one_line(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    return err


def _noise_video(path: Path, n: int = 30, fps: float = 30) -> Path:
    rng = np.random.default_rng(1)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (96, 80), False)
    for _ in range(n):
        w.write(rng.normal(128, 30, (80, 96)).clip(0, 255).astype(np.uint8))
    w.release()
    return path


# --------------------------------------------------------------------------------------------------- checkpoints
def test_a_malicious_checkpoint_is_refused_by_every_loader(run_dir: Path, tmp_path: Path) -> None:
    from microexp.explain.saliency import load_model
    from microexp.predict import export_onnx, load

    marker = tmp_path / "pwned"
    evil_run = tmp_path / "evil"
    # an older run's .pt (safetensors files hold no code; the legacy loader is the one to attack)
    path = runs.checkpoint_path(evil_run, 0, "fold1").with_suffix(runs.LEGACY_SUFFIX)
    path.parent.mkdir(parents=True)
    good = runs.load_checkpoint(runs.checkpoint_files(run_dir)[0])
    torch.save({**good, "payload": Evil(marker)}, path)
    # the control: an unsafe load runs the payload, so the refusals below are real
    torch.load(path, weights_only=False)
    assert marker.is_dir()
    marker.rmdir()
    for attempt in (lambda: runs.load_checkpoint(path), lambda: load(evil_run), lambda: load_model(path),
                    lambda: export_onnx(evil_run, tmp_path / "m.onnx")):
        with pytest.raises(DataError, match=f"{path}: not a readable microexp checkpoint"):
            attempt()
        assert not marker.exists()
    # a genuine checkpoint passes the same loader
    assert set(runs.CHECKPOINT_KEYS) <= set(good) and good["model"] == "stcnn"


def test_checkpoints_are_found_and_read_in_one_place(run_dir: Path) -> None:
    found = runs.find_checkpoints(run_dir)
    assert [c.name for c in found] == ["seed0-fold1", "seed0-fold2", "seed0-fold3"]
    assert [c.fold for c in runs.read_checkpoints(run_dir, "fold2")] == ["fold2"]
    assert runs.checkpoint_path(run_dir, 0, "casme2/sub01").name == "seed0-casme2__sub01.safetensors"
    run = runs.load_run(run_dir)
    assert run["metrics"]["n_folds"] == 3 and run["config"]["model"] == "stcnn"
    assert len(run["predictions"]) == run["metrics"]["n_clips"] == 72


# ------------------------------------------------------------------------------------------------- normalisation
def test_training_explain_and_predict_normalise_equally(monkeypatch: pytest.MonkeyPatch) -> None:
    """The three paths that apply the global normalisation give equal arrays, a constant stream included
    (its zero scale is 1.0 everywhere; the former training code clamped it to 1e-6)."""
    from microexp.explain import saliency
    from microexp.predict import member_class
    from microexp.preprocess import pipeline
    from microexp.preprocess.config import PreprocessConfig

    rng = np.random.default_rng(0)
    streams = {"clip": rng.normal(3, 2, (6, 1, 4, 8, 8)).astype(np.float32),
               "flat": np.full((6, 2, 1, 8, 8), 0.5, np.float32)}
    rows = np.array([0, 2, 3, 5])
    # training: fitted on the training rows of the torch inputs (as run_fold does)
    inputs = {k: torch.from_numpy(v) for k, v in streams.items()}
    norm = GlobalNormaliser().fit(inputs, rows)
    assert norm.scale["flat"] == 1.0 and norm.mean["flat"] == pytest.approx(0.5)
    assert norm.mean["clip"] == pytest.approx(float(streams["clip"][rows].astype(np.float64).mean()), abs=1e-9)
    training = {k: v.numpy() for k, v in norm.transform(inputs).items()}
    assert all(v.dtype == np.float32 for v in training.values())
    ckpt = {"preprocess": PreprocessConfig().to_dict(), "normaliser": norm.to_dict()}
    # explain: one clip (row 4, a test row) through clip_inputs with the checkpoint's statistics
    monkeypatch.setattr(pipeline, "preprocess_clip", lambda record, config: {k: v[4] for k, v in streams.items()})
    explained = {k: v[0].numpy() for k, v in saliency.clip_inputs(None, ckpt).items()}  # type: ignore[arg-type]
    # predict: the checkpoint's member module, with a model that returns what it was given
    seen: dict[str, torch.Tensor] = {}

    class Capture(torch.nn.Module):
        def forward(self, **kw: torch.Tensor) -> torch.Tensor:
            seen.update(kw)
            return torch.zeros(len(next(iter(kw.values()))), 2)

    member = member_class()(Capture(), ["clip", "flat"], norm.to_dict())
    member(*(torch.from_numpy(streams[k]) for k in ("clip", "flat")))
    for name in streams:
        np.testing.assert_array_equal(explained[name], training[name][4])
        np.testing.assert_array_equal(seen[name].numpy(), training[name])
        np.testing.assert_array_equal(GlobalNormaliser.from_dict(norm.to_dict()).transform(streams)[name],
                                      training[name])
    np.testing.assert_array_equal(training["flat"], 0.0)


# ------------------------------------------------------------------------------------------------------- umask
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_and_cache_entries_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from microexp.preprocess.cache import ClipCache

    old = os.umask(umask)
    try:
        runs.write_metrics(tmp_path, {"uf1": 1.0})
        runs.write_config(tmp_path, {"model": "stcnn"})
        write_atomic(tmp_path / "folds" / "x.json", "{}")
        cache = ClipCache(tmp_path / "cache")
        cache.put("ab" * 32, {"clip": np.zeros(3, np.float32)})
        files = [tmp_path / "metrics.json", tmp_path / "config.yaml", tmp_path / "folds" / "x.json",
                 cache.path("ab" * 32)]
    finally:
        os.umask(old)
    assert [oct(stat.S_IMODE(f.stat().st_mode)) for f in files] == [oct(mode)] * 4


# ----------------------------------------------------------------------------------------------- bad run files
def test_a_corrupt_metrics_json_is_one_line_naming_the_file(run_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    (bad / "metrics.json").write_text('{"uf1": 0.5, "model": "stc')
    err = _one_line(capsys, ["report", str(bad), "--saliency", "0"])
    assert err.startswith(f"microexp report: error: {bad / 'metrics.json'}: unreadable run file (Unterminated string")
    err = _one_line(capsys, ["compare", str(run_dir), str(bad)])
    assert f"{bad / 'metrics.json'}: unreadable run file" in err
    (bad / "metrics.json").write_text(json.dumps({"uf1": 0.5}))
    (bad / "config.yaml").write_text("model: [stcnn\n")
    assert f"{bad / 'config.yaml'}: unreadable run file" in _one_line(capsys, ["report", str(bad)])


# ---------------------------------------------------------------------------------------------- unwritable output
@pytest.fixture
def read_only(tmp_path: Path) -> Path:
    """A folder nobody may write: chmod 0555, or (as root, whom modes do not stop) Linux's sysfs root, where
    even root cannot create a file."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder root cannot write")
    yield Path("/sys")


def test_unwritable_outputs_are_one_line(run_dir: Path, blob_tree: Path, read_only: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    video = _noise_video(tmp_path / "v.avi")
    cases = [
        ["predict", str(video), "--run", str(run_dir), "--face", "none", "--no-progress", "-o",
         str(read_only / "out.txt")],
        ["export", str(run_dir), "--onnx", str(read_only / "m.onnx")],
        ["report", str(run_dir), "--saliency", "0", "--out", str(read_only / "r.html")],
        ["compare", str(run_dir), str(run_dir), "--html", str(read_only / "c.html")],
        ["explain", str(run_dir), "--clip", "s00/up0", "--out", str(read_only / "explain")],
    ]
    for args in cases:
        err = _one_line(capsys, args)
        assert f"{read_only}" in err and "cannot write (" in err, err
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(blob_tree, **{"train.epochs": 1}).to_dict()))
    err = _one_line(capsys, ["evaluate", "--config", str(config), "--out", str(read_only / "run"), "--no-progress"])
    assert f"{read_only / 'run'}: cannot write (" in err
    monkeypatch.setenv("MICROEXP_CACHE", str(read_only / "cache"))
    err = _one_line(capsys, ["evaluate", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert err.startswith(f"microexp evaluate: error: preprocessing cache {read_only / 'cache'}: cannot write (")
    assert "MICROEXP_CACHE" in err and not (tmp_path / "run" / "metrics.json").exists()


def test_export_to_a_folder_is_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _one_line(capsys, ["export", str(run_dir), "--onnx", str(tmp_path)])
    assert err == f"microexp export: error: ONNX output {tmp_path}: is a folder; give a file name"
    assert "--opset 99: an ONNX opset between" in _one_line(
        capsys, ["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx"), "--opset", "99"])
    out = tmp_path / "predict-out"
    out.mkdir()
    assert f"--output {out}: is a folder" in _one_line(
        capsys, ["predict", str(tmp_path / "none.avi"), "--run", str(run_dir), "-o", str(out)])


# --------------------------------------------------------------------------------------------- numeric options
@pytest.mark.parametrize(("option", "value", "message"), [
    ("--stride", "0", "--stride '0': must be longer than zero"),
    ("--window", "0", "--window '0': must be longer than zero"),
    ("--window", "0ms", "--window '0ms': must be longer than zero"),
    ("--window", "1.5", "--window '1.5': a frame count must be a whole number"),
    ("--stride", "-2", "--stride '-2': give frames (12)"),
    ("--fps", "0", "--fps 0.0: a frame rate must be a number > 0"),
    ("--fps", "-5", "--fps -5.0: a frame rate must be a number > 0"),
    ("--fps", "nan", "--fps nan: a frame rate must be a number > 0"),
    ("--min-prob", "1.5", "--min-prob 1.5: a probability between 0 and 1"),
])
def test_numeric_options_are_checked_before_any_work(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     option: str, value: str, message: str) -> None:
    # the input does not exist: an option error first proves nothing was loaded or decoded before the check
    err = _one_line(capsys, ["predict", str(tmp_path / "missing.avi"), "--run", str(run_dir), option, value,
                             "--no-progress"])
    assert err == f"microexp predict: error: {message}" or err.startswith(f"microexp predict: error: {message}")


def test_executor_options_are_checked_before_any_work(blob_tree: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(blob_tree).to_dict()))
    for flag in ("--workers", "--threads-per-worker"):
        err = _one_line(capsys, ["evaluate", "--config", str(config), "--out", str(tmp_path / "run"),
                                 "--executor", "dask", flag, "0", "--no-progress"])
        assert err == f"microexp evaluate: error: {flag} 0: must be >= 1"
    assert not (tmp_path / "run").exists()


def test_the_python_api_speaks_of_arguments_not_options(run_dir: Path, tmp_path: Path) -> None:
    from microexp.predict import load

    predictor = load(run_dir, fold="fold1", face="none")
    video = _noise_video(tmp_path / "v.avi", n=20)
    for kwargs, message in (({"stride": 0}, "stride 0: must be longer than zero"),
                            ({"fps": -5}, "fps -5: a frame rate must be a number > 0"),
                            ({"window": "fast"}, "window 'fast': give frames"),
                            ({"window": "1ms"}, "window '1ms' is 0.03 frames at 30 fps; give at least one frame")):
        with pytest.raises(ConfigError) as info:
            predictor.predict(video, **kwargs)
        assert str(info.value).startswith(message) and "--" not in str(info.value), info.value
    # a fractional span still rounds to the nearest frame, as documented
    assert predictor.predict(video, window="300ms", stride="50ms").stride == 2


def test_a_truncated_video_says_how_many_frames_its_container_declared(run_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from microexp.predict import load

    whole = _noise_video(tmp_path / "whole.avi", n=120)
    half = tmp_path / "half.avi"
    data = whole.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    result = load(run_dir, fold="fold1", face="none").predict(half)
    assert 40 < result.n_frames < 80
    assert result.notes == [f"{half}: the container declares 120 frames but only {result.n_frames} could be "
                            "decoded (a truncated or damaged file); only those are classified"]
    assert main(["predict", str(half), "--run", str(run_dir), "--face", "none", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"note: {half}: the container declares 120 frames but only {result.n_frames}" in out
    assert load(run_dir, fold="fold1", face="none").predict(whole).notes == []
    assert json.loads(result.to_json())["notes"] == result.notes


# ------------------------------------------------------------------------------------------------ no face
def test_a_face_crop_run_does_not_classify_a_video_without_a_face(run_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """A run trained on ready-made crops (face: none) detects faces in the input by default: a video of noise
    is an error, not "positive (p=0.54)"; face='none' states the input is face crops and classifies it."""
    from microexp.predict import load

    video = _noise_video(tmp_path / "noface.avi")
    predictor = load(run_dir)
    assert predictor.preprocess.face == "dlib" and len(predictor.notes) == 1
    with pytest.raises(PreprocessError, match=r"no face detected in any of its \d+ window\(s\) \(30 frames\); "
                                              r"if the frames are face crops already, use face='none'"):
        predictor.predict(video)
    err = _one_line(capsys, ["predict", str(video), "--run", str(run_dir), "--no-progress"])
    assert err.startswith(f"microexp predict: error: {video}: no face detected in any of its ")
    crops = load(run_dir, face="none")
    assert crops.preprocess.face == "none" and crops.notes == []
    result = crops.predict(video)
    assert result.windows and result.gaps == [] and result.notes == []


def test_the_run_module_and_predict_import_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, microexp.runs, microexp.predict, microexp.cli._executor; "
            "print(sorted(m for m in ('torch', 'sklearn', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.strip()
    assert out == "[]"
