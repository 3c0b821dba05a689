"""LBP-TOP + linear SVM baseline: features against a brute-force LBP-TOP, the estimator interface, learnability."""

from __future__ import annotations

import numpy as np
import pytest

from _models_helpers import blob_clips, shuffled
from microexp.baselines.lbptop import LBPTOPSVM, lbp_top, n_bins
from microexp.errors import ConfigError, DataError
from microexp.models import registry


def _brute_lbp4(img: np.ndarray) -> np.ndarray:
    """P=4, R=1 'default' LBP on the 4-neighbourhood, as skimage orders it: bit p at angle 2*pi*p/4
    (p=0 right, 1 up, 2 left, 3 down); s(x) = x >= 0; out-of-image neighbours read as 0."""
    pad = np.pad(img.astype(np.int64), 1)
    c = pad[1:-1, 1:-1]
    right, up, left, down = pad[1:-1, 2:], pad[:-2, 1:-1], pad[1:-1, :-2], pad[2:, 1:-1]
    return sum(((n - c) >= 0).astype(np.int64) << p for p, n in enumerate((right, up, left, down)))


def test_lbptop_features_match_brute_force_planes_blocks_and_borders() -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(7, 8, 9)).astype(np.float64)
    clip[0, 0, 0], clip[0, 0, 1] = 0, 255  # min-max remap to uint8 is then the identity
    got = lbp_top(clip, grid=(2, 3), time_blocks=2, radius=1, points=4, method="default")
    t, h, w = clip.shape
    xy = np.stack([_brute_lbp4(clip[k]) for k in range(t)])
    xt = np.stack([_brute_lbp4(clip[:, y, :]) for y in range(h)], axis=1)   # rows = time, cols = x
    yt = np.stack([_brute_lbp4(clip[:, :, x]) for x in range(w)], axis=2)   # rows = time, cols = y
    # blocks split the interior (a border of radius 1 left out) at rounded linspace edges: T 1..5, Y 1..6, X 1..7
    te, ye, xe = [1, 3, 6], [1, 4, 7], [1, 3, 6, 8]
    expected = []
    for a in range(2):
        for i in range(2):
            for j in range(3):
                sl = (slice(te[a], te[a + 1]), slice(ye[i], ye[i + 1]), slice(xe[j], xe[j + 1]))
                for codes in (xy, xt, yt):
                    hist = np.bincount(codes[sl].ravel(), minlength=16).astype(float)
                    expected.append(hist / hist.sum())
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-6)
    assert got.shape == (2 * 2 * 3 * 3 * 16,)


def test_feature_size_and_bins() -> None:
    assert n_bins(8, "nri_uniform") == 59 and n_bins(8, "uniform") == 10 and n_bins(4, "default") == 16
    est = registry.get("lbptop-svm").build(3)
    assert est.n_features() == 5 * 5 * 3 * 59 == 4425
    x = np.random.default_rng(1).random((2, 1, 8, 20, 20)).astype(np.float32)
    f = est.features({"clip": x})
    assert f.shape == (2, 4425)
    np.testing.assert_allclose(f.reshape(2, 75, 59).sum(axis=2), 1.0, atol=1e-5)  # every histogram normalised


def test_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="method"):
        LBPTOPSVM(3, method="var")
    with pytest.raises(DataError, match="too small"):
        lbp_top(np.zeros((2, 10, 10)))
    with pytest.raises(ConfigError, match="grid"):
        lbp_top(np.zeros((5, 6, 6)), grid=(5, 5))
    est = LBPTOPSVM(3)
    with pytest.raises(DataError, match="channels"):
        est.features({"clip": np.zeros((1, 2, 5, 12, 12))})
    with pytest.raises(ConfigError, match="fit"):
        est.predict_proba({"clip": np.zeros((1, 1, 5, 12, 12))})
    with pytest.raises(DataError, match="two classes"):
        est.fit({"clip": np.zeros((2, 1, 5, 12, 12))}, [1, 1])


def _task(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    x, y = blob_clips(n, 3, (8, 16, 16), seed=seed)
    return {"clip": x}, y


def test_lbptop_svm_learns_motion_and_shuffled_control_does_not() -> None:
    train, y = _task(72, 1)
    test, y_test = _task(48, 2)
    scores = []
    for labels in (y, shuffled(y)):
        est = registry.get("lbptop-svm").builder(3, {"clip": (1, 8, 16, 16)}, grid=(2, 2))
        scores.append(float((est.fit(train, labels).predict(test) == y_test).mean()))
    assert scores[0] >= 0.85, scores
    assert scores[1] <= 1 / 3 + 0.17, scores


def test_predict_proba_covers_all_classes_and_agrees_with_predict() -> None:
    train, y = _task(36, 3)
    test, _ = _task(12, 4)
    keep = y != 1  # class 1 absent from this training fold
    est = LBPTOPSVM(3, grid=(2, 2)).fit({"clip": train["clip"][keep]}, y[keep])
    p = est.predict_proba(test)
    assert p.shape == (12, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p[:, 1] == 0).all()
    np.testing.assert_array_equal(p.argmax(axis=1), est.predict(test))
    assert set(est.predict(test)) <= {0, 2}
