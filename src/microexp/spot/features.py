"""Streamed per-frame motion features of a long video: face crop, dense flow between frames k apart, per-block
main-directional magnitudes (MDMD) and small flow maps (learned spotter).

Frames are read one at a time (a frame folder or a video file, never decoded to disk); only the face crops of the
last ``2 k + 1`` frames are held, so memory is bounded by the window whatever the video's length. What is kept per
frame is a few hundred numbers.

Face: the one face tracker of predict, spot and the web app (:class:`microexp.preprocess.track.FaceTracker`,
detector ``face``: dlib, dlib-mmod or none), tracking the face from frame to frame and detecting again every
``redetect_s`` seconds; the crop box (the canonical box of :func:`microexp.preprocess.align.face_box` around the
eyes) is set by a detection and stays fixed while later detections stay inside its tolerance, so no crop jump is
mistaken for motion; pairs straddling a box change are left out. Frames where the tracker has no face (it lost it,
or followed it for more than ``lost_s`` seconds without a detection confirming it) are a *gap* (no features, no
spots there), listed with its frame range. Residual head motion is removed by subtracting the median flow of the
crop. ``face="none"``: the frames are face crops already.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from microexp.contract.faces import check_face
from microexp.errors import ConfigError

# frames: the one streaming reader of predict and spotting (OpenCV, PyAV as fallback), (frame number, gray uint8
# frame) of a frame folder (its numbers) or a video file (numbered from 1); re-exported for spotting's callers
from microexp.predict.video import iter_frames, video_fps

__all__ = ["REGIONS", "FeatureConfig", "VideoFeatures", "extract_features", "flow", "iter_frames", "main_direction",
           "region_masks", "small_map", "video_fps"]

N_BINS = 8  # flow directions of the main-direction analysis
REGIONS = ("eyes", "brows", "mouth")  # face regions whose mean flow magnitude is kept per frame (blinks)


@dataclass(frozen=True)
class FeatureConfig:
    crop: int = 64  # face crop side (pixels) the flow is computed on
    grid: int = 6  # blocks per side
    flow_size: int = 16  # side of the small flow maps kept for the learned spotter
    face: str = "dlib"  # the face tracker's detector: dlib | dlib-mmod | none (microexp.contract.faces)
    redetect_s: float = 0.5  # the tracker detects again this often while it follows the face
    lost_s: float = 1.0  # a face followed this long without a detection finding it is dropped (a gap)
    tolerance: float = 0.08  # box kept while the detection moves less than this fraction of its side
    keep_maps: bool = True

    def validate(self) -> None:
        check_face(self.face)
        if self.crop < 16 or self.grid < 1 or self.crop // self.grid < 2:
            raise ConfigError(f"crop {self.crop} / grid {self.grid}: need crop >= 16 and >= 2 pixels per block")


# ------------------------------------------------------------------------------------------------------ flow
_DIS: list[cv2.DISOpticalFlow] = []


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow a -> b (H, W, 2), DIS (ultrafast preset), minus its median (residual head translation)."""
    if not _DIS:
        _DIS.append(cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST))
    f = _DIS[0].calc(a, b, None)
    return f - np.median(f[::3, ::3].reshape(-1, 2), axis=0)  # a subsample is enough for the median


def main_direction(f: np.ndarray, grid: int) -> np.ndarray:
    """Per block (grid x grid, row-major): the mean magnitude of the pixels whose direction falls in the block's
    most frequent of 8 direction bins (the main-directional magnitude of MDMD)."""
    h, w = f.shape[:2]
    bh, bw = h // grid, w // grid
    f = f[:bh * grid, :bw * grid]
    mag = np.hypot(f[..., 0], f[..., 1])
    ang = np.arctan2(f[..., 1], f[..., 0])
    bins = ((ang + np.pi) / (2 * np.pi) * N_BINS).astype(np.int64) % N_BINS
    idx = (_block_index(bh, bw, grid) + bins).ravel()
    counts = np.bincount(idx, minlength=grid * grid * N_BINS).reshape(grid * grid, N_BINS)
    sums = np.bincount(idx, weights=mag.ravel(), minlength=grid * grid * N_BINS).reshape(grid * grid, N_BINS)
    main = counts.argmax(1)
    rows = np.arange(grid * grid)
    return (sums[rows, main] / np.maximum(counts[rows, main], 1)).astype(np.float32)


@lru_cache(maxsize=8)
def _block_index(bh: int, bw: int, grid: int) -> np.ndarray:
    block = (np.arange(grid)[:, None] * grid + np.arange(grid)[None, :])
    return np.repeat(np.repeat(block, bh, 0), bw, 1) * N_BINS


