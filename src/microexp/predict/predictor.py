"""Predictors: classify windows of an input with one model or an ensemble of a run's checkpoints.

:class:`Predictor` holds what every backend shares (the run's preprocessing, classes, window defaults, the
sliding-window loop); :class:`TorchPredictor` runs PyTorch checkpoints, :class:`~microexp.predict.onnx.OnnxPredictor`
an exported ONNX file.

Face handling (the safe default): a run trained on ready-made face crops (``preprocess.face: none``: CASME II's
cropped frames, the synthetic sets, the demo) would classify whatever a raw video shows, a room without anyone
included. Unless told otherwise (``face=``), such a run therefore detects and crops the face in the input
(``dlib``), exactly as a run that detects faces does: frames without a face become gaps, an input without any
face is an error, and the result carries a note saying so. ``face="none"`` states that the input frames are face
crops already and skips detection.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from microexp.contract.faces import check_face
from microexp.data.records import ClipRecord
from microexp.errors import (
    ConfigError,
    DataError,
    InputError,
    PreprocessError,
    UnusableInputError,
    first_line,
)
from microexp.predict.ensemble import ensemble_class, member_class
from microexp.predict.faces import NO_FACE, StreamFaces
from microexp.predict.results import Prediction, PredictionResult
from microexp.predict.video import DEFAULT_FPS, FrameStream, check_fps, open_stream, png_gray, png_gray_exact
from microexp.predict.windows import (
    FrameRing,
    au_segments,
    check_span,
    find_gaps,
    merge_segments,
    min_window,
    parse_span,
)
from microexp.preprocess.config import PreprocessConfig
from microexp.runs import METRICS, SPOTTER, Checkpoint, checkpoint_files, is_spotting_run, read_checkpoints
from microexp.runtime import tune_allocator

AUTO_FACE_NOTE = ("the run was trained on face crops; faces are detected and cropped in the input (dlib), frames "
                  "without one are gaps (face='none', on the command line --face none: the input frames are face "
                  "crops already)")


def check_options(window: str | int | None = None, stride: str | int | None = None, fps: float | None = None,
                  min_probability: float = 0.5, batch_size: int = 16, names: dict[str, str] | None = None) -> None:
    """Every numeric option of :meth:`Predictor.predict`, checked before any decoding. ``names``: how the
    messages call them (the CLI passes its option names)."""
    n = {"window": "window", "stride": "stride", "fps": "fps", "min_probability": "min_probability",
         "batch_size": "batch_size", **(names or {})}
    check_span(window, n["window"])
    check_span(stride, n["stride"])
    check_fps(fps, n["fps"])
    if not isinstance(min_probability, numbers.Real) or not 0 <= float(min_probability) <= 1:
        raise ConfigError(f"{n['min_probability']} {min_probability!r}: a probability between 0 and 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"{n['batch_size']} {batch_size!r}: a whole number >= 1")


class Predictor:
    """Classifies windows of frames with one model or an ensemble; :meth:`predict` handles whole inputs.

    Subclasses implement :meth:`probabilities` (PyTorch checkpoints, or an ONNX file)."""

    def __init__(self, preprocess: PreprocessConfig, classes: Sequence[str], clip: dict[str, float] | None,
                 models: Sequence[str]) -> None:
        self.preprocess = preprocess
        self.classes = list(classes)
        self.clip = clip or {}
        self.models = list(models)
        self.notes: list[str] = []
        self.task = "recognise"  # or "au": classes are AUs, each with its own probability (AUPredictor)
        self.stream_stats: dict[str, int] = {}  # of the last predict: frames, peak frames / windows held, detections
        self.detector = "dlib"  # the face tracker's detector (microexp.contract.faces) when faces are detected

    @property
    def streams(self) -> list[str]:
        return [s.name for s in self.preprocess.streams]

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Class probabilities (N, K) of preprocessed windows, streams (N, C, T, H, W)."""
        raise NotImplementedError  # pragma: no cover - implemented by the backends

    def override_face(self, face: str) -> None:
        """Use another face mode than the run's (see :func:`load`); alignment is dropped without landmarks.
        ``dlib-mmod``: faces found and cropped as with ``dlib`` (same landmarks), the tracker's detector adding
        dlib's CNN where HOG and tracking lose the face."""
        check_face(face)
        self.detector = face
        face = "none" if face == "none" else "dlib"  # the preprocessing's face mode: landmarks or none
        align = self.preprocess.align if face != "none" else "none"
        self.preprocess = PreprocessConfig.from_dict({**self.preprocess.to_dict(), "face": face, "align": align})

    def choose_face(self, face: str | None) -> None:
        """``face`` given: use it. Not given: the run's own mode, except that a run trained on face crops
        detects and crops the face (see the module docstring), with a note in every result."""
        if face is None and self.preprocess.face == "none":
            self.override_face("dlib")
            self.notes.append(AUTO_FACE_NOTE)
        elif face is not None:
            self.override_face(face)

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
                batch_size: int = 16, progress: bool = False,
                progress_callback: Callable[[int, int | None], None] | None = None) -> PredictionResult:
        """Classify a video file, a frame folder, or frames (T, H, W[, 3]) in sliding windows.

        window / stride: frames (``24``), milliseconds (``"100ms"``) or seconds (``"0.5s"``), above zero; the
        window defaults to the training clips' median duration at the input's frame rate, the stride to a
        quarter window. fps: the input's frame rate (> 0; read from the video; for frames, default the
        training clips' rate). Bad values raise :class:`ConfigError` before the input is decoded.

        The input is streamed: frames are decoded one at a time, the face is detected once and tracked, each
        window is preprocessed as soon as its last frame arrives and the model runs on batches of
        ``batch_size`` windows. At most one window of frames and one batch of windows are held, whatever the
        input's length (:attr:`stream_stats` says how many were).

        progress: a tqdm bar on stderr; ``progress_callback(done, total)``: called after every frame with the
        frames read so far and the frames expected (None when the container does not say), for a caller that
        shows progress its own way. An input that cannot be read or has no usable window raises
        :class:`~microexp.errors.InputError` naming it as given (``source``).
        """
        check_options(window, stride, fps, min_probability, batch_size)
        stream = open_stream(source)
        try:
            rate = fps or stream.fps or (DEFAULT_FPS if stream.backend in ("opencv", "pyav")
                                         else float(self.clip.get("fps") or DEFAULT_FPS))
            return self._predict(stream, float(rate), window, stride, min_probability, batch_size, progress,
                                 progress_callback)
        finally:
            stream.close()

    def _predict(self, stream: FrameStream, fps: float, window: str | int | None, stride: str | int | None,
                 min_probability: float, batch_size: int, progress: bool,
                 callback: Callable[[int, int | None], None] | None = None) -> PredictionResult:
        from microexp.preprocess.regions import read_gray

        need = min_window(self.preprocess)
        w = parse_span(window, fps, "window") or self.default_window(fps)
        if w < need:
            raise ConfigError(f"window {w} frames is shorter than the {need} frames this run's preprocessing needs")
        s = parse_span(stride, fps, "stride") or max(1, w // 4)
        ring = FrameRing(w)
        # the pipeline reads frames with OpenCV's gray conversion unless the run keeps colour or the seed's quirk
        gray_files = self.preprocess.gray == "correct" and getattr(self.preprocess, "color", "gray") == "gray"
        png_exact: bool | None = None
        faces = StreamFaces(w, detector=self.detector) if self.preprocess.face != "none" else None
        windows = _Batches(self, batch_size)
        n = 0
        total = len(stream.paths) if stream.paths is not None else stream.declared
        # a frame folder's files are read by the pipeline itself: not decoded here
        frames = stream if stream.paths is None else (None for _ in stream.paths)
        try:
            with faces.active() if faces is not None else nullcontext():
                for pos, frame in enumerate(tqdm(frames, desc="frames", unit="frame", total=total,
                                                 disable=not progress)):
                    if stream.paths is not None:
                        path = ring.push(pos, path=stream.paths[pos])
                        gray = read_gray(path, self.preprocess.gray) if faces is not None else None
                    elif gray_files:
                        assert frame is not None
                        # a gray run's frames are kept as gray files (a third of the bytes, and the tracker's
                        # gray is what the pipeline reads), converted as reading the colour PNG frames of a
                        # decoded video gives them (the former path, still the web page's): same predictions
                        if frame.ndim == 3 and png_exact is None:
                            png_exact = png_gray_exact(frame)
                        if frame.ndim == 2 or png_exact:
                            gray = png_gray(frame) if frame.ndim == 3 else frame
                            path = ring.push(pos, gray)
                        else:  # an OpenCV build whose PNG gray differs: colour PNG files, slower but the same
                            path = ring.push(pos, frame, suffix=".png")
                            gray = read_gray(path, self.preprocess.gray) if faces is not None else None
                    else:
                        assert frame is not None
                        path = ring.push(pos, frame)
                        gray = read_gray(path, self.preprocess.gray) if faces is not None else None
                    if faces is not None:
                        assert gray is not None
                        faces.update(pos, gray)  # the frame as the pipeline reads it: its face lookups then hit
                    n = pos + 1
                    if callback is not None:
                        callback(n, total)
                    if n >= w and (n - w) % s == 0:
                        windows.add(n - w, n, ring.record(n - w, n, fps, stream.source), faces)
                if n < need:
                    raise InputError(stream.source, f"{n} frame(s); this run's preprocessing needs at least {need}")
                notes = [*self.notes, *stream.notes()]
                if w > n:
                    notes.append(f"window {w} frames is longer than the input's {n}: one window of all {n} frames")
                    w = n
                    s = parse_span(stride, fps, "stride") or max(1, w // 4)
                    windows.add(0, n, ring.record(0, n, fps, stream.source), faces)
                elif (n - w) % s != 0:  # the last window ends on the last frame
                    windows.add(n - w, n, ring.record(n - w, n, fps, stream.source), faces)
                windows.flush()
        finally:
            ring.close()
        self.stream_stats = {"frames": n, "window": w, "peak_frames": ring.peak, "peak_windows": windows.peak,
                             "batch_size": batch_size,
                             "face_detections": faces.tracker.detections if faces is not None else 0,
                             "face_lookups_missed": faces.backend.misses if faces is not None else 0,
                             "face_fallbacks": faces.tracker.fallbacks if faces is not None else 0}
        if not windows.ok:
            reasons = "; ".join(dict.fromkeys(r for _, _, r in windows.failed))
            if reasons == NO_FACE:
                hint = ("; if the frames are face crops already, use face='none' (--face none)"
                        if AUTO_FACE_NOTE in self.notes else "")
                raise UnusableInputError(stream.source, f"no face detected in any of its {len(windows.failed)} "
                                                        f"window(s) ({n} frames){hint}")
            raise UnusableInputError(stream.source, f"no window could be preprocessed ({len(windows.failed)} "
                                                    f"window(s): {reasons})")
        preds = [Prediction(a, b, a / fps, (b + 1) / fps, self.label_of(row),
                            {c: float(v) for c, v in zip(self.classes, row, strict=True)})
                 for (a, b), row in zip(windows.ok, windows.probabilities, strict=True)]
        segments = (au_segments(preds, n, fps, self.classes, min_probability) if self.task == "au"
                    else merge_segments(preds, n, fps, self.classes, min_probability))
        return PredictionResult(stream.source, fps, n, w, s, self.classes, self.models, preds, segments,
                                find_gaps(preds, windows.failed, n, fps), notes, task=self.task)

    def label_of(self, row: np.ndarray) -> str:
        """A window's label: its most probable class."""
        return self.classes[int(row.argmax())]


class _Batches:
    """Windows preprocessed as they complete, classified ``batch_size`` at a time; ``peak``: the most windows
    held before a batch ran."""

    def __init__(self, predictor: Predictor, batch_size: int) -> None:
        self.predictor = predictor
        self.batch_size = batch_size
        self.ok: list[tuple[int, int]] = []
        self.failed: list[tuple[int, int, str]] = []
        self.probabilities: list[np.ndarray] = []
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in predictor.streams}
        self._count = 0
        self.peak = 0

    def add(self, start: int, stop: int, record: ClipRecord, faces: StreamFaces | None) -> None:
        from microexp.preprocess.face import NoFaceError

        # the pipeline finds the face on the window's first frame; its last frame must show one too, so a
        # window running into a stretch without a face is a gap rather than a guess
        if faces is not None and not faces.has_face(stop - 1):
            self.failed.append((start, stop - 1, NO_FACE))
            return
        try:
            streams = self.predictor.preprocess_window(record)
        except NoFaceError:
            self.failed.append((start, stop - 1, NO_FACE))
            return
        except PreprocessError as exc:
            self.failed.append((start, stop - 1, str(exc)))
            return
        for name in self._pending:
            self._pending[name].append(streams[name])
        self.ok.append((start, stop - 1))
        self._count += 1
        self.peak = max(self.peak, self._count)
        if self._count >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._count:
            return
        batch = {k: np.stack(v).astype(np.float32) for k, v in self._pending.items()}
        self.probabilities.extend(self.predictor.probabilities(batch, self.batch_size))
        self._pending = {name: [] for name in self._pending}
        self._count = 0


class TorchPredictor(Predictor):
    """PyTorch checkpoints of a run; several are averaged. Models are loaded one at a time per batch."""

    SAME = ("model", "preprocess", "classes")  # what the averaged checkpoints must share

    def __init__(self, checkpoints: Sequence[Checkpoint], device: str = "cpu") -> None:
        first = checkpoints[0].data
        for c in checkpoints[1:]:
            for key in self.SAME:
                if c.data[key] != first[key]:
                    raise DataError(f"{c.path}: {key} differs from {checkpoints[0].path}; cannot average them")
        super().__init__(PreprocessConfig.from_dict(first["preprocess"]), self.classes_of(checkpoints),
                         first.get("clip"), [c.name for c in checkpoints])
        self.checkpoints = list(checkpoints)
        self.device = device
        self._members: dict[str, Any] = {}

    @staticmethod
    def classes_of(checkpoints: Sequence[Checkpoint]) -> list[str]:
        return list(checkpoints[0].data["classes"])

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
        model = spec.build(len(d["classes"]), self.preprocess, **(d.get("model_params") or {}))
        try:
            model.load_state_dict(d["state_dict"])
        except RuntimeError as exc:
            raise DataError(f"{ckpt.path}: weights do not fit model {d['model']!r}: {first_line(exc)}") from None
        member = member_class()(model, self.streams, d.get("normaliser") if self.preprocess.normalise == "global"
                                else None, vote=d.get("trainer", spec.trainer) == "frames-vote",
                                sigmoid=d.get("task") == "au").to(self.device).eval()
        if len(self.checkpoints) <= 8:
            self._members[ckpt.name] = member
        return member

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        import torch

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
        return ensemble_class()(members)


class AUPredictor(TorchPredictor):
    """The checkpoints of an AU-detection run (``evaluate --task au``): each window gets a probability per AU
    (the sigmoid of each output), its label the AUs at or above the run's threshold joined by ``+`` (``none``).
    Fold models may have chosen different AU sets (each from its own training fold): the predictor's AUs are
    their union, each AU's probability the mean over the fold models that detect it."""

    SAME = ("model", "preprocess")

    def __init__(self, checkpoints: Sequence[Checkpoint], device: str = "cpu") -> None:
        super().__init__(checkpoints, device)
        self.task = "au"
        self.threshold = float(checkpoints[0].data.get("threshold", 0.5))

    @staticmethod
    def classes_of(checkpoints: Sequence[Checkpoint]) -> list[str]:
        names = {a for c in checkpoints for a in c.data["classes"]}
        return sorted(names, key=lambda a: (int(a[2:]) if a[2:].isdigit() else 10**6, a))

    def label_of(self, row: np.ndarray) -> str:
        return "+".join(a for a, p in zip(self.classes, row, strict=True) if p >= self.threshold) or "none"

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        import torch

        xs = [torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32)) for name in self.streams]
        n = len(xs[0])
        total, count = np.zeros((n, len(self.classes))), np.zeros(len(self.classes))
        column = {a: k for k, a in enumerate(self.classes)}
        with torch.no_grad():
            for c in self.checkpoints:
                member, cols = self.member(c), [column[a] for a in c.data["classes"]]
                for i in range(0, n, batch_size):
                    batch = [x[i:i + batch_size].to(self.device) for x in xs]
                    total[i:i + batch_size, cols] += member(*batch).cpu().numpy()
                count[cols] += 1
        return (total / np.maximum(count, 1)).astype(np.float32)

    def export_module(self) -> Any:
        raise ConfigError("export takes recognition runs: an AU-detection run's sigmoid outputs are not exported yet")


