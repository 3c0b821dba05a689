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

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, DataError, PreprocessError, first_line
from microexp.predict.ensemble import ensemble_class, member_class
from microexp.predict.faces import NO_FACE, FacePresence
from microexp.predict.results import Prediction, PredictionResult
from microexp.predict.video import DEFAULT_FPS, FrameSource, check_fps, open_input
from microexp.predict.windows import (
    check_span,
    find_gaps,
    merge_segments,
    min_window,
    parse_span,
    window_record,
    window_starts,
)
from microexp.preprocess.config import PreprocessConfig
from microexp.runs import SPOTTER, Checkpoint, is_spotting_run, read_checkpoints
from microexp.runtime import tune_allocator

FACES = ("dlib", "none")
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

    @property
    def streams(self) -> list[str]:
        return [s.name for s in self.preprocess.streams]

    def probabilities(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Class probabilities (N, K) of preprocessed windows, streams (N, C, T, H, W)."""
        raise NotImplementedError  # pragma: no cover - implemented by the backends

    def override_face(self, face: str) -> None:
        """Use another face mode than the run's (see :func:`load`); alignment is dropped without landmarks."""
        if face not in FACES:
            raise ConfigError(f"face {face!r}: one of {', '.join(FACES)}")
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
                batch_size: int = 16, progress: bool = False) -> PredictionResult:
        """Classify a video file, a frame folder, or frames (T, H, W[, 3]) in sliding windows.

        window / stride: frames (``24``), milliseconds (``"100ms"``) or seconds (``"0.5s"``), above zero; the
        window defaults to the training clips' median duration at the input's frame rate, the stride to a
        quarter window. fps: the input's frame rate (> 0; read from the video; for frames, default the
        training clips' rate). Bad values raise :class:`ConfigError` before the input is decoded.
        """
        check_options(window, stride, fps, min_probability, batch_size)
        src = open_input(source, fps, default_fps=float(self.clip.get("fps") or DEFAULT_FPS))
        try:
            return self._predict(src, window, stride, min_probability, batch_size, progress)
        finally:
            src.close()

    def _predict(self, src: FrameSource, window: str | int | None, stride: str | int | None,
                 min_probability: float, batch_size: int, progress: bool) -> PredictionResult:
        from microexp.preprocess.face import NoFaceError

        n = len(src)
        need = min_window(self.preprocess)
        notes = [*self.notes, *src.notes()]
        w = parse_span(window, src.fps, "window") or self.default_window(src.fps)
        if w < need:
            raise ConfigError(f"window {w} frames is shorter than the {need} frames this run's preprocessing needs")
        if n < need:
            raise DataError(f"{src.source}: {n} frame(s); this run's preprocessing needs at least {need}")
        if w > n:
            notes.append(f"window {w} frames is longer than the input's {n}: one window of all {n} frames")
            w = n
        s = parse_span(stride, src.fps, "stride") or max(1, w // 4)
        starts = window_starts(n, w, s)
        ok: list[tuple[int, int]] = []
        failed: list[tuple[int, int, str]] = []
        arrays: dict[str, list[np.ndarray]] = {name: [] for name in self.streams}
        faces = FacePresence(src) if self.preprocess.face != "none" else None
        for a in tqdm(starts, desc="windows", unit="window", disable=not progress):
            # the pipeline finds the face on the window's first frame; its last frame must show one too, so a
            # window running into a stretch without a face is a gap rather than a guess
            if faces is not None and not faces.has_face(a + w - 1):
                failed.append((a, a + w - 1, NO_FACE))
                continue
            try:
                streams = self.preprocess_window(window_record(src, a, a + w))
            except NoFaceError:
                failed.append((a, a + w - 1, NO_FACE))
                continue
            except PreprocessError as exc:
                failed.append((a, a + w - 1, str(exc)))
                continue
            for name in self.streams:
                arrays[name].append(streams[name])
            ok.append((a, a + w - 1))
        if not ok:
            reasons = "; ".join(dict.fromkeys(r for _, _, r in failed))
            if reasons == NO_FACE:
                hint = ("; if the frames are face crops already, use face='none' (--face none)"
                        if AUTO_FACE_NOTE in self.notes else "")
                raise PreprocessError(f"{src.source}: no face detected in any of its {len(failed)} window(s) "
                                      f"({n} frames){hint}")
            raise PreprocessError(f"{src.source}: no window could be preprocessed ({len(failed)} window(s): {reasons})")
        p = self.probabilities({k: np.stack(v).astype(np.float32) for k, v in arrays.items()}, batch_size)
        preds = [Prediction(a, b, a / src.fps, (b + 1) / src.fps, self.classes[int(row.argmax())],
                            {c: float(v) for c, v in zip(self.classes, row, strict=True)})
                 for (a, b), row in zip(ok, p, strict=True)]
        return PredictionResult(src.source, src.fps, n, w, s, self.classes, self.models, preds,
                                merge_segments(preds, n, src.fps, self.classes, min_probability),
                                find_gaps(preds, failed, n, src.fps), notes)


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
            raise DataError(f"{ckpt.path}: weights do not fit model {d['model']!r}: {first_line(exc)}") from None
        member = member_class()(model, self.streams, d.get("normaliser") if self.preprocess.normalise == "global"
                                else None).to(self.device).eval()
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
    tune_allocator()
    predictor = TorchPredictor(read_checkpoints(Path(run_dir), fold), device)
    predictor.choose_face(face)
    return predictor
