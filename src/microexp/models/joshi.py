"""Joshi 2021, "Facial Microexpression Recognition using Spatio-Temporal CNNs" (docs/models.md §2.4, HEAD).

Four models on 9 key frames (onset, 3 between onset and apex, apex, 3 between apex and offset, offset) of 128x128
gray frames with raw 0-255 values. Each has a binary head (2 classes) and a multiclass head (7 SAMM classes);
``mode="auto"`` picks binary for n_classes == 2. The seed is Keras channels_last with time first, (T, H, W, C), so
kernels carry over unchanged to (N, C, T, H, W); only the flatten order differs (H, W, C versus C, H, W), which matters
for weight porting alone.

- ``joshi-3dcnn``: Conv3D kernels (1, 3, 3) (no temporal convolution), he_uniform. Flatten 777,600 (binary) /
  518,400 (multiclass).
- ``joshi-cnn-lstm``: time-distributed Conv2D 32 -> pool -> Conv2D 64 -> pool -> Flatten (57,600) -> Dropout 0.3 ->
  LSTM 32 (ReLU activation, sigmoid recurrent activation, input dropout 0.4) -> Dense 24 ReLU -> Dropout -> Dense.
- ``joshi-convlstm``: ConvLSTM2D 32 3x3 valid (ReLU, hard_sigmoid recurrent, return_sequences) -> MaxPool (1,2,2)
  -> Flatten (1,143,072) -> Dense 48 (binary) / 64 (multiclass) ReLU -> Dropout 0.3 -> Dense.
- ``joshi-2dcnn-vote``: a frame-level 2D CNN (flatten 57,600 binary / 50,176 multiclass) applied to each of the 9
  frames. Its spec's trainer is ``frames-vote`` (:mod:`microexp.train.vote`): each frame is a training sample with
  its clip's label (``frame_logits(clip)`` gives (N, T, K)), and a clip is scored by the majority vote of its frames
  (vote shares as probabilities; the seed's "at least 5 of 9 frames correct" rule is ``vote.clip_correct``).
  ``forward(clip)`` returns the clip score mean_t log_softmax(frame logits) (a log geometric-mean probability), so
  ``train.trainer=clip`` also works (a different loss and scoring from the seed's).
Custom Keras cells: :mod:`microexp.models.keras`. Parameter counts are trainable torch parameters; Keras "Total
params" adds BatchNorm's moving mean/variance (2 per BN channel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from microexp.models.keras import (
    KerasConvLSTM2D,
    KerasLSTM,
    TimeDistributed,
    batchnorm,
    glorot_uniform_,
    he_uniform_,
)
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig

MODES = ("auto", "binary", "multiclass")


def _mode(mode: str, n_classes: int) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "binary" if n_classes == 2 else "multiclass"
    return mode


def _valid(n: int, k: int = 3) -> int:
    return n - k + 1


def _conv(cls: type[nn.Module], c_in: int, c_out: int, kernel: int | tuple[int, ...], init: str) -> nn.Module:
    layer = cls(c_in, c_out, kernel)
    (he_uniform_ if init == "he" else glorot_uniform_)(layer)
    return layer


def _linear(n_in: int, n_out: int, init: str) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    (he_uniform_ if init == "he" else glorot_uniform_)(layer)
    return layer


class Joshi3DCNN(nn.Module):
    def __init__(self, n_classes: int, input_shape: Shape = (1, 9, 128, 128), mode: str = "auto"):
        super().__init__()
        self.mode = _mode(mode, n_classes)
        c, t, h, w = input_shape
        k = (1, 3, 3)
        f1, f2 = (64, 96) if self.mode == "binary" else (32, 64)
        layers: list[nn.Module] = [_conv(nn.Conv3d, c, f1, k, "he"), nn.ReLU(), nn.MaxPool3d((1, 2, 2))]
        if self.mode == "multiclass":
            layers.append(batchnorm("3d", f1))
        layers += [_conv(nn.Conv3d, f1, f2, k, "he"), nn.ReLU(), nn.MaxPool3d((1, 2, 2))]
        if self.mode == "multiclass":
            layers.append(batchnorm("3d", f2))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.flat_features = f2 * t * (_valid(_valid(h) // 2) // 2) * (_valid(_valid(w) // 2) // 2)
        if self.mode == "binary":
            self.head = nn.Sequential(_linear(self.flat_features, 24, "he"), nn.ReLU(), nn.Dropout(0.35),
                                      _linear(24, n_classes, "he"))
        else:
            self.head = nn.Sequential(_linear(self.flat_features, 32, "he"), nn.ReLU(), nn.Dropout(0.27),
                                      batchnorm("1d", 32), _linear(32, n_classes, "he"))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clip))


class JoshiCNNLSTM(nn.Module):
    def __init__(self, n_classes: int, input_shape: Shape = (1, 9, 128, 128), mode: str = "auto"):
        super().__init__()
        self.mode = _mode(mode, n_classes)
        c, t, h, w = input_shape
        self.frames = TimeDistributed(nn.Sequential(
            _conv(nn.Conv2d, c, 32, 3, "glorot"), nn.ReLU(), nn.MaxPool2d(2),
            _conv(nn.Conv2d, 32, 64, 3, "glorot"), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()))
        self.flat_features = 64 * (_valid(_valid(h) // 2) // 2) * (_valid(_valid(w) // 2) // 2)
        self.drop = nn.Dropout(0.3)
        self.lstm = KerasLSTM(self.flat_features, 32, activation="relu", recurrent_activation="sigmoid",
                              dropout=0.4)
        self.head = nn.Sequential(_linear(32, 24, "glorot"), nn.ReLU(),
                                  nn.Dropout(0.35 if self.mode == "binary" else 0.3),
                                  _linear(24, n_classes, "glorot"))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.drop(self.frames(clip))))


class JoshiConvLSTM(nn.Module):
    def __init__(self, n_classes: int, input_shape: Shape = (1, 9, 128, 128), mode: str = "auto"):
        super().__init__()
        self.mode = _mode(mode, n_classes)
        c, t, h, w = input_shape
        self.convlstm = KerasConvLSTM2D(c, 32, 3, padding="valid", activation="relu",
                                        recurrent_activation="hard_sigmoid", return_sequences=True)
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.flat_features = 32 * t * (_valid(h) // 2) * (_valid(w) // 2)
        dense = 48 if self.mode == "binary" else 64
        self.head = nn.Sequential(_linear(self.flat_features, dense, "glorot"), nn.ReLU(), nn.Dropout(0.3),
                                  _linear(dense, n_classes, "glorot"))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.convlstm(clip)).flatten(1))


class Joshi2DCNN(nn.Module):
    """Frame-level 2D CNN, trained per frame and scored by majority vote (the ``frames-vote`` trainer)."""

    def __init__(self, n_classes: int, input_shape: Shape = (1, 9, 128, 128), mode: str = "auto"):
        super().__init__()
        self.mode = _mode(mode, n_classes)
        c, t, h, w = input_shape
        widths = (32, 64) if self.mode == "binary" else (64, 128, 256)
        layers: list[nn.Module] = []
        c_in = c
        for width in widths:
            layers += [_conv(nn.Conv2d, c_in, width, 3, "he"), nn.ReLU(), nn.MaxPool2d(2), batchnorm("2d", width)]
            c_in = width
            h, w = _valid(h) // 2, _valid(w) // 2
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        self.flat_features = c_in * h * w
        if self.mode == "binary":
            head: list[nn.Module] = [_linear(self.flat_features, 64, "he"), nn.ReLU(), nn.Dropout(0.3),
                                     batchnorm("1d", 64), _linear(64, n_classes, "he")]
        else:
            head = [_linear(self.flat_features, 384, "he"), nn.ReLU(), nn.Dropout(0.42), batchnorm("1d", 384),
                    _linear(384, 96, "he"), nn.ReLU(), nn.Dropout(0.25), batchnorm("1d", 96),
                    _linear(96, n_classes, "he")]
        self.head = nn.Sequential(*head)

    def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> per-frame logits (N, T, K)."""
        n, c, t, h, w = clip.shape
        frames = clip.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        return self.head(self.cnn(frames)).view(n, t, -1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.frame_logits(clip), dim=-1).mean(dim=1)


