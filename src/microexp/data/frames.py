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


# a clip with up to this share of its frame numbers missing inside it is repaired (the frame before each hole is
# repeated, as the releases' own loaders did); more than that and the clip is not one sequence any more
MAX_MISSING_SHARE = 0.1


def fill_missing(frames: tuple[Path, ...], numbers: tuple[int, ...]
                 ) -> tuple[tuple[Path, ...], tuple[int, ...], list[int]]:
    """Frames and numbers with every number missing between the first and last frame filled by the frame before
    it, so that the clip keeps its length and timing; also the missing numbers (empty when nothing was filled)."""
    have = dict(zip(numbers, frames, strict=True))
    if not numbers or len(have) == numbers[-1] - numbers[0] + 1:
        return frames, numbers, []
    filled: list[Path] = []
    missing: list[int] = []
    for n in range(numbers[0], numbers[-1] + 1):
        if n not in have:
            missing.append(n)
        filled.append(have.get(n, filled[-1] if filled else frames[0]))
    return tuple(filled), tuple(range(numbers[0], numbers[-1] + 1)), missing


def describe_missing(missing: list[int], numbers: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
    return f"{len(missing)} frame number(s) absent in {numbers[0]}..{numbers[-1]}: {shown}"


def sequence_defect(frames: tuple[Path, ...], numbers: tuple[int, ...]
                    ) -> tuple[tuple[Path, ...], tuple[int, ...], str | None, tuple[str, str] | None]:
    """Check the frames of one clip as one sequence; every frame is looked at, so the verdict does not depend on
    which frames a model later samples. Returns (frames, numbers, repair, defect):

    * a few frame numbers missing inside the clip (at most :data:`MAX_MISSING_SHARE` of them) are filled with the
      frame before each hole, and ``repair`` says so (to be recorded in the record's ``meta["repairs"]``);
    * ``defect`` is (kind, detail) when the clip cannot be used: more frames missing than that
      (``missing frames``), a frame whose header cannot be read (``unreadable image``) or whose size differs from
      the first frame's (``frame size``)."""
    filled, full, missing = fill_missing(frames, numbers)
    repair = None
    if missing:
        detail = describe_missing(missing, full)
        if len(missing) > MAX_MISSING_SHARE * len(full):
            return frames, numbers, None, ("missing frames", f"{detail} (more than {MAX_MISSING_SHARE:.0%} of "
                                                             "the clip: not repaired)")
        repair = f"missing frames: {detail}; the frame before each hole repeated"
    first: tuple[int, int] | None = None
    for path in frames:
        size = image_size(path)
        if size is None:
            return frames, numbers, None, ("unreadable image", f"{path}: the image header cannot be read")
        if first is None:
            first = size
        elif size != first:
            return frames, numbers, None, ("frame size", (f"{path.name} is {size[0]}x{size[1]}, the clip's first "
                                                          f"frame {frames[0].name} is {first[0]}x{first[1]}"))
    return filled, full, repair, None
