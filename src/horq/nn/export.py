"""Export a PyTorch model to a packed ``.horq`` file (docs/FORMAT.md): ``horq.export(model, path)``.

The exporter walks ``nn.Sequential`` containers (nested ones too) and :class:`Residual` blocks and emits one
graph node per computing module, in execution order, with the eval-mode semantics of the model:

* A layer with ``order`` not None (``HORQConv2d``/``HORQLinear``, detected by the attribute, so any
  ``nn.Conv2d``/``nn.Linear`` subclass with ``order`` works) becomes ``binary_conv2d``/``binary_linear``:
  ``PackedWeights`` bits (``horq.bits.pack_signs(w.reshape(C_out, -1))``, uint64) and float32 ``alpha``.
  A BatchNorm right after it is folded into the node's output ``scale``/``shift`` (exact: it is applied
  after the binary arithmetic). Where it can, ``alpha`` then moves into a later per-channel scale and the
  file stores none (:func:`_fold_alphas`, docs/FORMAT.md).
* A full-precision ``Conv2d``/``Linear`` is stored as float32; a BatchNorm right after it is folded into
  its weight and bias, and a BatchNorm right before a full-precision ``Linear`` too (both exact up to
  float rounding; not before a convolution, whose zero padding would not see the shift).
* Any other BatchNorm (e.g. before a binary layer, where quantization is nonlinear) becomes an ``affine``
  node with the per-channel scale and shift of its running statistics.
* ``Dropout`` and ``Identity`` vanish; ReLU, Hardtanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1) and
  Flatten map to their ops. Anything else raises :class:`ExportError` naming the module's path and type.
* Attributes equal to the op's default are left out (the file's header is part of its size).

``float_dtype="float16"`` stores every float tensor (per-channel parameters and full-precision weights) in
half precision, halving their bytes; the runtime upcasts them and computes in float32. It rounds those
parameters (relative error <= 2**-11), so logits move slightly: docs/FORMAT.md ("Size") measures it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import horq
from horq import format as hformat
from horq.format import spec as hspec
from horq.bits import pack_signs


class ExportError(ValueError):
    """The model contains something the ``.horq`` format cannot express."""


class Residual(nn.Module):
    """``body(x) + shortcut(x)`` (identity shortcut when ``shortcut`` is None): horq's residual block.

    Exported as the body's nodes, the shortcut's nodes (if any), and an ``add`` node.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


def _np(t) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _pair(v):
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


def _is_binary(m) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Linear)) and getattr(m, "order", None) is not None


