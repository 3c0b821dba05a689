"""The fused CPU conv -> ReLU -> max-pool equals the plain PyTorch layers: outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _models_helpers import PARAMETERS
from microexp.fast import conv as fastconv
from microexp.fast.conv import conv_relu_pool
from microexp.models import count_parameters
from microexp.models.stcnn import MicroExpSTCNN


def _naive(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pool: int) -> torch.Tensor:
    return F.max_pool3d(torch.relu(F.conv3d(x, w, b)), pool)


def _compare(x: torch.Tensor, cout: int = 32, kernel: tuple[int, int, int] = (15, 3, 3), pool: int = 3,
             seed: int = 0, bias_scale: float = 0.1, bias_shift: float = -1.0) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(cout, x.shape[1], *kernel, generator=gen) * 0.05).requires_grad_()
    # conv outputs have std ~0.6; shifting the bias down makes some pooled maxima negative (ReLU blocks them)
    b = (torch.randn(cout, generator=gen) * bias_scale + bias_shift).requires_grad_()
    ref = _naive(x, w, b, pool)
    out = conv_relu_pool(x, w, b, pool)
    assert out.shape == ref.shape
    assert (ref > 0).any() and (ref == 0).any()  # both sides of the ReLU are exercised
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(ref.shape, generator=gen)
    # a pooled maximum within rounding of zero may land on either side of the ReLU (both are right); its
    # gradient would then differ by a whole term, so such outputs get none
    with torch.no_grad():
        g *= F.max_pool3d(F.conv3d(x, w, b), pool).abs() > 1e-5
    gw_ref, gb_ref = torch.autograd.grad((ref * g).sum(), (w, b))
    gw, gb = torch.autograd.grad((out * g).sum(), (w, b))
    scale = float(gw_ref.abs().max())
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=2e-6 * scale)
    torch.testing.assert_close(gb, gb_ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the inference path (no indices kept) gives the same output
        torch.testing.assert_close(conv_relu_pool(x, w, b, pool), ref.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 1, 24, 20, 17), (1, 1, 17, 5, 7), (2, 1, 18, 64, 64), (1, 1, 31, 35, 29)],
                         ids=["odd", "smallest", "smic-depth-18", "odd-2"])
def test_matches_plain_layers(shape: tuple[int, ...]) -> None:
    _compare(torch.randn(shape, generator=torch.Generator().manual_seed(1)))


def test_two_input_channels_and_time_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastconv, "CHUNK_FRAMES", 4)  # units of one and two pooled frames
    monkeypatch.setattr(fastconv, "ROWS_PER_UNIT", 3)  # a ragged last unit of rows
    x = torch.randn(2, 2, 30, 16, 19, generator=torch.Generator().manual_seed(2))
    _compare(x, cout=8)
    _compare(x[:, :1], cout=5, kernel=(5, 3, 2), pool=2)


def test_long_kernels_and_channel_counts_off_the_16_lanes() -> None:
    # kt = 18 needs two 16-lane rows per kernel tap in the weight gradient; 20 and 5 filters leave channels past
    # the last full 16 lanes of the pooling pass
    x = torch.randn(2, 1, 41, 13, 14, generator=torch.Generator().manual_seed(5))
    _compare(x, cout=20, kernel=(18, 2, 2), pool=2)
    _compare(x, cout=5, kernel=(16, 3, 3), pool=3)


def test_results_do_not_depend_on_the_thread_count() -> None:
    x = torch.randn(3, 1, 30, 24, 24, generator=torch.Generator().manual_seed(6))
    w = (torch.randn(16, 1, 15, 3, 3, generator=torch.Generator().manual_seed(7)) * 0.05).requires_grad_()
    b = torch.zeros(16, requires_grad=True)
    before, runs = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = conv_relu_pool(x, w, b, 3)
            runs.append((out.detach(), *torch.autograd.grad(out.square().sum(), (w, b))))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        for got, want in zip(run, runs[0], strict=True):
            assert torch.equal(got, want)  # bit for bit: fixed work units and order of summation


def test_ties_route_the_gradient_like_max_pool3d() -> None:
    # a constant region makes every conv output inside it equal: the max-pool tie rule decides the gradient
    x = torch.randn(2, 1, 20, 24, 24, generator=torch.Generator().manual_seed(3))
    x[:, :, :, :12, :] = 0.7
    x[1] = 0.0
    _compare(x, bias_scale=1.0, bias_shift=0.0)


def test_stcnn_fast_and_plain_agree_on_outputs_and_every_gradient() -> None:
    torch.manual_seed(0)
    # no dropout: the fast path draws its masks from another random stream (tests/test_fast_dense.py)
    fast = MicroExpSTCNN(3, (1, 18, 64, 64), dropout=0.0)
    plain = MicroExpSTCNN(3, (1, 18, 64, 64), dropout=0.0, fast=False)
    plain.load_state_dict(fast.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(3, 1, 18, 64, 64)
    y = torch.tensor([0, 2, 1])
    grads = []
    for model in (fast, plain):
        model.train()
        loss = F.cross_entropy(model(clip=x), y)
        grads.append({k: torch.autograd.grad(loss, p, retain_graph=True)[0] for k, p in model.named_parameters()})
    for name, g in grads[1].items():
        torch.testing.assert_close(grads[0][name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()), msg=name)
    fast.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(clip=x), plain(clip=x), rtol=1e-5, atol=1e-5)


def test_parameters_unchanged_and_input_gradients_fall_back_to_plain_layers() -> None:
    model = MicroExpSTCNN(3, (1, 96, 64, 64))
    assert model.fast and count_parameters(model) == PARAMETERS["stcnn"]
    small = MicroExpSTCNN(3, (1, 18, 32, 32))
    x = torch.randn(1, 1, 18, 32, 32, requires_grad=True)  # e.g. saliency maps need d(logit)/d(input)
    small(clip=x)[0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("wino", ["wino", "wino_quarter", "wino_half", "wino_f4", "wino_fused_quarter",
                                  "wino_fused_half"])
@pytest.mark.parametrize("shape,cout,kernel,pool", [
    ((2, 1, 24, 20, 17), 32, (15, 3, 3), 3),  # 15 outputs wide: the last tile reads zeros past the clip
    ((1, 1, 31, 35, 29), 16, (15, 3, 3), 3),
    ((2, 1, 20, 14, 64), 48, (5, 3, 3), 3),  # 60 outputs wide: whole tiles of 4 and of 6
    ((2, 2, 18, 13, 22), 32, (4, 2, 3), 2),  # pool 2; two input channels
    ((1, 1, 19, 11, 12), 20, (5, 3, 3), 3),  # filters not in sixteens: runs as the direct units
], ids=["pad", "odd", "exact", "pool2-cin2", "fallback"])
def test_winograd_candidates_match_plain_layers(wino: str, shape: tuple[int, ...], cout: int,
                                                kernel: tuple[int, int, int], pool: int) -> None:
    from microexp.fast import tune

    with tune.force(f"conv_relu_pool={wino}"):
        _compare(torch.randn(shape, generator=torch.Generator().manual_seed(11)), cout=cout, kernel=kernel, pool=pool)


@pytest.mark.parametrize("tile", [4, 6])
def test_winograd_transforms_are_a_three_tap_correlation(tile: int) -> None:
    """A^T [(G g) * (B^T d)] = the correlation of d (tile + 2 values) with g (3 taps), ``tile`` outputs (A^T as
    the pooling pass applies it: sums and differences of the product pairs, powers of two); the compiled input
    transform applies B^T and writes each value as the taps of the conv rows that read it."""
    from microexp.fast.kernels import wino_taps

    n = tile + 2
    pts = [1, -1, 2, -2, 0.5, -0.5][:tile]  # the finite points after 0: A^T's columns are their powers
    a_t = torch.zeros(tile, n, dtype=torch.float64)
    a_t[0, 0] = 1
    for i, pt in enumerate(pts):
        a_t[:, i + 1] = torch.tensor([pt ** k for k in range(tile)], dtype=torch.float64)
    a_t[tile - 1, n - 1] = 1
    gen = torch.Generator().manual_seed(3)
    d, g = torch.randn(n, dtype=torch.float64, generator=gen), torch.randn(3, dtype=torch.float64, generator=gen)
    y = a_t @ ((fastconv._WINO_G[tile] @ g) * (fastconv._WINO_BT[tile].double() @ d))
    torch.testing.assert_close(y, torch.stack([d[k:k + 3] @ g for k in range(tile)]), rtol=1e-12, atol=1e-12)
    x = torch.randn(2, 3, 6, 3 * tile + 2, generator=gen)  # (C, T, H, W): 3 tiles
    kh, h0, hr = 2, 1, 4  # clip rows 1-4, three conv rows of a 2-row kernel
    taps = torch.full((hr - kh + 1, 3, 3, n * 2 * kh), float("nan"))
    btc = fastconv._WINO_BT[tile].t().contiguous().view(-1).numpy()
    wino_taps(x.numpy(), 3, h0, hr, 3, btc, kh, taps.numpy(), torch.empty(3 * n).numpy())
    e = x[:, :, h0:h0 + hr].unfold(3, n, tile) @ fastconv._WINO_BT[tile].t()  # (C, T, rows, tiles, n)
    ref = torch.stack([e[:, :, r:r + kh] for r in range(hr - kh + 1)])  # (r, C, T, u, tiles, n)
    ref = ref.permute(0, 2, 4, 5, 1, 3).reshape(hr - kh + 1, 3, 3, n * 2 * kh)  # channel (p, c, u)
    torch.testing.assert_close(taps, ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("cin,kh,width", [(1, 3, 40), (1, 3, 16), (1, 3, 9), (2, 3, 21), (1, 2, 33)])
def test_tap_kernels_copy_and_round_like_pytorch(cin: int, kh: int, width: int) -> None:
    """The direct conv's taps (the kernel rows as input channels): the same values as PyTorch's strided copy, and in
    bf16 the same bits as its conversion (nearest even, ties and NaN included), on the 16-lane interleaving path (one
    channel, three rows, at least 16 columns, the last block overlapping) and on the scalar one. NaN stays NaN
    (PyTorch itself gives it other bits on its vectorised path than on its scalar one)."""
    from microexp.fast.kernels import taps_bf16, taps_f32

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(cin, 4, 7, width + 3, generator=gen)
    ties = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 2 ** -130, float("inf"), float("nan")])
    h0, rows, t_in = 1, 7 - kh, 3
    x[0, 0, h0, :6] = ties  # halfway cases round to even; a subnormal; inf; NaN
    x[0, 1, 2, 1] = float("nan")
    s = x.stride()
    ref = x.as_strided((rows, t_in, width, cin, kh), (s[2], s[1], s[3], s[0], s[2]), h0 * s[2])
    ref = ref.reshape(rows, t_in, width, cin * kh)
    out = torch.full((rows, t_in, width, cin * kh), 7.0)
    taps_f32(x.numpy(), t_in, width, h0, kh, out.numpy())
    assert torch.equal(out.view(torch.int32), ref.contiguous().view(torch.int32))
    bits = torch.zeros(rows, t_in, width, cin * kh, dtype=torch.int16)
    taps_bf16(x.numpy(), t_in, width, h0, kh, bits.numpy())
    nan = ref.isnan()
    assert nan.sum() == 3  # the NaN of clip row h0 in one tap, the one of the row below it in two
    assert torch.equal(bits[~nan], ref.to(torch.bfloat16).view(torch.int16)[~nan])
    assert bits.view(torch.bfloat16)[nan].isnan().all()


@pytest.mark.parametrize("shape,frames", [((2, 1, 40, 20, 17), 41), ((1, 2, 32, 5, 48), 64), ((1, 1, 7, 3, 9), 7)],
                         ids=["tails", "whole-blocks", "under-16"])
def test_time_last_copies_and_rounds_like_pytorch(shape: tuple[int, ...], frames: int) -> None:
    """The clips with their frames innermost: the weight gradient's float32 copy (PyTorch's permuted copy, zeros
    past the last frame), and the AMX units' bf16 rows from a clip row on (16 x 16 register transposes with scalar
    tails), the same bits as PyTorch's conversion of that copy (halfway cases to even), zeros past the last frame,
    NaN staying NaN; in float32 the same kernel gives the copy's values exactly."""
    from microexp.fast.kernels import frames_last

    gen = torch.Generator().manual_seed(8)
    x = torch.randn(shape, generator=gen)
    x[0, 0, 0, 1, :5] = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 2 ** -130, float("inf")])
    x[0, 0, -1, -1, -1] = float("nan")
    ref = x.permute(0, 1, 3, 4, 2)
    t = shape[2]
    out = fastconv.time_last(x, frames)
    assert out.shape == (*ref.shape[:4], frames) and out.dtype == torch.float32
    assert torch.equal(out[..., :t].view(torch.int32), ref.contiguous().view(torch.int32))
    assert not out[..., t:].any()
    h0 = 1
    bits = torch.full((*shape[:2], shape[3] - h0, shape[4], frames), 7, dtype=torch.int16)
    for i in range(shape[0]):
        for c in range(shape[1]):
            frames_last(x[i, c].numpy(), bits[i, c].numpy(), h0)
    same = torch.full(bits.shape, 7.0)
    for i in range(shape[0]):
        for c in range(shape[1]):
            frames_last(x[i, c].numpy(), same[i, c].numpy(), h0)
    assert torch.equal(same.view(torch.int32), out[:, :, h0:].view(torch.int32))
    ref = ref[:, :, h0:]
    assert not bits[..., t:].any()
    nan = ref.isnan()
    assert int(nan.sum()) == 1
    assert torch.equal(bits[..., :t][~nan], ref.to(torch.bfloat16).view(torch.int16)[~nan])
    assert bits[..., :t].view(torch.bfloat16)[nan].isnan().all()


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32-clip", "bf16-clip"])
def test_weight_gradient_lists_its_terms_alike_sixteen_at_a_time_and_one_by_one(bf16: bool) -> None:
    """The weight gradient's two listings of the nonzero terms (16 at a time with AVX-512 compress stores, one at a
    time elsewhere) give the same terms in the same order, so the same weight gradient bit for bit; the bias
    gradient (16 lane sums against one running sum) to fp32 rounding. Pooled rows of 17 outputs: full and short
    groups of 16; dropout's scale; the ReLU's blocked outputs and zero gradients both left out."""
    from microexp.fast import kernels

    if not kernels.AVX512:
        pytest.skip("numba compiles for a CPU without AVX-512 here: only the one-by-one listing runs")
    gen = torch.Generator().manual_seed(3)
    cout, tp, hp, wp, pool, kt = 32, 4, 5, 17, 3, 15
    x = torch.randn(1, 1, tp * pool + kt - 1, hp * pool + 2, wp * pool + 2, generator=gen)
    xt = fastconv.time_last(x, x.shape[2] + 16 - kt)[0]
    if bf16:  # the AMX units' copy
        xt = xt.to(torch.bfloat16).view(torch.int16)
    g = torch.randn(cout, tp, hp * wp, generator=gen)
    g[g.abs() < 0.1] = 0.0
    idx = torch.randint(0, pool ** 3, (cout, tp, hp * wp), generator=gen, dtype=torch.uint8)
    idx[torch.rand(idx.shape, generator=gen) < 0.4] = kernels.BLOCKED
    results = []
    for fn in (kernels.pool_weight_grad, kernels.pool_weight_grad_scalar):
        acc, bacc = np.zeros((cout, 9 * 16), np.float32), np.zeros(cout, np.float32)
        fn(xt.numpy(), g.numpy(), idx.numpy(), 1, tp, pool, 3, 3, wp, 16, acc, bacc, 2.0)
        results.append((acc, bacc))
    (acc_v, b_v), (acc_s, b_s) = results
    assert np.abs(acc_s).max() > 1.0 and np.array_equal(acc_v, acc_s)
    live = (idx[:, 1:] != kernels.BLOCKED) & (g[:, 1:] != 0)
    np.testing.assert_allclose(b_v, (2.0 * g[:, 1:] * live).sum((1, 2)).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b_v, b_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tp,hp,wp,c", [(3, 2, 20, 32), (2, 3, 7, 16), (2, 2, 33, 48), (2, 2, 5, 20)],
                         ids=["stcnn-row", "short-row", "three-groups", "channels-off-16"])
