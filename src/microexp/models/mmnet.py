"""MMNet (Li, Sui, Zhu, Zhao, "MMNet: Muscle motion-guided network for micro-expression recognition", IJCAI 2022;
docs/models.md "MMNet"), layer for layer as the authors' ``CASME2_5.py`` + ``CA_block.py`` + ``PC_module.py``.

Input: the onset and apex frames, RGB, 224x224, ImageNet-normalised (stream ``clip``, kind raw, ``color: rgb``,
T = 2: onset, apex). Two branches:

* muscle motion (main branch): apex - onset -> Conv 180@3x3 stride 2 (no bias) -> BN -> ReLU (112x112) ->
  Conv 128@3x3 (no bias) -> BN -> ReLU -> four CA blocks (128 -> 128 -> 256 -> 512 channels; the last three with
  stride 2 and a 1x1 conv + BN shortcut; 112 -> 56 -> 28 -> 14). A CA block is a ResNet basic block whose second
  convolution is 1x1, followed by spatial attention: channel mean and max -> Conv 1x1 (2 -> 1, no bias) -> BN ->
  sigmoid, multiplied by the previous block's attention max-pooled 3/2 (pad 1), and the output multiplied by it.
* position calibration (sub-branch): the onset frame resized to 14x14 (bilinear, no antialias: torchvision's
  ``Resize`` on tensors at the time) -> a small ViT: 1x1 patch embedding to 512, learnt position embedding (196),
  2 blocks of 4 heads, MLP x4, LayerNorm eps 1e-6 -> (512, 14, 14) position embeddings.

Fusion: main + position, flattened (100,352) -> Linear n. Initialisation as the code: Kaiming normal (fan_out) for
the main branch's convolutions, BN 1/0, truncated normal 0.02 for the ViT's linear layers and embeddings, PyTorch
defaults elsewhere.

``unused_layers`` (default True): the authors' module also holds layers its forward never calls (``pos``: Conv
3->512 1x1 + BN; ``head``: Linear 12544 -> 38 without bias; ``timeembed`` 4x111x111; the ViT's ``cls_token``,
its ``head`` Linear 512 -> 5 and ``to_Mask`` Linear 512 -> 1). They are kept so that the parameter count is the
authors' (9,970,947 for 5 classes); they never change an output. ``unused_layers=False`` drops them (9,438,841).
``profile="code3"``: the 3-class script's sub-branch (3 blocks, MLP x2, stochastic depth up to 0.3); its first
convolution (3 input channels in 2 groups) cannot be built as published, so ours keeps one group (documented).
``pretrained=PATH``: a local weight file (safetensors or a torch state dict, e.g. ``{"state_dict": ...}``) loaded
into the main branch (:func:`load_backbone`); nothing is downloaded (the code's ImageNet flag is dead code).
``fast`` (default on): inference (no gradient) runs the main branch in channels-last memory (oneDNN's faster
convolution layout on CPU: 1.6x at batch 8; the same weights and mathematics, tests/test_mmnet.py checks that both
agree). Training keeps PyTorch's default layout: channels-last gained only ~1.1x there, and its different rounding
moves small runs (docs/models.md "MMNet", speed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from microexp.errors import ConfigError
from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig

PROFILES = ("code5", "code3")
# the position-calibration ViT of each script: (depth, mlp_ratio, drop_path_rate)
VIT = {"code5": (2, 4, 0.0), "code3": (3, 2, 0.3)}


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class CABlock(nn.Module):
    """Basic block with a 1x1 second convolution and spatial (channel mean / max) attention."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.attn = nn.Sequential(nn.Conv2d(2, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor, attn_last: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = F.relu(out + identity)
        attn = self.attn(torch.cat([out.mean(1, keepdim=True), out.amax(1, keepdim=True)], dim=1))
        if attn_last is not None:
            attn = attn_last * attn
        return out * attn, attn  # the code's repeat over channels is a broadcast


class MainBranch(nn.Module):
    """The ``resnet18_pos_attention`` of CA_block.py: conv1 180 -> 128, one CA block per stage, Linear head."""

    def __init__(self, n_classes: int, side: int):
        super().__init__()
        self.conv1 = _conv3x3(180, 128)
        self.bn1 = nn.BatchNorm2d(128)
        self.layer1 = CABlock(128, 128)
        self.layer2 = CABlock(128, 128, 2)
        self.layer3 = CABlock(128, 256, 2)
        self.layer4 = CABlock(256, 512, 2)
        self.fc = nn.Linear(512 * side * side, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x, attn = self.layer1(x, None)
        for layer in (self.layer2, self.layer3, self.layer4):
            x, attn = layer(x, F.max_pool2d(attn, 3, 2, 1))
        return x


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = drop_path

    def _path(self, x: torch.Tensor) -> torch.Tensor:
        """Stochastic depth per sample (training only), as timm's DropPath."""
        if self.drop_path == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_path
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).add_(keep).floor_()
        return x / keep * mask

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._path(self.attention(self.norm1(x)))
        return x + self._path(self.mlp(self.norm2(x)))


