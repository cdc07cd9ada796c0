"""conv2d / linear against the float64 numpy reference (horq.reference).

Tolerance: the kernels binarize with the reference's bits (in double precision, or for a convolution of
order 2 in float32 with thresholds rounded outward, which gives the same bits), count exactly in integers,
and form sum_k beta_k * dot_k * alpha in double; what differs is the final rounding to float32 (relative
6e-8), float32 alpha (PackedWeights stores alpha as float32: relative 6e-8) and, at conv order 2, beta_2
summed from float32 terms (relative ~1e-7, at most ~1e-6). So rtol = 1e-5 keeps at least an order of
margin, and atol = 1e-5 * max|ref| covers outputs that cancel to near zero.
"""

import numpy as np
import pytest

from horq import kernels, reference

NS = [1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513]


def close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("n", NS)
def test_linear_matches_reference(path, n, order):
    rng = np.random.default_rng(n + 17 * order)
    x = rng.standard_normal((3, n)).astype(np.float32)
    w = rng.standard_normal((7, n)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    got = kernels.linear(x, kernels.pack_weights(w), order=order, bias=bias, kernel=path)
    close(got, reference.horq_linear(x, w, bias, order=order))


@pytest.mark.parametrize("order", [1, 2, 4])
@pytest.mark.parametrize("n", [2047, 4000])
def test_linear_batch_long_rows_match_reference(path, n, order):
    # 40 rows take the outer-product kernels (columns in vector lanes), rows of 32 and 63 words
    rng = np.random.default_rng(n + 5 * order)
    x = rng.standard_normal((40, n)).astype(np.float32)
    w = rng.standard_normal((11, n)).astype(np.float32)
    got = kernels.linear(x, kernels.pack_weights(w), order=order, kernel=path)
    close(got, reference.horq_linear(x, w, None, order=order))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("n", NS)
def test_conv1x1_matches_reference(path, n, order):
    # A 1x1 kernel makes n = C, so the awkward lengths land on the channel axis (the per-pixel words).
    rng = np.random.default_rng(n + 31 * order)
    x = rng.standard_normal((1, n, 3, 4)).astype(np.float32)
    w = rng.standard_normal((5, n, 1, 1)).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(w), order=order, kernel=path)
    close(got, reference.horq_conv2d(x, w, order=order))


GEOMETRIES = [
    # (batch, C_in, C_out, H, W, k, stride, padding, dilation)
    (1, 3, 5, 7, 7, 3, 1, 1, 1),  # n = 27
    (3, 7, 4, 9, 8, 3, 2, 0, 1),  # n = 63, stride 2
    (1, 57, 9, 6, 6, 3, 1, 2, 1),  # n = 513, padding 2
    (3, 5, 6, 11, 10, 3, 1, 2, 2),  # dilation 2
    (1, 65, 3, 5, 5, 3, 2, 1, 2),  # n = 585, stride + dilation
    (1, 129, 66, 6, 7, 3, 1, 1, 1),  # two words per pixel, C_out beyond one 64-row block
    (3, 1, 3, 5, 5, 5, 1, 2, 1),  # n = 25, one channel
    (1, 64, 70, 9, 9, 3, 1, 1, 1),  # exact word per pixel; 81 columns (several column blocks)
    (2, 32, 9, 6, 7, 3, 1, 1, 1),  # compact layout, two taps per word (C divides 64)
    (1, 16, 5, 5, 6, 3, 2, 1, 1),  # compact, four taps per word and a last word of one tap; stride 2
    (2, 32, 5, 7, 6, 3, 1, 2, 2),  # compact, dilation 2 + padding 2: border columns of many shapes
    (3, 8, 4, 6, 5, 3, 2, 0, 1),  # compact, eight taps per word, no padding (every column inside)
    # Whole words per tap: order 2 reads its columns from zero-bordered images on the AVX paths (quantize_image2)
    (2, 64, 7, 8, 7, 3, 2, 1, 1),  # stride 2, two images
    (1, 128, 7, 6, 5, 3, 1, 2, 2),  # two words per tap, dilation 2, padding 2
    # Rows past 31 words: the AVX2 count's byte counters flushed more than once per output (8 bits a word)
    (1, 250, 7, 5, 5, 3, 1, 1, 1),  # four words per pixel, 36 per row
    (2, 448, 5, 4, 3, 3, 1, 1, 1),  # seven whole words per tap, 63 per row
]


