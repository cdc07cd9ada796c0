"""Native backend: binary layers run on :mod:`horq.kernels` (the C++ XNOR-popcount core).

Only the binary convolutions and linear layers of order >= 1 go native (the core has no order-0 path:
binary weights with real inputs is a float matmul); every other op runs on :mod:`horq.runtime.ops`.
:func:`prepare_all` imports the extension lazily, so a missing or unbuilt extension surfaces as ImportError
for the ``auto`` backend to fall back on.

A native op's params hold the :class:`horq.kernels.PackedWeights` and the optional epilogue ``bias``,
``scale``, ``shift`` (float32, per output channel), the same roles as the numpy ops' params, so that
:mod:`horq.runtime.fuse` can compose a following per-channel affine into either.
"""

from __future__ import annotations

import numpy as np

from horq.format import BINARY_OPS

EPILOGUE = ("bias", "scale", "shift")


def _kernels():
    import horq.kernels as kernels  # noqa: PLC0415 (lazy on purpose: the extension may be missing)

    for name in ("PackedWeights", "Conv2dLayer", "LinearLayer"):
        if not hasattr(kernels, name):
            raise ImportError(f"horq.kernels has no {name!r}")
    return kernels


def _alpha(params, cout):
    """The layer's alpha, or ones where the exporter folded it into a later scale (docs/FORMAT.md)."""
    arr = params.get("alpha")
    return np.ones(cout, np.float32) if arr is None else np.ascontiguousarray(arr, dtype=np.float32)


def prepare_all(graph, tensors: dict) -> dict:
    """Packs every binary node of order >= 1 for the kernels.

    Returns:
        ``{node name: (fn, params)}`` for the nodes that run natively; ``fn(node, params, x)`` once
        :func:`finalize` has built the layers (after fusion may have changed ``scale``/``shift``).

    Raises:
        ImportError: if :mod:`horq.kernels` (or its extension) cannot be imported.
    """
    kernels = _kernels()
    out = {}
    for node in graph.nodes:
        if node.op not in BINARY_OPS or node.attrs["order"] == 0:
            continue
        raw = {role: tensors[name] for role, name in node.tensors.items()}
        pw = kernels.PackedWeights(
            np.ascontiguousarray(raw["bits"], dtype=np.uint64), _alpha(raw, node.attrs["shape"][0]),
            tuple(node.attrs["shape"]),
        )
        params = {role: np.ascontiguousarray(raw[role], dtype=np.float32) for role in EPILOGUE if role in raw}
        params.update(kernels=kernels, pw=pw)
        out[node.name] = (run_layer, params)
    return out


def finalize(steps) -> None:
    """Builds each native step's prepared kernel layer (checks and epilogue done once), after
    :func:`horq.runtime.fuse.plan` has folded any later affine into the step's ``scale``/``shift`` and an
    earlier one into its ``in_scale``/``in_shift``."""
    for step in steps:
        if step.fn is not run_layer:
            continue
        p, a = step.params, step.node.attrs
        epilogue = {role: p.get(role) for role in EPILOGUE}
        if step.op == "binary_conv2d":
            p["layer"] = p["kernels"].Conv2dLayer(p["pw"], order=a["order"], stride=a["stride"],
                                                  padding=a["padding"], dilation=a["dilation"], **epilogue,
                                                  in_scale=p.get("in_scale"), in_shift=p.get("in_shift"),
                                                  out_floor=p.get("out_floor"))
        else:
            p["layer"] = p["kernels"].LinearLayer(p["pw"], order=a["order"], **epilogue)


def run_layer(node, params, x, residual=None):
    """The step's prepared layer on ``x`` (and, for a convolution that took a residual add, its addend)."""
    return params["layer"](x) if residual is None else params["layer"](x, residual)
