"""Helpers shared by the horq.nn tests (not a test module)."""

import numpy as np

from horq import reference as ref


def near_tie(x, order, axis, rel=1e-9):
    """True if a residual r_1..r_{K-1} of the reference is within ``rel`` of zero (exact zero included).

    There the sign depends on the last bit of a sum whose order numpy and torch choose differently (e.g. a
    column that is mostly zeros gives equal-magnitude residuals), so bit-exact agreement is not expected.
    """
    x = np.asarray(x, dtype=np.float64)
    scale = max(float(np.abs(x).max(initial=0.0)), 1e-300)
    _, planes, betas = ref.residual_binarize(x, order, axis=axis)
    r = x.copy()
    for k in range(order - 1):
        r = r - betas[k] * planes[k]
        if (np.abs(r) < rel * scale).any():
            return True
    return False