# Orders 5 and 8 run the longest residual chains of the conv taps pass (quantize_taps) and its padding rule.
@pytest.mark.parametrize("order", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_conv_matches_reference(path, geom, order):
    b, c, co, h, wd, k, s, p, d = geom
    rng = np.random.default_rng(sum(geom) + order)
    x = rng.standard_normal((b, c, h, wd)).astype(np.float32)
    x[0, 0, 0, :2] = 0.0  # exact zeros at a border
    w = rng.standard_normal((co, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(w), order=order, stride=s, padding=p, dilation=d, bias=bias,
                         kernel=path)
    close(got, reference.horq_conv2d(x, w, bias, order=order, stride=s, padding=p, dilation=d))


# A batch of NCHW images is packed image by image, plane by plane (conv.cpp pack_input_band, from 4 images per
# thread); fewer images with rows at least 24 pixels wide go plane by plane too, whole images on 1 thread and bands
# of rows on 2, and narrower ones row by row across their channels (pack_input_row): every way must give the same
# bits.
BATCH_GEOMETRIES = [
    # (C_in, C_out, H, W, k, padding)
    (32, 9, 14, 14, 3, 1),  # compact layout (mnist-cnn's 32-channel layer): planes of 196 pixels, chunks + tail
    (64, 5, 7, 7, 3, 1),  # whole words per tap, zero-bordered image: planes of 49 pixels
    (129, 4, 17, 18, 3, 1),  # three words per pixel, planes of 306 pixels (two chunks, a tail of 2)
    (5, 3, 9, 9, 1, 0),  # one partial word, 1x1
    (64, 4, 5, 30, 3, 1),  # rows of 30 pixels: a single image plane by plane at 1 thread
    (3, 4, 11, 25, 3, 1),  # the same in the compact layout (3 channels), planes of 275 pixels
]


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", BATCH_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_conv_batch_same_bits_as_single_images(path, geom, order, affine):
    c, co, h, wd, k, p = geom
    rng = np.random.default_rng(sum(geom) + order)
    x = rng.standard_normal((17, c, h, wd)).astype(np.float32)
    x[3, :, 2, 5] = 0.0  # exact zeros
    w = rng.standard_normal((co, c, k, k)).astype(np.float32)
    kw = dict(order=order, padding=p, bias=rng.standard_normal(co).astype(np.float32), kernel=path)
    if affine:  # a folded BatchNorm before the layer, applied in the pixel pass
        kw.update(in_scale=rng.uniform(0.5, 2.0, c).astype(np.float32),
                  in_shift=rng.normal(0, 0.3, c).astype(np.float32))
    layer = kernels.Conv2dLayer(kernels.pack_weights(w), **kw)
    threads = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)  # 17 images: the batch goes image by image at 1 to 4 threads
        whole = layer(x)
        singles1 = np.concatenate([layer(x[i : i + 1]) for i in range(len(x))])
        kernels.set_num_threads(2)
        assert np.array_equal(layer(x), whole)
        assert np.array_equal(layer(x[:3]), whole[:3])  # 3 images at 2 threads: bands of rows when wide enough
        singles = np.concatenate([layer(x[i : i + 1]) for i in range(len(x))])
    finally:
        kernels.set_num_threads(threads)
    assert np.array_equal(whole, singles)
    assert np.array_equal(singles1, singles)
    xin = x * kw["in_scale"][:, None, None] + kw["in_shift"][:, None, None] if affine else x
    close(whole, reference.horq_conv2d(xin.astype(np.float32), w, kw["bias"], order=order, padding=p))
    bad = x.copy()
    bad[11, c - 1, h - 1, wd - 1] = np.nan  # the last value of a later image
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer(bad)


@pytest.mark.parametrize("channels", [3, 6, 66, 192])
def test_conv_order2_threshold_ties(path, channels):
    """Order 2 thresholds |x| against beta_1, which the conv computes in float32 (quantize_taps2 in
    csrc/core/quantize.h). Every pixel here holds triples of magnitudes {1 + e, 2, 3} with e in
    {0, +2**-23, -2**-24}: beta_1 of a 1x1 column is then exactly 2, or 2 plus or minus a third of an ulp of 1,
    which rounds to 2 in float32. |x| = 2 is a tie, or lies on the side of beta_1 that only an outward-rounded
    threshold gets right (rounded to nearest, 2 < beta_1 would read as 2 < 2); the result must be the
    reference's, bit for bit (one wrong bit moves an output by 2 * beta_2 * alpha, about 1.3). 192 channels
    (whole words per tap) take the AVX paths' zero-bordered image route for order 2."""
    rng = np.random.default_rng(channels)
    h, w = 4, 5
    eps = np.array([0.0, 2.0**-23, -(2.0**-24)])[rng.integers(0, 3, (h, w))]
    mags = np.empty((channels, h, w))
    for t in range(channels // 3):
        for y in range(h):
            for xx in range(w):
                mags[3 * t : 3 * t + 3, y, xx] = rng.permutation([1.0 + eps[y, xx], 2.0, 3.0])
    x = (mags * rng.choice([-1.0, 1.0], mags.shape)).astype(np.float32)[None]
    assert np.array_equal(np.abs(x).astype(np.float64), mags[None])  # every value exact in float32
    wts = rng.choice([-1.0, 1.0], (5, channels, 1, 1)).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(wts), order=2, kernel=path)
    close(got, reference.horq_conv2d(x, wts, order=2))
    # The same pixels through a 3x3 kernel with padding: interior columns average nine such pixels.
    wts3 = rng.choice([-1.0, 1.0], (4, channels, 3, 3)).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(wts3), order=2, padding=1, kernel=path)
    close(got, reference.horq_conv2d(x, wts3, order=2, padding=1))


