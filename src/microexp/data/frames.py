"""Frame files: listing a clip folder in true temporal order and reading frames."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from microexp.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in the stem


def frame_number(path: Path) -> int:
    """Absolute frame index encoded in a frame file name (the last group of digits: ``img46.jpg`` -> 46)."""
    m = _NUMBER.search(path.stem)
    if m is None:
        raise DataError(f"{path}: frame file name has no frame number")
    return int(m.group(1))


def list_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Image files of a clip folder sorted by frame number (numeric, not directory or string order)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    numbered = sorted((frame_number(p), p) for p in files)
    seen: set[int] = set()
    for n, p in numbered:
        if n in seen:
            raise DataError(f"{folder}: two frame files carry frame number {n} ({p.name})")
        seen.add(n)
    return tuple(p for _, p in numbered), tuple(n for n, _ in numbered)


def read_frame(path: Path, gray: bool = True) -> np.ndarray:
    """Read one frame as uint8 (gray HxW, or RGB HxWx3). Raises DataError naming the file if unreadable."""
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None:
        raise DataError(f"{path}: unreadable image")
    return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_SIZES: dict[tuple[str, int, int], tuple[int, int] | None] = {}  # (path, mtime, bytes) -> header size


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header (no decode: ~0.1 ms a file); None when the header is unreadable.
    Remembered per (path, mtime, size) in this process, so re-loading a tree does not re-read its headers."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _SIZES:
        try:
            with Image.open(path) as img:
                _SIZES[key] = img.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            _SIZES[key] = None
    return _SIZES[key]


def sequence_defect(frames: tuple[Path, ...], numbers: tuple[int, ...]) -> tuple[str, str] | None:
    """(kind, detail) when the frames of one clip cannot be used as one sequence, else None: a frame number
    missing between its first and last frame (``missing frames``), a frame whose header cannot be read
    (``unreadable image``) or whose size differs from the first frame's (``frame size``). Every frame is looked
    at, so the verdict does not depend on which frames a model later samples."""
    have = set(numbers)
    missing = [n for n in range(numbers[0], numbers[-1] + 1) if n not in have] if numbers else []
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        return "missing frames", f"{len(missing)} frame number(s) absent in {numbers[0]}..{numbers[-1]}: {shown}"
    first: tuple[int, int] | None = None
    for path in frames:
        size = image_size(path)
        if size is None:
            return "unreadable image", f"{path}: the image header cannot be read"
        if first is None:
            first = size
        elif size != first:
            return "frame size", (f"{path.name} is {size[0]}x{size[1]}, the clip's first frame {frames[0].name} is "
                                  f"{first[0]}x{first[1]}")
    return None
