"""ONNX: export a run's model (one fold, or the mean of all its checkpoints) and run an exported file with
onnxruntime (:class:`OnnxPredictor`)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np

from microexp.errors import ConfigError, DataError, first_line
from microexp.fileio import check_output_file, output_errors
from microexp.predict.predictor import Predictor, TorchPredictor
from microexp.preprocess.config import PreprocessConfig
from microexp.runs import read_checkpoints

ONNX_OPSET = 17  # legacy TorchScript exporter (the dynamo one needs onnxscript, which is not a dependency)
MIN_OPSET, MAX_OPSET = 7, 20  # what the legacy TorchScript exporter supports (torch 2.x)
PROBABILITIES = "probabilities"


def export_onnx(run_dir: str | Path, out: str | Path, fold: str | None = None, opset: int = ONNX_OPSET) -> Path:
    """Export a run's model (one fold, or the mean of all its checkpoints) as one ONNX graph that maps the
    preprocessed streams (inputs named after them, (N, C, T, H, W)) to class probabilities. The preprocessing
    config, classes and window defaults travel in the model's metadata, so ``load_onnx`` needs nothing else.
    ``out`` must be a file name in a writable folder (checked before the export)."""
    out = check_output_file(out, "ONNX output")
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset!r}: an ONNX opset between {MIN_OPSET} and {MAX_OPSET}")
    import torch

    checkpoints = read_checkpoints(Path(run_dir), fold)
    if any(c.data.get("task") == "au" for c in checkpoints):
        raise ConfigError(f"{run_dir} is an AU-detection run: export takes recognition runs (an AU run's sigmoid "
                          "outputs are not exported yet); microexp predict --run uses it as it is")
    predictor = TorchPredictor(checkpoints)  # the run's own preprocessing, unchanged
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
                          f"{type(exc).__name__}: {first_line(exc)}") from None
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
    with output_errors(out):
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
            raise ConfigError("running an ONNX model needs onnxruntime (pip install 'microexp[onnx]')") from None
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DataError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
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
                raise DataError(f"{self.path}: onnxruntime failed ({first_line(exc)})") from None
        return np.concatenate(out)


def load_onnx(path: str | Path, face: str | None = None) -> OnnxPredictor:
    """A predictor for an ONNX file written by :func:`export_onnx` (``face`` as in :func:`load`)."""
    predictor = OnnxPredictor(path)
    predictor.choose_face(face)
    return predictor
