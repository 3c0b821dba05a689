"""Classify new videos or frame folders with a trained run, and export its models to ONNX.

A video is decoded (OpenCV, PyAV as fallback) into numbered PNG frames in a temporary folder, cut into sliding
windows, and every window becomes a :class:`~microexp.data.records.ClipRecord` (onset = first frame, apex =
middle, offset = last) that goes through :func:`microexp.preprocess.pipeline.preprocess_clip` with the
checkpoint's own :class:`~microexp.preprocess.config.PreprocessConfig`: training and inference share one code
path, face detection and alignment included. A window that cannot be preprocessed (no face in its reference
frame) is not an error: the frames no classified window covers are reported as :class:`Gap` rows.

    predictor = microexp.load("runs/casme2-stcnn-loso")          # all folds averaged (the default)
    result = predictor.predict("interview.mp4", stride="100ms")
    for w in result.windows: print(w.start_time, w.label, w.probabilities)

Ensembles: a LOSO run holds one checkpoint per fold (and per seed). ``load`` averages the class probabilities
of all of them by default (every fold model saw most subjects; averaging is the least arbitrary choice and is
deterministic); ``fold="sub01"`` (a fold name or a checkpoint file stem) picks one.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from microexp.data.frames import IMAGE_SUFFIXES, list_frames
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, DataError, PreprocessError
from microexp.preprocess.config import PreprocessConfig
from microexp.runtime import tune_allocator

ONNX_OPSET = 17  # legacy TorchScript exporter (the dynamo one needs onnxscript, which is not a dependency)
DEFAULT_FPS = 30.0
PROBABILITIES = "probabilities"


# ---------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Prediction:
    """One classified window: frames ``start_frame..end_frame`` (0-based, inclusive), times in seconds."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    label: str
    probabilities: dict[str, float]

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]


@dataclass(frozen=True)
class Segment:
    """A run of frames where one class dominates (see :func:`merge_segments`)."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    label: str
    probability: float  # mean over the segment's frames of the label's averaged probability


@dataclass(frozen=True)
class Gap:
    """Frames that no classified window covers (no face found, ...), with the reason."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    reason: str


