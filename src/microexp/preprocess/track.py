"""Face tracking in a stream: detect once, then follow the face with landmarks only.

Detection (dlib's HOG detector, :mod:`microexp.preprocess.face`) is the expensive step; the 68-point shape
predictor is cheap. So the tracker detects on the first frame and afterwards fits the landmarks of each new frame
inside the previous frame's face box (the detection's box, moved with the landmarks' centre). Tracking *fails*, and the frame is detected
again, when either

* the box jumps: the box the new landmarks give overlaps the previous box by less than ``min_iou``
  (intersection over union; a face does not move a large part of its size between two frames), or
* the face is not there any more: the face patch under the new box, compared by normalised cross-correlation with
  the patch at the last detection, falls below ``min_similarity``. The shape predictor always returns a face-shaped
  set of points, even on a wall; the patch comparison is what notices that the face left.

While no face is known, detection is tried every ``retry`` frames (detection on a faceless 640x480 frame costs
tens of milliseconds); frames in between have no face.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from microexp.errors import ConfigError
from microexp.preprocess.face import Face, FaceBackend

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackConfig:
    min_iou: float = 0.5  # box overlap with the previous frame's box below this: a jump, detect again
    min_similarity: float = 0.6  # patch correlation with the last detection's patch below this: the face left
    retry: int = 5  # while no face is known, detect every this many frames
    patch: int = 24  # side of the compared face patch (pixels)

    def validate(self) -> None:
        if not 0 <= self.min_iou <= 1 or not -1 <= self.min_similarity <= 1:
            raise ConfigError(f"tracking thresholds min_iou {self.min_iou}, min_similarity {self.min_similarity}: "
                              "min_iou in [0, 1], min_similarity in [-1, 1]")
        if self.retry < 1 or self.patch < 4:
            raise ConfigError(f"tracking retry {self.retry} / patch {self.patch}: need retry >= 1, patch >= 4")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _patch(gray: np.ndarray, box: Box, side: int) -> np.ndarray | None:
    """The box's pixels resized to side x side, zero mean and unit norm (None: box outside the frame or flat)."""
    h, w = gray.shape[:2]
    x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x1, y1 = min(int(round(box[2])), w), min(int(round(box[3])), h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    p = cv2.resize(gray[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    p -= p.mean()
    norm = float(np.linalg.norm(p))
    return p / norm if norm > 1e-6 else None


class FaceTracker:
    """Call :meth:`update` with each gray frame in order; it returns the frame's :class:`Face` or None.
    ``detections`` counts the detector calls, ``frames`` the frames seen, ``failures`` the tracking failures."""

    def __init__(self, backend: FaceBackend, config: TrackConfig | None = None) -> None:
        self.backend = backend
        self.config = config or TrackConfig()
        self.config.validate()
        self.face: Face | None = None
        self._anchor: tuple[np.ndarray, np.ndarray] | None = None  # detection box and landmark centre
        self._ref: np.ndarray | None = None  # face patch at the last detection
        self._since_try = 0
        self.detections = 0
        self.frames = 0
        self.failures = 0

    def update(self, gray: np.ndarray) -> Face | None:
        self.frames += 1
        if self.face is not None:
            tracked = self._track(gray)
            if tracked is not None:
                self.face = tracked
                return tracked
            self.failures += 1
            return self._detect(gray)
        self._since_try += 1
        if self.detections == 0 or self._since_try >= self.config.retry:
            return self._detect(gray)
        return None

    def _detect(self, gray: np.ndarray) -> Face | None:
        self.detections += 1
        self._since_try = 0
        face = self.backend.detect(gray)
        self.face = face
        if face is None:
            return None
        self._anchor = (np.asarray(face.box, np.float64), face.landmarks.mean(0))
        self._ref = _patch(gray, face.box, self.config.patch)
        return face

    def _track(self, gray: np.ndarray) -> Face | None:
        """The face fitted in the previous box, or None when tracking fails (box jump or face gone)."""
        assert self.face is not None and self._anchor is not None
        landmarks = self.backend.landmarks(gray, self.face.box)
        # the detection's box moved with the landmarks' centre (its size kept: a box re-derived from the
        # landmarks each frame drifts in scale, and the landmarks with it)
        det_box, det_centre = self._anchor
        dx, dy = landmarks.mean(0) - det_centre
        box = (det_box[0] + dx, det_box[1] + dy, det_box[2] + dx, det_box[3] + dy)
        if iou(box, self.face.box) < self.config.min_iou:
            return None
        patch = _patch(gray, box, self.config.patch)
        if patch is None or self._ref is None or float(patch @ self._ref) < self.config.min_similarity:
            return None
        return Face(box, self.face.score, landmarks)


def frame_digest(gray: np.ndarray) -> bytes:
    """A frame's identity by content (shape + pixels), to recognise a frame the tracker has seen."""
    a = np.ascontiguousarray(gray)
    return hashlib.blake2b(a.data, digest_size=16, person=str(a.shape).encode()[:16]).digest()


class TrackedBackend:
    """A face backend that answers ``detect`` for the frames a tracker has seen with the tracked face (or None:
    no face there) and passes every other call to the real backend. Installed with
    :func:`microexp.preprocess.face.using_backend`, it makes the preprocessing pipeline take the tracked face of a
    streamed window's frames instead of detecting again. Remembers the last ``capacity`` frames only."""

    def __init__(self, inner: FaceBackend, capacity: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.capacity = max(1, int(capacity))
        self._known: OrderedDict[bytes, Face | None] = OrderedDict()
        self.misses = 0  # detect calls for frames the tracker had not seen (passed to the real backend)

    def remember(self, gray: np.ndarray, face: Face | None) -> None:
        key = frame_digest(gray)
        self._known[key] = face
        self._known.move_to_end(key)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def detect(self, gray: np.ndarray) -> Face | None:
        key = frame_digest(gray)
        if key in self._known:
            return self._known[key]
        self.misses += 1
        return self.inner.detect(gray)

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        return self.inner.landmarks(gray, box)
