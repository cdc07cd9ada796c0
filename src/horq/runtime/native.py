"""Native backend: binary layers run on :mod:`horq.kernels` (the C++ XNOR-popcount core).

Only the binary convolutions and linear layers of order >= 1 go native (:func:`runs_natively`; the core has
no order-0 binary path: binary weights with real inputs is a float matmul); max pooling and the float
convolutions with a small receptive field (a network's first layer: :func:`float_conv_runs_natively`) and the
large float linear layers of small batches, order-0 ones included (a network's classifier:
:func:`float_linear_step`), also run in the core (:func:`max_pool2d`, :func:`float_conv2d`, :func:`float_linear`);
every other step runs on :mod:`horq.runtime.ops`.
:func:`import_kernels` imports the extension lazily, so a missing or unbuilt extension surfaces as ImportError
for the ``auto`` backend to fall back on.

:func:`build` turns a planned native step (its file tensors ``bits`` and ``alpha``, the epilogue ``bias``,
``scale``, ``shift`` as :mod:`horq.runtime.fuse` composed them, and the ``in_scale``/``in_shift`` and
``out_floor`` it fused in) into one prepared kernel layer, which is the step's callable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from horq.format import BINARY_OPS
from horq.runtime import ops as np_ops

EPILOGUE = ("bias", "scale", "shift")


def import_kernels():
    """:mod:`horq.kernels`, checked to have the layers this backend builds.

    Raises:
        ImportError: the extension (or one of its layers) is missing.
    """
    import horq.kernels as kernels  # noqa: PLC0415 (lazy on purpose: the extension may be missing)

    for name in ("PackedWeights", "Conv2dLayer", "LinearLayer", "MaxPool2d", "FloatConv2d", "StepChain"):
        if not hasattr(kernels, name):
            raise ImportError(f"horq.kernels has no {name!r}")
    return kernels


def runs_natively(node) -> bool:
    """True for the nodes this backend runs on the kernels: binary layers of order >= 1."""
    return node.op in BINARY_OPS and node.attrs["order"] != 0


def _f32(arr):
    return None if arr is None else np.ascontiguousarray(arr, dtype=np.float32)


def build(step, kernels):
    """The step's prepared kernel layer (checks and epilogue done once): called as ``layer(x)``, or
    ``layer(x, residual)`` for a convolution that took a residual add.

    Args:
        step: a planned step with ``step.native`` set (:func:`horq.runtime.fuse.plan`).
        kernels: the module :func:`import_kernels` returned.
    """
    p, a = step.params, step.node.attrs
    cout = a["shape"][0]
    alpha = np.ones(cout, np.float32) if p.get("alpha") is None else _f32(p["alpha"])  # absent: FORMAT.md
    pw = kernels.PackedWeights(np.ascontiguousarray(p["bits"], dtype=np.uint64), alpha, tuple(a["shape"]))
    epilogue = {role: _f32(p.get(role)) for role in EPILOGUE}
    # fuse.py's input affine, floor and ceiling
    fused = {role: p.get(role) for role in ("in_scale", "in_shift", "out_floor", "out_ceiling")}
    if step.op == "binary_conv2d":
        return kernels.Conv2dLayer(pw, order=a["order"], stride=a["stride"], padding=a["padding"],
                                   dilation=a["dilation"], **epilogue, **fused)
    return kernels.LinearLayer(pw, order=a["order"], **epilogue, **fused)


def _pool_step(kernels, node, params):
    """A planned ``max_pool2d`` step in the native core (:class:`horq.kernels.MaxPool2d`, prepared now, the kernel
    path resolved as a binary layer's is: one pass per output row instead of numpy's one pass per tap), with its
    fused floor (one value or one per channel); the same values as :func:`horq.runtime.ops.max_pool2d` (a maximum
    is exact), which takes anything but a float32 map and other floors."""
    if not _core_floor(params.get("floor")):
        return functools.partial(np_ops.max_pool2d, node, params)
    pool = kernels.MaxPool2d(**_pool_args(node, params))

    def run(x):
        return pool(x) if x.dtype == np.float32 else np_ops.max_pool2d(node, params, x)

    return _with_core_step(run, pool.core_step(node.in_shapes[0]))


def _pool_args(node, params) -> dict:
    """A ``max_pool2d`` node's arguments as :func:`horq.kernels.max_pool2d` (and ``float_conv2d(pool=)``) take
    them, its fused floor included."""
    a = node.attrs
    return {"kernel_size": a["kernel"], "stride": a["stride"], "padding": a["padding"],
            "dilation": a.get("dilation", (1, 1)), "out_size": tuple(node.out_shape[1:]), "floor": params.get("floor")}


def global_avg_pool(kernels, x):
    """A ``global_avg_pool`` step in the core (:func:`horq.kernels.global_avg_pool`: numpy's reduction spent most
    of its 15-45 us on per-row overhead at ResNet-18's 512 x 4 x 4), the same values as
    :func:`horq.runtime.ops.global_avg_pool` up to float rounding; numpy's op for anything but float32."""
    if x.dtype != np.float32:
        return np_ops.global_avg_pool(None, None, x)
    return kernels.global_avg_pool(x)


#: A float convolution runs in the core when the kernel path in use is one of FLOAT_CONV_PATHS, its receptive field
#: C / groups * kh * kw has at most FLOAT_CONV_MAX_FIELD values (FLOAT_CONV_1X1_MAX_FIELD for a 1x1 kernel) and its
#: output rows are at least FLOAT_CONV_MIN_WIDTH wide; elsewhere numpy's im2col + BLAS GEMM is faster (wide filters
#: reread per row block, rows narrower than a vector; the portable path, without fused multiply-adds or wide
#: registers, ran about half as fast as numpy everywhere). Measured by `python benchmarks/bench_float_conv.py`
#: (docs/KERNELS.md, rounds 6 and 48: 1x1 convolutions over 64-256 channels ran 1.3-1.6x faster on numpy; over 32
#: or fewer a group level or faster in the core in whole runtime steps). A grouped one (depthwise too) runs in the
#: core at any width: numpy's op copies kh * kw floats an output and multiplies group by group (`python
#: benchmarks/bench_grouped_conv.py`, docs/KERNELS.md round 48).
FLOAT_CONV_PATHS = ("avx2", "avx512")
FLOAT_CONV_MAX_FIELD = 576  # a 3x3 kernel over 64 channels
FLOAT_CONV_1X1_MAX_FIELD = 32
FLOAT_CONV_MIN_WIDTH = 16


def float_conv_in_core(weight_shape, groups: int, out_w: int) -> bool:
    """Whether a FLOAT_CONV_PATHS path's core takes a float convolution of weights ``weight_shape`` (C_out, C / groups,
    kh, kw) whose output rows are ``out_w`` wide (the rule above; a grouped one at any width)."""
    field = math.prod(weight_shape[1:])
    if field > (FLOAT_CONV_1X1_MAX_FIELD if weight_shape[2] * weight_shape[3] == 1 else FLOAT_CONV_MAX_FIELD):
        return False
    return groups > 1 or out_w >= FLOAT_CONV_MIN_WIDTH


def float_conv_runs_natively(step, kernel_path: str) -> bool:
    """True for the planned float ``conv2d`` steps :func:`float_conv2d` takes on ``kernel_path``
    (:func:`float_conv_in_core` on FLOAT_CONV_PATHS)."""
    node = step.node
    if kernel_path not in FLOAT_CONV_PATHS or node.op != "conv2d":
        return False
    return float_conv_in_core(np.shape(step.params["weight"]), node.attrs.get("groups", 1), node.out_shape[2])


def float_conv_step(kernels, node, params, kernel_path: str):
    """A planned float ``conv2d`` step in the core (:class:`horq.kernels.FloatConv2d`, prepared now on
    ``kernel_path``), with the epilogue the numpy op would apply: the output affine folded into the weights and bias
    (:func:`horq.runtime.ops.build`'s parameters), then the fused floor and ceiling (a relu or hardtanh), then a
    fused ``max_pool2d``, pooled in the same call when the core takes its floor; the same values as
    :func:`horq.runtime.ops.conv2d` to float rounding (numpy's op for a non-float32 input)."""
    a = node.attrs
    conv = {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "bias": params.get("bias"),
            "floor": params["channel_floor"], "ceiling": params.get("ceiling"), "kernel": kernel_path,
            "groups": a.get("groups", 1)}
    pool, after = params.get("pool"), None
    if pool is not None and _core_floor(pool[1].get("floor")):
        conv["pool"] = _pool_args(*pool)
    elif pool is not None:
        after = _pool_step(kernels, pool[0], dict(pool[1]))
    fc = kernels.FloatConv2d(params["weight4"], **conv)

    def run(x):
        if x.dtype != np.float32:
            return np_ops.conv2d(node, params, x)
        y = fc(x)
        return y if after is None else after(y)

    if after is None:  # the whole step in one core call: a chain can run it (horq.runtime.program)
        return _with_core_step(run, fc.core_step(node.in_shapes[0]))
    return run


#: A float linear layer (or an order-0 binary one: a float product with the signs unpacked) runs in the core
#: (:class:`horq.kernels.FloatLinear`) on FLOAT_CONV_PATHS for inputs of at most FLOAT_LINEAR_MAX_ROWS rows: there the
#: product streams its weights, which numpy's BLAS read more slowly from memory (ResNet-18's 1000 x 512 classifier,
#: one row: ~1.8x) and on one thread only (threads.py), and its products for 2-8 rows ran 2-6x slower. More rows go to
#: numpy's blocked matrix product. Measured by `python benchmarks/bench_float_linear.py` (docs/KERNELS.md round 19).
#: Small layers (a 10-way classifier) run in the core too: called alone, as fast as numpy's op (2.8 us either way
#: for 256 -> 10), and at the end of a chain of core steps (horq.runtime.program) one call fewer from Python:
#: mnist-cnn 0.081 -> 0.072 ms a call (docs/KERNELS.md round 26).
FLOAT_LINEAR_MAX_ROWS = 16


def float_linear_step(kernels, node, params, kernel_path: str):
    """A planned float ``linear`` step in the core for up to FLOAT_LINEAR_MAX_ROWS rows
    (:class:`horq.kernels.FloatLinear`, prepared now on ``kernel_path``), with the numpy op's epilogue: the output
    affine folded into the weights and bias (:func:`horq.runtime.ops.build`'s parameters), then the fused floor and
    ceiling; the same values as :func:`horq.runtime.ops.linear` to float rounding. numpy's op for more rows, a
    non-float32 or non-2-d input."""
    fl = kernels.FloatLinear(params["matrix"], bias=params.get("bias"), floor=params.get("floor"),
                             ceiling=params.get("ceiling"), kernel=kernel_path)

    def run(x):
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] > FLOAT_LINEAR_MAX_ROWS:
            return np_ops.linear(node, params, x)
        return fl(x)

    return _with_core_step(run, fl.core_step(FLOAT_LINEAR_MAX_ROWS))


