"""The custom Keras-semantics cells against the documented Keras equations, computed step by step in numpy:

    z = x_t W + h_{t-1} U + b  -> (i, f, c, o) blocks;  i, f, o = rec(.);  c_t = f c_{t-1} + i act(z_c);
    h_t = o act(c_t);  hard_sigmoid(x) = clip(0.2 x + 0.5, 0, 1);  ConvLSTM2D: W x is a 'valid' convolution,
    U h a 'same' convolution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from microexp.models.keras import KerasConvLSTM2D, KerasLSTM, batchnorm, hard_sigmoid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


NP_ACT = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
}


def test_hard_sigmoid_is_keras_piecewise_linear() -> None:
    x = torch.tensor([-10.0, -2.5, -1.0, 0.0, 1.0, 2.5, 10.0])
    expected = torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0])
    torch.testing.assert_close(hard_sigmoid(x), expected)


def _np_lstm(x, kernel, recurrent, bias, act, rec, masks=None):
    """Keras LSTM in numpy with Keras-layout weights: kernel (in, 4u), recurrent (u, 4u)."""
    n, t, _ = x.shape
    u = recurrent.shape[0]
    h, c = np.zeros((n, u)), np.zeros((n, u))
    hs = []
    for k in range(t):
        if masks is None:
            z = x[:, k] @ kernel + h @ recurrent + bias
        else:  # one input mask per gate, constant over time
            z = np.concatenate([(x[:, k] * masks[g]) @ kernel[:, g * u:(g + 1) * u] for g in range(4)], axis=1)
            z = z + h @ recurrent + bias
        i = rec(z[:, :u])
        f = rec(z[:, u:2 * u])
        g_ = act(z[:, 2 * u:3 * u])
        o = rec(z[:, 3 * u:])
        c = f * c + i * g_
        h = o * act(c)
        hs.append(h)
    return np.stack(hs, axis=1)


@pytest.mark.parametrize("activation,recurrent", [("relu", "sigmoid"), ("tanh", "hard_sigmoid"),
                                                  ("relu", "hard_sigmoid")])
def test_keras_lstm_matches_equations(activation: str, recurrent: str) -> None:
    torch.manual_seed(0)
    lstm = KerasLSTM(5, 4, activation=activation, recurrent_activation=recurrent, return_sequences=True).eval()
    with torch.no_grad():  # non-trivial bias so every gate block is exercised
        lstm.bias.add_(torch.randn(16) * 0.5)
    x = torch.randn(3, 6, 5) * 2
    got = lstm(x).detach().numpy()
    expected = _np_lstm(x.numpy().astype(np.float64), lstm.kernel.detach().numpy().T.astype(np.float64),
                        lstm.recurrent_kernel.detach().numpy().T.astype(np.float64),
                        lstm.bias.detach().numpy().astype(np.float64), NP_ACT[activation], NP_ACT[recurrent])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    lstm.return_sequences = False
    np.testing.assert_allclose(lstm(x).detach().numpy(), expected[:, -1], rtol=1e-5, atol=1e-6)


def test_keras_lstm_input_dropout_uses_one_mask_per_gate_fixed_over_time() -> None:
    lstm = KerasLSTM(6, 3, activation="relu", dropout=0.4).train()
    x = torch.randn(2, 5, 6)
    torch.manual_seed(7)
    got = lstm(x).detach().numpy()
    torch.manual_seed(7)  # replay the same draw: 4 masks of (N, 1, features)
    masks = F.dropout(torch.ones(4, 2, 1, 6), 0.4, training=True).numpy()[:, :, 0, :]
    expected = _np_lstm(x.numpy().astype(np.float64), lstm.kernel.detach().numpy().T.astype(np.float64),
                        lstm.recurrent_kernel.detach().numpy().T.astype(np.float64),
                        lstm.bias.detach().numpy().astype(np.float64), NP_ACT["relu"], NP_ACT["sigmoid"],
                        masks=masks)[:, -1]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.unique(masks), [0.0, 1 / 0.6], rtol=1e-6)  # inverted dropout, both values drawn
    assert not all(np.array_equal(masks[0], masks[g]) for g in range(1, 4))  # a mask per gate
    assert not np.allclose(got, lstm.eval()(x).detach().numpy())


def test_keras_lstm_initialisation() -> None:
    torch.manual_seed(0)
    lstm = KerasLSTM(40, 8)
    b = lstm.bias.detach()
    assert torch.equal(b[8:16], torch.ones(8)) and torch.equal(torch.cat([b[:8], b[16:]]), torch.zeros(24))
    r = lstm.recurrent_kernel.detach()  # (4u, u): orthonormal columns
    torch.testing.assert_close(r.T @ r, torch.eye(8), atol=1e-5, rtol=0)
    limit = (6 / (40 + 32)) ** 0.5  # glorot-uniform on the Keras (in, 4u) kernel
    assert lstm.kernel.abs().max() <= limit and lstm.kernel.abs().max() > 0.8 * limit
    assert sum(p.numel() for p in lstm.parameters()) == 4 * 8 * (40 + 8 + 1)
    normal = KerasLSTM(256, 64, kernel_init=0.01)
    assert 0.008 < normal.kernel.std().item() < 0.012


def _np_corr2d(x, w, pad):
    """Cross-correlation (N, C, H, W) x (F, C, k, k) -> (N, F, H', W') with symmetric zero padding ``pad``."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    ho, wo = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for r in range(ho):
        for s in range(wo):
            out[:, :, r, s] = np.einsum("nchw,fchw->nf", x[:, :, r:r + k, s:s + k], w)
    return out