def small_map(f: np.ndarray, side: int) -> np.ndarray:
    """(2, side, side) float16 flow map, area-averaged."""
    return cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA).transpose(2, 0, 1).astype(np.float16)


def region_masks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(len(REGIONS), size, size) bool masks of a ``size`` crop from its 68 landmarks (crop pixels): ``eyes`` the
    boxes of the two eyes (lids included), ``brows`` the band of the eyebrows and the forehead above them, kept
    clear of the eyes, ``mouth`` the mouth and the cheeks beside it. Flow spreads a few pixels around a moving
    lid, so the brow band stops a quarter of an eye distance above the eye boxes."""
    lm = np.asarray(landmarks, np.float64)
    iod = max(float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))), 2.0)
    yy, xx = np.mgrid[0:size, 0:size]

    def box(pts: np.ndarray, dx: float, up: float, down: float) -> np.ndarray:
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        return (xx >= x0 - dx) & (xx <= x1 + dx) & (yy >= y0 - up) & (yy <= y1 + down)

    eyes = box(lm[36:42], 0.2 * iod, 0.3 * iod, 0.25 * iod) | box(lm[42:48], 0.2 * iod, 0.3 * iod, 0.25 * iod)
    eye_top = min(lm[36:48, 1].min() - 0.3 * iod, lm[17:27, 1].max())
    brows = box(lm[17:27], 0.1 * iod, 0.4 * iod, 0.0) & (yy < eye_top - 0.25 * iod)
    mouth = box(lm[48:68], 0.35 * iod, 0.2 * iod, 0.25 * iod) & ~eyes
    masks = np.stack([eyes, brows, mouth])
    for m in masks:  # a region squeezed to nothing (a tiny or odd crop): its nearest pixel still counts
        if not m.any():
            m[min(size - 1, max(0, int(yy.mean()))), size // 2] = True
    return masks


# ------------------------------------------------------------------------------------------------------ face
class _FaceCrop:
    """The face crop of each frame: the face from the one face tracker (:func:`microexp.preprocess.track.face_tracker`,
    the tracker of predict and the web app), detecting again every ``redetect_s``; the crop box set from a
    detection's eyes and kept while later detections stay within ``tolerance`` (a crop that follows every
    landmark jitter would show as motion). A face tracking follows but no detection confirms for more than
    ``lost_s`` is dropped."""

    def __init__(self, config: FeatureConfig, fps: float) -> None:
        from microexp.preprocess.track import TrackConfig, face_tracker

        self.config = config
        every = max(1, int(round(config.redetect_s * fps)))
        # while no face is known, a detection every third of a re-detection step: a gap ends near the face's return
        self.tracker = face_tracker(config.face, TrackConfig(redetect=every, retry=max(1, round(every / 3)),
                                                             confirm=max(1, int(round(config.lost_s * fps)))))
        self.box: tuple[float, float, float, float] | None = None
        self.box_id = 0
        self.masks: np.ndarray | None = None  # region masks of the crop (REGIONS), from the box's landmarks

    def update(self, gray: np.ndarray) -> bool:
        """Whether this frame (the next of the stream) has a face, and so a usable crop box."""
        face = self.tracker.update(gray)
        if face is None:
            return False
        if self.tracker.detected:
            if self.config.face == "none":  # frames are face crops: the whole frame
                h, w = gray.shape
                box = (0.0, 0.0, float(w), float(h))
            else:
                from microexp.preprocess.align import face_box

                box = face_box(*face.eyes)
            if self.box is None or self._moved(box):
                self.box = box
                self.box_id += 1
                self.masks = self._masks(face.landmarks, self.config.crop)
        return self.box is not None

    def _moved(self, box: tuple[float, float, float, float]) -> bool:
        assert self.box is not None
        side = self.box[2] - self.box[0]
        d = max(abs(a - b) for a, b in zip(box, self.box, strict=True))
        return d > self.config.tolerance * side

    def _masks(self, landmarks: np.ndarray, size: int) -> np.ndarray:
        assert self.box is not None
        x0, y0, x1, y1 = self.box
        pts = (np.asarray(landmarks, np.float64) - [x0, y0]) * [size / (x1 - x0), size / (y1 - y0)]
        return region_masks(pts, size)

    def crop(self, gray: np.ndarray, size: int) -> np.ndarray:
        from microexp.preprocess.align import extract, identity

        assert self.box is not None
        return extract(gray, identity(), self.box, (size, size)).astype(np.uint8)


def region_motion(f: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean flow magnitude inside each region mask."""
    mag = np.hypot(f[..., 0], f[..., 1])
    return np.array([mag[m].mean() for m in masks], np.float32)