def test_pooled_rows_written_sixteen_at_a_time_as_one_by_one(tp: int, hp: int, wp: int, c: int) -> None:
    """The pooling pass's writer of a pooled row (bias, ReLU, rate-1/2 dropout from the words, window offsets or
    ``BLOCKED``): the 16 x 16 register version writes the same outputs and offsets, bit for bit, as the one-by-one
    one, with and without dropout (its last word read at an offset, no word past it), with and without offsets,
    for rows that fill one, two or three groups of 16 columns and channels off the sixteens (left one by one)."""
    from numba import njit

    from microexp.fast import kernels

    if not kernels.AVX512:
        pytest.skip("numba compiles for a CPU without AVX-512 here: only the one-by-one writer runs")

    def rows(fn):  # type: ignore[no-untyped-def]
        @njit
        def run(best, arg, bias, pre, idx, drop, want, e0):  # type: ignore[no-untyped-def]
            for r in range(hp):
                for a in range(tp):
                    fn(best[a], arg[a], bias, r * wp, a, wp, c, want, pre, idx, drop, e0)
        return run

    rng = np.random.default_rng(4)
    best = rng.standard_normal((tp, wp * c)).astype(np.float32)
    arg = rng.integers(0, 27, (tp, wp * c)).astype(np.int32)
    bias = (rng.standard_normal(c) * 0.1).astype(np.float32)
    e0 = 7
    words = rng.integers(-2 ** 31, 2 ** 31 - 1, (e0 + c * tp * hp * wp + 31) // 32).astype(np.int32)
    one, sixteen = rows(kernels._write_pooled1), rows(kernels._write_pooled16)
    for drop in (words, np.empty(0, np.int32)):
        for want in (True, False):
            got = []
            for fn in (one, sixteen):
                pre, idx = np.full((c, tp, hp * wp), 9.0, np.float32), np.full((c, tp, hp * wp), 77, np.uint8)
                fn(best, arg, bias, pre, idx, drop, want, e0)
                got.append((pre, idx))
            assert np.array_equal(got[0][0].view(np.int32), got[1][0].view(np.int32))
            assert np.array_equal(got[0][1], got[1][1])
            assert (got[1][0] == 0).any() and (got[1][0] > 0).any() and (got[1][1] == 77).all() != want


@pytest.mark.parametrize("how", ["fused", "fused_half", "wino", "wino_quarter", "wino_f4",
                                 "wino_fused_quarter", "wino_fused_half", "plain", "onednn_cl"])
def test_fused_dropout_is_the_dense_dropout_from_the_same_words(how: str) -> None:
    """At rate 1/2 the fused variants drop in their pooling pass: the same mask (the same random words, drawn from
    the same generator) as the dropout after the plain layers, the same outputs and gradients."""
    from microexp.fast import tune
    from microexp.fast.dropout import dropout

    gen = torch.Generator().manual_seed(21)
    x = torch.randn(2, 1, 24, 20, 26, generator=gen)
    w0 = torch.randn(32, 1, 15, 3, 3, generator=gen) * 0.05
    b0 = torch.randn(32, generator=gen) * 0.1 - 0.05

    def run(fast: bool) -> tuple[torch.Tensor, ...]:
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        torch.manual_seed(5)
        if fast:
            with tune.force(f"conv_relu_pool={how}"):
                out = conv_relu_pool(x, w, b, 3, dropout=0.5)
        else:
            out = dropout(_naive(x, w, b, 3), 0.5, True)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
        return (out, *torch.autograd.grad((out * g).sum(), (w, b)))

    ref, fast = run(False), run(True)
    assert (ref[0] == 0).float().mean() > 0.4  # the dropout (and the ReLU) zeroed outputs
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-5, atol=2e-6 * float(ref[1].abs().max()))
    torch.testing.assert_close(fast[2], ref[2], rtol=1e-5, atol=1e-5)


