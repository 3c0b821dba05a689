"""MMNet (docs/models.md "MMNet"): the authors' parameter count derived layer by layer, what the unused layers and the
3-class script's quirks do, ImageNet normalisation, and local pretrained weights for the main branch (loaded when
they fit, refused in one line when they do not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _models_helpers import PARAMETERS
from microexp.errors import ConfigError
from microexp.models import count_parameters, get, parameter_count
from microexp.models.mmnet import MMNet, load_backbone
from microexp.preprocess.config import StreamConfig
from microexp.preprocess.normalise import normalise_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ca_block(c_in: int, c_out: int, stride: int) -> int:
    shortcut = c_in * c_out + 2 * c_out if stride != 1 or c_in != c_out else 0
    return 9 * c_in * c_out + 2 * c_out + c_out * c_out + 2 * c_out + 2 + 2 + shortcut  # conv3x3, 1x1, attention


def _vit_block(dim: int = 512, mlp: int = 4) -> int:
    return 2 * dim + dim * 3 * dim + 3 * dim + dim * dim + dim + 2 * dim + dim * mlp * dim + mlp * dim + mlp * dim * dim + dim


def test_parameter_count_is_the_authors_derived_layer_by_layer() -> None:
    """CASME2_5.py's MMNet() for 5 classes, every parameter its module holds (the unused ones too)."""
    conv_act = 3 * 180 * 9 + 2 * 180
    vit = 3 * 512 + 512 + 196 * 512 + 2 * _vit_block() + 2 * 512  # 1x1 patch embedding, positions, blocks, norm
    main = (180 * 128 * 9 + 2 * 128 + _ca_block(128, 128, 1) + _ca_block(128, 128, 2) + _ca_block(128, 256, 2)
            + _ca_block(256, 512, 2) + 512 * 196 * 5 + 5)
    unused = (3 * 512 + 2 * 512  # MMNet.pos: conv 1x1 + BN
              + 112 * 112 * 38  # MMNet.head: Linear without bias
              + 4 * 111 * 111  # MMNet.timeembed
              + 512 + 512 * 5 + 5 + 512 + 1)  # the ViT's cls_token, head and to_Mask
    assert conv_act + vit + main + unused == 9_970_947 == PARAMETERS["mmnet"] == parameter_count(get("mmnet"))
    with torch.device("meta"):
        live = count_parameters(get("mmnet").build(5, unused_layers=False))
        code3 = count_parameters(get("mmnet").build(5, profile="code3"))
    assert live == conv_act + vit + main == 9_438_841
    # the 3-class script's sub-branch: 3 blocks with MLP x2
    assert code3 == 9_970_947 - 2 * _vit_block() + 3 * _vit_block(mlp=2)


def test_unused_layers_never_change_the_output_and_the_head_follows_the_input_size() -> None:
    torch.manual_seed(0)
    full = MMNet(5, (3, 2, 32, 32)).eval()
    lean = MMNet(5, (3, 2, 32, 32), unused_layers=False).eval()
    lean.load_state_dict({k: v for k, v in full.state_dict().items() if k in lean.state_dict()})
    x = torch.randn(3, 3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(full(clip=x), lean(clip=x))
    assert full.main_branch.fc.in_features == 512 * 2 * 2  # 32 / 16 = 2: the position grid and the main branch
    assert get("mmnet").build(5).main_branch.fc.in_features == 512 * 14 * 14
    # the onset alone (apex == onset: no motion) still moves the output through the position branch
    still = x.clone()
    still[:, :, 1] = still[:, :, 0]
    with torch.no_grad():
        assert not torch.allclose(full(clip=still), full(clip=still.roll(1, dims=0)))


def test_the_three_class_scripts_first_convolution_cannot_be_built() -> None:
    """CASME2_3.py asks for Conv2d(3, 180, groups=2): PyTorch refuses it, so our code3 profile keeps one group."""
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 180, 3, stride=2, padding=1, bias=False, groups=2)
    model = MMNet(3, (3, 2, 32, 32), profile="code3")
    assert model.conv_act[0].groups == 1 and len(model.vit_pos.blocks) == 3
    assert [b.drop_path for b in model.vit_pos.blocks] == pytest.approx([0.0, 0.15, 0.3])
    with pytest.raises(ValueError, match="profile"):
        MMNet(3, (3, 2, 32, 32), profile="paper")
    with pytest.raises(ValueError, match="onset and apex"):
        MMNet(3, (3, 3, 32, 32))


def test_imagenet_normalisation_is_torchvisions() -> None:
    x = np.stack([np.full((2, 4, 4), v, np.float32) for v in (255.0, 0.0, 127.5)])  # (C, T, H, W) R, G, B
    out = normalise_clip(x, "imagenet")
    assert out[0, 0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229)
    assert out[1, 0, 0, 0] == pytest.approx((0.0 - 0.456) / 0.224)
    assert out[2, 1, 3, 3] == pytest.approx((0.5 - 0.406) / 0.225)
    spec = get("mmnet")
    assert spec.preprocess.normalise == "imagenet" and spec.preprocess.color == "rgb" and spec.classes == 5
    assert spec.input_shapes() == {"clip": (3, 2, 224, 224)}


