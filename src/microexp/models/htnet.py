"""HTNet (Wang, Zhang, Luo, Sankaranarayana, "HTNet for micro-expression recognition", Neurocomputing 2024,
arXiv 2307.14637; docs/models.md "HTNet"), layer for layer as the authors' ``Model.py`` + ``main_HTNet.py``.

Input: onset->apex flow u, v and optical strain at 28x28 with four 14x14 facial areas tiled 2x2 (stream ``flow``,
region ``face_areas``, kind ``flowstrain``, T = 1; :func:`microexp.preprocess.regions.face_areas`).
A NesT-style hierarchical transformer: patch 7 (a 7x7x3 patch -> 1x1 conv to ``dim``), three hierarchies whose
blocks are 4x4, 2x2 and 1x1 groups of patches, each a transformer of ``block_repeats`` layers (pre-norm channel
LayerNorm, multi-head self-attention by 1x1 convolutions, GELU MLP x4; one learnt scalar position embedding per
position, shared by the channels) followed by an aggregation (3x3 conv to the next width, LayerNorm, max-pool 3/2
pad 1); head: LayerNorm -> mean over positions -> Linear. Defaults of ``main_HTNet.py``: dim 256 (-> 512 -> 1024),
heads 3 (-> 6 -> 12; head width ``dim // heads``: 85, so the inner width is 255), blocks (2, 2, 10), MLP x4, no
dropout: 139,582,982 parameters for 3 classes. With a 28x28 input and patch 7 every block holds one patch, so the
attention of the published configuration never mixes positions (a quirk of the code noted in docs/models.md);
positions meet only in the aggregation convolutions. PyTorch default initialisation, as the code.

``fast`` (default on): the transformers run on tokens, (N, positions, C), their 1x1 convolutions as the matrix
products they are (``F.linear`` on the same weights) and the channel LayerNorm as ``F.layer_norm``: the same
mathematics and parameters, but oneDNN's 1x1 convolution on the published model's 1x1 maps took ~85 % of a CPU
training step (its backward above all; docs/models.md "HTNet", speed). ``fast=False`` runs the layers as the code
does (tests/test_htnet.py checks that both agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from microexp.models.registry import ModelSpec, Shape, register
from microexp.preprocess.config import PreprocessConfig, StreamConfig


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map (biased variance, eps 1e-5), gain and bias per channel."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.g + self.b

    def tokens(self, t: torch.Tensor) -> torch.Tensor:
        """The same normalisation of tokens (..., C)."""
        return F.layer_norm(t, (self.g.shape[1],), self.g.view(-1), self.b.view(-1), self.eps)  # static: ONNX


def _linear(conv: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to tokens (..., C_in): its weight as a (C_out, C_in) matrix."""
    return F.linear(t, conv.weight.view(conv.out_channels, -1), conv.bias)


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__(nn.Conv2d(dim, dim * mult, 1), nn.GELU(), nn.Dropout(dropout),
                         nn.Conv2d(dim * mult, dim, 1), nn.Dropout(dropout))

    def tokens(self, t: torch.Tensor) -> torch.Tensor:
        up, gelu, drop1, down, drop2 = self
        return drop2(_linear(down, drop1(gelu(_linear(up, t)))))


class _Attention(nn.Module):
    """Self-attention over the positions of a map, projections as 1x1 convolutions (q, k, v without bias)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head = heads, dim // heads  # as the code: 256 // 3 = 85
        inner = self.dim_head * heads
        self.scale = self.dim_head ** -0.5
        self.to_qkv = nn.Conv2d(dim, inner * 3, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, h * w).transpose(2, 3)
                   for t in self.to_qkv(x).chunk(3, dim=1))
        attn = self.dropout(torch.softmax(q @ k.transpose(2, 3) * self.scale, dim=-1))
        out = (attn @ v).transpose(2, 3).reshape(b, self.heads * self.dim_head, h, w)
        return self.to_out(out)

    def tokens(self, t: torch.Tensor) -> torch.Tensor:
        """The same attention on tokens (N, L, C); channels are ordered head by head, as above."""
        n, length, _ = t.shape
        q, k, v = (z.reshape(n, length, self.heads, self.dim_head).transpose(1, 2)
                   for z in _linear(self.to_qkv, t).chunk(3, dim=-1))
        attn = self.dropout(torch.softmax(q @ k.transpose(2, 3) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(n, length, self.heads * self.dim_head)
        return self.to_out[1](_linear(self.to_out[0], out))


class _Transformer(nn.Module):
    def __init__(self, dim: int, seq_len: int, depth: int, heads: int, mlp_mult: int, dropout: float):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(seq_len))  # one scalar per position, added to every channel
        self.layers = nn.ModuleList([
            nn.ModuleList([_PreNorm(dim, _Attention(dim, heads, dropout)),
                           _PreNorm(dim, _FeedForward(dim, mlp_mult, dropout))]) for _ in range(depth)])

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x + self.pos_emb[:h * w].reshape(1, 1, h, w)
        if not fast:
            for attn, ff in self.layers:  # type: ignore[misc]
                x = attn(x) + x
                x = ff(x) + x
            return x
        t = x.flatten(2).transpose(1, 2)  # (N, positions, C)
        for attn, ff in self.layers:  # type: ignore[misc]
            t = attn.fn.tokens(attn.norm.tokens(t)) + t
            t = ff.fn.tokens(ff.norm.tokens(t)) + t
        return t.transpose(1, 2).reshape(n, c, h, w)


def _aggregate(dim: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, dim_out, 3, padding=1), ChannelLayerNorm(dim_out),
                         nn.MaxPool2d(3, stride=2, padding=1))


def _to_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, C, n*h, n*w) -> (B*n*n, C, h, w): each of the n x n blocks becomes its own sample."""
    b, c, hh, ww = x.shape
    h, w = hh // n, ww // n
    return x.reshape(b, c, n, h, n, w).permute(0, 2, 4, 1, 3, 5).reshape(b * n * n, c, h, w)