def test_conv_rectangular_args_and_batchnorm_epilogue(path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 2)).astype(np.float32)
    bias, scale, shift = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    got = kernels.conv2d(x, kernels.pack_weights(w), order=2, stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                         bias=bias, scale=scale, shift=shift, kernel=path)
    ref = reference.horq_conv2d(x, w, bias, order=2, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    close(got, scale[None, :, None, None].astype(np.float64) * ref + shift[None, :, None, None])


def test_linear_epilogue_scale_shift_only(path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    w = rng.standard_normal((3, 40)).astype(np.float32)
    scale, shift = np.array([1.0, -2.0, 0.5], np.float32), np.array([0.1, 0.2, -3.0], np.float32)
    got = kernels.linear(x, kernels.pack_weights(w), order=3, scale=scale, shift=shift, kernel=path)
    close(got, scale * reference.horq_linear(x, w, order=3) + shift)


def test_non_contiguous_inputs(path):
    rng = np.random.default_rng(6)
    big = rng.standard_normal((2, 10, 12, 9)).astype(np.float32)
    x = big[:, ::2, 1:, :].transpose(0, 1, 3, 2)  # strided and transposed view
    assert not x.flags.c_contiguous
    w = rng.standard_normal((3, 5, 3, 3)).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(w), order=2, padding=1, kernel=path)
    close(got, reference.horq_conv2d(np.ascontiguousarray(x), w, order=2, padding=1))
    xl = rng.standard_normal((40, 6)).astype(np.float32).T
    wl = rng.standard_normal((4, 40)).astype(np.float32)
    close(kernels.linear(xl, kernels.pack_weights(wl), order=2, kernel=path), reference.horq_linear(xl, wl, order=2))


@pytest.mark.parametrize("channels", [33, 64])  # 64: the image route of orders >= 2 on the AVX paths
@pytest.mark.parametrize("order", [1, 2, 3])
def test_threads_bitwise_identical(path, order, channels):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, channels, 13, 11)).astype(np.float32)
    w = rng.standard_normal((70, channels, 3, 3)).astype(np.float32)
    pw = kernels.pack_weights(w)
    xl = rng.standard_normal((5, 513)).astype(np.float32)
    pl = kernels.pack_weights(rng.standard_normal((130, 513)).astype(np.float32))
    x7 = rng.standard_normal((1, channels, 7, 7)).astype(np.float32)  # 49 columns: 3 blocks of 16, 17 columns
    out = {}
    for t in (1, 2):
        kernels.set_num_threads(t)
        assert kernels.get_num_threads() == t
        out[t] = (kernels.conv2d(x, pw, order=order, padding=1, kernel=path),
                  kernels.linear(xl, pl, order=order, kernel=path),
                  kernels.conv2d(x7, pw, order=order, padding=1, kernel=path))
    for a, b in zip(out[1], out[2], strict=True):
        np.testing.assert_array_equal(a, b)
    close(out[2][2], reference.horq_conv2d(x7, w, order=order, padding=1))


# Maps of at most 64 pixels are packed plane by plane (csrc/core/conv.cpp packs_planes, small_map): whole images, or at
# two threads with one image a band per thread where each band keeps 16 pixels (8x8 and 7x7 in two, 4x4 whole); 9x8
# (72 pixels, rows under 24) stays row by row. 130 and 200 channels: a last channel group
# of 2 or 8; order 2 also copies the planes to NHWC. 200 filters: at two threads the GEMM cuts them into blocks whose
# tasks share their columns' panel (outer_panel.h outer_task keeps it), some blocks starting off a filter quad.
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("channels,h,w", [(130, 4, 4), (64, 8, 8), (200, 7, 7), (96, 9, 8)])
def test_small_maps_planes_any_threads_and_batch(path, order, channels, h, w):
    rng = np.random.default_rng(channels + h)
    x = (rng.standard_normal((3, channels, h, w)) * np.exp(rng.uniform(-2, 2, (3, channels, 1, 1)))).astype(np.float32)
    wt = rng.standard_normal((200, channels, 3, 3)).astype(np.float32)
    sc = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    sh = rng.standard_normal(channels).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(wt), order=order, padding=1, in_scale=sc, in_shift=sh,
                                kernel=path)
    xa = np.add(np.multiply(x, sc.reshape(1, -1, 1, 1)), sh.reshape(1, -1, 1, 1))
    ref = reference.horq_conv2d(xa, wt, order=order, padding=1)
    out = {}
    for t in (1, 2):
        kernels.set_num_threads(t)
        out[t] = [layer(x[:n]) for n in (1, 2, 3)] + [layer(x[i : i + 1]) for i in (1, 2)]
    for t in (1, 2):
        for a in out[t][:3] + out[1][:3]:  # each image as alone and at the other thread count
            np.testing.assert_array_equal(a, out[2][2][: a.shape[0]])
        np.testing.assert_array_equal(out[t][3], out[2][2][1:2])
        np.testing.assert_array_equal(out[t][4], out[2][2][2:3])
    close(out[1][2], ref)
    bad = x.copy()
    bad[2, channels - 1, h - 1, w - 1] = np.nan  # the last value of the last group's band
    for t in (1, 2):
        kernels.set_num_threads(t)
        with pytest.raises(ValueError, match="NaN or Inf"):
            layer(bad)
        with pytest.raises(ValueError, match="NaN or Inf"):
            layer(bad[2:])


