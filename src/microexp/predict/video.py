"""Input reading: ONE streaming reader for video files (OpenCV first, PyAV as fallback), folders of numbered frames
and frames given as arrays.

:func:`open_stream` opens an input and yields its frames one at a time (BGR uint8); nothing is decoded ahead and
nothing is written to disk, so memory stays bounded by what the caller keeps. :func:`iter_frames` is the same
reader as (frame number, frame) pairs, used by ``predict`` and by spotting. :func:`read_video` / :func:`open_input`
(a :class:`FrameSource` of frame files) remain for callers that need every frame on disk at once (the web app no
longer does: it streams); they decode through the same reader.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from microexp.data.frames import IMAGE_SUFFIXES, list_frames
from microexp.errors import ConfigError, DataError, InputError

DEFAULT_FPS = 30.0
NOT_A_VIDEO = "cannot read video (not a video file, or a codec neither OpenCV nor PyAV decodes)"
NO_FRAMES = "video has no frames (zero-length or undecodable stream)"


def check_fps(fps: float | None, name: str = "fps") -> float | None:
    """A given frame rate must be a finite number > 0 (None: read it from the input)."""
    if fps is None:
        return None
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {fps!r}: give a frame rate in frames per second, e.g. 30") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} {fps!r}: a frame rate must be a number > 0")
    return value


def _sane_fps(fps: float | None) -> float | None:
    return float(fps) if fps is not None and math.isfinite(fps) and 0 < fps < 10000 else None


@dataclass
class FrameStream:
    """An open input read one frame at a time: iterate it for BGR uint8 frames (H, W, 3; a gray frame file gives
    (H, W)). ``fps``: the container's rate (None when it states none); ``declared``: the frame count it states;
    ``paths``: a frame folder's files (read in place, never copied); ``count``: frames yielded so far."""

    source: str
    fps: float | None
    declared: int | None
    backend: str  # opencv | pyav | folder | arrays
    _frames: Iterator[np.ndarray] = field(repr=False)
    paths: tuple[Path, ...] | None = None
    numbers: tuple[int, ...] | None = None
    count: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self.count += 1
            yield frame

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def notes(self) -> list[str]:
        """What the reader could not take as given (a container declaring more frames than it holds)."""
        if self.declared is not None and self.declared > self.count:
            return [f"{self.source}: the container declares {self.declared} frames but only {self.count} "
                    f"could be decoded (a truncated or damaged file); only those are classified"]
        return []


def _declared(count: float | int | None) -> int | None:
    return int(count) if count is not None and math.isfinite(count) and count > 0 else None