def test_dropout_rates_other_than_a_half_run_after_the_layers() -> None:
    from microexp.fast.dropout import dropout

    x = torch.randn(1, 1, 20, 14, 14, generator=torch.Generator().manual_seed(8))
    w, b = torch.randn(16, 1, 5, 3, 3) * 0.1, torch.zeros(16)
    torch.manual_seed(2)
    out = conv_relu_pool(x, w, b, 3, dropout=0.3)
    torch.manual_seed(2)
    torch.testing.assert_close(out, dropout(_naive(x, w, b, 3), 0.3, True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kh,kt,planes,cout,nt", [(3, 15, 8, 32, 27), (2, 5, 6, 64, 11), (1, 3, 8, 32, 4)])
def test_winograd_products_kernel_sums_each_filter_over_its_taps(kh: int, kt: int, planes: int, cout: int,
                                                                 nt: int) -> None:
    """The fused candidates' register kernel: m[r, f, j, p C + c] = sum over (u, k) of uw[p, u, k, c]
    xh[row0 + r + u, t0 + f + k, j, p], for whole calls of the register kernel and the frames left over
    (nt 11, 4), 32 or 64 filters, one to three kernel rows."""
    from microexp.fast.kernels import wino_products

    gen = torch.Generator().manual_seed(13)
    rows, tiles, row0, t0, nrows = kh + 3, 3, 1, 2, 3
    t_in = t0 + nt + kt - 1 + 1
    xh = torch.randn(rows + row0, t_in, tiles, planes, generator=gen)
    uw = torch.randn(planes, kh, kt, cout, generator=gen)
    m = torch.full((nrows, nt, tiles, planes * cout), float("nan"))
    wino_products(xh.numpy(), row0, nrows, t0, nt, kh, kt, uw.numpy(), m.numpy())
    xd, ud = xh.double(), uw.double()
    ref = torch.zeros(nrows, nt, tiles, planes, cout, dtype=torch.float64)
    for u in range(kh):
        for k in range(kt):
            win = xd[row0 + u:row0 + u + nrows, t0 + k:t0 + k + nt]  # (r, f, j, p)
            ref += win.unsqueeze(-1) * ud[:, u, k].view(1, 1, 1, planes, cout)
    torch.testing.assert_close(m.view(nrows, nt, tiles, planes, cout).double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,kernel", [((2, 1, 40, 20, 17), (15, 3, 3)), ((1, 1, 27, 14, 26), (12, 2, 3))],
                         ids=["stcnn-kernel", "kt12-kh2"])
def test_amx_candidates_sum_the_bf16_products_in_fp32(shape: tuple[int, ...], kernel: tuple[int, int, int]) -> None:
    """The AMX candidates (where this CPU runs AMX tiles; elsewhere they are oneDNN's bf16 units, compared with
    the plain layers by ``test_fast_tune``): outputs of the clip and weights rounded to bf16, summed in fp32 with
    no rounding of the conv outputs to bf16, so within fp32 rounding of a float64 reference; the max-pool windows
    pick the same elements: the weight gradient (taken against the bf16 clip, as autocast takes it) matches the
    reference routed through the reference's windows, the windows whose two largest values fp32 cannot tell apart
    left out (one here: 2.2393780146 against 2.2393780202)."""
    from microexp.fast import amx, tune

    if not amx.available():
        pytest.skip("no AMX tiles here (the CPU lacks them, numba compiles for another CPU, or the kernel refused)")
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(shape, generator=gen)
    w0 = torch.randn(32, 1, *kernel, generator=gen) * 0.1
    b0 = torch.randn(32, generator=gen) * 0.1
    xb, wb = x.bfloat16().double(), w0.bfloat16().double()
    conv = F.conv3d(xb, wb, b0.double())
    pooled, where = F.max_pool3d(conv, 3, return_indices=True)
    ref = torch.relu(pooled)
    n, c, tp, hp, wp = ref.shape
    windows = conv[:, :, :tp * 3, :hp * 3, :wp * 3].reshape(n, c, tp, 3, hp, 3, wp, 3)
    top2 = windows.permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(n, c, tp, hp, wp, 27).topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-6 * float(conv.abs().max())
    assert clear.float().mean() > 0.99
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64) * clear
    routed = F.max_unpool3d(g * (pooled > 0), where, 3, output_size=conv.shape[2:])
    ref_gw = torch.nn.grad.conv3d_weight(xb, wb.shape, routed)
    for how in ("amx_half", "amx_quarter"):
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        with tune.force(f"conv_relu_pool={how}"), torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv_relu_pool(x, w, b, 3)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        gw = torch.autograd.grad((out * g.float()).sum(), w)[0]
        torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-4, atol=1e-4 * float(ref_gw.abs().max()))