def test_keras_convlstm2d_matches_equations() -> None:
    torch.manual_seed(0)
    cell = KerasConvLSTM2D(2, 3, 3, padding="valid", activation="relu", recurrent_activation="hard_sigmoid",
                           return_sequences=True).eval()
    with torch.no_grad():
        cell.bias.add_(torch.randn(12) * 0.5)
    x = torch.randn(2, 2, 4, 7, 6)  # (N, C, T, H, W)
    got = cell(x).detach().numpy()
    assert got.shape == (2, 3, 4, 5, 4)
    kx = cell.kernel.detach().numpy().astype(np.float64)
    kh = cell.recurrent_kernel.detach().numpy().astype(np.float64)
    b = cell.bias.detach().numpy().astype(np.float64)[None, :, None, None]
    relu, hs = NP_ACT["relu"], NP_ACT["hard_sigmoid"]
    xn = x.numpy().astype(np.float64)
    h = np.zeros((2, 3, 5, 4))
    c = np.zeros_like(h)
    for t in range(4):
        z = _np_corr2d(xn[:, :, t], kx, 0) + _np_corr2d(h, kh, 1) + b  # input 'valid', recurrent 'same'
        i, f, g, o = z[:, 0:3], z[:, 3:6], z[:, 6:9], z[:, 9:12]
        c = hs(f) * c + hs(i) * relu(g)
        h = hs(o) * relu(c)
        np.testing.assert_allclose(got[:, :, t], h, rtol=1e-5, atol=1e-6)
    cell.return_sequences = False
    np.testing.assert_allclose(cell(x).detach().numpy(), h, rtol=1e-5, atol=1e-6)


def test_keras_convlstm2d_parameters_and_init() -> None:
    cell = KerasConvLSTM2D(1, 32, 3)
    # Keras: 4F * (k*k*(C + F)) + 4F = 38,144 for Joshi's ConvLSTM2D(32, 3x3) on gray frames
    assert sum(p.numel() for p in cell.parameters()) == 4 * 32 * (9 * (1 + 32)) + 4 * 32 == 38_144
    b = cell.bias.detach()
    assert torch.equal(b[32:64], torch.ones(32)) and b[:32].abs().sum() == 0 and b[64:].abs().sum() == 0
    r = cell.recurrent_kernel.detach().reshape(128, -1)
    torch.testing.assert_close(r @ r.T, torch.eye(128), atol=1e-5, rtol=0)


def test_batchnorm_uses_keras_defaults() -> None:
    bn = batchnorm("2d", 4)
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)
