"""Regional inception-CNN + LSTM (Aouayeb, Hamidouche, Kpalma, Benazza-Benyahia, MLSP 2019; docs/models.md
§4.3-4.6). Six facial regions (streams ``roi1``..``roi6`` = R0..R5 of the 240x280 canvas), each with its own CNN
applied to every frame, one LSTM per region, and a fused classifier.

Per-region CNN (per frame): Conv 4@5x5 ReLU -> MaxPool 2 -> Conv 8@3x3 ReLU -> MaxPool 2 (all 'same') -> inception
block of five branches [MaxPool | 16@1x1 | 16@3x3 | 16@5x5 | 16@7x7] (ReLU, each ending in MaxPool 2 'same') ->
concat (72 channels at 1/8 resolution) -> GlobalAveragePooling -> Dense 2048 ReLU -> Dropout 0.5 -> Dense 256 ReLU ->
Dropout 0.5: the 256-d per-frame feature. Conv kernels N(0, 0.1), dense N(0, 0.01), biases zero.
Per region: LSTM 64 (tanh, hard_sigmoid recurrent activation as under TF 1.14, kernel N(0, 0.01), orthogonal
recurrent kernel, unit forget bias) on the frame features -> LeakyReLU 0.01 -> Dropout 0.2. Concat (384) -> Dense 256
(N(0, 0.1)) -> LeakyReLU 0.01 -> Dropout 0.5 -> Dense n.

Profiles (§4.6):
- ``"paper"`` (default, the MLSP 2019 system): no patches, no squeeze-excitation.
- ``"code"``: adds the 2022 follow-up's squeeze-excitation: in each CNN an SE gate on the 72 maps (1x1 conv to 18,
  ReLU; 1x1 conv to 72, sigmoid; multiply) then Conv 1x1 162 ReLU before pooling; after the LSTMs an SE fusion
  (Dense 96 LeakyReLU -> Dense 384 sigmoid -> multiply). The 2022 code's 9-of-16 patch split is left out: as
  published it is inconsistent (16 patches, 9 inputs) and cannot run. Its L1 1e-5 penalty on the Dense 256 kernel
  belongs to the loss, not the module.
Training: the seed trains in two stages, the CNN per region on frames (each frame carries its clip's label), then the
LSTM stage on the frozen Dense-256 features: ``train.trainer=two-stage`` (:mod:`microexp.train.twostage`), which
reads ``cnn`` (stage 1, per region) and ``classify`` (stage 2, on per-frame features). ``train.trainer=clip`` (the
spec's default) trains the same module end to end.
Padding: frames that are zero in every region (``preprocess.pad_to``, "all frames padded") enter the LSTMs as zero
features placed before the real frames, as the seed's ``pad_sequences`` ('pre') padded its feature sequences; the
two-stage trainer leaves them out of stage 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from microexp.models.keras import KerasLSTM, glorot_uniform_, normal_
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig

PROFILES = ("paper", "code")
REGIONS = ("roi1", "roi2", "roi3", "roi4", "roi5", "roi6")
# (rows, cols) of R0..R5 on the 240-wide x 280-high canvas (crop_6_ROIs.py); the region size is a parameter
REGION_SIZES = {"roi1": (80, 100), "roi2": (80, 100), "roi3": (80, 120), "roi4": (60, 60), "roi5": (60, 60),
                "roi6": (60, 160)}


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    layer = nn.Conv2d(c_in, c_out, k, padding="same")
    normal_(layer, 0.1)
    return layer


def _dense(n_in: int, n_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    normal_(layer, std)
    return layer


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, ceil_mode=True)  # Keras 'same' for pool 2 / stride 2 (pads the end when odd)


class InceptionRegionCNN(nn.Module):
    """Per-frame CNN for one region: image (N, C, H, W) -> 256-d feature."""

    def __init__(self, channels: int = 1, profile: str = "paper", features: int = 256, hidden: int = 2048):
        super().__init__()
        self.base = nn.Sequential(_conv(channels, 4, 5), nn.ReLU(), _pool(), _conv(4, 8, 3), nn.ReLU(), _pool())
        self.branches = nn.ModuleList([nn.Identity()]
                                      + [nn.Sequential(_conv(8, 16, k), nn.ReLU()) for k in (1, 3, 5, 7)])
        self.pool = _pool()
        self.se: nn.Module | None = None
        width = 72
        if profile == "code":
            self.se = nn.Sequential(_conv(72, 18, 1), nn.ReLU(), _conv(18, 72, 1), nn.Sigmoid())
            self.expand = nn.Sequential(_conv(72, 162, 1), nn.ReLU())
            width = 162
        self.head = nn.Sequential(_dense(width, hidden, 0.01), nn.ReLU(), nn.Dropout(0.5),
                                  _dense(hidden, features, 0.01), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base(x)
        x = torch.cat([self.pool(b(x)) for b in self.branches], dim=1)
        if self.se is not None:
            x = self.expand(x * self.se(x))
        return self.head(x.mean(dim=(2, 3)))


def padding_mask(streams: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, T): True where a frame is exactly zero in every region stream, i.e. padding (``preprocess.pad_to``
    appends zero frames after normalisation; a real frame scaled to [-1, 1] is never all zeros)."""
    masks = [(x == 0).transpose(1, 2).flatten(2).all(dim=-1) for x in streams.values()]
    return torch.stack(masks).all(dim=0)


