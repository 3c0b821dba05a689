"""Frame files: listing a clip folder in true temporal order and reading frames."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

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
