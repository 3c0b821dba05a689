"""Input decoding: a video file (OpenCV, PyAV as fallback), a folder of numbered frames, or frames as arrays,
as one :class:`FrameSource` of frame files in temporal order (videos and arrays go to numbered PNG frames in a
temporary folder, so that every input takes the dataset frames' path through preprocessing)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from microexp.data.frames import IMAGE_SUFFIXES, list_frames
from microexp.errors import ConfigError, DataError

DEFAULT_FPS = 30.0


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


def _frame_path(folder: Path, i: int) -> Path:
    return folder / f"frame_{i:07d}.png"


def _sane_fps(fps: float | None) -> float | None:
    return float(fps) if fps is not None and math.isfinite(fps) and 0 < fps < 10000 else None


def _decode_cv2(path: Path, folder: Path, limit: int | None) -> tuple[int, float | None, int | None] | None:
    # quiet ffmpeg's own console lines ("moov atom not found"): the failure is reported once, as our error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return None
    try:
        fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        declared = int(count) if math.isfinite(count) and count > 0 else None
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            cv2.imwrite(str(_frame_path(folder, n)), frame, _PNG)
            n += 1
        return n, fps, declared
    finally:
        cap.release()


def _decode_av(path: Path, folder: Path, limit: int | None) -> tuple[int, float | None, int | None] | None:
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0, None, None  # a container without a video stream (e.g. a header-only mp4): zero frames
            stream = container.streams.video[0]
            fps = _sane_fps(float(stream.average_rate)) if stream.average_rate else None
            declared = int(stream.frames) if stream.frames else None
            n = 0
            for frame in container.decode(stream):
                if limit is not None and n >= limit:
                    break
                cv2.imwrite(str(_frame_path(folder, n)), frame.to_ndarray(format="bgr24"), _PNG)
                n += 1
            return n, fps, declared
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def read_video(path: Path, fps: float | None = None, limit: int | None = None) -> FrameSource:
    """Decode a video file into PNG frames in a temporary folder (OpenCV first, PyAV when OpenCV reads
    nothing). Raises DataError naming the file when it cannot be read or has no frames."""
    path = Path(path)
    fps = check_fps(fps)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a video")
    tmp = tempfile.TemporaryDirectory(prefix="microexp-predict-")
    folder = Path(tmp.name)
    opened = False
    n, found_fps, declared = 0, None, None
    for decode in (_decode_cv2, _decode_av):
        got = decode(path, folder, limit)
        if got is None:
            continue
        opened = True
        n, found_fps, declared = got
        if n:
            break
    if not n:
        tmp.cleanup()
        if opened:
            raise DataError(f"{path}: video has no frames (zero-length or undecodable stream)")
        raise DataError(f"{path}: cannot read video (not a video file, or a codec neither OpenCV nor PyAV decodes)")
    frames = tuple(_frame_path(folder, i) for i in range(n))
    if limit is not None and declared is not None:
        declared = min(declared, limit)
    return FrameSource(frames, fps or found_fps or DEFAULT_FPS, str(path), tmp, declared)


def read_frames(frames: np.ndarray | Sequence[np.ndarray], fps: float | None = None,
                source: str = "<frames>") -> FrameSource:
    """Frames given as arrays (T, H, W) gray or (T, H, W, 3) RGB uint8, written as PNG so that they take the
    same path as a dataset's frame files."""
    fps = check_fps(fps)
    if len(frames) == 0:
        raise DataError(f"{source}: no frames given")
    tmp = tempfile.TemporaryDirectory(prefix="microexp-predict-")
    folder = Path(tmp.name)
    paths = []
    for i, f in enumerate(frames):
        img = np.asarray(f)
        if img.dtype != np.uint8:
            if img.max(initial=0) <= 1.0:
                img = img * 255.0
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        elif img.ndim != 2:
            tmp.cleanup()
            raise DataError(f"{source}: frame {i} has shape {img.shape}; expected (H, W) or (H, W, 3)")
        cv2.imwrite(str(_frame_path(folder, i)), img, _PNG)
        paths.append(_frame_path(folder, i))
    return FrameSource(tuple(paths), fps or DEFAULT_FPS, source, tmp)


def open_input(source: str | Path | np.ndarray | Sequence[np.ndarray], fps: float | None = None,
               default_fps: float = DEFAULT_FPS) -> FrameSource:
    """A video file, a folder of numbered frames, or frames as arrays."""
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
