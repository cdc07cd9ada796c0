"""A convolution's columns at orders 3-4, bit by bit against the double-precision residual chain (docs/MATH.md
"Inputs: residual binarization") recomputed in numpy from the betas the kernel itself reports: given beta_1 ..
beta_{k-1}, the bits H_k are a function of x alone, so they must match exactly on every path, whatever route computed
them (order 3 from float32 thresholds on every path, csrc/core/quantize_walk.h Threshold3 and the Taps3Pass of
quantize_avx2.cpp, quantize_avx512.cpp and quantize_generic.cpp; the double chain where the thresholds could tie, and
from order 4); each beta_k is the mean |r_{k-1}| to float32 summation rounding (2e-6 of beta_1 here: relative to the
values' scale, which a beta_2 of values clustered around beta_1 is far below).

The channel counts reach both routes: multiples of 64 (the zero-bordered image, every word whole) and others (one
column at a time, padding taps as nullptr, words cut short: order 3 there from quantize_taps3, the avx512 path
running the avx2 one).

Inputs: random values; magnitudes a few float32 steps apart around 1 (beta_1 +- beta_2 then falls among the values
themselves, so the thresholds' last step decides bits); magnitudes 1 and 3 (beta_1 = 2, |r_1| = 1 = beta_2 for every
value: the tie the float32 thresholds cannot express, left to the double chain); one magnitude (beta_2 = 0); zeros and
padding taps. The columns come from the training call (`_core.conv2d_train`), which returns them."""

import numpy as np
import pytest

from horq import _core, kernels


def _columns(x, wt, order, path, stride, padding):
    co, c, k, _ = wt.shape
    pw = kernels.pack_weights(wt)
    _, (bits, betas) = _core.conv2d_train(x, pw.conv_bits(), np.ones(co), np.zeros(co), k, k, (stride, stride),
                                          (padding, padding), (1, 1), order, False, path)
    return np.array(bits), np.array(betas)


def _windows(x, k, stride, padding):
    """(columns, taps, C) float64 values of every receptive field, in the conv layout's (tap, channel) order."""
    n, c, h, w = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    taps = [xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)]
    return np.stack(taps, axis=1).transpose(0, 3, 4, 1, 2).reshape(n * oh * ow, k * k, c)


