"""Exact rewrites of a lowered graph before it is written (:func:`horq.nn.export.to_graph`).

* **Affines into layers** (:func:`fold_affines`). An ``affine`` (a BatchNorm in eval mode, or a product or sum
  with a per-channel constant) that is the only reader of a conv/linear layer joins it: into a float layer's
  weights and bias (``s (W x + b) + t``), into a binary layer's output ``scale``/``shift`` (applied after the
  binary arithmetic, so exact). An ``affine`` whose only reader is a float ``linear`` joins that layer's
  weights (``W (s x + t) + b = (W s) x + (W t + b)``; not a convolution, whose zero padding would not see the
  shift). Any other affine stays (typically before a binary layer, where quantization is nonlinear).
* **Alphas into later scales** (:func:`fold_alphas`): docs/FORMAT.md, "What the exporter emits".

Both work on the graph's readers, so they apply the same way in a chain of ``nn.Sequential`` modules and in
a DAG with fan-out; an output read twice is never folded into one of its readers. Tensors are float64 until
written, so every fold is exact up to one final rounding.
"""

from __future__ import annotations

import numpy as np

from horq import format as hformat

LAYER_OPS = ("conv2d", "linear", "binary_conv2d", "binary_linear")


def _readers(nodes, name):
    return [n for n in nodes if name in n["inputs"]]


def _set(b, node, role, value):
    refs = node.setdefault("tensors", {})
    refs.setdefault(role, f"{node['name']}.{role}")
    b.tensors[refs[role]] = value


def _drop(b, node):
    for tname in node.get("tensors", {}).values():
        del b.tensors[tname]


def _post_fold(b, layer, aff):
    """``layer`` absorbs the affine ``aff`` that reads its output."""
    refs = layer.get("tensors", {})
    s, t = b.tensors[aff["tensors"]["scale"]], b.tensors[aff["tensors"]["shift"]]
    if layer["op"] in ("conv2d", "linear"):
        w = b.tensors[refs["weight"]]
        b.tensors[refs["weight"]] = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        bias = b.tensors[refs["bias"]] if "bias" in refs else 0.0
        _set(b, layer, "bias", s * bias + t)
    elif "scale" in refs:  # a second affine after a binary layer composes with its epilogue
        _set(b, layer, "scale", b.tensors[refs["scale"]] * s)
        _set(b, layer, "shift", b.tensors[refs["shift"]] * s + t)
    else:
        _set(b, layer, "scale", s.copy())
        _set(b, layer, "shift", t.copy())


def _pre_fold(b, aff, linear):
    """The float ``linear`` absorbs the affine ``aff`` that is its input."""
    refs = linear["tensors"]
    s, t = b.tensors[aff["tensors"]["scale"]], b.tensors[aff["tensors"]["shift"]]
    w = b.tensors[refs["weight"]]
    bias = b.tensors[refs["bias"]] if "bias" in refs else 0.0
    _set(b, linear, "bias", bias + w @ t)
    b.tensors[refs["weight"]] = w * s[None, :]


def fold_affines(b, output: str) -> str:
    """Folds affines into neighbouring layers (module docstring), in node order: a layer takes the affine
    after it before that affine could join a later linear (as a ``Linear, BatchNorm1d, Linear`` chain reads).

    Returns:
        The graph's output node (a folded affine's layer takes its place).
    """
    removed = set()
    for node in list(b.nodes):
        name = node["name"]
        if name in removed:
            continue
        while node["op"] in LAYER_OPS and name != output:  # a layer takes every affine that follows it
            live = [n for n in b.nodes if n["name"] not in removed]
            readers = _readers(live, name)
            if len(readers) != 1 or readers[0]["op"] != "affine":
                break
            (aff,) = readers
            _post_fold(b, node, aff)
            removed.add(aff["name"])
            _drop(b, aff)
            for n in live:
                n["inputs"] = [name if r == aff["name"] else r for r in n["inputs"]]
            output = name if output == aff["name"] else output
        if node["op"] != "affine" or name == output:
            continue
        readers = _readers([n for n in b.nodes if n["name"] not in removed], name)
        if len(readers) != 1:
            continue
        (reader,) = readers
        if reader["op"] == "linear":
            _pre_fold(b, node, reader)
            removed.add(name)
            _drop(b, node)
            reader["inputs"] = list(node["inputs"])
    b.nodes[:] = [n for n in b.nodes if n["name"] not in removed]
    return output


#: Ops that commute with a positive per-channel scale c: op(c * x) = c * op(x), channel by channel.
SCALE_COMMUTING = ("max_pool2d", "avg_pool2d", "global_avg_pool", "relu", "flatten", "leaky_relu", "prelu")


def fold_alphas(b, output: str) -> None:
    """Moves each binary layer's ``alpha`` (> 0) into a later per-channel scale, so the file stores none.

    With the epilogue ``(alpha d + bias) * scale + shift``, alpha joins ``scale`` and ``bias`` becomes
    ``bias / alpha``. Without one, ``alpha d + bias = alpha (d + bias / alpha)`` and the factor alpha passes
    unchanged through ops in :data:`SCALE_COMMUTING` (each the only reader of the one before) into the next
    ``affine`` node's scale, or into the input-channel columns of a float ``conv2d`` (groups 1)/``linear``
    (zero padding stays zero); ``flatten`` maps channel c to features ``c*H*W .. (c+1)*H*W - 1``. All of it
    is exact up to float rounding (the tensors are float64 until written). A layer whose alpha cannot move
    keeps it.
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


def _fold_forward(b, node, alpha, readers, output) -> bool:
    """Multiplies the per-channel factor ``alpha`` of ``node``'s output into the first per-channel scale
    downstream (see :func:`fold_alphas`); False, changing nothing, where there is none."""
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
        elif cur["op"] in SCALE_COMMUTING:
            continue
        elif cur["op"] == "affine":
            scale = b.tensors[refs["scale"]]
            b.tensors[refs["scale"]] = scale * _per_feature(alpha, factor, scale.shape[0])
            return True
        elif cur["op"] in ("conv2d", "linear"):
            w = b.tensors[refs["weight"]]
            if cur["op"] == "conv2d" and (factor is None or cur.get("attrs", {}).get("groups", 1) != 1):
                return False
            f = _per_feature(alpha, factor, w.shape[1])
            b.tensors[refs["weight"]] = w * f.reshape((1, -1) + (1,) * (w.ndim - 2))
            return True
        else:
            return False


def _per_feature(alpha, factor, features):
    """``alpha`` per channel, repeated over the ``H*W`` features of each channel after a flatten."""
    return factor if factor is not None else np.repeat(alpha, features // alpha.shape[0])


__all__ = ["LAYER_OPS", "SCALE_COMMUTING", "fold_affines", "fold_alphas"]
