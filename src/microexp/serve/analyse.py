"""One analysis job, run in its own process: predict a video or frame folder with a run, spot it with a spotting run
when one is chosen, and prepare the video for the page; explain one interval when the page asks.

Built on the public API only: ``microexp.load(run).predict(...)`` (exactly what ``microexp predict`` runs, so
the JSON and CSV offered for download are byte for byte what ``microexp predict --json`` / ``--csv`` print for the
same input), ``Spotter.spot`` (what ``microexp spot`` runs) and :func:`microexp.explain.explain_window`. An upload
lies in the job's ``input`` folder under the user's file name and the job runs there, so results and error
messages name the input as the user gave it, as the command line run beside the file would.

Files written to the job folder:

* ``progress.json`` (phase, fraction), ``status.json`` (done / failed with one line);
* ``result/result.json``, ``result/result.csv``; ``result/view.json`` (what the page shows first, and notes);
  ``result/video.webm`` (the frames re-encoded as VP8, which every browser plays, whatever the uploaded codec
  was, encoded while the analysis runs);
* with a spotting run: ``result/spots.json`` / ``result/spots.csv`` (what ``microexp spot VIDEO --run SPOT_RUN
  --recognise RUN [--face F] --json`` / ``--csv`` print) and ``result/spot-intervals.json`` (each spot with its
  place in the video, for the timeline);
* on request (:func:`explain_job`): ``result/saliency-{kind}-N.png`` / ``.gif`` / ``.json``.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# imported once by the forkserver the jobs fork from (seconds per job on a busy machine; errors are ignored)
PRELOAD = ["microexp.serve.analyse", "microexp.predict", "microexp.spot.api", "microexp.explain.saliency",
           "microexp.models", "matplotlib.pyplot", "imageio.v2", "av"]
VIDEO_WIDTH = 320  # the page's player: a preview; VP8 at full size costs more than the analysis itself
# the phases of a job and the share of the bar each one fills (spotting only with a spotting run)
PHASES = {"loading the model": (0.0, 0.03), "classifying windows": (0.03, 0.6), "spotting": (0.6, 0.95),
          "finishing the video": (0.95, 1.0)}


class Progress:
    """Writes ``progress.json`` atomically, so the server never reads half a file; at most ten times a second
    within a phase."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / "progress.json"
        self._last = ("", 0.0)
        self.video = ""  # the video's own progress, shown beside the phase

    def __call__(self, phase: str, fraction: float = 0.0, detail: str = "") -> None:
        now = time.monotonic()
        if phase == self._last[0] and now - self._last[1] < 0.1 and fraction < 1:
            return
        self._last = (phase, now)
        low, high = PHASES.get(phase, (fraction, fraction))
        text = phase + (f" {detail}" if detail else "") + (f"; video {self.video}" if self.video else "")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"phase": text, "progress": max(0.0, min(1.0, low + (high - low) * fraction))}))
        os.replace(tmp, self.path)

    def frames(self, phase: str) -> Callable[[int, int | None], None]:
        """A ``progress_callback`` for :meth:`Predictor.predict`: frames read of the frames expected."""
        def update(done: int, total: int | None) -> None:
            self(phase, done / total if total else 0.0, f"{done}/{total}" if total else f"{done} frames")
        return update


def run_job(spec: dict[str, Any]) -> None:
    """Process entry point. Never raises: the outcome goes to ``status.json``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it stops this process itself
    job_dir = Path(spec["dir"])
    work = job_dir / "work"
    work.mkdir(exist_ok=True)
    tempfile.tempdir = str(work)  # the decoder's temporary frames stay inside the job's folder
    status: dict[str, Any]
    try:
        from microexp.errors import MicroexpError

        try:
            source = given(Path(spec["input"]), spec["uploaded"])
            summary = analyse(source, Path(spec["run"]), job_dir / "result", Progress(job_dir),
                              spec.get("options") or {})
            status = {"state": "done", "message": summary}
        except MicroexpError as exc:  # names the input as given: the upload runs under the user's file name
            status = {"state": "failed", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the page shows one line; the server keeps serving
        status = {"state": "failed", "message": f"analysis failed: {type(exc).__name__}: {exc}"}
    (job_dir / "status.json").write_text(json.dumps(status))


def given(path: Path, uploaded: bool) -> str:
    """The input as the command line names it: an upload by its file name (this process then runs in the upload's
    folder), a frame folder by the path the user gave."""
    if uploaded:
        os.chdir(path.parent)
        return path.name
    return str(path)


def analyse(source: str, run_dir: Path, out: Path, progress: Progress, options: dict[str, Any]) -> str:
    """The job's work on ``source`` (see :func:`given`); returns the one-line summary the page shows."""
    import microexp

    out.mkdir(parents=True, exist_ok=True)
    progress("loading the model")
    predictor = microexp.load(run_dir, face=options.get("face"))
    spotter = None
    if options.get("spot_run_dir"):
        from microexp.spot.api import Spotter

        spotter = Spotter.load(options["spot_run_dir"])  # before the long part: a wrong run fails at once
    video = VideoWriter(source, out / "video.webm", progress)
    folder = Path(source).is_dir()
    try:
        if not folder:
            video.start(None)  # alongside the analysis: a video file states its rate
        result = predictor.predict(source, window=options.get("window"), stride=options.get("stride"),
                                   progress_callback=progress.frames("classifying windows"))
        if folder:
            video.start(result.fps)  # a frame folder's rate is the one predict chose
        (out / "result.json").write_text(result.to_json() + "\n")
        (out / "result.csv").write_text(result.to_csv())
        spotted = None
        if spotter is not None:
            progress("spotting")
            frames, n = progress.frames("spotting"), result.n_frames  # the stream's length, known from predict
            spotted = spot_video(spotter, source, predictor, out, options,
                                 progress_callback=lambda done, _total: frames(done, n))
        video.finish()
    finally:
        video.stop()
    view = page_view(result, spotted)
    (out / "view.json").write_text(json.dumps(view, indent=1))
    progress("finishing the video", 1.0)
    summary = (f"{len(result.windows)} window(s), {len(result.segments)} interval(s), {len(result.gaps)} gap(s) "
               f"in {result.n_frames} frames at {result.fps:g} fps")
    if spotted is not None:
        kinds = [s.type for s in spotted.spots]
        summary += f"; spotting run {options['spot_run']}: " + ", ".join(
            f"{kinds.count(t)} {t}" for t in dict.fromkeys([*("micro", "macro"), *kinds])) + " interval(s)"
    return summary


