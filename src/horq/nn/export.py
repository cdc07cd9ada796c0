"""Export a PyTorch model to a packed ``.horq`` file (docs/FORMAT.md): ``horq.export(model, path)``.

Any model whose eval-mode forward is made of the supported ops exports, however its ``forward`` is written:

1. **Capture** (:mod:`horq.nn.trace`): ``torch.fx`` symbolic tracing, with horq's layers and PyTorch's
   layers kept whole (why not ``torch.export``: that module's docstring).
2. **Lower** (:mod:`horq.nn.lower` for layers, :mod:`horq.nn.lower_ops` for functional ops, into a
   :class:`horq.nn.graph.Builder`): each traced op becomes a ``.horq`` node; the format's shape inference
   checks every node as it is added, and a run of the model on two random samples checks every shape
   against PyTorch's. Supported, in module and functional form: conv2d (float and binary; any
   stride, padding, dilation; groups > 1 as a float op), linear / addmm / matmul with a constant weight,
   batch_norm with running statistics, relu, relu6, hardtanh, clamp, leaky_relu, prelu, the sum of two
   activations (``out += identity``), sums and products with a per-channel constant, max / avg pool 2d,
   adaptive avg pool to 1x1, the mean over H and W, flatten / view / reshape to ``(N, -1)``, cat along
   channels, dropout and identity (dropped). Anything computed from parameters alone (``self.w.t()``) is
   evaluated at export. Anything else raises :class:`ExportError` naming the op, the module path and, where
   the tracer recorded it, the source line.
3. **Fold** (:mod:`horq.nn.fold`), exactly up to float rounding:

   * A layer with ``order`` not None (``HORQConv2d``/``HORQLinear``, detected by the attribute, so any
     ``nn.Conv2d``/``nn.Linear`` subclass with ``order`` works) becomes ``binary_conv2d``/``binary_linear``:
     ``PackedWeights`` bits (``horq.bits.pack_signs(w.reshape(C_out, -1))``, uint64) and float32 ``alpha``.
     A BatchNorm that alone reads its output joins the node's output ``scale``/``shift``. Where it can,
     ``alpha`` then moves into a later per-channel scale and the file stores none.
   * A full-precision ``Conv2d``/``Linear`` is stored as float32; a BatchNorm after it is folded into its
     weight and bias, and a BatchNorm right before a full-precision ``Linear`` too (not before a
     convolution, whose zero padding would not see the shift).
   * Any other BatchNorm (e.g. before a binary layer, where quantization is nonlinear) is an ``affine`` node.

Attributes equal to the op's default are left out (the file's header is part of its size). Nodes are named
by module path (``"layer1.0.conv1"``); an op written in a module's ``forward`` by that path and the op
(``"layer1.0.add"``).

``float_dtype="float16"`` stores every float tensor (per-channel parameters and full-precision weights) in
half precision, halving their bytes; the runtime upcasts them and computes in float32. It rounds those
parameters (relative error <= 2**-11), so logits move slightly: docs/FORMAT.md ("Size") measures it.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import fx, nn

import horq
from horq import format as hformat
from horq.format import spec as hspec
from horq.nn import fold
from horq.nn.graph import BATCH, Act, Builder, View
from horq.nn.lower import lower_module
from horq.nn.lower_ops import check_supported, lower_call
from horq.nn.trace import ROOT, ExportError, capture, describe, source_line
from horq.sizes import float32_state_bytes


class Residual(nn.Module):
    """``body(x) + shortcut(x)`` (identity shortcut when ``shortcut`` is None): horq's residual block.

    Exported like any module: the body's nodes, the shortcut's nodes (if any), and an ``add`` node
    (``"<path>.add"``).
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


#: Ops that make random numbers: never evaluated at export, even on constants.
_RANDOM = ("rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson")


