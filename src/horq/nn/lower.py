"""Lowering a traced model (:mod:`horq.nn.trace`) to ``.horq`` graph nodes, one fx node at a time.

Every fx node becomes one of:

* an activation (:class:`Act`: a node of the ``.horq`` graph and its per-sample shape) -- what the graph
  computes on the input;
* a constant (a tensor, number, tuple...) -- parameters, buffers, and anything computed from them alone,
  which is evaluated here with PyTorch (``self.weight.t()``, ``self.scale.view(1, -1, 1, 1)``);
* :data:`BATCH` (or a tuple holding it) -- the batch size, from ``x.size(0)`` or ``x.shape``, which may only
  feed a reshape.

Ops on activations map to ``.horq`` ops (docs/FORMAT.md): layers (``call_module``) here, the functional
ops a ``forward`` calls in :mod:`horq.nn.lower_ops`. BatchNorm and products/sums with a per-channel constant
become ``affine`` nodes, which :mod:`horq.nn.fold` later folds into neighbouring layers. Anything else
raises :class:`~horq.nn.trace.ExportError` naming the op, the module path and the source line. Each node's
output shape comes from the format's own shape inference (:class:`horq.nn.graph.Builder`), so the shapes
checked here are the ones the runtime will run.
"""

from __future__ import annotations

import math
from typing import NoReturn, cast

import numpy as np
import torch
from torch import fx, nn

from horq.bits import pack_signs
from horq.geometry import pair
from horq.nn.graph import BATCH, Act, Builder, View
from horq.nn.trace import ExportError, describe, is_horq_layer, module_path, scope
from horq.reference import weight_alpha


def _np(t) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _pair(v):
    return list(pair(v))  # JSON attributes are lists


class Ctx:
    """What a lowering function sees of the fx node it lowers."""

    def __init__(self, b: Builder, node: fx.Node, module: nn.Module | None, key: str):
        self.b, self.node, self.module, self.key = b, node, module, key

    @property
    def name(self) -> str:
        if self.node.op == "call_module":
            return module_path(cast(str, self.node.target)) or "model"
        path, _ = scope(self.node)
        return f"{path}.{self.key}" if path else self.key

    def fail(self, reason: str) -> NoReturn:
        raise ExportError(f"{describe(self.node, self.module)}: {reason}")

    def emit(self, op, inputs, *, attrs=None, tensors=None) -> Act:
        return self.b.node(self.name, op, inputs, attrs=attrs, tensors=tensors)

    def act(self, v, what="input") -> Act:
        if isinstance(v, View):
            self.fail(f"its {what} is a reshape to {v.shape} per sample; only (N, -1) flattening is supported")
        if not isinstance(v, Act):
            self.fail(f"its {what} must be the model's activation, got {type(v).__name__}")
        return v

    def const(self, v, what):
        if acts_in(v) or _has_batch(v):
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


def acts_in(v) -> list:
    """The activations (and views of them) in a nest of arguments."""
    if isinstance(v, (Act, View)):
        return [v]
    if isinstance(v, (list, tuple)):
        return [a for e in v for a in acts_in(e)]
    if isinstance(v, dict):
        return [a for e in v.values() for a in acts_in(e)]
    return []


def arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def conv_node(c: Ctx, x, weight, bias, stride, padding, dilation, groups, order=None, padding_mode="zeros"):
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


def linear_node(c: Ctx, x, weight, bias, order=None):
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
    return {"bits": pack_signs(flat), "alpha": weight_alpha(flat), "bias": bias}


def bn_affine(c: Ctx, mean, var, weight, bias, eps):
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


def affine_node(c: Ctx, x: Act, scale, shift) -> Act:
    if len(x.shape) not in (1, 3):
        c.fail(f"a per-channel affine on a {tuple(x.shape)} input per sample (the format has (C,) and (C, H, W))")
    n = x.shape[0]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (n,)).copy()
    shift = np.broadcast_to(np.asarray(shift, np.float64), (n,)).copy()
    return c.emit("affine", [x], tensors={"scale": scale, "shift": shift})


def per_channel(c: Ctx, x: Act, value, what) -> np.ndarray:
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


def hardtanh_node(c, x, lo, hi):
    if not lo < hi:
        c.fail(f"needs min_val < max_val, got {lo}, {hi}")
    return c.emit("hardtanh", [c.act(x)], attrs={"min_val": float(lo), "max_val": float(hi)})


def leaky_node(c, x, slope):
    if float(slope) == 0.0:
        return c.emit("relu", [c.act(x)])
    return c.emit("leaky_relu", [c.act(x)], attrs={"negative_slope": float(slope)})


def prelu_node(c, x, weight):
    x = c.act(x)
    w = _np(c.const(weight, "weight")).reshape(-1)
    if w.shape[0] not in (1, x.shape[0]):
        c.fail(f"prelu has {w.shape[0]} slopes for {x.shape[0]} channels")
    return c.emit("prelu", [x], tensors={"weight": w})


