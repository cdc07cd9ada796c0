"""kernels.float_conv2d (csrc/core/float_conv.h), the native backend's float first layer, against the float64
reference convolution; the avx2 and avx512 paths (both fused multiply-adds in the same order) bit for bit equal;
every path bitwise the same at any thread count. The AVX-512 row kernel's exact bits are also checked against
a scalar chain of fused multiply-adds under tests/kernels/test_kernels_avx512_emulated.py.

Tolerance: each output is a float32 sum of C*kh*kw products; its rounding error is below ~K * 2^-24 of the sum
of |w x|, so the error is measured against that magnitude (np.abs(w) convolved with np.abs(x)).

Grouped calls (groups > 1, depthwise too): every group against the float64 reference of its own channels and bit for bit
an ungrouped call on that group alone, threads, the fused pool, the prepared call and the errors.

Winograd tiles (algorithm="winograd", core/float_conv_winograd.h): against the same float64 reference within
WINOGRAD_TOLERANCE of that magnitude (their transforms add rounding of their own, larger against a small kernel's
magnitude: measured up to ~2.5e-6 on 3x3 kernels, ~1e-6 on a 7x7 stride-2 one); the avx2 and
avx512 paths bit for bit the generic path's scalar reference (the same operations per lane, std::fma for the
fused ones); any thread count and the fused pool bitwise; inputs with NaN, Inf or huge values computed directly.
"""

import numpy as np
import pytest

from horq import _core, kernels, reference

CASES = [
    # (N, C, H, W, C_out, (kh, kw), stride, padding, dilation)
    (1, 3, 37, 41, 64, (7, 7), (2, 2), (3, 3), (1, 1)),  # a ResNet stem on an odd map
    (2, 3, 16, 16, 5, (3, 3), (1, 1), (1, 1), (1, 1)),  # 16 pixels: one AVX-512 vector per row
    (1, 1, 9, 17, 4, (3, 3), (1, 1), (1, 1), (1, 1)),  # 17: a vector and one pixel
    (3, 2, 6, 33, 9, (2, 5), (1, 2), (0, 2), (2, 1)),  # rectangular kernel, mixed stride / dilation
    (1, 5, 8, 15, 13, (1, 1), (3, 1), (0, 0), (1, 1)),  # 1x1, 15 pixels: a tail only
    (1, 4, 5, 113, 7, (3, 3), (1, 1), (2, 2), (2, 2)),  # 113 pixels: several vectors per block and a tail
    (2, 1, 3, 3, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # one output channel, tiny map
]


def _reference(x, w, stride, padding, dilation, bias=None, floor=None):
    y = reference.horq_conv2d(x.astype(np.float64), w.astype(np.float64),
                              None if bias is None else bias.astype(np.float64), order=None, stride=stride,
                              padding=padding, dilation=dilation)
    scale = reference.horq_conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), order=None,
                                  stride=stride, padding=padding, dilation=dilation)
    if floor is not None:
        y = np.maximum(y, np.asarray(floor, np.float64).reshape(1, -1, 1, 1))
    return y, scale


def _case(case, seed):
    n, c, h, w_, m, (kh, kw), *_ = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w_)).astype(np.float32),
            rng.standard_normal((m, c, kh, kw)).astype(np.float32), rng.standard_normal(m).astype(np.float32))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}-c{}-{}x{}-m{}-k{}-s{}-p{}-d{}".format(*c))
def test_float_conv_matches_reference(path, case):
    x, w, b = _case(case, sum(case[:5]))
    stride, padding, dilation = case[6:]
    floor = np.where(np.arange(w.shape[0]) % 2 == 0, 0.0, -0.25).astype(np.float32)
    for bias, fl in ((None, None), (b, None), (b, floor), (None, np.float32(0.0))):
        got = kernels.float_conv2d(x, w, stride=stride, padding=padding, dilation=dilation, bias=bias, floor=fl,
                                   kernel=path, algorithm="direct")
        want, scale = _reference(x, w, stride, padding, dilation, bias, fl)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert (np.abs(got - want) <= 1e-6 * (scale + np.abs(want)) + 1e-30).all()
        if fl is not None:
            assert (got >= np.asarray(fl).reshape(1, -1, 1, 1)).all()


def test_fused_paths_agree_bit_for_bit():
    fused = [p for p in ("avx2", "avx512") if p in _core.available_kernels()]
    if len(fused) < 2:
        pytest.skip(f"needs both the avx2 and avx512 paths; this CPU runs {_core.available_kernels()}")
    for case in CASES:
        x, w, b = _case(case, 7)
        args = dict(stride=case[6], padding=case[7], dilation=case[8], bias=b, algorithm="direct")
        assert np.array_equal(kernels.float_conv2d(x, w, kernel="avx2", **args),
                              kernels.float_conv2d(x, w, kernel="avx512", **args))
    for case in WINOGRAD_CASES:
        x, w, b = _winograd_case(case, 7)
        args = dict(stride=case[6], padding=case[7], bias=b, algorithm="winograd")
        assert np.array_equal(kernels.float_conv2d(x, w, kernel="avx2", **args),
                              kernels.float_conv2d(x, w, kernel="avx512", **args))