@dataclass
class PredictionResult:
    source: str
    fps: float
    n_frames: int
    window: int
    stride: int
    classes: list[str]
    models: list[str]
    windows: list[Prediction] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[dict[str, Any]]:
        """One row per window (classified) and per gap, in time order: the ``--csv`` table."""
        rows = [{"status": "ok", "start_frame": w.start_frame, "end_frame": w.end_frame,
                 "start_time": round(w.start_time, 4), "end_time": round(w.end_time, 4), "predicted": w.label,
                 **{f"p_{c}": w.probabilities[c] for c in self.classes}, "reason": ""} for w in self.windows]
        rows += [{"status": "gap", "start_frame": g.start_frame, "end_frame": g.end_frame,
                  "start_time": round(g.start_time, 4), "end_time": round(g.end_time, 4), "predicted": "",
                  **{f"p_{c}": "" for c in self.classes}, "reason": g.reason} for g in self.gaps]
        return sorted(rows, key=lambda r: (r["start_frame"], r["status"]))

    def to_csv(self) -> str:
        import pandas as pd

        columns = ["status", "start_frame", "end_frame", "start_time", "end_time", "predicted",
                   *[f"p_{c}" for c in self.classes], "reason"]
        return pd.DataFrame(self.rows(), columns=columns).to_csv(index=False)

    def table(self) -> str:
        """Plain-text report for the terminal."""
        models = ", ".join(self.models) if len(self.models) < 4 else f"mean of {len(self.models)} checkpoints"
        lines = [f"{self.source}: {self.n_frames} frames at {self.fps:g} fps; window {self.window} frames, "
                 f"stride {self.stride}; model {models}"]
        head = f"{'frames':>13} {'time (s)':>15}  {'predicted':<12}" + "".join(f"{c[:10]:>11}" for c in self.classes)
        lines += ["", head, "-" * len(head)]
        for w in self.windows:
            lines.append(f"{w.start_frame:>6}-{w.end_frame:<6} {w.start_time:>7.2f}-{w.end_time:<7.2f}  "
                         f"{w.label:<12}" + "".join(f"{w.probabilities[c]:>11.3f}" for c in self.classes))
        lines += ["", "segments:" if self.segments else "segments: none"]
        for s in self.segments:
            lines.append(f"  frames {s.start_frame}-{s.end_frame} ({s.start_time:.2f}-{s.end_time:.2f} s): "
                         f"{s.label} (p={s.probability:.2f})")
        lines.append("gaps:" if self.gaps else "gaps: none")
        for g in self.gaps:
            lines.append(f"  frames {g.start_frame}-{g.end_frame} ({g.start_time:.2f}-{g.end_time:.2f} s): {g.reason}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ input
@dataclass
class FrameSource:
    """Decoded input: frame files in temporal order, the frame rate, and where they came from."""

    frames: tuple[Path, ...]
    fps: float
    source: str
    _tmp: tempfile.TemporaryDirectory | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless and fast: the frames live only for this prediction


def _frame_path(folder: Path, i: int) -> Path:
    return folder / f"frame_{i:07d}.png"


def _sane_fps(fps: float | None) -> float | None:
    return float(fps) if fps is not None and math.isfinite(fps) and 0 < fps < 10000 else None


def _decode_cv2(path: Path, folder: Path, limit: int | None) -> tuple[int, float | None] | None:
    # quiet ffmpeg's own console lines ("moov atom not found"): the failure is reported once, as our error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return None
    try:
        fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            cv2.imwrite(str(_frame_path(folder, n)), frame, _PNG)
            n += 1
        return n, fps
    finally:
        cap.release()


def _decode_av(path: Path, folder: Path, limit: int | None) -> tuple[int, float | None] | None:
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0, None  # a container without a video stream (e.g. a header-only mp4): zero frames
            stream = container.streams.video[0]
            fps = _sane_fps(float(stream.average_rate)) if stream.average_rate else None
            n = 0
            for frame in container.decode(stream):
                if limit is not None and n >= limit:
                    break
                cv2.imwrite(str(_frame_path(folder, n)), frame.to_ndarray(format="bgr24"), _PNG)
                n += 1
            return n, fps
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def read_video(path: Path, fps: float | None = None, limit: int | None = None) -> FrameSource:
    """Decode a video file into PNG frames in a temporary folder (OpenCV first, PyAV when OpenCV reads
    nothing). Raises DataError naming the file when it cannot be read or has no frames."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a video")
    tmp = tempfile.TemporaryDirectory(prefix="microexp-predict-")
    folder = Path(tmp.name)
    opened = False
    n, found_fps = 0, None
    for decode in (_decode_cv2, _decode_av):
        got = decode(path, folder, limit)
        if got is None:
            continue
        opened = True
        n, found_fps = got
        if n:
            break
    if not n:
        tmp.cleanup()
        if opened:
            raise DataError(f"{path}: video has no frames (zero-length or undecodable stream)")
        raise DataError(f"{path}: cannot read video (not a video file, or a codec neither OpenCV nor PyAV decodes)")
    frames = tuple(_frame_path(folder, i) for i in range(n))
    return FrameSource(frames, fps or found_fps or DEFAULT_FPS, str(path), tmp)


def read_frames(frames: np.ndarray | Sequence[np.ndarray], fps: float | None = None,
                source: str = "<frames>") -> FrameSource:
    """Frames given as arrays (T, H, W) gray or (T, H, W, 3) RGB uint8, written as PNG so that they take the
    same path as a dataset's frame files."""
    if len(frames) == 0:
        raise DataError(f"{source}: no frames given")
    tmp = tempfile.TemporaryDirectory(prefix="microexp-predict-")
    folder = Path(tmp.name)
    paths = []
    for i, f in enumerate(frames):
        img = np.asarray(f)
        if img.dtype != np.uint8:
            if img.max(initial=0) <= 1.0:
                img = img * 255.0
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        elif img.ndim != 2:
            tmp.cleanup()
            raise DataError(f"{source}: frame {i} has shape {img.shape}; expected (H, W) or (H, W, 3)")
        cv2.imwrite(str(_frame_path(folder, i)), img, _PNG)
        paths.append(_frame_path(folder, i))
    return FrameSource(tuple(paths), fps or DEFAULT_FPS, source, tmp)


def open_input(source: str | Path | np.ndarray | Sequence[np.ndarray], fps: float | None = None,
               default_fps: float = DEFAULT_FPS) -> FrameSource:
    """A video file, a folder of numbered frames, or frames as arrays."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_dir():
            frames, _ = list_frames(path)
            if not frames:
                raise DataError(f"{path}: folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return FrameSource(frames, fps or default_fps, str(path))
        src = read_video(path, fps)
        return src
    return read_frames(source, fps or default_fps)


# ---------------------------------------------------------------------------------------------------- windows
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|f|frames?)?\s*$")


def parse_span(value: str | int | float | None, fps: float, name: str = "span") -> int | None:
    """``12`` or ``"12"`` frames, ``"100ms"``, ``"0.5s"`` -> frames at ``fps`` (at least 1)."""
    if value is None:
        return None
    m = _SPAN.match(str(value))
    if not m:
        raise ConfigError(f"--{name} {value!r}: give frames (12), milliseconds (100ms) or seconds (0.5s)")
    number, unit = float(m.group(1)), (m.group(2) or "f")
    frames = number * fps / 1000.0 if unit == "ms" else number * fps if unit == "s" else number
    if unit.startswith("f") and number != int(number):
        raise ConfigError(f"--{name} {value!r}: a frame count must be a whole number")
    return max(1, int(round(frames)))


def min_window(config: PreprocessConfig) -> int:
    """Fewest frames a window must have for the run's temporal normalisation."""
    if config.temporal == "first":
        return config.frames
    if config.temporal == "window" and config.window is not None:
        return int(config.window[1])
    return 2 if any(s.kind != "raw" for s in config.streams) else 1


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Starts of windows of ``window`` frames every ``stride`` frames; the last window ends on the last frame."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def window_record(src: FrameSource, start: int, stop: int) -> ClipRecord:
    """A window as a clip record: onset = first frame, apex = middle, offset = last (0-based frame numbers)."""
    numbers = tuple(range(start, stop))
    return ClipRecord(dataset="predict", subject="input", clip_id=f"frames{start}-{stop - 1}", emotion="unknown",
                      frames=src.frames[start:stop], frame_numbers=numbers, onset=start,
                      apex=start + (stop - start - 1) // 2, offset=stop - 1, fps=src.fps, source=src.source)


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end inclusive) of runs of True."""
    i, n = 0, len(mask)
    while i < n:
        if mask[i]:
            j = i
            while j + 1 < n and mask[j + 1]:
                j += 1
            yield i, j
            i = j + 1
        else:
            i += 1


def merge_segments(windows: Sequence[Prediction], n_frames: int, fps: float, classes: Sequence[str],
                   min_probability: float = 0.5) -> list[Segment]:
    """Each covered frame takes the class probabilities of the window centred nearest to it (ties: the earlier
    window); runs of frames whose top class is the same, at or above ``min_probability``, form segments.

    Nearest-centre rather than an average of all covering windows: a window sees an event best when the event
    sits where the training clips had theirs (onset at the window start, apex in the middle), so overlapping
    windows that catch the event off-centre must not dilute it."""
    if not windows:
        return []
    centres = np.array([(w.start_frame + w.end_frame) / 2 for w in windows])
    probs = np.array([[w.probabilities[c] for c in classes] for w in windows])
    starts = np.array([w.start_frame for w in windows])
    ends = np.array([w.end_frame for w in windows])
    frame_probs = np.zeros((n_frames, len(classes)))
    covered = np.zeros(n_frames, bool)
    for f in range(n_frames):
        inside = np.flatnonzero((starts <= f) & (ends >= f))
        if inside.size:
            best = inside[np.argmin(np.abs(centres[inside] - f))]
            frame_probs[f], covered[f] = probs[best], True
    top, best_p = frame_probs.argmax(1), frame_probs.max(1)
    segments = []
    for k, label in enumerate(classes):
        for a, b in _runs(covered & (top == k) & (best_p >= min_probability)):
            segments.append(Segment(a, b, a / fps, (b + 1) / fps, label, float(best_p[a:b + 1].mean())))
    return sorted(segments, key=lambda s: s.start_frame)


def find_gaps(windows: Sequence[Prediction], failed: Sequence[tuple[int, int, str]], n_frames: int,
              fps: float) -> list[Gap]:
    """Frames no classified window covers, with the reasons of the failed windows overlapping them."""
    covered = np.zeros(n_frames, bool)
    for w in windows:
        covered[w.start_frame:w.end_frame + 1] = True
    gaps = []
    for a, b in _runs(~covered):
        reasons = list(dict.fromkeys(r for s, e, r in failed if s <= b and e >= a))
        gaps.append(Gap(a, b, a / fps, (b + 1) / fps, "; ".join(reasons) or "not covered by any window"))
    return gaps


NO_FACE = "no face detected"


class _FacePresence:
    """Whether a frame shows a face, by the pipeline's own face backend; memoised per frame."""

    def __init__(self, src: FrameSource) -> None:
        self.src = src
        self._seen: dict[int, bool] = {}

    def has_face(self, index: int) -> bool:
        if index not in self._seen:
            from microexp.data.frames import read_frame
            from microexp.preprocess.face import get_backend

            self._seen[index] = get_backend().detect(read_frame(self.src.frames[index], gray=True)) is not None
        return self._seen[index]


# ----------------------------------------------------------------------------------------------------- models
def _torch() -> Any:
    import torch

    return torch


def _member_class() -> type:
    """nn.Module classes are built lazily so that ``import microexp.predict`` does not import torch."""
    global _MEMBER, _ENSEMBLE
    if _MEMBER is None:
        torch = _torch()

        class Member(torch.nn.Module):
            """One checkpoint's model as a probability function of its streams, positional in stream order,
            with the run's fitted global normalisation (if any) folded in."""

            def __init__(self, model: torch.nn.Module, streams: Sequence[str],
                         normaliser: dict[str, dict[str, float]] | None) -> None:
                super().__init__()
                self.model = model.eval()
                self.streams = list(streams)
                self.normaliser = normaliser

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                kw = {}
                for name, x in zip(self.streams, inputs, strict=True):
                    if self.normaliser is not None:
                        x = (x - self.normaliser["mean"][name]) / self.normaliser["scale"][name]
                    kw[name] = x
                return torch.softmax(self.model(**kw).float(), dim=1)

        class Ensemble(torch.nn.Module):
            """Mean class probabilities of several members (the ONNX export of an ensemble)."""

            def __init__(self, members: Sequence[torch.nn.Module]) -> None:
                super().__init__()
                self.members = torch.nn.ModuleList(members)

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                out = self.members[0](*inputs)
                for m in self.members[1:]:
                    out = out + m(*inputs)
                return out / len(self.members)

        _MEMBER, _ENSEMBLE = Member, Ensemble
    return _MEMBER


_MEMBER: type | None = None
_ENSEMBLE: type | None = None


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    name: str  # file stem, e.g. seed0-sub01
    fold: str
    data: dict[str, Any]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    torch = _torch()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint file
        raise DataError(f"{path}: not a readable microexp checkpoint ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("model", "state_dict", "preprocess", "classes") if not isinstance(data, dict) or k not in data]
    if missing:
        raise DataError(f"{path}: not a microexp checkpoint (missing {missing})")
    return data


def find_checkpoints(run_dir: Path, fold: str | None = None) -> list[Checkpoint]:
    """Checkpoints of a run directory; ``fold`` (a fold name or checkpoint file stem) selects some."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise DataError(f"{run_dir}: run directory does not exist")
    if run_dir.is_file() and run_dir.suffix == ".pt":  # one checkpoint file given directly
        stem = run_dir.stem
        return [Checkpoint(run_dir, stem, stem.split("-", 1)[1] if stem.startswith("seed") and "-" in stem else stem,
                           {})]
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a run directory (expected a folder with checkpoints/)")
    paths = sorted((run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
    if not paths and any((run_dir / "checkpoints").glob("*.joblib")):
        raise ConfigError(f"{run_dir}: a scikit-learn baseline run (checkpoints/*.joblib); predict and export "
                          "take the torch models")
    if not paths:
        raise DataError(f"{run_dir}: no checkpoint in this run directory (expected checkpoints/*.pt; "
                        "runs save them unless save_checkpoints is false)")
    found = []
    for p in paths:
        stem = p.stem
        found.append(Checkpoint(p, stem, stem.split("-", 1)[1] if stem.startswith("seed") and "-" in stem else stem,
                                {}))
    if fold is not None:
        chosen = [c for c in found if fold in (c.name, c.fold)]
        if not chosen:
            names = sorted({c.fold for c in found})
            raise ConfigError(f"{run_dir}: no checkpoint for fold {fold!r} (folds: {', '.join(names)})")
        found = chosen
    return found


class Predictor:
    """Classifies windows of frames with one model or an ensemble; :meth:`predict` handles whole inputs.

    Subclasses implement :meth:`probabilities` (PyTorch checkpoints, or an ONNX file)."""

    def __init__(self, preprocess: PreprocessConfig, classes: Sequence[str], clip: dict[str, float] | None,
                 models: Sequence[str]) -> None:
        self.preprocess = preprocess
        self.classes = list(classes)
        self.clip = clip or {}
        self.models = list(models)

    @property
    def streams(self) -> list[str]:
        return [s.name for s in self.preprocess.streams]

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Class probabilities (N, K) of preprocessed windows, streams (N, C, T, H, W)."""
        raise NotImplementedError  # pragma: no cover - implemented by the backends

    def override_face(self, face: str) -> None:
        """Use another face mode than the run's (see :func:`load`); alignment is dropped without landmarks."""
        align = self.preprocess.align if face != "none" else "none"
        self.preprocess = PreprocessConfig.from_dict({**self.preprocess.to_dict(), "face": face, "align": align})

    def default_window(self, fps: float) -> int:
        """The training clips' median duration at this frame rate (their frame count when unknown)."""
        if self.clip.get("seconds"):
            w = int(round(self.clip["seconds"] * fps))
        elif self.clip.get("frames"):
            w = int(round(self.clip["frames"]))
        else:
            w = self.preprocess.frames
        return max(w, min_window(self.preprocess))

    def preprocess_window(self, record: ClipRecord) -> dict[str, np.ndarray]:
        from microexp.preprocess.pipeline import preprocess_clip

        return preprocess_clip(record, self.preprocess)

    def predict(self, source: str | Path | np.ndarray | Sequence[np.ndarray], *, window: str | int | None = None,
                stride: str | int | None = None, fps: float | None = None, min_probability: float = 0.5,
                batch_size: int = 16, progress: bool = False) -> PredictionResult:
        """Classify a video file, a frame folder, or frames (T, H, W[, 3]) in sliding windows.

        window / stride: frames (``24``), milliseconds (``"100ms"``) or seconds (``"0.5s"``); the window defaults
        to the training clips' median duration at the input's frame rate, the stride to a quarter window.
        fps: the input's frame rate (read from the video; for frames, default the training clips' rate).
        """
        src = open_input(source, fps, default_fps=float(self.clip.get("fps") or DEFAULT_FPS))
        try:
            return self._predict(src, window, stride, min_probability, batch_size, progress)
        finally:
            src.close()

    def _predict(self, src: FrameSource, window: str | int | None, stride: str | int | None,
                 min_probability: float, batch_size: int, progress: bool) -> PredictionResult:
        n = len(src)
        need = min_window(self.preprocess)
        w = parse_span(window, src.fps, "window") or self.default_window(src.fps)
        if w < need:
            raise ConfigError(f"--window {w} frames is shorter than the {need} frames this run's preprocessing needs")
        if n < need:
            raise DataError(f"{src.source}: {n} frame(s); this run's preprocessing needs at least {need}")
        w = min(w, n)
        s = parse_span(stride, src.fps, "stride") or max(1, w // 4)
        starts = window_starts(n, w, s)
        ok: list[tuple[int, int]] = []
        failed: list[tuple[int, int, str]] = []
        arrays: dict[str, list[np.ndarray]] = {name: [] for name in self.streams}
        faces = _FacePresence(src) if self.preprocess.face != "none" else None
        for a in tqdm(starts, desc="windows", unit="window", disable=not progress):
            # the pipeline finds the face on the window's first frame; its last frame must show one too, so a
            # window running into a stretch without a face is a gap rather than a guess
            if faces is not None and not faces.has_face(a + w - 1):
                failed.append((a, a + w - 1, NO_FACE))
                continue
            try:
                streams = self.preprocess_window(window_record(src, a, a + w))
            except PreprocessError as exc:
                failed.append((a, a + w - 1, NO_FACE if type(exc).__name__ == "NoFaceError" else str(exc)))
                continue
            for name in self.streams:
                arrays[name].append(streams[name])
            ok.append((a, a + w - 1))
        if not ok:
            reasons = "; ".join(dict.fromkeys(r for _, _, r in failed))
            if reasons == NO_FACE:
                raise PreprocessError(f"{src.source}: no face detected in any of its {len(failed)} window(s) "
                                      f"({n} frames)")
            raise PreprocessError(f"{src.source}: no window could be preprocessed ({len(failed)} window(s): {reasons})")
        p = self.probabilities({k: np.stack(v).astype(np.float32) for k, v in arrays.items()}, batch_size)
        preds = [Prediction(a, b, a / src.fps, (b + 1) / src.fps, self.classes[int(row.argmax())],
                            {c: float(v) for c, v in zip(self.classes, row, strict=True)})
                 for (a, b), row in zip(ok, p, strict=True)]
        return PredictionResult(src.source, src.fps, n, w, s, self.classes, self.models, preds,
                                merge_segments(preds, n, src.fps, self.classes, min_probability),
                                find_gaps(preds, failed, n, src.fps))


class TorchPredictor(Predictor):
    """PyTorch checkpoints of a run; several are averaged. Models are loaded one at a time per batch."""

    def __init__(self, checkpoints: Sequence[Checkpoint], device: str = "cpu") -> None:
        first = checkpoints[0].data
        for c in checkpoints[1:]:
            for key in ("model", "preprocess", "classes"):
                if c.data[key] != first[key]:
                    raise DataError(f"{c.path}: {key} differs from {checkpoints[0].path}; cannot average them")
        super().__init__(PreprocessConfig.from_dict(first["preprocess"]), first["classes"], first.get("clip"),
                         [c.name for c in checkpoints])
        self.checkpoints = list(checkpoints)
        self.device = device
        self._members: dict[str, Any] = {}

    def member(self, ckpt: Checkpoint) -> Any:
        """The checkpoint's model as a probability module (kept in memory for small ensembles)."""
        if ckpt.name in self._members:
            return self._members[ckpt.name]
        from microexp.models import registry

        d = ckpt.data
        if self.preprocess.normalise == "global" and not d.get("normaliser"):
            raise DataError(f"{ckpt.path}: the run normalises globally but the checkpoint has no fitted "
                            "statistics (saved by microexp >= 0.1 evaluate); re-run the evaluation")
        spec = registry.get(d["model"])
        if getattr(spec, "kind", "torch") != "torch":
            raise ConfigError(f"{ckpt.path}: model {d['model']!r} is kind={spec.kind!r}; predict runs torch models only")
        model = spec.build(len(self.classes), self.preprocess, **(d.get("model_params") or {}))
        try:
            model.load_state_dict(d["state_dict"])
        except RuntimeError as exc:
            raise DataError(f"{ckpt.path}: weights do not fit model {d['model']!r}: {str(exc).splitlines()[0]}") from None
        member = _member_class()(model, self.streams, d.get("normaliser") if self.preprocess.normalise == "global"
                                 else None).to(self.device).eval()
        if len(self.checkpoints) <= 8:
            self._members[ckpt.name] = member
        return member

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        torch = _torch()
        xs = [torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32)) for name in self.streams]
        n = len(xs[0])
        total = np.zeros((n, len(self.classes)))
        with torch.no_grad():
            for c in self.checkpoints:  # one model at a time: a large LOSO ensemble need not fit in memory
                member = self.member(c)
                for i in range(0, n, batch_size):
                    batch = [x[i:i + batch_size].to(self.device) for x in xs]
                    total[i:i + batch_size] += member(*batch).cpu().numpy()
        return (total / len(self.checkpoints)).astype(np.float32)

    def export_module(self) -> Any:
        members = [self.member(c) for c in self.checkpoints]
        if len(members) == 1:
            return members[0]
        _member_class()
        assert _ENSEMBLE is not None
        return _ENSEMBLE(members)


def load(run_dir: str | Path, fold: str | None = None, device: str = "cpu", face: str | None = None) -> TorchPredictor:
    """A predictor for a run directory: all its checkpoints averaged, or those of ``fold`` (a fold name such as
    ``sub01``, or a checkpoint file stem such as ``seed0-sub01``). ``run_dir`` may also be one ``.pt`` file.

    face: override the run's ``preprocess.face`` for this input only: ``"dlib"`` detects and crops the face in
    raw videos for a run trained on ready-made face crops (``face: none``, e.g. CASME II's cropped frames);
    ``"none"`` feeds frames that are already face crops to a run that detects faces.
    """
    tune_allocator()
    found = find_checkpoints(Path(run_dir), fold)
    predictor = TorchPredictor([Checkpoint(c.path, c.name, c.fold, _read_checkpoint(c.path)) for c in found], device)
    if face is not None:
        predictor.override_face(face)
    return predictor


# ------------------------------------------------------------------------------------------------------- ONNX
def export_onnx(run_dir: str | Path, out: str | Path, fold: str | None = None, opset: int = ONNX_OPSET) -> Path:
    """Export a run's model (one fold, or the mean of all its checkpoints) as one ONNX graph that maps the
    preprocessed streams (inputs named after them, (N, C, T, H, W)) to class probabilities. The preprocessing
    config, classes and window defaults travel in the model's metadata, so ``load_onnx`` needs nothing else."""
    torch = _torch()
    predictor = load(run_dir, fold)
    module = predictor.export_module().cpu().eval()
    shapes = {s.name: _stream_shape(predictor.preprocess, s.name) for s in predictor.preprocess.streams}
    dummy = tuple(torch.zeros((1, *shapes[n]), dtype=torch.float32) for n in predictor.streams)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
            torch.onnx.export(module, dummy, buf, dynamo=False, opset_version=opset, input_names=predictor.streams,
                              output_names=[PROBABILITIES],
                              dynamic_axes={**{n: {0: "batch"} for n in predictor.streams}, PROBABILITIES: {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - report any exporter failure as one line
        raise ConfigError(f"model {predictor.checkpoints[0].data['model']!r} cannot be exported to ONNX: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    import onnx

    proto = onnx.load_from_string(buf.getvalue())
    meta = {"microexp.preprocess": json.dumps(predictor.preprocess.to_dict()),
            "microexp.classes": json.dumps(predictor.classes),
            "microexp.clip": json.dumps(predictor.clip),
            "microexp.models": json.dumps(predictor.models),
            "microexp.model": predictor.checkpoints[0].data["model"],
            "microexp.run": str(Path(run_dir))}
    from microexp import __version__

    meta["microexp.version"] = __version__
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


def _stream_shape(config: PreprocessConfig, name: str) -> tuple[int, ...]:
    if hasattr(config, "stream_shape"):
        return tuple(config.stream_shape(name))  # type: ignore[attr-defined]
    s = config.stream(name)
    channels = {"raw": 1, "saliency": 1, "flow": 2, "flowstrain": 3}.get(s.kind, 1)
    return (channels, 1 if channels > 1 else config.frames, *s.size)


class OnnxPredictor(Predictor):
    """An exported model run with onnxruntime; preprocessing config and classes come from its metadata."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: ONNX file not found")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("predict --onnx needs onnxruntime (pip install 'microexp[onnx]')") from None
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DataError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
        meta = session.get_modelmeta().custom_metadata_map
        if "microexp.preprocess" not in meta or "microexp.classes" not in meta:
            raise DataError(f"{path}: ONNX model has no microexp metadata (export it with `microexp export`)")
        super().__init__(PreprocessConfig.from_dict(json.loads(meta["microexp.preprocess"])),
                         json.loads(meta["microexp.classes"]), json.loads(meta.get("microexp.clip", "{}")),
                         [f"{path.name}: {', '.join(json.loads(meta.get('microexp.models', '[]')))}"])
        self.path = path
        self.session = session

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        n = len(inputs[self.streams[0]])
        out = []
        for i in range(0, n, batch_size):
            feeds = {name: np.ascontiguousarray(inputs[name][i:i + batch_size], dtype=np.float32)
                     for name in self.streams}
            try:
                out.append(np.asarray(self.session.run([PROBABILITIES], feeds)[0], dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise DataError(f"{self.path}: onnxruntime failed ({str(exc).splitlines()[0]})") from None
        return np.concatenate(out)


def load_onnx(path: str | Path, face: str | None = None) -> OnnxPredictor:
    """A predictor for an ONNX file written by :func:`export_onnx` (``face`` as in :func:`load`)."""
    predictor = OnnxPredictor(path)
    if face is not None:
        predictor.override_face(face)
    return predictor