# --------------------------------------------------------------------------------------------------- features
@dataclass
class VideoFeatures:
    """Per-frame features of one video for one or more window lengths k.

    Position t (0-based, frame number ``numbers[t]``): ``head[k][t]`` = block magnitudes of flow(t - k -> t),
    ``span[k][t]`` = of flow(t - k -> t + k) (MDMD's head-to-tail frame), ``maps[k][t]`` = small map of flow(t - k
    -> t); ``regions[k][t]`` = mean flow magnitude of flow(t - k -> t) in each face region of :data:`REGIONS`
    (eyes, brows, mouth: what tells a blink from an expression); ``valid[k][t]`` False where a frame is missing
    (ends, face gaps, crop box changes)."""

    source: str
    fps: float
    numbers: np.ndarray
    ks: tuple[int, ...]
    head: dict[int, np.ndarray]
    span: dict[int, np.ndarray]
    valid: dict[int, np.ndarray]
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    gaps: list[tuple[int, int, str]] = field(default_factory=list)  # (first frame, last frame, reason)
    regions: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.numbers)


def extract_features(source: str | Path, ks: tuple[int, ...], fps: float, config: FeatureConfig | None = None,
                     progress: Callable[[int], None] | None = None) -> VideoFeatures:
    """Stream ``source`` once and compute the features for every k in ``ks``; ``progress(frames done)`` after every
    frame."""
    config = config or FeatureConfig()
    config.validate()
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ConfigError(f"window lengths {ks}: need at least one k >= 1")
    kmax = ks[-1]
    g2 = config.grid * config.grid
    tracker = _FaceCrop(config, fps)
    ring: deque[tuple[np.ndarray | None, int]] = deque(maxlen=2 * kmax + 1)  # (crop or None, box id)
    numbers: list[int] = []
    head: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    span: dict[int, dict[int, np.ndarray]] = {k: {} for k in ks}
    maps: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    regions: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    zreg = np.zeros(len(REGIONS), np.float32)
    ok_head: dict[int, list[bool]] = {k: [] for k in ks}
    zero = np.zeros(g2, np.float32)
    zmap = np.zeros((2, config.flow_size, config.flow_size), np.float16)
    face_ok: list[bool] = []
    for i, (number, gray) in enumerate(iter_frames(source)):
        numbers.append(number)
        has = tracker.update(gray)
        face_ok.append(has)
        ring.append((tracker.crop(gray, config.crop) if has else None, tracker.box_id))
        cur, cur_id = ring[-1]
        for k in ks:
            ok = cur is not None and len(ring) > k and ring[-1 - k][0] is not None and ring[-1 - k][1] == cur_id
            if ok:
                assert cur is not None
                prev = ring[-1 - k][0]
                assert prev is not None
                f = flow(prev, cur)
                head[k].append(main_direction(f, config.grid))
                assert tracker.masks is not None
                regions[k].append(region_motion(f, tracker.masks))
                if config.keep_maps:
                    maps[k].append(small_map(f, config.flow_size))
            else:
                head[k].append(zero)
                regions[k].append(zreg)
                if config.keep_maps:
                    maps[k].append(zmap)
            ok_head[k].append(ok)
            # MDMD: head frame i - 2k, current frame i - k, tail frame i
            if (len(ring) > 2 * k and cur is not None and ring[-1 - 2 * k][0] is not None
                    and ring[-1 - 2 * k][1] == cur_id):
                first = ring[-1 - 2 * k][0]
                assert first is not None
                span[k][i - k] = main_direction(flow(first, cur), config.grid)
        if progress is not None:
            progress(i + 1)
    n = len(numbers)
    out_span, valid = {}, {}
    for k in ks:
        s = np.zeros((n, g2), np.float32)
        v = np.array(ok_head[k], bool)
        has_span = np.zeros(n, bool)
        for t, val in span[k].items():
            s[t] = val
            has_span[t] = True
        out_span[k] = s
        valid[k] = v & has_span
    gaps = []
    fo = np.array(face_ok, bool)
    t = 0
    while t < n:
        if not fo[t]:
            u = t
            while u + 1 < n and not fo[u + 1]:
                u += 1
            gaps.append((numbers[t], numbers[u], "no face detected"))
            t = u + 1
        else:
            t += 1
    return VideoFeatures(str(source), fps, np.array(numbers, np.int64), ks,
                         {k: np.stack(head[k]) if n else np.zeros((0, g2), np.float32) for k in ks}, out_span, valid,
                         {k: np.stack(maps[k]) for k in ks} if config.keep_maps and n else {}, gaps,
                         {k: np.stack(regions[k]) if n else np.zeros((0, len(REGIONS)), np.float32) for k in ks})