def load(run_dir: str | Path, fold: str | None = None, device: str = "cpu", face: str | None = None) -> TorchPredictor:
    """A predictor for a run directory: all its checkpoints averaged, or those of ``fold`` (a fold name such as
    ``sub01``, or a checkpoint file stem such as ``seed0-sub01``). ``run_dir`` may also be one checkpoint file.

    face: ``None`` (default): the run's own face mode, except that a run trained on ready-made face crops
    (``face: none``) detects and crops the face in the input (frames without one become gaps; see the module
    docstring); ``"dlib"``: detect and crop; ``"none"``: the input frames are face crops already.
    """
    if is_spotting_run(run_dir):
        raise ConfigError(f"{run_dir} is a spotting run (it has {SPOTTER}): it finds intervals in long videos; "
                          f"use microexp spot VIDEO --run {run_dir} (Python: microexp.load(run).spot(video))")
    metrics = Path(run_dir) / METRICS
    au_run = metrics.is_file() and json.loads(metrics.read_text(encoding="utf-8")).get("task") == "au"
    tune_allocator()
    if au_run and not checkpoint_files(run_dir):
        raise ConfigError(f"{run_dir} is an AU-detection run without checkpoints (made before AU runs kept their "
                          f"models, or with save_checkpoints: none): rerun evaluate --task au to predict with it")
    checkpoints = read_checkpoints(Path(run_dir), fold)
    predictor = (AUPredictor if checkpoints[0].data.get("task") == "au" else TorchPredictor)(checkpoints, device)
    predictor.choose_face(face)
    return predictor
