"""Lowering a traced model (:mod:`horq.nn.trace`) to ``.horq`` graph nodes, one fx node at a time.

Every fx node becomes one of:

* an activation (:class:`Act`: a node of the ``.horq`` graph and its per-sample shape) -- what the graph
  computes on the input;
* a constant (a tensor, number, tuple...) -- parameters, buffers, and anything computed from them alone,
  which is evaluated here with PyTorch (``self.weight.t()``, ``self.scale.view(1, -1, 1, 1)``);
* :data:`BATCH` (or a tuple holding it) -- the batch size, from ``x.size(0)`` or ``x.shape``, which may only
  feed a reshape.

Ops on activations map to ``.horq`` ops (docs/FORMAT.md); BatchNorm and products/sums with a per-channel
constant become ``affine`` nodes, which :mod:`horq.nn.fold` later folds into neighbouring layers. Anything
else raises :class:`~horq.nn.trace.ExportError` naming the op, the module path and the source line. Each
node's output shape comes from the format's own shape inference (:func:`horq.format.spec.infer_node`), so
the shapes checked here are the ones the runtime will run.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from horq import format as hformat
from horq.bits import pack_signs
from horq.format import spec as hspec
from horq.nn.trace import ExportError, describe, is_horq_layer, module_path, scope


@dataclass(frozen=True)
class Act:
    """An activation: the ``.horq`` node ``ref`` (or ``"input"``) and its per-sample shape."""

    ref: str
    shape: tuple


class _Batch:
    def __repr__(self):
        return "BATCH"


#: The batch size, symbolically (``x.size(0)``).
BATCH = _Batch()


def _np(t) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _pair(v):
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:\-/]")

#: Attributes the format accepts as one integer for an equal pair.
_PAIR_ATTRS = ("kernel", "stride", "padding", "dilation")


def _normal(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def compact_attrs(op: str, attrs: dict) -> dict:
    """Attributes as short as the format allows: values equal to the op's default dropped, equal pairs
    written as one integer (docs/FORMAT.md); the validator normalizes them back."""
    out = {}
    for key, value in attrs.items():
        _, default = hspec.OPS[op].attrs[key]
        if default is not hspec.REQUIRED and _normal(value) == _normal(default):
            continue
        pair = key in _PAIR_ATTRS and value[0] == value[1]
        out[key] = value[0] if pair else value
    return out


class Builder:
    """The ``.horq`` nodes and tensors being built; tensors stay float64 until :meth:`finish`."""

    def __init__(self, input_shape):
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple] = {hformat.INPUT: tuple(input_shape)}

    def node(self, name, op, inputs, *, attrs=None, tensors=None) -> Act:
        """Appends a node (``name`` made unique with ``:1``, ``:2``...) and returns its output."""
        name = _NAME_BAD.sub("_", name or op)[:180]  # module names may hold any character; the format's may not
        if name in self.shapes:
            i = 1
            while f"{name}:{i}" in self.shapes:
                i += 1
            name = f"{name}:{i}"
        refs = {}
        for role, arr in (tensors or {}).items():
            if arr is None:
                continue
            tname = f"{name}.{role}"
            self.tensors[tname] = arr  # float64 (or uint64 bits) until finish(): folding stays exact
            refs[role] = tname
        node = {"name": name, "op": op, "inputs": [a.ref for a in inputs]}
        attrs = compact_attrs(op, attrs or {})
        if attrs:
            node["attrs"] = attrs
        if refs:
            node["tensors"] = refs
        meta = {t: (hspec.U64 if self.tensors[t].dtype == np.uint64 else hspec.F32, self.tensors[t].shape)
                for t in refs.values()}
        hspec.infer_node(len(self.nodes), node, self.shapes, meta)  # GraphError if the shapes do not chain
        self.nodes.append(node)
        return Act(name, self.shapes[name])

    def finish(self, float_dtype=np.float32) -> dict:
        """The tensors as the file stores them: uint64 bits, everything else ``float_dtype``.

        Raises:
            ExportError: a value too large for float16 (it would become Inf), naming the tensor.
        """
        out = {}
        for k, v in self.tensors.items():
            if v.dtype == np.uint64:
                out[k] = np.ascontiguousarray(v)
                continue
            v = np.asarray(v, dtype=np.float32)
            if float_dtype == np.float16 and v.size and np.abs(v).max() > np.finfo(np.float16).max:
                raise ExportError(
                    f"tensor {k!r} has values up to {np.abs(v).max():.4g}, beyond float16's range "
                    f"({np.finfo(np.float16).max:g}); export it with float_dtype='float32'"
                )
            out[k] = np.ascontiguousarray(v, dtype=float_dtype)
        return out


class _Ctx:
    """What a lowering function sees of the fx node it lowers."""

    def __init__(self, b: Builder, node: fx.Node, module: nn.Module | None, key: str):
        self.b, self.node, self.module, self.key = b, node, module, key

    @property
    def name(self) -> str:
        if self.node.op == "call_module":
            return module_path(self.node.target) or "model"
        path, _ = scope(self.node)
        return f"{path}.{self.key}" if path else self.key

    def fail(self, reason: str):
        raise ExportError(f"{describe(self.node, self.module)}: {reason}")

    def emit(self, op, inputs, *, attrs=None, tensors=None) -> Act:
        return self.b.node(self.name, op, inputs, attrs=attrs, tensors=tensors)

    def act(self, v, what="input") -> Act:
        if not isinstance(v, Act):
            self.fail(f"its {what} must be the model's activation, got {type(v).__name__}")
        return v

    def const(self, v, what):
        if isinstance(v, Act) or _has_batch(v):
            self.fail(f"its {what} must be a constant (a parameter or buffer), not computed from the input")
        return v


def _has_batch(v) -> bool:
    if v is BATCH:
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_batch(e) for e in v)
    if isinstance(v, dict):
        return any(_has_batch(e) for e in v.values())
    return False


def _acts(v) -> list:
    if isinstance(v, Act):
        return [v]
    if isinstance(v, (list, tuple)):
        return [a for e in v for a in _acts(e)]
    if isinstance(v, dict):
        return [a for e in v.values() for a in _acts(e)]
    return []


def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


# --- layers -----------------------------------------------------------------------------------------------


def conv_node(c: _Ctx, x, weight, bias, stride, padding, dilation, groups, order=None, padding_mode="zeros"):
    """A float (``order`` None) or binary convolution; ``padding`` as PyTorch takes it (ints or a string)."""
    x = c.act(x)
    if padding_mode != "zeros":
        c.fail(f"padding_mode={padding_mode!r}: only zero padding is supported")
    w = _np(c.const(weight, "weight"))
    if w.ndim != 4:
        c.fail(f"a conv2d weight must be 4-D, got shape {list(w.shape)}")
    kh, kw = w.shape[2:]
    dilation = _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0, 0]
        else:  # "same" (stride 1): total padding d*(k-1) per axis, which must split evenly to be zero padding
            total = [dilation[0] * (kh - 1), dilation[1] * (kw - 1)]
            if any(t % 2 for t in total):
                c.fail(f"padding='same' pads {total} unevenly (only symmetric zero padding is supported)")
            padding = [t // 2 for t in total]
    attrs = {"stride": _pair(stride), "padding": _pair(padding), "dilation": dilation}
    b = None if bias is None else _np(c.const(bias, "bias"))
    if order is None:
        if groups != 1:
            attrs["groups"] = int(groups)
        return c.emit("conv2d", [x], attrs=attrs, tensors={"weight": w, "bias": b})
    if groups != 1:
        c.fail(f"a binary convolution with groups={groups} (only groups=1; keep it full precision)")
    return c.emit("binary_conv2d", [x], attrs={"order": int(order), "shape": list(w.shape), **attrs},
                  tensors=_binary_tensors(w, b))


def linear_node(c: _Ctx, x, weight, bias, order=None):
    x = c.act(x)
    if len(x.shape) != 1:
        c.fail(f"a linear layer on a {tuple(x.shape)} input per sample acts on its last axis; the format's "
               "linear takes (N, F): flatten first")
    w = _np(c.const(weight, "weight"))
    b = None if bias is None else _np(c.const(bias, "bias"))
    if order is None:
        return c.emit("linear", [x], tensors={"weight": w, "bias": b})
    return c.emit("binary_linear", [x], attrs={"order": int(order), "shape": list(w.shape)},
                  tensors=_binary_tensors(w, b))


def _binary_tensors(w, bias):
    flat = w.reshape(w.shape[0], -1)
    return {"bits": pack_signs(flat), "alpha": np.abs(flat).mean(axis=1), "bias": bias}


def bn_affine(c: _Ctx, mean, var, weight, bias, eps):
    """Per-channel ``(scale, shift)`` (float64) of a BatchNorm that uses its running statistics."""
    if mean is None or var is None:
        c.fail("it has no running statistics (track_running_stats=False normalizes by batch statistics)")
    scale = 1.0 / np.sqrt(_np(var) + float(eps))
    shift = -_np(mean) * scale
    if weight is not None:
        scale, shift = scale * _np(weight), shift * _np(weight)
    if bias is not None:
        shift = shift + _np(bias)
    return scale, shift


def affine_node(c: _Ctx, x: Act, scale, shift) -> Act:
    if len(x.shape) not in (1, 3):
        c.fail(f"a per-channel affine on a {tuple(x.shape)} input per sample (the format has (C,) and (C, H, W))")
    n = x.shape[0]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (n,)).copy()
    shift = np.broadcast_to(np.asarray(shift, np.float64), (n,)).copy()
    return c.emit("affine", [x], tensors={"scale": scale, "shift": shift})


def _per_channel(c: _Ctx, x: Act, value, what) -> np.ndarray:
    """A constant that broadcasts against ``x`` along the channel axis only, as ``(C,)`` float64."""
    arr = _np(value)
    full = 1 + len(x.shape)
    if arr.ndim > full:
        c.fail(f"{what} of shape {list(arr.shape)} has more axes than the activation {('N',) + x.shape}")
    arr = arr.reshape((1,) * (full - arr.ndim) + arr.shape)
    if arr.shape[0] != 1 or any(d != 1 for d in arr.shape[2:]) or arr.shape[1] not in (1, x.shape[0]):
        c.fail(f"{what} of shape {list(arr.shape)} is not a per-channel constant for an activation of shape "
               f"{('N',) + x.shape} (only a scalar or one value per channel is supported)")
    return np.broadcast_to(arr.reshape(-1), (x.shape[0],)).astype(np.float64)


# --- ops --------------------------------------------------------------------------------------------------


def _add(c, args, kwargs, sign=1.0):
    a, b = args[0], args[1]
    alpha = float(kwargs.get("alpha", 1))
    if isinstance(a, Act) and isinstance(b, Act):
        if sign != 1.0 or alpha != 1.0:
            c.fail("only the sum of two activations (a + b) is supported, not a difference or a scaled sum")
        if a.shape != b.shape:
            c.fail(f"adds activations of shapes {a.shape} and {b.shape}; only equal shapes are supported")
        return c.emit("add", [a, b])
    if isinstance(a, Act):
        return affine_node(c, a, 1.0, sign * alpha * _per_channel(c, a, c.const(b, "other operand"), "the constant"))
    x = c.act(b, "operand")
    return affine_node(c, x, sign * alpha, _per_channel(c, x, c.const(a, "other operand"), "the constant"))


def _mul(c, args, kwargs, divide=False):
    a, b = args[0], args[1]
    if isinstance(a, Act) and isinstance(b, Act):
        c.fail("multiplies two activations; only a product with a per-channel constant is supported")
    if divide and not isinstance(a, Act):
        c.fail("divides a constant by an activation")
    if kwargs.get("rounding_mode") is not None:
        c.fail(f"rounding_mode={kwargs['rounding_mode']!r}")
    x, k = (a, b) if isinstance(a, Act) else (b, a)
    s = _per_channel(c, x, c.const(k, "other operand"), "the constant")
    if divide:
        if (s == 0).any():
            c.fail("divides by zero")
        s = 1.0 / s
    return affine_node(c, x, s, 0.0)


def _relu(c, args, kwargs):
    return c.emit("relu", [c.act(args[0])])


def _hardtanh(c, x, lo, hi):
    if not lo < hi:
        c.fail(f"needs min_val < max_val, got {lo}, {hi}")
    return c.emit("hardtanh", [c.act(x)], attrs={"min_val": float(lo), "max_val": float(hi)})


def _clamp(c, args, kwargs):
    lo, hi = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        c.fail("clamp bounds must be numbers")
    if lo is not None and hi is not None:
        return _hardtanh(c, args[0], lo, hi)
    if lo == 0 and hi is None:
        return c.emit("relu", [c.act(args[0])])
    c.fail(f"clamp(min={lo}, max={hi}): only clamp(min=0) (relu) or both bounds (hardtanh) are supported")


def _leaky(c, x, slope):
    if float(slope) == 0.0:
        return c.emit("relu", [c.act(x)])
    return c.emit("leaky_relu", [c.act(x)], attrs={"negative_slope": float(slope)})


def _prelu(c, x, weight):
    x = c.act(x)
    w = _np(c.const(weight, "weight")).reshape(-1)
    if w.shape[0] not in (1, x.shape[0]):
        c.fail(f"prelu has {w.shape[0]} slopes for {x.shape[0]} channels")
    return c.emit("prelu", [x], tensors={"weight": w})


def _pool(c, op, x, kernel, stride, padding, dilation=1, ceil_mode=False, extra=None):
    if ceil_mode:
        c.fail("ceil_mode=True is not supported (floor mode only)")
    stride = kernel if stride is None or stride == [] or stride == () else stride
    attrs = {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding)}
    if op == "max_pool2d":
        attrs["dilation"] = _pair(dilation)
    attrs.update(extra or {})
    return c.emit(op, [c.act(x)], attrs=attrs)


def _gap(c, x, output_size):
    x = c.act(x)
    sizes = [output_size] * 2 if isinstance(output_size, int) else list(output_size or [])
    if sizes != [1, 1]:
        c.fail(f"output_size={output_size!r}: only 1 (global average pooling) is supported")
    return c.emit("global_avg_pool", [x])


def _mean(c, args, kwargs):
    x = c.act(args[0])
    dims = _arg(args, kwargs, 1, "dim")
    keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
    if kwargs.get("dtype") is not None:
        c.fail("mean with a dtype")
    rank = len(x.shape) + 1
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if rank != 4 or sorted(d % rank for d in dims) != [2, 3]:
        c.fail(f"a mean over dims {dims} of a rank-{rank} activation; only the mean over H and W (dims 2, 3) "
               "is supported")
    y = c.emit("global_avg_pool", [x])
    return y if keepdim else c.emit("flatten", [y])


def _reshape(c, args, kwargs, call):
    """view / reshape / flatten / squeeze: only ``(N, -1)`` flattening (or no change) is supported.

    The result's shape is computed by PyTorch on meta tensors for two batch sizes, so that ``x.size(0)``,
    ``-1`` and literal sizes all count, and a literal batch size (which would break other batch sizes) does
    not pass.
    """
    acts = _acts((args, kwargs))
    if len(acts) != 1:
        c.fail("a reshape of more than one activation")
    x = acts[0]
    outs = set()
    for n in (5, 7):
        t = torch.empty((n,) + x.shape, device="meta")
        sub = _substitute((args, kwargs), t, n)
        try:
            y = call(*sub[0], **sub[1])
        except Exception as exc:  # the reshape is impossible for this batch size
            c.fail(f"it fails for a batch of {n}: {exc}")
        outs.add(tuple(y.shape[1:]) if y.dim() >= 1 and y.shape[0] == n else ("batch axis changed",))
    if outs == {x.shape}:
        return x
    if outs == {(math.prod(x.shape),)}:
        return c.emit("flatten", [x])
    c.fail(f"reshapes (N, {', '.join(map(str, x.shape))}) to {sorted(outs, key=str)} per sample; only (N, -1) "
           "flattening is supported")


def _substitute(v, t, n):
    if isinstance(v, Act):
        return t
    if v is BATCH:
        return n
    if isinstance(v, tuple):
        return tuple(_substitute(e, t, n) for e in v)
    if isinstance(v, list):
        return [_substitute(e, t, n) for e in v]
    if isinstance(v, dict):
        return {k: _substitute(e, t, n) for k, e in v.items()}
    return v


def _cat(c, args, kwargs):
    xs = _arg(args, kwargs, 0, "tensors")
    dim = _arg(args, kwargs, 1, "dim", 0)
    if not isinstance(xs, (list, tuple)) or not all(isinstance(a, Act) for a in xs):
        c.fail("concatenates something other than activations (a constant or a computed value)")
    if len(xs) == 1:
        return xs[0]
    rank = len(xs[0].shape) + 1
    if dim % rank != 1:
        c.fail(f"concatenates along dim {dim} of a rank-{rank} activation; only channels (dim 1) are supported")
    return c.emit("concat", list(xs))


def _dropout(c, args, kwargs):
    p = float(_arg(args, kwargs, 1, "p", 0.5))
    training = _arg(args, kwargs, 2, "training", True)
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
    if isinstance(v, tuple) and isinstance(idx, int):
        return v[idx]
    c.fail(f"indexes {type(v).__name__} with {idx!r}")


def _linear_fn(c, args, kwargs):
    return linear_node(c, args[0], _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias"))


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
    get = lambda i, name, d: _arg(args, kwargs, i, name, d)  # noqa: E731
    return conv_node(c, args[0], get(1, "weight", None), get(2, "bias", None), get(3, "stride", 1),
                     get(4, "padding", 0), get(5, "dilation", 1), get(6, "groups", 1))


def _bn_fn(c, args, kwargs):
    get = lambda i, name, d: _arg(args, kwargs, i, name, d)  # noqa: E731
    x = c.act(args[0])
    if get(5, "training", False):
        c.fail("batch_norm with training=True normalizes by batch statistics")
    s, t = bn_affine(c, get(1, "running_mean", None), get(2, "running_var", None), get(3, "weight", None),
                     get(4, "bias", None), get(7, "eps", 1e-5))
    return affine_node(c, x, s, t)


def _max_pool_fn(c, args, kwargs):
    get = lambda i, name, d: _arg(args, kwargs, i, name, d)  # noqa: E731
    if get(6, "return_indices", False):
        c.fail("return_indices=True")
    return _pool(c, "max_pool2d", args[0], get(1, "kernel_size", None), get(2, "stride", None),
                 get(3, "padding", 0), get(4, "dilation", 1), get(5, "ceil_mode", False))


def _avg_pool_fn(c, args, kwargs):
    get = lambda i, name, d: _arg(args, kwargs, i, name, d)  # noqa: E731
    if get(6, "divisor_override", None) is not None:
        c.fail("divisor_override is not supported")
    return _pool(c, "avg_pool2d", args[0], get(1, "kernel_size", None), get(2, "stride", None),
                 get(3, "padding", 0), ceil_mode=get(4, "ceil_mode", False),
                 extra={"count_include_pad": bool(get(5, "count_include_pad", True))})


#: Lowering of ``call_function`` targets and ``call_method`` names: key -> fn(ctx, args, kwargs). The key
#: also names the node (``"<module path>.<key>"``).
LOWER = {
    "add": _add,
    "sub": lambda c, a, k: _rsub(c, a, k) if isinstance(a[1], Act) and not isinstance(a[0], Act)
    else _add(c, a, k, sign=-1.0),
    "mul": _mul,
    "div": lambda c, a, k: _mul(c, a, k, divide=True),
    "relu": _relu,
    "relu6": lambda c, a, k: _hardtanh(c, a[0], 0.0, 6.0),
    "hardtanh": lambda c, a, k: _hardtanh(c, a[0], _arg(a, k, 1, "min_val", -1.0), _arg(a, k, 2, "max_val", 1.0)),
    "clamp": _clamp,
    "leaky_relu": lambda c, a, k: _leaky(c, a[0], _arg(a, k, 1, "negative_slope", 0.01)),
    "prelu": lambda c, a, k: _prelu(c, a[0], _arg(a, k, 1, "weight")),
    "conv2d": _conv_fn,
    "linear": _linear_fn,
    "addmm": _addmm,
    "matmul": _matmul,
    "batch_norm": _bn_fn,
    "max_pool2d": _max_pool_fn,
    "avg_pool2d": _avg_pool_fn,
    "adaptive_avg_pool2d": lambda c, a, k: _gap(c, a[0], _arg(a, k, 1, "output_size")),
    "mean": _mean,
    "cat": _cat,
    "dropout": _dropout,
    "identity": lambda c, a, k: c.act(a[0]),
    "size": lambda c, a, k: _size(c, c.act(a[0]), _arg(a, k, 1, "dim")),
    "dim": lambda c, a, k: len(c.act(a[0]).shape) + 1,
    "getattr": _getattr,
    "getitem": _getitem,
}


def _rsub(c, args, kwargs):
    x = c.act(args[1], "operand")
    if float(kwargs.get("alpha", 1)) != 1:
        c.fail("rsub with alpha other than 1")
    return affine_node(c, x, -1.0, _per_channel(c, x, c.const(args[0], "other operand"), "the constant"))


_RESHAPES = {"view", "reshape", "flatten", "squeeze"}

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
    torch.mm: "matmul", F.batch_norm: "batch_norm", torch.batch_norm: "batch_norm",
    F.max_pool2d: "max_pool2d", torch.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d", torch._C._nn.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch.mean: "mean", torch.cat: "cat", torch.concat: "cat", torch.concatenate: "cat",
    F.dropout: "dropout", F.dropout1d: "dropout", F.dropout2d: "dropout", F.alpha_dropout: "dropout",
    F.feature_alpha_dropout: "dropout", torch.dropout: "dropout",
    getattr: "getattr", operator.getitem: "getitem",
    torch.flatten: "flatten", torch.reshape: "reshape", torch.squeeze: "squeeze",
}
METHODS = {
    "add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul", "mul_": "mul", "div": "div",
    "div_": "div", "relu": "relu", "relu_": "relu", "clamp": "clamp", "clamp_": "clamp", "clip": "clamp",
    "clip_": "clamp", "mean": "mean", "matmul": "matmul", "mm": "matmul", "contiguous": "identity",
    "clone": "identity", "detach": "identity", "size": "size", "dim": "dim",
    "view": "view", "reshape": "reshape", "flatten": "flatten", "squeeze": "squeeze",
}


def lower_call(b: Builder, node: fx.Node, args, kwargs):
    """Lowers a ``call_function``/``call_method`` node whose arguments are already lowered values."""
    if node.op == "call_method":
        key = METHODS.get(node.target)
    else:
        key = FUNCTIONS.get(node.target)
    c = _Ctx(b, node, None, key or "op")
    if key in _RESHAPES:
        if node.op == "call_method":
            return _reshape(c, args, kwargs, lambda t, *a, **k: getattr(t, node.target)(*a, **k))
        return _reshape(c, args, kwargs, node.target)
    if key is None:
        c.fail("unsupported op")
    if not _acts((args, kwargs)) and key not in ("getitem",):
        c.fail("computes with the batch size")  # constants were evaluated before; reached only with BATCH
    return LOWER[key](c, list(args), dict(kwargs))


#: Module types :func:`lower_module` handles (a subclass counts when it keeps the forward: trace.Tracer).
MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.modules.dropout._DropoutNd,
           nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d)


def check_supported(gm: fx.GraphModule) -> None:
    """Names the first op or module on the input's path that nothing lowers, before anything is lowered
    (a shape error further down would hide it).

    Raises:
        ExportError: an unsupported op or module, with its module path and source line.
    """
    dependent = set()
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


def lower_module(b: Builder, node: fx.Node, m: nn.Module, args, kwargs):
    """Lowers a ``call_module`` node (a PyTorch layer or a horq layer, called on lowered values)."""
    c = _Ctx(b, node, m, "")
    if len(args) != 1 or kwargs:
        c.fail("a layer called with more than one argument")
    x = args[0]
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        order = getattr(m, "order", None) if is_horq_layer(m) else None
        if isinstance(m, nn.Linear):
            return linear_node(c, x, m.weight, m.bias, order)
        return conv_node(c, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, order, m.padding_mode)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        s, t = bn_affine(c, m.running_mean, m.running_var, m.weight, m.bias, m.eps)
        return affine_node(c, c.act(x), s, t)
    if isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd)):
        return c.act(x)
    if isinstance(m, nn.ReLU):
        return c.emit("relu", [c.act(x)])
    if isinstance(m, nn.Hardtanh):  # ReLU6 too
        return _hardtanh(c, x, m.min_val, m.max_val)
    if isinstance(m, nn.LeakyReLU):
        return _leaky(c, x, m.negative_slope)
    if isinstance(m, nn.PReLU):
        return _prelu(c, x, m.weight)
    if isinstance(m, nn.Flatten):
        return _reshape(c, [x], {}, lambda t: torch.flatten(t, m.start_dim, m.end_dim))
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            c.fail("return_indices=True")
        return _pool(c, "max_pool2d", x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            c.fail("divisor_override is not supported")
        return _pool(c, "avg_pool2d", x, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode,
                     extra={"count_include_pad": bool(m.count_include_pad)})
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _gap(c, x, m.output_size)
    c.fail("unsupported module")


__all__ = ["Act", "BATCH", "Builder", "FUNCTIONS", "METHODS", "MODULES", "check_supported", "compact_attrs",
           "lower_call", "lower_module"]
