"""HTNet and MMNet do what every registered model does: a tiny run trained through ``evaluate`` on synthetic clips
predicts on a frame sequence (the path ``predict`` and ``spot --recognise`` use), analyses it as the web app's job
does, exports to ONNX with the same probabilities as PyTorch, and ``explain`` writes its saliency figures for a
held-out clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from microexp.config import RunConfig
from microexp.predict import export_onnx, load, load_onnx
from microexp.synth import SynthConfig, generate, write_plain
from microexp.train.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {  # model -> (preprocess overrides, model_params): the recipes' inputs at test sizes
    "htnet": ({"flow": "farneback", "flow_size": 56}, {"dim": 8, "heads": 2, "block_repeats": [1, 1, 1]}),
    "mmnet": ({"streams": [{"name": "clip", "region": "face", "size": [32, 32], "kind": "raw"}]}, {}),
}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = generate(SynthConfig(n_subjects=4, clips_per_class=1, n_frames=16, seed=0))
    return write_plain(clips, tmp_path_factory.mktemp("synth"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_predict_spot_export_and_explain(name: str, synth_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from microexp.explain.saliency import explain_clip

    preprocess, params = TINY[name]
    weights = tmp_path / "backbone.safetensors"
    if name == "mmnet":  # a local pretrained file initialises the run; predict and explain never need it again
        from safetensors.torch import save_file

        from microexp.models.mmnet import MMNet

        save_file(MMNet(3, (3, 2, 32, 32)).main_branch.state_dict(), str(weights))
        params = {**params, "pretrained": str(weights)}
    out = tmp_path / "run"
    config = RunConfig(dataset="plain", root=str(synth_root), protocol="holdout", test_size=0.25, model=name,
                       preprocess=preprocess, model_params=params, train={"epochs": 1, "batch_size": 4})
    evaluate(config, out=out, progress=False, log=lambda _m: None)
    weights.unlink(missing_ok=True)
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 3  # one held-out subject, one clip per class
    row = predictions.iloc[0]
    clip_dir = synth_root / str(row.subject) / str(row.clip_id)
    predictor = load(out, face="none")
    # predict: the clip's folder as one window, probabilities over the run's classes
    result = predictor.predict(clip_dir, window=16)
    assert len(result.windows) == 1 and sum(result.windows[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # spot --recognise: each spotted interval is predicted whole (window = stride = its length)
    frames = np.stack([cv2.imread(str(f)) for f in sorted(clip_dir.iterdir())])
    whole = predictor.predict(frames, window=len(frames), stride=len(frames), fps=30.0)
    assert [w.label for w in whole.windows] == [result.windows[0].label]
    # the web app: its job analyses the frame folder with the run (microexp serve's analyse, without the server)
    from microexp.serve.analyse import Progress, analyse

    job = tmp_path / "job"
    job.mkdir()
    summary = analyse(str(clip_dir), out, job / "out", Progress(job), {"face": "none", "window": 16})
    assert summary.startswith("1 window(s)") and (job / "out" / "result.json").is_file()
    # export: ONNX gives PyTorch's probabilities on the same preprocessed inputs
    onnx_file = export_onnx(out, tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    pconf = predictor.preprocess
    x = {s.name: rng.normal(size=(2, *pconf.stream_shape(s.name))).astype(np.float32) for s in pconf.streams}
    np.testing.assert_allclose(load_onnx(onnx_file).probabilities(x), predictor.probabilities(x), atol=1e-4, rtol=0)
    # explain: saliency figures of a held-out clip
    from microexp.data.registry import load_dataset

    records = {r.key: r for r in load_dataset("plain", synth_root, None, None).records}
    key = f"{row.dataset}/{row.subject}/{row.clip_id}"
    explanation = explain_clip(out, key, record=records[key], out_dir=tmp_path / "explain")
    assert explanation.files and all(f.is_file() and f.stat().st_size > 0 for f in explanation.files)
