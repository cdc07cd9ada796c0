"""Machine-independent comparisons of a model's float32 outputs with exact (float64) ones.

No test may pass or fail on how this CPU's PyTorch or BLAS kernels round (they differ between machines, and
so do models trained with them). So the end-to-end tests:

* set every parameter from numpy's generator (bit-identical on every machine) instead of training;
* take as truth float64 results: PyTorch run in float64 and the runtime's float64 ``reference`` backend,
  where a rounding difference between machines (~1e-16) flips a quantization bit with negligible odds;
* bound a float32 result's distance from the truth by what float32 arithmetic allows.

The last point needs care at binary layers of order >= 2: they threshold |r| against a column's beta, so a
value within float32 rounding (~1e-7 relative) of the threshold can take the other sign on one machine and
not on another. One such flip moves its column's outputs by about 2 alpha beta_k (a few percent of an
activation). The checks are therefore per sample: most samples have no flip on their path and must match to
float32 rounding of the logits, every sample stays within a fixed fraction of the logit scale, and argmax
agrees except on near-ties. The bars are set with a wide margin under the rates measured with every kernel
path and with PyTorch's and OpenBLAS's kernels forced to other CPU types (ATEN_CPU_CAPABILITY,
OPENBLAS_CORETYPE): those change which values flip, not how many to expect.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

ROUNDING = 1e-5  # float32 logits of these models: measured median 1e-7..1e-6 of the logit scale


def fixed_weights_(model: nn.Module, seed: int) -> nn.Module:
    """Sets every Conv/Linear/BatchNorm parameter and BatchNorm statistic from ``np.random.default_rng(seed)``.

    Weights are N(0, 1/fan_in) (unit-scale activations through the float layers), biases N(0, 0.1^2);
    BatchNorm gets non-trivial statistics and an affine with some negative scales, as a trained model has.
    """
    rng = np.random.default_rng(seed)

    def put(t, values):
        t.copy_(torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(t.shape)))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                put(m.weight, rng.standard_normal(m.weight.shape) / np.sqrt(fan_in))
                if m.bias is not None:
                    put(m.bias, 0.1 * rng.standard_normal(m.bias.shape))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                put(m.running_mean, 0.3 * rng.standard_normal(c))
                put(m.running_var, rng.uniform(0.5, 2.0, c))
                if m.affine:
                    put(m.weight, rng.uniform(0.5, 1.5, c) * np.where(rng.random(c) < 0.2, -1.0, 1.0))
                    put(m.bias, 0.3 * rng.standard_normal(c))
    return model


def inputs(shape: tuple, n: int, seed: int) -> np.ndarray:
    """``n`` standard-normal float32 samples of ``shape``, the same on every machine."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def torch_float64(model: nn.Module, x: np.ndarray, *, batch: int = 250) -> np.ndarray:
    """The eval-mode model run in float64 (a copy; the model itself is left in float32)."""
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return np.concatenate([m64(torch.from_numpy(x[i : i + batch]).double()).numpy()
                               for i in range(0, len(x), batch)])


def relative_errors(out: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per sample: the largest logit error as a fraction of the exact logits' scale (largest |logit|)."""
    return np.abs(out.astype(np.float64) - exact).max(axis=1) / float(np.abs(exact).max())


def assert_close_to_exact(out: np.ndarray, exact: np.ndarray, label: str, *, min_close: float,
                          max_error: float = 0.1, min_agree: float = 0.995) -> None:
    """``out`` (float32 path) against ``exact`` (float64 truth), per the module docstring.

    Args:
        min_close: the fraction of samples that must match to float32 rounding (no flip on their path).
        max_error: bound of every sample's error, as a fraction of the logit scale (a few flips).
        min_agree: the fraction of samples whose argmax must agree (a flip changes it only near a tie).
    """
    assert out.shape == exact.shape, label
    err = relative_errors(out, exact)
    assert np.median(err) <= ROUNDING, f"{label}: median relative logit error {np.median(err):.3g}"
    close = float((err <= ROUNDING).mean())
    assert close >= min_close, f"{label}: only {close:.1%} of samples match to rounding (bar {min_close:.0%})"
    assert err.max() <= max_error, f"{label}: worst relative logit error {err.max():.3g}"
    agree = float((out.argmax(1) == exact.argmax(1)).mean())
    assert agree >= min_agree, f"{label}: argmax agrees on {agree:.2%} of {len(out)} samples (bar {min_agree:.1%})"
