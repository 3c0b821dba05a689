"""Sliding windows over an input (their lengths given in frames, ms or s), each window as a clip record, the
ring of frame files a streamed input's windows are cut from, and the merging of classified windows into segments
and of the frames no window covers into gaps."""

from __future__ import annotations

import math
import re
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, DataError
from microexp.predict.results import Gap, Prediction, Segment
from microexp.predict.video import FrameSource
from microexp.preprocess.config import PreprocessConfig

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|f|frames?)?\s*$")


def check_span(value: str | int | float | None, name: str = "span") -> tuple[float, str] | None:
    """The number and unit of a span (``12``, ``"100ms"``, ``"0.5s"``), checked without knowing the frame rate:
    the syntax, a whole number of frames, and a length above zero. ``name`` is how the message calls it (an
    argument name for the Python API, the option for the command line)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} {value!r}: give frames (12), milliseconds (100ms) or seconds (0.5s)")
    m = _SPAN.match(str(value))
    if not m:
        raise ConfigError(f"{name} {value!r}: give frames (12), milliseconds (100ms) or seconds (0.5s)")
    number, unit = float(m.group(1)), (m.group(2) or "f")
    if unit.startswith("f") and number != int(number):
        raise ConfigError(f"{name} {value!r}: a frame count must be a whole number")
    if number <= 0:
        raise ConfigError(f"{name} {value!r}: must be longer than zero (at least one frame)")
    return number, unit


def parse_span(value: str | int | float | None, fps: float, name: str = "span") -> int | None:
    """``12`` or ``"12"`` frames, ``"100ms"``, ``"0.5s"`` -> frames at ``fps``. A span shorter than half a frame
    at this rate is an error, not silently one frame."""
    checked = check_span(value, name)
    if checked is None:
        return None
    number, unit = checked
    frames = number * fps / 1000.0 if unit == "ms" else number * fps if unit == "s" else number
    n = int(round(frames))
    if n < 1:
        raise ConfigError(f"{name} {value!r} is {frames:.2g} frames at {fps:g} fps; give at least one frame")
    return n


def min_window(config: PreprocessConfig) -> int:
    """Fewest frames a window must have for the run's temporal normalisation."""
    if config.temporal == "first":
        return config.frames
    if config.temporal == "window" and config.window is not None:
        return int(config.window[1])
    return 2 if any(s.kind != "raw" for s in config.streams) else 1


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Starts of windows of ``window`` frames every ``stride`` frames; the last window ends on the last frame."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def clip_record(frames: Sequence[Path], start: int, fps: float, source: str) -> ClipRecord:
    """Frame files starting at position ``start`` as a clip record: onset = first frame, apex = middle,
    offset = last (0-based frame numbers)."""
    stop = start + len(frames)
    return ClipRecord(dataset="predict", subject="input", clip_id=f"frames{start}-{stop - 1}", emotion="unknown",
                      frames=tuple(frames), frame_numbers=tuple(range(start, stop)), onset=start,
                      apex=start + (stop - start - 1) // 2, offset=stop - 1, fps=fps, source=source)


def window_record(src: FrameSource, start: int, stop: int) -> ClipRecord:
    """A window of a decoded input as a clip record (see :func:`clip_record`)."""
    return clip_record(src.frames[start:stop], start, src.fps, src.source)


class FrameRing:
    """The last ``capacity`` frames of a stream as frame files, the form the preprocessing pipeline reads (so a
    streamed window takes exactly a dataset clip's path). Decoded frames are written losslessly (BMP: the
    fastest lossless format OpenCV writes) to a temporary folder and deleted as they leave the ring; a frame
    folder's own files are used in place. ``peak``: the most frames held at once (memory and disk are bounded by
    the capacity, whatever the input's length)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._held: OrderedDict[int, tuple[Path, bool]] = OrderedDict()  # position -> (file, written by us)
        self.peak = 0

    def push(self, position: int, frame: np.ndarray | None = None, path: Path | None = None,
             suffix: str = ".bmp") -> Path:
        """Hold frame ``position``: its existing file ``path``, or ``frame`` (uint8 BGR or gray) written out
        (as ``suffix``: BMP, or PNG where only PNG's own gray decoding gives the frame's gray)."""
        owned = path is None
        if path is None:
            import cv2

            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="microexp-stream-")
            path = Path(self._tmp.name) / f"frame_{position:07d}{suffix}"
            assert frame is not None
            if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_PNG_COMPRESSION, 1] if suffix == ".png" else []):
                raise DataError(f"{path}: cannot write a frame file (disk full or folder gone?)")
        self._held[position] = (path, owned)
        while len(self._held) > self.capacity:
            old, was_owned = self._held.popitem(last=False)[1]
            if was_owned:
                old.unlink(missing_ok=True)
        self.peak = max(self.peak, len(self._held))
        return path

    def __len__(self) -> int:
        return len(self._held)

    def record(self, start: int, stop: int, fps: float, source: str) -> ClipRecord:
        """Frames ``start`` .. ``stop - 1`` (all still held) as a clip record."""
        missing = [p for p in (start, stop - 1) if p not in self._held]
        if missing:
            raise ValueError(f"frame {missing[0]} is no longer held (ring of {self.capacity} frames)")
        return clip_record([self._held[p][0] for p in range(start, stop)], start, fps, source)

    def close(self) -> None:
        self._held.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end inclusive) of runs of True."""
    i, n = 0, len(mask)
    while i < n:
        if mask[i]:
            j = i
            while j + 1 < n and mask[j + 1]:
                j += 1
            yield i, j
            i = j + 1
        else:
            i += 1


def merge_segments(windows: Sequence[Prediction], n_frames: int, fps: float, classes: Sequence[str],
                   min_probability: float = 0.5) -> list[Segment]:
    """Each covered frame takes the class probabilities of the window centred nearest to it (ties: the earlier
    window); runs of frames whose top class is the same, at or above ``min_probability``, form segments.

    Nearest-centre rather than an average of all covering windows: a window sees an event best when the event
    sits where the training clips had theirs (onset at the window start, apex in the middle), so overlapping
    windows that catch the event off-centre must not dilute it."""
    if not windows:
        return []
    frame_probs, covered = _frame_probabilities(windows, n_frames, classes)
    top, best_p = frame_probs.argmax(1), frame_probs.max(1)
    segments = []
    for k, label in enumerate(classes):
        for a, b in _runs(covered & (top == k) & (best_p >= min_probability)):
            segments.append(Segment(a, b, a / fps, (b + 1) / fps, label, float(best_p[a:b + 1].mean())))
    return sorted(segments, key=lambda s: s.start_frame)


def au_segments(windows: Sequence[Prediction], n_frames: int, fps: float, aus: Sequence[str],
                min_probability: float = 0.5) -> list[Segment]:
    """An AU run's segments: per AU, the runs of frames whose probability of it (from the window centred nearest,
    as :func:`merge_segments`) is at or above ``min_probability``; AUs are independent, so segments may overlap."""
    if not windows:
        return []
    frame_probs, covered = _frame_probabilities(windows, n_frames, aus)
    segments = []
    for k, label in enumerate(aus):
        for a, b in _runs(covered & (frame_probs[:, k] >= min_probability)):
            segments.append(Segment(a, b, a / fps, (b + 1) / fps, label, float(frame_probs[a:b + 1, k].mean())))
    return sorted(segments, key=lambda s: (s.start_frame, s.label))


def _frame_probabilities(windows: Sequence[Prediction], n_frames: int, classes: Sequence[str]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, K) probabilities of the window centred nearest each frame, and which frames a window covers."""
    centres = np.array([(w.start_frame + w.end_frame) / 2 for w in windows])
    probs = np.array([[w.probabilities[c] for c in classes] for w in windows])
    starts = np.array([w.start_frame for w in windows])
    ends = np.array([w.end_frame for w in windows])
    frame_probs = np.zeros((n_frames, len(classes)))
    covered = np.zeros(n_frames, bool)
    for f in range(n_frames):
        inside = np.flatnonzero((starts <= f) & (ends >= f))
        if inside.size:
            best = inside[np.argmin(np.abs(centres[inside] - f))]
            frame_probs[f], covered[f] = probs[best], True
    return frame_probs, covered


def find_gaps(windows: Sequence[Prediction], failed: Sequence[tuple[int, int, str]], n_frames: int,
              fps: float) -> list[Gap]:
    """Frames no classified window covers, with the reasons of the failed windows overlapping them."""
    covered = np.zeros(n_frames, bool)
    for w in windows:
        covered[w.start_frame:w.end_frame + 1] = True
    gaps = []
    for a, b in _runs(~covered):
        reasons = list(dict.fromkeys(r for s, e, r in failed if s <= b and e >= a))
        gaps.append(Gap(a, b, a / fps, (b + 1) / fps, "; ".join(reasons) or "not covered by any window"))
    return gaps