# On more than one thread the input quantization runs inside the GEMM's job (csrc/core/conv.cpp DeferredPixels): each
# GEMM task packs, or waits for, the units of pixel rows its columns read, and at orders 2-3 (whole words per tap, no
# per-pixel bands: 64ch 32x32 at order 2 takes those) the blocks of columns, which wait for their units in turn. The
# units: bands of rows (32 wide), single rows (14 wide), whole images (9 images); the columns: a 3x3 window's halo,
# stride 2 (rows no column reads, whose NaN must still be found), dilation 2, a 1x1 window with padding 2 (border
# columns reading only zeros), two images in one GEMM block (7x7 maps).
PIXEL_JOB_GEOMETRIES = [
    # (batch, C_in, C_out, H, W, k, stride, padding, dilation)
    (1, 64, 64, 32, 32, 3, 1, 1, 1),
    (1, 128, 80, 14, 14, 3, 1, 1, 1),
    (9, 64, 16, 10, 10, 3, 1, 1, 1),
    (2, 64, 128, 16, 29, 1, 2, 0, 1),
    (1, 70, 33, 30, 26, 3, 2, 1, 1),
    (1, 64, 24, 25, 24, 3, 1, 2, 2),
    (1, 64, 8, 12, 40, 1, 1, 2, 1),
    (3, 192, 40, 7, 7, 3, 1, 1, 1),
    (1, 130, 8, 46, 46, 3, 1, 1, 1),  # at one thread runs of 2116 pixels: the AVX-512 pixel pass 16 channels at a time
]


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", PIXEL_JOB_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_quantization_inside_gemm_job(path, geom, order):
    n, c, co, h, wd, k, st, p, d = geom
    rng = np.random.default_rng(sum(geom) + order)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((co, c, k, k)).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(w), order=order, stride=st, padding=p, dilation=d, kernel=path)
    threads = kernels.get_num_threads()
    out = {}
    try:
        for t in (1, 2, 3, 4):
            kernels.set_num_threads(t)
            out[t] = layer(x)
            for at in [(0, 0, 0, 0), (n - 1, c - 1, h - 1, wd - 1), (n // 2, c // 2, h // 2 | 1, wd // 3)]:
                bad = x.copy()
                bad[at] = np.inf if t % 2 else np.nan  # (h // 2 | 1: an odd row, which stride 2 never reads)
                with pytest.raises(ValueError, match="NaN or Inf"):
                    layer(bad)
            assert np.array_equal(layer(x), out[t])  # a clean call after the refused ones
    finally:
        kernels.set_num_threads(threads)
    for t in (2, 3, 4):
        np.testing.assert_array_equal(out[t], out[1])
    close(out[1], reference.horq_conv2d(x, w, order=order, stride=st, padding=p, dilation=d))


@pytest.mark.parametrize("order", [1, 2])
def test_long_pixel_runs_channels_in_turn(path, order):
    """A 48x48 map packed whole at one thread is a run of 2304 pixels, which the AVX-512 pixel pass takes 16 channels
    at a time (quantize_avx512.cpp kChannelRun): the words and sums must be those of every other way, with NaN found
    in any channel run."""
    rng = np.random.default_rng(order)
    x = (rng.standard_normal((1, 64, 48, 48)) * np.exp(rng.uniform(-2, 2, (1, 64, 1, 1)))).astype(np.float32)
    w = rng.standard_normal((24, 64, 3, 3)).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(w), order=order, padding=1, kernel=path)
    threads = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        got = layer(x)
        for c in (0, 17, 63):
            bad = x.copy()
            bad[0, c, 47, 47] = np.nan
            with pytest.raises(ValueError, match="NaN or Inf"):
                layer(bad)
        kernels.set_num_threads(2)  # bands of rows: runs under 2048 pixels
        np.testing.assert_array_equal(layer(x), got)
    finally:
        kernels.set_num_threads(threads)
    close(got, reference.horq_conv2d(x, w, order=order, padding=1))


def test_linear_overflows_16_bit_accumulator(path):
    # n = 70000: with x = -|x| sign(w), every bit of H_1 differs from the weight's, popcount = 70000 > 65535.
    n = 70000
    rng = np.random.default_rng(8)
    w = rng.standard_normal((2, n)).astype(np.float32)
    w[w == 0] = 1
    mag = np.abs(rng.standard_normal(n)).astype(np.float32) + np.float32(0.1)
    x = np.stack([-mag * np.sign(w[0]), mag * np.sign(w[0])]).astype(np.float32)
    got = kernels.linear(x, kernels.pack_weights(w), order=1, kernel=path)
    ref = reference.horq_linear(x, w, order=1)
    close(got, ref)
    alpha, beta = np.abs(w[0].astype(np.float64)).mean(), mag.astype(np.float64).mean()
    np.testing.assert_allclose(got[:, 0], [-alpha * beta * n, alpha * beta * n], rtol=1e-5)


def test_conv_large_n_order2(path):
    # n = 7300 * 9 = 65700 > 65535 on a convolution, with padding so border columns mix zeros in.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 7300, 2, 2)).astype(np.float32)
    w = rng.standard_normal((3, 7300, 3, 3)).astype(np.float32)
    got = kernels.conv2d(x, kernels.pack_weights(w), order=2, padding=1, kernel=path)
    close(got, reference.horq_conv2d(x, w, order=2, padding=1))


def test_torch_tensors_accepted(path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x = torch.from_numpy(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)).requires_grad_()
    got = kernels.conv2d(x, kernels.pack_weights(w), order=2, padding=1, kernel=path)
    close(got, reference.horq_conv2d(x.numpy(), w.detach().numpy(), order=2, padding=1))


def test_forked_child_runs_serially_with_same_result():
    # A fork()ed child (DataLoader workers) inherits no pool threads; the pool must not wait for them.
    import multiprocessing as mp

    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 9, 8, 8)).astype(np.float32)
    pw = kernels.pack_weights(rng.standard_normal((20, 9, 3, 3)).astype(np.float32))
    kernels.set_num_threads(2)
    parent = kernels.conv2d(x, pw, order=2, padding=1)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_conv_in_child, (x, pw.bits, pw.alpha, pw.shape)).get(timeout=60)
    np.testing.assert_array_equal(parent, child)


