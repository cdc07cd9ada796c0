"""The native backend runs consecutive core steps in one call (horq.runtime.program.Program with
horq.runtime.native.chain -> horq.kernels.StepChain): the same values as running the program's calls one by one from
Python, the Python callable wherever the core step does not take an input, errors raised as a step alone raises them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import horq.runtime as rt
from horq.nn import HORQConfig, build_model, convert_
from horq.nn.export import export

pytestmark = pytest.mark.skipif(importlib.util.find_spec("horq._core") is None, reason="no native extension")


def _step_by_step(model, x):
    """The program's calls run one by one from Python, as an unchained program runs them."""
    prog = model._program
    env = [None] * (len(prog.calls) + 1)
    env[0] = x
    for fn, out, ins, free in prog.calls:
        env[out] = fn(*[env[i] for i in ins])
        for i in free:
            env[i] = None
    return env[prog.output]


def _resnet(tmp_path, shape, order):
    torch.manual_seed(0)
    model = build_model("resnet18", in_shape=shape, num_classes=7, width=0.25).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    convert_(model, HORQConfig(order=order))
    export(model, tmp_path / "m.horq", input_shape=shape)
    return rt.load(tmp_path / "m.horq", backend="native")


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_chained_resnet_equals_step_by_step(order, batch, threads, tmp_path):
    """A ResNet-18 (float stem with its pool, binary blocks with their residual adds, global pooling, flatten, its
    small classifier) is one chain (but for the stem, where the kernel path runs float convolutions on numpy), and
    its output is the step-by-step output bit for bit."""
    import horq.kernels as kernels
    from horq.runtime.native import FLOAT_CONV_PATHS

    model = _resnet(tmp_path, (3, 64, 64), order)
    ops = [s.op for s in model._steps]
    kinds = [type(r).__name__ for r in model._program.runs]
    assert ops[0] == "conv2d" and "max_pool2d" not in ops and ops[-2:] == ["flatten", "linear"]  # pool in the stem
    stem_in_core = kernels.info()["in_use"] in FLOAT_CONV_PATHS
    assert kinds == (["StepChain"] if stem_in_core else ["tuple", "StepChain", "tuple"])
    assert isinstance(model._program.runs[0 if stem_in_core else 1], kernels.StepChain)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
    with rt.threads.num_threads(threads):
        np.testing.assert_array_equal(model(x), _step_by_step(model, x))


