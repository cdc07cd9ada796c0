"""End to end: PyTorch eval vs the packed numpy runtime vs the packed native runtime, on every zoo model,
with non-trivial BatchNorm and the orders None/0/1/2/3 mixed across layers.

Machine-independent by construction (tests/agreement.py): parameters and inputs come from numpy's generator,
the truth is float64 (PyTorch in float64 and the runtime's float64 reference backend), and float32 results are
bounded by what float32 arithmetic allows.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import horq.runtime as rt
from agreement import assert_close_to_exact, fixed_weights_, inputs, relative_errors, torch_float64
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
    "resnet18": ("resnet18", (3, 16, 16), {"width": 0.125}, [None, 2, 1, 3, 0, 1, 2]),
    "resnet18-imagenet": ("resnet18", (3, 48, 48), {"width": 0.125, "layout": "imagenet"}, [None, 1, 2, 3]),
}
# Fraction of samples with no quantization flip on their path (tests/agreement.py), per float32 backend.
# Measured on these fixed models with every kernel path and with OpenBLAS forced to other CPU types: the
# lowest rate was 98.7% (cifar-vgg, numpy); the bar leaves room for a machine that flips more.
MIN_CLOSE = 0.9


def _model(name, in_shape, kwargs, orders, seed=0):
    model = build_model(name, in_shape=in_shape, num_classes=10, **kwargs)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    overrides = {n: orders[i % len(orders)] for i, n in enumerate(layers)}
    convert_(model, HORQConfig(order=2, overrides=overrides))
    return fixed_weights_(model, seed).eval(), overrides


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
    model, overrides = _model(name, in_shape, kwargs, orders)
    path = tmp_path_factory.mktemp(request.param) / "m.horq"
    export(model, path, input_shape=in_shape)
    export(model, path.with_name("m16.horq"), input_shape=in_shape, float_dtype="float16")
    x = inputs(in_shape, N_INPUTS, seed=1)
    exact = rt.load(path, backend="reference")(x)
    return request.param, path, x, exact, model


def test_torch_float64_matches_reference(case):
    """PyTorch's eval-mode model and the packed file's float64 reference compute the same function.

    Both are float64, so rounding between machines cannot flip a bit; they differ only because the file holds
    float32 parameters (BatchNorm folded in float64 and rounded once on export), a relative change of ~6e-8
    that flips a quantization bit now and then (the same flips on every machine)."""
    label, path, x, exact, model = case
    ref = torch_float64(model, x)
    err = relative_errors(ref, exact)
    assert np.median(err) <= 1e-6, f"{label}: median relative logit error {np.median(err):.3g}"
    assert err.max() <= 0.1 and (ref.argmax(1) == exact.argmax(1)).mean() >= 0.999, label


@pytest.mark.parametrize("backend", ["numpy", NATIVE])
def test_runtime_matches_exact(case, backend):
    label, path, x, exact, model = case
    m = rt.load(path, backend=backend)
    assert m.backend == backend
    out = np.concatenate([m(x[i : i + 250]) for i in range(0, len(x), 250)])
    assert out.shape == exact.shape and out.dtype == np.float32
    # A flip in an early layer of the 17-layer residual networks reaches the logits through many layers:
    # measured worst 0.11 of the logit scale (avx2 path); their bound is test_export_trace's for ResNets.
    max_error = 0.5 if label.startswith("resnet") else 0.1
    assert_close_to_exact(out, exact, f"{label}/{backend}", min_close=MIN_CLOSE, max_error=max_error)


def test_float16_export(case):
    """``float_dtype="float16"`` stores the float32 export's float tensors rounded to half precision, nothing
    else: the file's tensors are exactly those roundings, and the runtime computes on it exactly what it
    computes on the float32 file with its parameters so rounded. (The accuracy cost of the rounding is
    measured on trained models and real data in docs/FORMAT.md, not here.)"""
    from horq import format as hf

    label, path, x, exact, model = case
    f32, f16 = hf.load(path), hf.load(path.with_name("m16.horq"))
    assert f32.graph_json["nodes"] == f16.graph_json["nodes"]
    rounded = {}
    for name, arr in f32.tensors.items():
        half = f16.tensors[name]
        if arr.dtype == np.uint64:
            assert np.array_equal(half, arr)
        else:
            assert half.dtype == np.float16 and np.array_equal(half, arr.astype(np.float16)), name
        rounded[name] = half.astype(np.float32) if half.dtype == np.float16 else half
    for backend in ("numpy", "native") if HAS_NATIVE else ("numpy",):
        out16 = rt.load(path.with_name("m16.horq"), backend=backend)(x[:200])
        out32 = rt.Model(dataclasses.replace(f32, tensors=rounded), backend=backend)(x[:200])
        assert np.array_equal(out16, out32), f"{label}/{backend}"


def test_auto_backend_reports_itself(case):
    model = rt.load(case[1])
    assert model.backend == ("native" if HAS_NATIVE else "numpy")
    assert model.backend_reason and model.backend in repr(model)
