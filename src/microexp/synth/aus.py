"""Action units the generator draws (parsed by microexp.data.aus), and AU -> landmark displacement rules.

Displacements follow docs/synthetic.md §7.2, ported to the iBUG 68 points (0-based) and extended to AU5, AU7,
AU9, AU10, AU14, AU17 and AU20. They are given at intensity 1 in units of the inter-ocular distance (IOD) in a
face frame whose x axis runs along the eye line towards the subject's left and whose "up" is towards the
brows. "Outward" means away from the face midline. ``L``/``R`` prefixes are the subject's left/right (image
right/left in a non-mirrored frontal picture); L = indices 22-26, 42-47, 54, 64; R = 17-21, 36-41, 48, 60.
"""

from __future__ import annotations

import numpy as np

from microexp.data.aus import AUCode, parse_aus_cell

# Each rule: (points on the R side, points on the L side, up, outward), in IOD at intensity 1. A "point" is a
# landmark index or a tuple of indices whose mean is a virtual point (iBUG 68 has no cheek points).
_Pt = int | tuple[int, ...]
_RULES: dict[int, list[tuple[list[_Pt], list[_Pt], float, float]]] = {
    # AU1 inner brow raiser: inner brow up, mid brow a little
    1: [([21, 20], [22, 23], 0.05, 0.0), ([19], [24], 0.02, 0.0)],
    # AU2 outer brow raiser
    2: [([17, 18], [26, 25], 0.05, 0.0), ([19], [24], 0.025, 0.0)],
    # AU4 brow lowerer: inner brow down and towards the midline, the rest of the brow down
    4: [([21, 20], [22, 23], -0.035, -0.03), ([17, 18, 19], [24, 25, 26], -0.02, 0.0)],
    # AU5 upper lid raiser
    5: [([37, 38], [43, 44], 0.015, 0.0)],
    # AU6 cheek raiser: lower lid up, virtual cheek points up
    6: [([40, 41], [46, 47], 0.015, 0.0), ([(41, 31), (41, 31, 2)], [(46, 35), (46, 35, 14)], 0.03, 0.0)],
    # AU7 lid tightener: lower lid up, upper lid slightly down
    7: [([40, 41], [46, 47], 0.02, 0.0), ([37, 38], [43, 44], -0.01, 0.0)],
    # AU9 nose wrinkler: nose wings and upper lip up, inner brow slightly down
    9: [([31, 32], [35, 34], 0.025, 0.0), ([50], [52], 0.015, 0.0), ([21], [22], -0.015, 0.0)],
    # AU10 upper lip raiser
    10: [([49, 50, 61], [53, 52, 63], 0.03, 0.0), ([31], [35], 0.01, 0.0)],
    # AU12 lip corner puller: corners up and outward, neighbours at half, cheeks a little
    12: [
        ([48, 60], [54, 64], 0.035, 0.03),
        ([49, 59], [53, 55], 0.0175, 0.015),
        ([(41, 31)], [(46, 35)], 0.01, 0.0),
    ],
    # AU14 dimpler: corners pulled back (outward in the image plane), tightened
    14: [([48, 60], [54, 64], 0.005, 0.03), ([49, 59], [53, 55], 0.0, 0.015)],
    # AU15 lip corner depressor
    15: [([48, 60], [54, 64], -0.035, 0.01), ([49, 59], [53, 55], -0.0175, 0.005)],
    # AU17 chin raiser: chin boss and lower lip up
    17: [([7, 8], [9], 0.025, 0.0), ([58, 57, 67, 66], [56, 65], 0.02, 0.0), ([(57, 8)], [], 0.03, 0.0)],
    # AU20 lip stretcher
    20: [([48, 60], [54, 64], -0.01, 0.035), ([49, 59], [53, 55], -0.005, 0.0175)],
}
SUPPORTED = tuple(sorted(_RULES))

AU = AUCode  # the generator draws the one AU type of microexp.data.aus (side "" = both sides)


def parse_aus(codes: object) -> list[AUCode]:
    """The AUs of an annotation cell the generator draws: :func:`microexp.data.aus.parse_aus_cell`'s *certain*
    codes (alternatives of an "or" and ``ref(...)`` are not drawn, as they are not AU-detection positives) that
    have a displacement rule, as side ``L``/``R`` or both sides (``""``; asymmetric, top/bottom lip and
    unspecified unilateral codes are drawn on both sides), intensity letters dropped.

    ``"4+7"``, ``"AU4+AU7"``, ``"L12+R14"``, ``"A1B"``, ``"12C+6"``; ``None``, ``""`` and ``"NULL"`` mean no AU.
    Duplicates collapse; a both-sided AU absorbs its one-sided variants.
    """
    found: dict[tuple[int, str], AUCode] = {}
    for code in parse_aus_cell(codes).codes:
        if code.certain and code.number in _RULES:
            side = code.side if code.side in ("L", "R") else ""
            found[code.number, side] = AUCode(code.number, side)
    out = [au for au in found.values() if au.side == "" or (au.number, "") not in found]
    return sorted(out)


def format_aus(aus: list[AUCode]) -> str:
    """Canonical string (``"6+12"``, ``"L12+R14"``; empty for none)."""
    return "+".join(str(a) for a in aus)


def _point(landmarks: np.ndarray, p: _Pt) -> np.ndarray:
    return landmarks[list(p)].mean(0) if isinstance(p, tuple) else landmarks[p]


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(x axis towards subject's left, up axis, IOD, midline point) of a 68-point face."""
    right_eye, left_eye = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    ex = left_eye - right_eye
    iod = float(np.linalg.norm(ex))
    ex = ex / iod
    up = np.array([ex[1], -ex[0]])  # image y points down: rotate the eye axis by -90 degrees
    return ex, up, iod, (right_eye + left_eye) / 2


def au_controls(landmarks: np.ndarray, aus: list[AUCode]) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Control points (K, 2), their displacements in pixels at intensity 1 (K, 2), and the moving landmark
    ids.

    Displacements of the same point from several AUs add up.
    """
    ex, up, iod, _ = face_axes(landmarks)
    disp: dict[_Pt, np.ndarray] = {}
    for au in aus:
        for right, left, d_up, d_out in _RULES[au.number]:
            sides = [(right, -1.0), (left, 1.0)]
            if au.side == "L":
                sides = [(left, 1.0)]
            elif au.side == "R":
                sides = [(right, -1.0)]
            for points, sign in sides:
                vec = (d_up * up + sign * d_out * ex) * iod
                for p in points:
                    disp[p] = disp.get(p, np.zeros(2)) + vec
    keys = list(disp)
    src = np.array([_point(landmarks, k) for k in keys], dtype=np.float64).reshape(-1, 2)
    d = np.array([disp[k] for k in keys], dtype=np.float64).reshape(-1, 2)
    moving = {k if isinstance(k, int) else -1 for k in keys} - {-1}
    return src, d, moving


def blink_controls(landmarks: np.ndarray, closure: float = 1.0) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Upper lids (37, 38, 43, 44) moved down by ``closure`` x the local eye opening (partial blink at <
    1)."""
    pairs = ((37, 41), (38, 40), (43, 47), (44, 46))
    src = np.array([landmarks[u] for u, _ in pairs], dtype=np.float64)
    d = np.array([(landmarks[lo] - landmarks[u]) * closure for u, lo in pairs], dtype=np.float64)
    return src, d, {u for u, _ in pairs}