def _open_cv2(path: Path) -> FrameStream | None:
    """OpenCV's reader; None when it cannot open the file or reads no frame (checked by decoding the first)."""
    # quiet ffmpeg's own console lines ("moov atom not found"): the failure is reported once, as our error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        return None
    fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
    declared = _declared(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        return None

    def frames() -> Iterator[np.ndarray]:
        try:
            yield first
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield frame
        finally:
            cap.release()

    return FrameStream(str(path), fps, declared, "opencv", frames())


def _open_av(path: Path) -> FrameStream | None:
    """PyAV's reader (when installed); same contract as :func:`_open_cv2`. A decoding error after the first
    frame ends the stream there (a truncated file), as OpenCV's reader does."""
    try:
        import av
    except ImportError:
        return None
    errors = (av.error.FFmpegError, OSError, ValueError)
    try:
        container = av.open(str(path))
    except errors:
        return None
    if not container.streams.video:  # a container without a video stream (e.g. a header-only mp4)
        container.close()
        return None
    stream = container.streams.video[0]
    fps = _sane_fps(float(stream.average_rate)) if stream.average_rate else None
    declared = _declared(stream.frames or None)
    decoded = container.decode(stream)
    try:
        first = next(decoded)
    except (StopIteration, *errors):
        container.close()
        return None

    def frames() -> Iterator[np.ndarray]:
        try:
            yield first.to_ndarray(format="bgr24")
            while True:
                try:
                    frame = next(decoded)
                except (StopIteration, *errors):
                    return
                yield frame.to_ndarray(format="bgr24")
        finally:
            container.close()

    return FrameStream(str(path), fps, declared, "pyav", frames())


def _opens_as_container(path: Path) -> bool:
    """Whether some decoder recognises the file as a media container at all (to tell "no frames" from "not a
    video" in the message)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            return True
    finally:
        cap.release()
    try:
        import av

        with av.open(str(path)):
            return True
    except Exception:  # noqa: BLE001 - any failure to open means: not a container PyAV knows
        return False


def open_video(path: str | Path) -> FrameStream:
    """A video file as a stream: OpenCV first, PyAV when OpenCV opens nothing or decodes no frame. Raises
    DataError naming the file when it cannot be read or has no frames (checked by decoding its first frame)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        raise InputError(path, "a folder, not a video file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes), not a video")
    for opener in (_open_cv2, _open_av):
        stream = opener(path)
        if stream is not None:
            return stream
    raise InputError(path, NO_FRAMES if _opens_as_container(path) else NOT_A_VIDEO)


def open_folder(path: str | Path, gray: bool = False) -> FrameStream:
    """A folder of numbered frame images as a stream (files read one at a time, in frame-number order)."""
    path = Path(path)
    files, numbers = list_frames(path)
    if not files:
        raise InputError(path, f"folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR

    def frames() -> Iterator[np.ndarray]:
        for f in files:
            img = cv2.imread(str(f), flag)
            if img is None:
                raise InputError(f, "unreadable frame image")
            yield img

    return FrameStream(str(path), None, None, "folder", frames(), files, numbers)


def as_bgr(frame: np.ndarray, index: int = 0, source: str = "<frames>") -> np.ndarray:
    """A frame given as an array, (H, W) gray or (H, W, 3) RGB, uint8 or floats in [0, 1] / [0, 255], as the
    uint8 image a video reader would give (gray stays (H, W); RGB becomes BGR)."""
    img = np.asarray(frame)
    if img.dtype != np.uint8:
        if img.max(initial=0) <= 1.0:
            img = img * 255.0
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if img.ndim != 2:
        raise DataError(f"{source}: frame {index} has shape {img.shape}; expected (H, W) or (H, W, 3)")
    return img


def png_gray(bgr: np.ndarray) -> np.ndarray:
    """A BGR frame as gray exactly as OpenCV reads it back from a colour PNG file with IMREAD_GRAYSCALE (libpng's
    fixed-point ITU-R 601 weights, truncated; gray pixels unchanged): the gray of a decoded video's frames before
    streaming, kept so that predictions do not change with it."""
    b, g, r = (bgr[..., i].astype(np.uint32) for i in range(3))
    out = ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)
    same = (r == g) & (g == b)
    out[same] = bgr[..., 2][same]
    return out


def png_gray_exact(bgr: np.ndarray) -> bool:
    """Whether :func:`png_gray` gives this OpenCV build's PNG gray for ``bgr`` (checked once per stream)."""
    ok, data = cv2.imencode(".png", bgr, _PNG)
    return bool(ok) and np.array_equal(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE), png_gray(bgr))


def open_arrays(frames: np.ndarray | Sequence[np.ndarray], source: str = "<frames>") -> FrameStream:
    """Frames given as arrays (T, H, W) gray or (T, H, W, 3) RGB as a stream (see :func:`as_bgr`)."""
    if len(frames) == 0:
        raise InputError(source, "no frames given")
    return FrameStream(source, None, len(frames), "arrays",
                       (as_bgr(f, i, source) for i, f in enumerate(frames)))


