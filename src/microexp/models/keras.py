"""Keras semantics the seed systems depend on, in one place: initialisers, BatchNorm defaults, hard_sigmoid and the
LSTM / ConvLSTM2D cells (docs/models.md §0).

Keras recurrent cells differ from ``torch.nn.LSTM`` in ways that change training: the cell and output activation is
configurable (the seeds use ReLU), the recurrent activation may be ``hard_sigmoid`` (0.2x + 0.5 clipped to [0, 1]),
the forget-gate bias starts at 1 (``unit_forget_bias``), the recurrent kernel is orthogonal, and input dropout draws
one mask per gate that is fixed over time. The cells below implement exactly

    z = W x_t + U h_{t-1} + b,  split into (i, f, c, o)  [Keras gate order]
    i = rec(z_i),  f = rec(z_f),  o = rec(z_o)
    c_t = f * c_{t-1} + i * act(z_c)
    h_t = o * act(c_t)

with ``W x`` a dense product (LSTM) or a ``padding`` convolution (ConvLSTM2D, whose recurrent convolution is always
'same', stride 1). Initial states are zeros.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _skip(t: torch.Tensor) -> bool:
    return t.is_meta  # meta tensors (parameter counting) need no values


def glorot_uniform_(layer: nn.Module) -> None:
    """Keras default: glorot-uniform kernel, zero bias."""
    if _skip(layer.weight):
        return
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def he_uniform_(layer: nn.Module) -> None:
    """Keras ``he_uniform``: U(-sqrt(6/fan_in), +sqrt(6/fan_in)), zero bias."""
    if _skip(layer.weight):
        return
    nn.init.kaiming_uniform_(layer.weight, a=0, nonlinearity="relu")
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def normal_(layer: nn.Module, std: float) -> None:
    """Keras ``RandomNormal(0, std)`` kernel, zero bias."""
    if _skip(layer.weight):
        return
    nn.init.normal_(layer.weight, 0.0, std)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def batchnorm(kind: str, channels: int) -> nn.Module:
    """Keras BatchNormalization defaults: momentum 0.99 (torch 0.01), epsilon 1e-3."""
    cls = {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d, "3d": nn.BatchNorm3d}[kind]
    return cls(channels, eps=1e-3, momentum=0.01)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 2 / TF <= 2.15 ``hard_sigmoid``: clip(0.2 x + 0.5, 0, 1)."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "hard_sigmoid": hard_sigmoid,
    "linear": lambda x: x,
}


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r} (known: {sorted(ACTIVATIONS)})") from None


def _unit_forget_bias(bias: torch.Tensor, units: int) -> None:
    if _skip(bias):
        return
    with torch.no_grad():
        bias.zero_()
        bias[units:2 * units] = 1.0


class KerasLSTM(nn.Module):
    """Keras ``LSTM(units, activation, recurrent_activation, dropout, return_sequences)`` on (N, T, features).

    Parameters are stored torch-style: ``kernel`` (4u, in), ``recurrent_kernel`` (4u, u), ``bias`` (4u,), gate
    blocks in Keras order (i, f, c, o). ``kernel_init``: "glorot_uniform" (Keras default) or a float std for
    ``RandomNormal(0, std)``.
    """

    def __init__(self, input_size: int, units: int, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", dropout: float = 0.0, return_sequences: bool = False,
                 kernel_init: str | float = "glorot_uniform", unit_forget_bias: bool = True):
        super().__init__()
        self.input_size, self.units = input_size, units
        self.activation_name, self.recurrent_activation_name = activation, recurrent_activation
        self.act, self.rec = _activation(activation), _activation(recurrent_activation)
        self.dropout, self.return_sequences = dropout, return_sequences
        self.kernel = nn.Parameter(torch.empty(4 * units, input_size))
        self.recurrent_kernel = nn.Parameter(torch.empty(4 * units, units))
        self.bias = nn.Parameter(torch.empty(4 * units))
        if not _skip(self.kernel):
            if kernel_init == "glorot_uniform":
                nn.init.xavier_uniform_(self.kernel)
            else:
                nn.init.normal_(self.kernel, 0.0, float(kernel_init))
            nn.init.orthogonal_(self.recurrent_kernel)
        if unit_forget_bias:
            _unit_forget_bias(self.bias, units)
        elif not _skip(self.bias):
            nn.init.zeros_(self.bias)

    def step(self, xz: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step given the input projection ``xz = W x_t + b`` (N, 4u)."""
        z = xz + h @ self.recurrent_kernel.T
        zi, zf, zc, zo = z.chunk(4, dim=1)
        c = self.rec(zf) * c + self.rec(zi) * self.act(zc)
        h = self.rec(zo) * self.act(c)
        return h, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        u = self.units
        if self.training and self.dropout > 0:
            # one input mask per gate, fixed over time (Keras get_dropout_mask_for_cell, count=4)
            masks = F.dropout(x.new_ones(4, n, 1, self.input_size), self.dropout, training=True)
            w = self.kernel.view(4, u, self.input_size)
            xz = torch.cat([(x * masks[g]) @ w[g].T for g in range(4)], dim=2) + self.bias
        else:
            xz = x @ self.kernel.T + self.bias
        h = x.new_zeros(n, u)
        c = x.new_zeros(n, u)
        outs = []
        for k in range(t):
            h, c = self.step(xz[:, k], h, c)
            outs.append(h)
        return torch.stack(outs, dim=1) if self.return_sequences else h


