"""OpenVINO twins of exported order-1 horq models: the same binary network built from OpenVINO's own ops, so
that whole models can be timed against the x86 peer's binary convolution (``horq bench model FILE --openvino``,
benchmarks/bench_yardstick_models.py), not only single layers (benchmarks/bench_yardstick.py). Needs the optional
``openvino`` package (``pip install openvino``, horq's ``bench`` extra); a benchmark's tool, not part of the runtime.

    twin = binary_twin(horq.format.load("model.horq"), batch=1)          # an openvino.Model
    req = openvino.Core().compile_model(twin, "CPU").create_infer_request()

Each node of the file's graph becomes OpenVINO ops (opset 13) on the same float32 tensors:

* ``binary_conv2d`` / ``binary_linear`` at order 1: ``FakeQuantize`` (levels 2: the input's sign as 0/1, sign(0)
  = +1 as in horq) feeding ``BinaryConvolution`` (mode xnor-popcount: n - 2 popcount, as horq's GEMM; u1
  weights, bit 1 for +1; padding +1, as horq pads zeros before quantizing, ../shared/HORQ.md), then XNOR-Net's
  per-column scale beta = mean |x| over the receptive field (``ReduceMean`` of |x| over channels, then
  ``AvgPool`` counting the padded zeros) and the file's per-filter alpha and bias. A linear layer is a 1x1
  binary convolution over a 1x1 map. The twin then computes what horq's order 1 computes, to float32 rounding:
  ``check`` (below) compares the two outputs before anything is timed.
* With ``beta=False``: OpenVINO's own form of a binary network (as in its pretrained binary models): no beta,
  and a BatchNorm-affine in front of a binary layer folded into the FakeQuantize's per-channel thresholds, so
  that OpenVINO can fuse it. Less arithmetic than XNOR-Net's (no mean of |x|), and not horq's function: a
  lower bound on what OpenVINO needs for such a network.
* Every other op of the format (float ``conv2d`` of any groups, ``linear``, ``affine``, ``add``, ``concat``, the
  pools and activations, ``flatten``): its OpenVINO counterpart.

Binary layers over a number of input channels that is not a multiple of 8 have no twin: OpenVINO's CPU
BinaryConvolution (2026.4) returns wrong counts for them (`python benchmarks/openvino_twin.py` compares single layers
with numpy and prints the mismatches, channel_check below). Orders >= 2 have no twin: their second plane's bits depend
on each column's own beta_1 (H_2 = sign(x) sign(|x| - beta_1)), which no convolution over a per-pixel tensor
expresses. An op that a later format version adds raises NotImplementedError until it is mapped here.
"""

from __future__ import annotations

import numpy as np

from horq import bits as hbits
from horq import runtime as rt

# FakeQuantize with input_low = input_high = t sends x <= t to output_low and x > t to output_high. horq gives
# sign(0) = +1: t is the negative float32 nearest zero that is not subnormal (OpenVINO's kernels may flush
# subnormals), so exactly 0 maps to +1; negative subnormal inputs (|x| < 1.2e-38) would map to +1 where horq
# gives -1.
SIGN_THRESHOLD = -float(np.finfo(np.float32).tiny)
# Relative bound on |twin - horq| / max |horq| that check() accepts: float32 rounding of the betas and of the
# float layers is ~1e-7; an error in the bits' meaning (bit order, padding, sign of zero) gives 1e-1 and more.
CHECK_TOLERANCE = 1e-2


def _ov():
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError as exc:
        raise ImportError("OpenVINO is not installed: pip install openvino (or horq's bench extra)") from exc
    return ov, ops


def _const(ops, a, dtype=np.float32):
    return ops.constant(np.ascontiguousarray(a, dtype=dtype))


def _per_channel(ops, v):
    return _const(ops, np.asarray(v, np.float32).reshape(1, -1, 1, 1))


def _u1_weights(ov, signs: np.ndarray):
    """A u1 Constant of a {-1, +1} float array: bit 1 for +1, bits in OpenVINO's order (LSB first in a byte)."""
    packed = np.packbits((signs.reshape(-1) > 0).astype(np.uint8), bitorder="little")
    t = ov.Tensor(ov.Type.u1, ov.Shape(list(signs.shape)))
    dst = np.asarray(t.data).reshape(-1).view(np.uint8)
    dst[:] = 0
    dst[: packed.size] = packed
    return ov.op.Constant(t)


