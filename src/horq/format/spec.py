"""The graph of a ``.horq`` file: its ops, their attributes and tensors, and shape inference.

The graph is a JSON object (see docs/FORMAT.md)::

    {"input": {"shape": [C, H, W]},                 # one sample, batch axis excluded
     "nodes": [{"name": "...", "op": "...", "inputs": ["input" | earlier node name, ...],
                "attrs": {...}, "tensors": {role: tensor name, ...}}, ...],
     "output": "<node name>",
     "info": {...}}                                  # free-form, not interpreted (provenance, sizes)

Nodes are in topological order: a node may only read ``"input"`` or a node listed before it. Validation
walks the nodes once, checks every attribute and tensor against the op's definition in :data:`OPS`, and
infers each node's output shape, so a graph that validates can be run without further checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from horq.bits import words_for
from horq.format.errors import GraphError, TensorError, UnknownOpError
from horq.geometry import MAX_ORDER, conv_output_hw

INPUT = "input"
MAX_NODES = 100_000
MAX_RANK = 8
#: Most inputs of one variadic node (``concat``); a DenseNet block concatenates a few dozen.
MAX_INPUTS = 1024
MAX_DIM = 1 << 31
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-/]{1,200}$")

F32, F16, U64 = "F32", "F16", "U64"
#: Stored dtypes a role declared F32 accepts: float16 storage is upcast to float32 when a model is loaded.
FLOAT_STORAGE = (F32, F16)


@dataclass(frozen=True)
class OpDef:
    """What one op needs: its number of inputs (:data:`VARIADIC`: two or more), tensor roles
    ``{role: (dtype, required)}``, attribute checkers ``{name: (checker, default-or-REQUIRED)}`` and a shape
    function."""

    arity: int
    tensors: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    infer: Callable[..., Any] | None = None


REQUIRED = object()
#: ``OpDef.arity`` of an op that takes two or more inputs (``concat``).
VARIADIC = -1


# --- attribute checkers: return the normalized value or raise GraphError -------------------------------


def _pair_attr(name, *, lo):
    def check(v, where):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v, v]
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(e, int) and not isinstance(e, bool) and lo <= e < MAX_DIM for e in v)
        ):
            raise GraphError(f"{where}: attribute {name!r} must be two integers >= {lo}, got {v!r}")
        return tuple(v)

    return check


def _order(v, where):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ORDER:
        raise GraphError(f"{where}: attribute 'order' must be an integer in [0, {MAX_ORDER}], got {v!r}")
    return v


def _number(name):
    def check(v, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GraphError(f"{where}: attribute {name!r} must be a finite number, got {v!r}")
        return float(v)

    return check


def _positive_int(name):
    def check(v, where):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < MAX_DIM:
            raise GraphError(f"{where}: attribute {name!r} must be a positive integer, got {v!r}")
        return v

    return check


def _bool(name):
    def check(v, where):
        if not isinstance(v, bool):
            raise GraphError(f"{where}: attribute {name!r} must be true or false, got {v!r}")
        return v

    return check


def _shape(rank):
    def check(v, where):
        if (
            not isinstance(v, list)
            or len(v) != rank
            or not all(isinstance(e, int) and not isinstance(e, bool) and 1 <= e < MAX_DIM for e in v)
        ):
            raise GraphError(f"{where}: attribute 'shape' must be {rank} positive integers, got {v!r}")
        return tuple(v)

    return check


# --- shape functions: (node, input shapes, tensor shapes) -> output shape -----------------------------


def _need_rank(where, shape, rank):
    if len(shape) != rank:
        raise GraphError(f"{where}: expects an input of rank {rank} (batch excluded), got shape {list(shape)}")


def _tensor_shape(where, node, tshapes, role, expected):
    got = tshapes.get(role)
    if got is not None and tuple(got) != tuple(expected):
        raise TensorError(
            f"{where}: tensor {node['tensors'][role]!r} ({role}) has shape {list(got)}, "
            f"the graph needs {list(expected)}"
        )


def _conv_out(where, h, w, k, s, p, d):
    oh, ow = conv_output_hw((h, w), k, s, p, d)
    if oh < 1 or ow < 1:
        raise GraphError(f"{where}: a {h}x{w} input is too small for kernel {list(k)} (padding {list(p)})")
    return oh, ow


def _infer_conv(binary):
    def infer(where, node, ins, tshapes):
        (x,) = ins
        _need_rank(where, x, 3)
        a = node["attrs"]
        if binary:
            cout, cin, kh, kw = a["shape"]
            _tensor_shape(where, node, tshapes, "bits", (cout, words_for(cin * kh * kw)))
            _tensor_shape(where, node, tshapes, "alpha", (cout,))
            for role in ("scale", "shift"):
                _tensor_shape(where, node, tshapes, role, (cout,))
        else:
            wshape = tshapes["weight"]
            if len(wshape) != 4 or min(wshape) < 1:
                raise TensorError(f"{where}: conv2d weight must be 4-D and non-empty, got {list(wshape)}")
            cout, cin, kh, kw = wshape
            groups = a["groups"]
            if cout % groups:
                raise GraphError(f"{where}: {cout} output channels do not split into {groups} groups")
            cin *= groups  # the weight holds C_in / groups input channels per filter
        _tensor_shape(where, node, tshapes, "bias", (cout,))
        if x[0] != cin:
            raise GraphError(f"{where}: input has {x[0]} channels, the weight expects {cin}")
        oh, ow = _conv_out(where, x[1], x[2], (kh, kw), a["stride"], a["padding"], a["dilation"])
        return (cout, oh, ow)

    return infer


def _infer_linear(binary):
    def infer(where, node, ins, tshapes):
        (x,) = ins
        _need_rank(where, x, 1)
        if binary:
            out, inf = node["attrs"]["shape"]
            _tensor_shape(where, node, tshapes, "bits", (out, words_for(inf)))
            _tensor_shape(where, node, tshapes, "alpha", (out,))
            for role in ("scale", "shift"):
                _tensor_shape(where, node, tshapes, role, (out,))
        else:
            wshape = tshapes["weight"]
            if len(wshape) != 2 or min(wshape) < 1:
                raise TensorError(f"{where}: linear weight must be 2-D and non-empty, got {list(wshape)}")
            out, inf = wshape
        _tensor_shape(where, node, tshapes, "bias", (out,))
        if x[0] != inf:
            raise GraphError(f"{where}: input has {x[0]} features, the weight expects {inf}")
        return (out,)

    return infer


def _infer_affine(where, node, ins, tshapes):
    (x,) = ins
    if len(x) not in (1, 3):
        raise GraphError(f"{where}: affine expects (C,) or (C, H, W) per sample, got {list(x)}")
    for role in ("scale", "shift"):
        _tensor_shape(where, node, tshapes, role, (x[0],))
    return x


def _infer_pool(where, node, ins, tshapes):
    (x,) = ins
    _need_rank(where, x, 3)
    a = node["attrs"]
    k, p = a["kernel"], a["padding"]
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise GraphError(f"{where}: padding {list(p)} must be at most half the kernel {list(k)}")
    d = a.get("dilation", (1, 1))
    oh, ow = _conv_out(where, x[1], x[2], k, a["stride"], p, d)
    return (x[0], oh, ow)


def _infer_gap(where, node, ins, tshapes):
    (x,) = ins
    _need_rank(where, x, 3)
    return (x[0], 1, 1)


def _infer_same(where, node, ins, tshapes):
    return ins[0]


def _infer_hardtanh(where, node, ins, tshapes):
    a = node["attrs"]
    if not a["min_val"] < a["max_val"]:
        raise GraphError(f"{where}: hardtanh needs min_val < max_val, got {a['min_val']}, {a['max_val']}")
    return ins[0]


def _infer_flatten(where, node, ins, tshapes):
    return (math.prod(ins[0]),)


def _infer_prelu(where, node, ins, tshapes):
    (x,) = ins
    if len(x) not in (1, 3):
        raise GraphError(f"{where}: prelu expects (C,) or (C, H, W) per sample, got {list(x)}")
    got = tuple(tshapes["weight"])
    if got not in ((1,), (x[0],)):
        raise TensorError(f"{where}: tensor {node['tensors']['weight']!r} (weight) has shape {list(got)}, "
                          f"the graph needs [1] or [{x[0]}]")
    return x


def _infer_concat(where, node, ins, tshapes):
    first = ins[0]
    if len(first) not in (1, 3):
        raise GraphError(f"{where}: concat expects (C,) or (C, H, W) per sample, got {list(first)}")
    for other in ins[1:]:
        if len(other) != len(first) or tuple(other[1:]) != tuple(first[1:]):
            raise GraphError(f"{where}: concat needs inputs equal but for the channel axis, got "
                             f"{[list(s) for s in ins]}")
    return (sum(s[0] for s in ins),) + tuple(first[1:])


def _infer_add(where, node, ins, tshapes):
    a, b = ins
    if tuple(a) != tuple(b):
        raise GraphError(f"{where}: add needs equal shapes, got {list(a)} and {list(b)}")
    return a


_GEOMETRY = {
    "stride": (_pair_attr("stride", lo=1), (1, 1)),
    "padding": (_pair_attr("padding", lo=0), (0, 0)),
    "dilation": (_pair_attr("dilation", lo=1), (1, 1)),
}
_BINARY_TENSORS = {
    "bits": (U64, True), "alpha": (F32, False), "bias": (F32, False), "scale": (F32, False), "shift": (F32, False),
}

#: Every op of format versions 1 to 3 (2 added no op; 3 added those in :data:`OP_VERSIONS` and conv2d's
#: ``groups``). A plain dict registry; docs/FORMAT.md describes each entry.
OPS: dict[str, OpDef] = {
    "conv2d": OpDef(
        1,
        {"weight": (F32, True), "bias": (F32, False)},
        {**_GEOMETRY, "groups": (_positive_int("groups"), 1)},
        _infer_conv(False),
    ),
    "binary_conv2d": OpDef(
        1,
        dict(_BINARY_TENSORS),
        {"order": (_order, REQUIRED), "shape": (_shape(4), REQUIRED), **_GEOMETRY},
        _infer_conv(True),
    ),
    "linear": OpDef(1, {"weight": (F32, True), "bias": (F32, False)}, {}, _infer_linear(False)),
    "binary_linear": OpDef(
        1, dict(_BINARY_TENSORS), {"order": (_order, REQUIRED), "shape": (_shape(2), REQUIRED)}, _infer_linear(True)
    ),
    "affine": OpDef(1, {"scale": (F32, True), "shift": (F32, True)}, {}, _infer_affine),
    "max_pool2d": OpDef(
        1,
        {},
        {
            "kernel": (_pair_attr("kernel", lo=1), REQUIRED),
            "stride": (_pair_attr("stride", lo=1), REQUIRED),
            "padding": (_pair_attr("padding", lo=0), (0, 0)),
            "dilation": (_pair_attr("dilation", lo=1), (1, 1)),
        },
        _infer_pool,
    ),
    "avg_pool2d": OpDef(
        1,
        {},
        {
            "kernel": (_pair_attr("kernel", lo=1), REQUIRED),
            "stride": (_pair_attr("stride", lo=1), REQUIRED),
            "padding": (_pair_attr("padding", lo=0), (0, 0)),
            "count_include_pad": (_bool("count_include_pad"), True),
        },
        _infer_pool,
    ),
    "global_avg_pool": OpDef(1, {}, {}, _infer_gap),
    "relu": OpDef(1, {}, {}, _infer_same),
    "hardtanh": OpDef(
        1, {}, {"min_val": (_number("min_val"), -1.0), "max_val": (_number("max_val"), 1.0)}, _infer_hardtanh
    ),
    "flatten": OpDef(1, {}, {}, _infer_flatten),
    "add": OpDef(2, {}, {}, _infer_add),
    "concat": OpDef(VARIADIC, {}, {}, _infer_concat),
    "leaky_relu": OpDef(1, {}, {"negative_slope": (_number("negative_slope"), 0.01)}, _infer_same),
    "prelu": OpDef(1, {"weight": (F32, True)}, {}, _infer_prelu),
}

#: The first format version that defines an op (absent: version 1); ``(op, attribute)`` for an attribute
#: added to an older op. A file is written with the lowest version that holds it (:func:`required_version`).
OP_VERSIONS = {"concat": 3, "leaky_relu": 3, "prelu": 3, ("conv2d", "groups"): 3}

BINARY_OPS = ("binary_conv2d", "binary_linear")


@dataclass(frozen=True)
class Node:
    """A validated node: attributes normalized (defaults filled, pairs as tuples), shapes inferred."""

    name: str
    op: str
    inputs: tuple
    attrs: dict
    tensors: dict
    out_shape: tuple
    in_shapes: tuple


@dataclass(frozen=True)
class Graph:
    """A validated graph: nodes in execution order, the per-sample input and output shapes."""

    input_shape: tuple
    nodes: tuple
    output: str
    output_shape: tuple
    info: dict


def _check_shape_list(v, where):
    if (
        not isinstance(v, list)
        or not 1 <= len(v) <= MAX_RANK
        or not all(isinstance(e, int) and not isinstance(e, bool) and 1 <= e < MAX_DIM for e in v)
    ):
        raise GraphError(f"{where}: shape must be 1 to {MAX_RANK} positive integers, got {v!r}")
    return tuple(v)


def validate_graph(graph, tensor_meta: dict) -> Graph:
    """Validates a graph against the tensors it will run with.

    Args:
        graph: the parsed graph JSON object.
        tensor_meta: ``{tensor name: (dtype string, shape tuple)}`` of every tensor in the file.

    Returns:
        The validated :class:`Graph`.

    Raises:
        GraphError: malformed graph, attribute or reference (UnknownOpError for an unknown op).
        TensorError: missing, unreferenced, or ill-fitting tensors.
    """
    if not isinstance(graph, dict):
        raise GraphError(f"graph must be a JSON object, got {type(graph).__name__}")
    for key in ("input", "nodes", "output"):
        if key not in graph:
            raise GraphError(f"graph has no {key!r} entry")
    inp = graph["input"]
    if not isinstance(inp, dict) or "shape" not in inp:
        raise GraphError("graph 'input' must be an object with a 'shape'")
    input_shape = _check_shape_list(inp["shape"], "graph input")
    if len(input_shape) not in (1, 3):
        raise GraphError(f"graph input must be (F,) or (C, H, W) per sample, got {list(input_shape)}")
    raw_nodes = graph["nodes"]
    if not isinstance(raw_nodes, list) or not 1 <= len(raw_nodes) <= MAX_NODES:
        raise GraphError(f"graph 'nodes' must be a list of 1 to {MAX_NODES} nodes")
    info = graph.get("info", {})
    if not isinstance(info, dict):
        raise GraphError("graph 'info' must be an object")

    shapes = {INPUT: input_shape}
    used_tensors: dict[str, str] = {}
    nodes = []
    for i, raw in enumerate(raw_nodes):
        nodes.append(_validate_node(i, raw, shapes, used_tensors, tensor_meta))
    unused = sorted(set(tensor_meta) - set(used_tensors))
    if unused:
        raise TensorError(f"tensors not referenced by any node: {unused[:5]}")
    output = graph["output"]
    if not isinstance(output, str) or output not in shapes or output == INPUT:
        raise GraphError(f"graph output {output!r} is not a node of the graph")
    return Graph(input_shape, tuple(nodes), output, shapes[output], info)


def _validate_node(i, raw, shapes, used_tensors, tensor_meta) -> Node:
    where, name, op, opdef = _node_identity(i, raw, shapes)
    inputs = _node_inputs(where, raw, opdef, shapes)
    attrs = _node_attrs(where, raw, opdef)
    tensors, tshapes = _node_tensors(where, name, raw, opdef, used_tensors, tensor_meta)
    node = {"name": name, "op": op, "inputs": inputs, "attrs": attrs, "tensors": tensors}
    in_shapes = tuple(shapes[r] for r in inputs)
    assert opdef.infer is not None, op  # every op in OPS has a shape function
    out_shape = tuple(opdef.infer(where, node, in_shapes, tshapes))
    if math.prod(out_shape) >= MAX_DIM:
        raise GraphError(f"{where}: output shape {list(out_shape)} is too large")
    shapes[name] = out_shape
    return Node(name, op, tuple(inputs), attrs, dict(tensors), out_shape, in_shapes)


def _node_identity(i, raw, shapes):
    """``(where, name, op, opdef)`` of node ``i``: a JSON object with known keys, a new valid name, a known op."""
    where = f"node {i}"
    if not isinstance(raw, dict):
        raise GraphError(f"{where}: must be a JSON object")
    extra = set(raw) - {"name", "op", "inputs", "attrs", "tensors"}
    if extra:
        raise GraphError(f"{where}: unexpected keys {sorted(extra)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == INPUT:
        raise GraphError(f"{where}: invalid node name {name!r}")
    if name in shapes:
        raise GraphError(f"{where}: duplicate node name {name!r}")
    where = f"node {i} ({name!r})"
    op = raw.get("op")
    if not isinstance(op, str):
        raise GraphError(f"{where}: 'op' must be a string")
    if op not in OPS:
        raise UnknownOpError(f"{where}: unknown op {op!r} (format version 3 defines: {', '.join(sorted(OPS))})")
    return f"node {i} ({name!r}, {op})", name, op, OPS[op]


def _node_inputs(where, raw, opdef, shapes) -> list:
    inputs = raw.get("inputs")
    if opdef.arity == VARIADIC:
        if not isinstance(inputs, list) or not 2 <= len(inputs) <= MAX_INPUTS:
            raise GraphError(f"{where}: needs 2 to {MAX_INPUTS} inputs, got {inputs!r}")
    elif not isinstance(inputs, list) or len(inputs) != opdef.arity:
        raise GraphError(f"{where}: needs exactly {opdef.arity} input(s), got {inputs!r}")
    for ref in inputs:
        if not isinstance(ref, str) or ref not in shapes:
            raise GraphError(f"{where}: input {ref!r} is neither 'input' nor an earlier node")
    return inputs


def _node_attrs(where, raw, opdef) -> dict:
    attrs_raw = raw.get("attrs", {})
    if not isinstance(attrs_raw, dict):
        raise GraphError(f"{where}: 'attrs' must be an object")
    unknown = set(attrs_raw) - set(opdef.attrs)
    if unknown:
        raise GraphError(f"{where}: unknown attributes {sorted(unknown)}")
    attrs = {}
    for key, (check, default) in opdef.attrs.items():
        if key in attrs_raw:
            attrs[key] = check(attrs_raw[key], where)
        elif default is REQUIRED:
            raise GraphError(f"{where}: missing attribute {key!r}")
        else:
            attrs[key] = default
    return attrs


def _node_tensors(where, name, raw, opdef, used_tensors, tensor_meta) -> tuple[dict, dict]:
    """The node's ``{role: tensor name}`` and ``{role: shape}``: known roles, present in the file, each tensor
    used once, of the dtype the role needs."""
    tensors = raw.get("tensors", {})
    if not isinstance(tensors, dict):
        raise GraphError(f"{where}: 'tensors' must be an object")
    unknown = set(tensors) - set(opdef.tensors)
    if unknown:
        raise GraphError(f"{where}: unknown tensor roles {sorted(unknown)}")
    tshapes = {}
    for role, (dtype, required) in opdef.tensors.items():
        tname = tensors.get(role)
        if tname is None:
            if required:
                raise TensorError(f"{where}: missing tensor for role {role!r}")
            continue
        if not isinstance(tname, str):
            raise GraphError(f"{where}: tensor name for {role!r} must be a string")
        if tname not in tensor_meta:
            raise TensorError(f"{where}: tensor {tname!r} ({role}) is missing from the file")
        if tname in used_tensors:
            raise TensorError(f"{where}: tensor {tname!r} is already used by {used_tensors[tname]!r}")
        used_tensors[tname] = name
        got_dtype, got_shape = tensor_meta[tname]
        if got_dtype != dtype and not (dtype == F32 and got_dtype in FLOAT_STORAGE):
            need = "F32 or F16" if dtype == F32 else dtype
            raise TensorError(f"{where}: tensor {tname!r} ({role}) has dtype {got_dtype}, the graph needs {need}")
        tshapes[role] = tuple(got_shape)
    return tensors, tshapes


def required_version(graph_json: dict) -> int:
    """The lowest format version that defines every op and attribute of a (validated) graph: 1, or 3 for a
    graph using what :data:`OP_VERSIONS` lists. (Version 2's addition, float16 storage, is a tensor dtype.)"""
    version = 1
    for raw in graph_json["nodes"]:
        version = max(version, OP_VERSIONS.get(raw["op"], 1))
        for key in raw.get("attrs", {}):
            version = max(version, OP_VERSIONS.get((raw["op"], key), 1))
    return version


def infer_node(index: int, raw: dict, shapes: dict, tensor_meta: dict) -> Node:
    """Validates one node against the shapes of the nodes before it, as :func:`validate_graph` does, and
    records its output shape in ``shapes`` (``{"input": input shape, name: shape, ...}``). For a writer
    that builds a graph node by node (the exporter) and wants each shape as it goes.

    Raises:
        GraphError, TensorError: as :func:`validate_graph`, for this node.
    """
    return _validate_node(index, raw, shapes, {}, tensor_meta)
