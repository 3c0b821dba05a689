"""Rendering one clip: AU warp field (TPS), timing envelope, nuisances (jitter, flicker, noise, blink).

Recipe of docs/synthetic.md §7.1: the TPS (scipy ``RBFInterpolator``, thin-plate kernel, light smoothing) is
fitted once per face / AU set / size on the moving control points, pinned landmarks and a dense grid of zero
anchors outside the dilated face hull; it is evaluated on a coarse grid, upsampled and multiplied by a
feathered face mask (no leakage). Each frame is one ``cv2.remap`` of the neutral face at working resolution
whose map composes the head-jitter similarity with ``e(t) * F`` (AU) and ``b(t) * B`` (blink). The same remap
runs for clips without AUs, so resampling artefacts are no class cue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from microexp.errors import ConfigError
from microexp.synth.aus import au_controls, blink_controls, face_axes, format_aus, parse_aus
from microexp.synth.faces import Face

# nuisance defaults (see SynthConfig / docs/synthetic.md §7.5)
JITTER = 0.15  # px / frame translation sigma of the head random walk (rotation and scale scale with it)
FLICKER = 0.015  # relative amplitude of the aliased mains flicker
NOISE = 2.0  # Gaussian read-noise sigma in grey levels (shot noise is added on top)
TPS_SMOOTHING = 1e-3
COARSE_STEP = 2  # px: TPS evaluated on this grid, then upsampled


@dataclass
class SynthClip:
    """One rendered clip and its ground truth.

    ``onset``/``apex``/``offset`` are 1-based frame numbers (as in ``frame_0001.png``). ``flow`` is the AU
    warp's displacement at each frame relative to the neutral face (float32 (T, H, W, 2), x then y, pixels,
    jitter and blink excluded); ``jitter`` the per-frame 2x3 similarity (neutral -> frame); ``envelope`` the
    AU envelope e(t) (1 at apex) and ``blink`` the blink envelope b(t) (eyelid closure fraction).
    """

    subject: str
    clip_id: str
    label: str
    frames: np.ndarray
    onset: int
    apex: int
    offset: int
    fps: float
    aus: str
    unit_flow: np.ndarray  # (H, W, 2) AU field at intensity 1, shared between clips of a face/AU set
    intensity: float
    envelope: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    blink: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    jitter: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3), np.float32))
    face_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    source: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def flow(self) -> np.ndarray:
        """Ground-truth AU displacement per frame, float32 (T, H, W, 2); built on access (1 MB per 32x64x64
        clip)."""
        return (self.envelope[:, None, None, None] * (self.intensity * self.unit_flow)[None]).astype(
            np.float32
        )


# ----------------------------------------------------------------------------------------------------- geomet
def _resized(face: Face, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = size
    h, w = face.image.shape
    interp = cv2.INTER_AREA if rows < h else cv2.INTER_CUBIC
    img = cv2.resize(face.image, (cols, rows), interpolation=interp)
    scale = np.array([cols / w, rows / h], dtype=np.float64)
    lm = (face.landmarks.astype(np.float64) + 0.5) * scale - 0.5
    return img, lm


def _hull_mask(landmarks: np.ndarray, size: tuple[int, int], grow: float) -> np.ndarray:
    """Filled convex hull of the landmarks (brows lifted by ``grow`` IOD to include the lower forehead)."""
    _, up, iod, centre = face_axes(landmarks)
    pts = landmarks.copy()
    pts[17:27] += up * 0.25 * iod  # room above the brows for brow raisers
    pts = centre + (pts - centre) * (1.0 + grow)
    mask = np.zeros(size, np.uint8)
    cv2.fillConvexPoly(
        mask, cv2.convexHull(np.round(pts * 16).astype(np.int32)), 1, lineType=cv2.LINE_8, shift=4
    )
    return mask


@lru_cache(maxsize=64)
def _face_geometry(
    face: Face, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(neutral image, landmarks, feathered mask, outer anchor points) at working size."""
    img, lm = _resized(face, size)
    _, _, iod, _ = face_axes(lm)
    hull = _hull_mask(lm, size, grow=0.08).astype(np.float32)
    sigma = max(0.05 * iod, 0.5)
    feather = np.clip(cv2.GaussianBlur(hull, (0, 0), sigma) * 1.5, 0.0, 1.0)
    # dense zero anchors (0.5 IOD spacing) outside a wider hull, extended beyond the frame
    outer = _hull_mask(lm, size, grow=0.25)
    step = 0.5 * iod
    rows, cols = size
    gy, gx = np.mgrid[-step * 2 : rows + step * 2 : step, -step * 2 : cols + step * 2 : step]
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    inside = np.zeros(len(grid), bool)
    ok = (grid[:, 0] >= 0) & (grid[:, 0] < cols) & (grid[:, 1] >= 0) & (grid[:, 1] < rows)
    gi = np.round(grid[ok]).astype(int).clip(0, [cols - 1, rows - 1])
    inside[ok] = outer[gi[:, 1], gi[:, 0]] > 0
    return img, lm, feather, grid[~inside]