def _sign_bits(ops, x, nodes, node, values, tensors, beta):
    """The 0/1 input of a BinaryConvolution: x's sign, or (beta=False) the sign of the affine before it, from
    that affine's input through per-channel thresholds."""
    prev = nodes.get(node.inputs[0])
    if beta or prev is None or prev.op != "affine" or len(prev.in_shapes[0]) != 3:
        t = _const(ops, SIGN_THRESHOLD)
        return ops.fake_quantize(x, t, t, _const(ops, 0.0), _const(ops, 1.0), 2)
    scale, shift = tensors[prev.tensors["scale"]], tensors[prev.tensors["shift"]]
    safe = np.where(scale != 0, scale, 1.0)
    # scale * v + shift >= 0  <=>  v > -shift / scale (scale > 0) or v < -shift / scale (scale < 0: the outputs
    # swapped); a zero scale leaves the constant sign of shift: a threshold below (+1) or above (-1) every input
    # (OpenVINO's binarization ignored equal output_low and output_high: they gave -1 everywhere).
    thr = np.where(scale != 0, -shift / safe, np.where(shift >= 0, -3e38, 3e38)).astype(np.float32)
    low = np.where(scale < 0, 1.0, 0.0).astype(np.float32)
    high = 1.0 - low
    t = _per_channel(ops, thr)
    return ops.fake_quantize(values[prev.inputs[0]], t, t, _per_channel(ops, low), _per_channel(ops, high), 2)


def _binary_layer(ov, ops, node, x, tensors, nodes, values, beta):
    a = node.attrs
    if a.get("order") != 1:
        raise NotImplementedError(
            f"node {node.name!r}: order {a.get('order')} has no OpenVINO twin (BinaryConvolution takes one binary "
            "input plane: order 1 only)")
    t = {k: tensors[v] for k, v in node.tensors.items()}
    if a["shape"][1] % 8:
        raise NotImplementedError(
            f"node {node.name!r}: {a['shape'][1]} input channels; OpenVINO's CPU BinaryConvolution counts wrong bits "
            "unless they are a multiple of 8 (`python benchmarks/openvino_twin.py` shows it)")
    if node.op == "binary_linear":
        shape = tuple(a["shape"]) + (1, 1)
        geometry = ([1, 1], [0, 0], [1, 1])
        x4 = ops.reshape(x, _const(ops, [0, -1, 1, 1], np.int64), True)
    else:
        shape = tuple(a["shape"])
        geometry = (list(a["stride"]), list(a["padding"]), list(a["dilation"]))
        x4 = x
    n = int(np.prod(shape[1:]))
    signs = hbits.unpack_signs(t["bits"], n).reshape(shape)
    bits_in = _sign_bits(ops, x4, nodes, node, values, tensors, beta)  # OpenVINO's FakeQuantize takes rank 4 only
    bits_in.set_friendly_name(f"{node.name}/binarize")  # named after the layer, for per-node counters
    stride, padding, dilation = geometry
    y = ops.binary_convolution(bits_in, _u1_weights(ov, signs), stride, padding, padding, dilation, "xnor-popcount",
                               1.0)
    y.set_friendly_name(node.name)
    if beta:
        mean_abs = ops.reduce_mean(ops.abs(x4), _const(ops, [1], np.int64), True)
        b = ops.avg_pool(mean_abs, stride, padding, padding, list(shape[2:]), exclude_pad=False)
        y = ops.multiply(y, b)
    if "alpha" in t:
        y = ops.multiply(y, _per_channel(ops, t["alpha"]))
    if "bias" in t:
        y = ops.add(y, _per_channel(ops, t["bias"]))
    if node.op == "binary_linear":
        y = ops.reshape(y, _const(ops, [0, -1], np.int64), True)
    return y


