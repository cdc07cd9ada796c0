"""End to end: PyTorch eval vs the packed numpy runtime vs the packed native runtime, on every zoo model,
with BatchNorm made non-trivial by a few training steps and the orders None/0/1/2/3 mixed across layers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import horq.runtime as rt
from horq.nn import HORQConfig, build_model, convert_
from horq.nn.export import export

N_INPUTS = 1000  # so that ">= 99.9% identical argmax" allows at most one disagreement
HAS_NATIVE = importlib.util.find_spec("horq._core") is not None
NATIVE = pytest.param("native", marks=pytest.mark.skipif(not HAS_NATIVE, reason="native extension not built"))

# (model, in_shape, builder kwargs, orders assigned cyclically to its Conv2d/Linear layers in order).
# The architectures are the zoo's; widths and the CIFAR input are reduced so that this suite stays fast on
# two shared cores (tests/test_export.py checks the full-width files).
CASES = {
    "mnist-mlp": ("mnist-mlp", (1, 28, 28), {}, [None, 2, 3]),
    "mnist-mlp-b": ("mnist-mlp", (1, 28, 28), {"hidden": 256}, [1, 0, None]),
    "mnist-cnn": ("mnist-cnn", (1, 28, 28), {"width": 8, "hidden": 64}, [None, 3, 1, 0, 2]),
    "cifar-vgg": ("cifar-vgg", (3, 16, 16), {"width": 0.25}, [None, 2, 3, 1, 0, 2, None]),
}


def _trained(name, in_shape, kwargs, orders, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, in_shape=in_shape, num_classes=10, **kwargs)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    overrides = {n: orders[i % len(orders)] for i, n in enumerate(layers)}
    convert_(model, HORQConfig(order=2, overrides=overrides))
    # A few steps on a learnable synthetic task: BatchNorm statistics and affine parameters move away from
    # their identity initialization, and the logits get margins like a trained model's.
    proj = torch.randn(int(np.prod(in_shape)), 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(8):
        x = torch.randn(32, *in_shape)
        loss = nn.functional.cross_entropy(model(x), (x.flatten(1) @ proj).argmax(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), overrides


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # The test machine is shared: two intra-op threads fighting other processes run several times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    name, in_shape, kwargs, orders = CASES[request.param]
    model, overrides = _trained(name, in_shape, kwargs, orders)
    path = tmp_path_factory.mktemp(request.param) / "m.horq"
    export(model, path, input_shape=in_shape)
    export(model, path.with_name("m16.horq"), input_shape=in_shape, float_dtype="float16")
    x = torch.randn(N_INPUTS, *in_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 250]) for i in range(0, N_INPUTS, 250)]).numpy()
    return request.param, path, x.numpy(), logits, overrides


@pytest.mark.parametrize("backend", ["numpy", NATIVE])
def test_runtime_matches_torch(case, backend):
    label, path, x, ref, overrides = case
    model = rt.load(path, backend=backend)
    assert model.backend == backend
    out = np.concatenate([model(x[i : i + 250]) for i in range(0, len(x), 250)])
    assert out.shape == ref.shape and out.dtype == np.float32
    agree = (out.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.999, f"{label}/{backend}: argmax agrees on {agree:.2%} of {len(x)} inputs"
    # Tolerance. The arithmetic is the same; what differs is float32 summation order (PyTorch's matmul,
    # numpy's, the kernels' popcounts and double-precision betas), about 1e-6 relative per layer. A binary
    # layer of order >= 2 thresholds |r| against a column's beta, so a value within that rounding of the
    # threshold can take the other sign; one such flip moves the outputs of its column by
    # 2 * alpha * beta_k (a few percent of one activation) and then propagates. Flips are rare, so: most
    # samples (no flip on their path) must match to float32 rounding of the logits, and every sample must
    # stay within a tenth of the logit scale. Measured (1000 inputs): median error 1e-7 to 1e-6 of the scale,
    # 97-100% of samples within 1e-5, worst 1e-2 to 6e-2 (a flip in an early convolution).
    scale = float(np.abs(ref).max())
    err = np.abs(out - ref).max(axis=1) / scale
    assert np.median(err) <= 1e-5, f"{label}/{backend}: median relative logit error {np.median(err):.3g}"
    close = (err <= 1e-5).mean()
    assert close >= 0.97, f"{label}/{backend}: only {close:.1%} of samples match to rounding"
    assert err.max() <= 0.1, f"{label}/{backend}: worst relative logit error {err.max():.3g}"


def test_float16_export(case):
    """``float_dtype="float16"`` stores the float32 export's float tensors rounded to half precision, nothing
    else, and the model stays close to PyTorch's.

    It is not exact: rounding a parameter (relative error <= 2**-11) moves pre-activations by about 1e-3 of
    their scale, and a binary layer then flips the sign of inputs that close to zero or to a beta threshold,
    which moves later outputs by a few percent. On these briefly trained models (1000 random inputs; small
    logit margins) argmax agreement measured 96.6-100% and the median relative logit error 1e-4 to 1.6e-2;
    docs/FORMAT.md measures accuracy on real test data.
    """
    from horq import format as hf

    label, path, x, ref, overrides = case
    f32, f16 = hf.load(path), hf.load(path.with_name("m16.horq"))
    assert f32.graph_json["nodes"] == f16.graph_json["nodes"]
    for name, arr in f32.tensors.items():
        half = f16.tensors[name]
        if arr.dtype == np.uint64:
            assert np.array_equal(half, arr)
        else:
            assert half.dtype == np.float16 and np.array_equal(half, arr.astype(np.float16)), name
    out = rt.load(path.with_name("m16.horq"))(x)
    agree = (out.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.95, f"{label}: float16 export agrees with torch on {agree:.1%}"
    err = np.abs(out - ref).max(axis=1) / float(np.abs(ref).max())
    assert np.median(err) <= 0.05 and err.max() <= 0.25, f"{label}: logit errors {np.median(err):.3g}, {err.max():.3g}"


@pytest.mark.parametrize("backend", ["numpy", NATIVE])
def test_fast_paths_match_reference(case, backend):
    """The float32 numpy path and the native kernels against the float64 horq.reference path."""
    label, path, x, ref, overrides = case
    exact = rt.load(path, backend="reference")(x[:16])
    out = rt.load(path, backend=backend)(x[:16])
    assert (out.argmax(1) == exact.argmax(1)).all()
    # Same flip argument as above, on 16 samples: rounding-level agreement except where a flip occurred.
    np.testing.assert_allclose(out, exact, rtol=0, atol=0.1 * float(np.abs(exact).max()))
    assert np.median(np.abs(out - exact)) <= 1e-5 * float(np.abs(exact).max())


def test_auto_backend_reports_itself(case):
    model = rt.load(case[1])
    assert model.backend == ("native" if HAS_NATIVE else "numpy")
    assert model.backend_reason and model.backend in repr(model)
