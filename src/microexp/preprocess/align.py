"""Similarity alignment on the eye centres and region extraction through one affine map per frame.

Coordinates: a clip's *aligned* frame is the source frame moved by a 2x3 similarity ``A`` (source pixel ->
aligned pixel, native scale). With ``align="none"`` A is the identity, so every region box is a plain slice of
the source frame, exactly as the seed code crops. With alignment, A rotates about the eye midpoint so that the
eye line is horizontal (and, with ``track``, also cancels the head motion relative to the reference frame).
"""

from __future__ import annotations

import cv2
import numpy as np

from microexp.errors import PreprocessError

# Canonical face crop: the eye midpoint at (0.5, 0.36) of a square whose side is 2.8 x the eye distance
# (covers brows to chin on frontal faces; CASME II-like cropped faces).
FACE_SIDE = 2.8
FACE_EYE_Y = 0.36

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in aligned pixel coordinates


def identity() -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine map ``a after b`` (apply b first)."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def invert(a: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(a)


def apply(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ a[:, :2].T + a[:, 2]


def similarity_2pt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity (rotation, uniform scale, shift) mapping two source points exactly onto two targets."""
    s = complex(*(src[1] - src[0]))
    d = complex(*(dst[1] - dst[0]))
    if abs(s) < 1e-9:
        raise PreprocessError("eye centres coincide; cannot align")
    z = d / s  # scale * e^{i angle}
    m = np.array([[z.real, -z.imag], [z.imag, z.real]])
    t = dst[0] - m @ src[0]
    return np.hstack([m, t[:, None]])


def eye_alignment(left: np.ndarray, right: np.ndarray, rotate: bool = True) -> np.ndarray:
    """Source -> aligned map of the reference frame: rotation about the eye midpoint making the eye line
    horizontal (identity when ``rotate`` is False)."""
    if not rotate:
        return identity()
    mid = (left + right) / 2
    half = np.linalg.norm(right - left) / 2
    return similarity_2pt(np.array([left, right]), np.array([mid - (half, 0), mid + (half, 0)]))


def face_box(left: np.ndarray, right: np.ndarray) -> Box:
    """Canonical square face box around aligned eye centres."""
    mid = (left + right) / 2
    side = FACE_SIDE * float(np.linalg.norm(right - left))
    x0, y0 = mid[0] - side / 2, mid[1] - FACE_EYE_Y * side
    return (x0, y0, x0 + side, y0 + side)


INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST_EXACT}


def resize(img: np.ndarray, size: tuple[int, int], how: str = "area") -> np.ndarray:
    """Resize to (rows, cols); ``nearest`` is INTER_NEAREST_EXACT, which samples like PIL's NEAREST."""
    if img.shape[:2] == tuple(size):
        return img
    return cv2.resize(img, (size[1], size[0]), interpolation=INTERPOLATION[how])


def extract(frame: np.ndarray, a: np.ndarray, box: Box, size: tuple[int, int] | None,
            border: int = cv2.BORDER_REPLICATE, border_value: float = 0.0, how: str = "area") -> np.ndarray:
    """Region ``box`` (aligned coordinates) of ``frame`` moved by ``a``, resized to ``size`` (rows, cols) with
    ``how`` (INTER_AREA by default, as the seed code), float32. ``size=None`` keeps the native box size."""
    x0, y0, x1, y1 = box
    w, h = int(round(x1 - x0)), int(round(y1 - y0))
    if w < 1 or h < 1:
        raise PreprocessError(f"empty region box {tuple(round(v, 1) for v in box)}")
    m = compose(np.array([[1.0, 0, -x0], [0, 1.0, -y0]]), a)
    fh, fw = frame.shape[:2]
    ix, iy = m[0, 2], m[1, 2]
    plain = np.allclose(m[:, :2], np.eye(2)) and float(ix).is_integer() and float(iy).is_integer()
    if plain and -ix >= 0 and -iy >= 0 and -ix + w <= fw and -iy + h <= fh:
        out = frame[int(-iy):int(-iy) + h, int(-ix):int(-ix) + w]  # a plain slice, as the seed code
    else:
        out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border,
                             borderValue=border_value)
    if size is not None:
        out = resize(out, size, how)  # in the frame's own dtype (uint8), as the seed code, then cast
    return out.astype(np.float32)


def register_rigid(ref: np.ndarray, frame: np.ndarray, box: Box, work: int = 96) -> np.ndarray:
    """Rigid (rotation + shift) map from ``frame`` to ``ref`` source coordinates, estimated by ECC on the
    face box (source coordinates) downscaled to ``work`` px. Identity when ECC does not converge."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    fh, fw = ref.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return identity()
    s = min(1.0, work / max(x1 - x0, y1 - y0))
    crop = np.array([[s, 0, -s * x0], [0, s, -s * y0]])  # source -> work coordinates
    size = (max(int((x1 - x0) * s), 8), max(int((y1 - y0) * s), 8))
    tpl = cv2.warpAffine(ref.astype(np.float32), crop, size, flags=cv2.INTER_LINEAR)
    img = cv2.warpAffine(frame.astype(np.float32), crop, size, flags=cv2.INTER_LINEAR)
    w = np.eye(2, 3, dtype=np.float32)
    try:
        _, w = cv2.findTransformECC(tpl, img, w, cv2.MOTION_EUCLIDEAN,
                                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6), None, 5)
    except cv2.error:
        return identity()
    # w maps template(work) -> input(work); in source coordinates ref -> frame is crop^-1 w crop
    ref_to_frame = compose(invert(crop), compose(w.astype(np.float64), crop))
    return invert(ref_to_frame)