def binary_twin(hfile, batch: int = 1, *, beta: bool = True):
    """The openvino.Model of ``hfile``'s graph (a loaded horq.format file whose binary layers are order 1) for
    inputs of ``batch`` samples; ``beta=False``: OpenVINO's own binary form (module docstring).

    Raises:
        NotImplementedError: a binary layer of order >= 2 or an op without a counterpart here.
    """
    ov, ops = _ov()
    g, tensors = hfile.graph, rt.compute_tensors(hfile)
    inp = ops.parameter([batch, *g.input_shape], ov.Type.f32, name="input")
    values = {"input": inp.output(0)}
    nodes = {n.name: n for n in g.nodes}
    for node in g.nodes:
        x = [values[i] for i in node.inputs]
        a, t = node.attrs, {k: tensors[v] for k, v in node.tensors.items()}
        if node.op in ("binary_conv2d", "binary_linear"):
            y = _binary_layer(ov, ops, node, x[0], tensors, nodes, values, beta)
        elif node.op == "conv2d":
            geometry = (list(a["stride"]), list(a["padding"]), list(a["padding"]), list(a["dilation"]))
            w, groups = t["weight"], a.get("groups", 1)
            if groups == 1:
                y = ops.convolution(x[0], _const(ops, w), *geometry)
            else:
                gw = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
                y = ops.group_convolution(x[0], _const(ops, gw), *geometry)
            if "bias" in t:
                y = ops.add(y, _per_channel(ops, t["bias"]))
        elif node.op == "linear":
            y = ops.matmul(x[0], _const(ops, t["weight"]), False, True)
            if "bias" in t:
                y = ops.add(y, _const(ops, t["bias"].reshape(1, -1)))
        elif node.op == "relu":
            y = ops.relu(x[0])
        elif node.op == "affine":
            if len(node.in_shapes[0]) == 3:
                y = ops.add(ops.multiply(x[0], _per_channel(ops, t["scale"])), _per_channel(ops, t["shift"]))
            else:
                y = ops.add(ops.multiply(x[0], _const(ops, t["scale"].reshape(1, -1))),
                            _const(ops, t["shift"].reshape(1, -1)))
        elif node.op == "add":
            y = ops.add(x[0], x[1])
        elif node.op == "max_pool2d":
            y = ops.max_pool(x[0], list(a["stride"]), list(a["dilation"]), list(a["padding"]), list(a["padding"]),
                             list(a["kernel"])).output(0)
        elif node.op == "avg_pool2d":
            y = ops.avg_pool(x[0], list(a["stride"]), list(a["padding"]), list(a["padding"]), list(a["kernel"]),
                             exclude_pad=not a["count_include_pad"])
        elif node.op == "hardtanh":
            y = ops.clamp(x[0], float(a["min_val"]), float(a["max_val"]))
        elif node.op == "leaky_relu":
            y = ops.prelu(x[0], _const(ops, [a["negative_slope"]]))
        elif node.op == "prelu":  # one slope per channel (axis 1), or one for all
            y = ops.prelu(x[0], _const(ops, t["weight"].reshape(-1)))
        elif node.op == "concat":
            y = ops.concat(x, 1)
        elif node.op == "global_avg_pool":
            y = ops.reduce_mean(x[0], _const(ops, [2, 3], np.int64), True)
        elif node.op == "flatten":
            y = ops.reshape(x[0], _const(ops, [0, -1], np.int64), True)
        else:
            raise NotImplementedError(f"node {node.name!r}: op {node.op!r} has no OpenVINO twin here")
        values[node.name] = y.output(0) if hasattr(y, "output") else y
    return ov.Model([values[g.output]], [inp], "horq_binary_twin" + ("" if beta else "_plain"))


def infer_request(hfile, batch: int = 1, threads: int = 1, *, beta: bool = True, perf_count: bool = False):
    """An OpenVINO infer request of ``hfile``'s twin (:func:`binary_twin`) compiled for the CPU as the benchmarks
    time it: ``threads`` inference threads, the latency hint, one stream, float32 (``perf_count``: OpenVINO's
    per-node counters on)."""
    ov, _ = _ov()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "INFERENCE_PRECISION_HINT": "f32"}
    if perf_count:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(binary_twin(hfile, batch, beta=beta), "CPU", config).create_infer_request()


def check(twin_output: np.ndarray, horq_output: np.ndarray) -> float:
    """``max |twin - horq| / max |horq|``, after raising AssertionError when it exceeds CHECK_TOLERANCE (the
    twin would then not compute horq's function)."""
    scale = max(float(np.max(np.abs(horq_output))), 1e-30)
    rel = float(np.max(np.abs(np.asarray(twin_output, np.float64) - horq_output))) / scale
    if not rel <= CHECK_TOLERANCE:
        raise AssertionError(f"the OpenVINO twin differs from horq order 1 by {rel:.3g} of max |output|")
    return rel


def channel_check(channels=(4, 8, 12, 16, 20, 24, 64), kernels=(1, 3)) -> list:
    """``(C, k, mismatches, outputs)`` of one OpenVINO BinaryConvolution (5 filters, 6x6 input, padding k // 2,
    random signs) against numpy's n - 2 popcount of the same signs, per input channel count C and kernel size k."""
    ov, ops = _ov()
    from horq.runtime.ops import im2col32

    rng = np.random.default_rng(0)
    rows = []
    for c in channels:
        for k in kernels:
            x = rng.standard_normal((1, c, 6, 6)).astype(np.float32)
            w = np.where(rng.standard_normal((5, c, k, k)) < 0, -1.0, 1.0).astype(np.float32)
            p = k // 2
            inp = ops.parameter([1, c, 6, 6], ov.Type.f32)
            t = _const(ops, SIGN_THRESHOLD)
            bits_in = ops.fake_quantize(inp, t, t, _const(ops, 0.0), _const(ops, 1.0), 2)
            y = ops.binary_convolution(bits_in, _u1_weights(ov, w), [1, 1], [p, p], [p, p], [1, 1], "xnor-popcount",
                                       1.0)
            out = ov.Core().compile_model(ov.Model([y], [inp]), "CPU").create_infer_request().infer([x])[0]
            signs = hbits.sign(im2col32(x, k, k, stride=(1, 1), padding=(p, p), dilation=(1, 1)))
            ref = (w.reshape(5, -1) @ signs).reshape(5, 1, 6, 6).transpose(1, 0, 2, 3)
            rows.append((c, k, int((out != ref).sum()), int(ref.size)))
    return rows
