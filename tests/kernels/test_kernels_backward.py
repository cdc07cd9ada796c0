"""The backward products on packed signs (csrc/core/sign_gemm.h, train_backward.cpp) against float64 numpy /
PyTorch references, on every kernel path, on awkward sizes.

Tolerance: every output is a float32 sum of R terms taken a nibble at a time; its error against the float64
sum is below ~R * 2^-24 of the sum of |terms|, far under 1e-5 of the largest output for the sizes here, while
one wrong sign (a flipped bit) moves an output by about 2 / sqrt(R) of its scale: ``TOL = 1e-5`` relative to
the largest reference value tells them apart. Paths and thread counts must agree bit for bit (the operation
order is fixed in sign_gemm_walk.h and no output is split between tasks).
"""

import numpy as np
import pytest

from horq import _core, kernels
from horq.bits import pack_signs, words_for
from horq.kernels import train as ktrain

torch = pytest.importorskip("torch")

TOL = 1e-5


def _close(got, ref, what):
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.abs(np.asarray(got, dtype=np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    assert err <= TOL * scale + 1e-30, f"{what}: max error {err:.3g} > {TOL} x {scale:.3g}"


def _sign_rows(neg: np.ndarray) -> np.ndarray:
    """Bool (J, R), True = -1, -> sign rows word-block-major: (words_for(R), J) uint64."""
    j, r = neg.shape
    padded = np.zeros((j, -(-r // 64) * 64), dtype=bool)
    padded[:, :r] = neg
    return np.ascontiguousarray(np.packbits(padded, axis=1, bitorder="little").view(np.uint64).T)


@pytest.mark.parametrize("R", [1, 3, 4, 31, 32, 33, 63, 64, 65, 513])
@pytest.mark.parametrize("M", [1, 15, 16, 17, 33, 64, 65, 100])
def test_sign_gemm_every_path(path, R, M):
    rng = np.random.default_rng(R * 1000 + M)
    J = 1 + (R * 7 + M) % 70
    a = rng.standard_normal((R, M)).astype(np.float32)
    scale = rng.standard_normal(R).astype(np.float32)
    neg = rng.integers(0, 2, (J, R)).astype(bool)
    s = _sign_rows(neg)
    if R % 64:  # bits past R are ignored
        s[-1] |= ~np.uint64(0) << np.uint64(R % 64)
    signs = np.where(neg, -1.0, 1.0)
    _close(_core.sign_gemm(a, s, None, path), signs @ a.astype(np.float64), "unscaled")
    got = _core.sign_gemm(a, s, scale, path)
    _close(got, signs @ (a.astype(np.float64) * scale[:, None]), "scaled")
    np.testing.assert_array_equal(got, _core.sign_gemm(a, s, scale, "generic"))


def test_sign_gemm_same_bits_at_any_thread_count(path):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    s = _sign_rows(rng.integers(0, 2, (1500, 300)).astype(bool))
    kernels.set_num_threads(1)
    one = _core.sign_gemm(a, s, None, path)
    kernels.set_num_threads(2)
    np.testing.assert_array_equal(_core.sign_gemm(a, s, None, path), one)


@pytest.mark.parametrize("ncols,order,words", [(1, 1, 1), (63, 2, 1), (64, 1, 2), (65, 3, 3), (200, 4, 2)])
def test_transpose_planes(path, ncols, order, words):
    rng = np.random.default_rng(ncols)
    bits = rng.integers(0, 2**63, (ncols, order, words), dtype=np.uint64)
    unpacked = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little").reshape(ncols, order, words * 64)
    for k in range(order):
        s = _core.transpose_planes(bits, k, path)
        assert s.shape == (-(-ncols // 64), words * 64)
        back = np.unpackbits(np.ascontiguousarray(s.T).view(np.uint8), axis=1, bitorder="little")[:, :ncols]
        np.testing.assert_array_equal(back.T, unpacked[:, k, :])
        rest = np.unpackbits(np.ascontiguousarray(s.T).view(np.uint8), axis=1, bitorder="little")[:, ncols:]
        assert not rest.any()  # bits past ncols are zero


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 9, 4, 4), (2, 64, 14, 14), (1, 17, 1, 33),
                                   (2, 130, 3, 3), (0, 4, 2, 2)])
def test_nchw_rows_every_path(path, shape):
    """The NCHW gradient's pixels as rows (the weight gradient's order): a copy, exact, on sizes around the
    8 x 8 / 16 x 16 register transposes."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    got = ktrain.nchw_rows(x, kernel=path)
    np.testing.assert_array_equal(got, x.transpose(0, 2, 3, 1).reshape(-1, shape[1]))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 9, 4, 4), (64, 64, 14, 14), (1, 17, 1, 33),
                                   (5, 130, 3, 3), (0, 4, 2, 2)])
def test_nchw_rows_channel_sums(path, shape):
    """With sums=True the rows are the same copy and each channel's sum over the batch (the bias gradient) comes
    with them: within float32 rounding of the float64 sum, the same bits at 1 and 2 threads and on every path."""
    from horq import kernels

    x = (np.random.default_rng(sum(shape)).standard_normal(shape) + 3).astype(np.float32)  # sums far from 0
    rows, sums = ktrain.nchw_rows(x, kernel=path, sums=True)
    np.testing.assert_array_equal(rows, x.transpose(0, 2, 3, 1).reshape(-1, shape[1]))
    assert sums.dtype == np.float32 and sums.shape == (shape[1],)
    exact = x.astype(np.float64).sum((0, 2, 3))
    np.testing.assert_allclose(sums, exact, rtol=1e-6, atol=1e-6 * np.abs(x).sum((0, 2, 3)).max(initial=0))
    before = kernels.get_num_threads()
    try:
        for threads in (1, 2):
            kernels.set_num_threads(threads)
            for other in ("generic", path):
                np.testing.assert_array_equal(ktrain.nchw_rows(x, kernel=other, sums=True)[1], sums)
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("layout", [(1, 1, 1), (1, 7, 1), (1, 200, 4), (3, 5, 1), (9, 64, 1), (2, 70, 2),
                                    (4, 17, 1)])
def test_expand_columns_every_path(path, order, layout):
    # Each value is float32 sum_k (bit ? -b_k : b_k) added in the order k = 1..K (as the torch path's float32
    # approximation), and every path gives those bits; a zero beta rebuilds as -0.0 where its bit is set.
    groups, cg, gw = layout
    rng = np.random.default_rng(groups * 100 + cg + order)
    ncols, ld = 37, (groups - 1) * gw + words_for(cg)
    bits = rng.integers(0, 2**63, (ncols, order, ld), dtype=np.uint64)
    bits |= rng.integers(0, 2, (ncols, order, ld), dtype=np.uint64) << np.uint64(63)
    betas = np.abs(rng.standard_normal((ncols, order)))
    betas[3] = 0.0
    got = np.zeros((ncols - 5, groups * cg), np.float32)
    ktrain.expand_columns(bits, betas, layout, 5, ncols, got, kernel=path)
    unpacked = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little").reshape(ncols, order, ld * 64)
    idx = np.concatenate([g * gw * 64 + np.arange(cg) for g in range(groups)])
    want = np.zeros((ncols, groups * cg), np.float32)
    for k in range(order):
        term = np.where(unpacked[:, k, idx] == 1, -1.0, 1.0).astype(np.float32) * betas[:, k : k + 1].astype(np.float32)
        want = term if k == 0 else want + term
    np.testing.assert_array_equal(got.view(np.uint32), want[5:].view(np.uint32))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("c_in,c_out,k", [(3, 5, 3), (33, 7, 3), (64, 65, 3), (130, 9, 1), (16, 128, 3), (40, 256, 1)])
def test_planes_weight_grad_matches_expanded_columns(path, order, c_in, c_out, k):
    """Output widths of 128 and 256 take the padded row stride of the product (train.h weight_grad_stride)."""
    rng = np.random.default_rng(c_in + order)
    x = rng.standard_normal((2, c_in, 6, 5)).astype(np.float32)
    rows = rng.standard_normal((c_out, c_in * k * k)).astype(np.float32)
    alpha, bits, _ = ktrain.binarize_weight_rows(rows)
    wbits = ktrain.conv_weight_bits(bits, c_in, k, k)
    _, (cb, cbet) = ktrain.conv2d_keep(x, wbits, alpha.astype(np.float64), np.zeros(c_out), k, k, (1, 1), (1, 1),
                                       (1, 1), order)
    layout = ktrain.conv_layout(c_in, k * k)
    cols = np.zeros((cb.shape[0], layout[0] * layout[1]), np.float32)
    ktrain.expand_columns(cb, cbet, layout, 0, cb.shape[0], cols)
    g = rng.standard_normal((cb.shape[0], c_out)).astype(np.float32)
    got = ktrain.planes_weight_grad(g, cb, cbet, layout, k * k, kernel=path)  # (c, tap) order
    want = (g.T.astype(np.float64) @ cols.astype(np.float64)).reshape(c_out, k * k, c_in).transpose(0, 2, 1)
    _close(got, want.reshape(c_out, -1), "G^T A")


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("c_in,c_out,size", [(3, 5, 50), (32, 64, 41), (16, 130, 33)])
def test_planes_weight_grad_many_columns_any_threads(path, order, c_in, c_out, size):
    """Few outputs over thousands of columns (2 x size^2), the weight gradient's usual shape: within float tolerance
    of the float64 G^T A, and the same bits at 1 and 2 threads (which split the product's rows differently)."""
    rng = np.random.default_rng(size + order)
    x = rng.standard_normal((2, c_in, size, size)).astype(np.float32)
    rows = rng.standard_normal((c_out, c_in * 9)).astype(np.float32)
    alpha, bits, _ = ktrain.binarize_weight_rows(rows)
    wbits = ktrain.conv_weight_bits(bits, c_in, 3, 3)
    _, (cb, cbet) = ktrain.conv2d_keep(x, wbits, alpha.astype(np.float64), np.zeros(c_out), 3, 3, (1, 1), (1, 1),
                                       (1, 1), order)
    assert cb.shape[0] > 2048
    layout = ktrain.conv_layout(c_in, 9)
    cols = np.zeros((cb.shape[0], layout[0] * layout[1]), np.float32)
    ktrain.expand_columns(cb, cbet, layout, 0, cb.shape[0], cols)
    g = rng.standard_normal((cb.shape[0], c_out)).astype(np.float32)
    want = (g.T.astype(np.float64) @ cols.astype(np.float64)).reshape(c_out, 9, c_in).transpose(0, 2, 1)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        got = ktrain.planes_weight_grad(g, cb, cbet, layout, 9, kernel=path)
        _close(got, want.reshape(c_out, -1), "G^T A")
        kernels.set_num_threads(2)
        np.testing.assert_array_equal(ktrain.planes_weight_grad(g, cb, cbet, layout, 9, kernel=path), got)
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("m,n,batch", [(1, 1, 1), (7, 65, 3), (33, 63, 64), (64, 600, 17), (70, 1100, 5)])
def test_linear_weight_grad_is_products_then_ste(path, order, m, n, batch):
    """The fused weight gradient of a linear layer (products, transposed block by block, then the STE rule of
    the latent weights) gives the bits of planes_weight_grad followed by binary_weight_grad, at 1 and 2 threads."""
    rng = np.random.default_rng(m * n + order)
    x = rng.standard_normal((batch, n)).astype(np.float32)
    rows = (1.5 * rng.standard_normal((m, n))).astype(np.float32)  # some |w| > 1: the clip window matters
    alpha, bits, _ = ktrain.binarize_weight_rows(rows)
    _, (cb, cbet) = ktrain.linear_keep(x, bits, alpha.astype(np.float64), np.zeros(m), order)
    g = rng.standard_normal((batch, m)).astype(np.float32)
    before = kernels.get_num_threads()
    try:
        for clip in (None, 1.0):
            want = ktrain.binary_weight_grad(rows, alpha, ktrain.planes_weight_grad(g, cb, cbet, (1, n, words_for(n)),
                                                                                    1, kernel=path), clip, kernel=path)
            for threads in (1, 2):
                kernels.set_num_threads(threads)
                got = ktrain.linear_weight_grad(g, cb, cbet, rows, alpha, clip, kernel=path)
                np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    finally:
        kernels.set_num_threads(before)
    with pytest.raises(ValueError, match="one row per output"):
        ktrain.linear_weight_grad(g, cb, cbet, np.zeros((m + 1, n), np.float32), alpha, None)
    with pytest.raises(ValueError, match="do not match the bits"):
        ktrain.linear_weight_grad(g, cb, cbet, np.zeros((m, n + 64), np.float32), alpha, None)


CONV_CASES = [
    # (N, C_in, H, W, C_out, kernel, stride, padding, dilation)
    (1, 1, 1, 1, 1, 1, 1, 0, 1),
    (2, 3, 5, 7, 4, 3, 1, 1, 1),
    (1, 65, 9, 8, 33, (3, 2), 1, (0, 1), 1),
    (3, 16, 7, 7, 70, 3, 1, (2, 0), (2, 1)),
    (2, 64, 14, 14, 64, 3, 1, 1, 1),  # 196 positions: images side by side (a last block of 4 lanes alone)
    (2, 8, 10, 10, 16, 3, 1, 1, 1),  # 100 positions: two lane blocks per image, the second of 36
    (2, 7, 17, 18, 129, 3, 2, 1, 1),  # stride 2, three words of output channels
    (3, 5, 12, 11, 6, 3, 2, 0, 2),  # stride 2, dilation, no padding: input rows no tap reaches
    (5, 3, 4, 4, 2, 1, 2, 0, 1),  # 1x1 stride 2: a strided shortcut
    (1, 5, 6, 6, 3, 5, 1, 3, 1),  # 5x5, padding wider than the kernel needs
]


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-c{}-{}x{}-o{}-k{}-s{}-p{}-d{}".format(*c))
def test_conv_input_grad_matches_torch(path, case, clip):
    n, c, h, w, o, k, s, p, d = case
    (kh, kw), st, pad, dil = (v if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))
    rng = np.random.default_rng(h * w + o)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    rows = rng.standard_normal((o, c * kh * kw)).astype(np.float32)
    alpha = np.abs(rows).mean(axis=1).astype(np.float32)
    w_eff = (alpha[:, None] * np.where(rows < 0, -1.0, 1.0)).reshape(o, c, kh, kw)
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // st[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // st[1] + 1
    g = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    ref = torch.nn.grad.conv2d_input(x.shape, torch.from_numpy(w_eff), torch.from_numpy(g).double(), stride=st,
                                     padding=pad, dilation=dil).numpy()
    if clip is not None:
        ref = ref * (np.abs(x) <= clip)
    bits = pack_signs(rows)
    got = ktrain.conv_input_grad(g, alpha, bits, x, kh, kw, st, pad, dil, clip, kernel=path)
    _close(got, ref, "grad_input")
    if clip is not None:
        assert np.all(got[np.abs(x) > clip] == 0)
    np.testing.assert_array_equal(got, ktrain.conv_input_grad(g, alpha, bits, x, kh, kw, st, pad, dil, clip,
                                                              kernel="generic"))


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-c{}-{}x{}-o{}-k{}-s{}-p{}-d{}".format(*c))
def test_conv_input_grad_channels_last_is_the_same(path, case, clip):
    """NHWC gradient, input and result (channels_last): the NCHW result's values bit for bit (the same sums in
    the same order; only where they are read and written differs)."""
    n, c, h, w, o, k, s, p, d = case
    (kh, kw), st, pad, dil = (v if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))
    rng = np.random.default_rng(h * w + o + 1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    rows = rng.standard_normal((o, c * kh * kw)).astype(np.float32)
    alpha = np.abs(rows).mean(axis=1).astype(np.float32)
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // st[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // st[1] + 1
    g = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    bits = pack_signs(rows)
    want = ktrain.conv_input_grad(g, alpha, bits, x, kh, kw, st, pad, dil, clip, kernel=path)
    got = ktrain.conv_input_grad(_nhwc(g), alpha, bits, _nhwc(x), kh, kw, st, pad, dil, clip, kernel=path,
                                 channels_last=True)
    assert got.shape == (n, h, w, c)
    np.testing.assert_array_equal(got, _nhwc(want))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-c{}-{}x{}-o{}-k{}-s{}-p{}-d{}".format(*c))
def test_conv2d_keep_channels_last_is_the_same(path, case, order):
    """The training forward on an NHWC input with an NHWC output: the NCHW call's output, planes and betas bit
    for bit."""
    n, c, h, w, o, k, s, p, d = case
    (kh, kw), st, pad, dil = (v if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))
    rng = np.random.default_rng(h * w + o + order)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    rows = rng.standard_normal((o, c * kh * kw)).astype(np.float32)
    alpha, bits, _ = ktrain.binarize_weight_rows(rows, with_eff=False)
    wbits = ktrain.conv_weight_bits(bits, c, kh, kw)
    coef, add = alpha.astype(np.float64), rng.standard_normal(o)
    y, (planes, betas) = ktrain.conv2d_keep(x, wbits, coef, add, kh, kw, st, pad, dil, order, kernel=path)
    y2, (planes2, betas2) = ktrain.conv2d_keep(_nhwc(x), wbits, coef, add, kh, kw, st, pad, dil, order, kernel=path,
                                               channels_last=True)
    assert y2.shape == (n, y.shape[2], y.shape[3], o)
    np.testing.assert_array_equal(y2, _nhwc(y))
    np.testing.assert_array_equal(planes2, planes)
    np.testing.assert_array_equal(betas2, betas)


@pytest.mark.parametrize("k,stride", [(3, 1), (1, 2)], ids=["3x3", "1x1-stride2"])
def test_conv2d_keep_channels_last_refuses_non_finite(path, k, stride):
    """NaN/Inf anywhere in an NHWC input is an error, also in a pixel a strided 1x1 convolution skips."""
    x = np.zeros((2, 5, 6, 3), np.float32)  # NHWC
    x[1, 3, 3, 2] = np.nan  # odd row and column: not read at stride 2
    rows = np.ones((4, 3 * k * k), np.float32)
    alpha, bits, _ = ktrain.binarize_weight_rows(rows, with_eff=False)
    wbits = ktrain.conv_weight_bits(bits, 3, k, k)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ktrain.conv2d_keep(x, wbits, alpha.astype(np.float64), np.zeros(4), k, k, (stride, stride), (0, 0), (1, 1), 1,
                           kernel=path, channels_last=True)


# 10x10: one image per task; 9x9 (81 positions: a second lane block of 17) and 7x7: images side by side in tasks of
# equal size (at most 12 and 20 images; 40 images: 4 tasks of 10, 45: 12 + 12 + 12 + 9), several per thread.
@pytest.mark.parametrize("n,size", [(5, 10), (40, 9), (45, 7)])
def test_conv_input_grad_same_bits_at_any_thread_count(path, n, size):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, 20, size, size)).astype(np.float32)
    rows = rng.standard_normal((130, 20 * 9)).astype(np.float32)
    alpha = np.abs(rows).mean(axis=1).astype(np.float32)
    g = rng.standard_normal((n, 130, size, size)).astype(np.float32)
    kernels.set_num_threads(1)
    bits = pack_signs(rows)
    one = ktrain.conv_input_grad(g, alpha, bits, x, 3, 3, (1, 1), (1, 1), (1, 1), None, kernel=path)
    kernels.set_num_threads(2)
    np.testing.assert_array_equal(ktrain.conv_input_grad(g, alpha, bits, x, 3, 3, (1, 1), (1, 1), (1, 1), None,
                                                         kernel=path), one)


@pytest.mark.parametrize("batch,n_out,n_in", [(1, 1, 1), (3, 7, 65), (64, 130, 513)])
def test_linear_input_grad(path, batch, n_out, n_in):
    rng = np.random.default_rng(n_in)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    rows = rng.standard_normal((n_out, n_in)).astype(np.float32)
    alpha = np.abs(rows).mean(axis=1).astype(np.float32)
    g = rng.standard_normal((batch, n_out)).astype(np.float32)
    ref = g.astype(np.float64) @ (alpha[:, None] * np.where(rows < 0, -1.0, 1.0))
    _close(ktrain.linear_input_grad(g, alpha, pack_signs(rows), x, None, kernel=path), ref, "no window")
    got = ktrain.linear_input_grad(g, alpha, pack_signs(rows), x, 0.7, kernel=path)
    _close(got, ref * (np.abs(x) <= 0.7), "window")


@pytest.mark.parametrize("m,n", [(1, 1), (3, 7), (2, 15), (2, 16), (2, 17), (4, 63), (4, 64), (4, 65), (3, 129),
                                 (256, 3136)])
def test_weight_binarizer_and_gradient_every_path(path, m, n):
    # The weight side of a training step (csrc/core/weight_rows.h): alpha, the packed signs and w_eff against
    # numpy, the straight-through gradient against float64 numpy, and every path bit for bit like generic.
    rng = np.random.default_rng(m * 1000 + n)
    w = rng.standard_normal((m, n)).astype(np.float32)
    w.reshape(-1)[::5] = 0.0
    w.reshape(-1)[1::7] = -0.0  # sign(-0.0) = +1: bit 0
    w.reshape(-1)[2::9] = 1.0  # on the clip window's edge
    g = rng.standard_normal((m, n)).astype(np.float32)
    alpha, bits, eff = ktrain.binarize_weight_rows(w, kernel=path)
    np.testing.assert_array_equal(bits, pack_signs(w))
    ref_alpha = np.abs(w.astype(np.float64)).mean(axis=1)
    np.testing.assert_allclose(alpha, ref_alpha, rtol=1e-6)
    signs = np.where(w < 0, -1.0, 1.0)
    np.testing.assert_array_equal(eff, (alpha[:, None] * signs).astype(np.float32))
    a64 = alpha.astype(np.float64)[:, None]
    for clip in (1.0, None):
        got = ktrain.binary_weight_grad(w, alpha, g, clip, kernel=path)
        window = np.ones_like(w, dtype=bool) if clip is None else np.abs(w) <= clip
        ref = a64 * window * g + signs * (g * signs).sum(axis=1, keepdims=True) / n
        _close(got, ref, f"weight gradient, clip {clip}")
        np.testing.assert_array_equal(got, ktrain.binary_weight_grad(w, alpha, g, clip, kernel="generic"))
    g_alpha, g_bits, g_eff = ktrain.binarize_weight_rows(w, kernel="generic")
    np.testing.assert_array_equal(alpha, g_alpha)
    np.testing.assert_array_equal(bits, g_bits)
    np.testing.assert_array_equal(eff.view(np.uint32), g_eff.view(np.uint32))


def test_bad_sizes_are_refused():
    a = np.zeros((70, 4), np.float32)
    with pytest.raises(ValueError, match="words_for"):
        _core.sign_gemm(a, np.zeros((1, 3), np.uint64))  # 70 rows need two words
    with pytest.raises(ValueError, match="rscale"):
        _core.sign_gemm(a, np.zeros((2, 3), np.uint64), np.ones(3, np.float32))
    x = np.zeros((1, 2, 5, 5), np.float32)
    bits = np.zeros((3, 1), np.uint64)  # 18 signs per filter: one word
    with pytest.raises(ValueError, match="output's shape"):
        ktrain.conv_input_grad(np.zeros((1, 3, 4, 4), np.float32), np.ones(3, np.float32), bits, x, 3, 3, (1, 1),
                               (1, 1), (1, 1), None)
    with pytest.raises(ValueError, match="output's shape"):  # an NCHW gradient where channels_last wants NHWC
        ktrain.conv_input_grad(np.zeros((1, 3, 5, 5), np.float32), np.ones(3, np.float32), bits,
                               x.transpose(0, 2, 3, 1).copy(), 3, 3, (1, 1), (1, 1), (1, 1), None, channels_last=True)
    with pytest.raises(ValueError, match="words_for\\(C \\* kh \\* kw\\)"):
        ktrain.conv_input_grad(np.zeros((1, 3, 5, 5), np.float32), np.ones(3, np.float32), np.zeros((3, 2), np.uint64),
                               x, 3, 3, (1, 1), (1, 1), (1, 1), None)
    with pytest.raises(ValueError, match="one row per column"):
        _core.planes_weight_grad(np.zeros((3, 2), np.float32), np.zeros((4, 1, 1), np.uint64), np.zeros((4, 1)),
                                 1, 64, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        _core.planes_weight_grad(np.zeros((4, 2), np.float32), np.zeros((4, 1, 1), np.uint64), np.zeros((4, 1)),
                                 2, 64, 1, 2)
