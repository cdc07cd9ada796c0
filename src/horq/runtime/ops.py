"""numpy implementations of the ``.horq`` ops, built on :mod:`horq.reference`.

Two precisions share everything but the convolution/linear core:

* ``reference`` (float64): the HORQ arithmetic is :mod:`horq.reference`'s own ``im2col``,
  ``quantize_input`` and effective weights; the independent check of the other backends.
* ``numpy`` (float32 fast path): the same definition computed in float32 with a strided-view im2col and
  an in-place residual loop, several times faster and a quarter of the memory (the reference path spends
  its time on float64 copies and on stacking every plane). Tests pin it to the reference path.

What this module adds to the reference is what it does not cover (pools, activations, affine, the fused
output affine of a binary layer) and batch chunking, so that a column matrix stays within
:data:`CHUNK_FLOATS` values.

Every op takes and returns arrays with the batch axis first; ``node`` is a validated
:class:`horq.format.spec.Node` and ``params`` its tensors, prepared by :func:`prepare`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from horq import reference
from horq.bits import unpack_signs

#: Largest number of float64 values in one chunk's column matrix (about 256 MiB with the K planes).
CHUNK_FLOATS = 8 * 1024 * 1024


def prepare(node, tensors: dict, *, dtype=np.float32) -> dict:
    """Turns a node's file tensors into what the ops use: weights as ``(C_out, n)`` matrices of ``dtype``
    (binary ones unpacked to ``alpha * sign``, alpha 1 when the file has none) and ``dtype`` in ``params["dtype"]``."""
    params = {role: tensors[name] for role, name in node.tensors.items()}
    if node.op in ("binary_conv2d", "binary_linear"):
        n = math.prod(node.attrs["shape"][1:])
        signs = unpack_signs(params.pop("bits"), n).astype(dtype)
        params["matrix"] = signs
        if "alpha" in params:  # absent: the exporter moved it into a later scale (docs/FORMAT.md)
            signs *= params.pop("alpha").astype(dtype)[:, None]
    elif node.op in ("conv2d", "linear"):
        w = params.pop("weight")
        params["matrix"] = w.reshape(w.shape[0], -1).astype(dtype)
        params["kernel"] = w.shape[2:]
    params["dtype"] = np.dtype(dtype)
    return params


def im2col32(x, kh, kw, *, stride, padding, dilation):
    """float32 twin of :func:`horq.reference.im2col`, laid out for one GEMM: ``(C*kh*kw, N*OH*OW)``.

    Rows in the reference's ``(c, i, j)`` order; column ``b*P + p`` is position ``p`` of sample ``b``.
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw, ::dh, ::dw]  # (N, C, OH, OW, kh, kw)
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3), dtype=np.float32)
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


def _output_affine(y, params, axis_shape):
    """``(y + bias) * scale + shift`` in place on ``y``, each term optional (a layer's epilogue, FORMAT.md)."""
    for role, combine in (("bias", np.add), ("scale", np.multiply), ("shift", np.add)):
        if role in params:
            combine(y, params[role].astype(y.dtype).reshape(axis_shape), out=y)
    return y


def _chunks(n_batch, per_sample):
    step = max(1, CHUNK_FLOATS // max(1, per_sample))
    return [slice(i, min(n_batch, i + step)) for i in range(0, n_batch, step)]


def conv2d(node, params, x):
    """Float (``conv2d``) or HORQ (``binary_conv2d``) convolution: quantize each unfolded column, then matmul."""
    a = node.attrs
    w = params["matrix"]
    kh, kw = a["shape"][2:] if node.op == "binary_conv2d" else params["kernel"]
    order = a.get("order")
    _, oh, ow = node.out_shape
    geometry = {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"]}
    y = np.empty((x.shape[0], w.shape[0], oh, ow), np.float32)
    for sl in _chunks(x.shape[0], w.shape[1] * oh * ow * (2 + (order or 0))):
        nb = sl.stop - sl.start
        if params["dtype"] == np.float64:
            cols, _ = reference.im2col(x[sl], kh, kw, **geometry)
            cols = reference.quantize_input(cols, order, axis=1)  # (N, n, P)
            cols = cols.transpose(1, 0, 2).reshape(cols.shape[1], -1)
        else:
            cols = quantize32(im2col32(x[sl], kh, kw, **geometry), order, axis=0)  # (n, N*P)
        # One GEMM per chunk (a broadcast batched matmul over N runs far slower in numpy); the epilogue runs
        # on the (C_out, N*P) product in place, and the transpose is the one copy into the output.
        out = _output_affine(w @ cols, params, (-1, 1))
        y[sl] = out.reshape(w.shape[0], nb, oh, ow).transpose(1, 0, 2, 3)
    return y


def linear(node, params, x):
    """Float (``linear``) or HORQ (``binary_linear``) fully connected layer; each sample is one column."""
    order = node.attrs.get("order")
    if params["dtype"] == np.float64:
        xq = reference.quantize_input(x, order, axis=-1)
    else:
        xq = quantize32(x, order, axis=-1)
    y = xq.astype(params["dtype"]) @ params["matrix"].T
    return _output_affine(y, params, (1, -1)).astype(np.float32)


def affine(node, params, x):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = np.multiply(x, params["scale"].reshape(shape), dtype=np.float32)
    return np.add(y, params["shift"].reshape(shape), out=y)


def _taps(xp, node):
    """The kernel taps of a pool: for each (i, j) the strided view of ``xp`` that tap reads, (N, C, OH, OW).

    Reducing tap by tap over these views is several times faster than reducing a sliding-window view.
    """
    a = node.attrs
    (kh, kw), (sh, sw) = a["kernel"], a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    _, oh, ow = node.out_shape
    for i in range(kh):
        for j in range(kw):
            yield xp[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]


def _pad(x, node, value):
    ph, pw = node.attrs["padding"]
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value) if ph or pw else x


def max_pool2d(node, params, x):
    taps = _taps(_pad(x, node, -np.inf), node)
    out = np.array(next(taps), dtype=np.float32)
    for t in taps:
        np.maximum(out, t, out=out)
    return out


def avg_pool2d(node, params, x):
    taps = _taps(_pad(x, node, 0.0), node)
    total = np.array(next(taps), dtype=np.float64)
    for t in taps:
        total += t
    if node.attrs["count_include_pad"]:
        count = math.prod(node.attrs["kernel"])
    else:
        ones = _taps(_pad(np.ones((1, 1) + x.shape[2:]), node, 0.0), node)
        count = sum(ones)
    return (total / count).astype(np.float32)


def global_avg_pool(node, params, x):
    return x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32)


def relu(node, params, x):
    return np.maximum(x, np.float32(0))


def hardtanh(node, params, x):
    return np.clip(x, np.float32(node.attrs["min_val"]), np.float32(node.attrs["max_val"]))


def flatten(node, params, x):
    return x.reshape(x.shape[0], -1)


def add(node, params, a, b):
    return a + b


#: op name -> function(node, params, *inputs); the runtime's dispatch table (a plain dict).
OPS = {
    "conv2d": conv2d,
    "binary_conv2d": conv2d,
    "linear": linear,
    "binary_linear": linear,
    "affine": affine,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "global_avg_pool": global_avg_pool,
    "relu": relu,
    "hardtanh": hardtanh,
    "flatten": flatten,
    "add": add,
}
