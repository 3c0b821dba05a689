"""The learned macro spotter's long windows (chained short flow steps, the interval's middle as target, per-video
z-scores) and one type per movement (docs/spotting.md, "Macro-expressions")."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.errors import ConfigError
from microexp.spot.detect import centred, one_type
from microexp.spot.evaluate import SpotConfig
from microexp.spot.features import VideoFeatures
from microexp.spot.groundtruth import Interval
from microexp.spot.methods import (
    FitOptions,
    centre_target,
    chain_step,
    chained_inputs,
    get_spot_method,
    net_inputs,
    per_video_z,
)
from microexp.spot.metrics import Spot


def _moving_face(n: int, ks: tuple[int, ...], box_change: int | None = None) -> VideoFeatures:
    """Features of a face drifting at a constant 0.1 px per frame, as extract_features writes them: the flow map of
    window k is k times the velocity; with a crop-box change at position c a pair of frames across it is not
    scored (head: t - k < c <= t; MDMD's span: t - k < c <= t + k)."""
    t = np.arange(n)
    head, span, valid, maps = {}, {}, {}, {}
    for k in ks:
        ok = t >= k
        has_span = (t >= k) & (t + k < n)
        if box_change is not None:
            ok &= ~((t - k < box_change) & (box_change <= t))
            has_span &= ~((t - k < box_change) & (box_change <= t + k))
        m = np.zeros((n, 2, 4, 4), np.float16)
        m[:, 0] = 0.1 * k
        maps[k] = np.where(ok[:, None, None, None], m, 0).astype(np.float16)
        head[k] = np.zeros((n, 36), np.float32)
        span[k] = np.zeros((n, 36), np.float32)
        valid[k] = ok & has_span
    return VideoFeatures("v", 30.0, np.arange(1, n + 1), tuple(sorted(ks)), head, span, valid, maps)


def test_a_chained_window_measures_the_same_motion_as_the_direct_one():
    k = 19
    s = chain_step(k)
    assert s == 6 and chain_step(6) == 6  # short windows are not chained
    feat = _moving_face(200, (k, s))
    direct, ok_d = net_inputs(feat, k)
    chained, ok_c = chained_inputs(feat, k)
    both = ok_d & ok_c
    assert both.sum() > 100
    # n = round(19 / 6) = 3 steps of 6 frames: 18 frames of motion against the direct window's 19
    np.testing.assert_allclose(chained[both, 0], direct[both, 0] * 18 / 19, rtol=1e-2)
    np.testing.assert_allclose(chained[both, 2], direct[both, 2] * 18 / 19, rtol=1e-2)


def test_a_crop_box_change_blanks_a_direct_long_window_but_not_a_chained_one():
    """The cause of the missed macro-expressions: on the first renderer the crop box moves every few seconds
    and a direct k-frame window loses every position within about 2k frames of each move."""
    k, c = 26, 100
    feat = _moving_face(220, (k, chain_step(k)), box_change=c)
    _, ok_d = net_inputs(feat, k)
    _, ok_c = chained_inputs(feat, k)
    near = slice(c - k, c + k)
    assert ok_d[near].mean() == 0.0
    assert ok_c[near].mean() > 0.35  # only the short steps across the change are left out
    assert ok_c[k:220 - k].mean() > ok_d[k:220 - k].mean() + 0.15


def test_the_long_event_target_is_the_middle_and_the_interval_is_centred():
    iv = Interval("d", "s", "v", 100, 160, "macro", 110)  # apex early: the end of its rise
    numbers = np.arange(1, 301)
    y = centre_target(numbers, [iv], "macro", 30)
    assert numbers[int(y.argmax())] == 130 and y[numbers == 100][0] == 0.0
    assert centre_target(numbers, [iv], "micro", 30).max() == 0.0
    from microexp.spot.detect import TypeParams

    p = centred(TypeParams("macro", 30, 10, 50))
    assert (p.before, p.after, p.k) == (30, 30, 30)


def test_per_video_z_scores_put_two_networks_output_scales_on_one_scale():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, 500)
    base[250] = 12.0
    a, b = per_video_z(0.05 + 0.01 * base), per_video_z(0.3 + 0.1 * base)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a[250] > 8.0 and abs(np.median(a)) < 1e-9


def test_the_learned_macro_spotter_chains_and_saves_the_choice():
    method = get_spot_method("learned")
    assert method.feature_ks("macro", 19, "chained") == (19, 6)
    assert method.feature_ks("macro", 19, "direct") == (19,)
    assert method.feature_ks("micro", 19, "chained") == (19,)
    feat = _moving_face(160, (19, 6))
    ivs = [Interval("d", "s", "v", 40, 90, "macro", 50)]
    model = method.fit([(feat, ivs)], "macro", 19, FitOptions(epochs=1, seed=0))
    assert model.chained
    again = method.from_state(method.state(model))
    assert again.chained
    np.testing.assert_allclose(method.curve(again, feat, 19), method.curve(model, feat, 19), rtol=1e-5,
                               equal_nan=True)
    old = {k: v for k, v in method.state(model).items() if k != "chained"}  # saved before chaining: direct
    assert not method.from_state(old).chained


