"""HTNet (docs/models.md "HTNet"): the authors' parameter count derived layer by layer, the NesT rearrangements, the
one-patch blocks of the published configuration, and the four facial areas of its input (paper and code crops)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from _models_helpers import PARAMETERS
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, PreprocessError
from microexp.models import count_parameters, get, parameter_count
from microexp.models.htnet import HTNet, _from_blocks, _to_blocks
from microexp.preprocess import regions as rg
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.face import TEMPLATE
from microexp.preprocess.pipeline import preprocess_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _transformer(dim: int, heads: int, depth: int, mlp: int = 4) -> int:
    inner = (dim // heads) * heads  # the code's dim_head = dim // heads: 255, 510, 1020 inner widths
    layer = (2 * dim + dim * 3 * inner + inner * dim + dim  # pre-norm, q/k/v (no bias), output projection
             + 2 * dim + dim * mlp * dim + mlp * dim + mlp * dim * dim + dim)  # pre-norm, MLP
    return 1 + depth * layer  # one scalar position embedding (seq_len 1)


def _aggregate(dim: int, out: int) -> int:
    return 9 * dim * out + out + 2 * out  # 3x3 conv + channel LayerNorm


def test_parameter_count_is_the_authors_derived_layer_by_layer() -> None:
    """main_HTNet.py: image 28, patch 7, dim 256, heads 3, 3 hierarchies, blocks (2, 2, 10), 3 classes."""
    expected = ((3 * 7 * 7) * 256 + 256  # patch embedding (1x1 conv on the 147-d patch vectors)
                + _transformer(256, 3, 2) + _aggregate(256, 512)
                + _transformer(512, 6, 2) + _aggregate(512, 1024)
                + _transformer(1024, 12, 10)
                + 2 * 1024 + 1024 * 3 + 3)  # head: LayerNorm, Linear
    assert expected == 139_582_982 == PARAMETERS["htnet"] == parameter_count(get("htnet"), 3)
    assert parameter_count(get("htnet"), 5) == expected + 2 * 1025


def test_patches_are_ordered_row_column_channel_and_blocks_round_trip() -> None:
    model = HTNet(3, (3, 1, 28, 28), dim=8, heads=2, block_repeats=(1, 1, 1))
    x = torch.arange(2 * 3 * 28 * 28, dtype=torch.float32).reshape(2, 3, 28, 28)
    p = model.patches(x)
    assert p.shape == (2, 147, 4, 4)
    # patch (1, 2), row 3 / column 5 inside it, channel 1: vector index (3 * 7 + 5) * 3 + 1
    assert p[1, (3 * 7 + 5) * 3 + 1, 1, 2] == x[1, 1, 7 + 3, 14 + 5]
    m = torch.randn(2, 5, 4, 4)
    blocks = _to_blocks(m, 2)
    assert blocks.shape == (8, 5, 2, 2) and torch.equal(blocks[1], m[0, :, 0:2, 2:4])
    assert torch.equal(_from_blocks(blocks, 2), m)


def test_published_configuration_attends_within_single_patch_blocks() -> None:
    """28 / patch 7 = a 4x4 patch map split into 4x4, 2x2 and 1x1 blocks: every transformer sees one position, so
    attention is exactly its value projection (a quirk of the code, docs/models.md)."""
    torch.manual_seed(0)
    model = HTNet(3, (3, 1, 28, 28), dim=8, heads=2, block_repeats=(1, 1, 1)).eval()
    attn = model.transformers[0].layers[0][0].fn
    x = torch.randn(4, 8, 1, 1)
    qkv = attn.to_qkv(x).chunk(3, dim=1)[2]
    assert torch.allclose(attn(x), attn.to_out(qkv), atol=1e-6)
    out = model(flow=torch.randn(2, 3, 1, 28, 28))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_input_checks_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        HTNet(3, (3, 1, 30, 30))
    with pytest.raises(ValueError, match="T=1"):
        HTNet(3, (3, 2, 28, 28))
    spec = get("htnet")
    assert spec.preprocess.stream("flow").region == "face_areas" and spec.preprocess.strain_at == "full"
    assert spec.input_shapes() == {"flow": (3, 1, 28, 28)}
    small = (147 * 8 + 8 + _transformer(8, 2, 1) + _aggregate(8, 16) + _transformer(16, 4, 1) + _aggregate(16, 32)
             + _transformer(32, 8, 1) + 2 * 32 + 32 * 3 + 3)
    assert count_parameters(spec.build(3, dim=8, heads=2, block_repeats=[1, 1, 1])) == small == 23_942


def _marked(rows: int = 28, cols: int = 28) -> np.ndarray:
    """(1, rows, cols) whose pixel value is 100 * row + col, so a crop tells where it came from."""
    r, c = np.mgrid[0:rows, 0:cols]
    return (100 * r + c).astype(np.float32)[None]


def test_face_areas_paper_and_code_crops() -> None:
    img = _marked()
    pts = rg.five_points(TEMPLATE * 28)  # left eye (9.0, 10.1), right eye (19.0, 10.1), nose, mouth corners
    paper = rg.face_areas(img, pts, "paper")
    assert paper.shape == (1, 28, 28)
    # top-left: the left eye's area, centre row int(10.08) = 10, column int(9.0) = 9 -> rows 3..16, columns 2..15
    assert paper[0, 0, 0] == 100 * 3 + 2
    # bottom-left: the right eye (x 19.0 -> columns 11..); top-right: the left mouth corner (y 19.07 -> rows 12..)
    assert paper[0, 14, 0] == 100 * 3 + 11 and paper[0, 0, 14] == 100 * 12 + 2
    code = rg.face_areas(img, pts, "code")
    # the code indexes (row = x, column = y): point 0 at row 9, column 10 -> rows 2..15, columns 3..16
    assert code[0, 0, 0] == 100 * 2 + 3
    # point 1 (the right eye, x 19.0, y 10.1) lands at rows 11.., columns 3..: the transposed position
    assert code[0, 0, 14] == 100 * 11 + 3
    # centres are clamped to [7, 21] as the code does: a point at the corner gives the corner area
    corner = rg.face_areas(img, np.zeros((5, 2)), "paper")
    assert corner[0, 0, 0] == 0 and corner[0, 13, 13] == 100 * 13 + 13
    with pytest.raises(PreprocessError, match="even size"):
        rg.face_areas(_marked(27, 27), pts)
    with pytest.raises(PreprocessError, match="mode"):
        rg.face_areas(img, pts, "other")


def test_face_areas_region_through_the_pipeline(tmp_path: Path) -> None:
    """A face-crop clip whose apex moves the eye area: the flow stream is the whole face's flow, tiled into the four
    areas placed by the template landmarks; ``extra: {face_areas: code}`` switches to the code's crop."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (112, 112)).astype(np.float32), (0, 0), 3)
    moved = np.roll(base, 2, axis=1)
    paths = []
    for k, img in enumerate([base, base, moved], start=1):
        p = tmp_path / f"img{k}.png"
        cv2.imwrite(str(p), np.clip(img, 0, 255).astype(np.uint8))
        paths.append(p)
    rec = ClipRecord("t", "s", "c", "x", tuple(paths), (1, 2, 3), 1, 3, 3)
    face = PreprocessConfig(streams=(StreamConfig("flow", "face", (28, 28), "flowstrain"),), frames=1,
                            selection="onset_apex", normalise="none", flow="farneback", strain_at="full")
    areas = face.with_overrides(streams=(StreamConfig("flow", "face_areas", (28, 28), "flowstrain"),))
    whole = preprocess_clip(rec, face)["flow"]
    tiled = preprocess_clip(rec, areas)["flow"]
    assert tiled.shape == (3, 1, 28, 28) == areas.stream_shape("flow")
    pts = rg.five_points(TEMPLATE * 28)
    np.testing.assert_allclose(tiled[:, 0], rg.face_areas(whole[:, 0], pts, "paper"), atol=1e-6)
    code = preprocess_clip(rec, areas.with_overrides(extra=(("face_areas", "code"),)))["flow"]
    np.testing.assert_allclose(code[:, 0], rg.face_areas(whole[:, 0], pts, "code"), atol=1e-6)
    assert not np.allclose(code, tiled)
    assert float(np.median(whole[0])) > 0.3  # the face moved 2 px right at 112: about 0.5 px at 28
    with pytest.raises(ConfigError, match="region"):
        StreamConfig("flow", "areas", (28, 28), "flowstrain")