def _conv_in_child(x, bits, alpha, shape):
    kernels.set_num_threads(2)
    return kernels.conv2d(x, kernels.PackedWeights(bits, alpha, shape), order=2, padding=1)


def test_order1_every_path_gives_the_generic_floats(path):
    """Order 1 has no float summation that differs between paths: beta_1 adds the pixel sums in tap order
    on every path (the AVX-512 one gathers them from a zero-bordered pixel image instead of copying each
    column, layer.h PixelImage), the counts are exact and the epilogue's operations are spelled out (no
    FMA contraction). So every path must give the generic path's floats bit for bit, on geometries that
    exercise image borders, stride, dilation, column octets that span output rows and images, and the
    compact layout (C = 3, 31)."""
    rng = np.random.default_rng(5)
    cases = 0
    while cases < 40:
        n, c = int(rng.integers(1, 3)), int(rng.choice([1, 3, 31, 64, 65, 128]))
        h, w, k = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.choice([1, 2, 3, 5]))
        s, p, d = int(rng.integers(1, 3)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        m = int(rng.choice([1, 5, 13, 64]))
        if min(h, w) + 2 * p < d * (k - 1) + 1:
            continue
        cases += 1
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        pw = kernels.pack_weights(rng.standard_normal((m, c, k, k)).astype(np.float32))
        args = dict(order=1, stride=s, padding=p, dilation=d)
        want = kernels.conv2d(x, pw, kernel="generic", **args)
        got = kernels.conv2d(x, pw, kernel=path, **args)
        assert np.array_equal(got, want), (n, c, h, w, k, s, p, d, m)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", [(1, 64, 9, 9, 3, 1, 1), (2, 3, 7, 6, 3, 2, 1), (1, 65, 5, 5, 1, 1, 0),
                                  (1, 128, 6, 6, 3, 1, 2)], ids=lambda g: "x".join(map(str, g)))