def test_chain_calls_python_where_the_core_step_does_not_take_the_input():
    """A float64 map is not the core step's input: the Python callable runs instead (as the runtime's numpy ops do
    for other dtypes); a float32 one goes to the core step, whose output the Python callable does not produce."""
    from horq.kernels import GlobalAvgPoolStep, StepChain

    seen = []

    def fn(x):
        seen.append(x.dtype)
        return np.full((x.shape[0], x.shape[1], 1, 1), -1.0, x.dtype)

    chain = StepChain([(GlobalAvgPoolStep(), fn, 1, [0], [0]), (GlobalAvgPoolStep(), fn, 2, [1], [])])
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    env = [x, None, None]
    chain(env)
    assert seen == [np.float64, np.float64] and env[0] is None
    np.testing.assert_array_equal(env[2], -np.ones((2, 3, 1, 1)))
    env = [x.astype(np.float32), None, None]
    chain(env)
    assert len(seen) == 2 and env[2].dtype == np.float32
    np.testing.assert_allclose(env[1][..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)


def test_chain_raises_as_its_steps_do():
    """A NaN reaches a chained binary convolution: its ValueError comes out of the chain; bad slots and non-core
    steps are refused."""
    import horq.kernels as kernels

    rng = np.random.default_rng(0)
    pw = kernels.pack_weights(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    conv = kernels.Conv2dLayer(pw, order=1, padding=1)
    chain = kernels.StepChain([(conv.core_step, conv, 1, [0], []), (kernels.GlobalAvgPoolStep(), None, 2, [1], [])])
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    env = [x, None, None]
    chain(env)
    np.testing.assert_array_equal(env[1], conv(x))
    with pytest.raises(ValueError, match="slot"):
        chain([x, None])  # the second step's output slot
    x[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        chain([x, None, None])
    with pytest.raises(TypeError, match="CoreStep"):
        kernels.StepChain([(conv, conv, 1, [0], [])])
    with pytest.raises(ValueError, match="one or two inputs"):
        kernels.StepChain([(conv.core_step, conv, 1, [], [])])


@pytest.mark.parametrize("pool", [None, {"kernel_size": 3, "stride": 2, "padding": 1, "floor": 0.0}])
def test_float_conv_core_step_is_the_layer(pool):
    """FloatConv2d.core_step(shape) computes what the layer's own call does, bit for bit, and takes nothing but a
    C-contiguous float32 map (TypeError on its own; a chain calls Python instead)."""
    import horq.kernels as kernels

    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    layer = kernels.FloatConv2d(w, stride=2, padding=3, bias=rng.standard_normal(8).astype(np.float32), pool=pool)
    step = layer.core_step((3, 40, 40))
    x = rng.standard_normal((2, 3, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(step(x), layer(x))
    with pytest.raises(TypeError, match="float32"):
        step(x.astype(np.float64))
    with pytest.raises(TypeError, match="float32"):
        step(np.asfortranarray(x))
    with pytest.raises(ValueError):
        step(x[:, :2].copy())  # two channels: the core's shape check


def test_pool_flatten_and_linear_core_steps_are_the_layers():
    """MaxPool2d.core_step and FloatLinear.core_step compute what the layers' own calls do, bit for bit; the linear
    step takes at most its max_rows rows (TypeError on its own beyond: a chain calls Python); FlattenStep is a view
    of its input as (N, rest), as numpy's reshape."""
    import horq.kernels as kernels

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    pool = kernels.MaxPool2d(3, 2, padding=1, floor=rng.standard_normal(5).astype(np.float32))
    np.testing.assert_array_equal(pool.core_step((5, 9, 11))(x), pool(x))
    flat = kernels.FlattenStep()(x)
    assert flat.shape == (2, 5 * 9 * 11) and np.shares_memory(flat, x)
    np.testing.assert_array_equal(flat, x.reshape(2, -1))
    w = rng.standard_normal((300, 495)).astype(np.float32)
    lin = kernels.FloatLinear(w, bias=rng.standard_normal(300).astype(np.float32), floor=0.0)
    step = lin.core_step(3)
    np.testing.assert_array_equal(step(flat), lin(flat))
    with pytest.raises(TypeError, match="rows"):
        step(np.concatenate([flat, flat]))  # 4 rows > 3


def test_chained_vgg_and_mnist_models_equal_step_by_step(tmp_path):
    """Zoo models with core max pools between binary layers, a flatten, numpy steps between core steps (mnist-cnn's
    affine and relu around its binary linear layer): the same outputs chained as step by step, at batches on both
    sides of the float linear step's row bound."""
    from horq.runtime.native import FLOAT_LINEAR_MAX_ROWS

    for name, shape in (("cifar-vgg", (3, 32, 32)), ("mnist-cnn", (1, 28, 28))):
        torch.manual_seed(0)
        model = build_model(name, in_shape=shape, num_classes=10).eval()
        convert_(model, HORQConfig(order=2))
        export(model, tmp_path / f"{name}.horq", input_shape=shape)
        rtm = rt.load(tmp_path / f"{name}.horq", backend="native")
        assert any(type(r).__name__ == "StepChain" for r in rtm._program.runs)
        for batch in (1, FLOAT_LINEAR_MAX_ROWS + 1):
            x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
            np.testing.assert_array_equal(rtm(x), _step_by_step(rtm, x))


@pytest.mark.parametrize("batch", [1, 17])
def test_chained_float_linear_hands_large_batches_to_python(batch, tmp_path, monkeypatch):
    """A float network whose every step is a core step (convolution, flatten, a large linear layer: on the paths
    that run float layers in the core, forced here) is one chain; at more rows than the core linear step takes, the
    chain runs the step's Python function (numpy's product): the same outputs as step by step either way."""
    import horq.kernels as kernels
    from horq.runtime.native import FLOAT_CONV_PATHS, FLOAT_LINEAR_MAX_ROWS

    paths = [p for p in kernels.info()["available"] if p in FLOAT_CONV_PATHS]
    if not paths:
        pytest.skip("this CPU has no kernel path that runs float layers in the core")
    monkeypatch.setenv(kernels.KERNEL_ENV, paths[-1])
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 16 * 16, 64)).eval()
    export(model, tmp_path / "f.horq", input_shape=(3, 16, 16))
    rtm = rt.load(tmp_path / "f.horq", backend="native")
    assert [type(r).__name__ for r in rtm._program.runs] == ["StepChain"]
    assert (batch > FLOAT_LINEAR_MAX_ROWS) == (batch == 17)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(rtm(x), _step_by_step(rtm, x))


def test_chained_model_called_from_several_threads(tmp_path):
    """Python threads calling one native model at once (the kernels release the GIL; their jobs from several callers
    run one at a time): every output is the single-threaded caller's, bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    model = _resnet(tmp_path, (3, 32, 32), 2)
    xs = [np.random.default_rng(i).standard_normal((1 + i % 3, 3, 32, 32)).astype(np.float32) for i in range(8)]
    want = [model(x) for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: model(xs[i % 8]), range(48)))
    for i, y in enumerate(got):
        np.testing.assert_array_equal(y, want[i % 8])


def test_chain_reuses_a_step_output_only_when_nobody_holds_it(tmp_path):
    """A chained step writes into its previous output array again only when the chain and the caller have let go of
    it (csrc/bindings.cpp OutputCache): an output the caller keeps, or a view of it, is never written over."""
    model = _resnet(tmp_path, (3, 32, 32), 1)
    rng = np.random.default_rng(5)
    x1, x2 = (rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(2))
    want1, want2 = _step_by_step(model, x1), _step_by_step(model, x2)
    assert not np.array_equal(want1, want2)
    y1 = model(x1)
    y2 = model(x2)  # y1 still held: a new array
    assert y2.ctypes.data != y1.ctypes.data
    np.testing.assert_array_equal(y1, want1)
    np.testing.assert_array_equal(y2, want2)
    at = y2.ctypes.data
    del y2
    y3 = model(x1)  # y2's array, let go of: written again
    assert y3.ctypes.data == at
    np.testing.assert_array_equal(y3, want1)
    view = y3[0]
    del y3
    y4 = model(x2)  # the view holds y3's array
    assert y4.ctypes.data != at
    np.testing.assert_array_equal(view, want1[0])
    np.testing.assert_array_equal(y4, want2)
    np.testing.assert_array_equal(y1, want1)