def _outputs_and_grads(model: torch.nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, fast: bool):
    model.fast = fast
    model.zero_grad(set_to_none=True)
    out = model(**x)
    torch.nn.functional.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("size", [28, 56])  # one patch per block (published), and 2x2 patches per block
def test_token_fast_path_matches_the_convolution_layers(size: int) -> None:
    """fast (tokens, F.linear, F.layer_norm) and the code's 1x1 convolutions: the same outputs and gradients."""
    torch.manual_seed(0)
    model = HTNet(3, (3, 1, size, size), dim=24, heads=3, block_repeats=(1, 1, 2)).double().train()
    assert model.fast  # the default
    x, y = {"flow": torch.randn(4, 3, 1, size, size, dtype=torch.float64)}, torch.tensor([0, 1, 2, 0])
    out_fast, g_fast = _outputs_and_grads(model, x, y, True)
    out_plain, g_plain = _outputs_and_grads(model, x, y, False)
    assert torch.allclose(out_fast, out_plain, atol=1e-10)
    assert g_fast.keys() == g_plain.keys()
    scale = max(g.abs().max().item() for g in g_plain.values())
    for name, g in g_plain.items():  # absolute: the last level's position embedding has an exactly-zero gradient
        assert torch.allclose(g_fast[name], g, rtol=1e-7, atol=1e-9 * scale), name
    model.eval()
    with torch.no_grad():
        model.fast = True
        a = model(**x)
        model.fast = False
        assert torch.allclose(a, model(**x), atol=1e-10)