def test_input_affine_is_a_separate_affine_step(path, geom, order):
    """``in_scale``/``in_shift`` give bit for bit the layer applied to ``x * in_scale + in_shift`` computed as
    a separate float32 step (multiply, then add: what the runtime's affine does), with negative and zero
    scales, padding (the padded zeros are the affine's output's padding, not affine(0))."""
    n, c, h, w, k, s, p = geom
    rng = np.random.default_rng(c + 7 * order)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    pw = kernels.pack_weights(rng.standard_normal((5, c, k, k)).astype(np.float32))
    sc = rng.standard_normal(c).astype(np.float32)
    sc[::4] = 0.0
    sh = rng.standard_normal(c).astype(np.float32)
    shape = (1, c, 1, 1)
    xa = np.add(np.multiply(x, sc.reshape(shape)), sh.reshape(shape))
    want = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, kernel=path)(xa)
    got = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, in_scale=sc, in_shift=sh, kernel=path)(x)
    assert np.array_equal(got, want)


def test_input_affine_errors():
    pw = kernels.pack_weights(np.ones((2, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="go together"):
        kernels.Conv2dLayer(pw, order=1, in_scale=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"in_shift must have shape \(3,\)"):
        kernels.Conv2dLayer(pw, order=1, in_scale=np.ones(3), in_shift=np.ones(4))
    with pytest.raises(ValueError, match="in_scale contains NaN"):
        kernels.Conv2dLayer(pw, order=1, in_scale=[1, np.nan, 1], in_shift=np.zeros(3))
    layer = kernels.Conv2dLayer(pw, order=1, in_scale=np.full(3, 1e30), in_shift=np.zeros(3))
    with pytest.raises(ValueError, match="NaN or Inf"):  # finite input, infinite after the affine
        layer(np.full((1, 3, 2, 2), 1e10, np.float32))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", [(1, 64, 9, 9, 3, 1, 1), (3, 3, 7, 6, 3, 2, 1), (2, 65, 5, 5, 1, 1, 0),
                                  (2, 65, 5, 5, 1, 2, 0), (1, 256, 7, 7, 3, 1, 1), (1, 32, 16, 16, 3, 1, 1)],
                         ids=lambda g: "x".join(map(str, g)))
def test_residual_and_floor_are_separate_steps(path, geom, order):
    """``layer(x, residual)`` with ``out_floor`` gives bit for bit ``np.maximum(np.add(layer(x), residual),
    floor)``, the runtime's add and relu steps, on outputs whose column octets span images (batch > 1); each alone
    gives its step too: ``np.add(layer(x), residual)``, and ``np.maximum(layer(x), floor)`` (the runtime's relu or
    floor step after a binary convolution, which horq.runtime.fuse folds into the layer). ``out_ceiling`` after
    them: ``np.minimum(., ceiling)``, with the floor ``np.clip(layer(x), floor, ceiling)`` (a hardtanh step), on
    every store of the path (a 7x7 map over 256 channels: avx2's filter-lane kernel; 16x16: runs of 32 outputs)."""
    n, c, h, w, k, s, p = geom
    rng = np.random.default_rng(c + 11 * order + s)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    pw = kernels.pack_weights(rng.standard_normal((7, c, k, k)).astype(np.float32))
    floor = rng.standard_normal(7).astype(np.float32)
    floor[::2] = 0.0
    ceiling = floor + rng.uniform(0.5, 3.0, 7).astype(np.float32)
    plain = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, kernel=path)
    floored = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, out_floor=floor, kernel=path)
    clamped = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, out_floor=floor, out_ceiling=ceiling,
                                  kernel=path)
    capped = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, out_ceiling=ceiling, kernel=path)
    y = plain(x)
    r = rng.standard_normal(y.shape).astype(np.float32)
    f, cl = floor.reshape(1, -1, 1, 1), ceiling.reshape(1, -1, 1, 1)
    assert np.array_equal(floored(x, r), np.maximum(np.add(y, r), f))
    assert np.array_equal(plain(x, r), np.add(y, r))  # residual alone
    assert np.array_equal(floored(x), np.maximum(y, f))  # floor alone
    assert np.array_equal(clamped(x), np.clip(y, f, cl)) and (y > cl).any()  # a hardtanh step
    assert np.array_equal(clamped(x, r), np.minimum(np.maximum(np.add(y, r), f), cl))
    assert np.array_equal(capped(x), np.minimum(y, cl))  # ceiling alone