def open_stream(source: str | Path | np.ndarray | Sequence[np.ndarray], gray: bool = False) -> FrameStream:
    """A video file, a folder of numbered frames, or frames as arrays, as one :class:`FrameStream`. ``gray``:
    a folder's files are read as gray (a video's frames are always BGR)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise InputError(path, "no such file or folder")
        return open_folder(path, gray) if path.is_dir() else open_video(path)
    return open_arrays(source)


def iter_frames(source: str | Path, gray: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, frame) of a frame folder (its files' numbers) or a video file (numbered from 1), one at a
    time: the one reader of predict and spotting. ``gray``: uint8 (H, W); else BGR (H, W, 3)."""
    stream = open_stream(Path(source), gray)
    try:
        for i, frame in enumerate(stream):
            if gray and frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            yield (stream.numbers[i] if stream.numbers is not None else i + 1), frame
    finally:
        stream.close()


def video_fps(source: str | Path, default: float) -> float:
    """The frame rate a video file states (``default`` for a folder or a video that states none)."""
    path = Path(source)
    if path.is_file():
        try:
            stream = open_video(path)
        except DataError:
            return default
        try:
            return stream.fps or default
        finally:
            stream.close()
    return default


# ------------------------------------------------------------------------------ all frames on disk (FrameSource)
@dataclass
class FrameSource:
    """Decoded input: frame files in temporal order, the frame rate, and where they came from. ``declared``:
    the frame count the video container states (None when it states none), to tell a truncated file."""

    frames: tuple[Path, ...]
    fps: float
    source: str
    _tmp: tempfile.TemporaryDirectory | None = None
    declared: int | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def notes(self) -> list[str]:
        """What the reader could not take as given (a container declaring more frames than it holds)."""
        if self.declared is not None and self.declared > len(self.frames):
            return [f"{self.source}: the container declares {self.declared} frames but only {len(self.frames)} "
                    f"could be decoded (a truncated or damaged file); only those are classified"]
        return []


_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless and fast: the frames live only for this prediction


def frame_path(folder: Path, i: int) -> Path:
    return folder / f"frame_{i:07d}.png"


def write_frame(path: Path, frame: np.ndarray) -> Path:
    """One frame as a lossless PNG (the dataset frames' form, which the preprocessing pipeline reads)."""
    if not cv2.imwrite(str(path), frame, _PNG):
        raise DataError(f"{path}: cannot write a frame file (disk full or folder gone?)")
    return path


def _to_folder(stream: FrameStream, limit: int | None = None) -> FrameSource:
    tmp = tempfile.TemporaryDirectory(prefix="microexp-predict-")
    folder = Path(tmp.name)
    paths = []
    try:
        for i, frame in enumerate(stream):
            if limit is not None and i >= limit:
                break
            paths.append(write_frame(frame_path(folder, i), frame))
    except BaseException:
        tmp.cleanup()
        raise
    finally:
        stream.close()
    declared = stream.declared if limit is None or stream.declared is None else min(stream.declared, limit)
    return FrameSource(tuple(paths), stream.fps or DEFAULT_FPS, stream.source, tmp, declared)


def read_video(path: Path, fps: float | None = None, limit: int | None = None) -> FrameSource:
    """Decode a whole video file into PNG frames in a temporary folder (the streaming reader, written out).
    Raises DataError naming the file when it cannot be read or has no frames."""
    fps = check_fps(fps)
    src = _to_folder(open_video(path), limit)
    src.fps = fps or src.fps
    return src


def read_frames(frames: np.ndarray | Sequence[np.ndarray], fps: float | None = None,
                source: str = "<frames>") -> FrameSource:
    """Frames given as arrays (T, H, W) gray or (T, H, W, 3) RGB uint8, written as PNG so that they take the
    same path as a dataset's frame files."""
    fps = check_fps(fps)
    src = _to_folder(open_arrays(frames, source))
    src.declared = None
    src.fps = fps or DEFAULT_FPS
    return src


def open_input(source: str | Path | np.ndarray | Sequence[np.ndarray], fps: float | None = None,
               default_fps: float = DEFAULT_FPS) -> FrameSource:
    """A video file, a folder of numbered frames, or frames as arrays, with every frame as a file."""
    fps = check_fps(fps)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_dir():
            frames, _ = list_frames(path)
            if not frames:
                raise DataError(f"{path}: folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return FrameSource(frames, fps or default_fps, str(path))
        return read_video(path, fps)
    return read_frames(source, fps or default_fps)