def _tps_field(
    src: np.ndarray,
    disp: np.ndarray,
    moving: set[int],
    lm: np.ndarray,
    anchors: np.ndarray,
    feather: np.ndarray,
) -> np.ndarray:
    """Dense (H, W, 2) field through the control displacements, zero at pins and anchors, masked."""
    rows, cols = feather.shape
    if len(src) == 0:
        return np.zeros((rows, cols, 2), np.float32)
    _, _, iod, _ = face_axes(lm)
    # pin still landmarks, except those hugging a moving point (avoids TPS overshoot, §7.3)
    still = np.array([i for i in range(68) if i not in moving])
    dist = np.linalg.norm(lm[still][:, None] - src[None], axis=2).min(1)
    pins = lm[still[dist > 0.08 * iod]]
    pts = np.concatenate([src, pins, anchors])
    vals = np.concatenate([disp, np.zeros((len(pins) + len(anchors), 2))])
    rbf = RBFInterpolator(pts, vals, kernel="thin_plate_spline", smoothing=TPS_SMOOTHING)
    ys = np.arange(0, rows + COARSE_STEP, COARSE_STEP, dtype=np.float64)
    xs = np.arange(0, cols + COARSE_STEP, COARSE_STEP, dtype=np.float64)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    coarse = rbf(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(len(ys), len(xs), 2).astype(np.float32)
    # bilinear upsample: pixel (x, y) sits at coarse coordinate (x / step, y / step)
    px = (np.arange(cols, dtype=np.float32) / COARSE_STEP)[None, :].repeat(rows, 0)
    py = (np.arange(rows, dtype=np.float32) / COARSE_STEP)[:, None].repeat(cols, 1)
    dense = cv2.remap(coarse, px, py, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (dense * feather[..., None]).astype(np.float32)


@lru_cache(maxsize=512)
def unit_field(face: Face, aus: str, size: tuple[int, int]) -> np.ndarray:
    """AU displacement field at intensity 1 (float32 (H, W, 2)); the field is linear in the intensity."""
    _, lm, feather, anchors = _face_geometry(face, size)
    parsed = parse_aus(aus)
    out = np.zeros((*size, 2), np.float32)
    ex, _, iod, centre = face_axes(lm)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64)
    across = ((xx - centre[0]) * ex[0] + (yy - centre[1]) * ex[1]) / iod  # > 0 on the subject's left
    for side in ("", "L", "R"):  # "": both sides
        group = [a for a in parsed if a.side == side]
        if not group:
            continue
        src, disp, moving = au_controls(lm, group)
        part = _tps_field(src, disp, moving, lm, anchors, feather)
        if side:  # a one-sided AU must not drag the other half along (TPS spreads across the midline)
            sign = 1.0 if side == "L" else -1.0
            part = part * (1.0 / (1.0 + np.exp(-sign * across / 0.04)))[..., None].astype(np.float32)
        out += part
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def blink_field(face: Face, size: tuple[int, int]) -> np.ndarray:
    """Full-closure eyelid field; a partial blink scales it by 0.3-0.5 (full closure looks wrong, §7.5)."""
    _, lm, feather, anchors = _face_geometry(face, size)
    src, disp, moving = blink_controls(lm)
    out = _tps_field(src, disp, moving, lm, anchors, feather)
    out.setflags(write=False)
    return out


# ------------------------------------------------------------------------------------------------------- timi
def envelope(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Raised-cosine rise onset->apex and fall apex->offset (1-based frames); 0 at onset/offset, 1 at apex."""
    t = np.arange(1, n_frames + 1, dtype=np.float64)
    e = np.zeros(n_frames)
    rise = (t > onset) & (t <= apex)
    e[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - onset) / (apex - onset))
    fall = (t > apex) & (t < offset)
    e[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - apex) / (offset - apex))
    return e.astype(np.float32)


def _smooth_walk(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Random walk of smoothed increments (no frame-to-frame rattle), starting at 0."""
    steps = rng.normal(0.0, sigma, n + 4)
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    steps = np.convolve(steps, kernel / np.sqrt((kernel**2).sum()), mode="valid")[:n]  # keeps sigma per step
    walk = np.cumsum(steps)
    return walk - walk[0]


def jitter_transforms(
    rng: np.random.Generator, n_frames: int, fps: float, centre: np.ndarray, jitter: float
) -> np.ndarray:
    """Per-frame 2x3 similarity about ``centre``: random-walk translation/rotation/scale plus a slow sway."""
    tx, ty = _smooth_walk(rng, n_frames, jitter), _smooth_walk(rng, n_frames, jitter)
    rot = np.deg2rad(_smooth_walk(rng, n_frames, jitter * 0.2))  # 0.03 deg/frame at jitter 0.15
    scale = 1.0 + np.clip(_smooth_walk(rng, n_frames, jitter * 0.005), -0.004, 0.004)
    t = np.arange(n_frames) / fps
    f_sway, phase = rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi)
    amp = jitter * rng.uniform(2.0, 5.0)
    tx = tx + amp * (np.sin(2 * np.pi * f_sway * t + phase) - np.sin(phase))
    mats = np.zeros((n_frames, 2, 3), np.float64)
    for i in range(n_frames):
        c, s = scale[i] * np.cos(rot[i]), scale[i] * np.sin(rot[i])
        a = np.array([[c, -s], [s, c]])
        mats[i, :, :2] = a
        mats[i, :, 2] = centre - a @ centre + np.array([tx[i], ty[i]])
    return mats.astype(np.float32)


def _blink_envelope(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """One partial blink (closure 0.3-0.5, ~100 ms down, ~150 ms up) at a random time in the clip, any
    class."""
    depth = rng.uniform(0.3, 0.5)
    down, up = max(0.1 * fps, 1.0), max(0.15 * fps, 1.0)
    start = rng.uniform(0.0, max(n_frames - 1 - down - up, 0.0))  # the whole blink lies inside the clip
    t = np.arange(n_frames, dtype=np.float64)
    b = np.zeros(n_frames)
    r = (t >= start) & (t < start + down)
    b[r] = 0.5 - 0.5 * np.cos(np.pi * (t[r] - start) / down)
    f = (t >= start + down) & (t < start + down + up)
    b[f] = 0.5 + 0.5 * np.cos(np.pi * (t[f] - start - down) / up)
    return (depth * b).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- rend
def render_clip(
    face: Face,
    aus: str,
    *,
    n_frames: int,
    onset: int,
    apex: int,
    offset: int,
    fps: float,
    size: tuple[int, int] = (64, 64),
    intensity: float = 1.0,
    seed: int = 0,
    jitter: float = JITTER,
    flicker: float = FLICKER,
    noise: float = NOISE,
    blink: bool = True,
    label: str = "",
    subject: str | None = None,
    clip_id: str = "clip",
) -> SynthClip:
    """Render one grayscale clip of ``face`` showing ``aus`` (an AU code string) with the given timing.

    Nuisances: ``jitter`` (px/frame head random walk, 0 = still), ``flicker`` (relative flicker amplitude,
    also drives a slow illumination drift), ``noise`` (read-noise sigma in grey levels, plus shot noise),
    ``blink``.
    """
    if not 1 <= onset < apex < offset <= n_frames:
        raise ConfigError(
            f"need 1 <= onset < apex < offset <= n_frames, got onset={onset} apex={apex} "
            f"offset={offset} n_frames={n_frames}"
        )
    if fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    size = (int(size[0]), int(size[1]))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5E1F]))
    img, lm, feather, _ = _face_geometry(face, size)
    canonical = format_aus(parse_aus(aus))
    unit = unit_field(face, canonical, size)
    env = envelope(n_frames, onset, apex, offset)
    blink_env = _blink_envelope(rng, n_frames, fps) if blink else np.zeros(n_frames, np.float32)
    bfield = blink_field(face, size)
    _, _, iod, centre = face_axes(lm)
    nasion = lm[27]
    mats = (
        jitter_transforms(rng, n_frames, fps, nasion, jitter)
        if jitter > 0
        else np.repeat(np.array([[[1, 0, 0], [0, 1, 0]]], np.float32), n_frames, 0)
    )

    # illumination: aliased mains flicker (|f_mains - k fps|) + slow global and left/right gradient drift
    mains = rng.choice([100.0, 120.0])
    f_alias = abs(mains - round(mains / fps) * fps) or fps / 3.0
    t = np.arange(n_frames) / fps
    gain = 1 + flicker * np.sin(2 * np.pi * f_alias * t + rng.uniform(0, 2 * np.pi))
    gain = gain * (1 + flicker * rng.uniform(-1, 1) * t / max(t[-1], 1e-6))
    grad = flicker * rng.uniform(-1, 1) * t / max(t[-1], 1e-6)

    rows, cols = size
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    xnorm = (xx - cols / 2) / cols
    base = img.astype(np.float32)
    frames = np.empty((n_frames, rows, cols), np.uint8)
    scaled = (float(intensity) * unit).astype(np.float32)
    for i in range(n_frames):
        # frame(p) = warped(S^-1 p); warped(q) = neutral(q - D(q)), D = AU + blink displacement
        inv = cv2.invertAffineTransform(mats[i])
        qx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
        qy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
        d = env[i] * scaled + blink_env[i] * bfield
        dq = cv2.remap(
            d, qx, qy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        out = cv2.remap(
            base,
            qx - dq[..., 0],
            qy - dq[..., 1],
            interpolation=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT101,
        )
        out = out * (gain[i] * (1 + grad[i] * xnorm))
        if noise > 0:
            shot = np.sqrt(np.clip(out, 0, 255) / 255.0) * noise * 0.5
            out = out + rng.normal(0.0, 1.0, out.shape).astype(np.float32) * (noise + shot)
        frames[i] = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return SynthClip(
        subject=subject or face.name,
        clip_id=clip_id,
        label=label,
        frames=frames,
        onset=onset,
        apex=apex,
        offset=offset,
        fps=float(fps),
        aus=canonical,
        unit_flow=unit,
        intensity=float(intensity),
        envelope=env,
        blink=blink_env,
        jitter=mats,
        face_mask=feather.copy(),
        source=face.source,
    )