def test_residual_errors():
    pw = kernels.pack_weights(np.ones((2, 3, 1, 1), np.float32))
    layer = kernels.Conv2dLayer(pw, order=1)
    x = np.ones((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"residual has shape \(1, 2, 4, 3\)"):
        layer(x, np.zeros((1, 2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="residual must be float32"):
        layer(x, np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"out_floor must have shape \(2,\)"):
        kernels.Conv2dLayer(pw, order=1, out_floor=np.zeros(3))
    with pytest.raises(ValueError, match=r"out_ceiling must have shape \(2,\)"):
        kernels.Conv2dLayer(pw, order=1, out_ceiling=np.zeros(3))
    with pytest.raises(ValueError, match="out_ceiling contains NaN"):
        kernels.Conv2dLayer(pw, order=1, out_ceiling=[0, np.nan])


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", [(2, 64, 9, 9, (2, 2)), (1, 65, 8, 11, (2, 3)), (3, 7, 5, 4, (3, 1)),
                                  (1, 128, 7, 7, (2, 2)), (1, 64, 31, 30, (2, 2)), (2, 70, 25, 26, (3, 2))],
                         ids=lambda g: "x".join(map(str, g[:4])) + f"s{g[4]}")
def test_strided_pointwise_conv_reads_only_its_pixels(path, geom, order):
    """A 1x1 convolution with a stride and no padding (a ResNet shortcut) reads only x[:, :, ::sh, ::sw]: bit for
    bit the stride-1 layer on those pixels (input affine and floor included) and the reference's values; NaN or
    Inf is still reported wherever it is (tests/kernels/test_kernels_errors_dispatch.py's rule), including a
    skipped pixel that only the input affine makes infinite, in a row no column reads or beside the pixels of a row
    that is (maps at least 24 wide are packed plane by plane, the others row by row)."""
    n, c, h, w, (sh, sw) = geom
    rng = np.random.default_rng(c + 5 * order + sh)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((9, c, 1, 1)).astype(np.float32)
    pw = kernels.pack_weights(wt)
    sc, shift = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    floor = np.zeros(9, np.float32)
    layer = kernels.Conv2dLayer(pw, order=order, stride=(sh, sw), in_scale=sc, in_shift=shift, out_floor=floor,
                                kernel=path)
    unit = kernels.Conv2dLayer(pw, order=order, in_scale=sc, in_shift=shift, out_floor=floor, kernel=path)
    got = layer(x)
    assert np.array_equal(got, unit(np.ascontiguousarray(x[:, :, ::sh, ::sw])))
    xa = x * sc.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    close(kernels.conv2d(x, pw, order=order, stride=(sh, sw), kernel=path),
          reference.horq_conv2d(x, wt, order=order, stride=(sh, sw)))
    close(got, np.maximum(reference.horq_conv2d(xa, wt, order=order, stride=(sh, sw)), 0.0))
    for bad in ((-1, c // 2, 1, 1), (-1, c - 1, sh, 0)):  # a pixel it skips at any stride >= 2, one it reads
        xb = x.copy()
        xb[bad] = np.nan
        with pytest.raises(ValueError, match="NaN or Inf"):
            layer(xb)
    huge = kernels.Conv2dLayer(pw, order=order, stride=(sh, sw), in_scale=np.full(c, 1e30, np.float32),
                               in_shift=shift, kernel=path)
    for at in ((0, 0, h - 1, w - 1), (n - 1, c - 1, 1, 0)):  # skipped unless the stride reaches it; a skipped row
        xb = np.zeros_like(x)
        xb[at] = 1e10  # finite, infinite after the affine
        with pytest.raises(ValueError, match="NaN or Inf"):
            huge(xb)
    assert np.isfinite(huge(np.zeros_like(x))).all()


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 64, 7), (1, 3136, 256), (2, 65, 9), (20, 130, 33), (3, 1, 5)],
                         ids=lambda s: "x".join(map(str, s)))
def test_linear_input_affine_and_floor_are_separate_steps(path, shape, order):
    """A linear layer's ``in_scale``/``in_shift`` and ``out_floor`` give bit for bit the layer applied to ``x *
    in_scale + in_shift`` computed as a separate float32 step (multiply, then add), then ``np.maximum(., floor)``:
    batches of 1-2 (the few-column counts of the avx2 path) and 20 (the tiles, the outer kernels), rows around
    64-bit words, negative and zero scales, floors above and below the outputs."""
    n, k, m = shape
    rng = np.random.default_rng(k + 11 * order)
    x = rng.standard_normal((n, k)).astype(np.float32)
    pw = kernels.pack_weights(rng.standard_normal((m, k)).astype(np.float32))
    sc = rng.standard_normal(k).astype(np.float32)
    sc[::4] = 0.0
    sh = rng.standard_normal(k).astype(np.float32)
    floor = rng.standard_normal(m).astype(np.float32)
    epi = dict(bias=rng.standard_normal(m).astype(np.float32), scale=rng.uniform(0.5, 2, m).astype(np.float32))
    plain = kernels.LinearLayer(pw, order=order, kernel=path, **epi)
    want = np.maximum(plain(np.add(np.multiply(x, sc), sh)), floor)
    fused = kernels.LinearLayer(pw, order=order, in_scale=sc, in_shift=sh, out_floor=floor, kernel=path, **epi)
    got = fused(x)
    assert np.array_equal(got, want)
    assert np.array_equal(plain(x), kernels.LinearLayer(pw, order=order, kernel="generic", **epi)(x))
    assert (got == floor).any() and (got > floor).any()  # the floor both taken and not
    ceiling = floor + rng.uniform(0.1, 1.0, m).astype(np.float32)  # a hardtanh after the layer
    clamped = kernels.LinearLayer(pw, order=order, in_scale=sc, in_shift=sh, out_floor=floor, out_ceiling=ceiling,
                                  kernel=path, **epi)
    assert np.array_equal(clamped(x), np.minimum(want, ceiling)) and (want > ceiling).any()