def _bn_affine(path, bn):
    """Per-channel ``(scale, shift)`` (float64) of a BatchNorm in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError(f"cannot export module {path!r} of type {type(bn).__name__}: it has no running statistics")
    scale = 1.0 / np.sqrt(_np(bn.running_var) + bn.eps)
    shift = -_np(bn.running_mean) * scale
    if bn.weight is not None:
        scale, shift = scale * _np(bn.weight), shift * _np(bn.weight)
    if bn.bias is not None:
        shift = shift + _np(bn.bias)
    return scale, shift


class _Builder:
    def __init__(self):
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.names: set[str] = set()

    def node(self, name, op, inputs, *, attrs=None, tensors=None) -> str:
        name = name or op
        if name in self.names or name == hformat.INPUT:
            i = 1
            while f"{name}:{i}" in self.names:
                i += 1
            name = f"{name}:{i}"
        self.names.add(name)
        refs = {}
        for role, arr in (tensors or {}).items():
            if arr is None:
                continue
            tname = f"{name}.{role}"
            self.tensors[tname] = arr  # float64 (or uint64 bits) until finish(): folding stays exact
            refs[role] = tname
        node = {"name": name, "op": op, "inputs": list(inputs)}
        attrs = _compact_attrs(op, attrs or {})
        if attrs:
            node["attrs"] = attrs
        if refs:
            node["tensors"] = refs
        self.nodes.append(node)
        return name

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


#: Attributes the format accepts as one integer for an equal pair.
_PAIR_ATTRS = ("kernel", "stride", "padding", "dilation")


def _compact_attrs(op: str, attrs: dict) -> dict:
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


def _normal(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _layer_node(b: _Builder, path, m, x, *, pre=None, post=None) -> str:
    """A conv/linear node; ``pre``/``post`` are (scale, shift) of BatchNorms folded before/after it."""
    is_conv = isinstance(m, nn.Conv2d)
    if is_conv:
        if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str) and m.padding != "valid":
            raise ExportError(
                f"cannot export module {path!r} of type {type(m).__name__}: only groups=1, zero padding given as "
                f"integers are supported (groups={m.groups}, padding={m.padding!r}, mode={m.padding_mode!r})"
            )
        padding = [0, 0] if isinstance(m.padding, str) else _pair(m.padding)
        attrs = {"stride": _pair(m.stride), "padding": padding, "dilation": _pair(m.dilation)}
    else:
        attrs = {}
    w = _np(m.weight)
    bias = None if m.bias is None else _np(m.bias)
    cout = w.shape[0]
    if pre is not None:  # BN before a float linear: W (s x + t) + b = (W s) x + (W t + b)
        s, t = pre
        bias = (0.0 if bias is None else bias) + w @ t
        w = w * s[None, :]
    order = getattr(m, "order", None)
    if order is None:
        if post is not None:  # BN after a float layer: s (W x + b) + t
            s, t = post
            w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
            bias = s * (0.0 if bias is None else bias) + t
        tensors = {"weight": w, "bias": bias}
        op = "conv2d" if is_conv else "linear"
    else:
        flat = w.reshape(cout, -1)
        tensors = {
            "bits": pack_signs(flat),
            "alpha": np.abs(flat).mean(axis=1),
            "bias": bias,
            "scale": None if post is None else post[0],
            "shift": None if post is None else post[1],
        }
        attrs = {"order": int(order), "shape": [int(d) for d in w.shape], **attrs}
        op = "binary_conv2d" if is_conv else "binary_linear"
    return b.node(path, op, [x], attrs=attrs, tensors=tensors)


def _simple_node(b: _Builder, path, m, x) -> str | None:
    """Nodes of modules without parameters; None for a module that vanishes (Identity, Dropout)."""
    where = f"cannot export module {path!r} of type {type(m).__name__}"
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return None
    if isinstance(m, nn.ReLU):
        return b.node(path, "relu", [x])
    if isinstance(m, nn.Hardtanh):
        return b.node(path, "hardtanh", [x], attrs={"min_val": float(m.min_val), "max_val": float(m.max_val)})
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ExportError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported")
        return b.node(path, "flatten", [x])
    if isinstance(m, nn.MaxPool2d):
        if m.ceil_mode or m.return_indices:
            raise ExportError(f"{where}: ceil_mode and return_indices are not supported")
        stride = m.stride if m.stride is not None else m.kernel_size
        attrs = {"kernel": _pair(m.kernel_size), "stride": _pair(stride), "padding": _pair(m.padding),
                 "dilation": _pair(m.dilation)}
        return b.node(path, "max_pool2d", [x], attrs=attrs)
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or m.divisor_override is not None:
            raise ExportError(f"{where}: ceil_mode and divisor_override are not supported")
        stride = m.stride if m.stride is not None else m.kernel_size
        attrs = {"kernel": _pair(m.kernel_size), "stride": _pair(stride), "padding": _pair(m.padding),
                 "count_include_pad": bool(m.count_include_pad)}
        return b.node(path, "avg_pool2d", [x], attrs=attrs)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _pair(m.output_size) != [1, 1]:
            raise ExportError(f"{where}: only output_size=1 (global average pooling) is supported")
        return b.node(path, "global_avg_pool", [x])
    raise ExportError(f"{where}: unsupported module")


def _emit_sequence(b: _Builder, items, x) -> str:
    """Emits a list of ``(path, module)`` in order, folding BatchNorms into neighbouring layers."""
    i = 0
    while i < len(items):
        path, m = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else (None, None)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            post = None
            if isinstance(nxt[1], (nn.BatchNorm1d, nn.BatchNorm2d)):
                post = _bn_affine(*nxt)
                i += 1
            x = _layer_node(b, path, m, x, post=post)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            scale, shift = _bn_affine(path, m)
            nm = nxt[1]
            if isinstance(nm, nn.Linear) and not _is_binary(nm):
                after = items[i + 2] if i + 2 < len(items) else (None, None)
                post = _bn_affine(*after) if isinstance(after[1], (nn.BatchNorm1d, nn.BatchNorm2d)) else None
                x = _layer_node(b, nxt[0], nm, x, pre=(scale, shift), post=post)
                i += 1 + (post is not None)
            else:
                x = b.node(path, "affine", [x], tensors={"scale": scale, "shift": shift})
        elif isinstance(m, Residual):
            x = _emit_residual(b, path, m, x)
        elif isinstance(m, nn.Sequential):
            x = _emit_sequence(b, _children(path, m), x)
        else:
            x = _simple_node(b, path, m, x) or x
        i += 1
    return x


def _children(path, m):
    return [(f"{path}.{name}" if path else name, child) for name, child in m.named_children()]


def _emit_residual(b: _Builder, path, m: Residual, x) -> str:
    body = _emit_sequence(b, [(f"{path}.body" if path else "body", m.body)], x)
    short = x
    if m.shortcut is not None:
        short = _emit_sequence(b, [(f"{path}.shortcut" if path else "shortcut", m.shortcut)], x)
    if body == x or short == body:
        raise ExportError(f"cannot export module {path!r} of type Residual: its body computes nothing")
    return b.node(f"{path}.add" if path else "add", "add", [body, short])


#: Ops that commute with a positive per-channel scale c: op(c * x) = c * op(x), channel by channel.
_SCALE_COMMUTING = ("max_pool2d", "avg_pool2d", "global_avg_pool", "relu", "flatten")


def _fold_alphas(b: _Builder, output: str) -> None:
    """Moves each binary layer's ``alpha`` (> 0) into a later per-channel scale, so the file stores none.

    With the epilogue ``(alpha d + bias) * scale + shift``, alpha joins ``scale`` and ``bias`` becomes
    ``bias / alpha``. Without one, ``alpha d + bias = alpha (d + bias / alpha)`` and the factor alpha passes
    unchanged through ops in :data:`_SCALE_COMMUTING` (each the only reader of the one before) into the next
    ``affine`` node's scale, or into the input-channel columns of a float ``conv2d``/``linear`` (zero padding
    stays zero); ``flatten`` maps channel c to features ``c*H*W .. (c+1)*H*W - 1``. All of it is exact up to
    float rounding (the tensors are float64 until written). A layer whose alpha cannot move keeps it.
    """
    readers: dict[str, list] = {}
    for node in b.nodes:
        for ref in node["inputs"]:
            readers.setdefault(ref, []).append(node)
    for node in b.nodes:
        refs = node.get("tensors", {})
        if node["op"] not in hformat.BINARY_OPS or "alpha" not in refs:
            continue
        alpha = b.tensors[refs["alpha"]]
        if not (alpha > 0).all():
            continue
        if "scale" in refs:
            b.tensors[refs["scale"]] = b.tensors[refs["scale"]] * alpha
        elif "shift" in refs or not _fold_forward(b, node, alpha, readers, output):
            continue
        if "bias" in refs:
            b.tensors[refs["bias"]] = b.tensors[refs["bias"]] / alpha
        del b.tensors[refs.pop("alpha")]


def _fold_forward(b: _Builder, node, alpha, readers, output) -> bool:
    """Multiplies the per-channel factor ``alpha`` of ``node``'s output into the first per-channel scale
    downstream (see :func:`_fold_alphas`); False, changing nothing, where there is none."""
    factor = alpha
    cur = node
    while True:
        nxt = readers.get(cur["name"], [])
        if cur["name"] == output or len(nxt) != 1 or len(nxt[0]["inputs"]) != 1:
            return False
        cur = nxt[0]
        refs = cur.get("tensors", {})
        if cur["op"] == "flatten":
            factor = None  # expanded once the feature count is known
        elif cur["op"] in _SCALE_COMMUTING:
            continue
        elif cur["op"] == "affine":
            scale = b.tensors[refs["scale"]]
            b.tensors[refs["scale"]] = scale * _per_feature(alpha, factor, scale.shape[0])
            return True
        elif cur["op"] in ("conv2d", "linear"):
            w = b.tensors[refs["weight"]]
            if cur["op"] == "conv2d" and factor is None:
                return False
            f = _per_feature(alpha, factor, w.shape[1])
            b.tensors[refs["weight"]] = w * f.reshape((1, -1) + (1,) * (w.ndim - 2))
            return True
        else:
            return False


def _per_feature(alpha, factor, features):
    """``alpha`` per channel, repeated over the ``H*W`` features of each channel after a flatten."""
    return factor if factor is not None else np.repeat(alpha, features // alpha.shape[0])


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
        model: an ``nn.Module`` made of the supported modules (module docstring).
        input_shape: per-sample input shape ``(C, H, W)`` or ``(F,)``; inferred only when the model starts
            with a Linear layer.
        info: extra provenance stored in the graph's ``info``.
        float_dtype: ``"float32"`` (default) or ``"float16"``: how float tensors are stored.

    Returns:
        ``(graph_json, tensors)`` as :func:`horq.format.save` takes them.

    Raises:
        ExportError: on an unsupported module (naming its path and type), an uninferable input shape, or
            (float16) a value beyond float16's range.
        ValueError: an unknown ``float_dtype``.
    """
    dtype = _float_dtype(float_dtype)
    input_shape = [int(d) for d in (input_shape if input_shape is not None else _infer_input_shape(model))]
    b = _Builder()
    root = [("", model)] if not isinstance(model, nn.Sequential) else _children("", model)
    out = _emit_sequence(b, [(p or "model", m) for p, m in root], hformat.INPUT)
    if out == hformat.INPUT:
        raise ExportError("the model computes nothing (no exportable modules)")
    _fold_alphas(b, out)
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
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
