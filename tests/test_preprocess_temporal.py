"""Frame selection and temporal normalisation: exact positions of every mode, Joshi's 9 key frames, TIM and the
saliency stream."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, PreprocessError
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.pipeline import preprocess_clip
from microexp.preprocess.temporal import (
    joshi_keyframes,
    saliency,
    select_positions,
    temporal_positions,
    tim,
    tim_curve,
)


def _record(n: int = 200, first: int = 10, onset: int | None = 20, apex: int | None = 45,
            offset: int | None = 80) -> ClipRecord:
    numbers = tuple(range(first, first + n))
    return ClipRecord("t", "s", "c", "x", tuple(Path(f"img{k}.png") for k in numbers), numbers, onset, apex, offset)


def test_selection_positions():
    r = _record()
    assert select_positions(r, "whole") == list(range(200))
    assert select_positions(r, "onset_offset") == list(range(10, 71))
    assert select_positions(r, "onset_apex") == list(range(10, 36))
    assert select_positions(r, "keyframes") == [10, 35, 70]
    # Joshi: onset 20, apex 45 (step floor(25/4) = 6), offset 80 (step floor(35/4) = 8), as frame numbers
    assert joshi_keyframes(20, 45, 80) == [20, 26, 32, 38, 45, 53, 61, 69, 80]
    assert select_positions(r, "keyframes9") == [10, 16, 22, 28, 35, 43, 51, 59, 70]
    with pytest.raises(PreprocessError, match="needs onset, apex and offset"):
        select_positions(_record(apex=None), "keyframes9")
    with pytest.raises(PreprocessError, match="not among its frames"):
        select_positions(_record(onset=5), "onset_offset")


def test_temporal_positions_each_mode():
    pos = list(range(10, 71))  # 61 selected positions
    assert temporal_positions(pos, "first", 18) == list(range(10, 28))
    # the CAS(ME)^2 seed window: frames 72..167 of the whole video
    assert temporal_positions(list(range(200)), "window", 96, (72, 168)) == list(range(72, 168))
    assert temporal_positions(pos, "uniform", 5) == [10, 25, 40, 55, 70]
    # short clips repeat frames (np.round: halves go to even, 0.5 -> 0, 1.5 -> 2)
    assert temporal_positions([3, 4, 5], "uniform", 5) == [3, 3, 4, 5, 5]
    assert temporal_positions(pos, "none", 7) == pos
    assert temporal_positions(pos, "tim", 7) == pos  # TIM keeps every frame and interpolates after cropping
    with pytest.raises(PreprocessError, match="needs 96 frames, has 61"):
        temporal_positions(pos, "first", 96)
    with pytest.raises(PreprocessError, match="window 72..167 needs 168 frames"):
        temporal_positions(pos, "window", 96, (72, 168))
    with pytest.raises(ConfigError, match="needs preprocess.window"):
        PreprocessConfig(temporal="window")


def _tim_reference(clip: np.ndarray, frames: int) -> np.ndarray:
    """TIM as the paper writes it: PCA to n-1 dims, W from W^T X_pca = Y, x(t) = mean + U (W^T)^{-1} F(t)."""
    n = clip.shape[0]
    x = clip.reshape(n, -1).T.astype(np.float64)
    mean = x.mean(1, keepdims=True)
    u, _, _ = np.linalg.svd(x - mean, full_matrices=False)
    u = u[:, :n - 1]
    xp = u.T @ (x - mean)
    y = tim_curve(n, np.arange(1, n + 1) / n)
    wt = y @ np.linalg.pinv(xp)  # W^T
    new = mean + u @ np.linalg.inv(wt) @ tim_curve(n, np.linspace(1 / n, 1, frames))
    return new.T.reshape(frames, *clip.shape[1:])


def test_tim_curve_is_the_path_graph_laplacian_embedding():
    n = 7
    lap = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    lap[0, 0] = lap[-1, -1] = 1
    y = tim_curve(n, np.arange(1, n + 1) / n)
    for k in range(n - 1):
        v = y[k]
        ratio = (lap @ v) / v
        np.testing.assert_allclose(ratio[np.abs(v) > 1e-6], ratio[np.abs(v) > 1e-6][0], atol=1e-9)  # eigenvector
        assert abs(v.sum()) < 1e-9  # orthogonal to the trivial constant eigenvector


def test_tim_matches_the_paper_formulation_and_reproduces_input_frames():
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(6, 5, 4)).astype(np.float32)
    out = tim(clip, 16)
    assert out.shape == (16, 5, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, _tim_reference(clip, 16), atol=1e-4)
    np.testing.assert_allclose(out[0], clip[0], atol=1e-4)  # t = 1/n and t = 1 are the first and last frames
    np.testing.assert_allclose(out[-1], clip[-1], atol=1e-4)
    # resampling to 11 = 2n - 1 frames puts every input frame at t = j/n on the new grid (j = 1..6)
    grid = tim(clip, 11)
    np.testing.assert_allclose(grid[::2], clip, atol=1e-4)
    # static clips (rank-deficient: the paper's inverse does not exist) stay static
    static = np.repeat(clip[:1], 5, axis=0)
    np.testing.assert_allclose(tim(static, 9), np.repeat(clip[:1], 9, axis=0), atol=1e-5)


def test_saliency_is_frame_minus_temporal_median():
    clip = np.array([[[10.0, 0.0]], [[20.0, 5.0]], [[40.0, 1.0]]], dtype=np.float32)  # (3, 1, 2)
    # per-pixel medians: 20 and 1
    np.testing.assert_array_equal(saliency(clip), [[[-10, -1]], [[0, 4]], [[20, 0]]])
    np.testing.assert_array_equal(saliency(clip, "positive"), [[[0, 0]], [[0, 4]], [[20, 0]]])


@pytest.fixture
def ramp_clip(tmp_path) -> ClipRecord:
    """12 frames whose gray value is 10 x (frame number) everywhere, numbered 1..12, onset 3 apex 6 offset 11."""
    paths = []
    for k in range(1, 13):
        p = tmp_path / f"img{k}.png"
        cv2.imwrite(str(p), np.full((16, 16), 10 * k, np.uint8))
        paths.append(p)
    return ClipRecord("t", "s", "ramp", "x", tuple(paths), tuple(range(1, 13)), 3, 6, 11)


def test_pipeline_reads_exactly_the_chosen_frames(ramp_clip):
    def run(**kw):
        cfg = PreprocessConfig(streams=(StreamConfig("c", "face", (4, 4)),), normalise="none", **kw)
        return preprocess_clip(ramp_clip, cfg)["c"][0, :, 0, 0] / 10

    assert run(frames=4, selection="whole", temporal="first").tolist() == [1, 2, 3, 4]
    assert run(frames=3, selection="whole", temporal="window", window=(5, 8)).tolist() == [6, 7, 8]
    assert run(frames=5, selection="onset_offset", temporal="uniform").tolist() == [3, 5, 7, 9, 11]
    # onset 3, apex 6: step floor(3/4) = 0 repeats the onset (as Joshi's code); apex..offset 11: step 1
    assert run(frames=9, selection="keyframes9", temporal="none").tolist() == [3, 3, 3, 3, 6, 7, 8, 9, 11]
    # TIM over onset..offset (9 frames, values 3..11, linear in time) to 17 frames: a linear ramp stays linear
    np.testing.assert_allclose(run(frames=17, selection="onset_offset", temporal="tim"),
                               np.linspace(3, 11, 17), atol=0.05)
    sal = preprocess_clip(ramp_clip, PreprocessConfig(streams=(StreamConfig("s", "face", (4, 4), "saliency"),),
                                                      frames=5, normalise="none"))["s"]
    np.testing.assert_allclose(sal[0, :, 0, 0], [-40, -20, 0, 20, 40])  # uniform 3,5,7,9,11 minus median 7
