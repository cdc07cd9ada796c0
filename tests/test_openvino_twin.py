"""horq.apps.openvino_twin: OpenVINO's rebuild of an order-1 horq file computes horq's function (the
yardstick times it as the x86 peer's binary network), and its plain form binarizes as the BatchNorm it folds."""

import copy

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
torch = pytest.importorskip("torch")

import horq  # noqa: E402
import horq.runtime as rt  # noqa: E402
from horq import bits as hbits  # noqa: E402
from horq import format as hformat  # noqa: E402
from horq.apps import openvino_twin  # noqa: E402
from horq.nn import HORQConfig, build_model, convert_  # noqa: E402
from horq.runtime.ops import im2col32  # noqa: E402


def _randomize_bn(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(c, generator=gen))
                m.weight[0] = 0.0  # a channel whose binarized sign is its shift's alone
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model


def _export(model, shape, tmp_path, order=1, name="m"):
    torch.manual_seed(0)
    path = tmp_path / f"{name}_o{order}.horq"
    horq.export(convert_(copy.deepcopy(model), HORQConfig(order=order)).eval(), path, input_shape=shape)
    return path


def _infer(hfile, x, beta=True):
    """The twin of hfile on x, compiled as the benchmarks compile it (openvino_twin.infer_request)."""
    return openvino_twin.infer_request(hfile, x.shape[0], beta=beta).infer([x])[0].copy()


# Widths that leave word tails (8-channel multiples only: openvino_twin refuses others), stride-2 3x3 and 1x1
# shortcuts, zero padding at every border, a binary linear layer after a flatten, max pools: the geometries whose
# bits the twin must get as horq does.
MODELS = {
    "resnet18-w0.25": (("resnet18", (3, 20, 20), 7), {"width": 0.25}),
    "mnist-cnn-small": (("mnist-cnn", (1, 12, 12), 5), {"width": 8, "hidden": 40}),
}


@pytest.mark.parametrize("key", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 3])
def test_twin_computes_horq_order1(key, batch, tmp_path):
    (name, shape, classes), kwargs = MODELS[key]
    torch.manual_seed(1)
    model = _randomize_bn(build_model(name, in_shape=shape, num_classes=classes, **kwargs).eval(), 2)
    path = _export(model, shape, tmp_path)
    ops = {n.op for n in hformat.load(path).graph.nodes}
    assert "binary_conv2d" in ops
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
    ref = rt.load(path, backend="numpy")(x)
    out = _infer(hformat.load(path), x)
    assert out.shape == ref.shape
    assert openvino_twin.check(out, ref) < 1e-5
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))


