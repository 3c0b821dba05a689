"""MicroExpSTCNN against the reference code (docs/models.md §1.5)."""

from __future__ import annotations

import torch

from _models_helpers import PARAMETERS
from microexp.models import count_parameters, get
from microexp.models.layout import keras_flatten_permutation, paper_to_torch
from microexp.models.stcnn import MicroExpSTCNN


def test_parameter_count_casme_sq_shape() -> None:
    model = MicroExpSTCNN(3, (1, 96, 64, 64))
    assert count_parameters(model) == PARAMETERS["stcnn"]
    assert model.feature_shape == (32, 27, 20, 20)  # Keras 32x20x20x27, flatten 345,600
    assert model.fc1.in_features == 345_600


def test_parameter_count_smic_shape() -> None:
    model = MicroExpSTCNN(3, (1, 18, 64, 64))
    assert count_parameters(model) == 1_643_267
    assert model.fc1.in_features == 12_800


def test_kernel_spans_3_rows_3_cols_15_frames_and_forward_shape() -> None:
    model = MicroExpSTCNN(3, (1, 18, 64, 64))
    assert tuple(model.conv.weight.shape) == (32, 1, 15, 3, 3)
    assert paper_to_torch((3, 3, 15)) == (15, 3, 3)
    model.eval()
    out = model(clip=torch.zeros(2, 1, 18, 64, 64))
    assert out.shape == (2, 3)


def test_keras_initialisers() -> None:
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, (1, 96, 64, 64))
    w = model.fc1.weight.detach()
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.05) < 1e-3  # N(0, 0.05)
    bound = (6 / (1 * 135 + 32 * 135)) ** 0.5  # glorot-uniform limit for a 3x3x15 kernel, 1 -> 32 channels
    top = float(model.conv.weight.detach().abs().max())
    assert 0.95 * bound < top <= bound
    assert not model.conv.bias.detach().any() and not model.fc2.bias.detach().any()


def test_registry_builds_from_default_and_overridden_preprocessing() -> None:
    spec = get("stcnn")
    assert spec.input_shapes() == {"clip": (1, 96, 64, 64)}
    assert count_parameters(spec.build(3)) == PARAMETERS["stcnn"]
    small = spec.build(5, spec.preprocess.with_overrides(frames=20), kernel=(3, 3, 15))
    assert small.fc2.out_features == 5


def test_keras_flatten_permutation_maps_layouts() -> None:
    c, t, h, w = 2, 3, 4, 5
    x = torch.arange(c * t * h * w).reshape(c, t, h, w)
    keras = x.permute(0, 2, 3, 1).reshape(-1)  # channels_first Keras order (C, H, W, T)
    assert torch.equal(x.reshape(-1)[keras_flatten_permutation(c, t, h, w)], keras)
