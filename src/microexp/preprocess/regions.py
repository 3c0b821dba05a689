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


# HTNet's four facial areas (docs/models.md "HTNet"): five points as MTCNN gives them (image-left eye, image-right
# eye, nose tip, image-left and image-right mouth corner) from the 68 dlib landmarks
AREA_MODES = ("paper", "code")


def five_points(lm: np.ndarray) -> np.ndarray:
    """(5, 2) x, y: eye centres (means of 36-41 and 42-47), nose tip (30), mouth corners (48, 54)."""
    return np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]], dtype=np.float64)


def face_areas(img: np.ndarray, points: np.ndarray, mode: str = "paper") -> np.ndarray:
    """Four half-size areas of ``img`` (C, H, W) tiled 2x2 into an image of the same size: top row the left eye
    and left lip areas, bottom row the right eye and right lip areas. ``points``: :func:`five_points` in ``img``'s
    pixels; each centre is clamped to [h/2, H - h/2] (h the area side) and truncated to an integer as the code.
    ``paper``: the area around each named point (left eye, left mouth corner, right eye, right mouth corner).
    ``code``: ``main_HTNet.py`` as published: points 0, 1, 3, 4 in that order, indexed (row = x, column = y), i.e.
    the transposed position, which on a frontal face lands near the area the code's variable names say."""
    if mode not in AREA_MODES:
        raise PreprocessError(f"face areas: mode {mode!r} is not one of {list(AREA_MODES)}")
    c, rows, cols = img.shape
    if rows % 2 or cols % 2:
        raise PreprocessError(f"face areas need an even size, got {rows}x{cols}")
    ah, aw = rows // 2, cols // 2
    if mode == "paper":  # (row, col) = (y, x) of left eye, left mouth corner, right eye, right mouth corner
        centres = [(points[i, 1], points[i, 0]) for i in (0, 3, 1, 4)]
    else:  # the code: (row, col) = (x, y) of points 0, 1, 3, 4
        centres = [(points[i, 0], points[i, 1]) for i in (0, 1, 3, 4)]
    tiles = []
    for r, q in centres:
        r = int(min(max(r, ah / 2), rows - ah / 2) - ah / 2)  # top-left corner of the area, inside the image
        q = int(min(max(q, aw / 2), cols - aw / 2) - aw / 2)
        tiles.append(img[:, r:r + ah, q:q + aw])
    top = np.concatenate(tiles[:2], axis=2)
    bottom = np.concatenate(tiles[2:], axis=2)
    return np.concatenate([top, bottom], axis=1).astype(np.float32)
