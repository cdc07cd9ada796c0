"""Lowering of the functional ops a ``forward`` calls (``call_function``/``call_method`` nodes):
``torch.relu``, ``out += identity``, ``x.mean((2, 3))``, ``torch.cat``, ``x.view(x.size(0), -1)``...
(:mod:`horq.nn.lower` has the layers and the values; docs/FORMAT.md lists what maps to what)."""

from __future__ import annotations

import operator
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx

from horq.nn.graph import BATCH, Act, Builder, View
from horq.nn.lower import (
    MODULES,
    Ctx,
    acts_in,
    affine_node,
    arg,
    bn_affine,
    conv_node,
    gap_node,
    hardtanh_node,
    leaky_node,
    linear_node,
    per_channel,
    pool_node,
    prelu_node,
    reshape_node,
)
from horq.nn.trace import ExportError, describe


def _add(c, args, kwargs, sign=1.0):
    a, b = (c.act(v) if isinstance(v, View) else v for v in args[:2])  # a view fails, saying so
    alpha = float(kwargs.get("alpha", 1))
    if isinstance(a, Act) and isinstance(b, Act):
        if sign != 1.0 or alpha != 1.0:
            c.fail("only the sum of two activations (a + b) is supported, not a difference or a scaled sum")
        if a.shape != b.shape:
            c.fail(f"adds activations of shapes {a.shape} and {b.shape}; only equal shapes are supported")
        return c.emit("add", [a, b])
    if isinstance(a, Act):
        return affine_node(c, a, 1.0, sign * alpha * per_channel(c, a, c.const(b, "other operand"), "the constant"))
    x = c.act(b, "operand")
    return affine_node(c, x, sign * alpha, per_channel(c, x, c.const(a, "other operand"), "the constant"))


def _mul(c, args, kwargs, divide=False):
    a, b = (c.act(v) if isinstance(v, View) else v for v in args[:2])  # a view fails, saying so
    if isinstance(a, Act) and isinstance(b, Act):
        c.fail("multiplies two activations; only a product with a per-channel constant is supported")
    if divide and not isinstance(a, Act):
        c.fail("divides a constant by an activation")
    if kwargs.get("rounding_mode") is not None:
        c.fail(f"rounding_mode={kwargs['rounding_mode']!r}")
    x, k = (a, b) if isinstance(a, Act) else (b, a)
    s = per_channel(c, x, c.const(k, "other operand"), "the constant")
    if divide:
        if (s == 0).any():
            c.fail("divides by zero")
        s = 1.0 / s
    return affine_node(c, x, s, 0.0)


def _relu(c, args, kwargs):
    return c.emit("relu", [c.act(args[0])])


def _clamp(c, args, kwargs):
    lo, hi = arg(args, kwargs, 1, "min"), arg(args, kwargs, 2, "max")
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        c.fail("clamp bounds must be numbers")
    if lo is not None and hi is not None:
        return hardtanh_node(c, args[0], lo, hi)
    if lo == 0 and hi is None:
        return c.emit("relu", [c.act(args[0])])
    c.fail(f"clamp(min={lo}, max={hi}): only clamp(min=0) (relu) or both bounds (hardtanh) are supported")


def _mean(c, args, kwargs):
    x = c.act(args[0])
    dims = arg(args, kwargs, 1, "dim")
    keepdim = bool(arg(args, kwargs, 2, "keepdim", False))
    if kwargs.get("dtype") is not None:
        c.fail("mean with a dtype")
    rank = len(x.shape) + 1
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if rank != 4 or sorted(d % rank for d in dims) != [2, 3]:
        c.fail(f"a mean over dims {dims} of a rank-{rank} activation; only the mean over H and W (dims 2, 3) "
               "is supported")
    y = c.emit("global_avg_pool", [x])
    return y if keepdim else c.emit("flatten", [y])


def _cat(c, args, kwargs):
    xs = arg(args, kwargs, 0, "tensors")
    dim = arg(args, kwargs, 1, "dim", 0)
    if not isinstance(xs, (list, tuple)) or not all(isinstance(a, Act) for a in xs):
        c.fail("concatenates something other than activations (a constant or a computed value)")
    if len(xs) == 1:
        return xs[0]
    rank = len(xs[0].shape) + 1
    if dim % rank != 1:
        c.fail(f"concatenates along dim {dim} of a rank-{rank} activation; only channels (dim 1) are supported")
    return c.emit("concat", list(xs))


def _dropout(c, args, kwargs):
    p = float(arg(args, kwargs, 1, "p", 0.5))
    training = arg(args, kwargs, 2, "training", True)
    if training and p > 0:
        c.fail("dropout with training=True in eval mode (pass training=self.training)")
    return c.act(args[0])


