"""Face tracking in a stream: the one face tracker of predict, spot and the web app.

Detection is the expensive step; the 68-point shape predictor is cheap. So :class:`FaceTracker` detects on the
first frame and afterwards fits the landmarks of each new frame inside the previous frame's face box (the
detection's box, moved with the landmarks' centre). Tracking *fails*, and the frame is detected again, when

* the box jumps: the box the new landmarks give overlaps the previous box by less than ``min_iou``
  (intersection over union; a face does not move a large part of its size between two frames), or
* the face is not there any more: the face patch under the new box, compared by normalised cross-correlation with
  the patch at the last detection, falls below ``min_similarity``. The shape predictor always returns a face-shaped
  set of points, even on a wall; the patch comparison is what notices that the face left, or
* the face has been followed by tracking alone for more than ``confirm`` frames (when set) since a detection last
  found it: tracking may drift, a detector must confirm the face now and then.

``redetect`` (spotting: every 0.5 s) also detects while tracking holds, to refresh the face; a periodic detection
that finds nothing leaves the tracked face (dlib's HOG detector is made for near-frontal faces: in a head turn it
misses faces that tracking still follows). While no face is known, detection is tried every ``retry`` frames.

Detectors (:data:`~microexp.contract.faces.FACE_MODES`, :func:`face_tracker`): ``dlib`` (HOG), ``dlib-mmod``
(HOG, and dlib's CNN (MMOD) detector, searched around the last known face, where HOG and tracking both lost it:
the CNN costs 10 to 30 times HOG, so it runs only there, at most once every ``fallback_every`` frames), ``none``
(the frames are face crops: the whole frame is the face, found once and held).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import cv2
import numpy as np

from microexp.contract.faces import check_face
from microexp.errors import ConfigError
from microexp.preprocess.face import DlibBackend, Face, FaceBackend, get_backend

Box = tuple[float, float, float, float]
# a second detector tried where the first and tracking lost the face: (gray frame, last known box or None)
Fallback = Callable[[np.ndarray, Box | None], Face | None]


@dataclass(frozen=True)
class TrackConfig:
    min_iou: float = 0.5  # box overlap with the previous frame's box below this: a jump, detect again
    min_similarity: float = 0.6  # patch correlation with the last detection's patch below this: the face left
    retry: int = 5  # while no face is known, detect every this many frames
    patch: int = 24  # side of the compared face patch (pixels)
    redetect: int = 0  # while tracking, also detect every this many frames (0: only when tracking fails)
    confirm: int = 0  # tracking alone holds a face at most this many frames after a detection found it (0: no limit)
    track: bool = True  # False: hold the detected face until the next detection (frames that are face crops)
    fallback_every: int = 15  # the fallback detector (dlib-mmod's CNN) runs at most once every this many frames

    def validate(self) -> None:
        if not 0 <= self.min_iou <= 1 or not -1 <= self.min_similarity <= 1:
            raise ConfigError(f"tracking thresholds min_iou {self.min_iou}, min_similarity {self.min_similarity}: "
                              "min_iou in [0, 1], min_similarity in [-1, 1]")
        if self.retry < 1 or self.patch < 4 or self.redetect < 0 or self.confirm < 0 or self.fallback_every < 1:
            raise ConfigError(f"tracking retry {self.retry} / patch {self.patch} / redetect {self.redetect} / "
                              f"confirm {self.confirm} / fallback_every {self.fallback_every}: need retry >= 1, "
                              "patch >= 4, redetect and confirm >= 0, fallback_every >= 1")


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
    """Call :meth:`update` with each gray frame in order; it returns the frame's :class:`Face` or None, and
    :attr:`detected` says whether that face comes from a detection (not from tracking). ``fallback``: a second
    detector, tried only where ``backend.detect`` and tracking both lost the face (``dlib-mmod``'s CNN).
    Counters: ``frames`` seen, ``detections`` (detector calls), ``fallbacks`` (second-detector calls),
    ``failures`` (tracking failures)."""

    def __init__(self, backend: FaceBackend, config: TrackConfig | None = None,
                 fallback: Fallback | None = None) -> None:
        self.backend = backend
        self.config = config or TrackConfig()
        self.config.validate()
        self.fallback = fallback
        self.face: Face | None = None
        self.detected = False
        self._anchor: tuple[np.ndarray, np.ndarray] | None = None  # detection box and landmark centre
        self._ref: np.ndarray | None = None  # face patch at the last detection
        self._last_box: Box | None = None  # the face's last box, kept while no face is known
        self._since_try = 0  # frames since the last detection attempt
        self._since_found = 0  # frames since a detection last found the face
        self._since_fallback = 10**9  # frames since the fallback detector last ran
        self.detections = 0
        self.fallbacks = 0
        self.frames = 0
        self.failures = 0

    def update(self, gray: np.ndarray) -> Face | None:
        self.frames += 1
        self.detected = False
        self._since_try += 1
        self._since_fallback += 1
        if self.face is None:
            if self.detections == 0 or self._since_try >= self.config.retry:
                return self._detect(gray)
            return None
        self._since_found += 1
        if self.config.redetect and self._since_try >= self.config.redetect:
            return self._detect(gray, periodic=True)
        followed = self._follow(gray)
        if followed is not None:
            self.face = followed
            return followed
        self.failures += 1
        return self._detect(gray)

    def _detect(self, gray: np.ndarray, periodic: bool = False) -> Face | None:
        self.detections += 1
        self._since_try = 0
        last = self.face.box if self.face is not None else self._last_box
        face = self.backend.detect(gray)
        if face is None and periodic:  # the detector misses a face that tracking still follows (a turned head)
            followed = self._follow(gray)
            if followed is not None:
                self.face = followed
                return followed
            self.failures += 1
        # the fallback only where both failed, near a face that was there (a whole frame costs the CNN seconds), and
        # rationed: a stretch without any face costs one call per fallback_every frames
        if (face is None and self.fallback is not None and last is not None
                and self._since_fallback >= self.config.fallback_every):
            self.fallbacks += 1
            self._since_fallback = 0
            face = self.fallback(gray, last)
        self.face = face
        if face is None:
            self._last_box = last  # where the fallback searches while the face is away
            return None
        self.detected = True
        self._since_found = 0
        self._anchor = (np.asarray(face.box, np.float64), face.landmarks.mean(0))
        self._ref = _patch(gray, face.box, self.config.patch)
        return face

    def _follow(self, gray: np.ndarray) -> Face | None:
        """The face followed into this frame (tracked, or held when ``track`` is off), or None: tracking failed or
        the face has gone unconfirmed by a detection for more than ``confirm`` frames."""
        assert self.face is not None
        if self.config.confirm and self._since_found > self.config.confirm:
            return None
        return self._track(gray) if self.config.track else self.face

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


class WholeFrame:
    """The face backend of frames that are face crops already (detector ``none``): the whole frame is the face
    box, its 68 landmarks fitted there by ``inner``."""

    name = "none"

    def __init__(self, inner: FaceBackend) -> None:
        self.inner = inner

    def detect(self, gray: np.ndarray) -> Face | None:
        h, w = gray.shape[:2]
        box = (0.0, 0.0, float(w - 1), float(h - 1))
        return Face(box, float("nan"), self.inner.landmarks(gray, box))

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        return self.inner.landmarks(gray, box)


def face_tracker(detector: str = "dlib", config: TrackConfig | None = None) -> FaceTracker:
    """The tracker of a detector choice (:data:`~microexp.contract.faces.FACE_MODES`; another name is a one-line
    :class:`ConfigError`): ``dlib`` HOG; ``dlib-mmod`` HOG with the CNN detector as the fallback, searched around
    the last known face (a video that starts without a frontal face waits for HOG's first); ``none`` the whole
    frame, found once and held."""
    config = config or TrackConfig()
    check_face(detector)
    if detector == "none":
        return FaceTracker(WholeFrame(get_backend("dlib")), replace(config, track=False, redetect=0, confirm=0))
    return FaceTracker(get_backend("dlib"), config, fallback=_cnn if detector == "dlib-mmod" else None)


def _cnn(gray: np.ndarray, near: Box | None) -> Face | None:
    """dlib-mmod's CNN detector, loaded on its first call (a video HOG and tracking follow never loads it)."""
    return cast(DlibBackend, get_backend("dlib-mmod")).detect_cnn(gray, near)


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
