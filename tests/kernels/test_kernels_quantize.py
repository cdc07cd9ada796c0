import numpy as np
import pytest

from horq import bits, kernels, reference

NS = [1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513]


@pytest.mark.parametrize("order", [1, 2, 3, 8])
@pytest.mark.parametrize("n", NS)
def test_quantize_pack_matches_reference(path, n, order):
    rng = np.random.default_rng(1000 * order + n)
    cols = rng.standard_normal((9, n)).astype(np.float32)
    cols[0] = 0.0  # an all-zero column: beta_1 = 0, every plane is +1
    cols[1, :: max(1, n // 3)] = 0.0  # exact zeros inside a column (sign(0) = +1)
    got_bits, got_betas = kernels.quantize_pack(cols, order, kernel=path)
    _, planes, betas = reference.residual_binarize(cols, order, axis=-1)
    assert got_bits.shape == (9, order, bits.words_for(n)) and got_bits.dtype == np.uint64
    # The kernels binarize in double precision, like the float64 reference, so the bits agree exactly
    # (random data has no exact ties at a threshold).
    np.testing.assert_array_equal(got_bits, bits.pack_signs(planes.transpose(1, 0, 2)))
    # Betas: float64 means summed in a different order -> agree to a few ulps.
    np.testing.assert_allclose(got_betas, betas[..., 0].T, rtol=1e-12, atol=1e-300)


def test_error_identity_from_betas(path):
    # docs/MATH.md "The error identity": ||r_k||^2 = ||r_{k-1}||^2 - n beta_k^2, so the approximation error
    # shrinks with every order.
    rng = np.random.default_rng(5)
    n = 777
    cols = rng.standard_normal((4, n)).astype(np.float32)
    order = 6
    b, betas = kernels.quantize_pack(cols, order, kernel=path)
    x = cols.astype(np.float64)
    r = x.copy()
    for k in range(order):
        h = bits.unpack_signs(b[:, k], n).astype(np.float64)
        before = (r**2).sum(axis=1)
        r = r - betas[:, k : k + 1] * h
        np.testing.assert_allclose((r**2).sum(axis=1), before - n * betas[:, k] ** 2, rtol=1e-9)
        assert ((r**2).sum(axis=1) < before).all()


def test_quantize_pack_bad_inputs():
    ok = np.ones((2, 5), np.float32)
    with pytest.raises(ValueError, match="float32"):
        kernels.quantize_pack(ok.astype(np.float64), 1)
    with pytest.raises(ValueError, match="2 dimensions"):
        kernels.quantize_pack(ok[0], 1)
    with pytest.raises(ValueError, match="empty"):
        kernels.quantize_pack(np.ones((0, 5), np.float32), 1)
    with pytest.raises(ValueError, match="order"):
        kernels.quantize_pack(ok, 9)
    bad = ok.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.quantize_pack(bad, 2)
