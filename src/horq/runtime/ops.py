"""The numpy backend: the ``.horq`` ops in float32, the arithmetic of :mod:`horq.reference`.

The HORQ layers compute :mod:`horq.reference`'s definition (im2col, residual input quantization, weights
``alpha * sign``) in float32 with a strided-view im2col and an in-place residual loop: several times faster
than the float64 reference backend (:mod:`horq.runtime.reference_ops`, which spends its time on float64
copies and on stacking every plane) and a quarter of the memory. Tests pin the two together.

The ops that compute in their input's dtype (:data:`SHARED_OPS`: pools, activations, affine, add, concat,
flatten) serve both backends, and so do :func:`prepare` and the convolution driver :func:`convolve`. What
this module adds to the reference is what it does not cover (pools, activations, affine, the fused output
affine of a binary layer) and batch chunking, so that a column matrix stays within :data:`CHUNK_FLOATS`
values.

Every op takes and returns arrays with the batch axis first: ``op(node, params, *inputs)``, ``node`` a
validated :class:`horq.format.spec.Node` and ``params`` its parameters as :func:`prepare` made them from a
planned step's (:mod:`horq.runtime.fuse`); :func:`build` binds them to the step's op once.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from horq.bits import unpack_signs
from horq.format import BINARY_OPS
from horq.geometry import conv_output_size
from horq.runtime.fuse import LAYER_OPS

#: Largest number of float64 values in one chunk's column matrix (about 256 MiB with the K planes).
CHUNK_FLOATS = 8 * 1024 * 1024


def build(step):
    """The planned step as a call ``fn(*inputs)`` on the float32 ops: its parameters prepared once, a layer's
    output affine folded into its weights (:func:`_collapse_epilogue`)."""
    return functools.partial(OPS[step.op], step.node, prepared(step))


def prepared(step) -> dict:
    """The parameters :func:`build` gives the step's op: :func:`prepare`, then the epilogue collapsed."""
    return _collapse_epilogue(prepare(step.node, step.params))


def prepare(node, params: dict, *, dtype=np.float32) -> dict:
    """A step's parameters as the ops use them: a layer's weights as its ``matrix`` of ``dtype``
    (:func:`weight_matrix`; a float convolution's ``kernel`` size beside it), a pool's ``taps``; the rest
    as given."""
    params = dict(params)
    if node.op in LAYER_OPS:
        params["matrix"] = weight_matrix(node, params, dtype)
        if node.op == "conv2d":
            params["kernel"] = params["weight"].shape[2:]
        for role in ("bits", "alpha", "weight"):
            params.pop(role, None)
    elif node.op in ("max_pool2d", "avg_pool2d"):
        params["taps"] = _tap_slices(node)
    return params


def weight_matrix(node, params: dict, dtype) -> np.ndarray:
    """A layer's weights as a ``(C_out, n)`` matrix of ``dtype``; binary ones unpacked to ``alpha * sign``,
    alpha 1 when the file has none (the exporter moved it into a later scale, docs/FORMAT.md)."""
    if node.op in BINARY_OPS:
        signs = unpack_signs(params["bits"], math.prod(node.attrs["shape"][1:])).astype(dtype)
        if "alpha" in params:
            signs *= params["alpha"].astype(dtype)[:, None]
        return signs
    w = params["weight"]
    return w.reshape(w.shape[0], -1).astype(dtype)


def _collapse_epilogue(p):
    """A layer (float weights ``M``) computes ``(M x + b) s + t`` as ``(s M) x + (s b + t)``: one pass over
    its output instead of three."""
    if "matrix" not in p or not ("scale" in p or "shift" in p):
        return p
    rows = p["matrix"].shape[0]
    s = np.broadcast_to(np.asarray(p.get("scale", 1.0), np.float64), (rows,))
    t = np.broadcast_to(np.asarray(p.get("shift", 0.0), np.float64), (rows,))
    b = np.broadcast_to(np.asarray(p.get("bias", 0.0), np.float64), (rows,))
    params = {k: v for k, v in p.items() if k not in ("scale", "shift")}
    params["matrix"] = (p["matrix"] * s[:, None]).astype(np.float32)
    params["bias"] = (b * s + t).astype(np.float32)
    return params


