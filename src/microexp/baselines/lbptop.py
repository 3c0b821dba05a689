"""LBP-TOP + linear SVM, the MEGC 2019 baseline (docs/evaluation.md §0: UF1 0.5882 / UAR 0.5785 on the composite).

Features (Zhao & Pietikäinen's LBP on Three Orthogonal Planes): local binary patterns are computed with
``skimage.feature.local_binary_pattern`` on every XY plane (each frame), every XT plane (each row over time) and every
YT plane (each column over time) of the gray clip. The clip is divided into ``grid`` (rows x cols) spatial blocks and
``time_blocks`` temporal blocks; in each block one histogram per plane orientation is taken over the block's pixels,
leaving out a border of ``radius`` where the sampling circle would leave the volume. Histograms are normalised to
sum 1 and concatenated: ``time_blocks * rows * cols * 3 * bins`` features (bins = 59 for P=8 ``nri_uniform``, the
classic non-rotation-invariant uniform patterns u2; ``uniform`` gives the rotation-invariant P+2).

Classifier: ``sklearn.svm.LinearSVC`` (one-vs-rest). ``predict_proba`` is the softmax of the one-vs-rest decision
values (a sigmoid for two classes): uncalibrated scores whose argmax equals ``predict``. Columns follow the class
indices 0..n_classes-1; a class absent from the training fold gets probability 0.

Trainer contract (``ModelSpec.kind == "sklearn"``): build with ``spec.build(n_classes, preprocess)``, then
``fit(streams, y)`` and ``predict_proba(streams)`` on the numpy streams of ``preprocess_set`` ((N, C, T, H, W)
float arrays); no epochs, optimiser or device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from microexp.errors import ConfigError, DataError
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig

METHODS = ("nri_uniform", "uniform", "default")


def n_bins(points: int, method: str) -> int:
    if method == "nri_uniform":
        return points * (points - 1) + 3
    if method == "uniform":
        return points + 2
    if method == "default":
        return 2 ** points
    raise ConfigError(f"LBP method {method!r} is not one of {list(METHODS)}")


def _to_uint8(clip: np.ndarray) -> np.ndarray:
    # one monotonic map for the whole clip keeps every LBP comparison (bar ties from rounding)
    lo, hi = float(clip.min()), float(clip.max())
    return np.round((clip - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8)


def _edges(n: int, parts: int) -> np.ndarray:
    return np.linspace(0, n, parts + 1).round().astype(int)


def lbp_top(clip: np.ndarray, grid: tuple[int, int] = (5, 5), time_blocks: int = 1, radius: int = 1,
            points: int = 8, method: str = "nri_uniform") -> np.ndarray:
    """LBP-TOP feature vector of one gray clip shaped (T, H, W)."""
    if clip.ndim != 3:
        raise DataError(f"LBP-TOP needs a gray clip (T, H, W), got shape {clip.shape}")
    t, h, w = clip.shape
    rows, cols = grid
    if min(t, h, w) <= 2 * radius:
        raise DataError(f"clip (T={t}, H={h}, W={w}) is too small for LBP radius {radius}")
    if rows < 1 or cols < 1 or time_blocks < 1 or rows > h - 2 * radius or cols > w - 2 * radius \
            or time_blocks > t - 2 * radius:
        raise ConfigError(f"block grid {grid} x {time_blocks} does not fit clip (T={t}, H={h}, W={w}) "
                          f"with radius {radius}")
    from skimage.feature import local_binary_pattern  # imported on use: keeps `microexp models` fast

    bins = n_bins(points, method)
    vol = _to_uint8(clip)
    xy = np.stack([local_binary_pattern(vol[k], points, radius, method) for k in range(t)])
    xt = np.stack([local_binary_pattern(vol[:, y, :], points, radius, method) for y in range(h)], axis=1)
    yt = np.stack([local_binary_pattern(vol[:, :, x], points, radius, method) for x in range(w)], axis=2)
    r = radius
    te, ye, xe = _edges(t - 2 * r, time_blocks) + r, _edges(h - 2 * r, rows) + r, _edges(w - 2 * r, cols) + r
    feats = []
    for a in range(time_blocks):
        for i in range(rows):
            for j in range(cols):
                block = (slice(te[a], te[a + 1]), slice(ye[i], ye[i + 1]), slice(xe[j], xe[j + 1]))
                for codes in (xy, xt, yt):
                    hist = np.bincount(codes[block].astype(np.int64).ravel(), minlength=bins)[:bins]
                    feats.append(hist / max(hist.sum(), 1))
    return np.concatenate(feats).astype(np.float32)


class LBPTOPSVM:
    """LBP-TOP features + linear SVM with a sklearn-style interface on microexp streams."""

    def __init__(self, n_classes: int, stream: str = "clip", grid: tuple[int, int] = (5, 5), time_blocks: int = 1,
                 radius: int = 1, points: int = 8, method: str = "nri_uniform", C: float = 1.0,
                 class_weight: str | None = None, max_iter: int = 10000, seed: int = 0,
                 progress: bool = False):
        n_bins(points, method)  # validates the method
        self.n_classes, self.stream = n_classes, stream
        self.grid, self.time_blocks, self.radius, self.points, self.method = tuple(grid), time_blocks, radius, \
            points, method
        self.C, self.class_weight, self.max_iter, self.seed, self.progress = C, class_weight, max_iter, seed, progress
        self.svm: Any = None  # sklearn.svm.LinearSVC once fitted

    def n_features(self) -> int:
        return self.time_blocks * self.grid[0] * self.grid[1] * 3 * n_bins(self.points, self.method)

    def features(self, streams: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, n_features) LBP-TOP matrix of the stream's clips ((N, 1, T, H, W) or (N, T, H, W))."""
        x = streams[self.stream] if isinstance(streams, dict) else streams
        x = np.asarray(x)
        if x.ndim == 5:
            if x.shape[1] != 1:
                raise DataError(f"LBP-TOP reads gray clips; stream {self.stream!r} has {x.shape[1]} channels")
            x = x[:, 0]
        if x.ndim != 4:
            raise DataError(f"stream {self.stream!r} must be (N, 1, T, H, W), got shape {x.shape}")
        it = tqdm(x, desc="LBP-TOP", leave=False, disable=not self.progress)
        return np.stack([lbp_top(c, self.grid, self.time_blocks, self.radius, self.points, self.method) for c in it])

    def fit(self, streams: dict[str, np.ndarray] | np.ndarray, y: Any) -> LBPTOPSVM:
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise DataError(f"LBP-TOP + SVM needs at least two classes in the training set, got {np.unique(y)}")
        from sklearn.svm import LinearSVC

        self.svm = LinearSVC(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                             random_state=self.seed)
        self.svm.fit(self.features(streams), y)
        return self

    def decision_function(self, streams: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        if self.svm is None:
            raise ConfigError("LBPTOPSVM.fit() must be called before predicting")
        d = self.svm.decision_function(self.features(streams))
        return np.stack([-d / 2, d / 2], axis=1) if d.ndim == 1 else d

    def predict_proba(self, streams: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        d = self.decision_function(streams)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((len(p), self.n_classes))
        out[:, self.svm.classes_] = p  # type: ignore[union-attr]
        return out

    def predict(self, streams: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        return self.predict_proba(streams).argmax(axis=1)


def build_lbptop(n_classes: int, input_shapes: dict[str, Shape], **hparams: Any) -> LBPTOPSVM:
    (stream,) = input_shapes
    return LBPTOPSVM(n_classes, stream=stream, **hparams)


register(ModelSpec(
    name="lbptop-svm",
    builder=build_lbptop,  # type: ignore[arg-type]
    preprocess=PreprocessConfig(streams=(StreamConfig("clip", "face", (128, 128)),), frames=32,
                                selection="onset_offset", normalise="none"),
    source="Zhao & Pietikainen 2007 (LBP-TOP) + linear SVM; MEGC 2019 baseline (See et al., FG 2019)",
    description="uniform LBP histograms on XY/XT/YT planes over a 5x5 block grid + LinearSVC (kind=sklearn)",
    kind="sklearn",
))
