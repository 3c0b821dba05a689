"""Known motion: optical flow against ground truth and alignment against injected head jitter.

The clips are built from a real face (scikit-image's astronaut, matplotlib's grace_hopper) warped by a known
smooth displacement field (cv2.remap) and by known similarity jitter (cv2.warpAffine): that is the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from microexp.bench.preprocess import cropped_face, sample_faces
from microexp.data.records import ClipRecord
from microexp.preprocess import align as al
from microexp.preprocess import regions as rg
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.flow import compute_flow, optical_strain, resize_flow
from microexp.preprocess.pipeline import clip_geometry, preprocess_clip
from microexp.preprocess.regions import to_gray

N = 112


def _field(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth micro-expression-sized motion: a mouth-corner bump, an opposite brow bump and a drift."""
    a = np.exp(-((x - 56) ** 2 + (y - 80) ** 2) / (2 * 16**2))
    b = np.exp(-((x - 40) ** 2 + (y - 40) ** 2) / (2 * 14**2))
    return 1.5 * a - 0.6 * b + 0.3, -1.0 * a + 0.8 * b


def _onset_apex() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset (a 112x112 face), apex (onset moved by the field) and the exact forward flow (H, W, 2)."""
    onset = to_gray(cropped_face("astronaut", (N, N)), order="bgr").astype(np.float32)
    y, x = np.mgrid[0:N, 0:N].astype(np.float64)
    gu, gv = _field(x, y)
    # apex(p) = onset(p - g(p)): a point at q in the onset lands at p = q + f(q) with f(q) = g(q + f(q))
    apex = cv2.remap(onset, (x - gu).astype(np.float32), (y - gv).astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)
    fu, fv = np.zeros_like(x), np.zeros_like(x)
    for _ in range(20):  # fixed point, converges geometrically (|grad g| < 0.1)
        fu, fv = _field(x + fu, y + fv)
    return onset, np.clip(apex, 0, 255), np.stack([fu, fv], -1)


INSIDE = (slice(16, N - 16), slice(16, N - 16))  # the face, away from the image border


@pytest.mark.parametrize(("method", "mean_tol", "p95_tol"), [("tvl1", 0.2, 0.4), ("farneback", 0.25, 0.6),
                                                              ("dis", 0.25, 0.7)])
def test_flow_agrees_with_ground_truth_inside_the_face(method, mean_tol, p95_tol):
    """Measured end-point errors (mean / 95th percentile, px): TV-L1 0.10 / 0.24, Farneback 0.14 / 0.39,
    DIS 0.13 / 0.44; the true motion averages 0.65 px, so zero flow would score 0.65."""
    onset, apex, truth = _onset_apex()
    flow = compute_flow(onset, apex, method)
    epe = np.hypot(*(flow - truth).transpose(2, 0, 1))[INSIDE]
    assert epe.mean() < mean_tol and np.percentile(epe, 95) < p95_tol
    zero = np.hypot(*truth.transpose(2, 0, 1))[INSIDE]
    assert epe.mean() < 0.4 * zero.mean()


def test_flow_stream_through_the_pipeline_in_ststnet_shape(tmp_path):
    """face='none' clip of the two frames -> (3, 1, 28, 28) u, v, strain; equals the truth resized to 28x28."""
    onset, apex, truth = _onset_apex()
    paths = []
    for k, img in enumerate([onset, onset, apex, apex], start=1):
        p = tmp_path / f"img{k}.png"
        cv2.imwrite(str(p), np.round(img).astype(np.uint8))
        paths.append(p)
    rec = ClipRecord("t", "s", "c", "x", tuple(paths), (1, 2, 3, 4), 1, 3, 4)
    cfg = PreprocessConfig(streams=(StreamConfig("flow", "face", (28, 28), "flowstrain"),
                                    StreamConfig("uv", "face", (28, 28), "flow")), normalise="none", flow="tvl1")
    assert cfg.stream_shape("flow") == (3, 1, 28, 28)
    out = preprocess_clip(rec, cfg)
    assert out["flow"].shape == (3, 1, 28, 28) and out["uv"].shape == (2, 1, 28, 28)
    small = resize_flow(truth.astype(np.float32), (28, 28))  # the truth in 28x28 pixel units
    err = np.hypot(out["flow"][0, 0] - small[..., 0], out["flow"][1, 0] - small[..., 1])[4:-4, 4:-4]
    assert err.mean() < 0.06  # 0.2 px at 112 px, scaled by 28/112
    np.testing.assert_allclose(out["flow"][2, 0], optical_strain(np.stack([out["flow"][0, 0], out["flow"][1, 0]], -1)))
    # per frame pair on request: T = frames - 1
    pairs = preprocess_clip(rec, cfg.with_overrides(flow_pairs="consecutive", frames=4, selection="whole",
                                                    flow="dis"))
    assert pairs["flow"].shape == (3, 3, 28, 28) and cfg.with_overrides(flow_pairs="consecutive", frames=4).stream_shape("flow") == (3, 3, 28, 28)
    assert np.abs(pairs["uv"][:, 0]).mean() < 0.02 and np.abs(pairs["uv"][:, 1]).mean() > 0.05  # still, then motion


def test_strain_of_a_known_linear_flow_field():
    y, x = np.mgrid[0:20, 0:30].astype(np.float64)
    a, b, c, d = 0.03, -0.02, 0.05, 0.01  # u = a x + b y, v = c x + d y
    flow = np.stack([a * x + b * y, c * x + d * y], -1).astype(np.float32)
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    np.testing.assert_allclose(optical_strain(flow), expected, rtol=1e-5)
    # a pure rotation has no strain
    rot = np.stack([-0.02 * y, 0.02 * x], -1).astype(np.float32)
    np.testing.assert_allclose(optical_strain(rot), 0, atol=1e-7)


def test_resize_flow_rescales_vectors():
    flow = np.zeros((112, 112, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    small = resize_flow(flow, (28, 56))
    np.testing.assert_allclose(small[..., 0], 2.0)  # 56 / 112 of 4 px
    np.testing.assert_allclose(small[..., 1], -0.5)  # 28 / 112 of -2 px


def _jittered(name: str, n: int = 6, seed: int = 1) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
    """Frames of a real face under known head jitter J_t: roll within +-2 degrees, shifts within +-3 px."""
    base = to_gray(sample_faces()[name])
    h, w = base.shape
    rng = np.random.default_rng(seed)
    jit = [al.identity()]
    for _ in range(n - 1):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-2, 2)), 1.0)
        m[:, 2] += rng.uniform(-3, 3, 2)
        jit.append(m)
    frames = {t: cv2.warpAffine(base, jit[t], (w, h), borderMode=cv2.BORDER_REFLECT) for t in range(n)}
    return frames, jit


def _residual(frames, jit, align: str) -> float:
    """Largest displacement, over the 68 landmarks of the reference face, between where a facial point lands in
    the aligned frame t and in the aligned reference frame: 0 for perfect stabilisation."""
    geo = clip_geometry(frames, 0, PreprocessConfig(face="dlib", align=align))
    pts = geo.face.landmarks
    ref = al.apply(geo.transforms[0], pts)
    return max(float(np.linalg.norm(al.apply(geo.transforms[t], al.apply(jit[t], pts)) - ref, axis=1).max())
               for t in range(1, len(jit)))


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_alignment_removes_head_jitter(name):
    """Measured max residuals: no per-frame alignment 6.6-7.3 px (the injected jitter), ``track`` (onset landmarks
    + ECC registration) 0.08 px."""
    frames, jit = _jittered(name)
    assert _residual(frames, jit, "onset") > 3.0  # the jitter is there without per-frame alignment
    assert _residual(frames, jit, "track") < 0.25


def test_per_frame_crops_follow_each_frames_own_landmarks(tmp_path):
    """``align: per-frame`` is the FuseNet seed's per-frame detection: every frame's eyes/mouth crop is the plain
    slice at that frame's own landmark box (rows y19..y1, columns x1..x15), resized INTER_AREA; no rotation."""
    base = to_gray(sample_faces()["astronaut"])
    h, w = base.shape
    shifts = [(0, 0), (9, 0), (0, -7), (-6, 5)]  # (dx, dy): a head that moves between frames
    frames = {t: cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
              for t, (dx, dy) in enumerate(shifts)}
    geo = clip_geometry(frames, 0, PreprocessConfig(face="dlib", align="per-frame"))
    assert all(np.array_equal(a, al.identity()) for a in geo.transforms.values())
    eyes0 = rg.eyes_box(geo.frame_faces[0].landmarks)
    for t, (dx, dy) in enumerate(shifts):
        box = rg.eyes_box(geo.frame_faces[t].landmarks)
        # the box moves with the head (dlib's landmarks of a shifted face, within 2 px)
        np.testing.assert_allclose(np.subtract(box, eyes0), [dx, dy, dx, dy], atol=2)
    paths = []
    for t, img in frames.items():
        paths.append(Path(tmp_path) / f"img{t + 1}.png")
        cv2.imwrite(str(paths[-1]), img)
    rec = ClipRecord("t", "s", "c", "x", tuple(paths), (1, 2, 3, 4), 1, 2, 4)
    cfg = PreprocessConfig(streams=(StreamConfig("eyes", "eyes", (32, 32)), StreamConfig("mouth", "mouth", (32, 32))),
                           frames=4, selection="whole", temporal="none", face="dlib", align="per-frame",
                           normalise="none")
    out = preprocess_clip(rec, cfg)
    for t in range(4):
        lm = np.round(geo.frame_faces[t].landmarks).astype(int)
        eye = frames[t][lm[19, 1]:lm[1, 1], lm[1, 0]:lm[15, 0]]
        mouth = frames[t][lm[2, 1]:lm[6, 1], lm[2, 0]:lm[14, 0]]
        np.testing.assert_array_equal(out["eyes"][0, t], cv2.resize(eye, (32, 32), interpolation=cv2.INTER_AREA))
        np.testing.assert_array_equal(out["mouth"][0, t], cv2.resize(mouth, (32, 32), interpolation=cv2.INTER_AREA))
    # with the onset landmarks only (align none) the moved frames are cut at the onset box: not the same crops
    onset_only = preprocess_clip(rec, cfg.with_overrides(align="none"))
    assert np.abs(onset_only["eyes"][0, 1] - out["eyes"][0, 1]).mean() > 5


def test_tracked_face_stream_is_stable(tmp_path):
    """The aligned 64x64 face crops of a jittered still face differ far less than the unaligned ones."""
    frames, _ = _jittered("astronaut", n=4)
    paths = []
    for t, img in frames.items():
        p = Path(tmp_path) / f"img{t + 1}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    rec = ClipRecord("t", "s", "c", "x", tuple(paths), (1, 2, 3, 4), 1, 2, 4)

    def spread(align: str) -> float:
        cfg = PreprocessConfig(streams=(StreamConfig("f", "face", (64, 64)),), frames=4, selection="whole",
                               face="dlib", align=align, normalise="none")
        clip = preprocess_clip(rec, cfg)["f"][0]
        return float(np.abs(clip[1:] - clip[0]).mean())

    assert spread("track") < 0.3 * spread("onset")
