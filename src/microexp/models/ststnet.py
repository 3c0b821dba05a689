"""STSTNet (Liong et al., FG 2019; docs/evaluation.md §3.2), as in the authors' PyTorch port (christy1206/STSTNet).

Input: onset->apex optical flow u, v and optical strain, 3x28x28 (stream ``flow``, kind ``flowstrain``, T = 1);
the strain is computed on the full-size flow and then resized (``strain_at: full``).
Three parallel 3x3 convolutions (padding 2) with 3, 5 and 8 channels, each ReLU -> BatchNorm -> MaxPool 3/3
(padding 1) -> Dropout 0.5; concatenated (16 channels) -> AvgPool 2/2 -> Flatten (400) -> Linear n.
1,683 parameters for 3 classes ("about 1.7 K"). PyTorch default initialisation and BatchNorm settings, as the port.
Training in the seed: Adam lr 5e-5, batch 256, 800 epochs, last epoch reported.
"""

from __future__ import annotations

import torch
from torch import nn

from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig


class STSTNet(nn.Module):
    def __init__(self, n_classes: int = 3, input_shape: Shape = (3, 1, 28, 28), dropout: float = 0.5):
        super().__init__()
        c, t, h, w = input_shape
        if t != 1:
            raise ValueError(f"STSTNet reads one onset->apex flow field (T=1), got input {input_shape}")
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c, width, 3, padding=2), nn.ReLU(), nn.BatchNorm2d(width),
                          nn.MaxPool2d(3, stride=3, padding=1), nn.Dropout(dropout))
            for width in (3, 5, 8)])
        self.avgpool = nn.AvgPool2d(2)

        def side(n: int) -> int:
            return ((n + 2) + 2 - 3) // 3 + 1

        self.flat_features = 16 * (side(h) // 2) * (side(w) // 2)
        self.fc = nn.Linear(self.flat_features, n_classes)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        x = flow[:, :, 0]  # (N, C, 1, H, W) -> (N, C, H, W)
        x = torch.cat([b(x) for b in self.branches], dim=1)
        return self.fc(self.avgpool(x).flatten(1))


def build_ststnet(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> STSTNet:
    return STSTNet(n_classes, input_shapes["flow"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="ststnet",
    builder=build_ststnet,
    # strain from the flow at flow_size, before it is resized to 28x28 (strain_at="full"), as the STSTNet paper
    preprocess=PreprocessConfig(streams=(StreamConfig("flow", "face", (28, 28), "flowstrain"),), frames=1,
                                selection="onset_apex", normalise="none", strain_at="full"),
    source="Liong et al., FG 2019 (STSTNet); github christy1206/STSTNet (PyTorch port)",
    description="shallow triple-stream 3D CNN on onset->apex flow u, v + optical strain (28x28)",
))
