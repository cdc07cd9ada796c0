import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horq import bits


@pytest.mark.parametrize("n", [1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513])
def test_pack_layout_and_padding(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n)).astype(np.float32)
    x[:, 0] = 0.0  # sign(0) = +1 -> bit 0
    w = bits.pack_signs(x)
    assert w.shape == (3, bits.words_for(n)) and w.dtype == np.uint64
    for r in range(3):
        for i in range(n):
            assert (int(w[r, i // 64]) >> (i % 64)) & 1 == int(x[r, i] < 0)
        if n % 64:
            assert int(w[r, -1]) >> (n % 64) == 0, "padding bits must be zero"


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_roundtrip_and_popcount_identity(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.choice([-1.0, 0.0, 1.0, -0.5], size=(2, n)).astype(np.float32)
    s = bits.sign(a)
    np.testing.assert_array_equal(bits.unpack_signs(bits.pack_signs(a), n), s)
    pa, pb = bits.pack_signs(a[0]), bits.pack_signs(a[1])
    assert bits.binary_dot(pa, pb, n) == int(np.dot(s[0], s[1]))


def test_nan_rejected():
    with pytest.raises(ValueError, match="NaN"):
        bits.pack_signs(np.array([1.0, np.nan], np.float32))