def test_threads_bitwise_identical(path):
    x, w, b = _case(CASES[0], 3)
    x = np.concatenate([x, x[:, :, ::-1]])
    kernels.set_num_threads(1)
    one = kernels.float_conv2d(x, w, stride=2, padding=3, bias=b, kernel=path)
    kernels.set_num_threads(2)
    assert np.array_equal(kernels.float_conv2d(x, w, stride=2, padding=3, bias=b, kernel=path), one)


def test_large_batch_in_chunks(path):
    """The padded copies are made ~32 MB of images at a time: a batch that needs several chunks gives each image
    what it gives alone."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 64, 128, 128)).astype(np.float32)  # ~4.9 MB of copy per image: 2 chunks
    w = rng.standard_normal((2, 64, 3, 3)).astype(np.float32)
    whole = kernels.float_conv2d(x, w, padding=1, kernel=path)
    for i in (0, 6):
        assert np.array_equal(whole[i:i + 1], kernels.float_conv2d(x[i:i + 1], w, padding=1, kernel=path))


def test_nan_propagates_and_non_contiguous_input(path):
    x, w, _ = _case(CASES[1], 5)
    view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, other strides
    assert np.array_equal(kernels.float_conv2d(view, w, padding=1, kernel=path),
                          kernels.float_conv2d(x, w, padding=1, kernel=path))
    x[0, 1, 4, 4] = np.nan
    y = kernels.float_conv2d(x, w, padding=1, kernel=path)
    assert np.isnan(y[0, :, 3:6, 3:6]).all() and not np.isnan(y[1]).any() and not np.isnan(y[0, :, 0]).any()


def test_errors():
    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="x has 2 channels, the weights expect 3"):
        kernels.float_conv2d(np.zeros((1, 2, 5, 5), np.float32), w)
    with pytest.raises(ValueError, match="x must be float32"):
        kernels.float_conv2d(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="weight must have 4 dimensions"):
        kernels.float_conv2d(x, w[0])
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        kernels.float_conv2d(x, w, bias=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="floor must hold one value or one per output channel"):
        kernels.float_conv2d(x, w, floor=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        kernels.float_conv2d(np.zeros((1, 3, 2, 5), np.float32), w)
    with pytest.raises(ValueError, match="stride"):
        kernels.float_conv2d(x, w, stride=0)


GROUPED = [
    # (N, C, H, W, C_out, (kh, kw), stride, padding, dilation, groups)
    (1, 5, 9, 17, 5, (3, 3), (1, 1), (1, 1), (1, 1), 5),  # depthwise, 17: a vector and one pixel
    (2, 3, 11, 20, 6, (3, 3), (2, 2), (1, 1), (1, 1), 3),  # depthwise, multiplier 2, stride 2
    (1, 4, 7, 33, 8, (3, 3), (1, 1), (1, 1), (1, 1), 2),  # 4 outputs a group: blocks inside one group
    (1, 6, 12, 13, 9, (5, 5), (1, 1), (4, 4), (2, 2), 3),  # 3 outputs a group: blocks across groups, dilation
    (3, 8, 6, 33, 4, (3, 2), (2, 1), (0, 1), (1, 1), 4),  # one output a group from 2 channels, odd padding
    (1, 16, 5, 113, 16, (3, 3), (1, 1), (1, 1), (1, 1), 16),  # depthwise, several vectors a row and a tail
    (1, 7, 9, 14, 7, (3, 3), (2, 2), (1, 0), (1, 1), 7),  # stride 2, no column padding
    (1, 7, 9, 15, 14, (1, 1), (1, 2), (0, 1), (1, 1), 7),  # stride 2 with odd column padding
    (2, 37, 7, 21, 37, (3, 3), (1, 1), (1, 1), (1, 1), 37),  # depthwise over chunks of 16 channels and 5 more
    (1, 24, 9, 17, 48, (3, 3), (2, 2), (1, 1), (1, 1), 24),  # multiplier 2: 3 chunks, a group across two
]


def _grouped_case(case, seed):
    n, c, h, w_, m, (kh, kw), *_, groups = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w_)).astype(np.float32),
            rng.standard_normal((m, c // groups, kh, kw)).astype(np.float32), rng.standard_normal(m).astype(np.float32))


@pytest.mark.parametrize("case", GROUPED, ids=lambda c: "n{}-c{}-{}x{}-m{}-k{}-s{}-p{}-d{}-g{}".format(*c))
def test_grouped_float_conv(path, case):
    """groups > 1: each group's output channels against the float64 reference of that group's input channels, and
    bit for bit what an ungrouped call on that group alone gives (each output is the same chain of products)."""
    x, w, b = _grouped_case(case, sum(case[:5]))
    stride, padding, dilation, groups = case[6:]
    m, per_in, per_out = w.shape[0], x.shape[1] // groups, w.shape[0] // groups
    floor = np.where(np.arange(m) % 3 == 0, 0.0, -0.5).astype(np.float32)
    args = dict(stride=stride, padding=padding, dilation=dilation, kernel=path)
    for bias, fl in ((None, None), (b, floor)):
        got = kernels.float_conv2d(x, w, bias=bias, floor=fl, groups=groups, **args)
        for g in range(groups):
            rows, chans = slice(g * per_out, (g + 1) * per_out), slice(g * per_in, (g + 1) * per_in)
            gb, gf = (None if bias is None else bias[rows]), (None if fl is None else fl[rows])
            want, scale = _reference(x[:, chans], w[rows], stride, padding, dilation, gb, gf)
            assert got[:, rows].shape == want.shape
            assert (np.abs(got[:, rows] - want) <= 1e-6 * (scale + np.abs(want)) + 1e-30).all()
            alone = kernels.float_conv2d(np.ascontiguousarray(x[:, chans]), w[rows], bias=gb, floor=gf, **args)
            np.testing.assert_array_equal(got[:, rows].view(np.uint32), alone.view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_float_conv_threads_pool_and_prepared(path, threads):
    """A depthwise layer: bitwise the same at 1 and 2 threads, with its pool fused (max_pool2d of the plain call), and
    through kernels.FloatConv2d; NaN stays in its own channel."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 12, 15, 19)).astype(np.float32)
    x[1, 4, 7, 7] = np.nan
    w = rng.standard_normal((12, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    args = dict(padding=1, bias=bias, floor=np.zeros(12, np.float32), groups=12, kernel=path)
    kernels.set_num_threads(1)
    one = kernels.float_conv2d(x, w, **args)
    kernels.set_num_threads(threads)
    y = kernels.float_conv2d(x, w, **args)
    np.testing.assert_array_equal(y.view(np.uint32), one.view(np.uint32))
    assert np.isnan(y[1, 4, 6:9, 6:9]).all() and np.isnan(y).sum() == 9
    pool = {"kernel_size": 3, "stride": 2, "padding": 1}
    pooled = kernels.float_conv2d(x, w, pool=pool, **args)
    want = kernels.max_pool2d(y, 3, 2, 1, kernel=path)
    np.testing.assert_array_equal(pooled.view(np.uint32), want.view(np.uint32))
    prepared = kernels.FloatConv2d(w, **args)
    np.testing.assert_array_equal(prepared(x).view(np.uint32), y.view(np.uint32))


DEPTHWISE = [
    # (N, C, H, W, multiplier, (kh, kw), (sh, sw), (ph, pw), (dh, dw)): the depthwise kernels (float_conv_depthwise.h)
    (1, 3, 9, 56, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # MobileNet's 3x3: whole vectors, blocks of 4 rows and one
    (2, 5, 6, 17, 1, (3, 3), (1, 1), (0, 1), (1, 1)),  # a vector and a pixel (its store passes into the next row)
    (1, 20, 7, 7, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # a 7x7 map: each row's vector passes into the next rows
    (1, 1, 5, 33, 2, (3, 3), (2, 2), (1, 1), (1, 1)),  # stride 2, multiplier 2, one channel (bands of rows)
    (1, 4, 14, 14, 1, (3, 3), (2, 2), (1, 0), (1, 1)),  # stride 2 without column padding
    (1, 2, 13, 9, 1, (5, 5), (1, 1), (2, 2), (1, 1)),  # 5x5 (EfficientNet, MobileNetV3): tap by tap
    (2, 3, 11, 31, 1, (5, 5), (2, 2), (2, 3), (1, 1)),  # 5x5 stride 2, uneven padding
    (1, 6, 10, 15, 1, (7, 7), (1, 1), (3, 3), (1, 1)),  # ConvNeXt's 7x7
    (1, 2, 1, 8, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # one row
    (1, 37, 4, 113, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # 113: whole vectors and a tail on both paths, several tasks
    (1, 3, 12, 19, 1, (3, 3), (1, 1), (2, 2), (2, 2)),  # dilation 2
    (1, 4, 9, 23, 2, (3, 1), (2, 3), (1, 0), (1, 1)),  # uneven kernel and strides (3 column phases)
    (2, 5, 6, 6, 1, (1, 1), (1, 1), (0, 0), (1, 1)),  # 1x1
]


@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: "n{}-c{}-{}x{}-mult{}-k{}-s{}-p{}-d{}".format(*c))
def test_depthwise_kernel(path, case):
    """Depthwise calls: bit for bit what a direct call on each channel alone gives (the same chain of products in tap
    order, then bias, floor and ceiling), at 1 and 2 threads, and within float rounding of the float64 reference."""
    n, c, h, w_, mult, (kh, kw), stride, padding, dilation = case
    rng = np.random.default_rng(n * c * h * w_ + mult + kh + kw)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    m = c * mult
    w = rng.standard_normal((m, 1, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    floor = np.where(np.arange(m) % 3 == 0, 0.0, -0.5).astype(np.float32)
    ceiling = np.where(np.arange(m) % 2 == 0, 6.0, 0.75).astype(np.float32)
    args = dict(stride=stride, padding=padding, dilation=dilation, kernel=path)
    for b, fl, ce in ((None, None, None), (bias, floor, ceiling), (bias, None, ceiling)):
        kernels.set_num_threads(1)
        got = kernels.float_conv2d(x, w, bias=b, floor=fl, ceiling=ce, groups=c, **args)
        kernels.set_num_threads(2)
        np.testing.assert_array_equal(kernels.float_conv2d(x, w, bias=b, floor=fl, ceiling=ce, groups=c,
                                                           **args).view(np.uint32), got.view(np.uint32))
        kernels.set_num_threads(1)
        for o in range(m):
            sel, chan = slice(o, o + 1), slice(o // mult, o // mult + 1)
            ob, of, oc = (None if v is None else v[sel] for v in (b, fl, ce))
            alone = kernels.float_conv2d(np.ascontiguousarray(x[:, chan]), w[sel], bias=ob, floor=of, ceiling=oc,
                                         algorithm="direct", **args)
            np.testing.assert_array_equal(got[:, sel].view(np.uint32), alone.view(np.uint32))
            want, scale = _reference(x[:, chan], w[sel], stride, padding, dilation, ob, of)
            if oc is not None:
                want = np.minimum(want, oc.reshape(1, 1, 1, 1))
            assert (np.abs(got[:, sel] - want) <= 1e-6 * (scale + np.abs(want)) + 1e-30).all()


def test_grouped_float_conv_errors():
    x = np.zeros((1, 6, 5, 5), np.float32)
    with pytest.raises(ValueError, match="groups=4 must divide x's 6 channels"):
        kernels.float_conv2d(x, np.zeros((4, 1, 3, 3), np.float32), groups=4)
    with pytest.raises(ValueError, match="groups=3 must divide x's 6 channels and the weights' 4 output channels"):
        kernels.float_conv2d(x, np.zeros((4, 2, 3, 3), np.float32), groups=3)
    with pytest.raises(ValueError, match=r"the weights expect 9 \(3 per group, groups=3\)"):
        kernels.float_conv2d(x, np.zeros((3, 3, 3, 3), np.float32), groups=3)
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="groups must be a positive integer"):
            kernels.float_conv2d(x, np.zeros((6, 1, 3, 3), np.float32), groups=bad)
    with pytest.raises(ValueError, match="Winograd tiles take groups = 1 only"):
        kernels.float_conv2d(np.zeros((1, 2, 30, 30), np.float32), np.zeros((2, 1, 7, 7), np.float32), stride=2,
                             groups=2, algorithm="winograd")
    with pytest.raises(ValueError, match="groups must divide"):  # the core's own check
        _core.float_conv2d(x, np.zeros((6, 9), np.float32), 3, 3, (1, 1), (0, 0), (1, 1), groups=4)


POOLED = [
    # (N, C, H, W, C_out, kernel, stride, padding), then the pool's (kernel, stride, padding, dilation)
    ((1, 3, 45, 38, 20, 7, 2, 3), (3, 2, 1, 1)),  # a ResNet stem and its pool, odd sizes
    ((2, 1, 28, 28, 9, 3, 1, 1), (2, 2, 0, 1)),  # mnist-cnn's first layer and pool
    ((1, 2, 21, 71, 5, 3, 1, 1), (2, 2, 0, 1)),  # 2x2 windows, 35 a row: two whole vectors of 16 and 3, a column unused
    ((3, 2, 17, 21, 5, 3, 2, 0), (3, 3, 1, 2)),  # pool stride > its span's rows skipped, dilation
    ((1, 4, 12, 12, 6, 1, 1, 0), (1, 1, 0, 1)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", POOLED, ids=lambda c: "x{}-pool{}".format(*c))
def test_pooled_conv_is_conv_then_pool(path, case, threads):
    """float_conv2d(pool=) pools the convolution's rows as they come (a ring of rows per task; bands of pooled
    rows per thread): bitwise max_pool2d(float_conv2d(...)), NaN and the floors included, at any thread count."""
    (n, c, h, w, m, k, s, p), (pk, ps, pp, pd) = case
    kernels.set_num_threads(threads)
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[0, 0, h // 2, w // 3] = np.nan
    wt = rng.standard_normal((m, c, k, k)).astype(np.float32)
    bias, floor = rng.standard_normal(m).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    for pool_floor in (None, 0.0, rng.standard_normal(m).astype(np.float32)):
        conv = kernels.float_conv2d(x, wt, stride=s, padding=p, bias=bias, floor=floor, kernel=path)
        want = kernels.max_pool2d(conv, pk, ps, pp, pd, floor=pool_floor, kernel=path)
        got = kernels.float_conv2d(x, wt, stride=s, padding=p, bias=bias, floor=floor, kernel=path,
                                   pool={"kernel_size": pk, "stride": ps, "padding": pp, "dilation": pd,
                                         "floor": pool_floor})
        assert np.isnan(want).any()
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("width", [14, 32, 34, 71])
def test_pooled_conv_2x2_without_nan(path, width):
    """A float first layer's 2x2 stride-2 pool on finite maps (pool_rows_avx512.cpp row2s2, 16 outputs a step: 7, 16,
    17 and 35 a row; the emulation harness also takes its NaN-free variant) is max_pool2d of the plain convolution,
    bit for bit."""
    rng = np.random.default_rng(width)
    x = rng.standard_normal((2, 1, 9, width)).astype(np.float32)
    wt = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    for floor in (None, 0.1):
        conv = kernels.float_conv2d(x, wt, padding=1, bias=bias, floor=np.zeros(6, np.float32), kernel=path)
        want = kernels.max_pool2d(conv, 2, 2, floor=floor, kernel=path)
        got = kernels.float_conv2d(x, wt, padding=1, bias=bias, floor=np.zeros(6, np.float32), kernel=path,
                                   pool={"kernel_size": 2, "floor": floor})
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_pooled_conv_refuses_bad_pools():
    x, w = np.zeros((1, 2, 8, 8), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="kernel_size"):
        kernels.float_conv2d(x, w, pool={"size": 2})
    with pytest.raises(ValueError, match="pool_floor"):
        kernels.float_conv2d(x, w, pool={"kernel_size": 2, "floor": [0.0, 1.0]})
    with pytest.raises(ValueError, match="output size"):
        kernels.float_conv2d(x, w, pool={"kernel_size": 2, "out_size": (9, 1)})


def test_prepared_float_conv_is_float_conv2d(path):
    """kernels.FloatConv2d (the runtime's float first layers): float_conv2d's bits, with and without a fused pool;
    after a good call, arrays of the same shape go straight to the core, and anything else is checked again."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    bias, floor = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    args = {"stride": 1, "padding": 1, "bias": bias, "floor": floor, "kernel": path}
    pool = {"kernel_size": 2, "floor": np.zeros(5, np.float32)}
    plain, pooled = kernels.FloatConv2d(w, **args), kernels.FloatConv2d(w, **args, pool=pool)
    for shape in [(2, 3, 20, 18), (2, 3, 20, 18), (1, 3, 9, 33), (2, 3, 20, 18)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(plain(x), kernels.float_conv2d(x, w, **args))
        np.testing.assert_array_equal(pooled(x), kernels.float_conv2d(x, w, **args, pool=pool))
    with pytest.raises(ValueError, match="float32"):
        plain(x.astype(np.float64))
    with pytest.raises(ValueError, match="channels"):
        plain(rng.standard_normal((2, 4, 20, 18)).astype(np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        kernels.FloatConv2d(w, kernel=path)(np.zeros((1, 3, 2, 2), np.float32))


WINOGRAD_TOLERANCE = 5e-6
WINOGRAD_CASES = [
    # (N, C, H, W, C_out, (kh, kw), stride, padding)
    (1, 3, 224, 224, 64, (7, 7), 2, 3),  # the ResNet-18 stem
    (1, 3, 37, 41, 61, (7, 7), 2, 3),  # odd map, channels not a multiple of 4 or 8
    (2, 2, 11, 13, 7, (8, 8), 2, 1),  # 8x8 stride 2: full 4x4 sub-kernels
    (1, 4, 5, 6, 3, (5, 3), 2, 2),  # rectangular kernel: sub-kernels 3x2 and 2x1 in 4x4 tiles; 2x3 output
    (3, 1, 9, 17, 4, (3, 3), 1, 1),  # stride 1: one phase
    (1, 16, 30, 50, 9, (4, 4), 1, 0),  # 16 phase channels (the most the tiles take), 4x4 stride 1
    (1, 3, 20, 143, 33, (2, 4), 1, (0, 3)),  # 49 tile columns: 3 zmm vectors and 1 more (avx512: on a ymm); 33 out
    (1, 3, 8, 8, 1, (6, 6), 2, 0),  # one output channel, a 2x2 output in one tile
]


def _winograd_case(case, seed):
    n, c, h, w_, m, (kh, kw), *_ = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w_)).astype(np.float32),
            rng.standard_normal((m, c, kh, kw)).astype(np.float32), rng.standard_normal(m).astype(np.float32))


@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=lambda c: "n{}-c{}-{}x{}-m{}-k{}-s{}-p{}".format(*c))
def test_winograd_matches_reference(path, case):
    x, w, b = _winograd_case(case, sum(case[:5]))
    stride, padding = case[6:]
    floor = np.where(np.arange(w.shape[0]) % 3 == 0, 0.0, -0.5).astype(np.float32)
    for bias, fl in ((None, None), (b, floor)):
        got = kernels.float_conv2d(x, w, stride=stride, padding=padding, bias=bias, floor=fl, kernel=path,
                                   algorithm="winograd")
        want, scale = _reference(x, w, stride, padding, 1, bias, fl)
        assert got.dtype == np.float32 and got.shape == want.shape
        err = np.abs(got - want) / (scale + np.abs(want) + 1e-30)
        assert err.max() <= WINOGRAD_TOLERANCE, err.max()
        if fl is not None:
            assert (got >= fl.reshape(1, -1, 1, 1)).all()


def test_winograd_paths_are_the_scalar_reference_bit_for_bit():
    """avx2 and avx512 (where this CPU runs them) against the generic path's scalar tiles, with bias and floor."""
    fast = [p for p in ("avx2", "avx512") if p in _core.available_kernels()]
    if not fast:
        pytest.skip(f"no x86 SIMD path on this CPU ({_core.available_kernels()})")
    for case in WINOGRAD_CASES[1:]:
        x, w, b = _winograd_case(case, 5)
        args = dict(stride=case[6], padding=case[7], bias=b, floor=0.0, algorithm="winograd")
        want = kernels.float_conv2d(x, w, kernel="generic", **args)
        for p in fast:
            np.testing.assert_array_equal(kernels.float_conv2d(x, w, kernel=p, **args).view(np.uint32),
                                          want.view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_threads_and_pool_bitwise(path, threads):
    """Tiles are global (tile row ty = output rows 3ty..3ty+2 whichever task computes it): any thread count gives
    the same bits, and the fused pool is max_pool2d of the plain call."""
    x, w, b = _winograd_case((3, 3, 45, 38, 20, (7, 7), 2, 3), 9)
    kernels.set_num_threads(1)
    one = kernels.float_conv2d(x, w, stride=2, padding=3, bias=b, floor=0.0, kernel=path, algorithm="winograd")
    kernels.set_num_threads(threads)
    args = dict(stride=2, padding=3, bias=b, floor=0.0, kernel=path, algorithm="winograd")
    np.testing.assert_array_equal(kernels.float_conv2d(x, w, **args), one)
    for pool in ({"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 2, "floor": 0.25},
                 {"kernel_size": 3, "stride": 3, "padding": 1, "dilation": 2}):
        want = kernels.max_pool2d(one, pool["kernel_size"], pool.get("stride"), pool.get("padding", 0),
                                  pool.get("dilation", 1), floor=pool.get("floor"), kernel=path)
        np.testing.assert_array_equal(kernels.float_conv2d(x, w, **args, pool=pool), want)


def test_winograd_pool_keeps_nan_from_bias_and_floor(path):
    """The fused pool skips NaN's blend only where the tiles' outputs cannot be NaN: a NaN bias or floor channel
    (and an infinite bias) still pools as max_pool2d does, bit for bit, the other channels alike."""
    x, w, b = _winograd_case((1, 3, 45, 38, 6, (7, 7), 2, 3), 4)
    b[1], b[4] = np.nan, np.inf
    floor = np.array([0.0, 0.0, np.nan, -0.5, 0.0, 0.0], np.float32)
    args = dict(stride=2, padding=3, bias=b, floor=floor, kernel=path, algorithm="winograd")
    plain = kernels.float_conv2d(x, w, **args)
    assert np.isnan(plain[:, 1]).all() and np.isinf(plain[:, 4]).all()
    for pool in ({"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 3, "stride": 2, "padding": 1,
                                                                "floor": 0.25}):
        want = kernels.max_pool2d(plain, 3, 2, 1, floor=pool.get("floor"), kernel=path)
        got = kernels.float_conv2d(x, w, **args, pool=pool)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    finite = dict(args, bias=np.nan_to_num(b, nan=0.5, posinf=1.0), floor=np.nan_to_num(floor))
    pool = {"kernel_size": 3, "stride": 2, "padding": 1}
    want = kernels.max_pool2d(kernels.float_conv2d(x, w, **finite), 3, 2, 1, kernel=path)
    np.testing.assert_array_equal(kernels.float_conv2d(x, w, **finite, pool=pool).view(np.uint32),
                                  want.view(np.uint32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 3e12])
def test_winograd_leaves_nonfinite_and_huge_values_to_the_direct_kernel(path, bad):
    """A NaN or Inf would reach every output of its tiles through the transforms (and huge values could overflow
    them): such inputs and weights are computed directly, bit for bit the direct call."""
    x, w, b = _winograd_case((1, 3, 30, 30, 8, (7, 7), 2, 3), 2)
    x[0, 1, 10, 11] = bad
    args = dict(stride=2, padding=3, bias=b, kernel=path)
    want = kernels.float_conv2d(x, w, **args, algorithm="direct")
    np.testing.assert_array_equal(kernels.float_conv2d(x, w, **args, algorithm="winograd"), want)
    if np.isnan(bad):
        assert np.isnan(want[0, :, 5, 5]).all() and not np.isnan(want[0, :, 0, 0]).any()
    # At every column of a row: the copy checks the values it moves in blocks of four stride-2 steps (24 columns)
    # and the rest one by one; each must see it.
    x, w, b = _winograd_case((1, 3, 9, 61, 4, (7, 7), 2, 3), 3)
    row_args = dict(args, bias=b)
    for col in range(x.shape[3]):
        xb = x.copy()
        xb[0, 2, 4, col] = bad
        np.testing.assert_array_equal(kernels.float_conv2d(xb, w, **row_args, algorithm="winograd"),
                                      kernels.float_conv2d(xb, w, **row_args, algorithm="direct"))
    x, w, _ = _winograd_case((1, 3, 30, 30, 8, (7, 7), 2, 3), 2)
    w[3, 2, 1, 1] = bad
    np.testing.assert_array_equal(kernels.float_conv2d(x, w, **args, algorithm="winograd"),
                                  kernels.float_conv2d(x, w, **args, algorithm="direct"))


def test_auto_takes_winograd_where_it_pays(path):
    """"auto": the tiles on the avx2 and avx512 paths for a ResNet stem (147 -> 48 multiply-adds per output) with
    outputs at least 24 wide, the direct kernel for a 3x3 stride-1 stem (27 -> 12 and the transforms ran slower),
    for a 16-wide output, and on generic (its tiles are a scalar reference)."""
    x, w, _ = _winograd_case((1, 3, 48, 48, 8, (7, 7), 2, 3), 1)  # 24 outputs a row
    auto = kernels.float_conv2d(x, w, stride=2, padding=3, kernel=path)
    chosen = "direct" if path == "generic" else "winograd"
    np.testing.assert_array_equal(auto, kernels.float_conv2d(x, w, stride=2, padding=3, kernel=path,
                                                             algorithm=chosen))
    assert not np.array_equal(kernels.float_conv2d(x, w, stride=2, padding=3, kernel=path, algorithm="direct"),
                              kernels.float_conv2d(x, w, stride=2, padding=3, kernel=path, algorithm="winograd"))
    np.testing.assert_array_equal(kernels.float_conv2d(x[:, :, :46, :46], w, stride=2, padding=3, kernel=path),
                                  kernels.float_conv2d(x[:, :, :46, :46], w, stride=2, padding=3, kernel=path,
                                                       algorithm="direct"))  # 23 outputs a row
    x, w, _ = _winograd_case((1, 3, 40, 40, 8, (3, 3), 1, 1), 1)
    np.testing.assert_array_equal(kernels.float_conv2d(x, w, padding=1, kernel=path),
                                  kernels.float_conv2d(x, w, padding=1, kernel=path, algorithm="direct"))


def test_winograd_errors():
    x = np.zeros((1, 3, 20, 20), np.float32)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        kernels.float_conv2d(x, np.zeros((4, 3, 3, 3), np.float32), algorithm="fft")
    for w, kwargs in ((np.zeros((4, 3, 3, 3), np.float32), {"dilation": 2}),
                      (np.zeros((4, 3, 3, 3), np.float32), {"stride": 3}),
                      (np.zeros((4, 3, 3, 3), np.float32), {"stride": (1, 2)}),
                      (np.zeros((4, 3, 5, 5), np.float32), {"stride": 1}),
                      (np.zeros((4, 3, 9, 3), np.float32), {"stride": 2}),
                      (np.zeros((4, 5, 3, 3), np.float32), {"stride": 2})):
        with pytest.raises(ValueError, match="Winograd tiles take"):
            kernels.float_conv2d(x[:, :1].repeat(w.shape[1], 1), w, algorithm="winograd", **kwargs)
    with pytest.raises(ValueError, match="algorithm must be"):
        _core.float_conv2d(x, np.zeros((4, 27), np.float32), 3, 3, (1, 1), (0, 0), (1, 1), algorithm="x")
    with pytest.raises(ValueError, match="Winograd tiles take"):
        _core.float_conv2d(x, np.zeros((4, 27), np.float32), 3, 3, (1, 1), (0, 0), (2, 2), algorithm="winograd")


def test_winograd_falls_back_per_chunk_of_images():
    """The copies are made ~32 MB of images at a time and checked as they are made: a NaN in the last image sends
    its chunk (only) to the direct kernel; the first chunk's images keep the tiles."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, 4, 640, 640)).astype(np.float32)  # ~7 MB of tile copy per image: several chunks
    w = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    x[8, 2, 100, 200] = np.nan
    args = dict(stride=2, padding=3, algorithm="winograd")
    got = kernels.float_conv2d(x, w, **args)
    np.testing.assert_array_equal(got[:1], kernels.float_conv2d(x[:1], w, **args))
    np.testing.assert_array_equal(got[8:], kernels.float_conv2d(x[8:], w, stride=2, padding=3, algorithm="direct"))
    assert not np.array_equal(got[:1], kernels.float_conv2d(x[:1], w, stride=2, padding=3, algorithm="direct"))
    assert np.isnan(got[8]).sum() == 2 * 3 * 3 and not np.isnan(got[:8]).any()  # a 3 x 3 window per channel


def test_winograd_skips_only_phase_channels_zero_for_every_output(path):
    """The tiles leave out a phase channel's products at a transform element where its transformed weights are
    zero for every output (core/float_conv_winograd.h WinogradWeights): a 7x7 stride-2 kernel's 3-tap phases at the
    point infinity, and here a whole input channel. A channel zero for some outputs only (the first block of 4
    outputs) still counts for the others; the values read through skipped channels change nothing."""
    x, w, b = _winograd_case((1, 3, 40, 37, 9, (7, 7), 2, 3), 12)
    w[:, 1] = 0.0  # input channel 1: zero everywhere, its 4 phase channels skipped at every element
    w[:4, 2] = 0.0  # input channel 2: zero for outputs 0-3 only
    args = dict(stride=2, padding=3, bias=b, kernel=path, algorithm="winograd")
    got = kernels.float_conv2d(x, w, **args)
    want, scale = _reference(x, w, 2, 3, 1, b)
    assert (np.abs(got - want) / (scale + np.abs(want)) <= WINOGRAD_TOLERANCE).all()
    x2 = x.copy()
    x2[:, 1] = np.random.default_rng(1).standard_normal(x2[:, 1].shape)
    np.testing.assert_array_equal(kernels.float_conv2d(x2, w, **args).view(np.uint32), got.view(np.uint32))
    x2[:, 2] += 1.0  # outputs 4.. read channel 2, outputs 0-3 do not
    changed = kernels.float_conv2d(x2, w, **args) != got
    assert changed[:, 4:].all(axis=(2, 3)).any() and not changed[:, :4].any()


@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_calls_in_turn_are_each_their_own(path, threads):
    """The avx512 path computes a tile row's last tiles together with the next row's and keeps those for the next
    call of its thread (core/float_conv_avx512.cpp TailRow): calls on different images of one shape in turn, pooled
    or not, each give the generic path's bits, images of a batch too."""
    rng = np.random.default_rng(21)
    xs = [rng.standard_normal((1, 3, 57, 100)).astype(np.float32) for _ in range(2)]  # 17 tile columns, 10 rows
    w = rng.standard_normal((20, 3, 7, 7)).astype(np.float32)
    args = dict(stride=2, padding=3, algorithm="winograd")
    pools = (None, dict(kernel_size=3, stride=2, padding=1))
    want = {(i, k): kernels.float_conv2d(x, w, pool=pool, kernel="generic", **args)
            for i, x in enumerate(xs) for k, pool in enumerate(pools)}
    kernels.set_num_threads(threads)
    for _ in range(2):
        for (i, k), expected in want.items():
            got = kernels.float_conv2d(xs[i], w, pool=pools[k], kernel=path, **args)
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    both = kernels.float_conv2d(np.concatenate(xs), w, kernel=path, **args)
    np.testing.assert_array_equal(both.view(np.uint32), np.concatenate([want[0, 0], want[1, 0]]).view(np.uint32))


def test_winograd_weights_transformed_again_when_they_change(path):
    """The core keeps the transformed weights of the last few tensors, matched by content: weights changed in
    place, and more tensors than it keeps, still give each call its own weights' result."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 3, 30, 30)).astype(np.float32)
    ws = [rng.standard_normal((5, 3, 7, 7)).astype(np.float32) for _ in range(6)]
    args = dict(stride=2, padding=3, kernel=path, algorithm="winograd")
    first = [kernels.float_conv2d(x, w, **args) for w in ws]
    for w, want in zip(ws[::-1] + ws, first[::-1] + first, strict=True):
        np.testing.assert_array_equal(kernels.float_conv2d(x, w, **args), want)
    w = ws[0]
    w[2, 1, 3, 3] += 1.0  # same array, new values
    got = kernels.float_conv2d(x, w, **args)
    assert not np.array_equal(got, first[0])
    np.testing.assert_array_equal(got, kernels.float_conv2d(x, w.copy(), **args))
    want, scale = _reference(x, w, 2, 3, 1)
    assert (np.abs(got - want) / (scale + np.abs(want)) <= WINOGRAD_TOLERANCE).all()


CLAMPED = [  # (case, algorithm, groups): the direct kernel, the Winograd tiles and a depthwise call
    (CASES[0], "direct", 1),
    (CASES[5], "direct", 1),
    (WINOGRAD_CASES[1] + (1,), "winograd", 1),
    (GROUPED[1][:9], "direct", 3),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CLAMPED, ids=lambda c: f"{c[1]}-g{c[2]}-c{c[0][1]}-{c[0][2]}x{c[0][3]}")
def test_ceiling_is_a_following_minimum(path, case, threads):
    """float_conv2d(ceiling=) (a fused hardtanh / ReLU6 with the floor): bitwise numpy.minimum of the call without it,
    one value or one per channel, NaN kept (a NaN input's outputs stay NaN), before a fused pool too, on the direct
    kernel, the Winograd tiles and a grouped call, at any thread count."""
    (n, c, h, w_, m, (kh, kw), stride, padding, dilation), algorithm, groups = case
    kernels.set_num_threads(threads)
    rng = np.random.default_rng(h * w_ + m)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    x[0, 0, h // 2, w_ // 2] = np.nan
    w = rng.standard_normal((m, c // groups, kh, kw)).astype(np.float32)
    args = dict(stride=stride, padding=padding, dilation=dilation, bias=rng.standard_normal(m).astype(np.float32),
                kernel=path, algorithm=algorithm, groups=groups)
    per_channel = (rng.random(m) + 0.25).astype(np.float32)
    pool = {"kernel_size": 2, "stride": 2}
    for floor, ceiling in ((np.float32(0.0), np.float32(6.0)), (np.float32(-1.0), np.float32(1.0)),
                           (None, per_channel), (-per_channel, per_channel)):
        plain = kernels.float_conv2d(x, w, floor=floor, **args)
        want = np.minimum(plain, ceiling.reshape(1, -1, 1, 1) if np.ndim(ceiling) else ceiling)
        got = kernels.float_conv2d(x, w, floor=floor, ceiling=ceiling, **args)
        assert np.isnan(got).any() and (want < plain).any()
        np.testing.assert_array_equal(got, want)
        pooled = kernels.float_conv2d(x, w, floor=floor, ceiling=ceiling, pool=pool, **args)
        np.testing.assert_array_equal(pooled, kernels.max_pool2d(want, 2, 2, kernel=path))


def test_ceiling_errors():
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"ceiling must hold one value or one per output channel \(3\), got 2"):
        kernels.float_conv2d(x, w, ceiling=[1.0, 2.0])
    with pytest.raises(ValueError, match="ceiling length != output channels"):  # the core's own check
        _core.float_conv2d(x, w.reshape(3, -1), 3, 3, (1, 1), (0, 0), (1, 1), ceiling=np.ones(2, np.float32))
