"""Each op, exported from a one- or two-module PyTorch model, against PyTorch on awkward sizes, on every
backend; BatchNorm folding; residual blocks; input validation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import horq.runtime as rt
from horq.nn import HORQConv2d, HORQLinear
from horq.nn.export import Residual, export

HAS_NATIVE = importlib.util.find_spec("horq._core") is not None
BACKENDS = ["reference", "numpy", pytest.param("native", marks=pytest.mark.skipif(not HAS_NATIVE, reason="no native"))]


def _bn(c, seed, dim=2):
    g = torch.Generator().manual_seed(seed)
    bn = (nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d)(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return bn


def _check(model, in_shape, backend, tmp_path, *, n=3, seed=0, rtol=1e-5):
    torch.manual_seed(seed)
    model = model.eval()
    export(model, tmp_path / "m.horq", input_shape=in_shape)
    x = torch.randn(n, *in_shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        ref = model(x).numpy()
    out = rt.load(tmp_path / "m.horq", backend=backend)(x.numpy())
    # One layer on the very same input: only float rounding differs (1e-6 relative); no bit can flip
    # except for a value within rounding of a threshold, which fixed seeds avoid.
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * float(np.abs(ref).max()))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [None, 0, 1, 2, 3])
@pytest.mark.parametrize(("cin", "cout", "k", "stride", "padding", "dilation", "hw"), [
    (7, 5, 3, 1, 1, 1, (6, 7)),       # n = 63
    (1, 3, 8, 2, 3, 1, (9, 9)),       # n = 64, stride 2, padding wider than one
    (13, 4, 5, 2, 2, 1, (11, 8)),     # n = 325, odd channels, stride 2
    (5, 2, 3, 1, 2, 2, (7, 7)),       # dilation 2
])
def test_conv2d(backend, order, cin, cout, k, stride, padding, dilation, hw, tmp_path):
    cls = nn.Conv2d if order is None else HORQConv2d
    kwargs = {} if order is None else {"order": order}
    torch.manual_seed(cin * 31 + k)
    conv = cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, **kwargs)
    _check(nn.Sequential(conv), (cin,) + hw, backend, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [None, 0, 1, 2, 3])
@pytest.mark.parametrize("n_in", [1, 65, 511])
def test_linear(backend, order, n_in, tmp_path):
    torch.manual_seed(n_in)
    lin = nn.Linear(n_in, 6) if order is None else HORQLinear(n_in, 6, order=order)
    _check(nn.Sequential(lin), (n_in,), backend, tmp_path, n=1 if n_in == 511 else 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("module", [
    nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(2, stride=1, dilation=2),
    nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1),
    nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d((1, 1)), nn.ReLU(), nn.Hardtanh(), nn.Hardtanh(-0.5, 2.0),
    nn.Flatten(), nn.Identity(), nn.Dropout(0.5),
], ids=repr)
def test_parameterless_ops(backend, module, tmp_path):
    model = nn.Sequential(module, nn.Flatten()) if not isinstance(module, nn.Flatten) else nn.Sequential(module)
    _check(model, (3, 7, 9), backend, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("module", "in_shape"), [
    (nn.MaxPool2d(2), (3, 6, 8)), (nn.MaxPool2d(3), (2, 9, 6)), (nn.MaxPool2d((1, 2)), (2, 3, 4)),
    (nn.MaxPool2d((3, 1)), (2, 6, 5)), (nn.MaxPool2d(1), (2, 3, 3)),
], ids=repr)
def test_max_pool_over_exact_tiles(backend, module, in_shape, tmp_path):
    """Windows that tile the input exactly (rows then columns in horq.runtime.ops)."""
    _check(nn.Sequential(module, nn.Flatten()), in_shape, backend, tmp_path)


def test_separable_max_pool_geometries():
    """The separable max-pool (padding skipped, not filled) equals PyTorch's, bit for bit, on every kernel,
    stride, padding, dilation and ceil_mode combination on odd and even sizes; with a floor (a fused relu, or
    per-channel relu + affine values) it is max(pool, floor)."""
    import itertools
    from types import SimpleNamespace

    from horq.runtime import ops

    rng = np.random.default_rng(0)
    count = 0
    for k, s, p, d, h, w, ceil in itertools.product([1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2], [5, 8], [6, 7],
                                                     [False, True]):
        if p > k // 2 or (k - 1) * d + 1 > min(h, w) + 2 * p:
            continue
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        ref = nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode=ceil).numpy()
        node = SimpleNamespace(attrs={"kernel": (k, k), "stride": (s, s), "padding": (p, p), "dilation": (d, d)},
                               out_shape=ref.shape[1:])
        np.testing.assert_array_equal(ops.max_pool2d(node, {}, x), ref)
        np.testing.assert_array_equal(ops.max_pool2d(node, {"floor": np.float32(0)}, x), np.maximum(ref, 0))
        floor = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
        out = ops.max_pool2d(node, {"floor": floor}, x)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, np.maximum(ref, floor))
        count += 1
    assert count > 300


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_folds_and_affines(backend, tmp_path):
    """conv->BN (folded), BN->binary conv (affine node), binary conv->BN (output scale/shift), BN->linear
    (folded), linear->BN1d (folded), and a BN alone (affine)."""
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), _bn(6, 1), nn.ReLU(), _bn(6, 2),
        HORQConv2d(6, 6, 3, padding=1, order=2), _bn(6, 3), nn.MaxPool2d(2), nn.Hardtanh(),
        _bn(6, 4), nn.Flatten(), _bn(6 * 4 * 4, 5, dim=1), nn.Linear(96, 12), _bn(12, 6, dim=1),
        HORQLinear(12, 10, order=3), _bn(10, 7, dim=1),
    )
    _check(model, (3, 8, 8), backend, tmp_path, rtol=2e-5)
    from horq import format as hf

    ops = [n.op for n in hf.load(tmp_path / "m.horq").graph.nodes]
    assert ops == ["conv2d", "relu", "affine", "binary_conv2d", "max_pool2d", "hardtanh", "affine", "flatten",
                   "linear", "binary_linear"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_blocks(backend, tmp_path):
    body = nn.Sequential(_bn(4, 1), HORQConv2d(4, 4, 3, padding=1, order=2), nn.ReLU())
    down = Residual(nn.Sequential(_bn(4, 2), HORQConv2d(4, 8, 3, stride=2, padding=1, order=1)),
                    shortcut=nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(4, 8, 1)))
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), Residual(body), down, nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    _check(model, (2, 8, 8), backend, tmp_path)
    from horq import format as hf

    g = hf.load(tmp_path / "m.horq").graph
    adds = [n for n in g.nodes if n.op == "add"]
    assert [a.name for a in adds] == ["1.add", "2.add"] and adds[0].inputs == ("1.body.2", "0")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from horq_files import tiny_model

    from horq import format as hf

    path = tmp_path_factory.mktemp("tiny") / "tiny.horq"
    hf.save(path, *tiny_model())
    return path


@pytest.mark.parametrize("backend", ["reference", "numpy", "auto"])
@pytest.mark.parametrize(("x", "match"), [
    (np.zeros((2, 2, 6, 5), np.float32), "shape"),
    (np.zeros((2, 6, 6), np.float32), "shape"),
    (np.zeros((0, 2, 6, 6), np.float32), "empty"),
    (np.zeros((2, 2, 6, 6), np.float64), "float32"),
    (np.zeros((2, 2, 6, 6), np.int32), "float32"),
    ([[0.0]], "numpy array"),
    (np.full((2, 2, 6, 6), np.nan, np.float32), "NaN"),
    (np.where(np.eye(6, dtype=bool), np.inf, 0).astype(np.float32)[None, None].repeat(2, 1), "Inf"),
    (np.pad(np.zeros(143, np.float32), (0, 1), constant_values=-np.inf).reshape(2, 2, 6, 6), "Inf"),
], ids=["width", "rank", "empty", "float64", "int32", "list", "nan", "inf", "last value -inf"])
def test_bad_inputs(tiny, backend, x, match):
    model = rt.load(tiny, backend=backend)
    with pytest.raises(ValueError, match=match):
        model(x)


def test_tiny_model_all_backends_agree(tiny):
    x = np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32)
    exact = rt.load(tiny, backend="reference")(x)
    for backend in ["numpy"] + (["native"] if HAS_NATIVE else []):
        np.testing.assert_allclose(rt.load(tiny, backend=backend)(x), exact, rtol=1e-5, atol=1e-5)
    assert rt.load(tiny).predict(x, batch_size=2).shape == (5,)


@pytest.mark.parametrize("backend", ["reference", "numpy", pytest.param("native", marks=pytest.mark.skipif(
    not HAS_NATIVE, reason="native extension not built"))])
def test_float16_storage_runs_as_float32(tmp_path, backend):
    """Stored as F16, parameters must give exactly the outputs of a float32 file holding the same (rounded)
    values, on every backend: the runtime upcasts them and nothing else changes."""
    from horq_files import tiny_model

    from horq import format as hf

    graph, tensors = tiny_model()
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
    tensors = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half.items()}
    hf.save(tmp_path / "f32.horq", graph, tensors)
    hf.save(tmp_path / "f16.horq", graph, half)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    out16 = rt.load(tmp_path / "f16.horq", backend=backend)(x)
    np.testing.assert_array_equal(out16, rt.load(tmp_path / "f32.horq", backend=backend)(x))


def test_reference_activations_are_float64(tiny):
    """The oracle computes in float64 from the first layer on; only the returned output is float32."""
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    ref, fast = rt.load(tiny, backend="reference"), rt.load(tiny, backend="numpy")
    assert ref._program(x).dtype == np.float64 and ref(x).dtype == np.float32
    assert fast._program(x).dtype == np.float32


def test_unknown_backend(tiny):
    with pytest.raises(ValueError, match="backend"):
        rt.load(tiny, backend="cuda")


def test_auto_falls_back_to_numpy_with_a_reason(tiny, monkeypatch):
    from horq.runtime import native

    def missing():
        raise ImportError("No module named 'horq._core'")

    monkeypatch.setattr(native, "import_kernels", missing)
    model = rt.load(tiny)
    assert model.backend == "numpy" and "horq._core" in model.backend_reason and "fell back" in repr(model)
    with pytest.raises(ImportError, match="native backend unavailable"):
        rt.load(tiny, backend="native")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("module", [
    nn.LeakyReLU(), nn.LeakyReLU(0.3), nn.ReLU6(), nn.PReLU(), nn.PReLU(3), nn.Dropout2d(0.5),
], ids=repr)
def test_activations_of_version_3(backend, module, tmp_path):
    if isinstance(module, nn.PReLU):
        with torch.no_grad():
            module.weight.copy_(torch.linspace(-0.5, 0.7, module.weight.numel()))
    _check(nn.Sequential(module, nn.Flatten()), (3, 7, 9), backend, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cin", "cout", "groups", "k", "stride", "padding", "dilation"), [
    (4, 6, 2, 3, 1, 1, 1), (6, 6, 6, 3, 2, 1, 1), (6, 3, 3, 1, 1, 0, 1), (4, 8, 4, 3, 1, 2, 2),
])
def test_grouped_conv2d(backend, cin, cout, groups, k, stride, padding, dilation, tmp_path):
    """Grouped convolutions (depthwise too) run as a float op: one matmul per group."""
    torch.manual_seed(cin + groups)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
    _check(nn.Sequential(conv, _bn(cout, 3)), (cin, 7, 6), backend, tmp_path)
    from horq import format as hf

    f = hf.load(tmp_path / "m.horq")
    assert f.version == 3 and f.graph.nodes[0].attrs["groups"] == groups


@pytest.mark.parametrize(("groups", "rows", "per", "cols"), [
    (1, 5, 7, 9), (2, 3, 18, 42), (3, 1, 1, 1), (64, 1, 9, 33), (65, 2, 9, 1), (4, 16, 12, 70),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_matmul_is_the_per_group_products(groups, rows, per, cols, dtype):
    """One batched matmul over the groups: group g's filters read the g-th block of column rows only."""
    from horq.runtime.ops import grouped_matmul

    rng = np.random.default_rng(groups * 100 + per)
    w = rng.standard_normal((groups * rows, per)).astype(dtype)
    c = rng.standard_normal((groups * per, cols)).astype(dtype)
    got = grouped_matmul(w, c, groups)
    assert got.shape == (groups * rows, cols) and got.dtype == dtype
    blocks = [(w[g * rows : (g + 1) * rows].astype(np.float64), c[g * per : (g + 1) * per]) for g in range(groups)]
    want = np.concatenate([a @ b for a, b in blocks])
    scale = np.concatenate([np.abs(a) @ np.abs(b) for a, b in blocks])
    assert np.all(np.abs(got - want) <= 1e-6 * scale)
    with pytest.raises(ValueError):  # column rows that do not split into the groups' blocks
        grouped_matmul(w, c[:-1], groups)


class _Dense(nn.Module):
    """Concatenation along channels, with fan-out (x is read by the conv and by the concat) and a tensor
    concatenated twice."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.bn = _bn(7, 4)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.bn(torch.cat([x, y, y], dim=1)).flatten(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concat(backend, tmp_path):
    _check(_Dense(), (3, 5, 4), backend, tmp_path)
    from horq import format as hf

    g = hf.load(tmp_path / "m.horq").graph
    assert [n.op for n in g.nodes] == ["conv2d", "relu", "concat", "affine", "flatten"]
    assert g.nodes[2].inputs == ("input", "relu", "relu") and g.nodes[2].out_shape == (7, 5, 4)
