"""kernels.float_linear (csrc/core/float_linear.h), the native backend's float classifier at small batches: every
path bit for bit the generic path's scalar chains (the documented sum order: 32 partial sums by fused multiply-add,
folded in halves), at any thread count; against the float64 product within float32 rounding of sum |w x|; bias and
floor as numpy adds and maximizes them, NaN included; bad arguments raise ValueError."""

import math

import numpy as np
import pytest

from horq import _core, kernels

# (rows, n, m): row lengths around the 32-lane blocks and the 8-lane registers, output counts around the 64-output
# tasks, one to 16 rows.
SHAPES = [(1, 1, 1), (1, 7, 3), (2, 31, 65), (1, 32, 64), (3, 33, 63), (1, 65, 129), (16, 512, 70), (1, 512, 1000),
          (5, 1000, 10)]


def _case(rows, n, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    w = (rng.standard_normal((m, n)) / math.sqrt(n)).astype(np.float32)
    return x, w, (0.1 * rng.standard_normal(m)).astype(np.float32)


@pytest.mark.parametrize(("rows", "n", "m"), SHAPES)
def test_float_linear_matches_float64_and_generic_bits(path, rows, n, m):
    x, w, b = _case(rows, n, m, seed=n * 7 + m)
    y = kernels.float_linear(x, w, bias=b, kernel=path)
    assert y.shape == (rows, m) and y.dtype == np.float32
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + b
    magnitude = np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64) + np.abs(b)
    steps = math.ceil(n / 32) + 5 + 2  # a lane's chain, the five folds, + bias, the conversion
    assert np.all(np.abs(y - exact) <= steps * 2.0**-24 * magnitude)
    np.testing.assert_array_equal(y, kernels.float_linear(x, w, bias=b, kernel="generic"))


def test_float_linear_same_bits_at_any_thread_count(path):
    x, w, b = _case(4, 300, 1000, seed=3)  # 16 tasks of 64 outputs, over the serial threshold
    kernels.set_num_threads(1)
    one = kernels.float_linear(x, w, bias=b, kernel=path)
    for t in (2, 3):
        kernels.set_num_threads(t)
        np.testing.assert_array_equal(kernels.float_linear(x, w, bias=b, kernel=path), one)


def test_float_linear_bias_and_floor_as_numpy(path):
    x, w, b = _case(3, 100, 40, seed=5)
    plain = kernels.float_linear(x, w, kernel=path)
    with_bias = kernels.float_linear(x, w, bias=b, kernel=path)
    np.testing.assert_array_equal(with_bias, plain + b)  # one float32 add
    floor = np.linspace(-0.5, 0.5, 40).astype(np.float32)
    np.testing.assert_array_equal(kernels.float_linear(x, w, bias=b, floor=floor, kernel=path),
                                  np.maximum(plain + b, floor))
    np.testing.assert_array_equal(kernels.float_linear(x, w, floor=0.0, kernel=path), np.maximum(plain, 0))
    floor[3] = np.nan  # numpy.maximum: a NaN floor gives NaN
    got = kernels.float_linear(x, w, bias=b, floor=floor, kernel=path)
    np.testing.assert_array_equal(got, np.maximum(plain + b, floor))
    assert np.isnan(got[:, 3]).all() and not np.isnan(np.delete(got, 3, axis=1)).any()


def test_float_linear_ceiling_as_numpy_clip(path):
    """floor and ceiling (a fused hardtanh): numpy.clip's values, a NaN sum kept; a NaN ceiling gives NaN, as
    numpy.minimum's does."""
    x, w, b = _case(3, 100, 40, seed=7)
    x[2, 5] = np.nan
    plain = kernels.float_linear(x, w, bias=b, kernel=path)
    ceiling = np.linspace(0.1, 2.0, 40).astype(np.float32)
    for floor, ceil in ((-1.0, 1.0), (0.0, 6.0), (-ceiling, ceiling)):
        got = kernels.float_linear(x, w, bias=b, floor=floor, ceiling=ceil, kernel=path)
        want = np.clip(plain, np.float32(floor), np.float32(ceil))
        assert (want[:2] != plain[:2]).any() and np.isnan(got[2]).all()
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kernels.float_linear(x, w, bias=b, ceiling=ceiling, kernel=path),
                                  np.minimum(plain, ceiling))
    ceiling[4] = np.nan
    got = kernels.float_linear(x, w, bias=b, floor=0.0, ceiling=ceiling, kernel=path)
    assert np.isnan(got[:, 4]).all() and not np.isnan(got[:2, :4]).any()
    np.testing.assert_array_equal(got, np.minimum(np.maximum(plain, 0), ceiling))


def test_float_linear_propagates_nan_and_inf(path):
    x, w, _ = _case(3, 70, 9, seed=6)
    x[1, 69] = np.nan  # the last value: in a row's partial block
    x[2, 0] = np.inf
    y = kernels.float_linear(x, w, floor=0.0, kernel=path)  # a NaN sum stays NaN through the floor
    assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()
    assert np.all(np.isinf(y[2]) | (y[2] == 0))  # +-inf, -inf floored to 0 (w[:, 0] has both signs)
    np.testing.assert_array_equal(y, kernels.float_linear(x, w, floor=0.0, kernel="generic"))


@pytest.mark.parametrize(("args", "match"), [
    ((np.ones((2, 5)), np.ones((3, 5), np.float32)), "x must be float32"),
    ((np.ones((2, 5), np.float32), np.ones((3, 5), np.int32)), "weight must be float32"),
    ((np.ones(5, np.float32), np.ones((3, 5), np.float32)), "x must have 2 dimensions"),
    ((np.ones((2, 4), np.float32), np.ones((3, 5), np.float32)), "x has 4 features, the weights expect 5"),
    ((np.ones((0, 5), np.float32), np.ones((3, 5), np.float32)), "x is empty"),
    ((np.ones((2, 5), np.float32), np.ones((0, 5), np.float32)), "weight is empty"),
])
def test_float_linear_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        kernels.float_linear(*args)


def test_float_linear_bad_bias_floor_and_path():
    x, w = np.ones((2, 5), np.float32), np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"bias must hold one value or one per output \(3\), got 2"):
        kernels.float_linear(x, w, bias=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"floor must hold one value or one per output \(3\), got 4"):
        kernels.float_linear(x, w, floor=np.zeros(4))
    with pytest.raises(ValueError, match="unknown kernel path"):
        kernels.float_linear(x, w, kernel="sse9")
    with pytest.raises(ValueError, match="bias length != outputs"):  # the core's own check
        _core.float_linear(x, w, np.ones(2, np.float32), None, None, "")
    with pytest.raises(ValueError, match=r"ceiling must hold one value or one per output \(3\), got 2"):
        kernels.float_linear(x, w, ceiling=[1.0, 2.0])
    with pytest.raises(ValueError, match="ceiling length != outputs"):
        _core.float_linear(x, w, None, None, np.ones(2, np.float32), "")
