"""Preprocessing config (YAML round trip, validation), normalisation modes, the face='none' path the demo and the
trainer use, and the ``microexp preprocess`` command."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from microexp.cli import main
from microexp.data.records import ClipRecord, ClipSet
from microexp.errors import ConfigError
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.normalise import GlobalNormaliser, normalise_clip
from microexp.preprocess.pipeline import preprocess_set


def test_yaml_round_trip(tmp_path):
    cfg = PreprocessConfig(streams=(StreamConfig("clip", "face", (64, 48)), StreamConfig("flow", "mouth", (28, 28), "flowstrain")),
                           frames=9, selection="keyframes9", temporal="none", face="dlib", align="track",
                           normalise="minus1to1", gray="code", flow="dis", flow_pairs="consecutive", flow_size=96,
                           saliency="positive", on_no_face="frame", resize="nearest", window=(2, 11),
                           extra=(("roi_enlarge", True),))
    path = tmp_path / "p.yaml"
    cfg.to_yaml(path)
    assert PreprocessConfig.from_yaml(path) == cfg
    path.write_text("preprocess:\n" + "".join(f"  {line}\n" for line in cfg.to_yaml().splitlines()))
    assert PreprocessConfig.from_yaml(path) == cfg  # also under a `preprocess:` key of a run config
    assert cfg.stream_shape("clip") == (1, 9, 64, 48) and cfg.stream_shape("flow") == (3, 8, 28, 28)


@pytest.mark.parametrize(("text", "message"), [
    ("frames: 0", "frames=0 must be positive"),
    ("temporal: cubic", "temporal='cubic' is not one of"),
    ("framez: 3", "unknown preprocess option(s) ['framez']"),
    ("align: onset", "needs face landmarks"),
    ("streams: [{name: a, region: nose}]", "region='nose' is not one of"),
    ("streams: [{name: a, kind: strain}]", "kind='strain' is not one of"),
    ("streams: [{name: a, colour: 1}]", "unknown stream option(s) ['colour']"),
    ("[1, 2]", "must be a mapping"),
    ("frames: [", "not valid YAML"),
])
def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        PreprocessConfig.from_yaml(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_per_clip_normalisation_modes():
    x = np.array([1.0, 2.0, 3.0, 6.0], np.float32)
    z = normalise_clip(x, "zscore")
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-5
    np.testing.assert_allclose(normalise_clip(x, "minus1to1"), [-1, -0.6, -0.2, 1], atol=1e-6)
    np.testing.assert_array_equal(normalise_clip(x, "none"), x)
    np.testing.assert_array_equal(normalise_clip(x, "global"), x)  # fitted later, on the training rows


def test_global_normaliser_is_fitted_on_training_rows_only():
    arr = np.array([[0.0, 2.0], [4.0, 6.0], [100.0, 200.0]], np.float32)  # 3 clips; the last is a test clip
    norm = GlobalNormaliser().fit({"clip": arr}, rows=np.array([0, 1]))
    assert norm.mean["clip"] == 3.0 and norm.scale["clip"] == 3.0  # mean of train, max of train - mean
    out = norm.transform({"clip": arr})
    np.testing.assert_allclose(out["clip"], (arr - 3.0) / 3.0)
    assert out["clip"][:2].max() == 1.0 and out["clip"][2].max() > 60  # the test clip never influenced the fit
    assert GlobalNormaliser.from_dict(norm.to_dict()) == norm
    with pytest.raises(ConfigError, match="before fit"):
        GlobalNormaliser().transform({"clip": arr})


def _plain_tree(root: Path, n_clips: int = 3, size: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    rows, clips = ["subject,clip,emotion,onset,apex,offset"], []
    for c in range(n_clips):
        folder = root / "s1" / f"c{c}"
        folder.mkdir(parents=True)
        frames = rng.integers(0, 256, (6, size, size), dtype=np.uint8)
        for k, f in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"frame_{k:04d}.png"), f)
        clips.append(frames)
        rows.append(f"s1,c{c},{('happiness', 'surprise')[c % 2]},2,3,5")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return clips


def test_face_none_keeps_the_plain_behaviour(tmp_path):
    """frames already face crops: onset..offset, uniform, INTER_AREA resize of the gray frames, per-clip z-score."""
    frames = _plain_tree(tmp_path, n_clips=1)[0]
    paths = tuple(sorted((tmp_path / "s1" / "c0").iterdir()))
    rec = ClipRecord("plain", "s1", "c0", "happiness", paths, tuple(range(1, 7)), 2, 3, 5)
    cfg = PreprocessConfig(streams=(StreamConfig("clip", "face", (12, 12)),), frames=4)
    prepared = preprocess_set(ClipSet("p", [rec], ("happiness",)), cfg, progress=False)
    sel = [frames[i] for i in np.round(np.linspace(1, 4, 4)).astype(int)]  # positions 1..4 (frames 2..5)
    clip = np.stack([cv2.resize(f, (12, 12), interpolation=cv2.INTER_AREA) for f in sel]).astype(np.float32)
    expected = (clip - clip.mean()) / (clip.std() + 1e-6)
    np.testing.assert_allclose(prepared.streams["clip"][0, 0], expected, atol=1e-5)


def test_preprocess_command(tmp_path, capsys):
    _plain_tree(tmp_path / "data")
    cfg = tmp_path / "p.yaml"
    PreprocessConfig(streams=(StreamConfig("clip", "face", (16, 16)), StreamConfig("sal", "whole", (8, 8), "saliency")),
                     frames=4).to_yaml(cfg)
    args = ["preprocess", "--dataset", "plain", "--root", str(tmp_path / "data"), "--config", str(cfg),
            "--cache", str(tmp_path / "cache"), "--workers", "1", "--no-progress", "--out", str(tmp_path / "o.npz")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 computed, 0 from cache, 0 excluded" in out and "stream clip: (3, 1, 4, 16, 16)" in out
    assert main(args) == 0
    assert "0 computed, 3 from cache" in capsys.readouterr().out
    saved = np.load(tmp_path / "o.npz")
    assert saved["stream_sal"].shape == (3, 1, 4, 8, 8) and list(saved["keys"]) == [f"plain/s1/c{c}" for c in range(3)]
    # the model's default preprocessing, with a YAML override on top
    cfg.write_text("frames: 5\nstreams: [{name: clip, region: face, size: [8, 8]}]\n")
    assert main(args[:-2] + ["--model", "stcnn"]) == 0
    assert "stream clip: (3, 1, 5, 8, 8)" in capsys.readouterr().out
    cfg.write_text("temporal: cubic\n")
    assert main(args) == 2
    assert "temporal='cubic' is not one of" in capsys.readouterr().err


def test_nearest_resize_samples_like_keras_load_img(tmp_path):
    """Joshi's frames: Keras ``load_img(grayscale, target_size=(128, 128))`` = PIL NEAREST on the whole frame."""
    from PIL import Image

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (300, 270), dtype=np.uint8)
    paths = []
    for k in range(1, 4):
        p = tmp_path / f"img{k}.png"
        cv2.imwrite(str(p), frame)
        paths.append(p)
    rec = ClipRecord("t", "s", "c", "x", tuple(paths), (1, 2, 3), 1, 2, 3)
    cfg = PreprocessConfig(streams=(StreamConfig("c", "whole", (128, 128)),), frames=3, normalise="none",
                           resize="nearest")
    out = preprocess_set(ClipSet("t", [rec], ("x",)), cfg, progress=False).streams["c"][0, 0, 0]
    expected = np.asarray(Image.fromarray(frame).resize((128, 128), Image.NEAREST), np.float32)
    np.testing.assert_array_equal(out, expected)
    area = preprocess_set(ClipSet("t", [rec], ("x",)), cfg.with_overrides(resize="area"), progress=False)
    assert not np.array_equal(area.streams["c"][0, 0, 0], expected)
