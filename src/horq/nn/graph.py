"""The ``.horq`` graph as the exporter builds it: activations (:class:`Act`), the symbolic batch size
(:data:`BATCH`) and the :class:`Builder` of nodes and tensors, which checks every node's shapes with the
format's own inference (:func:`horq.format.spec.infer_node`) as it is added."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from horq import format as hformat
from horq.format import spec as hspec
from horq.nn.trace import ExportError


@dataclass(frozen=True)
class Act:
    """An activation: the ``.horq`` node ``ref`` (or ``"input"``) and its per-sample shape."""

    ref: str
    shape: tuple


@dataclass(frozen=True)
class View:
    """A reshape of the activation ``src`` to a per-sample ``shape`` the format cannot hold (``(C, 1)`` after
    ``x.squeeze(-1)``), allowed only as a step of a chain of reshapes that ends in one it can."""

    src: Act
    shape: tuple


class _Batch:
    def __repr__(self):
        return "BATCH"


#: The batch size, symbolically (``x.size(0)``).
BATCH = _Batch()


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


__all__ = ["Act", "BATCH", "Builder", "View", "compact_attrs"]