def pool_node(c, op, x, kernel, stride, padding, dilation=1, ceil_mode=False, extra=None):
    if ceil_mode:
        c.fail("ceil_mode=True is not supported (floor mode only)")
    stride = kernel if stride is None or stride == [] or stride == () else stride
    attrs = {"kernel": _pair(kernel), "stride": _pair(stride), "padding": _pair(padding)}
    if op == "max_pool2d":
        attrs["dilation"] = _pair(dilation)
    attrs.update(extra or {})
    return c.emit(op, [c.act(x)], attrs=attrs)


def gap_node(c, x, output_size):
    x = c.act(x)
    sizes = [output_size] * 2 if isinstance(output_size, int) else list(output_size or [])
    if sizes != [1, 1]:
        c.fail(f"output_size={output_size!r}: only 1 (global average pooling) is supported")
    return c.emit("global_avg_pool", [x])


def reshape_node(c, args, kwargs, call):
    """view / reshape / flatten / squeeze / unsqueeze: only ``(N, -1)`` flattening (or no change) is
    supported, at the end of a chain of reshapes (``x.squeeze(-1).squeeze(-1)``; a step inside the chain may
    have any shape: :class:`~horq.nn.graph.View`).

    The result's shape is computed by PyTorch on meta tensors for two batch sizes, so that ``x.size(0)``,
    ``-1`` and literal sizes all count, and a literal batch size (which would break other batch sizes) does
    not pass.
    """
    acts = acts_in((args, kwargs))
    if len(acts) != 1:
        c.fail("a reshape of more than one activation")
    x = acts[0]
    base = x.src if isinstance(x, View) else x
    outs = set()
    for n in (5, 7):
        t = torch.empty((n,) + x.shape, device="meta")
        sub = _substitute((args, kwargs), t, n)
        try:
            y = call(*sub[0], **sub[1])
        except Exception as exc:  # the reshape is impossible for this batch size
            c.fail(f"it fails for a batch of {n}: {exc}")
        outs.add(tuple(y.shape[1:]) if y.dim() >= 1 and y.shape[0] == n else ("batch axis changed",))
    if outs == {base.shape}:
        return base
    if outs == {(math.prod(base.shape),)}:
        return base if len(base.shape) == 1 else c.emit("flatten", [base])
    if len(outs) == 1 and c.node.users and all(is_reshape(u) for u in c.node.users):
        return View(base, outs.pop())
    c.fail(f"reshapes (N, {', '.join(map(str, x.shape))}) to {sorted(outs, key=str)} per sample; only (N, -1) "
           "flattening is supported")


#: The reshapes :func:`reshape_node` lowers, as methods and as functions.
RESHAPE_METHODS = ("view", "reshape", "flatten", "squeeze", "unsqueeze")
RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze)


def is_reshape(node: fx.Node) -> bool:
    """A node that :func:`reshape_node` lowers (a link of a chain of reshapes)."""
    if node.op == "call_method":
        return node.target in RESHAPE_METHODS
    if node.op == "call_function":
        return node.target in RESHAPE_FUNCTIONS
    if node.op == "call_module":
        owner = cast(fx.GraphModule, node.graph.owning_module)
        return isinstance(owner.get_submodule(cast(str, node.target)), nn.Flatten)
    return False


def _substitute(v, t, n):
    if isinstance(v, (Act, View)):
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


#: Module types :func:`lower_module` handles (a subclass counts when it keeps the forward: trace.Tracer).
MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.modules.dropout._DropoutNd,
           nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d)


def lower_module(b: Builder, node: fx.Node, m: nn.Module, args, kwargs):
    """Lowers a ``call_module`` node (a PyTorch layer or a horq layer, called on lowered values)."""
    c = Ctx(b, node, m, "")
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
        return hardtanh_node(c, x, m.min_val, m.max_val)
    if isinstance(m, nn.LeakyReLU):
        return leaky_node(c, x, m.negative_slope)
    if isinstance(m, nn.PReLU):
        return prelu_node(c, x, m.weight)
    if isinstance(m, nn.Flatten):
        return reshape_node(c, [x], {}, lambda t: torch.flatten(t, m.start_dim, m.end_dim))
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            c.fail("return_indices=True")
        return pool_node(c, "max_pool2d", x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            c.fail("divisor_override is not supported")
        return pool_node(c, "avg_pool2d", x, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode,
                         extra={"count_include_pad": bool(m.count_include_pad)})
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return gap_node(c, x, m.output_size)
    c.fail("unsupported module")


__all__ = ["MODULES", "Ctx", "acts_in", "affine_node", "arg", "bn_affine", "conv_node", "gap_node", "hardtanh_node",
           "leaky_node", "linear_node", "lower_module", "per_channel", "pool_node", "prelu_node", "reshape_node"]
