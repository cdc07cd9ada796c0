"""horq.runtime.fuse: the load-time rewrites fire where they may, never where they may not, and leave the
results equal to the reference backend's (which runs the graph as written) to float rounding."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import horq.runtime as rt
from horq import format as hf
from horq.nn import HORQConv2d
from horq.nn.export import export

HAS_NATIVE = importlib.util.find_spec("horq._core") is not None
FAST = ["numpy", pytest.param("native", marks=pytest.mark.skipif(not HAS_NATIVE, reason="no native"))]


def _bn(c, seed, *, negative=False):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        if negative:
            bn.weight[0] = -0.7
        bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return bn


def _vgg_block(negative=False):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _bn(8, 1),  # float layer -> relu -> affine
        HORQConv2d(8, 8, 3, padding=1, order=2), nn.MaxPool2d(2), nn.ReLU(), _bn(8, 2, negative=negative),
        HORQConv2d(8, 4, 3, padding=1, order=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    ).eval()


def _ops(model):
    return [s.op for s in model._steps]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("batch", [1, 5])
def test_relu_affine_fold_into_the_layer(backend, batch, tmp_path):
    export(_vgg_block(), tmp_path / "m.horq", input_shape=(3, 8, 8))
    fast, ref = rt.load(tmp_path / "m.horq", backend=backend), rt.load(tmp_path / "m.horq", backend="reference")
    assert _ops(fast) == ["conv2d", "floor", "binary_conv2d", "max_pool2d", "floor", "binary_conv2d", "relu",
                          "flatten", "linear"]
    assert "floor" not in _ops(ref)
    x = np.random.default_rng(0).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    x0 = x.copy()
    out, exact = fast(x), ref(x)
    np.testing.assert_array_equal(x, x0)  # the caller's array is never written
    # Rounding of the composed epilogue only (~1e-6 relative); a flip at a quantization threshold would
    # show as a larger error in a few samples: tolerated like tests/runtime/test_end_to_end.py.
    assert np.median(np.abs(out - exact)) <= 1e-5 * np.abs(exact).max()


@pytest.mark.parametrize("backend", FAST)
def test_negative_batchnorm_scale_is_not_fused(backend, tmp_path):
    export(_vgg_block(negative=True), tmp_path / "m.horq", input_shape=(3, 8, 8))
    fast = rt.load(tmp_path / "m.horq", backend=backend)
    assert _ops(fast)[2:7] == ["binary_conv2d", "max_pool2d", "relu", "affine", "binary_conv2d"]
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    exact = rt.load(tmp_path / "m.horq", backend="reference")(x)
    assert np.median(np.abs(fast(x) - exact)) <= 1e-5 * np.abs(exact).max()


def _aliased_graph():
    """c -> flatten f1 -> relu r; c -> flatten f2; add(r, f2): r may not overwrite c, which f2 still views;
    and a relu reading the graph input may not overwrite the caller's array."""
    w = (np.arange(4 * 2 * 3 * 3) % 7 - 3).astype(np.float32).reshape(4, 2, 3, 3) / 4
    tensors = {"c.weight": w,
               "a.scale": np.array([1.0, 2.0, 0.5, 1.5], np.float32), "a.shift": np.zeros(4, np.float32)}
    nodes = [
        {"name": "r0", "op": "relu", "inputs": ["input"]},
        {"name": "c", "op": "conv2d", "inputs": ["r0"], "tensors": {"weight": "c.weight"}},
        {"name": "a", "op": "affine", "inputs": ["c"], "tensors": {"scale": "a.scale", "shift": "a.shift"}},
        {"name": "f1", "op": "flatten", "inputs": ["a"]},
        {"name": "r", "op": "relu", "inputs": ["f1"]},
        {"name": "f2", "op": "flatten", "inputs": ["a"]},
        {"name": "add", "op": "add", "inputs": ["r", "f2"]},
    ]
    return {"input": {"shape": [2, 5, 5]}, "nodes": nodes, "output": "add"}, tensors


def test_no_in_place_write_over_a_live_view(tmp_path):
    graph, tensors = _aliased_graph()
    hf.save(tmp_path / "m.horq", graph, tensors)
    model = rt.load(tmp_path / "m.horq", backend="numpy")
    flags = {s.name: s.params.get("in_place", False) for s in model._steps}
    assert flags == {"r0": False, "c": False, "a": True, "f1": False, "r": False, "f2": False, "add": False}
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 5)).astype(np.float32)
    x0 = x.copy()
    np.testing.assert_allclose(model(x), rt.load(tmp_path / "m.horq", backend="reference")(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, x0)
