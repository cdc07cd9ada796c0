"""Order 2 of 3x3 stride-1 convolutions over whole words of channels from per-pixel bands (the x86 paths' route,
csrc/core/quantize.h Band2Row; other paths and geometries run the per-column passes, and these tests hold them to the
same): the bits must be the double chain's given the kernel's own beta_1 (test_kernels_order3's _check_chain), beta_2
its mean |r_1| to float32 summation rounding, whatever the pixel's readers: neighbours with very different beta_1 (wide
bands, many values in them), beta_1 exactly a float32 value (the tie |x| = beta_1 takes bit x < 0), beta_1 = 0, image
borders and padding, one output column, several images, and any thread count (the same floats)."""

import numpy as np
import pytest
from test_kernels_order3 import _check_chain, _columns

from horq import _core, kernels

# (images, channels, height, width, padding): 512 or more output positions per image (the route's bound, conv.cpp
# kBand2MinColumns; the smaller maps of test_kernels_order3 take the per-column passes), one output row, one output
# column, and several images (column counts that are not a multiple of 8, and 1024)
GEOMS = [
    (1, 64, 24, 24, 1),
    (2, 128, 16, 34, 1),
    (1, 192, 25, 25, 0),
    (1, 64, 3, 600, 0),
    (1, 64, 520, 1, 1),
    (1, 256, 20, 24, 2),
    (1, 512, 22, 24, 1),
    (3, 64, 23, 23, 1),
    (1, 64, 32, 32, 1),  # 1024 columns: H_2's words (QuantizedColumns::word_major) a line more than 8 KB apart
]


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
def test_scaled_pixels_follow_the_chain(path, geom, order):
    """Each pixel scaled by its own factor (0.05 .. 20): neighbouring columns' beta_1 differ widely, so many values of a
    pixel lie between its readers' least and greatest threshold."""
    n, c, h, w, p = geom
    rng = np.random.default_rng(c + h + 3 * order)
    scale = np.exp(rng.uniform(np.log(0.05), np.log(20.0), (n, 1, h, w)))
    x = (rng.standard_normal((n, c, h, w)) * scale).astype(np.float32)
    x[0, :2, 0, :] = -0.0
    wt = rng.standard_normal((4, c, 3, 3)).astype(np.float32)
    _check_chain(x, wt, order, path, padding=p)


@pytest.mark.parametrize("order", [2, 3])
def test_exact_and_zero_beta1_beside_others(path, order):
    """Magnitude 1 everywhere in the middle of the image (the columns there have beta_1 = 1 exactly, and every value
    ties with it), zeros in a block (beta_1 = 0), random values elsewhere: pixels whose readers mix exact and other
    thresholds."""
    rng = np.random.default_rng(11 + order)
    x = rng.standard_normal((1, 64, 24, 24)).astype(np.float32)
    ones = np.where(rng.random((64, 6, 6)) < 0.5, -1.0, 1.0).astype(np.float32)
    x[0, :, 3:9, 3:9] = ones
    x[0, :, 0:4, 8:12] = 0.0
    wt = rng.standard_normal((3, 64, 3, 3)).astype(np.float32)
    betas = _check_chain(x, wt, order, path, padding=1)
    assert (betas[:, 0] == 1.0).sum() >= 9 and (betas[:, 0] == 0.0).sum() >= 1  # the crafted columns are there


def test_values_a_float_step_from_the_threshold(path):
    """Every column's magnitudes 1 + j 2^-23 (j < 24): each beta_1 falls among the values themselves, one float32 step
    from some of them, on every reader of every pixel."""
    rng = np.random.default_rng(5)
    mags = (1.0 + rng.integers(0, 24, (2, 128, 25, 26)) * 2.0**-23).astype(np.float32)
    x = np.where(rng.random(mags.shape) < 0.5, -mags, mags).astype(np.float32)
    wt = rng.standard_normal((3, 128, 3, 3)).astype(np.float32)
    _check_chain(x, wt, 2, path, padding=0)
    _check_chain(x, wt, 2, path, padding=1)


@pytest.mark.parametrize("order", [2, 3])
def test_threads_and_batches_give_the_same_floats(path, order):
    """The columns and outputs at 1, 2 and 5 threads, and each image alone against the batch, bit for bit: a pixel's
    bands come from all its readers, never from how the columns were split into tasks (the batch of 3 at 2 and 5
    threads and an image alone at 2 split each image's rows into bands, each with its own first two pixel rows)."""
    rng = np.random.default_rng(order)
    scale = np.exp(rng.uniform(-2.0, 2.0, (3, 1, 24, 25)))
    x = (rng.standard_normal((3, 128, 24, 25)) * scale).astype(np.float32)
    wt = rng.standard_normal((8, 128, 3, 3)).astype(np.float32)
    pw = kernels.pack_weights(wt)
    got = {}
    for threads in (5, 1, 2):
        kernels.set_num_threads(threads)
        got[threads] = (_columns(x, wt, order, path, 1, 1), kernels.conv2d(x, pw, order=order, padding=1, kernel=path))
    (b1, e1), y1 = got[1]
    for threads in (2, 5):
        (b2, e2), y2 = got[threads]
        assert np.array_equal(b1, b2) and np.array_equal(e1, e2) and np.array_equal(y1, y2)
    per = 24 * 25
    for i in range(3):
        bits, betas = _columns(x[i : i + 1], wt, order, path, 1, 1)
        assert np.array_equal(bits, b1[i * per : (i + 1) * per]) and np.array_equal(betas, e1[i * per : (i + 1) * per])