def _evaluate(gm: fx.GraphModule, node: fx.Node, args, kwargs):
    """Runs a node whose inputs are all constants (parameters, buffers, numbers) with PyTorch."""
    name = getattr(node.target, "__name__", str(node.target))
    if name.lstrip("_").startswith(_RANDOM):
        raise ExportError(f"{describe(node)}: random numbers cannot be exported")
    args, kwargs = fx.node.map_aggregate((args, kwargs), lambda v: v.clone() if isinstance(v, torch.Tensor) else v)
    with torch.no_grad():
        target = cast(Any, node.target)  # a str for modules and methods, a callable for functions
        if node.op == "call_module":
            return gm.get_submodule(target)(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        return target(*args, **kwargs)


def _constant(v) -> bool:
    found = []
    fx.node.map_aggregate(v, lambda e: found.append(e) if isinstance(e, (Act, View)) or e is BATCH else None)
    return not found


def _lower(gm: fx.GraphModule, b: Builder, model: nn.Module) -> tuple[str, dict]:
    """Lowers every node of the traced graph into ``b``; returns the output node's name and every fx
    node's lowered value."""
    env: dict = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":  # the one input of trace._Root, which calls the model with it alone
            env[node] = Act(hformat.INPUT, b.shapes[hformat.INPUT])
            continue
        if node.op == "get_attr":
            env[node] = _fetch(gm, node.target)
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "output":
            return _output(model, node, args[0]), env
        if _constant((args, kwargs)):
            env[node] = _evaluate(gm, node, args, kwargs)
        elif node.op == "call_module":
            env[node] = lower_module(b, node, gm.get_submodule(node.target), args, kwargs)
        else:
            env[node] = lower_call(b, node, args, kwargs)
    raise ExportError("the traced graph has no output")


def _fetch(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


def _output(model, node, value) -> str:
    where = f"cannot export module {ROOT!r} of type {type(model).__name__}"
    if isinstance(value, View):
        raise ExportError(f"{where}: it returns a reshape to {value.shape} per sample; only (N, -1) flattening "
                          "is supported")
    if not isinstance(value, Act):
        line = source_line(node)
        raise ExportError(f"{where}: it must return one tensor computed from its input, got "
                          f"{type(value).__name__}" + (f" (at {line})" if line else ""))
    if value.ref == hformat.INPUT:
        raise ExportError(f"{where}: the model computes nothing (its output is its input)")
    return value.ref


def _check_shapes(gm: fx.GraphModule, env: dict, input_shape) -> None:
    """Runs the traced model once (eval mode, two random samples) and checks that every lowered activation
    has the shape PyTorch computes: a lowering that changed a shape would be a wrong graph.

    Raises:
        ExportError: PyTorch cannot run the model on this input shape, or a shape differs (naming the op).
    """
    from torch.fx.passes.shape_prop import ShapeProp

    model = getattr(gm, ROOT)
    modes = {m: m.training for m in model.modules()}
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0), dtype=dtype)
    x = x.to(param.device if param is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:
        raise ExportError(f"the model fails on an input of shape (N, {', '.join(map(str, input_shape))}): "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        for m, mode in modes.items():
            m.training = mode
    for node, value in env.items():
        meta = node.meta.get("tensor_meta")
        if isinstance(value, Act) and meta is not None and tuple(meta.shape[1:]) != tuple(value.shape):
            raise ExportError(f"{describe(node)}: lowered to shape {tuple(value.shape)} per sample, but PyTorch "
                              f"computes {tuple(meta.shape[1:])} (an exporter bug: please report it)")


def _infer_input_shape(model):
    if getattr(model, "input_shape", None) is not None:  # set by horq.nn.build_model
        return tuple(model.input_shape)
    first = model
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ExportError("cannot infer the input shape of this model; pass input_shape=(C, H, W) or (F,)")


_FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16}


def _float_dtype(name):
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"float_dtype must be 'float32' or 'float16', got {name!r}")
    return _FLOAT_DTYPES[name]


def to_graph(model: nn.Module, *, input_shape=None, info: dict | None = None, float_dtype: str = "float32"):
    """Builds the ``.horq`` graph and tensors of ``model`` (eval-mode semantics) without writing a file.

    Args:
        model: an ``nn.Module`` whose forward uses the supported ops (module docstring).
        input_shape: per-sample input shape ``(C, H, W)`` or ``(F,)``; inferred only when the model starts
            with a Linear layer.
        info: extra provenance stored in the graph's ``info``.
        float_dtype: ``"float32"`` (default) or ``"float16"``: how float tensors are stored.

    Returns:
        ``(graph_json, tensors)`` as :func:`horq.format.save` takes them.

    Raises:
        ExportError: on an unsupported op or module (naming it, its module path and source line), a model
            torch.fx cannot trace, an uninferable input shape, or (float16) a value beyond float16's range.
        horq.format.GraphError: a layer that does not fit the shape of its input.
        ValueError: an unknown ``float_dtype``.
    """
    dtype = _float_dtype(float_dtype)
    input_shape = [int(d) for d in (input_shape if input_shape is not None else _infer_input_shape(model))]
    b = Builder(input_shape)
    gm = capture(model)
    check_supported(gm)
    out, env = _lower(gm, b, model)
    _check_shapes(gm, env, input_shape)
    out = fold.fold_affines(b, out)
    fold.fold_alphas(b, out)
    state_bytes = float32_state_bytes(model.state_dict().values())
    binary = [n["name"] for n in b.nodes if n["op"] in hformat.BINARY_OPS]
    graph_info = {
        "producer": f"horq {horq.__version__}",
        "float32_state_dict_bytes": int(state_bytes),
        "binary_nodes": len(binary),
        **(info or {}),
    }
    graph = {"input": {"shape": input_shape}, "nodes": b.nodes, "output": out, "info": graph_info}
    return graph, b.finish(dtype)


def export(model: nn.Module, path, *, input_shape=None, info: dict | None = None,
           float_dtype: str = "float32") -> hformat.Graph:
    """Writes ``model`` as a packed ``.horq`` file, atomically (docs/FORMAT.md).

    Args:
        model: the trained model (its eval-mode computation is exported; BatchNorm uses running stats).
        path: destination file; replaced atomically.
        input_shape: per-sample input shape (see :func:`to_graph`).
        info: extra provenance stored in the graph's ``info``.
        float_dtype: ``"float32"`` (default, exact) or ``"float16"`` (smaller file; parameters rounded).

    Returns:
        The validated graph that was written.

    Raises:
        ExportError: unsupported module (its path and type are named), or a value beyond float16's range.
        ValueError: an unknown ``float_dtype``.
        horq.format.HorqFormatError: the graph does not validate (e.g. input shape incompatible with it).

    Example:
        >>> horq.export(model, "model.horq", input_shape=(3, 32, 32))
    """
    graph, tensors = to_graph(model, input_shape=input_shape, info=info, float_dtype=float_dtype)
    hformat.save(path, graph, tensors)
    return _validated(graph, tensors)


def _validated(graph, tensors) -> hformat.Graph:
    names = {np.dtype(np.uint64): hspec.U64, np.dtype(np.float32): hspec.F32, np.dtype(np.float16): hspec.F16}
    return hformat.validate_graph(graph, {k: (names[v.dtype], v.shape) for k, v in tensors.items()})


__all__ = ["ExportError", "Residual", "export", "to_graph"]
