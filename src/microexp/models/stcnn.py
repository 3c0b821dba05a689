"""MicroExpSTCNN (Reddy et al., IJCNN 2019), as coded in the reference repository (docs/models.md §1.5).

Conv3D 32 filters over 3 rows x 3 cols x 15 frames (valid, ReLU) -> MaxPool 3x3x3 -> Dropout 0.5 -> Flatten ->
Dense 128 ReLU (N(0, 0.05) init) -> Dropout 0.5 -> Dense n_classes (N(0, 0.05) init) -> softmax (in the loss).
Conv kernel glorot-uniform, biases zero. 44,241,667 parameters for 64x64x96 with 3 classes; 1,643,267 for 64x64x18.
Paper Table I's trailing Dropout on the logits is a table error and is not reproduced.

On CPU, conv -> ReLU -> max-pool -> dropout runs through :func:`microexp.fast.conv.conv_relu_pool` (the
dropout in its pooling pass), the Dense-128 through :mod:`microexp.fast.dense` and the other dropout through
:mod:`microexp.fast.dropout` (same mathematics, several times faster; the dropout masks come from another random
stream); ``fast=False`` forces the plain PyTorch layers. Parameters and state_dict keys
are the same either way, so checkpoints are interchangeable. :mod:`microexp.fast` (and numba) is imported by the
first forward pass that can take the fast path, not by building the model.
"""

from __future__ import annotations

import torch
from torch import nn

from microexp.models.keras import glorot_uniform_, normal_
from microexp.models.layout import paper_to_torch
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.runtime import onto_huge_pages


def fast_path(model: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``model`` (a module with a ``fast`` flag: STCNN, the FuseNets) runs ``x`` through the fast CPU path:
    the flag is set, ``x`` is on the CPU, no module of ``model`` has a hook (Grad-CAM and feature taps need the
    modules themselves to run), and :func:`microexp.fast.conv.usable` accepts ``x`` and the first conv ``weight``."""
    if not getattr(model, "fast", False) or x.device.type != "cpu":  # first: the GPU never imports microexp.fast
        return False
    if any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in model.modules()):
        return False
    from microexp.fast.conv import usable

    return usable(x, weight)


class MicroExpSTCNN(nn.Module):
    def __init__(self, n_classes: int, input_shape: Shape = (1, 96, 64, 64), kernel: tuple[int, int, int] = (3, 3, 15),
                 pool: int = 3, filters: int = 32, dense: int = 128, dropout: float = 0.5, fast: bool = True):
        super().__init__()
        self.fast = fast  # the fused CPU path; the GPU and inputs that need a gradient always use plain layers
        c, t, h, w = input_shape
        kt, kh, kw = paper_to_torch(kernel)
        if t < kt or h < kh or w < kw:
            raise ValueError(f"input (T={t}, H={h}, W={w}) is smaller than the kernel {kernel} (rows, cols, frames)")
        self.input_shape = input_shape
        self.conv = nn.Conv3d(c, filters, kernel_size=(kt, kh, kw))
        self.pool = nn.MaxPool3d(pool)
        self.drop1 = nn.Dropout(dropout)
        feat = (filters, (t - kt + 1) // pool, (h - kh + 1) // pool, (w - kw + 1) // pool)
        if min(feat[1:]) < 1:
            raise ValueError(f"input {input_shape} leaves no features after conv {kernel} and pool {pool}")
        self.feature_shape = feat
        self.fc1 = nn.Linear(feat[0] * feat[1] * feat[2] * feat[3], dense)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dense, n_classes)
        glorot_uniform_(self.conv)
        normal_(self.fc1, 0.05)  # Keras 2.0 init='normal': N(0, 0.05)
        normal_(self.fc2, 0.05)
        onto_huge_pages(self.fc1.weight)  # streamed two or three times a training step

    def _fast_path(self, clip: torch.Tensor) -> bool:
        return fast_path(self, clip, self.conv.weight)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        if self._fast_path(clip):
            from microexp.fast import conv

            return conv.conv_relu_pool(clip, self.conv.weight, self.conv.bias, self.pool.kernel_size,
                                       self.drop1.p if self.training else 0.0).flatten(1)
        return self.drop1(self.pool(torch.relu(self.conv(clip)))).flatten(1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if self._fast_path(clip):
            from microexp.fast import dense
            from microexp.fast.dropout import dropout

            hidden = torch.relu(dense.linear(self.features(clip), self.fc1.weight, self.fc1.bias))
            return self.fc2(dropout(hidden, self.drop2.p, self.training))
        return self.fc2(self.drop2(torch.relu(self.fc1(self.features(clip)))))


def build_stcnn(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> MicroExpSTCNN:
    return MicroExpSTCNN(n_classes, input_shapes["clip"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="stcnn",
    builder=build_stcnn,
    preprocess=PreprocessConfig(streams=(StreamConfig("clip", "face", (64, 64)),), frames=96,
                                normalise="zscore"),
    source="Reddy et al., IJCNN 2019 (MicroExpSTCNN); github bogireddytejareddy/micro-expression-recognition",
    description="3D CNN on 64x64xD gray face clips; kernel (3,3,15) rows x cols x frames",
))