def _float_linear_runs_natively(step, kernel_path: str) -> bool:
    node, floor = step.node, step.params.get("floor")
    float_product = node.op == "linear" or (node.op == "binary_linear" and not node.attrs.get("order"))
    per_output = floor is None or np.size(floor) in (1, node.out_shape[-1])
    return kernel_path in FLOAT_CONV_PATHS and float_product and per_output


def _core_floor(floor) -> bool:
    """Whether the core's pooling takes this fused floor: none, one value, or one per channel."""
    return floor is None or np.ndim(floor) == 0 or np.shape(floor)[2:] == (1, 1)


def _with_core_step(fn, core_step):
    """``fn`` marked with the core step object that a chain runs in its place (:func:`chain`)."""
    fn.core_step = core_step  # a function's or partial's attribute
    return fn


def chain(kernels):
    """The factory of the runs of steps that go through the core in one call (:class:`horq.runtime.program.Program`):
    steps whose callable has a ``core_step`` (binary convolutions, float convolutions with their fused pool, max
    pooling, global average pooling, flatten, the core's float linear layers)."""
    return kernels.StepChain


def build_step(step, kernels):
    """The native backend's callable for any planned step: binary layers on the kernels (:func:`build`),
    max pooling and small float convolutions in the core (:func:`max_pool2d`, :func:`float_conv2d`),
    everything else on the numpy ops."""
    if step.native:
        return build(step, kernels)
    if step.op == "max_pool2d":
        return _pool_step(kernels, step.node, dict(step.params))
    if step.op == "global_avg_pool":
        return _with_core_step(functools.partial(global_avg_pool, kernels), kernels.GlobalAvgPoolStep())
    # The kernel path is resolved when the step is built (as a binary layer's is), for float convs only.
    if step.op == "conv2d" and float_conv_runs_natively(step, path := kernels.info()["in_use"]):
        params = np_ops.prepared(step)
        per_group = step.node.in_shapes[0][0] // step.node.attrs.get("groups", 1)
        params["weight4"] = np.ascontiguousarray(
            params["matrix"].reshape(params["matrix"].shape[0], per_group, *params["kernel"]))
        floor = params.get("floor")  # one value, or per channel as (1, C, 1, 1), maybe spread over the map at load
        params["channel_floor"] = np.asarray(floor)[0, :, 0, 0] if np.ndim(floor) == 4 else floor
        return float_conv_step(kernels, step.node, params, path)
    if step.op in ("linear", "binary_linear") and _float_linear_runs_natively(step, path := kernels.info()["in_use"]):
        return float_linear_step(kernels, step.node, np_ops.prepared(step), path)
    if step.op == "conv2d" and "pool" in step.params:  # numpy's convolution, then the core's pool
        pnode, pparams = step.params["pool"]
        conv = np_ops.build(replace(step, params={k: v for k, v in step.params.items() if k != "pool"}))
        pool = _pool_step(kernels, pnode, dict(pparams))
        return lambda x: pool(conv(x))
    fn = np_ops.build(step)
    return _with_core_step(fn, kernels.FlattenStep()) if step.op == "flatten" else fn