def test_plain_twin_binarizes_the_folded_affine(tmp_path):
    # float conv -> relu -> BatchNorm (a channel of negative scale, one of zero) -> binary conv -> float linear
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(8),
        torch.nn.Conv2d(8, 6, 3, padding=1, stride=2),
        torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 3)).eval()
    _randomize_bn(model, 4)
    with torch.no_grad():
        model[2].weight[1] = -abs(float(model[2].weight[1])) - 0.5
    path = _export(model, (2, 8, 8), tmp_path)
    hfile = hformat.load(path)
    t = rt.compute_tensors(hfile)
    nodes = {n.op: n for n in hfile.graph.nodes}
    conv, affine, bconv, lin = nodes["conv2d"], nodes["affine"], nodes["binary_conv2d"], nodes["linear"]
    scale = t[affine.tensors["scale"]]
    assert (scale < 0).any() and (scale == 0).any()

    x = np.random.default_rng(5).standard_normal((2, 2, 8, 8)).astype(np.float32)
    out = _infer(hfile, x, beta=False)

    # numpy: the float conv, the affine, horq's signs (padding zeros -> +1), the binary conv without betas
    w = t[conv.tensors["weight"]]
    cols = im2col32(x, 3, 3, stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    y = (w.reshape(w.shape[0], -1) @ cols).reshape(8, 2, 8, 8).transpose(1, 0, 2, 3)
    y = np.maximum(y + t[conv.tensors["bias"]].reshape(1, -1, 1, 1), 0)
    a = y * scale.reshape(1, -1, 1, 1) + t[affine.tensors["shift"]].reshape(1, -1, 1, 1)
    signs = hbits.sign(im2col32(a, 3, 3, stride=(2, 2), padding=(1, 1), dilation=(1, 1)))
    wb = hbits.unpack_signs(t[bconv.tensors["bits"]], 8 * 9)
    z = (wb @ signs).reshape(6, 2, 4, 4).transpose(1, 0, 2, 3)
    if "alpha" in bconv.tensors:
        z = z * t[bconv.tensors["alpha"]].reshape(1, -1, 1, 1)
    if "bias" in bconv.tensors:
        z = z + t[bconv.tensors["bias"]].reshape(1, -1, 1, 1)
    ref = z.reshape(2, -1) @ t[lin.tensors["weight"]].T + t[lin.tensors["bias"]]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_twin_refuses_order2_and_channel_tails_and_a_wrong_twin_fails_the_check(tmp_path):
    (name, shape, classes), kwargs = MODELS["mnist-cnn-small"]
    model = build_model(name, in_shape=shape, num_classes=classes, **kwargs).eval()
    with pytest.raises(NotImplementedError, match="order 2"):
        openvino_twin.binary_twin(hformat.load(_export(model, shape, tmp_path, order=2)))
    model = build_model(name, in_shape=shape, num_classes=classes, width=12, hidden=40).eval()
    with pytest.raises(NotImplementedError, match="12 input channels"):
        openvino_twin.binary_twin(hformat.load(_export(model, shape, tmp_path, name="w12")))
    ref = np.array([[1.0, -2.0, 0.5]], np.float32)
    assert openvino_twin.check(ref, ref) == 0.0
    with pytest.raises(AssertionError, match="differs from horq"):
        openvino_twin.check(ref * 1.1, ref)


def test_bench_model_times_the_twin_beside_horq(tmp_path, capsys):
    from horq.apps.bench_model import bench_model, format_bench
    from horq.apps.cli import main

    (name, shape, classes), kwargs = MODELS["resnet18-w0.25"]
    torch.manual_seed(1)
    model = _randomize_bn(build_model(name, in_shape=shape, num_classes=classes, **kwargs).eval(), 2)
    path = _export(model, shape, tmp_path)
    rows = bench_model(path, batches=(1, 2), threads=(1,), repeats=2, warmup=1, openvino=True)
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["ov_ms"] > 0 and r["ov_best_ms"] <= r["ov_ms"] and r["ov_vs_horq"] < 1e-5
        assert r["ov_ratio"] == pytest.approx(r["ov_ms"] / r["horq_ms"])
    text = format_bench(rows)
    assert "OV binary ms" in text.splitlines()[0] and text.splitlines()[0].split()[-1] == "backend"
    assert "OV binary ms" not in format_bench([{k: v for k, v in r.items() if not k.startswith("ov_")} for r in rows])
    # the CLI: the same columns; a file without a twin is a one-line error, before any timing
    assert main(["bench", "model", str(path), "--openvino", "--batch", "1", "--threads", "1", "--repeats", "1",
                 "--warmup", "0"]) == 0
    assert "OV ratio" in capsys.readouterr().out
    two = _export(model, shape, tmp_path, order=2)
    assert main(["bench", "model", str(two), "--openvino", "--batch", "1", "--threads", "1"]) == 2
    assert "--openvino: node" in capsys.readouterr().err


def test_bench_model_says_when_openvino_is_missing(tmp_path, capsys, monkeypatch):
    import sys

    from horq.apps.cli import main

    (name, shape, classes), kwargs = MODELS["mnist-cnn-small"]
    path = _export(build_model(name, in_shape=shape, num_classes=classes, **kwargs).eval(), shape, tmp_path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    assert main(["bench", "model", str(path), "--openvino", "--batch", "1", "--threads", "1"]) == 2
    assert "--openvino: OpenVINO is not installed" in capsys.readouterr().err


class _Branches(torch.nn.Module):
    """Every op of the format around three binary layers: hardtanh, leaky_relu, concat, prelu, avg_pool2d (padding
    not counted), max_pool2d, a 1x1 binary conv and a binary linear layer."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1, self.c1 = nn.BatchNorm2d(16), nn.Conv2d(16, 16, 3, padding=1)
        self.bn2, self.c2 = nn.BatchNorm2d(16), nn.Conv2d(16, 16, 1)
        self.prelu = nn.PReLU(32)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.bn3, self.c3 = nn.BatchNorm2d(32), nn.Conv2d(32, 32, 3, padding=1)
        self.mp = nn.MaxPool2d(2)
        self.bn4, self.fc1 = nn.BatchNorm1d(32 * 3 * 3), nn.Linear(32 * 3 * 3, 24)
        self.fc2 = nn.Linear(24, 5)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        a = torch.nn.functional.hardtanh(self.c1(self.bn1(y)))
        b = torch.nn.functional.leaky_relu(self.c2(self.bn2(y)), 0.1)
        z = self.pool(self.prelu(torch.cat([a, b], 1)))
        z = self.mp(torch.relu(self.c3(self.bn3(z))))
        return self.fc2(torch.relu(self.fc1(self.bn4(torch.flatten(z, 1)))))


def test_twin_maps_every_op_of_the_format(tmp_path):
    torch.manual_seed(4)
    model = _randomize_bn(_Branches().eval(), 5)
    with torch.no_grad():
        model.prelu.weight.uniform_(-0.5, 0.5)
    path = _export(model, (3, 12, 12), tmp_path)
    ops = {n.op for n in hformat.load(path).graph.nodes}
    assert {"hardtanh", "leaky_relu", "concat", "prelu", "avg_pool2d", "max_pool2d", "binary_linear"} <= ops, ops
    x = np.random.default_rng(6).standard_normal((2, 3, 12, 12)).astype(np.float32)
    ref = rt.load(path, backend="numpy")(x)
    out = _infer(hformat.load(path), x)
    assert openvino_twin.check(out, ref) < 1e-5


@pytest.mark.parametrize("beta", [True, False])
def test_twin_names_binary_layers_after_their_nodes(beta, tmp_path):
    """Each BinaryConvolution of the twin carries its horq binary node's name, and the FakeQuantize before it that
    name + "/binarize", in the compiled model's per-node counters too (benchmarks/openvino_twin.py --profile pairs
    the layers by them)."""
    (name, shape, classes), kwargs = MODELS["resnet18-w0.25"]
    torch.manual_seed(1)
    path = _export(build_model(name, in_shape=shape, num_classes=classes, **kwargs).eval(), shape, tmp_path)
    hfile = hformat.load(path)
    binary = {n.name for n in hfile.graph.nodes if n.op in hformat.BINARY_OPS}
    assert len(binary) == 19  # 16 3x3 layers and 3 shortcuts
    model = openvino_twin.binary_twin(hfile, 1, beta=beta)
    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    assert {n for n, t in ops.items() if t == "BinaryConvolution"} == binary
    assert all(ops.get(f"{n}/binarize") == "FakeQuantize" for n in binary)
    req = openvino_twin.infer_request(hfile, 1, beta=beta, perf_count=True)
    req.infer([np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)])
    ran = {i.node_name for i in req.profiling_info if i.node_type == "BinaryConvolution"}
    assert ran == binary