def pre_pad(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-frame features (N, T, F) with the padded steps ``mask`` (N, T) zeroed and moved before the real frames
    (their order kept): Keras ``pad_sequences``' default 'pre' padding of the seed's LSTM input."""
    real = ~mask
    pos = torch.where(real, mask.sum(dim=1, keepdim=True) + real.cumsum(dim=1) - 1, mask.cumsum(dim=1) - 1)
    kept = features * real.unsqueeze(-1).to(features.dtype)
    return torch.zeros_like(features).scatter(1, pos.unsqueeze(-1).expand_as(features), kept)


class RegionalCNNLSTM(nn.Module):
    def __init__(self, n_classes: int, input_shapes: dict[str, Shape], profile: str = "paper",
                 lstm_units: int = 64, features: int = 256, hidden: int = 2048):
        super().__init__()
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        missing = [r for r in REGIONS if r not in input_shapes]
        if missing:
            raise ValueError(f"regional model needs streams {list(REGIONS)}; missing {missing}")
        self.profile = profile
        self.feature_size = features
        self.cnn = nn.ModuleDict({r: InceptionRegionCNN(input_shapes[r][0], profile, features, hidden) for r in REGIONS})
        self.lstm = nn.ModuleDict({r: KerasLSTM(features, lstm_units, activation="tanh",
                                                recurrent_activation="hard_sigmoid", kernel_init=0.01)
                                   for r in REGIONS})
        fused = lstm_units * len(REGIONS)
        self.se: nn.Module | None = None
        if profile == "code":
            self.se = nn.Sequential(_dense(fused, fused // 4, 0.01), nn.LeakyReLU(0.01), nn.Linear(fused // 4, fused),
                                    nn.Sigmoid())
        self.drop_lstm = nn.Dropout(0.2)
        self.fc = _dense(fused, 256, 0.1)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(256, n_classes)
        glorot_uniform_(self.out)

    def frame_features(self, region: str, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) region clip -> per-frame 256-d features (N, T, 256)."""
        n, c, t, h, w = x.shape
        return self.cnn[region](x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)).view(n, t, -1)

    def classify(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-region frame features (N, T, 256) -> logits: the LSTMs, fusion and classifier (stage 2)."""
        parts = [self.drop_lstm(F.leaky_relu(self.lstm[r](features[r]), 0.01)) for r in REGIONS]
        x = torch.cat(parts, dim=1)
        if self.se is not None:
            x = x * self.se(x)
        return self.out(self.drop(F.leaky_relu(self.fc(x), 0.01)))

    def sequence_features(self, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-region LSTM inputs (N, T, 256): the frames' CNN features, padding frames as zero features placed
        first ('pre' padding, :func:`pre_pad`); without padding simply the frame features."""
        mask = self.padding_mask(streams)
        return {r: pre_pad(self.frame_features(r, streams[r]), mask) for r in REGIONS}

    @staticmethod
    def padding_mask(streams: dict[str, torch.Tensor]) -> torch.Tensor:
        return padding_mask({r: streams[r] for r in REGIONS})

    def forward(self, **streams: torch.Tensor) -> torch.Tensor:
        return self.classify(self.sequence_features(streams))


def build_regional(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> RegionalCNNLSTM:
    return RegionalCNNLSTM(n_classes, input_shapes, **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="regional-lstm",
    builder=build_regional,
    # six landmark ROIs (roi1..roi6 = R0..R5), gray; the seed scales pixels to [-1, 1] (x/127.5 - 1), here per clip
    # (minus1to1). The seed feeds every frame (padded/truncated to 250); microexp resamples to `frames`.
    preprocess=PreprocessConfig(streams=tuple(StreamConfig(r, r, REGION_SIZES[r]) for r in REGIONS), frames=64,
                                selection="onset_offset", face="dlib", normalise="minus1to1"),
    source="Aouayeb et al., MLSP 2019 (local regions, CNN + LSTM); closest code github MouathAb/AnalyseMiE-CNN_LSTM_SE",
    description="per-region inception CNN per frame -> LSTM 64 per region -> fused Dense 256; profile paper|code (SE)",
))