def _size(c, x, dim=None):
    full = (BATCH,) + tuple(x.shape)
    if dim is None:
        return full
    return full[dim]


def _getattr(c, args, kwargs):
    x, attr = args
    if isinstance(x, Act) and attr == "shape":
        return (BATCH,) + tuple(x.shape)
    if isinstance(x, Act) and attr == "ndim":
        return len(x.shape) + 1
    c.fail(f"reads .{attr} of an activation")


def _getitem(c, args, kwargs):
    v, idx = args
    if isinstance(v, Act):
        c.fail("indexes or slices an activation")
    if isinstance(v, tuple) and isinstance(idx, (int, slice)):
        return v[idx]
    c.fail(f"indexes {type(v).__name__} with {idx!r}")


def _linear_fn(c, args, kwargs):
    return linear_node(c, args[0], arg(args, kwargs, 1, "weight"), arg(args, kwargs, 2, "bias"))


def _addmm(c, args, kwargs):
    bias, x, w = args[:3]
    if float(kwargs.get("beta", 1)) != 1 or float(kwargs.get("alpha", 1)) != 1:
        c.fail("addmm with beta or alpha other than 1")
    return linear_node(c, x, c.const(w, "weight").t(), c.const(bias, "bias"))


def _matmul(c, args, kwargs):
    x, w = args[0], args[1]
    if not isinstance(x, Act) or isinstance(w, Act):
        c.fail("only activation @ constant matrix (a linear layer) is supported")
    w = c.const(w, "weight")
    if w.dim() != 2:
        c.fail(f"a matmul with a {w.dim()}-D constant (a 2-D weight of shape (in, out) is supported)")
    return linear_node(c, x, w.t(), None)


def _conv_fn(c, args, kwargs):
    get = lambda i, name, d: arg(args, kwargs, i, name, d)  # noqa: E731
    return conv_node(c, args[0], get(1, "weight", None), get(2, "bias", None), get(3, "stride", 1),
                     get(4, "padding", 0), get(5, "dilation", 1), get(6, "groups", 1))


def _bn_fn(c, args, kwargs):
    get = lambda i, name, d: arg(args, kwargs, i, name, d)  # noqa: E731
    x = c.act(args[0])
    if get(5, "training", False):
        c.fail("batch_norm with training=True normalizes by batch statistics")
    s, t = bn_affine(c, get(1, "running_mean", None), get(2, "running_var", None), get(3, "weight", None),
                     get(4, "bias", None), get(7, "eps", 1e-5))
    return affine_node(c, x, s, t)


def _max_pool_fn(c, args, kwargs):
    get = lambda i, name, d: arg(args, kwargs, i, name, d)  # noqa: E731
    if get(6, "return_indices", False):
        c.fail("return_indices=True")
    return pool_node(c, "max_pool2d", args[0], get(1, "kernel_size", None), get(2, "stride", None),
                     get(3, "padding", 0), get(4, "dilation", 1), get(5, "ceil_mode", False))


def _avg_pool_fn(c, args, kwargs):
    get = lambda i, name, d: arg(args, kwargs, i, name, d)  # noqa: E731
    if get(6, "divisor_override", None) is not None:
        c.fail("divisor_override is not supported")
    return pool_node(c, "avg_pool2d", args[0], get(1, "kernel_size", None), get(2, "stride", None),
                     get(3, "padding", 0), ceil_mode=get(4, "ceil_mode", False),
                     extra={"count_include_pad": bool(get(5, "count_include_pad", True))})


def _rsub(c, args, kwargs):
    x = c.act(args[1], "operand")
    if float(kwargs.get("alpha", 1)) != 1:
        c.fail("rsub with alpha other than 1")
    return affine_node(c, x, -1.0, per_channel(c, x, c.const(args[0], "other operand"), "the constant"))


