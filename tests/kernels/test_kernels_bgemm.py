import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horq import bits, kernels

NS = [1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513]
# Row lengths around the AVX2 kernel's switch to its nibble-split form (4 vectors = 16 words) and its
# tails: 190 bits = 3 words (tail only), 960 = 15 words (3 vectors + 3), 1024 = 16 words (split, no
# tail), 1089 = 18 words (split + 2), 2304 = 36 words (a 3x3 conv over 256 channels).
SPLIT_NS = [190, 960, 1024, 1089, 2304]


def random_rows(rng, rows, n):
    return bits.pack_signs(rng.standard_normal((rows, n)).astype(np.float32))


@pytest.mark.parametrize("n", NS + SPLIT_NS)
@pytest.mark.parametrize("m,nb", [(1, 1), (3, 5), (5, 67), (130, 9)])
def test_bgemm_matches_numpy(path, n, m, nb):
    rng = np.random.default_rng(n * 7 + m)
    a, b = random_rows(rng, m, n), random_rows(rng, nb, n)
    got = kernels.bgemm(a, b, n, kernel=path)
    assert got.dtype == np.int32 and got.shape == (m, nb)
    np.testing.assert_array_equal(got, bits.binary_dot(a[:, None, :], b[None, :, :], n))


def test_bgemm_counts_beyond_16_bits(path):
    # n = 70000 > 65535: opposite rows give popcount 70000, which would wrap a 16-bit accumulator; it also
    # runs the AVX2 byte accumulators through many 31-step flushes.
    n = 70000
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, n)).astype(np.float32)
    x[x == 0] = 1  # -x must flip every sign, so no zeros
    a, b = bits.pack_signs(x), bits.pack_signs(np.concatenate([-x, x]))
    got = kernels.bgemm(a, b, n, kernel=path)
    assert got[0, 0] == -n and got[0, 3] == n
    np.testing.assert_array_equal(got, bits.binary_dot(a[:, None, :], b[None, :, :], n))


def test_bgemm_threads_identical(path):
    rng = np.random.default_rng(2)
    a, b = random_rows(rng, 200, 1000), random_rows(rng, 150, 1000)
    kernels.set_num_threads(1)
    one = kernels.bgemm(a, b, 1000, kernel=path)
    kernels.set_num_threads(2)
    two = kernels.bgemm(a, b, 1000, kernel=path)
    np.testing.assert_array_equal(one, two)


def test_bgemm_bad_inputs():
    a = np.zeros((2, 3), np.uint64)
    with pytest.raises(ValueError, match="uint64"):
        kernels.bgemm(a.astype(np.int64), a)
    with pytest.raises(ValueError, match="words per row"):
        kernels.bgemm(a, np.zeros((2, 4), np.uint64))
    with pytest.raises(ValueError, match="does not fit"):
        kernels.bgemm(a, a, n=500)
    with pytest.raises(ValueError, match="non-empty"):
        kernels.bgemm(np.zeros((0, 3), np.uint64), a)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_bgemm_popcount_identity_property(n, m, nb, seed):
    # a . b over {-1, +1} (zeros count as +1) equals n - 2 popcount(a ^ b), on every available path.
    rng = np.random.default_rng(seed)
    a = rng.choice([-1.0, 0.0, 1.0, -0.5], size=(m, n)).astype(np.float32)
    b = rng.choice([-1.0, 0.0, 1.0, 2.0], size=(nb, n)).astype(np.float32)
    expect = (bits.sign(a).astype(np.int64) @ bits.sign(b).astype(np.int64).T)
    for path in kernels.info()["available"]:
        np.testing.assert_array_equal(kernels.bgemm(bits.pack_signs(a), bits.pack_signs(b), n, kernel=path), expect)