# (images, channels, height, width, padding, exact): rows of 23, 24 and 25 pixels (the NCHW pass's 8- and 16-pixel
# blocks whole and with 7 or 1 left over), one to three words of channels; `exact` puts columns with beta_1 exactly 1
# (exact thresholds: a value's bit then depends on its sign) beside the others
AFFINE_GEOMS = [(2, 128, 24, 23, 1, False), (1, 64, 24, 24, 1, True), (1, 192, 25, 25, 0, True)]


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("geom", AFFINE_GEOMS, ids=lambda g: "x".join(map(str, g[:5])) + ("-exact" if g[5] else ""))
def test_input_affine_and_channels_last_give_the_same_floats(path, geom, order):
    """The route reads its padded rows through the input affine, from an NCHW input itself at order 2 and from the
    NHWC copy that the pixel pass writes otherwise: a layer with an input affine gives bit for bit the layer on the
    affine's output (multiply, then add, as a separate float32 step), and an NHWC input the NCHW input's columns and
    outputs."""
    n, c, h, w, p, exact = geom
    rng = np.random.default_rng(21 + order + c)
    x = (rng.standard_normal((n, c, h, w)) * np.exp(rng.uniform(-1.0, 1.0, (n, 1, h, w)))).astype(np.float32)
    if exact:  # magnitude 1 in a block, both signs: its columns' beta_1 is 1 exactly, ties with every value
        x[0, :, 3:9, 3:9] = np.where(rng.random((c, 6, 6)) < 0.5, -1.0, 1.0)
    wt = rng.standard_normal((6, c, 3, 3)).astype(np.float32)
    pw = kernels.pack_weights(wt)
    sc = rng.standard_normal(c).astype(np.float32)
    sc[::5] = 0.0
    sh = rng.standard_normal(c).astype(np.float32)
    xa = np.add(np.multiply(x, sc.reshape(1, c, 1, 1)), sh.reshape(1, c, 1, 1))
    want = kernels.Conv2dLayer(pw, order=order, padding=p, kernel=path)(xa)
    got = kernels.Conv2dLayer(pw, order=order, padding=p, in_scale=sc, in_shift=sh, kernel=path)(x)
    assert np.array_equal(got, want)
    co = wt.shape[0]
    args = (pw.conv_bits(), np.ones(co), np.zeros(co), 3, 3, (1, 1), (p, p), (1, 1), order)
    y, (bits, betas) = _core.conv2d_train(x, *args, False, path)
    yl, (bits_l, betas_l) = _core.conv2d_train(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), *args, True, path)
    assert np.array_equal(np.array(bits), np.array(bits_l)) and np.array_equal(np.array(betas), np.array(betas_l))
    assert np.array_equal(np.array(y), np.array(yl).transpose(0, 3, 1, 2))


def _outputs_from_columns(bits, betas, wbits, n):
    """The epilogue (coef 1, add 0) in the kernels' float32 operation order (docs/MATH.md "Output"), from the columns'
    words (columns, order, kw) and betas and the filters' words (filters, kw): (filters, columns)."""
    pc = np.unpackbits((wbits[:, None, None, :] ^ bits[None]).view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)
    s = np.zeros(pc.shape[:2], np.float32)
    for k in range(bits.shape[1]):
        s = s + betas[:, k].astype(np.float32)[None] * (n - 2 * pc[:, :, k]).astype(np.float32)
    return np.float32(1.0) * s + np.float32(0.0)


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
def test_outputs_are_the_epilogue_of_the_columns(path, geom, order):
    """The layer's outputs, word for word the epilogue of its own columns: at order 2 the GEMM reads H_2 where the
    route wrote it, word by word over the columns (csrc/core/layer.h QuantizedColumns::word_major), whole lane sets in
    place on the AVX-512 path, the rest copied; the column counts here leave lane sets of 1-7 columns at the end of an
    image, of a task and of the batch."""
    n_img, c, h, w, p = geom
    rng = np.random.default_rng(7 * c + h + order)
    x = (rng.standard_normal((n_img, c, h, w)) * np.exp(rng.uniform(-1.0, 1.0, (n_img, 1, h, w)))).astype(np.float32)
    co = 11
    wt = rng.standard_normal((co, c, 3, 3)).astype(np.float32)
    wbits = kernels.pack_weights(wt).conv_bits()
    y, (bits, betas) = _core.conv2d_train(x, wbits, np.ones(co), np.zeros(co), 3, 3, (1, 1), (p, p), (1, 1), order,
                                          False, path)
    bits, betas, y = np.array(bits), np.array(betas), np.array(y)
    want = _outputs_from_columns(bits, betas, np.asarray(wbits), c * 9)
    oh, ow = y.shape[2], y.shape[3]
    np.testing.assert_array_equal(y.transpose(1, 0, 2, 3).reshape(co, n_img * oh * ow), want)
