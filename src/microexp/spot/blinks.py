"""Blinks as their own events, and the rule that keeps them out of the expressions.

A blink moves the eyelids and little else; an expression moves the brows, the mouth or the cheeks (an upper-lid
raiser or a squint comes with those). :func:`extract_features <microexp.spot.features.extract_features>` keeps,
per frame, the mean flow magnitude of flow(t - k -> t) in three face regions placed from the 68 landmarks: the
eyes (lids included), the brow band above them and the mouth with the cheeks beside it. Per video each region's
motion is turned into a robust z-score (median and MAD over the scored frames: most of a long video is neutral).

- Eye motion: frames with eye z above :data:`EYE_Z`, joined into segments (gaps up to k/2 frames: the closing
  and the reopening of one blink join); a segment shorter than :data:`MIN_POSITIONS` frames is noise.
- A segment is a **blink** when no other region moves with it: brow z stays below :data:`BROW_Z` and mouth z
  below :data:`MOUTH_Z` over the segment. The brow limit is higher because flow spreads from a moving lid into
  the band above it. (The direction of the lids does not help: a partial blink moves both lids, and their mean
  vertical flow had either sign on our renderers.)
- A spotted micro- or macro-expression whose peak lies in a blink (widened by k frames on each side) is not
  reported (:func:`blink_mask`, the ``veto`` of a score curve), in training (threshold fitting) as in testing,
  for every spotting method. The blink's peak still counts as a peak, so it keeps the spotter from placing a
  second peak on its flank. An eye movement with the brows or the mouth moving is not a blink and stays
  open to the spotters.
- ``blinks="spans"`` (not the default): nor is a spot, wherever its peak, that covers a blink while no other
  region moves anywhere in it (brow z below :data:`BROW_Z`, mouth z below :data:`MOUTH_Z` over its frames:
  :func:`drop_lone_blinks`); applied to the final spots of every method (after the window scales and types are
  merged), not in the threshold fitting. A long (macro) interval reaches over a blink beside its peak. Not the
  default because on the first renderer a brow raise moves the eye region more than the brow band, so it costs
  true macro-expressions (docs/spotting.md).

The rule (lid motion alone is a blink; motion of another region is an expression) is the observation behind
landmark blink detectors such as the eye aspect ratio of Soukupová and Čech, "Real-time eye blink detection
using facial landmarks" (Computer Vision Winter Workshop 2016), applied to flow so that it works on crops too
small for reliable eyelid landmarks; the thresholds are ours, set on the first synthetic renderer and checked on
the second (docs/spotting.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microexp.spot.features import REGIONS, VideoFeatures
from microexp.spot.metrics import Spot

EYE_Z = 6.0  # eye motion above the video's neutral level (robust z)
BROW_Z = 12.0  # brow band moving with it: not a blink
MOUTH_Z = 6.0  # mouth / cheeks moving with it: not a blink
MIN_POSITIONS = 3  # a closing and a reopening: eye motion over at least this many frames


@dataclass(frozen=True)
class Blink:
    """One blink: frames inclusive, its peak eye-motion z-score."""

    onset: int
    offset: int
    score: float

    def to_dict(self) -> dict[str, float | int | str]:
        return {"type": "blink", "onset": self.onset, "offset": self.offset, "score": round(self.score, 3)}


def region_z(feat: VideoFeatures, k: int | None = None) -> np.ndarray:
    """(T, len(REGIONS)) robust z-scores of the region motion at window ``k`` (default the smallest); 0 where not
    scored."""
    k = min(feat.ks) if k is None else k
    r = feat.regions.get(k)
    n = feat.n_frames
    if r is None or not len(r):
        return np.zeros((n, len(REGIONS)))
    ok = feat.valid[k]
    if not ok.any():
        return np.zeros((n, len(REGIONS)))
    med = np.median(r[ok], 0)
    mad = np.median(np.abs(r[ok] - med), 0) * 1.4826
    z = (r - med) / np.maximum(mad, 1e-3 * np.maximum(med, 1e-6))
    z[~ok] = 0.0
    return z


def _segments(active: np.ndarray, join: int) -> list[tuple[int, int]]:
    idx = np.flatnonzero(active)
    if not len(idx):
        return []
    out = [[int(idx[0]), int(idx[0])]]
    for i in idx[1:]:
        if i - out[-1][1] <= join + 1:
            out[-1][1] = int(i)
        else:
            out.append([int(i), int(i)])
    return [(a, b) for a, b in out]


def blink_segments(feat: VideoFeatures, k: int | None = None) -> list[tuple[int, int, float]]:
    """(first position, last position, peak eye z) of every eye movement that no other region moves with, at
    window ``k`` (default the smallest the features hold; the spotters pass their smallest window, not a chained
    window's short step)."""
    k = min(feat.ks) if k is None else k
    z = region_z(feat, k)
    eye, brow, mouth = (z[:, REGIONS.index(r)] for r in ("eyes", "brows", "mouth"))
    out = []
    for a, b in _segments(eye > EYE_Z, max(1, k // 2)):
        if b - a + 1 < MIN_POSITIONS:
            continue  # one frame of eye motion: noise, not a lid closing and reopening
        if brow[a:b + 1].max() < BROW_Z and mouth[a:b + 1].max() < MOUTH_Z:
            out.append((a, b, float(eye[a:b + 1].max())))
    return out


def blinks_of(feat: VideoFeatures, k: int | None = None) -> list[Blink]:
    """The blinks of a video, in its frame numbers. Flow(t - k -> t) moves from the first frame of a blink until
    k - 1 frames after its last, so the event is the segment shifted back accordingly."""
    k = min(feat.ks) if k is None else k
    out = []
    for a, b, peak in blink_segments(feat, k):
        onset = int(feat.numbers[a]) - 1
        out.append(Blink(max(onset, int(feat.numbers[0])), max(onset, int(feat.numbers[b]) - k + 1), peak))
    return out


def blink_mask(feat: VideoFeatures, k: int | None = None) -> np.ndarray:
    """Positions where an expression peak would be a blink: every blink segment widened by k on each side."""
    k = min(feat.ks) if k is None else k
    mask = np.zeros(feat.n_frames, bool)
    for a, b, _ in blink_segments(feat, k):
        mask[max(0, a - k):b + k + 1] = True
    return mask


def drop_lone_blinks(feat: VideoFeatures, spots: list[Spot], k: int | None = None) -> list[Spot]:
    """``spots`` of this video without those that cover a blink while no other region moves in them: brow z
    below :data:`BROW_Z` and mouth z below :data:`MOUTH_Z` over every position of the spot's frames."""
    k = min(feat.ks) if k is None else k
    segments = blink_segments(feat, k)
    if not segments:
        return list(spots)
    z = region_z(feat, k)
    quiet = (z[:, REGIONS.index("brows")] < BROW_Z) & (z[:, REGIONS.index("mouth")] < MOUTH_Z)
    out = []
    for sp in spots:
        a, b = np.searchsorted(feat.numbers, sp.onset), np.searchsorted(feat.numbers, sp.offset, "right")
        if b > a and any(s < b and a <= e for s, e, _ in segments) and quiet[a:b].all():
            continue  # a blink and nothing else
        out.append(sp)
    return out
