import numpy as np
import pytest

from horq import bits, kernels

NS = [1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513]


@pytest.mark.parametrize("n", NS)
def test_pack_weights_matches_bit_convention(n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal((5, n)).astype(np.float32)
    w[:, 0] = 0.0  # sign(0) = +1 -> bit 0
    pw = kernels.pack_weights(w)
    np.testing.assert_array_equal(pw.bits, bits.pack_signs(w))
    np.testing.assert_allclose(pw.alpha, np.abs(w.astype(np.float64)).mean(axis=1), rtol=1e-6)
    assert pw.alpha.dtype == np.float32 and pw.shape == (5, n) and pw.n == n


def test_native_pack_signs_matches_python():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 513)).astype(np.float32)
    x[0, :5] = [0.0, -0.0, -1e-30, 1e-30, np.float32(-3)]
    from horq import _core

    np.testing.assert_array_equal(_core.pack_signs(x), bits.pack_signs(x))


@pytest.mark.parametrize("c,kh,kw,compact", [(1, 1, 1, False), (3, 3, 3, True), (32, 3, 3, True),
                                              (57, 3, 3, False), (65, 3, 3, True), (7, 1, 5, True),
                                              (128, 2, 2, False), (64, 3, 3, False)])
def test_conv_relayout(c, kh, kw, compact):
    """The conv layout of csrc/core/layer.h: signs in (i, j, c) order, either grouped (per tap, the C channel
    signs in words_for(C) words) or, where grouping wastes words, compact (one run of C*kh*kw bits)."""
    rng = np.random.default_rng(c)
    w = rng.standard_normal((4, c, kh, kw)).astype(np.float32)
    pw = kernels.pack_weights(w)
    ijc = w.transpose(0, 2, 3, 1)
    grouped = bits.pack_signs(ijc.reshape(4, kh * kw, c)).reshape(4, -1)
    packed = bits.pack_signs(ijc.reshape(4, -1))
    assert (packed.shape[1] < grouped.shape[1]) == compact  # compact exactly when it saves words
    np.testing.assert_array_equal(pw.conv_bits(), packed if compact else grouped)
    assert not pw.conv_bits().flags.writeable  # a prepared layer keeps what it derives from them


def test_packed_weights_validation():
    w = np.ones((3, 70), np.float32)
    pw = kernels.pack_weights(w)
    with pytest.raises(ValueError, match="bits must be uint64"):
        kernels.PackedWeights(pw.bits.astype(np.int64), pw.alpha, w.shape)
    with pytest.raises(ValueError, match="bits must be uint64"):
        kernels.PackedWeights(pw.bits, pw.alpha, (3, 200))
    with pytest.raises(ValueError, match="alpha must be float32"):
        kernels.PackedWeights(pw.bits, pw.alpha.astype(np.float64), w.shape)
    bad = pw.bits.copy()
    bad[0, -1] = np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="padding bits"):
        kernels.PackedWeights(bad, pw.alpha, w.shape)
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.PackedWeights(pw.bits, np.array([1, np.nan, 1], np.float32), w.shape)
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.pack_weights(np.full((2, 3), np.inf, np.float32))
    with pytest.raises(ValueError, match=">= 2 dimensions"):
        kernels.pack_weights(np.ones(5, np.float32))
