"""HTNet and MMNet learn the synthetic micro-expressions (``microexp synth``, the demo's generator: real faces with
rendered action units) across subjects, and the very same runs with training labels permuted within subjects
(``control: shuffle``) stay at chance. Small sizes and few epochs: the architectures are the authors', only their
widths (HTNet) and input sizes are scaled down."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binomtest

from microexp.config import RunConfig
from microexp.synth import SynthConfig, generate, write_plain
from microexp.train.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = generate(SynthConfig(n_subjects=9, clips_per_class=2, seed=0))  # 54 clips, 3 classes, 64x64
    return write_plain(clips, tmp_path_factory.mktemp("demo"))


def _run(root: Path, out: Path, model: str, preprocess: dict, params: dict, train: dict) -> dict:
    config = RunConfig(dataset="synthetic", root=str(root), model=model, protocol="kfold", folds=3, seeds=[0],
                       control="shuffle", preprocess=preprocess, model_params=params, train=train)
    return evaluate(config, out=out, progress=False, log=lambda _m: None).metrics


def _learned_and_control_at_chance(m: dict, floor: float) -> None:
    n, control = m["n_clips"], m["control"]
    assert n == 54 and m["n_subjects"] == 9
    assert m["uar"] >= floor and binomtest(round(m["accuracy"] * n), n, 1 / 3, alternative="greater").pvalue < 1e-3
    assert control["uar"] <= 0.45
    assert binomtest(round(control["accuracy"] * n), n, 1 / 3, alternative="greater").pvalue > 0.01


@pytest.mark.slow
def test_htnet_learns_the_demo_set_and_its_shuffled_control_does_not(demo_set: Path, tmp_path: Path) -> None:
    """HTNet (dim 16, one layer per hierarchy) on the four facial areas of onset->apex Farneback flow + strain."""
    m = _run(demo_set, tmp_path / "htnet", "htnet",
             {"flow": "farneback", "flow_size": 56}, {"dim": 16, "heads": 2, "block_repeats": [1, 1, 1]},
             {"epochs": 15, "batch_size": 16, "optimizer": "adam", "lr": 1e-3})
    _learned_and_control_at_chance(m, 0.6)
