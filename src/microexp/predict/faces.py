"""Face presence per frame, by the preprocessing pipeline's own face backend (memoised per frame)."""

from __future__ import annotations

from microexp.predict.video import FrameSource

NO_FACE = "no face detected"


class FacePresence:
    """Whether a frame shows a face; a window whose last frame shows none is a gap, not a guess."""

    def __init__(self, src: FrameSource) -> None:
        self.src = src
        self._seen: dict[int, bool] = {}

    def has_face(self, index: int) -> bool:
        if index not in self._seen:
            from microexp.data.frames import read_frame
            from microexp.preprocess.face import get_backend

            self._seen[index] = get_backend().detect(read_frame(self.src.frames[index], gray=True)) is not None
        return self._seen[index]


_FacePresence = FacePresence  # the former private name
