"""Classify new videos or frame folders with a trained run, and export its models to ONNX.

An input is streamed (:func:`~microexp.predict.video.iter_frames` / :func:`open_stream`: OpenCV, PyAV as
fallback; never decoded to disk as a whole): the face is detected once and tracked
(:mod:`microexp.preprocess.track`), and as soon as a sliding window's last frame arrives, the window's frames
(a ring of at most one window of frame files) become a :class:`~microexp.data.records.ClipRecord` (onset =
first frame, apex = middle, offset = last) that goes through
:func:`microexp.preprocess.pipeline.preprocess_clip` with the checkpoint's own
:class:`~microexp.preprocess.config.PreprocessConfig`: training and inference share one code path, face
detection and alignment included. A window that cannot be preprocessed (no face in its reference frame) is not
an error: the frames no classified window covers are reported as :class:`Gap` rows.

    predictor = microexp.load("runs/casme2-stcnn-loso")          # all folds averaged (the default)
    result = predictor.predict("interview.mp4", stride="100ms")
    for w in result.windows: print(w.start_time, w.label, w.probabilities)

Ensembles: a LOSO run holds one checkpoint per fold (and per seed). ``load`` averages the class probabilities
of all of them by default (every fold model saw most subjects; averaging is the least arbitrary choice and is
deterministic); ``fold="sub01"`` (a fold name or a checkpoint file stem) picks one.

An AU-detection run (``evaluate --task au``) loads as an :class:`AUPredictor`: each window gets a probability per AU
(sigmoids, not a distribution), its label the AUs at the run's threshold, segments per AU.

A run trained on ready-made face crops detects and crops the face in the input unless ``face="none"`` says the
input is face crops already (:mod:`microexp.predict.predictor`).

One module a job: :mod:`.results` (result types and formats), :mod:`.video` (the one streaming reader),
:mod:`.windows` (windows, segments, gaps), :mod:`.faces` (face presence, tracked through a stream),
:mod:`.ensemble` (the torch modules), :mod:`.predictor` (predictors and :func:`load`), :mod:`.onnx` (export and
the ONNX predictor); checkpoint discovery and the safe checkpoint loader are the run directory's
(:mod:`microexp.runs`).
"""

from __future__ import annotations

from microexp.predict.ensemble import ensemble_class, member_class
from microexp.predict.faces import NO_FACE, FacePresence, StreamFaces
from microexp.predict.onnx import ONNX_OPSET, PROBABILITIES, OnnxPredictor, export_onnx, load_onnx
from microexp.predict.predictor import AUPredictor, Predictor, TorchPredictor, check_options, load
from microexp.predict.results import Gap, Prediction, PredictionResult, Segment
from microexp.predict.video import (
    DEFAULT_FPS,
    FrameSource,
    FrameStream,
    check_fps,
    iter_frames,
    open_input,
    open_stream,
    read_frames,
    read_video,
)
from microexp.predict.windows import (
    FrameRing,
    check_span,
    find_gaps,
    merge_segments,
    min_window,
    parse_span,
    window_record,
    window_starts,
)
from microexp.runs import Checkpoint, find_checkpoints

__all__ = ["DEFAULT_FPS", "NO_FACE", "ONNX_OPSET", "PROBABILITIES", "AUPredictor", "Checkpoint", "FacePresence",
           "FrameRing", "FrameSource", "FrameStream", "StreamFaces", "Gap", "OnnxPredictor",
           "Prediction", "PredictionResult", "Predictor", "Segment", "TorchPredictor", "check_fps",
           "check_options", "check_span", "ensemble_class", "export_onnx", "find_checkpoints",
           "find_gaps", "iter_frames", "load", "load_onnx", "member_class", "merge_segments",
           "min_window", "open_input", "open_stream", "parse_span", "read_frames", "read_video",
           "window_record", "window_starts"]
