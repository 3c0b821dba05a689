"""Frame reading with the right channel order, and the facial regions of the seed systems.

* ``face``: the canonical aligned face square (:func:`microexp.preprocess.align.face_box`).
* ``eyes`` / ``mouth``: exactly the seed MicroExpFuseNet slices (docs/models.md §1.4): eyes rows
  y(19)..y(1), columns x(1)..x(15); mouth rows y(2)..y(6), columns x(2)..x(14) (0-based dlib indices), then
  INTER_AREA resize (32x32 in the seed).
* ``roi1``..``roi6``: Aouayeb et al. (docs/models.md §4.2): face box x(17)..x(26), y min(y(18), y(25))..y(8),
  fitted into a white 240 wide x 280 high canvas as python-resize-image's ``resize_contain`` does (shrink only,
  keep the aspect ratio, centred with ceil), then the six fixed boxes R0..R5.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from microexp.errors import DataError, PreprocessError
from microexp.preprocess.align import Box

AOUAYEB_CANVAS = (240, 280)  # width, height
# (x0, x1, y0, y1) on the canvas, R0..R5 -> roi1..roi6
AOUAYEB_BOXES = ((0, 100, 20, 100), (140, 240, 20, 100), (60, 180, 80, 160),
                 (0, 60, 120, 180), (180, 240, 120, 180), (40, 200, 180, 240))


def read_gray(path: Path, gray: str = "correct") -> np.ndarray:
    """A frame as uint8 gray. ``correct``: ITU-R 601 weights on the true channels. ``code``: the seed's quirk of
    applying BGR2GRAY to an RGB (imageio) frame, i.e. gray = 0.299 B + 0.587 G + 0.114 R."""
    if gray == "correct":
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DataError(f"{path}: unreadable image")
        return img
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: unreadable image")
    return to_gray(img, gray, order="bgr")


def read_rgb(path: Path) -> np.ndarray:
    """A frame as uint8 (H, W, 3) in R, G, B order (gray files are replicated to three channels)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_gray(img: np.ndarray, gray: str = "correct", order: str = "rgb") -> np.ndarray:
    """Gray conversion of an in-memory image whose channel order is ``order`` (``rgb`` or ``bgr``)."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        img = img[:, :, :3]
    swap = gray == "code"
    # the seed calls BGR2GRAY on RGB data; on BGR data the same weights land on the swapped channels
    code = cv2.COLOR_RGB2GRAY if (order == "rgb") != swap else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def _box_from(lm: np.ndarray, x0: int, x1: int, y0: int, y1: int, what: str) -> Box:
    box = (float(lm[x0, 0]), float(lm[y0, 1]), float(lm[x1, 0]), float(lm[y1, 1]))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise PreprocessError(f"{what} region is empty (landmarks give box {tuple(round(v) for v in box)})")
    return box


def eyes_box(lm: np.ndarray) -> Box:
    """Seed eye box: rows y19..y1, columns x1..x15 (landmarks rounded to pixels as dlib returns them)."""
    return _box_from(np.round(lm), 1, 15, 19, 1, "eyes")


def mouth_box(lm: np.ndarray) -> Box:
    """Seed nose/mouth box: rows y2..y6, columns x2..x14."""
    return _box_from(np.round(lm), 2, 14, 2, 6, "mouth")


def aouayeb_face_box(lm: np.ndarray) -> Box:
    lm = np.round(lm)
    box = (float(lm[17, 0]), float(min(lm[18, 1], lm[25, 1])), float(lm[26, 0]), float(lm[8, 1]))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise PreprocessError(f"Aouayeb face box is empty ({box})")
    return box


def contain_canvas(face: np.ndarray, enlarge: bool = False) -> np.ndarray:
    """``resize_contain(face, [240, 280])`` on white: shrink to fit keeping aspect, centre (ceil offsets).
    Like PIL's ``thumbnail`` underneath it never enlarges a small face unless ``enlarge`` (a non-seed option,
    ``extra: {roi_enlarge: true}``)."""
    cw, ch = AOUAYEB_CANVAS
    h, w = face.shape[:2]
    s = min(cw / w, ch / h) if enlarge else min(1.0, cw / w, ch / h)
    nw, nh = max(1, int(w * s)), max(1, int(h * s))
    small = face if (nw, nh) == (w, h) else cv2.resize(face, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.full((ch, cw, *face.shape[2:]), 255.0, dtype=np.float32)  # white, gray or colour
    ox, oy = math.ceil((cw - nw) / 2), math.ceil((ch - nh) / 2)
    canvas[oy:oy + nh, ox:ox + nw] = small
    return canvas


def aouayeb_roi(canvas: np.ndarray, k: int, size: tuple[int, int], how: str = "area") -> np.ndarray:
    """Region ``roi{k}`` (1-based) of a 240x280 canvas, resized to ``size`` (rows, cols)."""
    x0, x1, y0, y1 = AOUAYEB_BOXES[k - 1]
    from microexp.preprocess.align import resize

    return resize(canvas[y0:y1, x0:x1], size, how)