def _from_blocks(x: torch.Tensor, n: int) -> torch.Tensor:
    bnn, c, h, w = x.shape
    b = bnn // (n * n)
    return x.reshape(b, n, n, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, n * h, n * w)


class HTNet(nn.Module):
    def __init__(self, n_classes: int = 3, input_shape: Shape = (3, 1, 28, 28), patch_size: int = 7, dim: int = 256,
                 heads: int = 3, num_hierarchies: int = 3, block_repeats: tuple[int, ...] | list[int] = (2, 2, 10),
                 mlp_mult: int = 4, dropout: float = 0.0, fast: bool = True):
        super().__init__()
        self.fast = fast  # the token path (module doc); False: the 1x1 convolutions as the code runs them
        c, t, h, w = input_shape
        if t != 1:
            raise ValueError(f"HTNet reads one onset->apex flow field (T=1), got input {input_shape}")
        if h != w or h % patch_size:
            raise ValueError(f"HTNet needs a square input whose side is a multiple of patch_size={patch_size}, "
                             f"got {h}x{w}")
        fmap = h // patch_size
        blocks = 2 ** (num_hierarchies - 1)
        if fmap % blocks:
            raise ValueError(f"HTNet: the {fmap}x{fmap} patch map does not split into {blocks}x{blocks} blocks "
                             f"(num_hierarchies={num_hierarchies})")
        repeats = tuple(block_repeats) if isinstance(block_repeats, list | tuple) else (block_repeats,) * num_hierarchies
        if len(repeats) != num_hierarchies:
            raise ValueError(f"HTNet: block_repeats {repeats} must have num_hierarchies={num_hierarchies} entries")
        seq_len = (fmap // blocks) ** 2
        mults = [2 ** i for i in range(num_hierarchies)]
        dims = [m * dim for m in mults] + [mults[-1] * dim]  # the last level keeps its width
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(c * patch_size ** 2, dims[0], 1)
        self.levels = list(reversed(range(num_hierarchies)))  # block side 2**level: 4, 2, 1 for three hierarchies
        self.transformers = nn.ModuleList()
        self.aggregates = nn.ModuleList()
        for i, level in enumerate(self.levels):
            self.transformers.append(_Transformer(dims[i], seq_len, repeats[i], mults[i] * heads, mlp_mult, dropout))
            self.aggregates.append(_aggregate(dims[i], dims[i + 1]) if level > 0 else nn.Identity())
        self.norm = ChannelLayerNorm(dims[-1])
        self.fc = nn.Linear(dims[-1], n_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, p*p*C, H/p, W/p), the patch vector ordered (row in patch, column in patch, channel)."""
        n, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(n, p * p * c, h // p, w // p)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.patches(flow[:, :, 0]))
        for level, transformer, aggregate in zip(self.levels, self.transformers, self.aggregates, strict=True):
            n = 2 ** level
            x = aggregate(_from_blocks(transformer(_to_blocks(x, n), self.fast), n))
        return self.fc(self.norm(x).mean(dim=(2, 3)))


def build_htnet(n_classes: int, input_shapes: dict[str, Shape], **hparams: object) -> HTNet:
    return HTNet(n_classes, input_shapes["flow"], **hparams)  # type: ignore[arg-type]


register(ModelSpec(
    name="htnet",
    builder=build_htnet,
    # the STSTNet input (flow + strain, 28x28, strain on the full-size flow), then four 14x14 areas tiled 2x2
    preprocess=PreprocessConfig(streams=(StreamConfig("flow", "face_areas", (28, 28), "flowstrain"),), frames=1,
                                selection="onset_apex", normalise="none", strain_at="full"),
    source="Wang et al., Neurocomputing 2024 (HTNet, arXiv 2307.14637); github wangzhifengharrison/HTNet",
    description="hierarchical transformer over four facial areas of onset->apex flow u, v + strain (28x28)",
))
