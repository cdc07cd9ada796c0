"""horq.kernels.all_finite: numpy's isfinite(x).all() without the mask, the native runtime's input check."""

from __future__ import annotations

import numpy as np
import pytest

from horq import kernels


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1 << 15, (1 << 15) + 1, 3 * 224 * 224])
@pytest.mark.parametrize("threads", [1, 2])
def test_all_finite_finds_every_non_finite_value(n, threads):
    """A NaN, +Inf or -Inf anywhere (first and last value, each 16-lane position, a block's edges, the tail after the
    last whole 16 values) is found; finite values of every kind (zeros of both signs, subnormals, the largest float)
    are not flagged."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    specials = np.array([0.0, -0.0, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                         np.finfo(np.float32).smallest_subnormal], np.float32)
    x[: min(n, specials.size)] = specials[: min(n, specials.size)]
    where = sorted({0, n - 1, n // 2, min(n - 1, 15), min(n - 1, 16), min(n - 1, (1 << 15) - 1),
                    min(n - 1, 1 << 15), max(0, n - 17)}) if n else []
    with kernels_threads(threads):
        assert kernels.all_finite(x) is True
        for i in where:
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[i] = bad
                assert kernels.all_finite(y) is False, (i, bad)
                assert kernels.all_finite(y.reshape(1, -1)) is False


def test_all_finite_takes_views_and_rejects_other_dtypes():
    x = np.ones((4, 6), np.float32)
    x[3, 5] = np.nan
    assert kernels.all_finite(x[:, ::2]) is True  # a non-contiguous view without the NaN
    assert kernels.all_finite(x[:, 1::2]) is False
    with pytest.raises(ValueError, match="float32"):
        kernels.all_finite(np.ones(3))


class kernels_threads:  # noqa: N801 (a context manager)
    def __init__(self, n):
        self.n, self.old = n, kernels.get_num_threads()

    def __enter__(self):
        kernels.set_num_threads(self.n)

    def __exit__(self, *exc):
        kernels.set_num_threads(self.old)
