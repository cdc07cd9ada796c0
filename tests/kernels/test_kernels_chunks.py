"""Large batches at orders >= 2 are quantized a chunk of images at a time (csrc/core/conv.cpp images_per_chunk: once
the batch's NHWC copy passes 4 MB, about 2 MB of it at a time, reused): every image's outputs and columns must be bit
for bit those of the image alone, in every chunk (the last one partial), on every route the chunks take (the image
route with per-pixel bands or per-column passes, 1x1 stride 2, rows narrower than 24 pixels, channels that are not
whole words, the generic path's per-pixel words), with an input affine, from an NHWC input, and at 1 and 2 threads."""

import numpy as np
import pytest

from horq import _core, kernels

# (images, C_in, C_out, size, kernel, stride, padding, order): each batch's copy is over 4 MB, so it is chunked
CASES = [
    (9, 64, 8, 32, 3, 1, 1, 2),  # 518 KB an image with the bands' slots (avx2): chunks of 4, 4, 1
    (17, 64, 8, 32, 3, 1, 1, 3),  # per-column passes from the image: 296 KB, chunks of 7
    (17, 64, 16, 32, 1, 2, 0, 2),  # a ResNet shortcut: 262 KB, chunks of 8
    (30, 128, 8, 16, 3, 1, 1, 2),  # rows of 16 pixels: chunks of 12 (at least 4 images per thread)
    (21, 96, 8, 24, 3, 2, 1, 2),  # 96 channels: per-pixel words and a copy without the border
]


def _case(case, seed):
    n, ci, co, s, k, st, p, order = case
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, ci, s, s)) * np.exp(rng.uniform(-1.5, 1.5, (n, 1, s, s)))).astype(np.float32)
    x[-1, :3, -1, :] = -0.0
    wt = rng.standard_normal((co, ci, k, k)).astype(np.float32)
    return x, kernels.pack_weights(wt), dict(order=order, stride=st, padding=p)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "_".join(map(str, c)))
def test_each_image_as_alone(path, case, threads):
    x, pw, kw = _case(case, sum(case))
    c = x.shape[1]
    rng = np.random.default_rng(7)
    sc = rng.uniform(0.5, 2.0, c).astype(np.float32)
    sh = rng.standard_normal(c).astype(np.float32)
    kernels.set_num_threads(threads)
    for layer in (kernels.Conv2dLayer(pw, kernel=path, **kw),
                  kernels.Conv2dLayer(pw, in_scale=sc, in_shift=sh, kernel=path, **kw)):
        y = layer(x)
        for i in range(x.shape[0]):
            assert np.array_equal(y[i : i + 1], layer(x[i : i + 1])), i


@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=lambda c: "_".join(map(str, c)))
def test_columns_and_channels_last_as_alone(path, case):
    """The quantized columns themselves (the training forward returns them), from NCHW and NHWC inputs."""
    x, pw, kw = _case(case, 3)
    co, k, st, p = pw.shape[0], case[4], case[5], case[6]
    args = (pw.conv_bits(), np.ones(co), np.zeros(co), k, k, (st, st), (p, p), (1, 1), kw["order"])
    y, (bits, betas) = _core.conv2d_train(x, *args, False, path)
    bits, betas = np.array(bits), np.array(betas)
    yl, (bits_l, betas_l) = _core.conv2d_train(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), *args, True, path)
    assert np.array_equal(bits, np.array(bits_l)) and np.array_equal(betas, np.array(betas_l))
    assert np.array_equal(np.array(y), np.array(yl).transpose(0, 3, 1, 2))
    per = bits.shape[0] // x.shape[0]
    for i in (0, 3, x.shape[0] - 1):
        _, (b, e) = _core.conv2d_train(x[i : i + 1], *args, False, path)
        assert np.array_equal(np.array(b), bits[i * per : (i + 1) * per])
        assert np.array_equal(np.array(e), betas[i * per : (i + 1) * per])


def test_nan_in_the_last_chunk_is_refused(path):
    x, pw, kw = _case(CASES[0], 11)
    x[-1, 5, 7, 9] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.conv2d(x, pw, kernel=path, **kw)
