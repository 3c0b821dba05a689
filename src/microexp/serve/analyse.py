"""One analysis job, run in its own process: predict a video or frame folder with a run, explain each interval.

Built on the public API only: ``microexp.load(run).predict(...)`` (exactly what ``microexp predict`` runs, so
the JSON and CSV offered for download are byte for byte what ``microexp predict --json`` / ``--csv`` print for the
same input) and :mod:`microexp.explain` for the saliency of each interval. Files written to the job folder:

* ``progress.json`` (phase, fraction), ``status.json`` (done / failed with one line);
* ``result/result.json``, ``result/result.csv``; ``result/intervals.json`` (per segment: the window explained and
  its figure); ``result/saliency-N.png`` / ``.gif``; ``result/video.webm`` (the frames re-encoded as VP8, which
  every browser plays, whatever the uploaded codec was);
* with a spotting run: ``result/spots.json`` / ``result/spots.csv`` (what ``microexp spot VIDEO --run SPOT_RUN
  --recognise RUN [--face F] --json`` / ``--csv`` print) and ``result/spot-intervals.json`` (each spot with its
  place in the video, for the timeline).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

# imported once by the forkserver the jobs fork from (seconds per job on a busy machine; errors are ignored)
PRELOAD = ["microexp.serve.analyse", "microexp.predict", "microexp.spot.api", "microexp.explain.saliency", "microexp.train.evaluate",
           "microexp.models", "matplotlib.pyplot", "imageio.v2", "av"]
MAX_EXPLAINED = 40  # saliency figures per job: the longest videos have hundreds of segments


class Progress:
    """Writes ``progress.json`` atomically, so the server never reads half a file."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / "progress.json"

    def __call__(self, phase: str, fraction: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"phase": phase, "progress": max(0.0, min(1.0, fraction))}))
        os.replace(tmp, self.path)


