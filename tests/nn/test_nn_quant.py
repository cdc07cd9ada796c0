"""Quantizers of horq.nn.quant against horq.reference (forward) and hand-written numpy rules (gradients)."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nn_helpers import near_tie

from horq import reference as ref
from horq.nn import binarize_weights, binary_weight, residual_approx, residual_binarize

# float64 everywhere a result is compared with the numpy reference: both then compute the same sums to within
# a few ulps, and the random data below never puts a residual exactly on a sign tie.
TOL = dict(rtol=1e-10, atol=1e-12)


def _data(rng, shape, zero_frac=0.2):
    x = rng.standard_normal(shape)
    u = rng.random(shape)
    x[u < zero_frac] = 0.0  # exact zeros: sign(0) = +1
    x[u < zero_frac / 2] = -0.0  # negative zeros too: -0.0 < 0 is false, so sign(-0.0) = +1
    return x


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    order=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_residual_binarize_matches_reference(shape, order, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _data(np.random.default_rng(seed), tuple(shape))
    assume(not near_tie(x, order, dim))
    approx, planes, betas = residual_binarize(torch.from_numpy(x), order, dim=dim)
    r_approx, r_planes, r_betas = ref.residual_binarize(x, order, axis=dim)
    assert planes.shape == r_planes.shape and betas.shape == r_betas.shape
    np.testing.assert_array_equal(planes.numpy(), r_planes)
    assert set(np.unique(planes.numpy())) <= {-1.0, 1.0}
    np.testing.assert_allclose(betas.numpy(), r_betas, **TOL)
    np.testing.assert_allclose(approx.numpy(), r_approx, **TOL)
    np.testing.assert_allclose(residual_approx(torch.from_numpy(x), order, dim=dim).numpy(), r_approx, **TOL)


def test_zero_column_and_sign_of_zero():
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, -2.0, 2.0]], dtype=torch.float64)
    approx, planes, betas = residual_binarize(x, 2, dim=1)
    assert planes[0, 0].tolist() == [1.0, 1.0, 1.0]  # an all-zero column: +1 planes, zero betas
    assert betas[:, 0, 0].tolist() == [0.0, 0.0]
    assert approx[0].tolist() == [0.0, 0.0, 0.0]
    assert planes[0, 1].tolist() == [1.0, -1.0, 1.0]  # sign(0) = +1
    assert betas[0, 1, 0].item() == pytest.approx(4.0 / 3.0)


@pytest.mark.parametrize("n", [1, 3, 31, 64, 513])
def test_error_identity_and_strict_decrease(n):
    x = torch.from_numpy(_data(np.random.default_rng(n), (5, n), zero_frac=0.1))
    prev = (x**2).sum(dim=1)
    r = x.clone()
    _, planes, betas = residual_binarize(x, 4, dim=1)
    for k in range(4):
        r = r - betas[k] * planes[k]
        now = (r**2).sum(dim=1)
        # ||r_k||^2 = ||r_{k-1}||^2 - n beta_k^2
        torch.testing.assert_close(now, prev - n * betas[k, :, 0] ** 2, rtol=1e-10, atol=1e-10)
        approx, _, _ = residual_binarize(x, k + 1, dim=1)
        torch.testing.assert_close(((x - approx) ** 2).sum(dim=1), now, rtol=1e-9, atol=1e-9)
        nonzero = prev > 1e-20
        assert bool((now[nonzero] < prev[nonzero]).all()), "error must strictly decrease while it is nonzero"
        prev = now


def test_relative_error_gaussian():
    x = torch.randn(200, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    errs = [float(((x - residual_binarize(x, k, dim=1)[0]) ** 2).sum() / (x**2).sum()) for k in range(1, 5)]
    # docs/MATH.md "The error identity": about 0.36, 0.13, 0.058, 0.033 for Gaussian data
    np.testing.assert_allclose(errs, [0.363, 0.132, 0.058, 0.033], rtol=0.08)
    assert errs == sorted(errs, reverse=True)


@pytest.mark.parametrize("clip", [1.0, 0.5, None])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_residual_gradient_is_masked_straight_through(order, clip):
    c = 1.0 if clip is None else clip
    x = torch.tensor([[0.0, c, -c, 0.999 * c, -1.001 * c, 3.0, -0.0, 0.25 * c]], dtype=torch.float64)
    x.requires_grad_(True)
    g = torch.arange(1.0, 9.0, dtype=torch.float64).reshape(1, 8)
    approx, planes, betas = residual_binarize(x, order, dim=1, clip=clip)
    assert not planes.requires_grad and not betas.requires_grad
    approx.backward(g)
    xn = x.detach().numpy()
    expected = g.numpy() * (np.ones_like(xn) if clip is None else (np.abs(xn) <= clip))  # values at +-clip pass
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_residual_validation():
    x = torch.randn(3, 4)
    for bad in (0, -1, None, 9, 1.5, True):
        with pytest.raises(ValueError, match="order"):
            residual_binarize(x, bad, dim=1)
    for bad in (0.0, -1.0, "1"):
        with pytest.raises(ValueError, match="clip"):
            residual_binarize(x, 1, dim=1, clip=bad)
    with pytest.raises(ValueError, match="floating"):
        residual_binarize(torch.ones(3, 4, dtype=torch.int64), 1, dim=1)


def test_nan_propagates_within_its_column_only():
    x = torch.randn(3, 5, dtype=torch.float64)
    x[1, 2] = float("nan")
    approx, _, _ = residual_binarize(x, 2, dim=1)
    assert bool(torch.isnan(approx[1]).all())
    assert bool(torch.isfinite(approx[[0, 2]]).all())


def _np_binary_weight_grad(w, g, clip):
    """Hand-written reference of binary_weight's documented gradient."""
    wf, gf = w.reshape(w.shape[0], -1), g.reshape(g.shape[0], -1)
    n = wf.shape[1]
    s = np.where(wf < 0, -1.0, 1.0)
    alpha = np.abs(wf).mean(axis=1, keepdims=True)
    window = np.ones_like(wf) if clip is None else (np.abs(wf) <= clip)
    return (alpha * window * gf + s * (gf * s).sum(axis=1, keepdims=True) / n).reshape(w.shape)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (4, 3, 3, 3), (5, 2, 1, 3)])