def test_large_models_take_the_fused_adam_step_with_the_same_update() -> None:
    """train.loop.make_optimizer: Adam / AdamW fused from FUSED_ADAM_MIN_PARAMS parameters (the per-tensor loop below
    it); three steps of each land on the same weights within float rounding."""
    from microexp.config import TrainConfig
    from microexp.train import loop

    torch.manual_seed(0)
    small = torch.nn.Linear(8, 3)
    for name in ("adam", "adamw"):
        cfg = TrainConfig(optimizer=name, lr=1e-2, weight_decay=0.1)
        assert not loop.make_optimizer(small, cfg).defaults["fused"]
        big = HTNet(3, (3, 1, 28, 28), dim=8, heads=2, block_repeats=(1, 1, 1))
        twin = HTNet(3, (3, 1, 28, 28), dim=8, heads=2, block_repeats=(1, 1, 1))
        twin.load_state_dict(big.state_dict())
        old = loop.FUSED_ADAM_MIN_PARAMS
        loop.FUSED_ADAM_MIN_PARAMS = count_parameters(big)
        try:
            fused = loop.make_optimizer(big, cfg)
        finally:
            loop.FUSED_ADAM_MIN_PARAMS = old
        plain = loop.make_optimizer(twin, cfg)
        assert fused.defaults["fused"] and not plain.defaults["fused"]
        gen = torch.Generator().manual_seed(1)
        grads = [[torch.randn(p.shape, generator=gen) for p in big.parameters()] for _ in range(3)]
        for model, opt in ((big, fused), (twin, plain)):  # the same gradients: the optimizers alone compared
            for step in grads:
                for p, g in zip(model.parameters(), step, strict=True):
                    p.grad = g.clone()
                opt.step()
        for (n, a), b in zip(big.named_parameters(), twin.parameters(), strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (name, n)
        assert not torch.equal(big.fc.weight, HTNet(3, (3, 1, 28, 28), dim=8, heads=2, block_repeats=(1, 1, 1)).fc.weight)