class _TqdmProgress:
    """Stands in for stderr while ``predict(progress=True)`` runs: its tqdm bar's ``k/n`` becomes progress."""

    PATTERN = re.compile(r"(\d+)/(\d+)")

    def __init__(self, progress: Progress, phase: str, low: float, high: float) -> None:
        self.progress, self.phase, self.low, self.high = progress, phase, low, high

    def write(self, text: str) -> int:
        found = self.PATTERN.findall(text)
        if found:
            done, total = map(int, found[-1])
            if total:
                self.progress(f"{self.phase} {done}/{total}", self.low + (self.high - self.low) * done / total)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def run_job(spec: dict[str, Any]) -> None:
    """Process entry point. Never raises: the outcome goes to ``status.json``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops this process itself
    job_dir = Path(spec["dir"])
    work = job_dir / "work"
    work.mkdir(exist_ok=True)
    tempfile.tempdir = str(work)  # the decoder's temporary frames stay inside the job's folder
    from tqdm import tqdm

    # a thread lock for predict's progress bar: tqdm's default takes a multiprocessing semaphore, which a
    # cancelled (terminated) job would leave behind for the resource tracker to warn about
    tqdm.set_lock(threading.RLock())
    status: dict[str, Any]
    try:
        from microexp.errors import MicroexpError

        try:
            summary = analyse(Path(spec["input"]), spec["name"], Path(spec["run"]), job_dir / "result",
                              Progress(job_dir), spec.get("options") or {})
            status = {"state": "done", "message": summary}
        except MicroexpError as exc:
            # the page names the user's file, not the server's temporary copies of it
            message = re.sub(re.escape(str(work)) + r"/(microexp-predict-[^:/\s]+|spot/[^:/\s]+)", spec["name"],
                             str(exc))
            status = {"state": "failed", "message": message.replace(str(spec["input"]), spec["name"])}
    except Exception as exc:  # noqa: BLE001 - the page shows one line; the server keeps serving
        status = {"state": "failed", "message": f"analysis failed: {type(exc).__name__}: {exc}"}
    (job_dir / "status.json").write_text(json.dumps(status))


def analyse(path: Path, name: str, run_dir: Path, out: Path, progress: Progress, options: dict[str, Any]) -> str:
    import microexp
    from microexp.predict import open_input

    out.mkdir(parents=True, exist_ok=True)
    progress("loading the model", 0.02)
    predictor = microexp.load(run_dir, face=options.get("face"))
    spotter = None
    if options.get("spot_run_dir"):
        from microexp.spot.api import Spotter

        spotter = Spotter.load(options["spot_run_dir"])  # before the long part: a wrong run fails at once
    if path.is_dir():
        result = _predict(predictor, path, None, progress, options)  # frame rate: the training clips'
        src = open_input(path, fps=result.fps)
    else:
        progress("decoding", 0.05)
        src = open_input(path)  # a video is decoded (checked by decoding, not by its name) into numbered frames
    try:
        if not path.is_dir():
            # the decoded frames at the video's frame rate: the very frames `microexp predict VIDEO` classifies
            result = _predict(predictor, Path(src.frames[0]).parent, src.fps, progress, options)
        result.source = name
        (out / "result.json").write_text(result.to_json() + "\n")
        (out / "result.csv").write_text(result.to_csv())
        intervals = explain_segments(predictor, src, result, out, progress)
        (out / "intervals.json").write_text(json.dumps(intervals, indent=1))
        spotted = None
        if spotter is not None:
            spotted = spot_video(spotter, path, name, predictor, out, progress, options)
        progress("preparing the video for the browser", 0.95)
        write_webm(src.frames, src.fps, out / "video.webm")
    finally:
        src.close()
    progress("done", 1.0)
    summary = (f"{len(result.windows)} window(s), {len(result.segments)} interval(s), {len(result.gaps)} gap(s) "
               f"in {result.n_frames} frames at {result.fps:g} fps")
    if spotted is not None:
        kinds = [s.type for s in spotted.spots]
        summary += (f"; spotting run {options['spot_run']}: {kinds.count('micro')} micro, {kinds.count('macro')} "
                    f"macro interval(s)")
    return summary


def spot_video(spotter: Any, path: Path, name: str, predictor: Any, out: Path, progress: Progress,
               options: dict[str, Any]) -> Any:
    """The spotting run on the input, streamed as ``microexp spot`` reads it, each spot classified by the
    recognition run; writes spots.json / spots.csv and spot-intervals.json (each spot's place in the video)."""
    progress("spotting", 0.9)
    if path.is_dir():
        target = path  # the folder as the user named it: the source the CLI prints too
        from microexp.data.frames import list_frames

        position = {n: i for i, n in enumerate(list_frames(path)[1])}
    else:
        # the upload under the user's file name: the spots' video field (the file's stem) is then the CLI's
        target = path.parent / "work" / "spot" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(path.resolve())
        position = None  # a video file's frames are numbered from 1
    result = spotter.spot(target, recognise=predictor, face=options.get("face"))
    result.source = name  # as `microexp spot NAME` prints it, run beside the file (a folder: the path given)
    (out / "spots.json").write_text(result.to_json() + "\n")  # print() ends the CLI's output with a newline
    (out / "spots.csv").write_text(result.to_csv())
    placed = []
    for i, s in enumerate(result.spots):
        first = position.get(s.onset, s.onset) if position is not None else s.onset - 1
        last = position.get(s.offset, s.offset) if position is not None else s.offset - 1
        placed.append({"index": i, "type": s.type, "onset": s.onset, "offset": s.offset, "score": s.score,
                       "emotion": s.emotion, "start_time": first / result.fps, "end_time": (last + 1) / result.fps})
    (out / "spot-intervals.json").write_text(json.dumps({"run": options.get("spot_run"), "fps": result.fps,
                                                         "spots": placed}, indent=1))
    return result


def _predict(predictor: Any, target: Path, fps: float | None, progress: Progress, options: dict[str, Any]) -> Any:
    progress("classifying windows", 0.15)
    stderr = sys.stderr
    sys.stderr = _TqdmProgress(progress, "classifying windows", 0.15, 0.75)  # type: ignore[assignment]
    try:
        return predictor.predict(target, fps=fps, window=options.get("window"), stride=options.get("stride"),
                                 progress=True)
    finally:
        sys.stderr = stderr


def explain_segments(predictor: Any, src: Any, result: Any, out: Path, progress: Progress) -> list[dict[str, Any]]:
    """Saliency of each segment: the window that gave the segment's class its highest probability, explained
    for that class by every checkpoint of the run (maps averaged, as the predictor averages probabilities)."""
    from microexp.predict import window_record

    intervals: list[dict[str, Any]] = []
    models: dict[Path, Any] = {}
    segments = result.segments[:MAX_EXPLAINED]
    for i, seg in enumerate(segments):
        progress(f"saliency {i + 1}/{len(segments)}", 0.75 + 0.15 * i / max(1, len(segments)))
        covering = [w for w in result.windows if w.start_frame <= seg.end_frame and w.end_frame >= seg.start_frame]
        best = max(covering, key=lambda w: w.probabilities[seg.label])
        entry = {"index": i, "start_frame": seg.start_frame, "end_frame": seg.end_frame, "start_time": seg.start_time,
                 "end_time": seg.end_time, "label": seg.label, "probability": seg.probability,
                 "window": [best.start_frame, best.end_frame], "figure": None, "gif": None, "note": ""}
        record = window_record(src, best.start_frame, best.end_frame + 1)
        title = (f"{result.source}: frames {best.start_frame}-{best.end_frame} | {seg.label} "
                 f"(p={best.probabilities[seg.label]:.2f})")
        try:
            files = saliency_figure(predictor, record, result.classes.index(seg.label), out / f"saliency-{i}", title,
                                    models)
            entry["figure"], entry["gif"] = files[0].name, files[1].name
        except Exception as exc:  # noqa: BLE001 - a model without gradients etc.: the interval stays, with a note
            entry["note"] = f"no saliency: {exc}"
        intervals.append(entry)
    return intervals


def saliency_figure(predictor: Any, record: Any, target: int, out: Path, title: str,
                    models: dict[Path, Any]) -> list[Path]:
    import numpy as np
    from torch import nn

    from microexp.explain.saliency import clip_inputs, grad_cam, load_model, vanilla_saliency, write_figures

    maps: dict[str, Any] = {}
    cams: list[Any] = []
    inputs: dict[str, Any] = {}
    for ckpt in predictor.checkpoints:
        if ckpt.path not in models:
            models[ckpt.path] = load_model(ckpt.path)
        model, data = models[ckpt.path]
        inputs = clip_inputs(record, data)
        m, _ = vanilla_saliency(model, inputs, target)
        for k, v in m.items():
            maps[k] = maps.get(k, 0) + v / len(predictor.checkpoints)
        # as `microexp explain`: Grad-CAM's last Conv3d sits on the input of single-stream models only
        if len(inputs) == 1 and any(isinstance(x, nn.Conv3d) for x in model.modules()):
            cams.append(grad_cam(model, inputs, target)[0])
    cam = np.mean(cams, axis=0) if cams else None
    stream, x = next(iter(inputs.items()))  # the first stream: the figure shows what the model looked at there
    frames = x[0, 0].numpy() if x.shape[1] == 1 else x[0, :2].norm(dim=0).numpy()
    return write_figures(frames, maps[stream], cam, out, title + (f" | stream {stream}" if len(inputs) > 1 else ""),
                         frame_label="frame" if x.shape[1] == 1 else "|flow|")


def write_webm(frames: Any, fps: float, out: Path) -> None:
    """The frames as a VP8 WebM file for the page's video player (PyAV's libvpx; nothing written without it:
    the page then says the browser cannot play the video, and the analysis stands)."""
    from fractions import Fraction

    import cv2
    import numpy as np

    try:
        import av
    except ImportError:
        return
    first = cv2.imread(str(frames[0]), cv2.IMREAD_COLOR)
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2  # 4:2:0 chroma needs even sides
    with av.open(str(out), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = 4_000_000
        for f in frames:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            img = cv2.resize(img, (w, h)) if img.shape[:2] != (h, w) else img
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")))
        container.mux(stream.encode(None))