def _backbone_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return MMNet(5, (3, 2, 32, 32), unused_layers=False).main_branch.state_dict()


def test_pretrained_weights_load_into_the_main_branch(tmp_path: Path) -> None:
    """A local file (safetensors, a torch state dict, or the code's {'state_dict': ...} with 'module.' keys) loads into
    the main branch; the classifier is skipped as the code does; nothing else changes."""
    from safetensors.torch import save_file

    source = _backbone_state(1)
    st = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.items() if not k.startswith("fc.")}, str(st))
    pt = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}}, pt)
    for path in (st, pt):
        torch.manual_seed(0)
        small = get("mmnet").preprocess.with_overrides(streams=(StreamConfig("clip", "face", (32, 32), "raw"),))
        model = get("mmnet").build(5, small, pretrained=str(path))
        got = model.main_branch.state_dict()
        assert all(torch.equal(got[k], v) for k, v in source.items() if not k.startswith("fc.")), path
        torch.manual_seed(0)
        fresh = MMNet(5, (3, 2, 32, 32))
        assert torch.equal(model.main_branch.fc.weight, fresh.main_branch.fc.weight)  # the head is not loaded
        assert torch.equal(model.vit_pos.pos_embed, fresh.vit_pos.pos_embed)
    assert load_backbone(MMNet(5, (3, 2, 32, 32)).main_branch, st) == len(source) - 2


def test_a_weight_file_that_does_not_fit_is_refused_in_one_line(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    # a torchvision ResNet-18's stem and first block: 64@7x7 on 3 channels, MMNet's stem is 128@3x3 on 180
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}
    bad = tmp_path / "resnet18.pth"
    torch.save(resnet, bad)
    other = tmp_path / "other.safetensors"
    save_file({"features.0.weight": torch.zeros(4, 3, 3, 3)}, str(other))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a weight file")
    cases = {bad: "'conv1.weight' has shape (64, 3, 7, 7), MMNet's main branch needs (128, 180, 3, 3)",
             other: "'features.0.weight' is not a tensor of MMNet's main branch",
             junk: "not a safetensors file or torch state dict",
             tmp_path / "missing.pth": "file not found"}
    for path, message in cases.items():
        with pytest.raises(ConfigError) as err:
            MMNet(5, (3, 2, 32, 32), pretrained=str(path))
        assert str(err.value).startswith(f"model_params.pretrained={path}: ") and message in str(err.value)
        assert "\n" not in str(err.value)


def test_adamw_with_the_exponential_decay_held_after_scheduler_epochs() -> None:
    """MMNet's schedule: the rate times the factor after each of the first ``scheduler_epochs`` epochs, then held;
    AdamW decays the weights even where the gradient is zero (decoupled weight decay)."""
    from microexp.config import TrainConfig
    from microexp.train.loop import fit

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.idle = nn.Parameter(torch.ones(3))  # in the loss with zero gradient

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + 0.0 * self.idle.sum()

    x = torch.randn(8, 4)
    y = torch.arange(8) % 2
    cfg = TrainConfig(epochs=4, batch_size=8, optimizer="adamw", lr=0.1, weight_decay=0.5, scheduler="exponential",
                      scheduler_factor=0.5, scheduler_epochs=2, device="cpu")
    model = Probe()
    result = fit(model, {"x": x}, y, np.arange(8), cfg, seed=0, n_classes=2)
    assert [h["lr"] for h in result.history] == pytest.approx([0.1, 0.05, 0.025, 0.025])
    # decoupled decay: idle *= (1 - lr * wd) each step, whatever the (zero) gradient
    assert model.idle.detach() == pytest.approx(torch.full((3,), (1 - 0.05) * (1 - 0.025) * (1 - 0.0125) ** 2))
    with pytest.raises(ConfigError, match="scheduler_epochs"):
        TrainConfig(scheduler="exponential", scheduler_epochs=0)


def test_channels_last_fast_path_matches_the_default_layout() -> None:
    """fast (channels-last main branch in inference) and fast=False: the same outputs (and, in training, where both
    keep the default layout, the same gradients)."""
    torch.manual_seed(0)
    model = MMNet(5, (3, 2, 32, 32)).double().train()
    assert model.fast  # the default
    x, y = torch.randn(4, 3, 2, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    got = {}
    for fast in (True, False):
        model.fast = fast
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same batch-norm statistics and dropout draws
        out = model(clip=x)
        nn.functional.cross_entropy(out, y).backward()
        got[fast] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(got[True][0], got[False][0], atol=1e-9)
    assert got[True][1].keys() == got[False][1].keys()
    for name, g in got[False][1].items():
        assert torch.allclose(got[True][1][name], g, rtol=1e-6, atol=1e-9), name
    model.eval()
    with torch.no_grad():
        model.fast = True
        a = model(clip=x)
        model.fast = False
        assert torch.allclose(a, model(clip=x), atol=1e-9)
        model.fast = True  # the layout really changes on the fast path
        seen = []
        hook = model.main_branch.conv1.register_forward_hook(
            lambda _m, inp, _out: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)))
        model(clip=x)
        hook.remove()
        assert seen == [True]
