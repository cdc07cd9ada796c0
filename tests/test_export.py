"""horq.export: unsupported modules are named, files are atomic and valid, cifar-vgg packs small."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import horq
import horq.runtime as rt
from agreement import inputs, torch_float64
from horq import format as hf
from horq.apps.summary import format_summary, summarize
from horq.nn import HORQConfig, HORQConv2d, HORQLinear, build_model, convert_
from horq.nn.export import ExportError, Residual, export, to_graph


def _state_dict_bytes(model):
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _binary_grouped_conv():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    conv.order = 2  # a conv carrying horq's order is binary; a grouped one has no binary form
    return conv


@pytest.mark.parametrize(("model", "match"), [
    (nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.GELU())), r"'1\.1' of type GELU"),
    (nn.Sequential(_binary_grouped_conv()), r"'0' of type Conv2d.*groups=2"),
    (nn.Sequential(nn.Conv2d(4, 4, 4, padding="same")), r"'0' of type Conv2d.*unevenly"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")), r"'0' of type Conv2d"),
    (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), r"'0' of type MaxPool2d.*ceil_mode"),
    (nn.Sequential(nn.Flatten(2)), r"'0' of type Flatten"),
    (nn.Sequential(nn.AdaptiveAvgPool2d(2)), r"'0' of type AdaptiveAvgPool2d"),
    (nn.Sequential(Residual(nn.Sequential(nn.Conv2d(4, 4, 1), nn.LSTM(2, 2)))), r"'0\.body\.1' of type LSTM"),
    (nn.Sequential(nn.BatchNorm2d(4, track_running_stats=False)), r"'0' of type BatchNorm2d.*running"),
], ids=["nested-gelu", "groups", "same", "reflect", "ceil", "flatten2", "adaptive2", "residual-lstm", "bn-no-stats"])
def test_unsupported_modules_are_named(model, match, tmp_path):
    with pytest.raises(ExportError, match=match):
        export(model, tmp_path / "m.horq", input_shape=(4, 8, 8))
    assert not os.listdir(tmp_path)


def test_custom_module_is_named():
    class Mine(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ExportError, match="'model' of type Mine"):
        to_graph(Mine(), input_shape=(3,))


def test_top_level_forwarder_and_input_shape(tmp_path):
    model = nn.Sequential(nn.Linear(5, 3)).eval()
    graph = horq.export(model, tmp_path / "m.horq")  # input shape inferred from the first Linear
    assert graph.input_shape == (5,) and graph.output_shape == (3,)
    with pytest.raises(ExportError, match="input_shape"):
        horq.export(nn.Sequential(nn.Conv2d(1, 1, 1)), tmp_path / "n.horq")
    with pytest.raises(hf.GraphError, match="channels"):  # an input shape the model cannot take
        horq.export(nn.Sequential(nn.Conv2d(3, 1, 1)), tmp_path / "n.horq", input_shape=(2, 4, 4))
    assert sorted(os.listdir(tmp_path)) == ["m.horq"]


def test_zoo_models_carry_their_input_shape(tmp_path):
    from horq.nn import HORQConfig, build_model, convert_

    model = convert_(build_model("mnist-cnn", in_shape=(1, 12, 12), width=4, hidden=8), HORQConfig(order=2))
    graph = horq.export(model.eval(), tmp_path / "z.horq")  # no input_shape argument needed
    assert graph.input_shape == (1, 12, 12)


def test_export_is_atomic(tmp_path, monkeypatch):
    from horq.format import container

    def boom(f, data):
        f.write(data[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(container, "_write_all", boom)
    with pytest.raises(KeyboardInterrupt):
        export(nn.Sequential(nn.Linear(5, 3)), tmp_path / "m.horq")
    assert not os.listdir(tmp_path)


def test_binary_layer_tensors_are_packed_weights():
    torch.manual_seed(0)
    conv = HORQConv2d(3, 5, 3, order=2)
    graph, tensors = to_graph(nn.Sequential(conv), input_shape=(3, 6, 6))
    (node,) = graph["nodes"]
    assert node["op"] == "binary_conv2d" and node["attrs"]["order"] == 2 and node["attrs"]["shape"] == [5, 3, 3, 3]
    w = conv.weight.detach().numpy().reshape(5, -1)
    np.testing.assert_array_equal(tensors["0.bits"], horq.bits.pack_signs(w))
    np.testing.assert_allclose(tensors["0.alpha"], np.abs(w).mean(1), rtol=1e-6)
    assert tensors["0.bits"].dtype == np.uint64 and tensors["0.alpha"].dtype == np.float32


@pytest.mark.parametrize(("keep_first_last_fp", "float_dtype", "minimum"), [
    (True, "float32", 25.0), (False, "float32", 30.5), (True, "float16", 30.0), (False, "float16", 31.0)])
def test_cifar_vgg_size(keep_first_last_fp, float_dtype, minimum, tmp_path):
    """Packed cifar-vgg (full width) against its float32 state_dict; ``horq summary`` prints the same ratio.

    The issue asks >= 25x with the first/last layers in full precision (measured 29.2x) and >= 31x all
    binary: measured 30.6x with float32 parameters (the best an exact export reaches) and 31.2x with
    float16 ones. docs/FORMAT.md ("Size") accounts for the bytes: all binary, 573,056 bytes of sign bits,
    21,584 of float32 per-channel parameters (three per channel of every binary conv: bias, the following
    BatchNorm's scale and shift; alphas are folded away; half that in float16) and a 4.9 kB header, against
    592,089 bytes for 31x of an 18,354,776-byte state_dict.
    """
    torch.manual_seed(0)
    model = build_model("cifar-vgg", in_shape=(3, 32, 32), num_classes=10)
    convert_(model, HORQConfig(order=2, keep_first_last_fp=keep_first_last_fp))
    path = tmp_path / "vgg.horq"
    export(model.eval(), path, input_shape=(3, 32, 32), float_dtype=float_dtype)
    ratio = _state_dict_bytes(model) / os.path.getsize(path)
    assert ratio >= minimum, f"cifar-vgg packed only {ratio:.1f}x smaller"
    summ = summarize(path)
    assert summ.compression == pytest.approx(ratio)
    assert f"({ratio:.1f}x smaller)" in format_summary(summ)


def test_binary_layers_pack_32x(tmp_path):
    """A binary layer stores its sign bits in whole 64-bit words per filter, plus a float32 alpha per
    filter where it was not folded away: >= 31x smaller than float32 for rows of >= 1024 weights (every
    binary convolution but the first, whose rows of 27 bits fill part of a word)."""
    torch.manual_seed(0)
    model = build_model("cifar-vgg", in_shape=(3, 32, 32), num_classes=10)
    convert_(model, HORQConfig(order=2, keep_first_last_fp=False))
    graph, tensors = to_graph(model.eval(), input_shape=(3, 32, 32))
    for node in graph["nodes"]:
        if node["op"] in hf.BINARY_OPS:
            cout, n = node["attrs"]["shape"][0], int(np.prod(node["attrs"]["shape"][1:]))
            packed = sum(tensors[node["tensors"][r]].nbytes for r in ("bits", "alpha") if r in node["tensors"])
            assert packed == cout * 8 * -(-n // 64) + 4 * cout * ("alpha" in node["tensors"]), node["name"]
            if n >= 1024:
                assert 4 * cout * n / packed >= 31, node["name"]


def _torch_vs_runtime(model, in_shape, path, backend="reference"):
    """The runtime's output and PyTorch's in float64 on 64 fixed inputs (tests/agreement.py: neither depends
    on how this machine's PyTorch rounds in float32)."""
    export(model, path, input_shape=in_shape)
    x = inputs(in_shape, 64, seed=3)
    return rt.load(path, backend=backend)(x), torch_float64(model, x)


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)  # negative BatchNorm scales too
            m.bias.data.uniform_(-0.5, 0.5)
            assert m.weight.shape == (c,)
    return model


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_alphas_fold_exactly(backend, tmp_path):
    """Every alpha moves into a later scale: through pool/relu/GAP/flatten into an affine, into a float
    linear's columns, into an epilogue scale; the runtime still matches PyTorch to float rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(
        HORQConv2d(2, 6, 3, padding=1, order=0), nn.MaxPool2d(2), nn.ReLU(), nn.BatchNorm2d(6),  # -> affine
        HORQConv2d(6, 5, 3, padding=1, order=0), nn.BatchNorm2d(5), nn.ReLU(),  # -> epilogue scale
        HORQConv2d(5, 4, 3, padding=1, order=0), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),  # -> float linear
        nn.Linear(4 * 2 * 2, 3),
    )
    model = _randomize_bn(model).eval()
    graph, _ = to_graph(model, input_shape=(2, 8, 8))
    assert not any("alpha" in n.get("tensors", {}) for n in graph["nodes"])
    out, ref = _torch_vs_runtime(model, (2, 8, 8), tmp_path / "m.horq", backend)
    # Order 0 has no quantization threshold, so nothing can flip: float rounding only (float32 path ~1e-6).
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))


def test_alphas_that_cannot_move_stay(tmp_path):
    """Kept: alpha read by two nodes (residual), before a nonlinearity that is not scale-invariant
    (hardtanh), at the output, and with a zero filter (alpha = 0)."""
    torch.manual_seed(0)
    zero = HORQConv2d(3, 3, 1, order=2)
    with torch.no_grad():
        zero.weight[1] = 0
    model = nn.Sequential(
        Residual(nn.Sequential(HORQConv2d(3, 3, 3, padding=1, order=2))),
        HORQConv2d(3, 3, 3, padding=1, order=2), nn.Hardtanh(), nn.BatchNorm2d(3),
        zero, nn.ReLU(), nn.BatchNorm2d(3),
        nn.Flatten(), HORQLinear(3 * 16, 4, order=1),
    ).eval()
    graph, tensors = to_graph(model, input_shape=(3, 4, 4))
    kept = [n["name"] for n in graph["nodes"] if "alpha" in n.get("tensors", {})]
    assert kept == ["0.body.0", "1", "4", "8"]
    out, ref = _torch_vs_runtime(model, (3, 4, 4), tmp_path / "m.horq")
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_default_attributes_are_left_out():
    graph, _ = to_graph(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()),
                        input_shape=(3, 8, 8))
    conv, pool, relu = graph["nodes"]
    assert conv["attrs"] == {"padding": 1} and pool["attrs"] == {"kernel": 2, "stride": 2}
    assert "attrs" not in relu and "tensors" not in relu


def test_float16_export_errors(tmp_path):
    big = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        big[0].weight[1, 2] = 1e5  # beyond float16's largest finite value, 65504
    with pytest.raises(ExportError, match=r"'0\.weight'.*float16's range"):
        export(big, tmp_path / "m.horq", float_dtype="float16")
    with pytest.raises(ValueError, match="float_dtype"):
        export(big, tmp_path / "m.horq", float_dtype="bfloat16")
    assert not os.listdir(tmp_path)
    export(big, tmp_path / "m.horq")  # float32 holds it
