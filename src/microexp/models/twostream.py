"""Two-stream 3D CNN on raw frames + saliency maps (Microfacial-exp, coherent Oct-2018 ``twoStream``;
docs/models.md §3.6). 6 CASME II classes (disgust, fear, happiness, repression, sadness, surprise).

Per stream (no weight sharing): Conv3D 128 3x3x3 same ReLU -> MaxPool (1,2,2) -> Conv3D 256 3x3x3 same ReLU ->
MaxPool (2,2,2). Concatenate on channels (raw first) -> 3 x Conv3D 512 3x3x3 same ReLU -> MaxPool (2,2,2) -> Flatten
(311,296 at 152x32x32) -> Dense 100 ReLU -> Dense 100 ReLU -> Dense n. Keras default initialisers (glorot-uniform,
zero bias). The seed is channels_last with time first, (T, H, W, C), so kernels carry over unchanged to (N, C, T, H, W).
54,152,758 parameters at 152x32x32 with 6 classes. Inputs as the seed: every frame of the clip, interpolated with
optical flow up to 151 frames, bilinear 32x32, raw 0-255 values, zero-padded to 152 frames; the saliency stream is
the positive (uint8-saturated) deviation from the per-pixel temporal median. The unfinished Feb-2019 "NewNet" is not reproduced (it cannot be
built as written).
"""

from __future__ import annotations

import torch
from torch import nn

from microexp.models.keras import glorot_uniform_
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig


def _conv(c_in: int, c_out: int) -> nn.Conv3d:
    layer = nn.Conv3d(c_in, c_out, 3, padding=1)  # 'same' for an odd kernel at stride 1
    glorot_uniform_(layer)
    return layer


def _dense(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    glorot_uniform_(layer)
    return layer


class _Stream(nn.Sequential):
    def __init__(self, channels: int, w1: int, w2: int):
        super().__init__(_conv(channels, w1), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
                         _conv(w1, w2), nn.ReLU(), nn.MaxPool3d(2))


class TwoStream3DCNN(nn.Module):
    def __init__(self, n_classes: int = 6, clip_shape: Shape = (1, 152, 32, 32),
                 saliency_shape: Shape = (1, 152, 32, 32), dense: int = 100,
                 widths: tuple[int, int, int] = (128, 256, 512)):
        super().__init__()
        if clip_shape[1:] != saliency_shape[1:]:
            raise ValueError(f"clip {clip_shape} and saliency {saliency_shape} must share (T, H, W)")
        _, t, h, w = clip_shape
        t_out, h_out, w_out = t // 2 // 2, h // 2 // 2 // 2, w // 2 // 2 // 2
        if min(t_out, h_out, w_out) < 1:
            raise ValueError(f"input {clip_shape} (C, T, H, W) is too small for three 2x poolings (T: two)")
        c1, c2, c3 = widths  # the seed's (128, 256, 512); narrower only for quick tests
        self.clip_stream = _Stream(clip_shape[0], c1, c2)
        self.saliency_stream = _Stream(saliency_shape[0], c1, c2)
        self.fusion = nn.Sequential(_conv(2 * c2, c3), nn.ReLU(), _conv(c3, c3), nn.ReLU(),
                                    _conv(c3, c3), nn.ReLU(), nn.MaxPool3d(2), nn.Flatten())
        self.flat_features = c3 * t_out * h_out * w_out
        self.head = nn.Sequential(_dense(self.flat_features, dense), nn.ReLU(), _dense(dense, dense), nn.ReLU(),
                                  _dense(dense, n_classes))

    def forward(self, clip: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.clip_stream(clip), self.saliency_stream(saliency)], dim=1)
        return self.head(self.fusion(x))


def build_twostream(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> TwoStream3DCNN:
    return TwoStream3DCNN(n_classes, input_shapes["clip"], input_shapes["saliency"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="twostream",
    builder=build_twostream,
    # the seed (interpolation.py, twoTrain.py): each video's frames at 150x150, motion-compensated interpolation
    # up to 151 frames (its targetfrms=150 schedule), bilinear resize to 32x32, raw 0-255 values, zero-padded to
    # 152. Saliency = positive deviation of each frame from the clip's per-pixel temporal median, saturated to
    # uint8 as its PNG write (§3.4).
    preprocess=PreprocessConfig(streams=(StreamConfig("clip", "face", (32, 32), "raw"),
                                         StreamConfig("saliency", "face", (32, 32), "saliency")),
                                frames=151, pad_to=152, selection="whole", temporal="interpolate_pad",
                                flow_size=150, resize="linear", saliency="positive", normalise="none"),
    source="Microfacial-exp two-stream 3D CNN (CASME II, Oct-2018 twoStream); github ayush2610/Microfacial-exp",
    description="raw-frame + saliency 3D-CNN streams concatenated, 3 x Conv3D 512, Dense 100-100; 6 classes",
    classes=6,
))