class PositionCalibration(nn.Module):
    """PC_module.py's ``VisionTransformer_POS`` with patch 1 on a side x side image: (N, 3, s, s) -> (N, 512, s, s)."""

    def __init__(self, side: int, dim: int = 512, depth: int = 2, heads: int = 4, mlp_ratio: float = 4,
                 drop_path_rate: float = 0.0, unused_layers: bool = True):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # timm's linear decay rule
        self.blocks = nn.ModuleList([_Block(dim, heads, mlp_ratio, r) for r in rates])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if unused_layers:  # built by the code, never called by its forward
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.head = nn.Linear(dim, 5)
            self.to_Mask = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if unused_layers:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        t = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t).transpose(1, 2).reshape(b, -1, h, w)


class MMNet(nn.Module):
    def __init__(self, n_classes: int = 5, input_shape: Shape = (3, 2, 224, 224), profile: str = "code5",
                 unused_layers: bool = True, pretrained: str | None = None, fast: bool = True):
        super().__init__()
        self.fast = fast  # channels-last main branch (module doc)
        c, t, h, w = input_shape
        if c != 3 or t != 2:
            raise ValueError(f"MMNet reads the onset and apex RGB frames, shape (3, 2, H, W); got {input_shape}")
        if h != w or h % 16:
            raise ValueError(f"MMNet needs a square input whose side is a multiple of 16, got {h}x{w}")
        if profile not in PROFILES:
            raise ValueError(f"MMNet: profile={profile!r} is not one of {list(PROFILES)}")
        self.side = h // 16  # 14 for 224: the main branch's output and the position embeddings' grid
        depth, mlp_ratio, drop_path = VIT[profile]
        # the 3-class script asks for groups=2 on 3 input channels, which PyTorch refuses: one group here
        self.conv_act = nn.Sequential(nn.Conv2d(3, 180, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(180),
                                      nn.ReLU())
        self.vit_pos = PositionCalibration(self.side, depth=depth, mlp_ratio=mlp_ratio, drop_path_rate=drop_path,
                                           unused_layers=unused_layers)
        self.main_branch = MainBranch(n_classes, self.side)
        if unused_layers:  # built by the code, never called by its forward
            self.pos = nn.Sequential(nn.Conv2d(3, 512, 1, bias=False), nn.BatchNorm2d(512), nn.ReLU())
            self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(112 * 112, 38, bias=False))
            self.timeembed = nn.Parameter(torch.zeros(1, 4, 111, 111))
        if pretrained:
            load_backbone(self.main_branch, pretrained)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        onset, apex = clip[:, :, 0], clip[:, :, 1]
        small = F.interpolate(onset, size=(self.side, self.side), mode="bilinear", align_corners=False)
        pos = self.vit_pos(small)
        act = apex - onset
        if self.fast and not torch.is_grad_enabled():
            act = act.contiguous(memory_format=torch.channels_last)  # the layout propagates through the branch
        x = self.main_branch.features(self.conv_act(act)) + pos
        return self.main_branch.fc(x.flatten(1))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"model_params.pretrained={path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise ConfigError(f"model_params.pretrained={path}: not a safetensors file or torch state dict "
                          f"({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the code's checkpoint layout
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model_params.pretrained={path}: not a state dict of tensors")
    return state


def load_backbone(backbone: nn.Module, path: str | Path) -> int:
    """Load a local weight file into MMNet's main branch and return how many tensors were loaded. Keys may carry
    ``module.`` (DataParallel) and ``main_branch.`` prefixes; the classifier (``fc.*``) is skipped, as the code
    does. Every other key must name a main-branch tensor of the same shape, or the file is refused in one line
    (a torchvision ResNet-18 does not fit: its stem is 64@7x7 on 3 channels, MMNet's 128@3x3 on 180)."""
    path = Path(path)
    own = backbone.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, value in _read_weights(path).items():
        name = key.removeprefix("module.").removeprefix("main_branch.")
        if name.startswith("fc."):
            continue
        if name not in own:
            raise ConfigError(f"model_params.pretrained={path}: {key!r} is not a tensor of MMNet's main branch "
                              f"(expected names like 'conv1.weight' {tuple(own['conv1.weight'].shape)})")
        if tuple(value.shape) != tuple(own[name].shape):
            raise ConfigError(f"model_params.pretrained={path}: {key!r} has shape {tuple(value.shape)}, MMNet's main "
                              f"branch needs {tuple(own[name].shape)}")
        loaded[name] = value
    if not loaded:
        raise ConfigError(f"model_params.pretrained={path}: no tensor for MMNet's main branch in the file")
    if not next(backbone.parameters()).is_meta:  # a meta build (parameter counts, config checks) only checks
        backbone.load_state_dict(loaded, strict=False)
    return len(loaded)


def build_mmnet(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> MMNet:
    return MMNet(n_classes, input_shapes["clip"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="mmnet",
    builder=build_mmnet,
    preprocess=PreprocessConfig(streams=(StreamConfig("clip", "face", (224, 224), "raw"),), frames=2,
                                selection="onset_apex", temporal="uniform", color="rgb", normalise="imagenet",
                                resize="linear"),
    source="Li et al., IJCAI 2022 (MMNet); github muse1998/MMNet",
    description="onset-apex difference through a CA-block ResNet + ViT position calibration from the onset (224x224 RGB)",
    classes=5,
))