def page_view(result: Any, spotted: Any) -> dict[str, Any]:
    """What the page shows first: with a spotting run the spotted intervals (the per-window probabilities are a
    strip beneath), without one the recognition run's intervals; and the notes the page must say."""
    notes = []
    neutral = any(c.lower() in ("neutral", "none", "others") for c in result.classes)
    if spotted is None and not neutral and result.n_frames > result.window and result.task != "au":
        notes.append(f"this run's model has no neutral class ({'/'.join(result.classes)}): it labels every "
                     "window with one of them, so the intervals below are not detections; choose a spotting run "
                     "to find where expressions are")
    return {"main": "spots" if spotted is not None else "intervals", "notes": notes}


def spot_video(spotter: Any, source: str, predictor: Any, out: Path, options: dict[str, Any],
               progress_callback: Callable[[int, int | None], None] | None = None) -> Any:
    """The spotting run on the input, as ``microexp spot`` reads it, each spot classified by the recognition
    run; writes spots.json / spots.csv and spot-intervals.json (each spot's place in the video)."""
    result = spotter.spot(source, recognise=predictor, face=options.get("face"), progress_callback=progress_callback)
    (out / "spots.json").write_text(result.to_json() + "\n")  # print() ends the CLI's output with a newline
    (out / "spots.csv").write_text(result.to_csv())
    position = frame_positions(Path(source))
    placed = []
    for i, s in enumerate(result.spots):
        first, last = position(s.onset), position(s.offset)
        placed.append({"index": i, "type": s.type, "onset": s.onset, "offset": s.offset, "score": s.score,
                       "emotion": s.emotion, "aus": s.aus, "first": first, "last": last,
                       "start_time": first / result.fps, "end_time": (last + 1) / result.fps})
    (out / "spot-intervals.json").write_text(json.dumps({"run": options.get("spot_run"), "fps": result.fps,
                                                         "spots": placed}, indent=1))
    return result


def frame_positions(path: Path) -> Callable[[int], int]:
    """Frame number (as spotting names frames: a folder's file numbers, a video's from 1) to position in the
    input (0-based, as predict counts)."""
    if path.is_dir():
        from microexp.data.frames import list_frames

        index = {n: i for i, n in enumerate(list_frames(path)[1])}
        return lambda n: index.get(n, n)
    return lambda n: n - 1