def im2col32(x, kh, kw, *, stride, padding, dilation):
    """float32 twin of :func:`horq.reference.im2col`, laid out for one GEMM: ``(C*kh*kw, N*OH*OW)``.

    Rows in the reference's ``(c, i, j)`` order; column ``b*P + p`` is position ``p`` of sample ``b``. Built
    tap by tap (kh*kw strided copies into one buffer); padding is a zeroed buffer, not ``np.pad``, whose
    per-call overhead alone was half the cost of a small first layer.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xp = x
    if ph or pw:
        xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), np.float32)
        xp[:, :, ph : ph + h, pw : pw + w] = x
    cols = np.empty((c, kh, kw, n, oh, ow), np.float32)
    if (sh, sw) != (1, 1) and kh * kw > 2 * sh * sw:
        # Strided taps: split the input once into its sh*sw phases (rows = a mod sh, columns = b mod sw), so
        # every tap is a unit-stride window of one phase: numpy copies contiguous rows far faster than
        # strided ones (a 7x7/2 stem: 0.5 instead of 0.7 ms).
        phases = {}
        for i in range(kh):
            for j in range(kw):
                a, b = (i * dh) % sh, (j * dw) % sw
                if (a, b) not in phases:
                    phases[a, b] = np.ascontiguousarray(xp[:, :, a::sh, b::sw].transpose(1, 0, 2, 3))
                i0, j0 = (i * dh) // sh, (j * dw) // sw
                cols[:, i, j] = phases[a, b][:, :, i0 : i0 + oh, j0 : j0 + ow]
        return cols.reshape(c * kh * kw, n * oh * ow)
    xt = xp.transpose(1, 0, 2, 3)  # (C, N, H, W): a view
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
    return cols.reshape(c * kh * kw, n * oh * ow)


def quantize32(cols, order, axis):
    """float32 twin of :func:`horq.reference.quantize_input`: ``sum_k beta_k H_k`` without keeping planes."""
    if not order:
        return cols
    r = np.array(cols, dtype=np.float32)
    approx = np.zeros_like(r)
    for _ in range(order):
        beta = np.abs(r).mean(axis=axis, keepdims=True, dtype=np.float32)
        step = np.where(r < 0, -beta, beta)  # beta * sign(r), sign(0) = +1
        approx += step
        r -= step
    return approx


def output_affine(y, params, axis_shape):
    """``(y + bias) * scale + shift`` in place on ``y``, each term optional (a layer's epilogue, FORMAT.md)."""
    for role, combine in (("bias", np.add), ("scale", np.multiply), ("shift", np.add)):
        if role in params:
            combine(y, params[role].astype(y.dtype).reshape(axis_shape), out=y)
    return y


def _chunks(n_batch, per_sample):
    step = max(1, CHUNK_FLOATS // max(1, per_sample))
    return [slice(i, min(n_batch, i + step)) for i in range(0, n_batch, step)]


def conv2d(node, params, x):
    """Float (``conv2d``) or HORQ (``binary_conv2d``) convolution in float32: quantize each unfolded column,
    then matmul; then the ``max_pool2d`` fused into it, if any (``params["pool"]``, :mod:`horq.runtime.fuse`)."""
    y = convolve(node, params, x, _columns32)
    pool = params.get("pool")
    return y if pool is None else max_pool2d(pool[0], pool[1], y)


def _columns32(x, kh, kw, order, geometry):
    return quantize32(im2col32(x, kh, kw, **geometry), order, axis=0)  # (n, N*P)


def convolve(node, params, x, columns):
    """A convolution whose quantized column matrix ``(n, N*P)`` of a batch chunk is ``columns(x_chunk, kh,
    kw, order, geometry)``: the precision is the columns' (float32 here, float64 in reference_ops)."""
    a = node.attrs
    w = params["matrix"]
    kh, kw = a["shape"][2:] if node.op == "binary_conv2d" else params["kernel"]
    order = a.get("order")
    _, oh, ow = node.out_shape
    geometry = {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"]}
    y = None
    for sl in _chunks(x.shape[0], w.shape[1] * oh * ow * (2 + (order or 0))):
        nb = sl.stop - sl.start
        cols = columns(x[sl], kh, kw, order, geometry)
        # One GEMM per chunk (a broadcast batched matmul over N runs far slower in numpy); the epilogue runs
        # on the (C_out, N*P) product in place, and the transpose is the one copy into the output.
        out = output_affine(grouped_matmul(w, cols, a.get("groups", 1)), params, (-1, 1))
        if nb == 1 == x.shape[0]:  # one sample: the product already is the NCHW output
            return _floor(out.reshape(1, w.shape[0], oh, ow), params)
        if y is None:
            y = np.empty((x.shape[0], w.shape[0], oh, ow), out.dtype)
        y[sl] = out.reshape(w.shape[0], nb, oh, ow).transpose(1, 0, 2, 3)
    return _floor(y, params)


def _floor(y, params):
    """``max(y, params["floor"])`` in place when :mod:`horq.runtime.fuse` gave the op a following relu; with a
    ``params["ceiling"]`` too (a following hardtanh), ``clip(y, floor, ceiling)`` in place, the hardtanh op's values."""
    if params.get("ceiling") is not None:
        np.clip(y, params["floor"], params["ceiling"], out=y)
    elif params.get("floor") is not None:
        np.maximum(y, params["floor"], out=y)
    return y


def grouped_matmul(w, cols, groups):
    """``w @ cols`` for a convolution of ``groups`` groups: filter block g reads the g-th block of the
    column rows (they are ordered ``(c, i, j)``, so each group's channels are contiguous). One batched matmul
    over the groups, not a Python loop of one matmul per group, whose calls cost a depthwise layer of hundreds
    of channels more than its arithmetic (``benchmarks/bench_grouped_conv.py``, docs/KERNELS.md round 48)."""
    if groups == 1:
        return w @ cols
    rows, per = w.shape[0] // groups, w.shape[1]
    out = np.matmul(w.reshape(groups, rows, per), cols.reshape(groups, per, cols.shape[1]))
    return out.reshape(w.shape[0], cols.shape[1])


def linear(node, params, x):
    """Float (``linear``) or HORQ (``binary_linear``) fully connected layer in float32; each sample is one
    column."""
    xq = quantize32(x, node.attrs.get("order"), axis=-1)
    y = xq.astype(np.float32) @ params["matrix"].T
    return _floor(output_affine(y, params, (1, -1)), params)


def floor(node, params, x):
    """``max(x, t[c])`` per channel (axis 1): the relu + affine that :mod:`horq.runtime.fuse` fused."""
    return np.maximum(x, params["floor"], out=_in_place(params, x))


def _in_place(params, x):
    """Where an elementwise op writes: over its input when the runtime's plan allows it (fuse.py)."""
    return x if params.get("in_place") else None


def affine(node, params, x):
    """``x * scale + shift`` per channel; on the pixels ``x[:, :, ::sh, ::sw]`` only when ``params["subsample"]
    = (sh, sw)`` (set by :mod:`horq.runtime.fuse` when the one reader is a strided 1x1 convolution)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if params.get("subsample"):
        sh, sw = params["subsample"]
        y = np.multiply(x[:, :, ::sh, ::sw], params["scale"].reshape(shape), dtype=x.dtype)
        return np.add(y, params["shift"].reshape(shape), out=y)
    if "scale_map" in params:  # per-channel values spread over the map at load (fuse.spread_channel_params)
        y = np.multiply(x, params["scale_map"], out=_in_place(params, x), dtype=x.dtype)
        return np.add(y, params["shift_map"], out=y)
    y = np.multiply(x, params["scale"].reshape(shape), out=_in_place(params, x), dtype=x.dtype)
    return np.add(y, params["shift"].reshape(shape), out=y)


def _tap_slices(node):
    """The kernel taps of a pool: for each (i, j) the index of the strided view of the padded input that tap
    reads, (N, C, OH, OW). Computed once per step (:func:`prepare`).

    Reducing tap by tap over these views is several times faster than reducing a sliding-window view.
    """
    a = node.attrs
    (kh, kw), (sh, sw) = a["kernel"], a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    _, oh, ow = node.out_shape
    return [(slice(None), slice(None), slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
             slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)]


def _pad(x, node, value):
    ph, pw = node.attrs["padding"]
    if not (ph or pw):
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), value, x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


def _axis_max(x, axis, k, stride, pad, dil, out_len, floor):
    """Max along one axis: ``out[o] = max(floor, x[o*stride + t*dil - pad] for t < k, in range)``.

    One ``np.maximum`` per tap over the output range where that tap lands inside ``x``, so the -inf padding
    is never materialized; the first tap that covers the whole output initializes it (max with ``floor``).
    """
    size = x.shape[axis]

    def at(sl):
        return (slice(None),) * axis + (sl,)

    ranges = []
    for t in range(k):
        off = t * dil - pad
        lo = max(0, (stride - 1 - off) // stride)  # first o with o*stride + off >= 0
        hi = min(out_len, (size - 1 - off) // stride + 1)
        if hi > lo:
            ranges.append((lo, hi, slice(lo * stride + off, (hi - 1) * stride + off + 1, stride)))
    full = [r for r in ranges if r[0] == 0 and r[1] == out_len][:2]
    shape = x.shape[:axis] + (out_len,) + x.shape[axis + 1 :]
    if len(full) == 2:  # two taps cover the whole output: the first pass reads both
        out = np.maximum(x[at(full[0][2])], x[at(full[1][2])])
        if floor is not None:
            np.maximum(out, floor, out=out)
    elif full:
        out = np.maximum(x[at(full[0][2])], floor) if floor is not None else np.array(x[at(full[0][2])])
    else:
        out = np.full(shape, -np.inf, x.dtype)
        if floor is not None:
            np.maximum(out, floor, out=out)
    for r in ranges:
        if not any(r is f for f in full):
            np.maximum(out[at(slice(r[0], r[1]))], x[at(r[2])], out=out[at(slice(r[0], r[1]))])
    return out


def max_pool2d(node, params, x):
    """Separable max: over the kernel's rows (whole contiguous rows per tap), then over its columns of the
    reduced data; padding is skipped, not filled with -inf. ``params["floor"]`` (a number or per-channel
    array, set by :mod:`horq.runtime.fuse` for a following relu or relu + affine) joins the max: ``max(floor,
    pool(x))`` is ``relu(pool(x))`` for floor 0."""
    a = node.attrs
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    _, oh, ow = node.out_shape
    rows = _axis_max(x, 2, kh, sh, ph, dh, oh, None)
    return _axis_max(rows, 3, kw, sw, pw, dw, ow, params.get("floor"))


def avg_pool2d(node, params, x):
    xp = _pad(x, node, 0.0)
    taps = params["taps"]
    total = np.array(xp[taps[0]], dtype=np.float64)
    for t in taps[1:]:
        total += xp[t]
    if node.attrs["count_include_pad"]:
        count = math.prod(node.attrs["kernel"])
    else:
        ones = _pad(np.ones((1, 1) + x.shape[2:]), node, 0.0)
        count = sum(ones[t] for t in taps)
    return (total / count).astype(x.dtype)


def global_avg_pool(node, params, x):
    n, c, h, w = x.shape
    total = np.add.reduce(x.reshape(n, c, h * w), axis=2, dtype=np.float64)  # float64 sum, like the mean
    return (total / (h * w)).astype(x.dtype).reshape(n, c, 1, 1)


def relu(node, params, x):
    return np.maximum(x, np.float32(0), out=_in_place(params, x))


def hardtanh(node, params, x):
    lo, hi = np.float32(node.attrs["min_val"]), np.float32(node.attrs["max_val"])
    return np.clip(x, lo, hi, out=_in_place(params, x))


def leaky_relu(node, params, x):
    """``x`` where ``x >= 0``, else ``negative_slope * x`` (PyTorch multiplies in the activation's dtype)."""
    return np.where(x >= 0, x, x * x.dtype.type(node.attrs["negative_slope"]))


def prelu(node, params, x):
    """``leaky_relu`` with a learned slope per channel (axis 1), or one for all channels."""
    w = params["weight"].astype(x.dtype)
    slope = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if w.shape[0] > 1 else w.reshape(())
    return np.where(x >= 0, x, x * slope)


def concat(node, params, *xs):
    return np.concatenate(xs, axis=1)


def flatten(node, params, x):
    return x.reshape(x.shape[0], -1)


def add(node, params, a, b):
    """``a + b``, written over ``a`` or ``b`` when the plan allows it (``params["in_place"]`` = 0 or 1), and
    with ``params["floor"]`` (a following relu, fused): ``max(a + b, floor)``."""
    where = params.get("in_place")
    out = np.add(a, b, out=None if where is None else (a, b)[where])
    if params.get("floor") is not None:
        np.maximum(out, params["floor"], out=out)
    return out


#: The ops that compute in their input's dtype (float32 here, float64 on the reference backend):
#: op name -> function(node, params, *inputs).
SHARED_OPS = {
    "affine": affine,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "global_avg_pool": global_avg_pool,
    "relu": relu,
    "hardtanh": hardtanh,
    "flatten": flatten,
    "add": add,
    "concat": concat,
    "leaky_relu": leaky_relu,
    "prelu": prelu,
}

#: The numpy backend's dispatch table (a plain dict), ``floor`` included (a fused relu + affine).
OPS = {
    **SHARED_OPS,
    "conv2d": conv2d,
    "binary_conv2d": conv2d,
    "linear": linear,
    "binary_linear": linear,
    "floor": floor,
}
