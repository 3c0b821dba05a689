"""Streaming prediction benchmark: frames per second end to end (decode, face detection and tracking, each
window's preprocessing, a full-size STCNN) on a 640x480 30 fps video of a real face.

The video is made from scikit-image's astronaut photograph (:func:`microexp.bench.preprocess.cropped_face`),
placed on a 640x480 frame with a slow head drift and sensor noise, and written as MPEG-4 before the clock starts.
The model is an untrained STCNN (64x64 face crops, 96 frames: Reddy et al.'s input) behind the same predictor
loop as a trained run; untrained weights cost the same time. ``microexp bench`` calls :func:`stream_fps`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexp.predict.predictor import Predictor
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.face import get_backend

WIDTH, HEIGHT, FPS = 640, 480, 30.0
WINDOW_S = 0.5  # window: half a second (a micro-expression lasts under 0.5 s), stride a quarter of it


def write_face_video(path: Path, seconds: float, seed: int = 0) -> int:
    """A 640x480 30 fps MPEG-4 video of a real face drifting slowly (a few pixels) with sensor noise; returns
    the number of frames written."""
    from microexp.bench.preprocess import cropped_face

    rng = np.random.default_rng(seed)
    face = cropped_face("astronaut", (280, 240))
    canvas = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MPEG-4 video here")
    n = int(round(seconds * FPS))
    try:
        for t in range(n):
            dx, dy = 6 * np.sin(t / 40.0), 3 * np.sin(t / 55.0)
            m = np.float32([[1, 0, 200 + dx], [0, 1, 100 + dy]])
            frame = cv2.warpAffine(face, m, (WIDTH, HEIGHT), dst=canvas.copy(), borderMode=cv2.BORDER_TRANSPARENT)
            frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
            writer.write(frame)
    finally:
        writer.release()
    return n


class _StcnnPredictor(Predictor):
    """An untrained full-size STCNN behind the predictor loop (the speed of a trained one)."""

    def __init__(self, seed: int = 0) -> None:
        import torch

        from microexp.models import registry
        from microexp.predict.ensemble import member_class

        spec = registry.get("stcnn")
        preprocess = PreprocessConfig.from_dict({**spec.preprocess.to_dict(), "face": "dlib", "align": "onset"})
        super().__init__(preprocess, ["negative", "positive", "surprise"], {"seconds": WINDOW_S, "fps": FPS},
                         ["stcnn (untrained)"])
        torch.manual_seed(seed)
        model = spec.build(len(self.classes), preprocess)
        self.member = member_class()(model, self.streams, None).eval()

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(inputs["clip"], dtype=np.float32))
        with torch.no_grad():
            return np.concatenate([self.member(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


def stream_fps(quick: bool = False, batch_size: int = 8, seed: int = 0) -> dict[str, Any]:
    """Frames/s of ``predict`` on a 640x480 30 fps face video (2 s quick, 10 s otherwise), end to end: decoding,
    face detection once and tracking, preprocessing of every window as the run's, a full-size STCNN on batches
    of windows. ``realtime``: frames/s over the video's 30 fps (>= 1: keeps up with a camera). ``cpu_seconds``:
    this process's CPU time for it (on a loaded machine, wall time says little; see ``load_1min``)."""
    seconds = 2.0 if quick else 10.0
    predictor = _StcnnPredictor(seed)
    with tempfile.TemporaryDirectory(prefix="microexp-bench-stream-") as tmp:
        video = Path(tmp) / "face-640x480-30fps.mp4"
        n = write_face_video(video, seconds, seed)
        # loading dlib's models and the model's first call are start-up costs, not per-frame ones
        get_backend()
        predictor.probabilities({"clip": np.zeros((1, *predictor.preprocess.stream_shape("clip")), np.float32)})
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        t0, c0 = time.perf_counter(), time.process_time()
        result = predictor.predict(video, batch_size=batch_size)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = predictor.stream_stats
    fps = n / elapsed
    return {"video": f"{WIDTH}x{HEIGHT} @ {FPS:g} fps, {seconds:g} s", "frames": n, "seconds": round(elapsed, 2),
            "cpu_seconds": round(cpu, 2),
            "frames_per_s": round(fps, 1), "realtime": round(fps / FPS, 2), "model": "stcnn 64x64x96 (untrained)",
            "window": result.window, "stride": result.stride, "windows": len(result.windows),
            "gaps": len(result.gaps), "batch_size": batch_size, "face_detections": stats["face_detections"],
            "face_lookups_missed": stats["face_lookups_missed"],
            "peak_frames_held": stats["peak_frames"], "peak_windows_held": stats["peak_windows"],
            "cpus": os.cpu_count(), "load_1min": round(load, 2) if load is not None else None}
