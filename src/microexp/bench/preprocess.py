"""Preprocessing benchmark on a CASME II-sized tree built from the real faces shipped in installed packages
(scikit-image's astronaut, matplotlib's grace_hopper): 255 clips of cropped-like face frames, preprocessed with
face detection + alignment to 64x64. ``microexp bench`` calls :func:`bench_preprocess`."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexp.preprocess.config import PreprocessConfig, StreamConfig


@lru_cache(maxsize=1)
def sample_faces() -> dict[str, np.ndarray]:
    """The two real face photographs as RGB uint8: ``astronaut`` (512x512) and ``grace_hopper`` (600x512).
    Cached: treat the arrays as read-only."""
    import skimage.data
    from matplotlib.cbook import get_sample_data

    with get_sample_data("grace_hopper.jpg") as f:
        grace = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    faces = {"astronaut": np.ascontiguousarray(skimage.data.astronaut()), "grace_hopper": np.ascontiguousarray(grace)}
    for img in faces.values():
        img.flags.writeable = False
    return faces


# A CASME II "cropped"-like framing of each photograph: (x0, y0, x1, y1), face with a small margin.
CROPS = {"astronaut": (150, 50, 300, 210), "grace_hopper": (130, 100, 400, 380)}


def cropped_face(name: str, size: tuple[int, int] = (280, 240)) -> np.ndarray:
    """A face photograph cropped like CASME II's cropped frames and resized to (rows, cols), BGR uint8."""
    x0, y0, x1, y1 = CROPS[name]
    img = sample_faces()[name][y0:y1, x0:x1, ::-1]
    return cv2.resize(np.ascontiguousarray(img), (size[1], size[0]), interpolation=cv2.INTER_AREA)


def write_face_tree(root: Path, n_clips: int = 255, min_frames: int = 40, max_frames: int = 96, seed: int = 0,
                    size: tuple[int, int] = (280, 240), n_subjects: int = 26) -> int:
    """Write a plain-layout tree (``ROOT/<subject>/<clip>/img<n>.jpg`` + ``annotations.csv``) of face clips
    with sub-pixel head jitter and sensor noise; returns the number of frames written."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    bases = [cropped_face(n, size).astype(np.float32) for n in CROPS]
    pool: list[list[bytes]] = []
    for base in bases:  # a pool of distinct encoded frames per face keeps building the tree fast
        enc = []
        for _ in range(24):
            dx, dy = rng.uniform(-1.5, 1.5, 2)
            m = cv2.getRotationMatrix2D((size[1] / 2, size[0] / 2), float(rng.uniform(-1, 1)), 1.0)
            m[:, 2] += (dx, dy)
            img = cv2.warpAffine(base, m, (size[1], size[0]), borderMode=cv2.BORDER_REFLECT)
            img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
            enc.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        pool.append(enc)
    rows = []
    total = 0
    for c in range(n_clips):
        subject = f"sub{c % n_subjects + 1:02d}"
        clip = f"EP{c:03d}"
        n = int(rng.integers(min_frames, max_frames + 1))
        folder = root / subject / clip
        folder.mkdir(parents=True, exist_ok=True)
        enc = pool[c % len(pool)]
        start = int(rng.integers(0, len(enc)))
        for k in range(n):
            (folder / f"img{k + 1}.jpg").write_bytes(enc[(start + k) % len(enc)])
        total += n
        rows.append({"subject": subject, "clip": clip, "emotion": ("happiness", "disgust", "surprise")[c % 3],
                     "onset": 1, "apex": n // 2, "offset": n})
    with open(root / "annotations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return total


def bench_config(size: int = 64, frames: int = 96) -> PreprocessConfig:
    """Face detection on the onset frame, similarity alignment, 64x64 face crop, every source frame read."""
    return PreprocessConfig(streams=(StreamConfig("clip", "face", (size, size)),), frames=frames,
                            selection="onset_offset", temporal="uniform", face="dlib", align="onset")


def bench_preprocess(n_clips: int = 255, workers: int | None = None, size: int = 64,
                     config: PreprocessConfig | None = None, root: str | Path | None = None,
                     seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Build the tree in a temporary folder (or ``root``), preprocess it with an empty cache, then again from
    the cache. Returns clips, frames, seconds, frames_per_s, cached_seconds, excluded, workers."""
    from microexp.data.registry import load_dataset
    from microexp.preprocess.pipeline import preprocess_set

    config = config or bench_config(size)
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="microexp-bench-") as tmp:
        tree = Path(root) if root else Path(tmp) / "tree"
        n_frames = write_face_tree(tree, n_clips=n_clips, seed=seed)
        clips = load_dataset("plain", tree)
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        prepared = preprocess_set(clips, config, progress=progress, cache=cache, workers=workers)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        preprocess_set(clips, config, progress=False, cache=cache, workers=workers)
        cached = time.perf_counter() - t1
    return {"clips": n_clips, "frames": n_frames, "seconds": round(seconds, 2),
            "frames_per_s": round(n_frames / seconds, 1), "cached_seconds": round(cached, 3),
            "excluded": len(prepared.excluded), "workers": workers, "output": list(prepared.streams["clip"].shape)}