class KerasConvLSTM2D(nn.Module):
    """Keras ``ConvLSTM2D(filters, kernel_size, padding, activation, recurrent_activation, return_sequences)`` on
    (N, C, T, H, W), returning (N, F, T, H', W') (or (N, F, H', W') for the last step).

    The input convolution uses ``padding`` ('valid' or 'same', stride 1); the recurrent convolution is 'same'.
    Defaults follow TF 2.6: recurrent activation hard_sigmoid, glorot-uniform kernel, orthogonal recurrent kernel,
    unit forget bias.
    """

    def __init__(self, in_channels: int, filters: int, kernel_size: int = 3, padding: str = "valid",
                 activation: str = "tanh", recurrent_activation: str = "hard_sigmoid",
                 return_sequences: bool = True, unit_forget_bias: bool = True):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.filters, self.kernel_size, self.padding = filters, kernel_size, padding
        self.act, self.rec = _activation(activation), _activation(recurrent_activation)
        self.return_sequences = return_sequences
        self.kernel = nn.Parameter(torch.empty(4 * filters, in_channels, kernel_size, kernel_size))
        self.recurrent_kernel = nn.Parameter(torch.empty(4 * filters, filters, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(4 * filters))
        if not _skip(self.kernel):
            nn.init.xavier_uniform_(self.kernel)
            nn.init.orthogonal_(self.recurrent_kernel)
        if unit_forget_bias:
            _unit_forget_bias(self.bias, filters)
        elif not _skip(self.bias):
            nn.init.zeros_(self.bias)

    def step(self, xz: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = xz + F.conv2d(h, self.recurrent_kernel, padding="same")
        zi, zf, zc, zo = z.chunk(4, dim=1)
        c = self.rec(zf) * c + self.rec(zi) * self.act(zc)
        h = self.rec(zo) * self.act(c)
        return h, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, t, hh, ww = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, ch, hh, ww)
        xz = F.conv2d(frames, self.kernel, self.bias, padding=self.padding)
        xz = xz.view(n, t, *xz.shape[1:])
        h = x.new_zeros(n, self.filters, *xz.shape[3:])
        c = torch.zeros_like(h)
        outs = []
        for k in range(t):
            h, c = self.step(xz[:, k], h, c)
            outs.append(h)
        return torch.stack(outs, dim=2) if self.return_sequences else h


class TimeDistributed(nn.Module):
    """Apply a 2D module to every frame of (N, C, T, H, W); returns (N, T, ...)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = self.module(x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w))
        return y.view(n, t, *y.shape[1:])
