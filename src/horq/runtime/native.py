"""Native backend: binary layers run on :mod:`horq.kernels` (the C++ XNOR-popcount core).

Only the binary convolutions and linear layers of order >= 1 go native (the core has no order-0 path:
binary weights with real inputs is a float matmul); every other op is cheap next to them and runs on
:mod:`horq.runtime.ops`. :func:`prepare_all` imports the extension lazily, so a missing or unbuilt
extension surfaces as ImportError for the ``auto`` backend to fall back on.
"""

from __future__ import annotations

import numpy as np


def _kernels():
    import horq.kernels as kernels  # noqa: PLC0415 (lazy on purpose: the extension may be missing)

    for name in ("PackedWeights", "conv2d", "linear"):
        if not hasattr(kernels, name):
            raise ImportError(f"horq.kernels has no {name!r}")
    return kernels


def _optional(params, role):
    arr = params.get(role)
    return None if arr is None else np.ascontiguousarray(arr, dtype=np.float32)


def _alpha(params, cout):
    """The layer's alpha, or ones where the exporter folded it into a later scale (docs/FORMAT.md)."""
    arr = params.get("alpha")
    return np.ones(cout, np.float32) if arr is None else np.ascontiguousarray(arr, dtype=np.float32)


def prepare_all(graph, tensors: dict) -> dict:
    """Packs every binary node for the kernels.

    Returns:
        ``{node name: fn(node, params, x)}`` for the nodes that run natively.

    Raises:
        ImportError: if :mod:`horq.kernels` (or its extension) cannot be imported.
    """
    kernels = _kernels()
    out = {}
    for node in graph.nodes:
        if node.op not in ("binary_conv2d", "binary_linear") or node.attrs["order"] == 0:
            continue
        params = {role: tensors[name] for role, name in node.tensors.items()}
        pw = kernels.PackedWeights(
            np.ascontiguousarray(params["bits"], dtype=np.uint64),
            _alpha(params, node.attrs["shape"][0]),
            tuple(node.attrs["shape"]),
        )
        extra = {role: _optional(params, role) for role in ("bias", "scale", "shift")}
        if node.op == "binary_conv2d":
            a = node.attrs
            out[node.name] = _conv(kernels, pw, a["order"], a["stride"], a["padding"], a["dilation"], extra)
        else:
            out[node.name] = _linear(kernels, pw, node.attrs["order"], extra)
    return out


def _conv(kernels, pw, order, stride, padding, dilation, extra):
    def run(node, params, x):
        return kernels.conv2d(
            x, pw, order=order, stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation), **extra
        )

    return run


def _linear(kernels, pw, order, extra):
    def run(node, params, x):
        return kernels.linear(x, pw, order=order, **extra)

    return run