def test_linear_input_affine_and_floor_errors():
    pw = kernels.pack_weights(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="go together"):
        kernels.LinearLayer(pw, order=1, in_shift=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"in_scale must have shape \(3,\)"):
        kernels.LinearLayer(pw, order=1, in_scale=np.ones(2), in_shift=np.ones(3))
    with pytest.raises(ValueError, match=r"out_floor must have shape \(2,\)"):
        kernels.LinearLayer(pw, order=1, out_floor=np.zeros(3))
    with pytest.raises(ValueError, match="out_floor contains NaN"):
        kernels.LinearLayer(pw, order=1, out_floor=[0, np.nan])
    with pytest.raises(ValueError, match=r"out_ceiling must have shape \(2,\)"):
        kernels.LinearLayer(pw, order=1, out_ceiling=np.zeros(3))
    layer = kernels.LinearLayer(pw, order=1, in_scale=np.full(3, 1e30), in_shift=np.zeros(3))
    with pytest.raises(ValueError, match="NaN or Inf"):  # finite input, infinite after the affine
        layer(np.full((1, 3), 1e10, np.float32))


def test_prepared_linear_is_the_layer_and_checks_new_shapes():
    """LinearLayer's core object (the runtime chains it with the steps around it): the layer's outputs; after a good
    call, arrays of the same shape go straight to it, anything else is checked again in Python, and the core object
    refuses a wrong width itself."""
    rng = np.random.default_rng(12)
    pw = kernels.pack_weights(rng.standard_normal((7, 70)).astype(np.float32))
    layer = kernels.LinearLayer(pw, order=2, in_scale=rng.uniform(0.5, 2, 70), in_shift=np.zeros(70),
                                out_floor=np.zeros(7))
    x = rng.standard_normal((3, 70)).astype(np.float32)
    want = kernels.linear(np.multiply(x, layer._in_affine[0]) + layer._in_affine[1], pw, order=2)
    np.testing.assert_array_equal(layer(x), np.maximum(want, np.float32(0)))
    np.testing.assert_array_equal(layer.core_step(x), layer(x))
    view = np.zeros((3, 140), np.float32)[:, ::2]
    view[...] = x
    np.testing.assert_array_equal(layer(view), layer(x))  # a strided view of the last shape: copied, then checked
    with pytest.raises(ValueError, match="float32"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match="70"):
        layer(np.zeros((3, 69), np.float32))
    with pytest.raises(ValueError, match="in_features"):
        layer.core_step(np.zeros((3, 69), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer(np.full((3, 70), np.nan, np.float32))


def test_output_arrays_staggered_within_4k():
    """The core's output arrays are 64-byte aligned, and large ones start at staggered offsets within 4 KB (bindings
    make_array): a layer's output and its residual input, made a step or two apart, must not have their rows at one
    offset within 4 KB (4K aliasing in the fused epilogue: a 64-channel 32x32 layer + residual ran 20% slower)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 64, 32, 32)).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(rng.standard_normal((64, 64, 3, 3)).astype(np.float32)),
                                order=1, padding=1)
    outs = [layer(x) for _ in range(8)]  # kept alive: each its own buffer
    at = [y.ctypes.data for y in outs]
    assert all(a % 64 == 0 for a in at)
    offsets = [a % 4096 for a in at]
    for i in range(len(at) - 1):  # whatever the allocator returned (its heap or fresh pages)
        for j in (i + 1, i + 2):
            if j < len(at):
                d = (offsets[j] - offsets[i]) % 4096
                assert min(d, 4096 - d) >= 128, (i, j, offsets)
    del outs[::2]  # freed buffers in between: the next arrays still stagger
    more = [layer(x).ctypes.data % 4096 for _ in range(3)]
    assert all(min((b - a) % 4096, (a - b) % 4096) >= 128 for a, b in zip(more[:-1], more[1:], strict=True)), more
    small = [kernels.Conv2dLayer(kernels.pack_weights(np.ones((2, 3, 1, 1), np.float32)), order=1)(
        np.ascontiguousarray(x[:, :3, :4, :4]))
             for _ in range(3)]
    assert all(y.ctypes.data % 64 == 0 for y in small)
    np.testing.assert_array_equal(outs[0], outs[-1])  # the same values wherever they start
