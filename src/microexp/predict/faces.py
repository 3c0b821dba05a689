"""Face presence per frame: tracked through a stream (:class:`StreamFaces`), or by detection on frame files
(:class:`FacePresence`, memoised per frame)."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager

import numpy as np

from microexp.predict.video import FrameSource
from microexp.preprocess.face import Face, FaceBackend, get_backend, using_backend
from microexp.preprocess.track import FaceTracker, TrackConfig, TrackedBackend, face_tracker

NO_FACE = "no face detected"


class StreamFaces:
    """The face of each streamed frame: detected once and tracked (:class:`~microexp.preprocess.track.FaceTracker`,
    the tracker spotting uses too), with ``detector`` (:data:`~microexp.contract.faces.FACE_MODES` but ``none``) or
    a given ``backend``. Inside :meth:`active`, the preprocessing pipeline's face lookups of these frames answer
    from the tracker, so a window is not detected again. Remembers the last ``capacity`` frames (the window)."""

    def __init__(self, capacity: int, backend: FaceBackend | None = None, config: TrackConfig | None = None,
                 detector: str = "dlib") -> None:
        self.tracker = FaceTracker(backend, config) if backend is not None else face_tracker(detector, config)
        # stands in for the pipeline's detector (its name: "dlib"); dlib-mmod's CNN is the tracker's fallback
        self.backend = TrackedBackend(self.tracker.backend, capacity)
        self.capacity = capacity
        self._has: OrderedDict[int, bool] = OrderedDict()

    def update(self, position: int, gray: np.ndarray) -> Face | None:
        face = self.tracker.update(gray)
        self.backend.remember(gray, face)
        self._has[position] = face is not None
        while len(self._has) > self.capacity:
            self._has.popitem(last=False)
        return face

    def has_face(self, position: int) -> bool:
        return self._has[position]

    def active(self) -> AbstractContextManager[FaceBackend]:
        return using_backend(self.backend)


class FacePresence:
    """Whether a frame file shows a face; a window whose last frame shows none is a gap, not a guess."""

    def __init__(self, src: FrameSource) -> None:
        self.src = src
        self._seen: dict[int, bool] = {}

    def has_face(self, index: int) -> bool:
        if index not in self._seen:
            from microexp.data.frames import read_frame

            self._seen[index] = get_backend().detect(read_frame(self.src.frames[index], gray=True)) is not None
        return self._seen[index]


_FacePresence = FacePresence  # the former private name