def _words(h):
    """Bits (columns, taps, C) packed as the conv layout's words (csrc/core/layer.h conv_compact): grouped, each tap's
    C bits in words of their own, or compact, bit t C + c of one run, where that takes fewer words."""
    cols, taps, c = h.shape
    gw, nw = -(-c // 64), -(-(c * taps) // 64)
    if c % 64 and nw < taps * gw:  # compact
        flat = np.zeros((cols, nw * 64), bool)
        flat[:, :taps * c] = h.reshape(cols, -1)
    else:
        flat = np.zeros((cols, taps, gw * 64), bool)
        flat[:, :, :c] = h
    packed = np.packbits(flat.reshape(cols, -1, 64), axis=-1, bitorder="little")
    return packed.copy().view(np.uint64).reshape(cols, -1)


def _check_chain(x, wt, order, path, stride=1, padding=1):
    bits, betas = _columns(x, wt, order, path, stride, padding)
    r = _windows(x, wt.shape[2], stride, padding)
    n = r.shape[1] * r.shape[2]
    for k in range(1, order + 1):
        neg = r < 0
        np.testing.assert_array_equal(bits[:, k - 1, :], _words(neg), err_msg=f"H_{k}")
        mean = np.abs(r).sum(axis=(1, 2)) / n
        # float32 terms: their rounding is relative to the values' scale (beta_1), not to a small beta_k
        assert np.all(np.abs(betas[:, k - 1] - mean) <= 2e-6 * betas[:, 0] + 1e-30), f"beta_{k}"
        b = betas[:, k - 1][:, None, None]
        r = np.where(neg, r + b, r - b)  # the chain's step r -+ beta_k, one rounding
    return betas


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("geom", [(1, 64, 9, 9, 3, 1, 1), (2, 128, 6, 7, 3, 1, 1), (1, 64, 11, 10, 3, 2, 1),
                                  (1, 192, 5, 5, 3, 1, 0), (1, 64, 8, 8, 1, 1, 0),
                                  # channel counts 64 does not divide: the per-column route (compact or partial words)
                                  (1, 32, 9, 9, 3, 1, 1), (2, 96, 8, 7, 3, 1, 1), (1, 96, 6, 6, 1, 1, 0),
                                  (2, 3, 10, 10, 3, 1, 1), (1, 65, 7, 6, 3, 2, 1), (1, 100, 5, 5, 1, 1, 0)],
                         ids=lambda g: "x".join(map(str, g)))
def test_random_columns_follow_the_chain(path, geom, order):
    n, c, h, w, k, s, p = geom
    rng = np.random.default_rng(c + h + order)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[0, :3, 0, :] = 0.0  # zeros of both signs
    x[0, 3:5, 1, :] = -0.0
    wt = rng.standard_normal((5, c, k, k)).astype(np.float32)
    _check_chain(x, wt, order, path, s, p)


@pytest.mark.parametrize("order", [3, 4])
def test_values_a_few_float_steps_apart(path, order):
    """Magnitudes 1 + j 2^-23 (j < 24) with random signs: |r_1| and beta_2 are a few float32 steps of 1, so many
    values sit on either side of beta_1 +- beta_2 by one step (and columns may tie exactly)."""
    rng = np.random.default_rng(order)
    mags = (1.0 + rng.integers(0, 24, (2, 64, 9, 9)) * 2.0**-23).astype(np.float32)
    x = np.where(rng.random(mags.shape) < 0.5, -mags, mags).astype(np.float32)
    wt = rng.standard_normal((3, 64, 3, 3)).astype(np.float32)
    _check_chain(x, wt, order, path, padding=0)  # no padding: every value is near 1
    _check_chain(x, wt, order, path)


def test_exact_ties_and_zero_beta2(path):
    """Magnitudes 1 and 3 in equal numbers per column (beta_1 = 2, every |r_1| = 1 = beta_2: the double chain's
    r_2 is +-0, H_3 = 0 everywhere) and a single magnitude (beta_2 = 0)."""
    rng = np.random.default_rng(3)
    mags = np.where((np.arange(64) % 2 == 0)[None, :, None, None], 1.0, 3.0) * np.ones((1, 64, 6, 6))
    x = np.where(rng.random(mags.shape) < 0.5, -mags, mags).astype(np.float32)
    wt = rng.standard_normal((3, 64, 3, 3)).astype(np.float32)
    betas = _check_chain(x, wt, 3, path, padding=0)
    assert np.all(betas[:, 1] == 1.0)
    bits, _ = _columns(x, wt, 3, path, 1, 0)
    assert not bits[:, 2, :].any()
    one = np.where(rng.random((1, 64, 6, 6)) < 0.5, -1.0, 1.0).astype(np.float32)
    betas = _check_chain(one, wt, 3, path, padding=0)
    assert np.all(betas[:, 1] == 0.0)


@pytest.mark.parametrize("counts, a, b1, b2", [
    ((28, 4, 32), 2.0, 1.0625, 0.9375),  # |2 - beta_1| = beta_2: a tie above beta_1 only
    ((32, 31, 1), 2.0, 0.515625, 0.515625),  # |0 - beta_1| = beta_2: a tie below beta_1 only
], ids=["tie-above", "tie-below"])
def test_one_sided_ties(path, counts, a, b1, b2):
    """Every pixel holds zeros, ones and a's in these numbers (channels shuffled, signs random), so every column of a
    3x3 window without padding has these beta_1 and beta_2 exactly, and some magnitude ties |r_1| = beta_2 on one side
    of beta_1 only: the double chain's r_2 there is +-0 (H_3 = 0), which H_2 XOR N would get wrong for those with
    H_2 = 1."""
    rng = np.random.default_rng(len(str(counts)))
    zeros, ones, many = counts
    mags = np.concatenate([np.zeros(zeros), np.ones(ones), np.full(many, a)])
    x = np.stack([rng.permutation(mags) for _ in range(2 * 6 * 7)]).reshape(2, 6, 7, 64).transpose(0, 3, 1, 2)
    x = np.where(rng.random(x.shape) < 0.5, -x, x).astype(np.float32)
    wt = rng.standard_normal((3, 64, 3, 3)).astype(np.float32)
    betas = _check_chain(x, wt, 3, path, padding=0)
    assert np.all(betas[:, 0] == b1) and np.all(betas[:, 1] == b2)


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_far_from_one(path, scale):
    """Values scaled far from 1 (the band edges are then float32 values of that size; the thresholds' searches step
    through them the same way)."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((1, 64, 7, 7)) * scale).astype(np.float32)
    wt = rng.standard_normal((3, 64, 3, 3)).astype(np.float32)
    _check_chain(x, wt, 3, path)
