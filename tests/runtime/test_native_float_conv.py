"""The native backend runs small float convolutions (first layers; grouped ones at any width) in the core
(horq.runtime.native.float_conv_step -> horq.kernels.FloatConv2d) with the epilogue and floor the numpy op would
apply, and leaves the others to numpy's im2col + BLAS; so with large float linear layers at small batches
(float_linear_step -> horq.kernels.FloatLinear); results stay the reference's to float rounding."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import horq.runtime as rt
from horq.nn.export import export
from horq.runtime import native

pytestmark = pytest.mark.skipif(importlib.util.find_spec("horq._core") is None, reason="no native extension")


def _bn(c, seed, kind=nn.BatchNorm2d, negative=False):
    """A BatchNorm with random statistics and affine (some negative scales with ``negative``)."""
    g = torch.Generator().manual_seed(seed)
    bn = kind(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g) if negative else torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g))
    return bn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), _bn(8, 1), nn.ReLU(),  # field 147, 20 wide: core
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),  # field 72: core, relu as its floor
        nn.Conv2d(16, 40, 3, padding=1),  # field 144: core, no floor
        nn.Conv2d(40, 24, 1),  # a 1x1 over 40 > FLOAT_CONV_1X1_MAX_FIELD channels: numpy
        nn.Conv2d(24, 40, 1),  # over 24: core
        nn.Conv2d(40, 8, 4, stride=2, padding=1),  # field 640 > FLOAT_CONV_MAX_FIELD: numpy
        nn.Conv2d(8, 4, 3, padding=1),  # 10 wide < FLOAT_CONV_MIN_WIDTH: numpy
        nn.Flatten(), nn.Linear(4 * 10 * 10, 3),
    ).eval()


def _counted_run(model, x, layer: str, tmp_path, monkeypatch):
    """``model`` exported and run on ``x`` by the native backend with ``horq.kernels.<layer>`` counting its calls
    (their weight shapes), checked against the reference and numpy backends to float rounding; returns the calls and
    the native model."""
    import horq.kernels as kernels

    export(model, tmp_path / "m.horq", input_shape=x.shape[1:])
    calls = []

    class Counting(getattr(kernels, layer)):
        def __call__(self, x):
            calls.append(self.weight.shape)
            return super().__call__(x)

        def core_step(self, in_shape):  # no core step: a program calls the layer from Python, where it is counted
            return None

    monkeypatch.setattr(kernels, layer, Counting)
    fast = rt.load(tmp_path / "m.horq", backend="native")
    plain, ref = rt.load(tmp_path / "m.horq", backend="numpy"), rt.load(tmp_path / "m.horq", backend="reference")
    out, exact = fast(x), ref(x)
    np.testing.assert_allclose(out, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    np.testing.assert_allclose(out, plain(x), rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    return calls, fast


def _grouped_model():
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), _bn(6, 3), nn.ReLU(),  # depthwise: core
        nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=3), nn.ReLU(),  # 3 groups, 6 wide: core (grouped)
        nn.Conv2d(12, 8, 3, padding=1, groups=4), nn.ReLU(), nn.MaxPool2d(2),  # 4 groups, its pool fused: core
        nn.Conv2d(8, 8, 3, padding=1),  # 3 wide, groups 1: numpy
        nn.Conv2d(8, 132, 1, groups=4),  # a grouped 1x1 over 2 channels a group: core
        nn.Conv2d(132, 8, 1, groups=2),  # over 66: numpy
        nn.Flatten(), nn.Linear(8 * 3 * 3, 3),
    ).eval()


# (model, input shape, its conv2d steps, the weight shapes of those the core runs)
FLOAT_CONV_MODELS = {
    "plain": (_model, (3, 40, 40), 7, [(8, 3, 7, 7), (16, 8, 3, 3), (40, 16, 3, 3), (40, 24, 1, 1)]),
    "grouped": (_grouped_model, (6, 12, 13), 6, [(6, 1, 3, 3), (12, 2, 3, 3), (8, 3, 3, 3), (132, 2, 1, 1)]),
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("path", [None, "generic"])
@pytest.mark.parametrize("name", sorted(FLOAT_CONV_MODELS))
def test_small_float_convs_run_in_the_core(name, batch, path, tmp_path, monkeypatch):
    """On the avx2 and avx512 paths (the one in use by default, or forced); on the portable path (forced with
    HORQ_KERNEL, as on a non-x86 CPU) numpy's BLAS is faster and keeps every float convolution, and so it does for 1x1
    ones over more than FLOAT_CONV_1X1_MAX_FIELD channels a group. Grouped and depthwise ones run in the core at any
    width (numpy's op is an im2col copy and a matmul per group), their BatchNorm folded, the relu their floor, a
    following pool fused."""
    import horq.kernels as kernels

    if path is not None:
        monkeypatch.setenv(kernels.KERNEL_ENV, path)
    in_core = kernels.info()["in_use"] in native.FLOAT_CONV_PATHS
    model, shape, convs, core_calls = FLOAT_CONV_MODELS[name]
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
    calls, fast = _counted_run(model(), x, "FloatConv2d", tmp_path, monkeypatch)
    ops = [s.op for s in fast._steps]
    assert ops.count("conv2d") == convs and "relu" not in ops and "max_pool2d" not in ops
    assert calls == (core_calls if in_core else [])


def _classifier_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(300, 256), _bn(256, 2, nn.BatchNorm1d, negative=True), nn.ReLU(),  # 76,800 weights: core,
        # the BatchNorm folded into it (negative scales too), the relu its floor
        nn.Linear(256, 200),  # a smaller layer: the core too
    ).eval()


@pytest.mark.parametrize("batch", [1, native.FLOAT_LINEAR_MAX_ROWS, native.FLOAT_LINEAR_MAX_ROWS + 1])
@pytest.mark.parametrize("path", [None, "generic"])
def test_float_linear_layers_run_in_the_core(batch, path, tmp_path, monkeypatch):
    """Float linear layers at up to FLOAT_LINEAR_MAX_ROWS rows run in the core on the avx2 and avx512 paths
    (horq.kernels.FloatLinear), large and small, more rows on numpy; the values stay the reference's to float
    rounding either way."""
    import horq.kernels as kernels

    if path is not None:
        monkeypatch.setenv(kernels.KERNEL_ENV, path)
    in_core = kernels.info()["in_use"] in native.FLOAT_CONV_PATHS and batch <= native.FLOAT_LINEAR_MAX_ROWS
    x = np.random.default_rng(batch).standard_normal((batch, 300)).astype(np.float32)
    calls, _ = _counted_run(_classifier_model(), x, "FloatLinear", tmp_path, monkeypatch)
    assert calls == ([(256, 300), (200, 256)] if in_core else [])


@pytest.mark.parametrize("path", [None, "generic"])
def test_order0_linear_layers_run_in_the_core(path, tmp_path, monkeypatch):
    """An order-0 binary linear layer (binary weights, real inputs) is a float product with the signs unpacked: the
    same core call as a float one, to float rounding of the reference."""
    import horq.kernels as kernels
    from horq.nn import HORQLinear

    if path is not None:
        monkeypatch.setenv(kernels.KERNEL_ENV, path)
    in_core = kernels.info()["in_use"] in native.FLOAT_CONV_PATHS
    torch.manual_seed(3)
    model = nn.Sequential(HORQLinear(300, 256, order=0), nn.ReLU(), nn.Linear(256, 10)).eval()
    x = np.random.default_rng(4).standard_normal((2, 300)).astype(np.float32)
    calls, _ = _counted_run(model, x, "FloatLinear", tmp_path, monkeypatch)
    assert calls == ([(256, 300), (10, 256)] if in_core else [])
