"""MicroExpFuseNet, intermediate and late fusion (Reddy et al., IJCNN 2019; docs/models.md §1.6-1.7).

Two 3D-CNN streams without weight sharing, one on the eye clip and one on the mouth clip (32x32xD each; D = 96 for
CAS(ME)^2, 18 for SMIC), each Conv3D 32 over 3 rows x 3 cols x 15 frames (valid, glorot) -> ReLU -> MaxPool 3x3x3 ->
Dropout 0.5 -> Flatten.

- ``fusenet-intermediate``: concat [eyes, mouth] -> Dense 1024 -> Dropout 0.5 -> Dense 128 -> Dropout 0.5 -> Dense n.
  177,088,515 parameters at D=96, 6,694,915 at D=18 (3 classes).
- ``fusenet-late``: per stream Dense 1024 -> Dropout -> Dense 128 -> Dropout, then concat (256) -> Dense n.
  177,221,123 at D=96, 6,827,523 at D=18. The code's second ReLU after pooling is a no-op and is not repeated.

Profiles (``profile=``):
- ``"code"`` (default): every Dense layer is **linear**, as in the reference scripts, so the fusion head is one
  affine map broken only by dropout.
- ``"paper"``: ReLU after the hidden Dense layers (1024, 128), as the paper's text ("dense layers introduce more
  non-linearity") implies. Layer sizes and parameter counts are identical.
Dense kernels are glorot-uniform (Keras default), biases zero. Input layout: see :mod:`microexp.models.layout`.

On CPU both streams' conv -> ReLU -> max-pool -> dropout run through :func:`microexp.fast.conv.conv_relu_pool`, the
wide Dense-1024 layers (177 M weights at D=96) through :func:`microexp.fast.dense.linear` and the other dropouts
through :func:`microexp.fast.dropout.dropout`, as in MicroExpSTCNN (same mathematics, several times faster; the
dropout masks come from another random stream); ``fast=False`` forces the plain PyTorch layers. Parameters and
state_dict keys are the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

from microexp.models.keras import glorot_uniform_
from microexp.models.layout import paper_to_torch
from microexp.models.registry import ModelSpec, Shape, register
from microexp.models.stcnn import fast_path
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.runtime import onto_huge_pages

PROFILES = ("code", "paper")


class FuseStream(nn.Module):
    """One stream: Conv3D (rows, cols, frames) kernel -> ReLU -> MaxPool -> Dropout -> Flatten."""

    def __init__(self, input_shape: Shape, kernel: tuple[int, int, int] = (3, 3, 15), pool: int = 3,
                 filters: int = 32, dropout: float = 0.5):
        super().__init__()
        c, t, h, w = input_shape
        kt, kh, kw = paper_to_torch(kernel)
        feat = (filters, (t - kt + 1) // pool, (h - kh + 1) // pool, (w - kw + 1) // pool)
        if min(feat[1:]) < 1:
            raise ValueError(f"input {input_shape} (C, T, H, W) leaves no features after conv {kernel} "
                             f"(rows, cols, frames) and pool {pool}")
        self.feature_shape = feat
        self.out_features = feat[0] * feat[1] * feat[2] * feat[3]
        self.conv = nn.Conv3d(c, filters, kernel_size=(kt, kh, kw))
        self.pool = nn.MaxPool3d(pool)
        self.drop = nn.Dropout(dropout)
        glorot_uniform_(self.conv)

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """``fast``: the owning model's decision (:func:`microexp.models.stcnn.fast_path`), taken once for both
        streams."""
        if fast:
            from microexp.fast import conv

            return conv.conv_relu_pool(x, self.conv.weight, self.conv.bias, self.pool.kernel_size,
                                       self.drop.p if self.training else 0.0).flatten(1)
        return self.drop(self.pool(torch.relu(self.conv(x)))).flatten(1)


def _dense(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    glorot_uniform_(layer)
    onto_huge_pages(layer.weight)  # streamed two or three times a training step
    return layer


def _linear(layer: nn.Linear, x: torch.Tensor, fast: bool) -> torch.Tensor:
    if fast:
        from microexp.fast import dense

        return dense.linear(x, layer.weight, layer.bias)
    return layer(x)


def _dropout(drop: nn.Dropout, x: torch.Tensor, fast: bool) -> torch.Tensor:
    if fast:
        from microexp.fast.dropout import dropout

        return dropout(x, drop.p, drop.training)
    return drop(x)


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def _fast(model: nn.Module, eyes: torch.Tensor, mouth: torch.Tensor) -> bool:
    """Both streams take the fast path or neither (one decision per forward)."""
    return fast_path(model, eyes, model.eyes.conv.weight) and fast_path(model, mouth, model.mouth.conv.weight)


class IntermediateFuseNet(nn.Module):
    def __init__(self, n_classes: int, eyes_shape: Shape = (1, 96, 32, 32), mouth_shape: Shape = (1, 96, 32, 32),
                 profile: str = "code", kernel: tuple[int, int, int] = (3, 3, 15), dropout: float = 0.5,
                 fast: bool = True):
        super().__init__()
        _check_profile(profile)
        self.profile = profile
        self.fast = fast  # the fused CPU path; the GPU and inputs that need a gradient always use plain layers
        self.eyes = FuseStream(eyes_shape, kernel, dropout=dropout)
        self.mouth = FuseStream(mouth_shape, kernel, dropout=dropout)
        self.flat_features = self.eyes.out_features + self.mouth.out_features
        self.fc1 = _dense(self.flat_features, 1024)
        self.fc2 = _dense(1024, 128)
        self.fc3 = _dense(128, n_classes)
        self.drop = nn.Dropout(dropout)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.profile == "paper" else x

    def forward(self, eyes: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
        fast = _fast(self, eyes, mouth)
        x = torch.cat([self.eyes(eyes, fast), self.mouth(mouth, fast)], dim=1)
        x = _dropout(self.drop, self._hidden(_linear(self.fc1, x, fast)), fast)
        x = _dropout(self.drop, self._hidden(self.fc2(x)), fast)
        return self.fc3(x)


class LateFuseNet(nn.Module):
    def __init__(self, n_classes: int, eyes_shape: Shape = (1, 96, 32, 32), mouth_shape: Shape = (1, 96, 32, 32),
                 profile: str = "code", kernel: tuple[int, int, int] = (3, 3, 15), dropout: float = 0.5,
                 fast: bool = True):
        super().__init__()
        _check_profile(profile)
        self.profile = profile
        self.fast = fast  # the fused CPU path; the GPU and inputs that need a gradient always use plain layers
        self.eyes = FuseStream(eyes_shape, kernel, dropout=dropout)
        self.mouth = FuseStream(mouth_shape, kernel, dropout=dropout)
        self.flat_features = self.eyes.out_features + self.mouth.out_features
        self.eyes_fc = nn.ModuleList([_dense(self.eyes.out_features, 1024), _dense(1024, 128)])
        self.mouth_fc = nn.ModuleList([_dense(self.mouth.out_features, 1024), _dense(1024, 128)])
        self.out = _dense(256, n_classes)
        self.drop = nn.Dropout(dropout)

    def _head(self, x: torch.Tensor, layers: nn.ModuleList, fast: bool = False) -> torch.Tensor:
        for i, layer in enumerate(layers):
            x = _linear(layer, x, fast) if i == 0 else layer(x)  # the wide Dense-1024 on the flattened stream
            x = _dropout(self.drop, torch.relu(x) if self.profile == "paper" else x, fast)
        return x

    def forward(self, eyes: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
        fast = _fast(self, eyes, mouth)
        e = self._head(self.eyes(eyes, fast), self.eyes_fc, fast)
        m = self._head(self.mouth(mouth, fast), self.mouth_fc, fast)
        return self.out(torch.cat([e, m], dim=1))


def build_intermediate(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> IntermediateFuseNet:
    return IntermediateFuseNet(n_classes, input_shapes["eyes"], input_shapes["mouth"], **hparams)  # type: ignore[arg-type]


def build_late(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> LateFuseNet:
    return LateFuseNet(n_classes, input_shapes["eyes"], input_shapes["mouth"], **hparams)  # type: ignore[arg-type]


def fusenet_preprocess(frames: int = 96, code: bool = False) -> PreprocessConfig:
    """Eye and mouth crops from dlib landmarks (§1.4), 32x32, ``frames`` frames (96 CAS(ME)^2, 18 SMIC), the seed's
    dataset-wide mean/max normalisation fitted on the training fold (``global``).

    ``code=True`` reproduces the scripts' frame choice (§1.3): CAS(ME)^2 (frames=96) the fixed window of positions
    72..167 of the whole video with the BGR/RGB gray swap; SMIC (frames=18) the first 18 frames (in sorted order,
    not the scripts' unsorted listing)."""
    streams = (StreamConfig("eyes", "eyes", (32, 32)), StreamConfig("mouth", "mouth", (32, 32)))
    if not code:
        return PreprocessConfig(streams=streams, frames=frames, face="dlib", normalise="global")
    if frames == 96:
        return PreprocessConfig(streams=streams, frames=96, selection="whole", temporal="window", window=(72, 168),
                                face="dlib", normalise="global", gray="code")
    return PreprocessConfig(streams=streams, frames=frames, selection="whole", temporal="first", face="dlib",
                            normalise="global")


_SOURCE = "Reddy et al., IJCNN 2019 (MicroExpFuseNet); github bogireddytejareddy/micro-expression-recognition"

register(ModelSpec(
    name="fusenet-intermediate", builder=build_intermediate, preprocess=fusenet_preprocess(96), source=_SOURCE,
    description="eye + mouth 3D-CNN streams fused after flatten; linear Dense 1024-128 (profile=paper: ReLU); "
                "frames=96 CAS(ME)^2, 18 SMIC",
))
register(ModelSpec(
    name="fusenet-late", builder=build_late, preprocess=fusenet_preprocess(96), source=_SOURCE,
    description="eye + mouth 3D-CNN streams, each with linear Dense 1024-128, fused before the last Dense "
                "(profile=paper: ReLU); frames=96 CAS(ME)^2, 18 SMIC",
))
