"""The reference backend: the ``.horq`` ops in float64 on :mod:`horq.reference` itself; the oracle.

Its convolution and linear layers compute with :mod:`horq.reference`'s own ``im2col``, ``quantize_input``
and float64 weights ``alpha * sign``: the independent check of the float32 backends. Every other op is the
numpy backend's (:data:`horq.runtime.ops.SHARED_OPS`: they compute in their input's dtype). Activations are
float64 from the first layer on (the model rounds its output to float32 only when it returns it), so that
this is a float64 oracle of the whole network, not of each layer alone; it runs the graph as written (its
plan has no fusions).
"""

from __future__ import annotations

import functools

import numpy as np

from horq import reference
from horq.runtime import ops


def build(step):
    """The planned step as a call ``fn(*inputs)`` on the float64 ops, its parameters prepared once."""
    return functools.partial(OPS[step.op], step.node, ops.prepare(step.node, step.params, dtype=np.float64))


def conv2d(node, params, x):
    """Float (``conv2d``) or HORQ (``binary_conv2d``) convolution on :mod:`horq.reference`'s columns."""
    return ops.convolve(node, params, x, _columns64)


def _columns64(x, kh, kw, order, geometry):
    cols, _ = reference.im2col(x, kh, kw, **geometry)
    cols = reference.quantize_input(cols, order, axis=1)  # (N, n, P)
    return cols.transpose(1, 0, 2).reshape(cols.shape[1], -1)


def linear(node, params, x):
    """Float (``linear``) or HORQ (``binary_linear``) fully connected layer; each sample is one column."""
    xq = reference.quantize_input(x, node.attrs.get("order"), axis=-1)
    y = xq.astype(np.float64) @ params["matrix"].T
    return ops.output_affine(y, params, (1, -1))


#: The reference backend's dispatch table: op name -> function(node, params, *inputs).
OPS = {
    **ops.SHARED_OPS,
    "conv2d": conv2d,
    "binary_conv2d": conv2d,
    "linear": linear,
    "binary_linear": linear,
}
