"""What every registered model promises, checked for each name in the registry (a new model cannot skip it): it
builds for its default input with its published classes, has the documented parameter count, returns one score
per class, is deterministic given a seed, and declares a valid kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _models_helpers import PARAMETERS, SMALL_INPUTS, blob_clips
from microexp import models
from microexp.models import KINDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_batch(shapes: dict, n: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, *s, generator=gen) for k, s in shapes.items()}


@pytest.mark.parametrize("name", models.names())
def test_kind_is_valid_and_the_model_is_in_the_tables(name: str) -> None:
    spec = models.get(name)
    assert spec.name == name and spec.kind in KINDS
    assert spec.classes >= 2 and spec.source and spec.description and spec.preprocess.streams
    assert name in PARAMETERS, f"{name}: add its documented parameter count to PARAMETERS (tests/_models_helpers.py)"
    assert name in SMALL_INPUTS, f"{name}: add a small input to SMALL_INPUTS (tests/_models_helpers.py)"


@pytest.mark.parametrize("name", models.names())
def test_builds_for_its_default_input_with_the_documented_parameters_and_output_shape(name: str) -> None:
    spec = models.get(name)
    k = spec.classes
    assert models.parameter_count(spec) == PARAMETERS[name]
    if spec.kind == "torch":
        with torch.device("meta"):  # full size without memory: the FuseNets have 177 M parameters
            model = spec.build(k)
            assert isinstance(model, nn.Module)
            model.eval()
            with torch.no_grad():
                out = model(**{s: torch.empty(2, *shape) for s, shape in spec.input_shapes().items()})
        assert out.shape == (2, k)
        return
    estimator = spec.build(k)
    assert not isinstance(estimator, nn.Module)
    assert callable(getattr(estimator, "fit", None)) and callable(getattr(estimator, "predict_proba", None))


def _run_small(name: str, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Build ``name`` on its small input with ``seed`` and return its state and its class scores for a fixed
    batch (torch: eval-mode forward; sklearn: fit on a labelled batch, then predict_proba)."""
    spec = models.get(name)
    shapes, hparams = SMALL_INPUTS[name]
    k = spec.classes
    if spec.kind == "torch":
        torch.manual_seed(seed)
        model = spec.builder(k, shapes, **hparams).eval()
        with torch.no_grad():
            out = model(**_small_batch(shapes, 3, seed=100)).numpy()
        return {key: v.numpy().copy() for key, v in model.state_dict().items()}, out
    (stream, (_c, t, h, w)), = shapes.items()
    x, y = blob_clips(6 * k, k, (t, h, w), seed=seed)
    estimator = spec.builder(k, shapes, **hparams)
    estimator.fit({stream: x}, y)
    return {}, estimator.predict_proba({stream: x[:3]})


@pytest.mark.parametrize("name", models.names())
def test_small_forward_shape_and_determinism_given_a_seed(name: str) -> None:
    k = models.get(name).classes
    state, out = _run_small(name, seed=0)
    assert out.shape == (3, k) and np.isfinite(out).all()
    state_again, out_again = _run_small(name, seed=0)
    assert state.keys() == state_again.keys()
    assert all(np.array_equal(state[key], state_again[key]) for key in state)
    np.testing.assert_array_equal(out, out_again)
    if state:  # the seed matters: another seed draws other initial weights
        other, _ = _run_small(name, seed=1)
        assert any(not np.array_equal(state[key], other[key]) for key in state if state[key].dtype.kind == "f")