def _builder(cls: type[nn.Module]):
    def build(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> nn.Module:
        return cls(n_classes, input_shapes["clip"], **hparams)
    return build


def joshi_preprocess(region: str = "whole") -> PreprocessConfig:
    """9 key frames (onset, 3 between onset and apex at onset + k*floor((apex-onset)/4), apex, 3 likewise, offset)
    at 128x128 (Keras ``load_img`` nearest resize), raw 0-255 values: ``selection="keyframes9"`` with
    ``temporal="none"`` (no resampling). The seed uses the whole stored frame (no
    face crop, ``region="whole"``); ``region="face"`` is the cropped variant."""
    return PreprocessConfig(streams=(StreamConfig("clip", region, (128, 128)),), frames=9, selection="keyframes9",
                            temporal="none", normalise="none", resize="nearest")


_SOURCE = "Joshi 2021 (Spatio-Temporal CNNs, SAMM); github ShreyanshJoshi/Facial-Microexpression-Recognition"

for _name, _cls, _desc in (
    ("joshi-3dcnn", Joshi3DCNN, "Conv3D (1,3,3) x2 + Dense; binary 64/96/24, multiclass 32/64/32 with BatchNorm"),
    ("joshi-cnn-lstm", JoshiCNNLSTM, "time-distributed 2D CNN -> Keras LSTM 32 (ReLU, sigmoid gates) -> Dense 24"),
    ("joshi-convlstm", JoshiConvLSTM, "Keras ConvLSTM2D 32 (ReLU, hard_sigmoid gates) -> Dense 48/64"),
    ("joshi-2dcnn-vote", Joshi2DCNN, "frame-level 2D CNN trained per frame, majority vote over the 9 frames (trainer frames-vote)"),
):
    register(ModelSpec(name=_name, builder=_builder(_cls), preprocess=joshi_preprocess(), source=_SOURCE,
                       description=_desc + "; mode auto/binary/multiclass", classes=7,
                       trainer="frames-vote" if _cls is Joshi2DCNN else "clip"))