class VideoWriter:
    """The input re-encoded as a small VP8 WebM for the page's player, in a thread of its own while the analysis
    runs (PyAV's libvpx; nothing written without it: the page then says the browser cannot play the video, and
    the analysis stands)."""

    def __init__(self, source: str, out: Path, progress: Progress) -> None:
        self.source, self.out, self.progress = source, out, progress
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def start(self, fps: float | None) -> None:
        self._thread = threading.Thread(target=self._run, args=(fps,), name="microexp-video", daemon=True)
        self._thread.start()

    def _run(self, fps: float | None) -> None:
        try:
            self._encode(fps)
        except Exception as exc:  # noqa: BLE001 - no video is not a failed analysis
            self.error = exc
            self.out.unlink(missing_ok=True)

    def _encode(self, fps: float | None) -> None:
        from fractions import Fraction

        import cv2
        import numpy as np

        from microexp.predict import DEFAULT_FPS, open_stream

        try:
            import av
        except ImportError:
            return
        stream = open_stream(self.source)
        total = len(stream.paths) if stream.paths is not None else stream.declared
        fps = fps or stream.fps or DEFAULT_FPS  # as predict reads a video's rate
        try:
            with av.open(str(self.out), "w", format="webm") as container:
                video = None
                for i, img in enumerate(stream):
                    if self._stop.is_set():
                        break
                    if video is None:
                        h, w = img.shape[:2]
                        scale = min(1.0, VIDEO_WIDTH / w)
                        size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))  # 4:2:0: even
                        video = container.add_stream("libvpx", rate=Fraction(fps).limit_denominator(1001),
                                                     # libvpx's fastest setting, one thread: a sixth of
                                                     # cpu-used 8's time; the analysis keeps the other core
                                                     options={"deadline": "realtime", "cpu-used": "16",
                                                              "threads": "1", "lag-in-frames": "0"})
                        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
                        video.bit_rate = 1_000_000
                    if img.ndim == 2:
                        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
                    if img.shape[1::-1] != size:
                        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                    container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img),
                                                                          format="bgr24")))
                    if total:
                        self.progress.video = f"{100 * (i + 1) // total}%"
                if video is not None:
                    container.mux(video.encode(None))
        finally:
            stream.close()

    def finish(self) -> None:
        """Wait for the video, showing its progress."""
        while self._thread is not None and self._thread.is_alive():
            self.progress("finishing the video", 0.0)
            self._thread.join(0.2)
        self.progress.video = ""

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ----------------------------------------------------------------------------------------- saliency on request
def explain_job(spec: dict[str, Any]) -> None:
    """Process entry point: the saliency of one interval of a finished job, written next to its results as
    ``saliency-{kind}-{index}.png`` / ``.gif`` and ``.json`` (the entry the page shows; its ``note`` says why
    there is no figure). kind ``interval``: a segment of predict's result, explained on the window that gave its
    class the highest probability; ``spot``: a spotted interval, explained on its own frames for the class the
    recognition run gives them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = Path(spec["result"])
    kind, index = spec["kind"], int(spec["index"])
    tempfile.tempdir = spec["work"]
    entry: dict[str, Any] = {"kind": kind, "index": index, "figure": None, "gif": None, "note": ""}
    try:
        entry.update(_explain(given(Path(spec["input"]), spec["uploaded"]), Path(spec["run"]), out, kind, index,
                              spec.get("face"), f"saliency-{kind}-{index}"))
    except Exception as exc:  # noqa: BLE001 - a model without gradients etc.: the interval stays, with a note
        entry["note"] = f"no saliency: {exc}"
    tmp = out / f".saliency-{kind}-{index}.tmp"
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, out / f"saliency-{kind}-{index}.json")


def _explain(source: str, run_dir: Path, out: Path, kind: str, index: int, face: str | None,
             stem: str) -> dict[str, Any]:
    import microexp
    from microexp.explain import explain_window

    result = json.loads((out / "result.json").read_text())
    if result.get("task") == "au":  # fold models with different AU sets: no one class to explain
        raise ValueError("saliency explains a recognition run's class; this is an AU-detection run")
    predictor = microexp.load(run_dir, face=face)
    if kind == "interval":
        seg = result["segments"][index]
        label = seg["label"]
        covering = [w for w in result["windows"] if w["start_frame"] <= seg["end_frame"]
                    and w["end_frame"] >= seg["start_frame"]]
        best = max(covering, key=lambda w: w["probabilities"][label])
        first, last = best["start_frame"], best["end_frame"]
    else:
        spot = json.loads((out / "spot-intervals.json").read_text())["spots"][index]
        first, last, label = spot["first"], spot["last"], None
    ring, record, frames = window_frames(source, first, last + 1, result["fps"])
    try:
        if label is None:  # the class the recognition run gives the spot's frames, as `microexp spot` asks it
            label = predictor.predict(frames, window=len(frames), stride=len(frames), fps=result["fps"]
                                      ).windows[0].label
        title = f"{result['source']}: frames {first}-{last} | {label}"
        files = explain_window([c.path for c in predictor.checkpoints], record, result["classes"].index(label),
                               out / stem, title, preprocess=predictor.preprocess.to_dict())
    finally:
        ring.close()
    return {"label": label, "window": [first, last], "figure": files[0].name, "gif": files[1].name}


def window_frames(source: str, start: int, stop: int, fps: float) -> tuple[Any, Any, list[Any]]:
    """Positions ``start`` .. ``stop - 1`` of the input (read as predict reads it) as a clip record of frame files
    (held by the returned ring until it is closed) and as arrays."""
    from microexp.predict import FrameRing, open_stream

    ring = FrameRing(stop - start)
    frames = []
    stream = open_stream(source)
    try:
        for pos, img in enumerate(stream):
            if pos >= stop:
                break
            if pos >= start:
                ring.push(pos, img)
                frames.append(img[..., ::-1] if img.ndim == 3 else img)  # arrays are given as RGB
    finally:
        stream.close()
    if len(frames) != stop - start:
        ring.close()
        raise ValueError(f"frames {start}-{stop - 1} are not in {source}")
    return ring, ring.record(start, stop, fps, source), frames