@pytest.mark.parametrize("clip", [1.0, 0.3, None])
def test_binary_weight_forward_and_gradient(shape, clip):
    rng = np.random.default_rng(sum(shape))
    w = _data(rng, shape, zero_frac=0.25)
    w.reshape(-1)[:2] = [1.0 if clip is None else clip, -(1.0 if clip is None else clip)][: w.size]  # at +-clip
    g = rng.standard_normal(shape)
    wt = torch.from_numpy(w).requires_grad_(True)
    out = binary_weight(wt, clip=clip)
    np.testing.assert_allclose(out.detach().numpy(), ref.effective_weight(w, 0), **TOL)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(wt.grad.numpy(), _np_binary_weight_grad(w, g, clip), **TOL)
    alpha, signs = binarize_weights(wt)
    r_alpha, r_signs = ref.binarize_weights(w)
    np.testing.assert_allclose(alpha.numpy(), r_alpha, **TOL)
    np.testing.assert_array_equal(signs.numpy(), r_signs)
    assert not alpha.requires_grad and not signs.requires_grad


def test_binary_weight_gradient_exact_zeros():
    w = torch.tensor([[0.0, 0.0, -2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, -1.0, 2.0, 4.0]], dtype=torch.float64)
    binary_weight(w).backward(g)
    # alpha = 0.625; sum(g * s) = 1 - 1 - 2 + 4 = 2 -> via alpha: s * 2 / 4; |w|<=1 except -2
    expected = [0.625 * 1 + 0.5, 0.625 * -1 + 0.5, 0.0 - 0.5, 0.625 * 4 + 0.5]
    assert w.grad[0].tolist() == pytest.approx(expected)
