"""Load-time rewrites of a model's steps that save passes over the activations (numpy and native backends).

The graph is what the file says; these rewrites change how it is computed, not what, up to float rounding:

* **Affine into the layer's epilogue.** A conv/linear layer (float or binary) whose output goes, each the only
  reader of the one before, through an optional ``max_pool2d`` and a ``relu`` into an ``affine`` with
  scales ``s >= 0``: ``s relu(z) + t = max(s z + t, t)``, and ``max_pool2d`` commutes with the increasing
  per-channel map ``z -> s z + t`` (exactly: float rounding is monotone). So ``s``, ``t`` join the layer's
  output affine (``(y + bias) scale + shift`` becomes ``(y + bias)(scale s) + (shift s + t)``), and relu +
  affine become one in-place ``max(y, t)`` (:func:`floor`). Three passes over the map become one.
* **One epilogue pass.** A numpy layer (float weights ``M``) folds its output scale into ``M``:
  ``(M x + b) s + t = (s M) x + (s b + t)``.
* **In place.** ``relu``, ``affine``, ``hardtanh`` and that floor overwrite their input when nothing reads it
  (or a ``flatten`` view of it) later and it is not the caller's input array.

The reference backend (the oracle) runs the graph as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from horq import format as hformat

LAYER_OPS = ("conv2d", "binary_conv2d", "linear", "binary_linear")
#: Ops whose function may overwrite its input when ``params["in_place"]`` is set.
IN_PLACE_OPS = ("relu", "affine", "hardtanh", "floor")


@dataclass
class Step:
    """One call of the runtime: ``env[name] = fn(node, params, *env[inputs])``, then ``free`` is dropped."""

    name: str
    op: str
    fn: object
    node: object
    params: dict
    inputs: tuple
    free: tuple = field(default=())
    fused: tuple = field(default=())  # names of graph nodes this step computes besides its own


def floor(node, params, x):
    """``max(x, t[c])`` per channel (axis 1); the relu + affine of a fused chain."""
    return np.maximum(x, params["floor"], out=x if params.get("in_place") else None)


def plan(graph, steps: list[Step], *, fuse: bool = True) -> list[Step]:
    """Applies the rewrites (the epilogue fusion only when ``fuse``) and fills every step's ``free``."""
    if fuse:
        steps = [_collapse_epilogue(s) for s in _fuse_affines(graph, steps)]
    return _mark_in_place_and_free(graph, steps, in_place=fuse)


def _readers(steps):
    out: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        for ref in s.inputs:
            out.setdefault(ref, []).append(i)
    return out


def _fuse_affines(graph, steps):
    readers = _readers(steps)
    by_name = {s.name: i for i, s in enumerate(steps)}

    def sole_reader(name):
        idx = readers.get(name, [])
        if name == graph.output or len(idx) != 1 or len(steps[idx[0]].inputs) != 1:
            return None
        return steps[idx[0]]

    replaced: dict[int, Step | None] = {}
    for step in steps:
        if step.op not in LAYER_OPS or "dtype" in step.params and step.params["dtype"] != np.float32:
            continue
        pool = sole_reader(step.name)
        relu = pool if pool is not None and pool.op == "relu" else None
        if pool is not None and pool.op == "max_pool2d":
            relu = sole_reader(pool.name)
        else:
            pool = None
        aff = sole_reader(relu.name) if relu is not None and relu.op == "relu" else None
        if aff is None or aff.op != "affine":
            continue
        s = np.asarray(aff.params["scale"], np.float64)
        t = np.asarray(aff.params["shift"], np.float64)
        if (s < 0).any() or s.shape[0] != step.node.out_shape[0]:
            continue
        params = dict(step.params)
        old_s = np.asarray(params.get("scale", 1.0), np.float64)
        old_t = np.asarray(params.get("shift", 0.0), np.float64)
        params["scale"] = np.broadcast_to(old_s * s, s.shape).astype(np.float32)
        params["shift"] = np.broadcast_to(old_t * s + t, s.shape).astype(np.float32)
        replaced[by_name[step.name]] = replace(step, params=params)
        shape = (1, -1) + (1,) * (len(aff.node.out_shape) - 1)
        src = pool.name if pool is not None else step.name
        replaced[by_name[relu.name]] = Step(aff.name, "floor", floor, aff.node,
                                            {"floor": t.astype(np.float32).reshape(shape)}, (src,),
                                            fused=(relu.name,))
        replaced[by_name[aff.name]] = None
    out = []
    for i, s in enumerate(steps):
        s = replaced.get(i, s)
        if s is not None:
            out.append(s)
    return out


def _collapse_epilogue(step):
    """A numpy layer (float weights ``M``) computes ``(M x + b) s + t`` as ``(s M) x + (s b + t)``: one pass
    over its output instead of three."""
    p = step.params
    if "matrix" not in p or p.get("dtype") != np.float32 or not ("scale" in p or "shift" in p):
        return step
    rows = p["matrix"].shape[0]
    s = np.broadcast_to(np.asarray(p.get("scale", 1.0), np.float64), (rows,))
    t = np.broadcast_to(np.asarray(p.get("shift", 0.0), np.float64), (rows,))
    b = np.broadcast_to(np.asarray(p.get("bias", 0.0), np.float64), (rows,))
    params = {k: v for k, v in p.items() if k not in ("scale", "shift")}
    params["matrix"] = (p["matrix"] * s[:, None]).astype(np.float32)
    params["bias"] = (b * s + t).astype(np.float32)
    return replace(step, params=params)


def _mark_in_place_and_free(graph, steps, *, in_place):
    root = {hformat.INPUT: hformat.INPUT}
    for s in steps:
        root[s.name] = root[s.inputs[0]] if s.op == "flatten" else s.name
    last_use, last_alias_use = {graph.output: len(steps)}, {root[graph.output]: len(steps)}
    for i, s in enumerate(steps):
        for ref in s.inputs:
            last_use[ref] = max(last_use.get(ref, -1), i)
            last_alias_use[root[ref]] = max(last_alias_use.get(root[ref], -1), i)
    out = []
    for i, s in enumerate(steps):
        free = tuple(ref for ref in dict.fromkeys(s.inputs) if last_use[ref] == i)
        s = replace(s, free=free)
        if in_place and s.op in IN_PLACE_OPS:
            r = root[s.inputs[0]]
            if r != hformat.INPUT and last_alias_use[r] == i:
                s = replace(s, params={**s.params, "in_place": True})
        out.append(s)
    return out
