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
from horq.nn import HORQConv2d, HORQLinear
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


#: The steps of _vgg_block on every fast backend: max_pool2d takes the floor (relu + affine) after it, and a
#: layer takes the floor or relu after it (numpy-run layers after their epilogue, native binary convolutions
#: as they store their output: ``out_floor``).
VGG_BLOCK_PLAN = ["conv2d", "binary_conv2d", "max_pool2d", "binary_conv2d", "flatten", "linear"]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("batch", [1, 5])
def test_relu_affine_fold_into_the_layer(backend, batch, tmp_path):
    export(_vgg_block(), tmp_path / "m.horq", input_shape=(3, 8, 8))
    fast, ref = rt.load(tmp_path / "m.horq", backend=backend), rt.load(tmp_path / "m.horq", backend="reference")
    assert _ops(fast) == VGG_BLOCK_PLAN
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
    # Not into the first conv's epilogue (the scale is negative) -- the pool takes the relu; on the native
    # backend the second conv applies the affine to its input while packing it (fuse._fuse_input_affines).
    want = ["binary_conv2d", "max_pool2d", "affine", "binary_conv2d"]
    if backend == "native":
        want.remove("affine")
        after_pool = fast._steps[_ops(fast).index("max_pool2d") + 1]
        assert (after_pool.params["in_scale"] < 0).any()
    assert _ops(fast)[1:1 + len(want)] == want
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
    # add writes over r (an array of its own, read by nothing later), never over f2 (a view of c)
    assert flags == {"r0": False, "c": False, "a": True, "f1": False, "r": False, "f2": False, "add": 0}
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 5)).astype(np.float32)
    x0 = x.copy()
    np.testing.assert_allclose(model(x), rt.load(tmp_path / "m.horq", backend="reference")(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, x0)


class _Handwritten(nn.Module):
    """_vgg_block's modules called from a handwritten forward, functional ops in between."""

    def __init__(self, block):
        super().__init__()
        self.b = block

    def forward(self, x):
        b = self.b
        x = b[2](torch.relu(b[0](x)))
        x = b[6](nn.functional.relu(nn.functional.max_pool2d(b[3](x), 2)))
        x = b[7](x).relu()
        return b[10](x.view(x.size(0), -1))


@pytest.mark.parametrize("backend", FAST)
def test_fusion_on_a_traced_forward(backend, tmp_path):
    """The same plan as from nn.Sequential: the epilogue fusion sees a graph, not how it was written."""
    export(_Handwritten(_vgg_block()).eval(), tmp_path / "m.horq", input_shape=(3, 8, 8))
    fast, ref = rt.load(tmp_path / "m.horq", backend=backend), rt.load(tmp_path / "m.horq", backend="reference")
    assert _ops(fast) == VGG_BLOCK_PLAN
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    exact = ref(x)
    assert np.median(np.abs(fast(x) - exact)) <= 1e-5 * np.abs(exact).max()


def _dag_graph():
    """Fan-out, a late reader, a three-way concat and a residual add: c is read by r1, a and the concat;
    r1 by the concat and the add."""
    rng = np.random.default_rng(0)
    tensors = {"c.weight": (rng.integers(-4, 5, (4, 2, 3, 3)) / 8).astype(np.float32),
               "a.scale": np.array([1.0, -2.0, 0.5, 1.5], np.float32), "a.shift": np.full(4, 0.25, np.float32),
               "c2.weight": (rng.integers(-4, 5, (4, 12, 1, 1)) / 8).astype(np.float32)}
    nodes = [
        {"name": "c", "op": "conv2d", "inputs": ["input"], "attrs": {"padding": 1}, "tensors": {"weight": "c.weight"}},
        {"name": "r1", "op": "relu", "inputs": ["c"]},
        {"name": "a", "op": "affine", "inputs": ["c"], "tensors": {"scale": "a.scale", "shift": "a.shift"}},
        {"name": "cat", "op": "concat", "inputs": ["r1", "c", "a"]},
        {"name": "h", "op": "hardtanh", "inputs": ["cat"]},
        {"name": "c2", "op": "conv2d", "inputs": ["h"], "tensors": {"weight": "c2.weight"}},
        {"name": "s", "op": "add", "inputs": ["c2", "r1"]},
        {"name": "l", "op": "leaky_relu", "inputs": ["s"], "attrs": {"negative_slope": 0.125}},
        {"name": "g", "op": "global_avg_pool", "inputs": ["l"]},
        {"name": "f", "op": "flatten", "inputs": ["g"]},
    ]
    return {"input": {"shape": [2, 5, 5]}, "nodes": nodes, "output": "f"}, tensors


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_dag_frees_after_the_last_reader(backend, tmp_path):
    """Each intermediate is dropped by the step that reads it last (never before, never kept), nothing
    still read is overwritten in place, and the DAG computes what the reference computes."""
    hf.save(tmp_path / "m.horq", *_dag_graph())
    model = rt.load(tmp_path / "m.horq", backend=backend)
    steps = model._steps
    last = {}
    for i, s in enumerate(steps):
        for ref in s.inputs:
            last[ref] = i
    freed = [ref for s in steps for ref in s.free]
    assert sorted(freed) == sorted(set(last) - {"f"}) and len(freed) == len(set(freed))  # each exactly once
    for i, s in enumerate(steps):
        assert set(s.free) == {r for r in s.inputs if last[r] == i}, s.name
    flags = {s.name: s.params.get("in_place", False) for s in steps}
    assert not flags["r1"] and not flags["a"]  # c is still read by the concat
    assert flags["h"] == (backend == "numpy")  # the concat's output has no other reader
    live, peak = {"input"}, 0
    for s in steps:
        live.add(s.name)
        peak = max(peak, len(live))
        live -= set(s.free)
    assert live == {"f"} and peak <= 5  # the env drops even its reference to the input
    x = np.random.default_rng(1).standard_normal((3, 2, 5, 5)).astype(np.float32)
    x0 = x.copy()
    exact = rt.load(tmp_path / "m.horq", backend="reference")(x)
    np.testing.assert_allclose(model(x), exact, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, x0)
    import horq.reference as R  # the same graph, by hand, in float64

    _, t = _dag_graph()
    cv = R.horq_conv2d(x.astype(np.float64), t["c.weight"].astype(np.float64), order=None, padding=1)
    r1 = np.maximum(cv, 0)
    a = cv * t["a.scale"][None, :, None, None] + t["a.shift"][None, :, None, None]
    h = np.clip(np.concatenate([r1, cv, a], 1), -1, 1)
    s = R.horq_conv2d(h, t["c2.weight"].astype(np.float64), order=None) + r1
    want = np.where(s >= 0, s, 0.125 * s).mean((2, 3))
    np.testing.assert_allclose(exact, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("batch", [1, 3])
def test_resnet_glue_fusions(backend, batch, tmp_path):
    """The zoo ResNet-18 (ImageNet layout, narrow): the stem's max-pool takes its relu and joins the stem
    convolution (one step, named as the pool), each residual add its relu (in place over the body's output), and
    each 1x1 stride-2 shortcut runs at stride 1 on the pixels its affine computed -- on the native backend the
    shortcut convolution takes the affine and subsamples its input itself, and each body's first convolution
    takes the relu (+ BatchNorm) floor after it; the result stays the reference's to float rounding."""
    from agreement import fixed_weights_
    from horq.nn import HORQConfig, build_model, convert_

    model = build_model("resnet18", in_shape=(3, 40, 40), num_classes=4, width=0.125, layout="imagenet")
    convert_(model, HORQConfig(order=2))
    export(fixed_weights_(model, 3).eval(), tmp_path / "r.horq")
    fast, ref = rt.load(tmp_path / "r.horq", backend=backend), rt.load(tmp_path / "r.horq", backend="reference")
    steps = {s.name: s for s in fast._steps}
    stem = steps["3"]
    assert stem.op == "conv2d" and stem.fused == ("0", "2") and "0" not in steps
    assert stem.params["pool"][0].op == "max_pool2d" and stem.params["pool"][1]["floor"] == 0
    adds = [s for s in fast._steps if s.op == "add"]
    # On the native backend a binary convolution read only by the add takes it, floor included (the add's
    # name, two inputs): fuse._fuse_residual_adds.
    took_add = [s for s in fast._steps if s.op == "binary_conv2d" and len(s.inputs) == 2]
    assert len(adds) + len(took_add) == 8 and bool(took_add) == (backend == "native")
    assert all(s.params["floor"] == 0 and s.params["in_place"] == 0 for s in adds)
    assert all((s.params["out_floor"] == 0).all() for s in took_add)
    kinds = {s.name: s.op for s in fast._steps}
    assert not [s for s in fast._steps if s.op == "relu" and kinds.get(s.inputs[0]) in ("add", "max_pool2d")]
    shortcuts = [s for s in fast._steps
                 if s.name.endswith("shortcut.1") or any(f.endswith("shortcut.1") for f in s.fused)]
    assert len(shortcuts) == 3
    if backend == "native":
        assert all(s.node.attrs["stride"] == (2, 2) and "in_scale" in s.params for s in shortcuts)
        assert not [s for s in fast._steps if s.op in ("affine", "floor", "relu")]
        first = [s for s in fast._steps if any(f.endswith(".body.1") for f in s.fused)]
        assert len(first) == 8 and all(s.op == "binary_conv2d" and "out_floor" in s.params for s in first)
    else:
        assert all(s.node.attrs["stride"] == (1, 1) for s in shortcuts)
        assert all(steps[s.inputs[0]].params["subsample"] == (2, 2) for s in shortcuts)
    x = np.random.default_rng(0).standard_normal((batch, 3, 40, 40)).astype(np.float32)
    x0 = x.copy()
    out, exact = fast(x), ref(x)
    np.testing.assert_array_equal(x, x0)
    # float32 rounding; an order-2 threshold flip would move a few samples more (tests/agreement.py)
    assert np.median(np.abs(out - exact)) <= 1e-5 * np.abs(exact).max()


@pytest.mark.parametrize("backend", FAST)
def test_spread_channel_params_change_nothing(backend, tmp_path, monkeypatch):
    """Per-channel affine and floor values spread over small maps at load give bitwise the same outputs."""
    from agreement import fixed_weights_
    from horq import runtime
    from horq.nn import HORQConfig, build_model, convert_

    model = build_model("resnet18", in_shape=(3, 16, 16), num_classes=4, width=0.125)
    convert_(model, HORQConfig(order=1))
    export(fixed_weights_(model, 5).eval(), tmp_path / "r.horq")
    spread = rt.load(tmp_path / "r.horq", backend=backend)
    assert all("scale_map" in s.params for s in spread._steps if s.op == "affine" and not s.params.get("subsample"))
    monkeypatch.setattr(runtime.fuse, "SPREAD_LIMIT", 0)
    plain = rt.load(tmp_path / "r.horq", backend=backend)
    assert not any("scale_map" in s.params for s in plain._steps)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(spread(x), plain(x))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("batch", [1, 3])
def test_pool_fused_into_a_float_conv_changes_no_bit(backend, batch, tmp_path, monkeypatch):
    """fuse._fuse_pools: the stem's convolution and its max-pool as one step give the unfused plan's outputs bit
    for bit (the native backend pools the convolution's rows in the core as they come, kernels.float_conv2d(pool=));
    a convolution read by anything else keeps its own step."""
    from agreement import fixed_weights_
    from horq.nn import HORQConfig, build_model, convert_
    from horq.runtime import fuse

    model = build_model("resnet18", in_shape=(3, 40, 40), num_classes=4, width=0.125, layout="imagenet")
    convert_(model, HORQConfig(order=1))
    export(fixed_weights_(model, 5).eval(), tmp_path / "r.horq")
    fused = rt.load(tmp_path / "r.horq", backend=backend)
    monkeypatch.setattr(fuse, "_fuse_pools", lambda graph, steps: steps)
    unfused = rt.load(tmp_path / "r.horq", backend=backend)
    assert [s.op for s in fused._steps].count("max_pool2d") == 0
    assert [s.op for s in unfused._steps][:2] == ["conv2d", "max_pool2d"]
    x = np.random.default_rng(1).standard_normal((batch, 3, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(fused(x).view(np.uint32), unfused(x).view(np.uint32))


def _bn1d(c, seed):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))  # negative scales too: the input affine takes any sign
        bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return bn


@pytest.mark.skipif(not HAS_NATIVE, reason="no native")
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("batch", [1, 5])
def test_binary_linear_takes_its_input_affine_and_relu(order, batch, tmp_path):
    """A binary MLP's BatchNorm before a binary linear layer and the ReLU after it (and its BatchNorm, in the
    epilogue) run inside the native layer (``LinearLayer(in_scale=, in_shift=, out_floor=)``), no numpy pass
    left between flatten and the classifier; the same results as the reference backend to float rounding."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), _bn1d(48, 1), HORQLinear(48, 32, order=order), _bn1d(32, 2), nn.ReLU(),
                          nn.Linear(32, 3)).eval()
    export(model, tmp_path / "m.horq", input_shape=(3, 4, 4))
    fast = rt.load(tmp_path / "m.horq", backend="native")
    assert _ops(fast) == ["flatten", "binary_linear", "linear"]
    layer = fast._steps[1]
    assert layer.params["in_scale"].shape == (48,) and (layer.params["in_scale"] < 0).any()
    assert (layer.params["out_floor"] == 0).all()
    x = np.random.default_rng(4).standard_normal((batch, 3, 4, 4)).astype(np.float32)
    exact = rt.load(tmp_path / "m.horq", backend="reference")(x)
    assert np.median(np.abs(fast(x) - exact)) <= 1e-5 * np.abs(exact).max()


def _clamped_model():
    """Float layers followed by ReLU6 / Hardtanh (MobileNet-style: a conv, a depthwise conv, a 1x1 conv, a linear
    layer), and binary ones (a convolution, a linear layer)."""
    torch.manual_seed(5)
    first, bconv, blin = nn.Conv2d(3, 8, 3, padding=1), HORQConv2d(16, 8, 3, padding=1, order=2), HORQLinear(32, 10,
                                                                                                          order=1)
    with torch.no_grad():  # outputs beyond the bounds: every ceiling bites (the test checks where it matters)
        first.weight.mul_(8.0)
        bconv.weight.mul_(20.0)
        blin.weight.mul_(20.0)
    return nn.Sequential(
        first, _bn(8, 3), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardtanh(-0.5, 0.75),
        nn.Conv2d(8, 16, 1), nn.Hardtanh(),
        bconv, nn.Hardtanh(),
        nn.Flatten(), nn.Linear(8 * 16 * 16, 32), nn.Hardtanh(-0.3, 0.3),
        blin, nn.Hardtanh(-2.0, 0.5), nn.Linear(10, 3),
    ).eval()


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("batch", [1, 4])
def test_hardtanh_fused_into_layers_changes_no_bit(backend, batch, tmp_path, monkeypatch):
    """A hardtanh (ReLU6 too) after a layer becomes its floor and ceiling (numpy-run layers clip; the core's float
    convolution and linear layer and the native binary layers clamp in their stores): bitwise the unfused plan,
    where the hardtanh op clips."""
    from horq.runtime import fuse

    model = _clamped_model()
    export(model, tmp_path / "m.horq", input_shape=(3, 16, 16))
    fused = rt.load(tmp_path / "m.horq", backend=backend)
    x8 = np.random.default_rng(7).standard_normal((8, 3, 16, 16)).astype(np.float32)
    for end, (lo, hi) in ((3, (0.0, 6.0)), (9, (-1.0, 1.0)), (14, (-2.0, 0.5))):  # the clamps that must bite
        export(model[:end], tmp_path / "part.horq", input_shape=(3, 16, 16))
        y = rt.load(tmp_path / "part.horq", backend=backend)(x8)
        assert y.min() == lo and y.max() == hi and (y == lo).mean() > 0.05 and (y == hi).mean() > 0.05, end
    monkeypatch.setattr(fuse, "_clamp_bounds", lambda node: None)
    unfused = rt.load(tmp_path / "m.horq", backend=backend)
    assert _ops(fused) == ["conv2d", "conv2d", "conv2d", "binary_conv2d", "flatten", "linear", "binary_linear",
                           "linear"]
    assert _ops(unfused) == ["conv2d", "hardtanh"] * 3 + ["binary_conv2d", "hardtanh", "flatten", "linear",
                                                           "hardtanh", "binary_linear", "hardtanh", "linear"]
    assert fused._steps[0].params["ceiling"] == 6.0
    if backend == "native":  # the binary layers' stores
        assert (fused._steps[3].params["out_ceiling"] == 1.0).all() and fused._steps[3].native
        assert (fused._steps[6].params["out_floor"] == -2.0).all() and fused._steps[6].native
    x = np.random.default_rng(6).standard_normal((batch, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(fused(x).view(np.uint32), unfused(x).view(np.uint32))
    exact = rt.load(tmp_path / "m.horq", backend="reference")(x)
    assert np.median(np.abs(fused(x) - exact)) <= 1e-5 * np.abs(exact).max()
