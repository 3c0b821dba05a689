"""Joshi 2021 augmentation (microexp.train.augment): the transforms by hand, one draw per clip or per frame,
determinism, and the seed's per-class copy counts on the real SAMM coding file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _real import SAMM, need
from microexp.data import classes, samm
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError
from microexp.train import augment as A


def _clips(n: int = 3, t: int = 9, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 1, t, size, size)).astype(np.float32)


def test_translate_wraps_around_with_the_right_shift_flip():
    x = np.array([[1, 2, 3, 4, 5]], dtype=np.float32)
    assert A.translate(x, 2, "right").tolist() == [[5, 4, 1, 2, 3]]  # wrapped strip [4, 5] flipped
    assert A.translate(x, 2, "left").tolist() == [[3, 4, 5, 1, 2]]  # wrapped strip [1, 2] not flipped
    assert A.translate(x, 1, "right").tolist() == [[5, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="shift 5"):
        A.translate(x, 5, "left")


def test_rotate_fills_the_corners_with_the_top_left_patch_mean():
    img = np.full((1, 64, 64), 200.0, np.float32)
    img[0, :15, :15] = 50.0
    out = A.rotate(img, 45.0)
    assert out.shape == img.shape
    assert out[0, 0, 63] == pytest.approx(50.0) and out[0, 63, 0] == pytest.approx(50.0)  # outside: filled
    assert out[0, 32, 32] == pytest.approx(200.0, abs=1e-3)  # centre: kept
    assert (out > 0).all()
    # two channels: one mean per channel, a pixel is filled on every channel when any channel is <= 0
    two = np.stack([img[0], img[0] / 2])
    out2 = A.rotate(two, 45.0)
    assert out2[:, 0, 63].tolist() == pytest.approx([50.0, 25.0])


def test_noise_shifts_by_its_mean_and_clips_to_the_value_range():
    rng = np.random.default_rng(0)
    noise_only = A.Draw("left", 1, 0.0, 5.0, 2.0, translate=False, rotate=False, noise=True)
    out = A.transform(np.full((1, 1, 64, 64), 100.0, np.float32), noise_only, rng)
    assert out.mean() == pytest.approx(105.0, abs=0.1) and out.std() == pytest.approx(2.0, abs=0.1)
    assert A.transform(np.full((1, 1, 8, 8), 255.0, np.float32), noise_only, rng).max() == 255.0
    # [-1, 1] tensors: mean 5 and sigma 2 on 0-255 pixels are 5/127.5 and 2/127.5
    scaled = A.transform(np.zeros((1, 1, 64, 64), np.float32), noise_only, rng, value_range=(-1.0, 1.0))
    assert scaled.mean() == pytest.approx(5 / 127.5, abs=2e-3) and scaled.std() == pytest.approx(2 / 127.5, rel=0.05)


def test_draw_uses_the_seed_ranges_and_always_fires_one_transform():
    rng = np.random.default_rng(1)
    for name, (s_hi, a1, a2) in {"joshi3d": (15, (1, 13), (348, 359)), "joshi2d": (17, (1, 15), (345, 359))}.items():
        draws = [A.draw(A.RANGES[name], rng) for _ in range(400)]
        assert all(d.translate or d.rotate or d.noise for d in draws)
        assert {d.shift for d in draws} == set(range(1, s_hi + 1))
        assert all(a1[0] <= d.angle <= a1[1] or a2[0] <= d.angle <= a2[1] for d in draws)
        assert {d.direction for d in draws} == {"left", "right"}
        # each transform fires with probability 0.5 / (1 - 1/8) = 4/7 once the all-off draws are redrawn
        assert np.mean([d.rotate for d in draws]) == pytest.approx(4 / 7, abs=0.07)


@pytest.mark.parametrize("name, draws_per_clip", [("joshi3d", 1), ("joshi2d", 9)])
def test_one_draw_per_clip_or_per_frame(monkeypatch, name, draws_per_clip):
    calls = []
    shift_only = A.Draw("left", 4, 0.0, 0.0, 0.0, translate=True, rotate=False, noise=False)
    monkeypatch.setattr(A, "draw", lambda ranges, rng: calls.append(1) or shift_only)
    x = _clips()
    out, _ = A.apply(name, {"clip": x}, np.zeros(3), np.random.default_rng(0))
    assert len(calls) == 3 * draws_per_clip
    assert np.array_equal(out["clip"], np.roll(x, -1, axis=-1))  # 4 px at width 128 -> 1 px at width 32


def test_apply_keeps_shapes_kinds_and_is_deterministic_per_seed():
    x = _clips()
    y = np.array([0, 1, 2])
    for name in ("joshi3d", "joshi2d"):
        a, ya = A.apply(name, {"clip": x}, y, np.random.default_rng(7))
        b, _ = A.apply(name, {"clip": x}, y, np.random.default_rng(7))
        c, _ = A.apply(name, {"clip": x}, y, np.random.default_rng(8))
        assert a["clip"].shape == x.shape and a["clip"].dtype == np.float32 and ya is y
        assert np.array_equal(a["clip"], b["clip"]) and not np.array_equal(a["clip"], c["clip"])
        # >= 0: the fill replaces spline undershoot; the spline may overshoot 255, as the seed's (only noise clips)
        assert not np.array_equal(a["clip"], x) and a["clip"].min() >= 0
    t = torch.from_numpy(x).double()
    out, yt = A.apply("joshi3d", {"clip": t}, torch.tensor([0, 1, 2]), 7)
    assert isinstance(out["clip"], torch.Tensor) and out["clip"].dtype == torch.float64
    assert out["clip"].shape == t.shape and yt.tolist() == [0, 1, 2]
    same, _ = A.apply("none", {"clip": t}, y, 0)
    assert same["clip"] is t


def test_joshi3d_matches_one_draw_applied_to_all_frames_of_all_streams():
    x = {"clip": _clips(1, 9, 32), "other": _clips(1, 9, 16, seed=1)}
    rng = np.random.default_rng(3)
    d = A.draw(A.RANGES["joshi3d"], rng)
    want = {k: A.transform(v[0].swapaxes(0, 1), d, rng).swapaxes(0, 1) for k, v in x.items()}
    out, _ = A.apply("joshi3d", x, np.zeros(1), np.random.default_rng(3))
    for k in x:
        assert np.array_equal(out[k][0], want[k])


def test_copy_counts_on_the_real_samm_coding_file():
    rows = samm.read_annotation(need(SAMM))
    recs = [ClipRecord("samm", r.subject, r.clip_id, r.emotion, (), (), meta=r.meta) for r in rows]
    seven = classes.get("samm-7")
    counts = seven.apply(recs).counts()
    extra = A.copies("joshi3d", list(seven.classes))
    assert extra == {"happiness": 1, "surprise": 3, "anger": 0, "fear": 5, "disgust": 5, "contempt": 4, "sadness": 7}
    assert sum(n * (1 + extra[c]) for c, n in counts.items()) == 379  # "about 379 samples" (§2.3)
    binary = classes.get("samm-binary")
    counts = binary.apply(recs).counts()
    extra = A.copies("joshi3d", list(binary.classes))
    assert {c: n * (1 + extra[c]) for c, n in counts.items()} == {"positive": 78, "negative": 92}
    assert A.copies("joshi2d", list(seven.classes))["sadness"] == 4


def test_augment_set_appends_copies_after_the_unchanged_originals():
    names = ("happiness", "surprise", "anger", "fear", "disgust", "contempt", "sadness")
    y = np.array([0, 1, 2, 6])
    x = _clips(4, 9, 32)
    out, y2 = A.augment_set("joshi3d", {"clip": x}, y, names, np.random.default_rng(0))
    assert len(out["clip"]) == len(y2) == 4 + 1 + 3 + 0 + 7
    assert np.array_equal(out["clip"][:4], x) and y2.tolist() == [0, 1, 2, 6, 0, 1, 1, 1] + [6] * 7
    again, _, source = A.augment_set("joshi3d", {"clip": x}, y, names, np.random.default_rng(0), with_source=True)
    assert np.array_equal(again["clip"], out["clip"])
    assert source.tolist() == [0, 1, 2, 3, 0, 1, 1, 1] + [3] * 7
    # joshi2d: a coin per sample; heads adds the 2D count (anger never)
    frames = _clips(40, 1, 16)
    labels = np.repeat([2, 6], 20)
    out, y2 = A.augment_set("joshi2d", {"clip": torch.from_numpy(frames)}, torch.from_numpy(labels), names, 1)
    added = y2[40:].tolist()
    assert set(added) == {6} and len(added) % 4 == 0 and 0 < len(added) < 80
    assert isinstance(out["clip"], torch.Tensor) and out["clip"].shape[0] == len(y2)


def test_bad_names_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"train.augment='mixup' is not one of \['none', 'joshi3d', 'joshi2d'\]"):
        A.apply("mixup", {"clip": _clips(1)}, np.zeros(1), 0)
    with pytest.raises(ConfigError, match=r"classes \['negative', 'positive', 'surprise'\] have no copy count"):
        A.copies("joshi3d", ["negative", "positive", "surprise"])
    with pytest.raises(ConfigError, match="not normalise='zscore'"):
        A.value_range("zscore")
    assert A.value_range("none") == (0.0, 255.0) and A.value_range("scale127") == (-1.0, 1.0)


def test_augmenting_non_pixel_tensors_is_refused():
    from microexp.preprocess.config import PreprocessConfig

    A.check_augment("joshi2d", PreprocessConfig(normalise="none"))
    A.check_augment("none", PreprocessConfig(normalise="zscore"))
    with pytest.raises(ConfigError, match="train.augment=joshi3d adds 0-255 pixel noise; preprocess.normalise="
                                          "'minus1to1' gives other values"):
        A.check_augment("joshi3d", PreprocessConfig(normalise="minus1to1"))
    with pytest.raises(ConfigError, match="not normalise='zscore'"):
        A.check_augment("joshi2d", PreprocessConfig(normalise="zscore"))