def _spot(onset: int, offset: int, type: str, video: str = "v") -> Spot:
    return Spot("d", "s", video, onset, offset, type)


def test_one_movement_is_one_type_the_stronger_one():
    micro, macro = _spot(100, 110, "micro"), _spot(90, 130, "macro")
    assert one_type([micro, macro], [2.0, 1.0]) == [micro]
    assert one_type([micro, macro], [0.5, 3.0]) == [macro]
    # apart, or in another video, or of one type: both stay
    far = _spot(200, 240, "macro")
    assert one_type([micro, far], [2.0, 9.0]) == [micro, far]
    other = _spot(90, 130, "macro", video="w")
    assert len(one_type([micro, other], [2.0, 9.0])) == 2
    assert len(one_type([micro, _spot(105, 115, "micro")], [2.0, 1.0])) == 2


def test_one_movement_is_one_spot_of_its_type():
    # one held expression, two overlapping macro spots (its rise and its fall): one-spot keeps the stronger
    rise, fall = _spot(100, 140, "macro"), _spot(125, 165, "macro")
    assert one_type([rise, fall], [1.0, 2.0]) == [rise, fall]
    assert one_type([rise, fall], [1.0, 2.0], same_type=True) == [fall]
    assert one_type([rise, fall], [3.0, 2.0], same_type=True) == [rise]
    # touching is not sharing a frame; another video is another movement
    after = _spot(141, 180, "macro")
    assert one_type([rise, after], [1.0, 2.0], same_type=True) == [rise, after]
    assert len(one_type([rise, _spot(125, 165, "macro", video="w")], [1.0, 2.0], same_type=True)) == 2
    # the micro / macro rule is unchanged under it
    micro, macro = _spot(100, 110, "micro"), _spot(90, 130, "macro")
    assert one_type([micro, macro, fall], [2.0, 1.0, 0.5], same_type=True) == [micro, fall]


def test_the_former_behaviour_stays_by_name():
    c = SpotConfig(root="x", long_events="direct", overlap="both")
    assert (c.long_events, c.overlap) == ("direct", "both")
    assert (SpotConfig(root="x").long_events, SpotConfig(root="x").overlap) == ("chained", "one-spot")
    with pytest.raises(ConfigError, match="long_events 'nope': expected chained or direct"):
        SpotConfig(root="x", long_events="nope")
    with pytest.raises(ConfigError, match="overlap 'x': expected one-spot or one-type or both"):
        SpotConfig(root="x", overlap="x")


def _regions(n: int, k: int, moves: dict[str, tuple[int, int]]) -> VideoFeatures:
    """Features with region motion only: neutral noise, and each named region (eyes, brows, mouth) moving
    strongly over its positions."""
    from microexp.spot.features import REGIONS

    rng = np.random.default_rng(0)
    r = 1.0 + 0.1 * rng.standard_normal((n, len(REGIONS)))
    for name, (a, b) in moves.items():
        r[a:b + 1, REGIONS.index(name)] += 5.0
    return VideoFeatures("v", 30.0, np.arange(1, n + 1), (k,), {}, {}, {k: np.ones(n, bool)}, regions={k: r})


def test_a_spot_that_is_a_blink_and_nothing_else_is_not_reported():
    from microexp.spot.blinks import blink_segments, drop_lone_blinks

    blink = _regions(300, 6, {"eyes": (100, 104)})
    assert [(a, b) for a, b, _ in blink_segments(blink)] == [(100, 104)]
    # a macro spot whose peak lies beside the blink but whose interval reaches over it: the blink is all it holds
    over, away = _spot(79, 118, "macro"), _spot(150, 189, "macro")
    assert drop_lone_blinks(blink, [over, away]) == [away]
    # the same spot with the mouth moving in it is an expression with a blink in it: kept
    with_mouth = _regions(300, 6, {"eyes": (100, 104), "mouth": (112, 118)})
    assert drop_lone_blinks(with_mouth, [over, away]) == [over, away]
    # eye motion together with the brows is not a blink: nothing to drop
    brow_raise = _regions(300, 6, {"eyes": (100, 104), "brows": (100, 104)})
    assert drop_lone_blinks(brow_raise, [over]) == [over]
    # by name, not the default (docs/spotting.md: it costs the first renderer's brow raises)
    assert SpotConfig(root="x").blinks == "separate" and SpotConfig(root="x", blinks="spans").blinks == "spans"
