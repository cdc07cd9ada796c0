"""The plan: a model's steps, computed from its graph and tensors before any backend exists.

:func:`plan` turns the graph's nodes into :class:`Step` s (each a node's parameters as the file's tensors by
role, or a node with the nodes fused into it) and rewrites them to save passes over the activations; a
backend then builds each step's callable once (:mod:`horq.runtime.ops`, :mod:`horq.runtime.reference_ops`,
:mod:`horq.runtime.native`). The plan knows one thing about the backend: which nodes run natively, because
two rewrites need the kernels' fused input affine and residual add.

The graph is what the file says; these rewrites change how it is computed, not what, up to float rounding:

* **Affine into the layer's epilogue.** A conv/linear layer (float or binary) whose output goes, each the only
  reader of the one before, through an optional ``max_pool2d`` and a ``relu`` into an ``affine`` with
  scales ``s >= 0``: ``s relu(z) + t = max(s z + t, t)``, and ``max_pool2d`` commutes with the increasing
  per-channel map ``z -> s z + t`` (exactly: float rounding is monotone). So ``s``, ``t`` join the layer's
  output affine (``(y + bias) scale + shift`` becomes ``(y + bias)(scale s) + (shift s + t)``), and relu +
  affine become one in-place ``max(y, t)`` (a ``floor`` step). Three passes over the map become one. (The
  numpy backend then folds the whole epilogue into its weights: :func:`horq.runtime.ops.build`.)
* **Affine into a binary layer's input.** A native binary convolution or linear layer applies an ``affine``
  that only it reads (the BatchNorm before it) while packing or quantizing its input
  (:func:`_fuse_input_affines`): bitwise the same.
* **Floor into a binary layer's output.** A native binary convolution or linear layer read only by a ``relu``,
  ``floor`` or ``hardtanh`` (ReLU6 too) applies that maximum (and the hardtanh's minimum) as it stores its output
  (:func:`_fuse_floors`): bitwise the same.
* **Clamp into a float layer's output.** A layer the numpy ops or the core's float kernels run (float convolutions,
  float linear layers) read only by a ``hardtanh`` with finite bounds applies ``min(max(y, lo), hi)`` after its
  epilogue (``floor`` and ``ceiling`` params; the core's float convolution in its row stores, one pass over the map
  less): the values of numpy.clip, the hardtanh op.
* **Residual add into a binary layer's output.** A native binary convolution read only by an ``add`` adds
  the other addend and applies the add's ReLU floor as it stores its output (:func:`_fuse_residual_adds`).
* **Pool into a float convolution.** A float ``conv2d`` read only by a ``max_pool2d`` computes the pool too
  (:func:`_fuse_pools`; the native backend pools its rows as they come, from a few rows in cache,
  ``kernels.float_conv2d(pool=)``): the same operations, bitwise the same.
* **In place.** ``relu``, ``affine``, ``hardtanh`` and that floor overwrite their input when nothing reads it
  (or a ``flatten`` view of it) later and it is not the caller's input array.

The reference backend (the oracle) runs the graph as written: ``plan(..., fuse=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from horq import format as hformat
from horq.geometry import conv_output_size

LAYER_OPS = ("conv2d", "binary_conv2d", "linear", "binary_linear")
#: Ops whose function may overwrite its input when ``params["in_place"]`` is set.
IN_PLACE_OPS = ("relu", "affine", "hardtanh", "floor")


@dataclass
class Step:
    """One call of the runtime: ``env[name] = op(node, params, *env[inputs])``, then ``free`` is dropped.

    ``params`` are plain arrays and values (the node's file tensors by role, as rewritten by the plan);
    ``native`` says the step is a binary layer the native backend runs on :mod:`horq.kernels`.
    """

    name: str
    op: str
    node: object
    params: dict
    inputs: tuple
    free: tuple = field(default=())
    fused: tuple = field(default=())  # names of graph nodes this step computes besides its own
    native: bool = False


def plan(graph, tensors: dict, *, native=frozenset(), fuse: bool = True) -> list[Step]:
    """The steps that compute ``graph``, in execution order.

    Args:
        graph: a validated :class:`horq.format.Graph`.
        tensors: its tensors by name, as the ops compute with them (:func:`horq.runtime.compute_tensors`).
        native: names of the nodes the backend runs on the kernels (they may take the native-only fusions).
        fuse: apply the rewrites (off for the reference backend, which runs the graph as written).

    Returns:
        The steps, each with its ``free`` list filled (and ``in_place`` flags when ``fuse``).
    """
    steps = [Step(node.name, node.op, node, {role: tensors[name] for role, name in node.tensors.items()},
                  node.inputs, native=node.name in native) for node in graph.nodes]
    if fuse:
        steps = _subsample_pointwise(graph, _fuse_pools(graph, _fuse_floors(graph, _fuse_affines(graph, steps))))
        steps = _fuse_residual_adds(graph, _fuse_input_affines(graph, steps))
        steps = [spread_channel_params(s) for s in steps]
    return _mark_in_place_and_free(graph, steps, in_place=fuse)


#: Largest map (C*H*W values per sample) whose per-channel parameters are spread over it at load.
SPREAD_LIMIT = 128 * 1024


def spread_channel_params(step):
    """Per-channel ``affine`` parameters and ``floor`` values as whole ``(1, C, H, W)`` maps, for maps up to
    :data:`SPREAD_LIMIT` values: numpy's elementwise loops run about twice as fast on two contiguous operands
    as with a broadcast ``(1, C, 1, 1)`` one (measured on 16-1024-pixel maps; no gain on larger maps,
    which are bound by memory traffic). Same values, same arithmetic, so results are bitwise unchanged."""
    shape = tuple(step.node.out_shape)
    if len(shape) != 3 or np.prod(shape) > SPREAD_LIMIT:
        return step
    p = step.params
    if step.op == "affine" and not p.get("subsample"):
        spread = {f"{k}_map": np.ascontiguousarray(np.broadcast_to(
            p[k].astype(np.float32).reshape(1, -1, 1, 1), (1,) + shape)) for k in ("scale", "shift")}
        return replace(step, params={**p, **spread})
    if step.op == "max_pool2d":  # the native backend's pool takes one floor per channel (native._pool_step)
        return step
    floor_value = p.get("floor")
    if isinstance(floor_value, np.ndarray) and floor_value.ndim == 4 and floor_value.shape[2:] == (1, 1):
        spread = np.ascontiguousarray(np.broadcast_to(floor_value, (1,) + shape))
        return replace(step, params={**p, "floor": spread})
    return step


#: Ops that take a ``params["floor"]``: ``max(op(x), floor)`` in the same step (:func:`_fuse_floors`); so do
#: the conv/linear layers the numpy ops run (float ones on every backend), after their epilogue.
FLOOR_OPS = ("max_pool2d", "add")


def _sole_reader(graph, steps, readers, name):
    idx = readers.get(name, [])
    if name == graph.output or len(idx) != 1 or len(steps[idx[0]].inputs) != 1:
        return None
    return idx[0]


def _native_binary(step) -> bool:
    """Whether ``step`` is a binary convolution or linear layer that runs on the native kernels."""
    return step.op in hformat.BINARY_OPS and step.native


def _fuse_floors(graph, steps):
    """A ``max_pool2d``, ``add``, numpy-run layer or native binary convolution or linear layer whose only reader
    is a ``relu`` (floor 0) or a fused ``floor`` (relu + affine) takes it: ``max(op(x), floor)`` in one step,
    named as the step it replaces. The native layer applies it as it stores its output (``Conv2dLayer`` /
    ``LinearLayer(out_floor=)``, one value per output channel or feature: the same float32 maximum as the floor
    step). A layer (numpy-run: the core's float kernels run some float ones, :mod:`horq.runtime.native`; or a native
    binary one, as ``out_floor`` and ``out_ceiling``) whose only reader is a ``hardtanh`` with finite bounds takes it
    as a floor and a ceiling: numpy.clip's values. Exact (max, min and clip are)."""
    readers = _readers(steps)
    merged, dropped = {}, set()
    for i, step in enumerate(steps):
        numpy_layer = step.op in LAYER_OPS and not step.native
        native_layer = _native_binary(step)
        if not (step.op in FLOOR_OPS or numpy_layer or native_layer) or "floor" in step.params:
            continue
        j = _sole_reader(graph, steps, readers, step.name)
        if j is None or steps[j].op not in ("relu", "floor", "hardtanh"):
            continue
        nxt = steps[j]
        ceiling = None
        if nxt.op == "hardtanh":
            bounds = _clamp_bounds(nxt.node)
            if bounds is None or step.op in FLOOR_OPS:  # pools and adds take a floor only
                continue
            value, ceiling = bounds
        else:
            value = np.float32(0) if nxt.op == "relu" else nxt.params["floor"]
        if native_layer:
            channels = step.node.out_shape[0]
            if np.size(value) not in (1, channels) or (step.op == "binary_linear" and len(step.node.out_shape) != 1):
                continue  # one value per output channel (feature) or one for all; a linear layer's (N, F) output
            params = {**step.params, "out_floor": _per_channel(value, channels)}
            if ceiling is not None:
                params["out_ceiling"] = _per_channel(ceiling, channels)
        else:
            params = {**step.params, "floor": value}
            if ceiling is not None:
                params["ceiling"] = ceiling
        merged[j] = replace(step, name=nxt.name, params=params, fused=step.fused + (step.name,) + nxt.fused)
        dropped.add(i)
    return [merged.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _per_channel(value, channels):
    """One value, or one per channel, as a contiguous float32 vector of ``channels`` values (a native layer's
    ``out_floor`` / ``out_ceiling``)."""
    flat = np.asarray(value, np.float32).reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(flat, (channels,)), dtype=np.float32)


def _clamp_bounds(node):
    """A ``hardtanh`` node's ``(min_val, max_val)`` as float32, as the op computes with them; None unless both are
    finite."""
    lo, hi = np.float32(node.attrs["min_val"]), np.float32(node.attrs["max_val"])
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None


def _fuse_pools(graph, steps):
    """A float ``conv2d`` (grouped too) whose only reader is a ``max_pool2d`` takes it: one step, named as the pool,
    with ``params["pool"] = (pool node, pool params)`` (its floor included); the ops compute the convolution and
    then the pool, the native backend both in one call. Exact (the same operations)."""
    readers = _readers(steps)
    merged, dropped = {}, set()
    for i, step in enumerate(steps):
        if step.op != "conv2d" or "pool" in step.params:
            continue
        j = _sole_reader(graph, steps, readers, step.name)
        if j is None or steps[j].op != "max_pool2d":
            continue
        pool = steps[j]
        merged[j] = replace(step, name=pool.name, params={**step.params, "pool": (pool.node, pool.params)},
                            fused=step.fused + (step.name,) + pool.fused)
        dropped.add(i)
    return [merged.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _subsample_pointwise(graph, steps):
    """A 1x1 convolution with stride (sh, sw) and no padding reads only the pixels ``x[:, :, ::sh, ::sw]``;
    when its input is an ``affine`` read by it alone, the affine computes only those pixels and the
    convolution runs with stride 1 on them (a ResNet's downsampling shortcut): exact, a quarter of the work
    for stride 2. Not for a native binary convolution: the kernels read such an input at its stride and take
    the affine into their input packing (:func:`_fuse_input_affines`), one numpy pass less."""
    readers = _readers(steps)
    by_name = {s.name: i for i, s in enumerate(steps)}
    out = list(steps)
    for i, step in enumerate(steps):
        a = step.node.attrs
        if step.op not in LAYER_OPS[:2] or a.get("groups", 1) != 1 or tuple(a["stride"]) == (1, 1) or step.native:
            continue
        kernel = a["shape"][2:] if step.op == "binary_conv2d" else step.params["weight"].shape[2:]
        if tuple(kernel) != (1, 1) or any(a["padding"]) or step.inputs[0] not in by_name:
            continue
        k = by_name[step.inputs[0]]
        aff = steps[k]
        if aff.op != "affine" or _sole_reader(graph, steps, readers, aff.name) != i:
            continue
        sh, sw = a["stride"]
        c, h, w = step.node.in_shapes[0]
        small = (c, conv_output_size(h, 1, sh), conv_output_size(w, 1, sw))
        node = replace(step.node, attrs={**a, "stride": (1, 1)}, in_shapes=(small,))
        out[i] = replace(step, node=node)
        out[k] = replace(aff, params={**aff.params, "subsample": (sh, sw)})
    return out


def _fuse_input_affines(graph, steps):
    """A native binary convolution or linear layer whose input is an ``affine`` read by it alone (the BatchNorm
    before a binary layer), with one scale and shift per input channel or feature, applies it while packing or
    quantizing its input (``Conv2dLayer`` / ``LinearLayer(in_scale=, in_shift=)``: the same float32 multiply and
    add, so bitwise the same) and reads the affine's input: one pass over the activations less."""
    readers = _readers(steps)
    by_name = {s.name: i for i, s in enumerate(steps)}
    merged, dropped = {}, set()
    for i, step in enumerate(steps):
        if not _native_binary(step) or step.inputs[0] not in by_name:
            continue
        k = by_name[step.inputs[0]]
        aff = steps[k]
        if aff.op != "affine" or aff.params.get("subsample") or _sole_reader(graph, steps, readers, aff.name) != i:
            continue
        in_shape = step.node.in_shapes[0]  # (C, H, W), or a linear layer's (in_features,)
        if step.op == "binary_linear" and len(in_shape) != 1:
            continue
        scale, shift = (np.asarray(aff.params[role], np.float32) for role in ("scale", "shift"))
        if scale.size != in_shape[0] or shift.size != in_shape[0]:
            continue
        params = {**step.params, "in_scale": scale.reshape(-1), "in_shift": shift.reshape(-1)}
        merged[i] = replace(step, inputs=aff.inputs, params=params, fused=aff.fused + (aff.name,) + step.fused)
        dropped.add(k)
    return [merged.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _fuse_residual_adds(graph, steps):
    """An ``add`` (with the ReLU floor it may have taken) of a native binary convolution read by it alone and
    another array: the convolution adds that array and applies the floor in its output stores
    (``Conv2dLayer(out_floor=)(x, residual)``: the same float32 add and maximum, bitwise the same), one pass
    over the map instead of one or two. When both addends are such convolutions, the later one fuses (the
    other's output then exists when it runs). A convolution that took a floor of its own (which comes before
    the add; a hardtanh's clamp includes one) does not."""
    readers = _readers(steps)
    by_name = {s.name: i for i, s in enumerate(steps)}
    merged, dropped = {}, set()
    for i, add in enumerate(steps):
        if add.op != "add" or add.inputs[0] == add.inputs[1]:
            continue
        convs = [(by_name[ref], slot) for slot, ref in enumerate(add.inputs)
                 if ref in by_name and ref != graph.output and readers.get(ref) == [i]
                 and steps[by_name[ref]].op == "binary_conv2d" and steps[by_name[ref]].native
                 and "out_floor" not in steps[by_name[ref]].params and by_name[ref] not in dropped]
        if not convs:
            continue
        k, slot = max(convs)
        conv, other = steps[k], add.inputs[1 - slot]
        params = dict(conv.params)
        floor = add.params.get("floor")
        if floor is not None:
            params["out_floor"] = _per_channel(floor, conv.node.out_shape[0])
        merged[i] = replace(conv, name=add.name, params=params, inputs=(conv.inputs[0], other),
                            fused=conv.fused + (conv.name,) + add.fused)
        dropped.add(k)
    return [merged.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _readers(steps):
    out: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        for ref in s.inputs:
            out.setdefault(ref, []).append(i)
    return out


def _fuse_affines(graph, steps):
    """A layer's (``max_pool2d`` ->) ``relu`` -> ``affine`` with scales ``s >= 0``: ``s``, ``t`` join the
    layer's output affine and relu + affine become one ``floor`` step (the module docstring's first rewrite)."""
    readers = _readers(steps)
    by_name = {s.name: i for i, s in enumerate(steps)}

    def sole_reader(name):
        idx = readers.get(name, [])
        if name == graph.output or len(idx) != 1 or len(steps[idx[0]].inputs) != 1:
            return None
        return steps[idx[0]]

    replaced: dict[int, Step | None] = {}
    for step in steps:
        if step.op not in LAYER_OPS:
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
        replaced[by_name[relu.name]] = Step(aff.name, "floor", aff.node,
                                            {"floor": t.astype(np.float32).reshape(shape)}, (src,),
                                            fused=(relu.name,))
        replaced[by_name[aff.name]] = None
    out = []
    for i, s in enumerate(steps):
        s = replaced.get(i, s)
        if s is not None:
            out.append(s)
    return out


def _plain(step, ref, steps):
    """True when ``ref`` is an array of ``step``'s output shape and dtype that the executor owns (not a
    flatten view of another shape: the sum may not be written into a view of a different layout)."""
    src = next((s for s in steps if s.name == ref), None)
    return src is not None and src.op != "flatten" and tuple(src.node.out_shape) == tuple(step.node.out_shape)


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
        if in_place and s.op in IN_PLACE_OPS and not s.params.get("subsample"):
            r = root[s.inputs[0]]
            if r != hformat.INPUT and last_alias_use[r] == i:
                s = replace(s, params={**s.params, "in_place": True})
        elif in_place and s.op == "add":  # over whichever addend nothing reads later
            for k, ref in enumerate(s.inputs):
                if root[ref] != hformat.INPUT and last_alias_use[root[ref]] == i and _plain(s, ref, steps):
                    s = replace(s, params={**s.params, "in_place": k})
                    break
        out.append(s)
    return out
