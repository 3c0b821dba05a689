"""Real base faces for the generator, loaded at run time from installed packages (never committed).

Sources, in subject order: ``skimage.data.astronaut()`` (NASA, public domain), matplotlib's
``grace_hopper.jpg`` (US Navy portrait, public domain), then the face crops of ``skimage.data.lfw_subset()``
(entries 0..99, 25x25). Landmarks are the iBUG 68 points from dlib (HOG detector +
``shape_predictor_68_face_landmarks.dat`` found inside the installed ``face_recognition_models`` package). The
LFW crops are tiny, so dlib runs on a 4x cubic upscale; where it still finds no face, the crop gets the mean
68-point template of the LFW crops that dlib did fit (the subset is roughly aligned), and ``Face.source`` says
``template``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexp.errors import ConfigError, DataError

LFW_FACES = 100  # lfw_subset(): the first 100 entries are faces, the rest are non-face patches
LFW_UPSCALE = 4
PORTRAIT_SIZE = 128  # astronaut / Hopper are cropped to the LFW framing at this size


@dataclass(frozen=True, eq=False)  # hashed by identity: faces key the in-process field caches
class Face:
    """A neutral-ish base face: gray uint8 image, 68 iBUG landmarks (x, y) in its pixel coordinates."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray
    source: str  # e.g. "skimage.data.astronaut (dlib)", "skimage.data.lfw_subset[3] (template)"

    @property
    def iod(self) -> float:
        """Inter-ocular distance (between the eye centres) in pixels."""
        return float(np.linalg.norm(self.landmarks[42:48].mean(0) - self.landmarks[36:42].mean(0)))


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:  # (detector, shape predictor)
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a core dependency
        raise DataError(f"dlib is not installed ({exc})") from None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise DataError("package face_recognition_models is not installed (it holds the 68-point predictor)")
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.exists():
        raise DataError(f"{path}: 68-point shape predictor not found")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def dlib_landmarks(gray: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """68 landmarks (float32, xy) of the largest face dlib finds in ``gray``, or None."""
    detector, predictor = _dlib_models()
    rects = detector(gray, upsample)
    if len(rects) == 0:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(gray, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    from skimage import data

    faces = data.lfw_subset()[:LFW_FACES]
    return np.clip(np.round(faces * 255.0), 0, 255).astype(np.uint8)


@lru_cache(maxsize=LFW_FACES)
def _lfw_dlib(index: int) -> np.ndarray | None:
    crop = _lfw()[index]
    size = crop.shape[0] * LFW_UPSCALE
    up = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
    pts = dlib_landmarks(up, upsample=1)
    return None if pts is None else (pts + 0.5) / LFW_UPSCALE - 0.5  # pixel-centre aware rescale


@lru_cache(maxsize=1)
def lfw_template() -> np.ndarray:
    """Mean 68-point template of the LFW crops dlib fits, in units of the crop side (float32 (68, 2))."""
    side = _lfw().shape[1]
    fitted = [p / side for i in range(LFW_FACES) if (p := _lfw_dlib(i)) is not None]
    if not fitted:  # pragma: no cover - dlib fits ~90 of 100
        raise DataError("dlib found no face in skimage.data.lfw_subset(); cannot build a landmark template")
    return np.mean(fitted, axis=0).astype(np.float32)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2GRAY)


def _portrait(name: str, gray: np.ndarray, source: str) -> Face:
    """Crop a large portrait to the LFW framing (similarity fit of its landmarks to the LFW template)."""
    pts = dlib_landmarks(gray)
    if pts is None:
        raise DataError(f"{source}: dlib found no face")
    target = lfw_template() * PORTRAIT_SIZE
    m, _ = cv2.estimateAffinePartial2D(pts, target, method=cv2.LMEDS)
    if m is None:  # pragma: no cover
        raise DataError(f"{source}: could not align the face")
    img = cv2.warpAffine(
        gray, m, (PORTRAIT_SIZE, PORTRAIT_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT101
    )
    lm = (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return Face(name, img, lm, f"{source} (dlib)")


@lru_cache(maxsize=1)
def _astronaut() -> Face:
    from skimage import data

    return _portrait("astronaut", _to_gray(data.astronaut()), "skimage.data.astronaut")


@lru_cache(maxsize=1)
def _hopper() -> Face:
    import matplotlib.cbook as cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        gray = np.asarray(Image.open(fh).convert("L"))
    return _portrait("grace_hopper", gray, "matplotlib sample_data/grace_hopper.jpg")


@lru_cache(maxsize=LFW_FACES)
def lfw_face(index: int) -> Face:
    """The LFW subset crop ``index`` (0..99) as a base face."""
    crop = _lfw()[index]
    pts = _lfw_dlib(index)
    how = "dlib"
    if pts is None:
        pts, how = lfw_template() * crop.shape[0], "template"
    return Face(f"lfw{index:03d}", crop, pts.astype(np.float32), f"skimage.data.lfw_subset[{index}] ({how})")


def max_faces() -> int:
    return 2 + LFW_FACES


def load_faces(n: int) -> list[Face]:
    """The first ``n`` base faces: astronaut, Grace Hopper, then LFW subset crops in index order."""
    if not 1 <= n <= max_faces():
        raise ConfigError(f"number of subjects must be 1..{max_faces()}, got {n}")
    makers = [_astronaut, _hopper] + [lambda i=i: lfw_face(i) for i in range(LFW_FACES)]
    return [make() for make in makers[:n]]