#: Lowering of ``call_function`` targets and ``call_method`` names: key -> fn(ctx, args, kwargs). The key
#: also names the node (``"<module path>.<key>"``).
LOWER = {
    "add": _add,
    "sub": lambda c, a, k: _rsub(c, a, k) if isinstance(a[1], Act) and not isinstance(a[0], Act)
    else _add(c, a, k, sign=-1.0),
    "mul": _mul,
    "div": lambda c, a, k: _mul(c, a, k, divide=True),
    "relu": _relu,
    "relu6": lambda c, a, k: hardtanh_node(c, a[0], 0.0, 6.0),
    "hardtanh": lambda c, a, k: hardtanh_node(c, a[0], arg(a, k, 1, "min_val", -1.0), arg(a, k, 2, "max_val", 1.0)),
    "clamp": _clamp,
    "leaky_relu": lambda c, a, k: leaky_node(c, a[0], arg(a, k, 1, "negative_slope", 0.01)),
    "prelu": lambda c, a, k: prelu_node(c, a[0], arg(a, k, 1, "weight")),
    "conv2d": _conv_fn,
    "linear": _linear_fn,
    "addmm": _addmm,
    "matmul": _matmul,
    "batch_norm": _bn_fn,
    "max_pool2d": _max_pool_fn,
    "avg_pool2d": _avg_pool_fn,
    "adaptive_avg_pool2d": lambda c, a, k: gap_node(c, a[0], arg(a, k, 1, "output_size")),
    "mean": _mean,
    "cat": _cat,
    "dropout": _dropout,
    "identity": lambda c, a, k: c.act(a[0]),
    "size": lambda c, a, k: _size(c, c.act(a[0]), arg(a, k, 1, "dim")),
    "dim": lambda c, a, k: len(c.act(a[0]).shape) + 1,
    "getattr": _getattr,
    "getitem": _getitem,
}


_RESHAPES = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}


FUNCTIONS = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
    torch.relu: "relu", torch.relu_: "relu", F.relu: "relu",
    F.relu6: "relu6", F.hardtanh: "hardtanh", F.hardtanh_: "hardtanh",
    torch.clamp: "clamp", torch.clip: "clamp", torch.clamp_: "clamp",
    F.leaky_relu: "leaky_relu", F.leaky_relu_: "leaky_relu", F.prelu: "prelu",
    F.conv2d: "conv2d", F.linear: "linear", torch.addmm: "addmm", torch.matmul: "matmul", operator.matmul: "matmul",
    torch.mm: "matmul", F.batch_norm: "batch_norm",  # not torch.batch_norm: its arguments come in another order
    F.max_pool2d: "max_pool2d", torch.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d", torch._C._nn.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch.mean: "mean", torch.cat: "cat", torch.concat: "cat", torch.concatenate: "cat",
    F.dropout: "dropout", F.dropout1d: "dropout", F.dropout2d: "dropout", F.alpha_dropout: "dropout",
    F.feature_alpha_dropout: "dropout", torch.dropout: "dropout",
    getattr: "getattr", operator.getitem: "getitem",
    torch.flatten: "flatten", torch.reshape: "reshape", torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze",
}


METHODS = {
    "add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul", "mul_": "mul", "div": "div",
    "div_": "div", "relu": "relu", "relu_": "relu", "clamp": "clamp", "clamp_": "clamp", "clip": "clamp",
    "clip_": "clamp", "mean": "mean", "matmul": "matmul", "mm": "matmul", "contiguous": "identity",
    "clone": "identity", "detach": "identity", "float": "identity", "size": "size", "dim": "dim",
    "view": "view", "reshape": "reshape", "flatten": "flatten", "squeeze": "squeeze", "unsqueeze": "unsqueeze",
}


def lower_call(b: Builder, node: fx.Node, args, kwargs):
    """Lowers a ``call_function``/``call_method`` node whose arguments are already lowered values."""
    target = cast(Any, node.target)  # a method name for call_method, a callable for call_function
    key = METHODS.get(target) if node.op == "call_method" else FUNCTIONS.get(target)
    c = Ctx(b, node, None, key or "op")
    if key in _RESHAPES:
        if node.op == "call_method":
            return reshape_node(c, args, kwargs, lambda t, *a, **k: getattr(t, target)(*a, **k))
        return reshape_node(c, args, kwargs, target)
    if key is None:
        c.fail("unsupported op")
    if not acts_in((args, kwargs)) and key not in ("getitem",):
        c.fail("computes with the batch size")  # constants were evaluated before; reached only with BATCH
    return LOWER[key](c, list(args), dict(kwargs))


def check_supported(gm: fx.GraphModule) -> None:
    """Names the first op or module on the input's path that nothing lowers, before anything is lowered
    (a shape error further down would hide it).

    Raises:
        ExportError: an unsupported op or module, with its module path and source line.
    """
    dependent: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" and not dependent:
            dependent.add(node)
            continue
        if node.op == "output" or not any(a in dependent for a in node.all_input_nodes):
            continue
        dependent.add(node)
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if not isinstance(m, MODULES):
                raise ExportError(f"{describe(node, m)}: unsupported module")
        elif (METHODS if node.op == "call_method" else FUNCTIONS).get(node.target) is None:
            raise ExportError(f"{describe(node)}: unsupported op")


__all__ = ["FUNCTIONS", "LOWER", "METHODS", "check_supported", "lower_call"]
