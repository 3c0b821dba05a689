"""Contract tests over every registered spotting method, the neutral subject folds, and `spot --fps`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from microexp.data.splits import group_folds
from microexp.errors import ConfigError
from microexp.spot.features import VideoFeatures
from microexp.spot.groundtruth import Interval
from microexp.spot.methods import SPOT_METHODS, FitOptions, get_spot_method, spot_method_names


def _features(n: int = 120, k: int = 4, bumps: tuple[int, ...] = (30, 80), seed: int = 0) -> VideoFeatures:
    """Features of a video whose flow grows around each frame of ``bumps`` (an expression's apex)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    amp = sum(np.exp(-0.5 * ((t - b) / 2.0) ** 2) for b in bumps)
    head = (0.05 * rng.random((n, 36)) + amp[:, None] * 2.0).astype(np.float32)
    span = (0.05 * rng.random((n, 36))).astype(np.float32)
    maps = (rng.normal(0, 0.05, (n, 2, 16, 16)) + amp[:, None, None, None]).astype(np.float16)
    valid = np.ones(n, bool)
    valid[:k] = False
    return VideoFeatures("v", 30.0, np.arange(1, n + 1), (k,), {k: head}, {k: span}, {k: valid}, {k: maps})


def test_the_registry_lists_the_methods_and_refuses_unknown_and_twice():
    assert spot_method_names() == ["learned", "mdmd"]
    with pytest.raises(ConfigError, match=r"unknown spotting method 'nope' \(known: learned, mdmd\)"):
        get_spot_method("nope")
    with pytest.raises(ConfigError, match="registered twice"):
        SPOT_METHODS.add("mdmd", get_spot_method("mdmd"))


@pytest.mark.parametrize("name", ["learned", "mdmd"])
def test_every_method_keeps_the_contract(name):
    method = get_spot_method(name)
    assert method.name == name and method.description
    feat = _features()
    ivs = [Interval("d", "s", "v", b - 3, b + 3, "micro", b) for b in (30, 80)]
    model = method.fit([(feat, ivs)], "micro", 4, FitOptions(epochs=3, seed=0))
    curve = method.curve(model, feat, 4)
    assert curve.shape == (120,) and curve.dtype == np.float64
    assert np.isnan(curve[:4]).all() and np.isfinite(curve[8:100]).all()  # NaN exactly where not scored
    # the curve peaks near the moving frames, not in the still ones
    assert curve[28:33].max() > np.nanmedian(curve) and curve[76:85].max() > np.nanmedian(curve)
    # trained methods save and restore their model: the same curve again
    state = method.state(model)
    assert (state is not None) == method.trained
    again = method.curve(method.from_state(state), feat, 4)
    np.testing.assert_allclose(again, curve, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_trained_method_learns_from_its_intervals():
    """Control: the learned method trained on intervals placed where nothing moves does not peak at the bumps."""
    method = get_spot_method("learned")
    feat = _features()
    real = [Interval("d", "s", "v", b - 3, b + 3, "micro", b) for b in (30, 80)]
    wrong = [replace(iv, onset=iv.onset + 25, offset=iv.offset + 25, apex=iv.apex + 25) for iv in real]
    opts = FitOptions(epochs=6, seed=0)
    good = method.curve(method.fit([(feat, real)], "micro", 4, opts), feat, 4)
    bad = method.curve(method.fit([(feat, wrong)], "micro", 4, opts), feat, 4)
    assert good[30] > good[55] and bad[30] < good[30]


def test_subject_folds_need_no_labels_and_never_split_a_subject():
    groups = np.array(["a", "a", "b", "c", "c", "d", "e"], dtype=object)
    loso = group_folds("loso", groups)
    assert [f.name for f in loso] == ["a", "b", "c", "d", "e"]
    k = group_folds("kfold", groups, seed=1, n_splits=2)
    assert len(k) == 2 and sorted(np.concatenate([f.test for f in k]).tolist()) == list(range(7))
    for f in loso + k:
        assert not set(groups[f.train]) & set(groups[f.test])
    with pytest.raises(ConfigError, match="LOSO needs at least 2 subjects, found 1"):
        group_folds("loso", np.array(["a", "a"], dtype=object))
    with pytest.raises(ConfigError, match="grouped protocol 'holdout'"):
        group_folds("holdout", groups)


def test_macro_windows_at_several_scales_and_their_merge():
    from microexp.spot.detect import fit_scales, merge_scales, scale_key
    from microexp.spot.metrics import Spot

    train = [Interval("d", "s", "v", 100 * i, 100 * i + n - 1, "macro", 100 * i + n // 3) for i, n in
             enumerate((20, 24, 30, 60, 70, 80))]
    one = fit_scales(train, "macro", 30.0, 1)
    two = fit_scales(train, "macro", 30.0, 2)
    assert len(one) == 1 and len(two) == 2
    assert two[0].k < one[0].k < two[1].k  # a short and a long window around the mean one
    assert two[1].before + two[1].after > 2 * (two[0].before + two[0].after)
    assert fit_scales(train[:3], "macro", 30.0, 2) == fit_scales(train[:3], "macro", 30.0, 1)  # too few: one
    assert [scale_key("macro", i) for i in range(2)] == ["macro", "macro@1"]
    a = [Spot("d", "s", "v", 10, 30, "macro", 1.0), Spot("d", "s", "v", 200, 220, "macro", 1.0)]
    b = [Spot("d", "s", "v", 5, 60, "macro", 2.0), Spot("d", "s", "v", 400, 470, "macro", 2.0)]
    merged = merge_scales([a, b], [[0.5, 0.1], [1.5, 0.2]])[0]
    # the overlapping pair keeps the one further above its threshold; the others stay
    assert [(s.onset, s.offset) for s in merged] == [(5, 60), (200, 220), (400, 470)]
    assert merge_scales([a, b], [[2.0, 0.1], [1.5, 0.2]])[0][0].onset == 10
