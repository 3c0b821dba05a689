"""OFF-ApexNet (Gan et al., Signal Processing: Image Communication 2019; docs/evaluation.md §3.7).

Input: onset->apex optical flow, u and v, 28x28 (stream ``flow``, kind ``flow``, T = 1). Two streams without weight
sharing, one on u and one on v, each Conv 6@5x5 (same) -> ReLU -> MaxPool 2 -> Conv 16@5x5 (same) -> ReLU ->
MaxPool 2 -> Flatten (784); concatenated (1,568) -> FC 1024 ReLU -> Dropout 0.5 -> FC 1024 ReLU -> Dropout 0.5 ->
FC n. 2,664,475 parameters for 3 classes (the "2.66 M" of the Off-TANet comparison table). No official code exists;
``conv_relu=False`` drops the convolution ReLUs as in the Off-TANet re-implementation. (MEB's ``OffApexNet`` is a
different, single-stream simplification.)
"""

from __future__ import annotations

import torch
from torch import nn

from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig


class _FlowStream(nn.Sequential):
    def __init__(self, conv_relu: bool):
        act = nn.ReLU if conv_relu else nn.Identity
        super().__init__(nn.Conv2d(1, 6, 5, padding=2), act(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), act(), nn.MaxPool2d(2), nn.Flatten())


class OffApexNet(nn.Module):
    def __init__(self, n_classes: int = 3, input_shape: Shape = (2, 1, 28, 28), hidden: int = 1024,
                 dropout: float = 0.5, conv_relu: bool = True):
        super().__init__()
        c, t, h, w = input_shape
        if c != 2 or t != 1:
            raise ValueError(f"OFF-ApexNet reads one (u, v) flow field, shape (2, 1, H, W); got {input_shape}")
        self.u_stream = _FlowStream(conv_relu)
        self.v_stream = _FlowStream(conv_relu)
        self.flat_features = 2 * 16 * (h // 4) * (w // 4)
        self.head = nn.Sequential(nn.Linear(self.flat_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes))

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        u, v = flow[:, 0:1, 0], flow[:, 1:2, 0]
        return self.head(torch.cat([self.u_stream(u), self.v_stream(v)], dim=1))


def build_offapexnet(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> OffApexNet:
    return OffApexNet(n_classes, input_shapes["flow"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="offapexnet",
    builder=build_offapexnet,
    preprocess=PreprocessConfig(streams=(StreamConfig("flow", "face", (28, 28), "flow"),), frames=1,
                                selection="onset_apex", normalise="none"),
    source="Gan et al., SPIC 2019 (OFF-ApexNet); no official code",
    description="two-stream CNN on onset->apex flow u and v (28x28), FC 1024-1024",
))
