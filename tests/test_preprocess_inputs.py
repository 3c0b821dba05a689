"""The seeds' input preprocessing (issue #15): colour input, x/127.5 - 1, the two-stream flow interpolation and zero
padding, positive saliency, optical strain on the full-size flow, the Reddy fixed windows, and that every new
option reaches the cache key and refuses bad values with one line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from microexp.cli import main
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, PreprocessError
from microexp.models.registry import get
from microexp.preprocess import regions as rg
from microexp.preprocess.cache import config_digest
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.flow import flow_channels, optical_strain
from microexp.preprocess.normalise import GlobalNormaliser, normalise_clip
from microexp.preprocess.pipeline import preprocess_clip
from microexp.preprocess.temporal import (
    flow_interpolate,
    interpolation_schedule,
    pad_frames,
    saliency,
    temporal_positions,
)


def _clip(tmp_path: Path, frames: list[np.ndarray], name: str = "c") -> ClipRecord:
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for k, img in enumerate(frames, start=1):
        paths.append(folder / f"img{k:03d}.png")
        cv2.imwrite(str(paths[-1]), img)
    n = len(frames)
    return ClipRecord("t", "s", name, "x", tuple(paths), tuple(range(1, n + 1)), 1, (n + 1) // 2, n)


# --- normalisation ----------------------------------------------------------------------------------------------

def test_scale127_is_the_fixed_aouayeb_scaling():
    x = np.array([0, 51, 127.5, 204, 255], np.float32)
    np.testing.assert_allclose(normalise_clip(x, "scale127"), [-1, -0.6, 0, 0.6, 1], atol=1e-6)
    # fixed constants: a dark clip is not stretched (minus1to1 would map its own range to [-1, 1])
    dark = np.array([10.0, 20.0], np.float32)
    np.testing.assert_allclose(normalise_clip(dark, "scale127"), [10 / 127.5 - 1, 20 / 127.5 - 1], rtol=1e-6)
    assert normalise_clip(dark, "scale127").dtype == np.float32


def test_global_normaliser_is_the_reddy_code():
    """``x -= numpy.mean(x); x /= numpy.max(x)`` of the Reddy scripts, on the training rows."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 1, 3, 4, 4)).astype(np.float32)
    ref = x.copy()
    ref -= np.mean(ref)
    ref /= np.max(ref)
    out = GlobalNormaliser().fit({"eyes": x}).transform({"eyes": x})["eyes"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert out.max() == pytest.approx(1.0)


# --- colour -----------------------------------------------------------------------------------------------------

def test_rgb_streams_carry_three_channels_in_rgb_order(tmp_path):
    h = w = 16
    frames = []
    for k in range(4):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 200  # red
        bgr[..., 1] = 10 * k  # green ramps with time
        bgr[..., 0] = 30  # blue
        frames.append(bgr)
    rec = _clip(tmp_path, frames)
    streams = (StreamConfig("clip", "whole", (8, 8)), StreamConfig("sal", "whole", (8, 8), "saliency"),
               StreamConfig("flow", "whole", (8, 8), "flow"))
    cfg = PreprocessConfig(streams=streams, frames=4, selection="whole", temporal="none", normalise="none",
                           color="rgb")
    assert cfg.stream_shape("clip") == (3, 4, 8, 8) and cfg.stream_shape("sal") == (3, 4, 8, 8)
    assert cfg.stream_shape("flow") == (2, 1, 8, 8)  # flow is always computed on gray
    out = preprocess_clip(rec, cfg)
    assert out["clip"].shape == (3, 4, 8, 8) and out["flow"].shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(out["clip"][0], 200)
    np.testing.assert_array_equal(out["clip"][1, :, 0, 0], [0, 10, 20, 30])
    np.testing.assert_array_equal(out["clip"][2], 30)
    # saliency per channel: green minus its temporal median (15), red and blue static
    np.testing.assert_array_equal(out["sal"][1, :, 0, 0], [-15, -5, 5, 15])
    np.testing.assert_array_equal(out["sal"][0], 0)
    gray = preprocess_clip(rec, cfg.with_overrides(color="gray"))
    assert gray["clip"].shape == (1, 4, 8, 8)
    expected = cv2.cvtColor(frames[0][:1, :1], cv2.COLOR_BGR2GRAY)[0, 0]
    assert gray["clip"][0, 0, 0, 0] == expected


def test_rgb_regional_model_builds_with_three_channels():
    spec = get("regional-lstm")
    cfg = spec.preprocess.with_overrides(color="rgb", frames=2)
    shapes = spec.input_shapes(cfg)
    assert all(s[0] == 3 for s in shapes.values())
    model = spec.build(3, cfg).eval()
    x = {name: torch.zeros(1, *shape) for name, shape in shapes.items()}
    with torch.no_grad():
        assert model(**x).shape == (1, 3)


def test_aouayeb_canvas_keeps_colour_and_white_padding():
    face = np.zeros((100, 50, 3), np.float32)
    face[..., 0] = 90
    canvas = rg.contain_canvas(face)
    assert canvas.shape == (280, 240, 3)
    np.testing.assert_array_equal(canvas[0, 0], [255, 255, 255])  # padding is white in every channel
    np.testing.assert_array_equal(canvas[140, 120], [90, 0, 0])


# --- two-stream: interpolation, padding, positive saliency ------------------------------------------------------

def _reference_schedule(n: int, targetfrms: int = 150) -> list[int]:
    """The loop of Microfacial-exp interpolation.py: frames inserted per gap."""
    nfrs = n - 1
    mod, div = targetfrms % nfrs, targetfrms / nfrs
    out = []
    for _ in range(nfrs):
        z = min(mod, 5)
        mod -= z
        out.append(z + int(div) - 1)
    return out


@pytest.mark.parametrize("n", [2, 3, 7, 24, 29, 31, 76, 100, 149, 150, 151])
def test_interpolation_schedule_is_the_seeds(n):
    assert interpolation_schedule(n, 151) == _reference_schedule(n)
    assert n + sum(interpolation_schedule(n, 151)) == 151


def test_interpolation_schedule_by_hand_and_refusals():
    # 30 frames to 151: 29 gaps, 150 // 29 = 5 -> 4 per gap, remainder 5 all in the first gap
    assert interpolation_schedule(30, 151) == [9] + [4] * 28
    assert interpolation_schedule(4, 10) == [2, 2, 2]
    assert interpolation_schedule(3, 3) == [0, 0]
    with pytest.raises(PreprocessError, match="the clip has 152 frames, more than preprocess.frames=151"):
        interpolation_schedule(152, 151)
    with pytest.raises(PreprocessError, match="at least 2 frames"):
        interpolation_schedule(1, 151)


def _blob(cx: float, size: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return 40 + 180 * np.exp(-((x - cx) ** 2 + (y - 24) ** 2) / (2 * 5.0**2))


def test_flow_interpolation_keeps_originals_and_moves_the_content():
    clip = np.stack([_blob(18), _blob(26)])
    out = flow_interpolate(clip, 3)  # one frame in between, at t = 1/2
    assert out.shape == (3, 48, 48)
    np.testing.assert_array_equal(out[0], clip[0])
    np.testing.assert_array_equal(out[2], clip[1])
    truth, blend = _blob(22), clip.mean(0)
    err, blend_err = np.abs(out[1] - truth).mean(), np.abs(blend - truth).mean()
    assert err < 0.1 * blend_err  # motion compensated: far closer to the true middle frame than a cross-fade
    # its peak moved half-way (columns), not two half-height peaks
    assert abs(int(np.argmax(out[1][24])) - 22) <= 1 and out[1].max() > 180
    # colour frames: the same motion in every channel
    rgb = np.stack([np.stack([_blob(18)] * 3, -1), np.stack([_blob(26)] * 3, -1)])
    mid = flow_interpolate(rgb, 3)[1]
    np.testing.assert_allclose(mid[..., 0], mid[..., 2], atol=1e-4)


def test_pad_frames_appends_zero_frames():
    arr = np.ones((2, 3, 2, 2), np.float32)
    out = pad_frames(arr, 5)
    assert out.shape == (2, 5, 2, 2)
    np.testing.assert_array_equal(out[:, :3], 1)
    np.testing.assert_array_equal(out[:, 3:], 0)
    with pytest.raises(PreprocessError, match="more than preprocess.pad_to=2"):
        pad_frames(arr, 2)


def test_positive_saliency_saturates_like_the_uint8_write():
    clip = np.array([[[0.0, 255.0, 10.4]], [[100.0, 0.0, 10.6]], [[300.0, 255.0, 10.0]]], np.float32)
    # medians 100, 255, 10.4: deviations -100/0/200, 0/-255/0, 0/0.2/-0.4 -> rounded and saturated to 0..255
    np.testing.assert_array_equal(saliency(clip, "positive"), [[[0, 0, 0]], [[0, 0, 0]], [[200, 0, 0]]])
    big = np.array([[[0.0]], [[0.0]], [[400.0]]], np.float32)
    assert saliency(big, "positive")[2, 0, 0] == 255  # saturated at the uint8 maximum


def test_twostream_defaults_are_the_reference():
    spec = get("twostream")
    p = spec.preprocess
    assert (p.temporal, p.frames, p.pad_to, p.saliency, p.resize, p.flow_size, p.normalise, p.selection) == (
        "interpolate_pad", 151, 152, "positive", "linear", 150, "none", "whole")
    assert spec.input_shapes() == {"clip": (1, 152, 32, 32), "saliency": (1, 152, 32, 32)}


def test_twostream_pipeline_interpolates_pads_and_keeps_saliency_positive(tmp_path):
    frames = [np.clip(_blob(14 + 2 * k), 0, 255).astype(np.uint8) for k in range(6)]
    rec = _clip(tmp_path, frames)
    cfg = get("twostream").preprocess.with_overrides(frames=20, pad_to=24, flow_size=48)
    out = preprocess_clip(rec, cfg)
    assert out["clip"].shape == (1, 24, 32, 32) and out["saliency"].shape == (1, 24, 32, 32)
    np.testing.assert_array_equal(out["clip"][:, 20:], 0)  # zero padding after the 20 interpolated frames
    np.testing.assert_array_equal(out["saliency"][:, 20:], 0)
    # the original frames sit at their schedule positions: 5 gaps of (19 // 5 - 1) + extras 4,... -> 0, 5, 9, ...
    sched = interpolation_schedule(6, 20)
    assert sched == [6, 2, 2, 2, 2]
    pos = np.cumsum([0] + [k + 1 for k in sched])
    for k, p in enumerate(pos):
        ref = cv2.resize(frames[k].astype(np.float32), (32, 32), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(out["clip"][0, p], ref, atol=1e-3)
    sal = out["saliency"][0, :20]
    assert sal.min() >= 0 and np.array_equal(sal, np.round(sal)) and sal.max() > 50


def test_pad_to_with_temporal_none_pads_every_frame(tmp_path):
    rec = _clip(tmp_path, [np.full((8, 8), 10 * k, np.uint8) for k in range(1, 6)])
    cfg = PreprocessConfig(streams=(StreamConfig("c", "whole", (4, 4)),), frames=5, pad_to=7, selection="whole",
                           temporal="none", normalise="none")
    out = preprocess_clip(rec, cfg)["c"]
    assert cfg.stream_shape("c") == (1, 7, 4, 4) and out.shape == (1, 7, 4, 4)
    np.testing.assert_array_equal(out[0, :, 0, 0], [10, 20, 30, 40, 50, 0, 0])
    with pytest.raises(PreprocessError, match="more than preprocess.pad_to=4"):
        preprocess_clip(rec, cfg.with_overrides(pad_to=4, frames=4))


# --- optical strain on the full-size flow -----------------------------------------------------------------------

def test_strain_full_is_computed_before_resizing():
    """A fine facial motion (period 8 px) at 112 px: its strain, taken before the flow is shrunk to 28 px, keeps
    the local deformation that averaging the flow first washes out."""
    n = 112
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)

    def u(x, y):
        return 0.5 * np.sin(2 * np.pi * x / 8)

    def v(x, y):
        return 0.3 * np.cos(2 * np.pi * y / 8) + 0.001 * x * y

    flow = np.stack([u(x, y), v(x, y)], -1).astype(np.float32)
    full = flow_channels(flow, (28, 28), strain=True, strain_at="full")
    stream = flow_channels(flow, (28, 28), strain=True, strain_at="stream")
    assert full.shape == stream.shape == (3, 28, 28)
    np.testing.assert_array_equal(full[:2], stream[:2])  # u, v identical; only the strain channel differs
    # by hand, central differences of the analytic field (interior pixels; np.gradient is one-sided at the edges)
    u_x, u_y = (u(x + 1, y) - u(x - 1, y)) / 2, (u(x, y + 1) - u(x, y - 1)) / 2
    v_x, v_y = (v(x + 1, y) - v(x - 1, y)) / 2, (v(x, y + 1) - v(x, y - 1)) / 2
    hand = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
    strain = optical_strain(flow)
    np.testing.assert_allclose(strain[1:-1, 1:-1], hand[1:-1, 1:-1], rtol=1e-4, atol=1e-6)
    edges = strain.copy()  # the border pixels as computed, the interior by hand
    edges[1:-1, 1:-1] = hand[1:-1, 1:-1]
    resized = cv2.resize(edges, (28, 28), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(full[2], resized, rtol=1e-4, atol=1e-6)
    # strain of the already-averaged flow is a different, much weaker map
    assert stream[2].mean() < 0.5 * full[2].mean()


def test_ststnet_defaults_to_strain_on_the_full_flow():
    assert get("ststnet").preprocess.strain_at == "full"
    assert PreprocessConfig().strain_at == "stream"  # configs saved before the option keep their meaning


# --- Reddy fixed windows ----------------------------------------------------------------------------------------

def test_reddy_window_is_frames_72_to_167_and_smic_first_18(tmp_path):
    """CAS(ME)^2 code: ``framerange = [x + 72 for x in range(96)]`` on the 0-based video frames; SMIC: the first 18."""
    assert temporal_positions(list(range(170)), "window", 96, (72, 168)) == list(range(72, 168))
    rec = _clip(tmp_path, [np.full((4, 4), k, np.uint8) for k in range(170)])  # frame k (0-based) has value k
    cfg = PreprocessConfig(streams=(StreamConfig("c", "whole", (2, 2)),), frames=96, selection="whole",
                           temporal="window", window=(72, 168), normalise="none")
    values = preprocess_clip(rec, cfg)["c"][0, :, 0, 0]
    assert values[0] == 72 and values[-1] == 167 and values.tolist() == list(range(72, 168))
    first = preprocess_clip(rec, cfg.with_overrides(temporal="first", frames=18, window=None))["c"][0, :, 0, 0]
    assert first.tolist() == list(range(18))
    short = _clip(tmp_path, [np.zeros((4, 4), np.uint8)] * 167, "short")
    with pytest.raises(PreprocessError, match="window 72..167 needs 168 frames, has 167"):
        preprocess_clip(short, cfg)


# --- cache key and bad values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"color": "rgb"}, {"normalise": "scale127"}, {"strain_at": "full"}, {"temporal": "interpolate_pad", "pad_to": 100},
    {"temporal": "none", "pad_to": 120}, {"saliency": "positive"}, {"align": "per-frame", "face": "dlib"},
])
def test_every_new_option_changes_the_cache_key(change):
    base = PreprocessConfig(frames=96)
    assert config_digest(base.with_overrides(**change)) != config_digest(base)
    again = PreprocessConfig.from_dict(base.with_overrides(**change).to_dict())
    assert config_digest(again) == config_digest(base.with_overrides(**change))  # stable across a YAML round trip


@pytest.mark.parametrize(("d", "message"), [
    ({"color": "bgr"}, "preprocess.color='bgr' is not one of ['gray', 'rgb']"),
    ({"strain_at": "half"}, "preprocess.strain_at='half' is not one of ['stream', 'full']"),
    ({"normalise": "scale255"}, "preprocess.normalise='scale255' is not one of"),
    ({"temporal": "interpolate_pad"}, "preprocess.temporal='interpolate_pad' needs preprocess.pad_to"),
    ({"pad_to": 152}, "preprocess.pad_to=152 needs preprocess.temporal 'interpolate_pad' or 'none'"),
    ({"temporal": "interpolate_pad", "frames": 151, "pad_to": 150}, "preprocess.pad_to=150 is less than"),
    ({"temporal": "interpolate_pad", "frames": 1, "pad_to": 4}, "needs frames >= 2"),
    ({"pad_to": "long", "temporal": "none"}, "preprocess.pad_to='long' is not an integer"),
])
def test_bad_values_are_one_line_config_errors(d, message):
    with pytest.raises(ConfigError) as err:
        PreprocessConfig.from_dict(d)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("option", "message"), [
    ("preprocess.color=cmyk", "preprocess.color='cmyk' is not one of ['gray', 'rgb']"),
    ("preprocess.strain_at=middle", "preprocess.strain_at='middle' is not one of"),
    ("preprocess.pad_to=10", "preprocess.pad_to=10 needs preprocess.temporal"),
])
def test_cli_bad_values_are_one_line_exit_2(tmp_path, capsys, option, message):
    code = main(["evaluate", "--dataset", "plain", "--root", str(tmp_path / "none"), "--set", option])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err and message in err


def test_consecutive_flow_follows_the_interpolated_frames_and_padding(tmp_path):
    frames = [np.clip(_blob(14 + 2 * k), 0, 255).astype(np.uint8) for k in range(4)]
    rec = _clip(tmp_path, frames)
    cfg = PreprocessConfig(streams=(StreamConfig("f", "whole", (8, 8), "flow"),), frames=8, pad_to=10,
                           selection="whole", temporal="interpolate_pad", flow="farneback",
                           flow_pairs="consecutive", flow_size=48, normalise="none")
    out = preprocess_clip(rec, cfg)["f"]
    assert cfg.stream_shape("f") == (2, 9, 8, 8) and out.shape == (2, 9, 8, 8)
    np.testing.assert_array_equal(out[:, 7:], 0)  # 8 frames give 7 flow fields; 2 zero fields pad to 9
    # the blob moves right between every pair of (interpolated) frames, not up or down (measured u 0.05-0.08)
    assert (out[0, :7].mean(axis=(1, 2)) > 0.025).all() and abs(float(out[1, :7].mean())) < 0.005
