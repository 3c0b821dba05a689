"""Face detection and 68-point landmarks behind a small backend interface.

The dlib backend uses the HOG frontal-face detector, keeps the highest-scoring face, upsamples when no face is
found at the native scale (dlib's HOG window is 80x80 px, so small faces need it), and runs the 68-point shape
predictor shipped in the ``face_recognition_models`` package (found with importlib, not pkg_resources).
Landmark indices are the standard 0-based dlib ones (docs/models.md §1.4).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from microexp.errors import PreprocessError
from microexp.registry import Registry

LEFT_EYE = slice(36, 42)  # image-left eye
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)

# Detection runs on a copy downscaled so that its longer side is at most this (speed); landmarks use full res.
DETECT_MAX_SIDE = 640
# The CNN (MMOD) detector searches the region around a lost face scaled so that the face is about this side: the
# second renderer's 50-pixel faces are not found at their size, at 80 px they all are (a larger scale costs more)
MMOD_FACE_SIDE = 80
# A whole frame up to this side is upsampled for the CNN (small faces); a larger one is searched as it is (the CNN
# on an upsampled 640x480 frame takes seconds)
MMOD_UPSAMPLE_MAX_SIDE = 320


class NoFaceError(PreprocessError):
    """No face was found in the reference frame of a clip."""


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (x0, y0, x1, y1) in frame pixels, detector ``score``, ``landmarks`` (68, 2) x/y."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (x, y) of the image-left and image-right eye (mean of their six landmarks)."""
        return self.landmarks[LEFT_EYE].mean(0), self.landmarks[RIGHT_EYE].mean(0)

    @property
    def mouth(self) -> np.ndarray:
        return self.landmarks[MOUTH].mean(0)


