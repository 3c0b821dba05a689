"""Spotting speed: frames per second of the whole streamed path (decode, dlib face detection every 0.5 s, face
crop, DIS flow for the micro and macro windows, MDMD scores) on a synthetic 640x480 video at 30 and at 200 fps.

``python -m microexp.bench.spotting [--seconds S]`` prints one line per frame rate; :func:`bench_spotting` returns
the figures (for ``microexp bench``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# SAMM-LV / CAS(ME)^2 window lengths of the field (half the typical expression length), per frame rate
KS = {30.0: (6, 19), 200.0: (35, 225)}


def _video(path: Path, fps: float, n: int, size: tuple[int, int], seed: int = 0) -> None:
    from microexp.synth.longvideo import LongVideo, LongVideoConfig, render_video

    rows, cols = size
    config = LongVideoConfig(n_subjects=1, n_frames=n, fps=fps, size=rows, micro_per_video=0, macro_per_video=0,
                             seed=seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (cols, rows), True)
    pad = (cols - rows) // 2

    def write(_: int, frame: np.ndarray) -> None:
        canvas = np.full((rows, cols), 90, np.uint8)
        canvas[:, pad:pad + rows] = frame
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))

    render_video(LongVideo(0, 0, n, fps, [], seed), config, write)
    writer.release()


def bench_spotting(seconds: float = 10.0, fps_list: tuple[float, ...] = (30.0, 200.0),
                   size: tuple[int, int] = (480, 640)) -> list[dict[str, Any]]:
    from microexp.spot.features import FeatureConfig, extract_features
    from microexp.spot.methods import mdmd_curve

    out = []
    with tempfile.TemporaryDirectory(prefix="microexp-spot-bench-") as tmp:
        for fps in fps_list:
            ks = KS.get(fps, (max(2, round(0.2 * fps)), max(3, round(0.75 * fps))))
            n = max(int(round(seconds * fps)), 2 * max(ks) + 2)
            path = Path(tmp) / f"bench_{fps:g}.avi"
            _video(path, fps, n, size)
            extract_features(path, (2,), fps, FeatureConfig())  # warm-up: dlib model load, first detection
            start = time.perf_counter()
            feats = extract_features(path, ks, fps, FeatureConfig(keep_maps=False))
            for k in ks:
                mdmd_curve(feats, k)
            seconds_taken = time.perf_counter() - start
            out.append({"fps": fps, "frames": n, "size": f"{size[1]}x{size[0]}", "ks": list(ks),
                        "seconds": seconds_taken, "frames_per_s": n / seconds_taken,
                        "real_time_factor": n / seconds_taken / fps})
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m microexp.bench.spotting", description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0, help="video length in seconds (default 10)")
    args = p.parse_args(argv)
    for r in bench_spotting(args.seconds):
        print(f"spotting {r['size']} at {r['fps']:g} fps (k {r['ks']}): {r['frames_per_s']:.1f} frames/s "
              f"({r['real_time_factor']:.2f}x real time; {r['frames']} frames in {r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