class FaceBackend(Protocol):
    """What the pipeline needs from a landmark backend. ``detect`` returns None when there is no face."""

    name: str

    def detect(self, gray: np.ndarray) -> Face | None: ...

    def landmarks(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray: ...


def predictor_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """The dlib model file inside the installed ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise PreprocessError("face landmarks need the package face-recognition-models (pip install face-recognition-models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.exists():
        raise PreprocessError(f"{path}: dlib model file missing from face_recognition_models")
    return path


class DlibBackend:
    """dlib HOG detector + 68-point shape predictor; with ``mmod`` (backend ``dlib-mmod``) dlib's CNN (MMOD)
    detector, shipped in ``face_recognition_models``, is tried where HOG finds no face. HOG is made for
    near-frontal faces; on the second synthetic renderer's head turns (10-30 degrees of yaw, 64-pixel frames) HOG
    found a face in 0.909 of the frames, the CNN in all, at 10 to 25 times HOG's time per call. The face tracker
    (:mod:`microexp.preprocess.track`) calls the CNN only where HOG and tracking both lost the face, near its last
    box (:meth:`detect_cnn`); figures in docs/spotting.md, "Face tracking"."""

    name = "dlib"

    def __init__(self, max_upsample: int = 1, detect_max_side: int = DETECT_MAX_SIDE, mmod: bool = False) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path()))
        self._dlib = dlib
        self.max_upsample = max_upsample
        self.detect_max_side = detect_max_side
        self._mmod = dlib.cnn_face_detection_model_v1(str(predictor_path("mmod_human_face_detector.dat"))) \
            if mmod else None
        if mmod:
            self.name = "dlib-mmod"

    def detect(self, gray: np.ndarray) -> Face | None:
        """HOG; with ``mmod``, the CNN detector on the whole frame where HOG finds nothing."""
        face = self.detect_hog(gray)
        if face is None and self._mmod is not None:  # a turned head, a tilted one: the CNN detector
            face = self.detect_cnn(gray)
        return face

    def detect_hog(self, gray: np.ndarray) -> Face | None:
        """The HOG detector's best face (upsampling up to ``max_upsample`` times while it finds none)."""
        gray = np.ascontiguousarray(gray, dtype=np.uint8)
        small, scale = self._small(gray)
        for upsample in range(self.max_upsample + 1):
            rects, scores, _ = self._detector.run(small, upsample, 0.0)
            if len(rects):
                best = int(np.argmax(scores))
                r = rects[best]
                box = (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
                return Face(box, float(scores[best]), self.landmarks(gray, box))
        return None

    def detect_cnn(self, gray: np.ndarray, near: tuple[float, float, float, float] | None = None) -> Face | None:
        """The CNN (MMOD) detector's best face (backend ``dlib-mmod`` only). ``near``: a box where the face was
        last seen; only the region around it (twice its side) is searched, scaled so that the face is about
        :data:`MMOD_FACE_SIDE` pixels (the CNN's cost grows with the pixels it sees: tens of milliseconds there,
        seconds on an upsampled 640x480 frame)."""
        if self._mmod is None:
            raise PreprocessError("the CNN face detector is loaded by the dlib-mmod backend only")
        gray = np.ascontiguousarray(gray, dtype=np.uint8)
        if near is None:
            small, scale = self._small(gray)
            x0 = y0 = 0
            found = self._mmod(small, self.max_upsample if max(small.shape) <= MMOD_UPSAMPLE_MAX_SIDE else 0)
        else:
            h, w = gray.shape
            side = max(near[2] - near[0], near[3] - near[1], 8.0)
            cx, cy = (near[0] + near[2]) / 2, (near[1] + near[3]) / 2
            x0, y0 = max(int(cx - side), 0), max(int(cy - side), 0)
            x1, y1 = min(int(cx + side) + 1, w), min(int(cy + side) + 1, h)
            scale = MMOD_FACE_SIDE / side
            small = cv2.resize(gray[y0:y1, x0:x1], (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            found = self._mmod(small, 0)
        if not len(found):
            return None
        best = max(found, key=lambda d: d.confidence)
        r = best.rect
        box = (x0 + r.left() / scale, y0 + r.top() / scale, x0 + r.right() / scale, y0 + r.bottom() / scale)
        return Face(box, float(best.confidence), self.landmarks(gray, box))

    def _small(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame downscaled so that its longer side is at most ``detect_max_side``, and the scale."""
        h, w = gray.shape
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = gray if scale == 1.0 else cv2.resize(gray, (round(w * scale), round(h * scale)),
                                                      interpolation=cv2.INTER_AREA)
        return small, scale

    def landmarks(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        gray = np.ascontiguousarray(gray, dtype=np.uint8)
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


# name -> factory (called once per process, on first use: loading dlib's predictor costs ~0.5 s)
FACE_BACKENDS: Registry[Callable[[], FaceBackend]] = Registry("face backend")
FACE_BACKENDS.add("dlib", DlibBackend)
FACE_BACKENDS.add("dlib-mmod", lambda: DlibBackend(mmod=True))
_BACKENDS: dict[str, FaceBackend] = {}  # the instances made so far (tests put counting doubles here)
# a backend standing in for the one of its name within a `using_backend` block (predict's face tracker)
_STAND_IN: ContextVar[FaceBackend | None] = ContextVar("microexp_face_backend", default=None)


def register_backend(name: str, factory: Callable[[], FaceBackend]) -> None:
    """Add a landmark backend; a name registered twice raises :class:`~microexp.errors.ConfigError`."""
    FACE_BACKENDS.add(name, factory)


def get_backend(name: str = "dlib") -> FaceBackend:
    """The backend registered as ``name``, one instance per process; an unknown name raises ConfigError listing
    the known ones. Inside :func:`using_backend`, the stand-in of that name."""
    stand_in = _STAND_IN.get()
    if stand_in is not None and stand_in.name == name:
        return stand_in
    if name not in _BACKENDS:
        _BACKENDS[name] = FACE_BACKENDS.get(name)()
    return _BACKENDS[name]


@contextmanager
def using_backend(backend: FaceBackend) -> Iterator[FaceBackend]:
    """Within the block (this thread / task), :func:`get_backend` answers ``backend`` for its name: the face
    tracker of a stream (:class:`microexp.preprocess.track.TrackedBackend`) stands in for the detector, so the
    preprocessing pipeline takes the tracked face of frames the tracker has seen."""
    token = _STAND_IN.set(backend)
    try:
        yield backend
    finally:
        _STAND_IN.reset(token)


def find_face(gray: np.ndarray, backend: str = "dlib", fallback_frame: bool = False) -> Face:
    """The highest-scoring face of a frame; raises :class:`NoFaceError` (or uses the whole frame as the face
    box when ``fallback_frame``)."""
    b = get_backend(backend)
    face = b.detect(gray)
    if face is not None:
        return face
    if fallback_frame:
        h, w = gray.shape
        box = (0.0, 0.0, float(w - 1), float(h - 1))
        return Face(box, float("nan"), b.landmarks(gray, box))
    raise NoFaceError("no face detected")


# Mean 68-point shape in unit face-crop coordinates (x / width, y / height) of the canonical crop of
# :func:`microexp.preprocess.align.face_box` (eye midpoint at (0.5, 0.36), side = 2.8 x eye distance).
# Measured with the dlib backend on skimage's astronaut and matplotlib's grace_hopper, averaged after
# alignment. Used with face="none" (frames already face crops) to place the eye / mouth regions (the Aouayeb
# regions then take the whole frame as their face box).
TEMPLATE: np.ndarray = np.array([
    (0.138, 0.388), (0.147, 0.486), (0.164, 0.577), (0.179, 0.669), (0.209, 0.757), (0.261, 0.836),
    (0.338, 0.892), (0.421, 0.936), (0.512, 0.947), (0.608, 0.935), (0.695, 0.892), (0.770, 0.833),
    (0.825, 0.761), (0.858, 0.674), (0.875, 0.579), (0.886, 0.484), (0.896, 0.383), (0.179, 0.303),
    (0.220, 0.253), (0.286, 0.235), (0.355, 0.242), (0.420, 0.265), (0.584, 0.263), (0.647, 0.233),
    (0.718, 0.230), (0.786, 0.251), (0.828, 0.306), (0.503, 0.349), (0.501, 0.418), (0.502, 0.481),
    (0.504, 0.548), (0.416, 0.581), (0.457, 0.596), (0.503, 0.607), (0.546, 0.595), (0.586, 0.583),
    (0.255, 0.363), (0.294, 0.337), (0.347, 0.335), (0.392, 0.370), (0.345, 0.376), (0.296, 0.379),
    (0.608, 0.371), (0.651, 0.339), (0.706, 0.337), (0.744, 0.360), (0.705, 0.376), (0.657, 0.377),
    (0.334, 0.681), (0.392, 0.669), (0.455, 0.663), (0.501, 0.675), (0.546, 0.667), (0.604, 0.670),
    (0.673, 0.675), (0.609, 0.741), (0.548, 0.767), (0.498, 0.773), (0.451, 0.767), (0.390, 0.740),
    (0.357, 0.687), (0.457, 0.693), (0.497, 0.700), (0.544, 0.694), (0.649, 0.683), (0.545, 0.725),
    (0.501, 0.730), (0.454, 0.724),
])
