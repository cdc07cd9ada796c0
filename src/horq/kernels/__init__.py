"""Python face of the native XNOR-popcount core ``horq._core`` (numpy in, numpy out, float32).

Arithmetic (docs/MATH.md): weights are ``alpha_o * sign(W_o)``; every input column (a receptive field
of a convolution, zero padding included, or one sample of a linear layer) is residual-binarized to ``order``
planes ``H_k`` with one ``beta_k`` each, and

    y[o, j] = alpha_o * sum_k beta_{k,j} * (n - 2 * popcount(B_o XOR H_{k,j}))      (+ bias)

optionally followed by a folded BatchNorm epilogue ``scale * (y + bias) + shift`` (per output channel).

Rules pinned by the tests:

* ``order`` is an integer in 1..8 (binary inputs). ``order=0`` (binary weights, real inputs) is not run by
  the native core: it raises ValueError pointing at :mod:`horq.reference`.
* ``x`` must be a float32 array (or a CPU torch tensor, read through numpy) with the documented ndim and
  channel count and at least one element; non-contiguous inputs are copied. Any NaN or +-Inf anywhere in
  ``x`` raises ValueError, even in pixels no output reads (a NaN has no sign and an Inf makes beta
  infinite, so no result would be meaningful).
* The kernel path is the ``kernel`` argument, else the ``HORQ_KERNEL`` environment variable, else the best
  path this CPU runs (``avx512`` > ``avx2`` > ``generic``); a path the CPU lacks raises ValueError.
* Results are bitwise identical for any thread count (:func:`set_num_threads`); different paths agree to
  float32 rounding (they sum the betas in different orders).
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

import numpy as np

import horq._core as _core
from horq import reference
from horq.bits import WORD_DTYPE, pack_signs, words_for
from horq.geometry import check_order, conv_output_size, pair

__all__ = [
    "KERNEL_ENV",
    "all_finite",
    "Conv2dLayer",
    "FloatConv2d",
    "LinearLayer",
    "MaxPool2d",
    "PackedWeights",
    "bgemm",
    "conv2d",
    "FloatLinear",
    "float_conv2d",
    "float_linear",
    "get_num_threads",
    "global_avg_pool",
    "FlattenStep",
    "GlobalAvgPoolStep",
    "StepChain",
    "info",
    "linear",
    "max_pool2d",
    "PATH_FEATURES",
    "pack_weights",
    "quantize_pack",
    "set_num_threads",
]

KERNEL_ENV = "HORQ_KERNEL"
_F32 = np.dtype(np.float32)

#: ``StepChain([(step, fn, out, ins, free), ...])(env)``: runs prepared steps of a runtime program on its slots in one
#: call (:class:`horq.runtime.program.Program`): ``step`` a core step object (a layer's ``core_step``), ``fn`` the
#: step's Python callable, run instead where the core step does not take an input (not a C-contiguous float32 array).
StepChain = _core.StepChain
#: :func:`global_avg_pool` as a core step object for a :data:`StepChain` (callable on a float32 contiguous map).
GlobalAvgPoolStep = _core.GlobalAvgPoolStep
#: A flatten to (N, rest) as a core step object: a view of a C-contiguous float32 array, as numpy's reshape gives.
FlattenStep = _core.FlattenStep


def _ready(a, shape) -> bool:
    """Whether ``a`` goes to the core as it is: a contiguous float32 numpy array of ``shape``, the shape a prepared
    call last checked (the prepared layers' fast path; the core checks shapes and values again)."""
    return type(a) is np.ndarray and a.shape == shape and a.dtype == _F32 and a.flags.c_contiguous


def _resolve_kernel(kernel: str | None) -> str:
    name = kernel if kernel is not None else os.environ.get(KERNEL_ENV, "")
    if not name:
        return _core.available_kernels()[0]
    known, avail = _core.known_kernels(), _core.available_kernels()
    if name not in known:
        raise ValueError(f"unknown kernel path {name!r} (known: {', '.join(known)})")
    if name not in avail:
        raise ValueError(f"kernel path {name!r} is not supported by this CPU (available: {', '.join(avail)})")
    return name


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the OS reports them (Linux's ``avx2``, ``avx512f``, ...; empty if unknown)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor string as the OS reports it (``GenuineIntel``, ``AuthenticAMD``; empty if unknown)."""
    return _cpuinfo_field("vendor_id") or ""


#: The instruction sets each x86 path is compiled for, in the names of Linux's /proc/cpuinfo flags: the core offers a
#: path exactly where the CPU reports all of them (csrc/core/dispatch.cpp asks the CPU itself).
PATH_FEATURES = {
    "avx512": ("avx2", "fma", "bmi2", "popcnt", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vpopcntdq"),
    "avx2": ("avx2", "fma", "bmi2", "popcnt"),
}


def info() -> dict:
    """The native core's configuration.

    Returns:
        dict with ``available`` (paths this CPU can run, best first), ``known`` (all paths the library has),
        ``in_use`` (the path a call without ``kernel=`` takes now, honouring ``HORQ_KERNEL``), ``threads``,
        ``cpu`` (model name), ``vendor`` (cpu_vendor()) and ``missing``: for each known path this CPU cannot run,
        the instruction sets of :data:`PATH_FEATURES` that the OS does not report (empty where it reports none).
    """
    try:
        in_use = _resolve_kernel(None)
    except ValueError as exc:
        in_use = f"invalid {KERNEL_ENV}: {exc}"
    available, known, flags = list(_core.available_kernels()), list(_core.known_kernels()), cpu_flags()
    return {
        "available": available,
        "known": known,
        "in_use": in_use,
        "threads": _core.get_num_threads(),
        "cpu": _cpu_model(),
        "vendor": cpu_vendor(),
        "missing": {path: [f for f in PATH_FEATURES.get(path, ()) if flags and f not in flags]
                    for path in known if path not in available},
    }


def set_num_threads(n: int) -> None:
    """Sets the number of threads the kernels use (the caller's thread included); ``n >= 1``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Number of threads the kernels use (default: ``HORQ_NUM_THREADS`` or the CPU count)."""
    return _core.get_num_threads()


def _to_numpy(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _float_input(x, ndim: int, name: str, shape_doc: str) -> np.ndarray:
    x = _to_numpy(x)
    if x.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {shape_doc}, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return np.ascontiguousarray(x)


def _check_order(order) -> int:
    if order == 0 and not isinstance(order, bool):
        raise ValueError(
            "order 0 (binary weights, real-valued inputs) is not supported by the native kernels; "
            "use horq.reference.horq_conv2d / horq_linear"
        )
    checked = check_order(order, lowest=1, allow_none=False)
    assert checked is not None  # allow_none=False
    return checked


class PackedWeights:
    """Binary weights of one layer: ``alpha_o * sign(W_o)`` (docs/DESIGN.md, binding).

    Args:
        bits: uint64 ``(C_out, words_for(n))`` = ``horq.bits.pack_signs(w.reshape(C_out, -1))``.
        alpha: float32 ``(C_out,)``, mean ``|w|`` per output filter.
        shape: the float weight's shape, ``(C_out, C_in, kh, kw)`` or ``(out_features, in_features)``.

    Raises:
        ValueError: on mismatched shapes or dtypes, non-zero padding bits, or non-finite alpha.
    """

    def __init__(self, bits, alpha, shape):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or any(s < 1 for s in shape):
            raise ValueError(f"PackedWeights: shape must have >= 2 positive dimensions, got {shape}")
        bits, alpha = np.asarray(bits), np.asarray(alpha)
        n = int(np.prod(shape[1:]))
        if bits.dtype != WORD_DTYPE or bits.shape != (shape[0], words_for(n)):
            raise ValueError(
                f"PackedWeights: bits must be uint64 of shape {(shape[0], words_for(n))}, got {bits.dtype} {bits.shape}"
            )
        if alpha.dtype != np.float32 or alpha.shape != (shape[0],):
            raise ValueError(
                f"PackedWeights: alpha must be float32 of shape {(shape[0],)}, got {alpha.dtype} {alpha.shape}"
            )
        if not np.isfinite(alpha).all():
            raise ValueError("PackedWeights: alpha contains NaN or Inf")
        if n % 64 and (bits[:, -1] >> np.uint64(n % 64)).any():
            raise ValueError("PackedWeights: padding bits of the last word must be zero")
        self.bits = np.ascontiguousarray(bits)
        self.alpha = np.ascontiguousarray(alpha)
        self.shape = shape
        self._conv_bits = None

    @property
    def out_channels(self) -> int:
        return self.shape[0]

    @property
    def n(self) -> int:
        """Length of one binary dot product (``C_in * kh * kw`` or ``in_features``)."""
        return int(np.prod(self.shape[1:]))

    def conv_bits(self) -> np.ndarray:
        """The bits re-laid out for the conv kernel (per tap, ``words_for(C_in)`` words of channels); cached, and
        read-only: a prepared layer keeps what its kernel path derives from them (the AVX2 filter panels)."""
        if len(self.shape) != 4:
            raise ValueError(f"conv2d needs a 4-d weight shape (C_out, C_in, kh, kw), got {self.shape}")
        if self._conv_bits is None:
            _, c, kh, kw = self.shape
            self._conv_bits = _core.relayout_conv_weights(self.bits, c, kh, kw)
            self._conv_bits.flags.writeable = False
        return self._conv_bits

    def __repr__(self) -> str:
        return f"PackedWeights(shape={self.shape})"


def pack_weights(w) -> PackedWeights:
    """Binarizes a float weight (``(C_out, ...)``) into :class:`PackedWeights`.

    Raises:
        ValueError: if ``w`` has fewer than 2 dimensions, is empty, or holds NaN/Inf.
    """
    w = _to_numpy(w)
    if w.ndim < 2 or w.size == 0:
        raise ValueError(f"pack_weights: need a non-empty weight of >= 2 dimensions, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating) or not np.isfinite(w).all():
        raise ValueError("pack_weights: weight must be floating point without NaN or Inf")
    rows = w.reshape(w.shape[0], -1)
    alpha = reference.weight_alpha(rows).astype(np.float32)
    return PackedWeights(pack_signs(rows), alpha, w.shape)


def quantize_pack(cols, order: int, *, kernel: str | None = None):
    """Order-K residual binarization of each row of ``cols``, packed (the kernels' input side).

    Args:
        cols: float32 ``(P, n)``; each row is one column in docs/MATH.md's sense.
        order: 1..8.
        kernel: path override (see module docstring).

    Returns:
        ``(bits, betas)``: uint64 ``(P, order, words_for(n))`` with ``bits[j, k] = pack_signs(H_{k+1})`` and
        float64 ``(P, order)`` betas.

    Raises:
        ValueError: bad dtype/shape/order, NaN/Inf in ``cols``, or an unsupported kernel path.
    """
    order = _check_order(order)
    cols = _float_input(cols, 2, "cols", "(P, n)")
    return _core.quantize_pack(cols, order, _resolve_kernel(kernel))


def bgemm(a, b, n: int | None = None, *, kernel: str | None = None) -> np.ndarray:
    """Binary GEMM of packed rows: ``out[i, j] = n - 2 * popcount(a[i] XOR b[j])`` (int32).

    Args:
        a: uint64 ``(M, W)``; b: uint64 ``(N, W)``; n: bits per row (default ``64 * W``; padding bits
            beyond ``n`` must be zero in both).
    """
    a, b = np.asarray(a), np.asarray(b)
    for name, v in (("a", a), ("b", b)):
        if v.dtype != WORD_DTYPE or v.ndim != 2 or v.size == 0:
            raise ValueError(f"bgemm: {name} must be a non-empty 2-d uint64 array, got {v.dtype} {v.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"bgemm: a has {a.shape[1]} words per row, b has {b.shape[1]}")
    n = 64 * a.shape[1] if n is None else int(n)
    if words_for(n) != a.shape[1]:
        raise ValueError(f"bgemm: n={n} does not fit {a.shape[1]} words per row")
    return _core.bgemm(np.ascontiguousarray(a), np.ascontiguousarray(b), n, _resolve_kernel(kernel))


def _epilogue(pw: PackedWeights, bias, scale, shift):
    m = pw.out_channels

    def vec(v, name, default):
        if v is None:
            return np.full(m, default, np.float64)
        v = _to_numpy(v).astype(np.float64)
        if v.shape != (m,):
            raise ValueError(f"{name} must have shape ({m},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or Inf")
        return v

    bias, scale, shift = vec(bias, "bias", 0.0), vec(scale, "scale", 1.0), vec(shift, "shift", 0.0)
    # scale * (alpha * S + bias) + shift = (alpha * scale) * S + (scale * bias + shift)
    return pw.alpha.astype(np.float64) * scale, scale * bias + shift


def _channel_vector(v, n: int, name: str) -> np.ndarray:
    v = np.ascontiguousarray(_to_numpy(v), dtype=np.float32)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {v.shape}")
    if np.isnan(v).any():
        raise ValueError(f"{name} contains NaN")
    return v


def _input_affine(channels: int, scale, shift) -> tuple:
    """``(in_scale, in_shift)`` as contiguous float32 ``(C,)`` arrays, or ``(None, None)``."""
    if scale is None and shift is None:
        return None, None
    if scale is None or shift is None:
        raise ValueError("in_scale and in_shift go together")
    out = []
    for v, name in ((scale, "in_scale"), (shift, "in_shift")):
        v = np.ascontiguousarray(_to_numpy(v), dtype=np.float32)
        if v.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or Inf")
        out.append(v)
    return tuple(out)


def _check_weights(pw, op: str, shape_doc: str) -> PackedWeights:
    if not isinstance(pw, PackedWeights):
        raise ValueError(f"{op}: weights must be PackedWeights, got {type(pw).__name__}")
    ndim = shape_doc.count(",") + 1
    if len(pw.shape) != ndim:
        raise ValueError(f"{op} needs a {ndim}-d weight shape {shape_doc}, got {pw.shape}")
    return pw


class Conv2dLayer:
    """A HORQ convolution prepared once: weights, order, geometry, epilogue and kernel path checked and
    resolved at construction, so a call only checks ``x`` and runs the core (what :func:`conv2d` does per
    call costs tens of microseconds, visible on small layers). The kernel path is resolved here: a later
    change of ``HORQ_KERNEL`` does not affect an existing layer.

    ``in_scale``/``in_shift`` (C values each, together): the layer computes the convolution of
    ``x * in_scale[c] + in_shift[c]`` (float32, multiply then add, as a separate affine step would), applied
    while the input is packed instead of in a pass of its own: a BatchNorm before a binary layer.
    ``out_floor`` (C_out values) and a call's ``residual`` (an array of the output's shape): the output
    becomes ``max(out_floor, y + residual)`` in float32, as separate add and maximum steps would compute it
    (a residual block's sum and the ReLU after it), in the kernels' output stores; ``out_ceiling`` (C_out values)
    then takes ``min(out_ceiling, .)`` (with the floor, a hardtanh or ReLU6 after the layer: numpy.clip's values).

    Raises (construction):
        ValueError: see the module docstring.
    """

    def __init__(self, pw: PackedWeights, *, order: int, stride=1, padding=0, dilation=1, bias=None, scale=None,
                 shift=None, in_scale=None, in_shift=None, out_floor=None, out_ceiling=None,
                 kernel: str | None = None):
        self.order = _check_order(order)
        self.pw = _check_weights(pw, "conv2d", "(C_out, C, kh, kw)")
        self.stride, self.padding = pair(stride, "stride", minimum=1), pair(padding, "padding", minimum=0)
        self.dilation = pair(dilation, "dilation", minimum=1)
        self._coef, self._add = _epilogue(pw, bias, scale, shift)
        self._in_affine = _input_affine(pw.shape[1], in_scale, in_shift)
        self._floor = None if out_floor is None else _channel_vector(out_floor, pw.out_channels, "out_floor")
        self._ceiling = None if out_ceiling is None else _channel_vector(out_ceiling, pw.out_channels, "out_ceiling")
        self._wbits = pw.conv_bits()
        self.kernel = _resolve_kernel(kernel)
        _, c, kh, kw = pw.shape
        # The core's prepared call: every argument but x and the residual converted once (~2 us a call).
        self._core = _core.PreparedConv(self._wbits, self._coef, self._add, c, kh, kw, self.stride, self.padding,
                                        self.dilation, self.order, self.kernel, *self._in_affine, self._floor,
                                        self._ceiling)
        self._checked = (None, None)  # the shapes of x and residual of the last call that passed the checks

    @property
    def core_step(self):
        """The core's prepared layer, which a runtime program runs without a Python call
        (:class:`horq.runtime.program.Program`); it checks shapes, not the messages this object's call gives."""
        return self._core

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(OH, OW)`` for an ``h`` x ``w`` input; ValueError when the input is too small."""
        _, _, kh, kw = self.pw.shape
        (sh, sw), (ph, pw_), (dh, dw) = self.stride, self.padding, self.dilation
        oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw_, dw)
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d: input {h}x{w} is too small for a {kh}x{kw} kernel "
                             f"(padding {self.padding}, dilation {self.dilation})")
        return oh, ow

    def __call__(self, x, residual=None) -> np.ndarray:
        """float32 ``(N, C_out, OH, OW)`` = ``scale * (horq_conv + bias) + shift`` for ``x`` (N, C, H, W), plus
        ``residual``, floored at ``out_floor`` and capped at ``out_ceiling`` when given (see the class docstring)."""
        # Arrays of the shapes the last call checked, already contiguous float32 numpy: straight to the core, which
        # checks every shape again (a runtime model calls each layer with one shape; the Python checks cost a
        # few microseconds, ~2% of a ResNet-18 32x32 call).
        if _ready(x, self._checked[0]) and (residual is None if self._checked[1] is None else
                                             _ready(residual, self._checked[1])):
            return self._core(x, residual)
        x = _float_input(x, 4, "x", "(N, C, H, W)")
        _, c, kh, kw = self.pw.shape
        if x.shape[1] != c:
            raise ValueError(f"conv2d: x has {x.shape[1]} channels, the weights expect {c}")
        oh, ow = self.output_size(x.shape[2], x.shape[3])
        if residual is not None:
            residual = _float_input(residual, 4, "residual", "(N, C_out, OH, OW)")
            if residual.shape != (x.shape[0], self.pw.out_channels, oh, ow):
                raise ValueError(f"conv2d: residual has shape {residual.shape}, the output "
                                 f"{(x.shape[0], self.pw.out_channels, oh, ow)}")
        y = self._core(x, residual)
        self._checked = (x.shape, None if residual is None else residual.shape)
        return y


class LinearLayer:
    """A HORQ linear layer prepared once (see :class:`Conv2dLayer`).

    ``in_scale``/``in_shift`` (in_features values each, together): the layer multiplies
    ``x * in_scale[i] + in_shift[i]`` (float32, multiply then add, as a separate affine step would), applied as
    the input rows are quantized: a BatchNorm before a binary linear layer. ``out_floor`` (out_features values):
    the output becomes ``max(out_floor, y)`` in float32, as a separate maximum step would (the ReLU after the
    layer), in the kernels' output stores; ``out_ceiling`` (out_features values) then ``min(out_ceiling, .)`` (a
    hardtanh).
    """

    def __init__(self, pw: PackedWeights, *, order: int, bias=None, scale=None, shift=None, in_scale=None,
                 in_shift=None, out_floor=None, out_ceiling=None, kernel: str | None = None):
        self.order = _check_order(order)
        self.pw = _check_weights(pw, "linear", "(out, in)")
        self._coef, self._add = _epilogue(pw, bias, scale, shift)
        self._in_affine = _input_affine(pw.shape[1], in_scale, in_shift)
        self._floor = None if out_floor is None else _channel_vector(out_floor, pw.out_channels, "out_floor")
        self._ceiling = None if out_ceiling is None else _channel_vector(out_ceiling, pw.out_channels, "out_ceiling")
        self.kernel = _resolve_kernel(kernel)
        # The core's prepared call (as Conv2dLayer's), which a runtime program also runs within a chain of steps.
        self._core = _core.PreparedLinear(pw.bits, self._coef, self._add, pw.shape[1], self.order, self.kernel,
                                          *self._in_affine, self._floor, self._ceiling)
        self._checked = None  # the shape of x of the last call that passed the checks

    @property
    def core_step(self):
        """The core's prepared layer, which a runtime program runs without a Python call
        (:class:`horq.runtime.program.Program`); it checks shapes, not the messages this object's call gives."""
        return self._core

    def __call__(self, x) -> np.ndarray:
        """float32 ``(N, out_features)`` = ``scale * (horq_linear + bias) + shift`` for ``x`` (N, in), floored at
        ``out_floor`` and capped at ``out_ceiling`` when given (see the class docstring)."""
        if _ready(x, self._checked):
            return self._core(x)
        x = _float_input(x, 2, "x", "(N, in_features)")
        if x.shape[1] != self.pw.shape[1]:
            raise ValueError(f"linear: x has {x.shape[1]} features, the weights expect {self.pw.shape[1]}")
        y = self._core(x)
        self._checked = x.shape
        return y


def conv2d(x, pw: PackedWeights, *, order: int, stride=1, padding=0, dilation=1, bias=None, scale=None,
           shift=None, kernel: str | None = None) -> np.ndarray:
    """HORQ convolution (groups = 1) of ``x`` (N, C, H, W) with packed weights (C_out, C, kh, kw).

    For repeated calls with the same weights, :class:`Conv2dLayer` does the checks once.

    Returns:
        float32 ``(N, C_out, OH, OW)`` = ``scale * (horq_conv + bias) + shift`` (each term optional).

    Raises:
        ValueError: see the module docstring.
    """
    layer = Conv2dLayer(pw, order=order, stride=stride, padding=padding, dilation=dilation, bias=bias,
                        scale=scale, shift=shift, kernel=kernel)
    return layer(x)


def linear(x, pw: PackedWeights, *, order: int, bias=None, scale=None, shift=None,
           kernel: str | None = None) -> np.ndarray:
    """HORQ linear layer of ``x`` (N, in_features) with packed weights (out_features, in_features).

    For repeated calls with the same weights, :class:`LinearLayer` does the checks once.

    Returns:
        float32 ``(N, out_features)`` = ``scale * (horq_linear + bias) + shift`` (each term optional).

    Raises:
        ValueError: see the module docstring.
    """
    return LinearLayer(pw, order=order, bias=bias, scale=scale, shift=shift, kernel=kernel)(x)


def float_conv2d(x, weight, *, stride=1, padding=0, dilation=1, bias=None, floor=None, ceiling=None, pool=None,
                 kernel: str | None = None, algorithm: str = "auto", groups: int = 1) -> np.ndarray:
    """Full-precision convolution of ``x`` (N, C, H, W) with float ``weight`` (C_out, C / groups, kh, kw), then
    ``+ bias``, ``max(., floor)`` and ``min(., ceiling)`` per output channel (each optional; ``floor`` and ``ceiling``
    one value or one per channel; NaN kept, as numpy.maximum / numpy.minimum keep it; both: ``numpy.clip``'s values, a
    fused hardtanh or ReLU6): the runtime's float ``conv2d`` step (a network's first layer; grouped and depthwise float
    layers).

    ``groups`` (dividing C and C_out) as in PyTorch: output channel o reads the input channels of group
    ``o // (C_out / groups)`` only (``groups = C = C_out``: depthwise). Grouped calls always compute directly.

    Computed directly from the input, without an unfolded column matrix (core/float_conv.h): each output is
    the products summed in the reference's (c, i, j) order in float32, with fused multiply-adds on the avx2 and
    avx512 paths (which give the same bits) and multiply-then-add on generic (agreeing to float rounding);
    bitwise the same at any thread count. Fastest where C * kh * kw is small and the output rows wide; NaN
    and Inf propagate as in any float convolution.

    ``algorithm``: ``"direct"`` as above; ``"winograd"``: Winograd F(3x3, 4x4) tiles over the input's stride phases
    (core/float_conv_winograd.h; dilation 1, one stride of 1 or 2, kh and kw at most 4 x stride, C x stride^2 at
    most 16: a ResNet stem's 7x7 stride-2 kernel over 3 channels takes ~40 multiply-adds per output instead of 147:
    48, less the products of transformed weights that are zero for every output), within ~1e-6 of sum |w x| of the
    exact result on such a stem (a few 1e-6 on kernels of a few taps), the same bits on avx2 and avx512 (generic: a
    scalar reference, slow); where a weight is NaN, Inf or above 2^40 in magnitude the call computes directly, and
    so do the images of a chunk (~32 MB of tile copies) where an input they read is (the tiles would spread a NaN to
    outputs that do not read it). ``"auto"`` (default): winograd on the avx2 and avx512 paths (measured faster on
    both, docs/KERNELS.md rounds 15 and 17) where it applies and kh * kw >= 10 * stride^2 and the output is at least
    24 wide (a 7x7 stride-2 stem from 64x64 inputs up; a 3x3 stride-1 one, or a 16-wide output, ran slower on the
    tiles), else direct.

    ``pool``: a dict of :func:`max_pool2d`'s arguments (``kernel_size``; ``stride``, ``padding``, ``dilation``,
    ``out_size``, ``floor`` optional) to pool the output in the same call, bitwise ``max_pool2d(float_conv2d(...),
    **pool)``: the convolution's rows are pooled as they are computed, from a few rows in cache instead of the
    whole map (a ResNet stem's 64 x 112 x 112 output is 3.2 MB).

    Raises:
        ValueError: non-float32 or wrongly shaped ``x`` / ``weight`` / ``bias`` / ``floor`` / ``ceiling``, a bad
            geometry, an unknown ``algorithm``, ``groups`` that do not divide C and C_out, or ``"winograd"`` on a
            geometry it does not take (groups > 1 included).
    """
    return FloatConv2d(weight, stride=stride, padding=padding, dilation=dilation, bias=bias, floor=floor,
                       ceiling=ceiling, pool=pool, kernel=kernel, algorithm=algorithm, groups=groups)(x)


FLOAT_CONV_ALGORITHMS = ("auto", "direct", "winograd")


def _per_output(v, name: str, m: int, unit: str = "output"):
    """``v`` (None, one value, or one per each of ``m`` outputs) as a contiguous float32 vector of ``m`` values, or
    None; ``name`` and ``unit`` word the error.

    Raises:
        ValueError: ``v`` holds neither one value nor ``m``.
    """
    if v is None:
        return None
    v = np.asarray(_to_numpy(v), np.float32).reshape(-1)
    if v.size not in (1, m):
        raise ValueError(f"{name} must hold one value or one per {unit} ({m}), got {v.size}")
    return np.ascontiguousarray(np.broadcast_to(v, (m,)))


def _float_conv_call(x, weight, stride, padding, dilation, bias, floor, ceiling, pool, groups, kernel: str,
                     algorithm: str):
    """:func:`float_conv2d`'s arguments checked against ``x`` (already a float32 4-d array): the core function and
    its arguments after ``x`` (FloatConv2d's _prepare)."""
    conv, pool_args = _float_conv_args(x, weight, stride, padding, dilation, bias, floor, ceiling, pool, groups,
                                       algorithm)
    if pool_args is None:
        return _core.float_conv2d, (*conv, kernel, algorithm)
    return _core.float_conv2d_pool, (*conv, *pool_args, kernel, algorithm)


def _float_conv_args(x, weight, stride, padding, dilation, bias, floor, ceiling, pool, groups, algorithm: str):
    """``(conv, pool)``: :func:`float_conv2d`'s arguments checked against ``x``, the core's convolution arguments
    after ``x`` (weights as rows, kh, kw, stride, padding, dilation, bias, floor, ceiling, groups) and its pooling
    arguments (kh, kw, stride, padding, dilation, output height and width, floor; None without a pool)."""
    w = _float_input(weight, 4, "weight", "(C_out, C / groups, kh, kw)")
    m, _, kh, kw = w.shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"float_conv2d: groups must be a positive integer, got {groups!r}")
    if x.shape[1] % groups or m % groups:
        raise ValueError(f"float_conv2d: groups={groups} must divide x's {x.shape[1]} channels and the weights' {m} "
                         "output channels")
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(f"float_conv2d: x has {x.shape[1]} channels, the weights expect {w.shape[1] * groups} "
                         f"({w.shape[1]} per group, groups={groups})")
    (sh, sw), (ph, pw) = pair(stride, "stride", minimum=1), pair(padding, "padding")
    dh, dw = pair(dilation, "dilation", minimum=1)
    if conv_output_size(x.shape[2], kh, sh, ph, dh) < 1 or conv_output_size(x.shape[3], kw, sw, pw, dw) < 1:
        raise ValueError(f"float_conv2d: input {x.shape[2]}x{x.shape[3]} (padding {(ph, pw)}, dilation {(dh, dw)}) "
                         f"is smaller than the kernel ({kh}x{kw})")
    b = None if bias is None else np.ascontiguousarray(_to_numpy(bias), dtype=np.float32)
    if b is not None and b.shape != (m,):
        raise ValueError(f"bias must have shape ({m},), got {b.shape}")
    fl = _per_output(floor, "floor", m, "output channel")
    cl = _per_output(ceiling, "ceiling", m, "output channel")
    if algorithm not in FLOAT_CONV_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {FLOAT_CONV_ALGORITHMS}, got {algorithm!r}")
    conv = (w.reshape(m, -1), kh, kw, (sh, sw), (ph, pw), (dh, dw), b, fl, cl, int(groups))
    if pool is None:
        return conv, None
    unknown = set(pool) - {"kernel_size", "stride", "padding", "dilation", "out_size", "floor"}
    if "kernel_size" not in pool or unknown:
        raise ValueError(f"pool must give kernel_size and may give stride, padding, dilation, out_size, floor; got "
                         f"{sorted(pool)}")
    oh, ow = conv_output_size(x.shape[2], kh, sh, ph, dh), conv_output_size(x.shape[3], kw, sw, pw, dw)
    (pkh, pkw), pstride, ppadding, pdilation, (poh, pow_), pfl = _pool_geometry(oh, ow, **pool, what="pool ")
    return conv, (pkh, pkw, pstride, ppadding, pdilation, poh, pow_, pfl)


class _PreparedCall:
    """A core call on an (N, C, H, W) float32 map whose other arguments are checked and formed once per input
    shape (``_prepare(x) -> (core function, its arguments after x)``): a call with a contiguous float32 numpy
    array of the last call's shape goes straight to the core."""

    _shape: tuple | None = None  # the input shape the call below was formed for
    _fn: Any = None
    _args: tuple = ()

    def _prepare(self, x) -> tuple:
        raise NotImplementedError

    def __call__(self, x) -> np.ndarray:
        if _ready(x, self._shape):
            return self._fn(x, *self._args)
        x = _float_input(x, 4, "x", "(N, C, H, W)")
        fn, args = self._prepare(x)
        y = fn(x, *args)
        self._shape, self._fn, self._args = x.shape, fn, args
        return y


class FloatConv2d(_PreparedCall):
    """:func:`float_conv2d` prepared once: the arguments kept and the kernel path resolved at construction, checked at
    the first call of each input shape; a call with a contiguous float32 numpy array of the last call's shape goes
    straight to the core (the runtime's float first layers; the argument parsing costs ~10 us a call).

    Raises (at a call): ValueError as :func:`float_conv2d`.
    """

    def __init__(self, weight, *, stride=1, padding=0, dilation=1, bias=None, floor=None, ceiling=None, pool=None,
                 kernel: str | None = None, algorithm: str = "auto", groups: int = 1):
        self.weight = weight
        self._spec = (weight, stride, padding, dilation, bias, floor, ceiling, pool, groups)
        self.kernel = _resolve_kernel(kernel)
        self.algorithm = algorithm

    def _prepare(self, x) -> tuple:
        return _float_conv_call(x, *self._spec, self.kernel, self.algorithm)

    def core_step(self, in_shape):
        """This convolution for inputs of per-sample shape ``in_shape`` (C, H, W) as the core's step object, which a
        runtime program runs without a Python call (:class:`horq.runtime.program.Program`): the same call as this
        object's on a float32 contiguous input of that shape.

        Raises:
            ValueError: as a call on an input of that shape would.
        """
        dummy = np.empty((1, *in_shape), np.float32)
        conv, pool = _float_conv_args(dummy, *self._spec, self.algorithm)
        return _core.FloatConvStep(*conv, pool, self.kernel, self.algorithm)


def float_linear(x, weight, *, bias=None, floor=None, ceiling=None, kernel: str | None = None) -> np.ndarray:
    """Full-precision fully connected layer: ``min(max(x @ weight.T + bias, floor), ceiling)`` of ``x`` (rows, n)
    float32 and ``weight`` (m, n) float32, ``bias``, ``floor`` and ``ceiling`` optional (one value or one per output;
    floor and ceiling: a fused relu or hardtanh): the runtime's float classifier at inference batch sizes.

    Each output is a dot product in a fixed order (core/float_linear.h: 32 partial sums by fused multiply-add, folded
    in halves), the same bits on every kernel path and thread count, within float32 rounding of the exact result as
    any float product is; NaN and Inf propagate as in numpy. Blocks of outputs go to the kernels' threads. Meant for a
    few rows: the weights are streamed once per call and each row's products run one output at a time, where a BLAS
    matrix product (numpy) blocks for many.

    Raises:
        ValueError: non-float32 or non-2-d ``x`` / ``weight``, a row length other than ``weight``'s, or a ``bias`` /
            ``floor`` / ``ceiling`` of another length.
    """
    return FloatLinear(weight, bias=bias, floor=floor, ceiling=ceiling, kernel=kernel)(x)


class FloatLinear:
    """:func:`float_linear` prepared once: the weights, bias, floor and ceiling checked and kept, the kernel path
    resolved at construction; a call with a contiguous float32 numpy array of the weights' row length goes straight to
    the core.

    Raises (at a call): ValueError as :func:`float_linear`.
    """

    def __init__(self, weight, *, bias=None, floor=None, ceiling=None, kernel: str | None = None):
        self.weight = _float_input(weight, 2, "weight", "(m, n)")
        m = self.weight.shape[0]
        self.bias = _per_output(bias, "bias", m)
        self.floor = _per_output(floor, "floor", m)
        self.ceiling = _per_output(ceiling, "ceiling", m)
        self.kernel = _resolve_kernel(kernel)

    def __call__(self, x) -> np.ndarray:
        x = _float_input(x, 2, "x", "(rows, n)")
        if x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"float_linear: x has {x.shape[1]} features, the weights expect {self.weight.shape[1]}")
        return _core.float_linear(x, self.weight, self.bias, self.floor, self.ceiling, self.kernel)

    def core_step(self, max_rows: int):
        """This layer as the core's step object (see :meth:`FloatConv2d.core_step`), for inputs of up to ``max_rows``
        rows (a chain hands larger ones to the step's Python function)."""
        return _core.FloatLinearStep(self.weight, self.bias, self.floor, self.ceiling, self.kernel, max_rows)


def all_finite(x) -> bool:
    """Whether no value of the float32 array ``x`` is NaN or +-Inf: ``np.isfinite(x).all()`` without its mask (the
    runtime's input check; blocks of values across the kernels' threads). A non-contiguous ``x`` is copied first.

    Raises:
        ValueError: a non-float32 ``x``.
    """
    x = _to_numpy(x)
    if x.dtype != _F32:
        raise ValueError(f"all_finite: x must be a float32 array, got {x.dtype}")
    return bool(_core.all_finite(np.ascontiguousarray(x)))


def global_avg_pool(x) -> np.ndarray:
    """The mean of each (H, W) plane of ``x`` (N, C, H, W) float32 as (N, C, 1, 1) float32, summed in double in
    numpy's pairwise order (the result of ``np.add.reduce(..., dtype=np.float64) / (H * W)`` wherever numpy sums a
    plane in one pass; within rounding elsewhere). Threaded over the planes.

    Raises:
        ValueError: a non-float32, non-4-d or empty ``x``.
    """
    return _core.global_avg_pool(_float_input(x, 4, "x", "(N, C, H, W)"))


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, *, out_size=None, floor=None,
               kernel: str | None = None) -> np.ndarray:
    """Max pooling of ``x`` (N, C, H, W) float32 in the native core (PyTorch's ``max_pool2d`` arithmetic:
    padding taps are skipped, a NaN in a window gives NaN), optionally ``max(floor, pool(x))`` with ``floor``
    one value or one per channel (a following ReLU, or ReLU + affine, as the runtime fuses it).

    ``stride`` defaults to ``kernel_size``; ``out_size`` (OH, OW) to the floor-mode size (give it for ceil
    mode). Threaded over the (image, channel) planes. Every kernel path gives the same bits (maxima are exact);
    ``kernel`` picks the path whose vector width the loops use.

    Raises:
        ValueError: a non-float32 or non-4-d ``x``, a bad geometry, or a ``floor`` of another length.
    """
    return MaxPool2d(kernel_size, stride, padding, dilation, out_size=out_size, floor=floor, kernel=kernel)(x)


class MaxPool2d(_PreparedCall):
    """:func:`max_pool2d` prepared once: the arguments kept and the kernel path resolved at construction (a later
    change of ``HORQ_KERNEL`` does not affect it), the geometry checked at the first call of each input shape; a
    call with a contiguous float32 numpy array of the last call's shape goes straight to the core (the argument
    parsing costs ~10 us a call, more than pooling a small map; the runtime's pool steps are these).

    Raises (at a call): ValueError as :func:`max_pool2d`.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, *, out_size=None, floor=None,
                 kernel: str | None = None):
        self._spec = (kernel_size, stride, padding, dilation, out_size, floor)
        self.kernel = _resolve_kernel(kernel)

    def _prepare(self, x) -> tuple:
        (kh, kw), s, p, d, (oh, ow), fl = _pool_geometry(x.shape[2], x.shape[3], *self._spec)
        return _core.max_pool2d, (kh, kw, s, p, d, oh, ow, fl, self.kernel)

    def core_step(self, in_shape):
        """This pool for inputs of per-sample shape ``in_shape`` (C, H, W) as the core's step object (see
        :meth:`FloatConv2d.core_step`)."""
        (kh, kw), s, p, d, (oh, ow), fl = _pool_geometry(in_shape[1], in_shape[2], *self._spec)
        return _core.PoolStep(kh, kw, s, p, d, oh, ow, fl, self.kernel)


def _pool_geometry(h, w, kernel_size, stride=None, padding=0, dilation=1, out_size=None, floor=None, *, what=""):
    """A max pool's arguments over an (h, w) map, checked and as the core takes them: ``((kh, kw), stride, padding,
    dilation, (oh, ow), floor)``, ``stride`` defaulting to ``kernel_size``, ``out_size`` to the floor-mode size,
    ``floor`` a contiguous float32 vector or None; ``what`` prefixes the argument names in errors."""
    kh, kw = pair(kernel_size, f"{what}kernel_size", minimum=1)
    sh, sw = pair(kernel_size if stride is None else stride, f"{what}stride", minimum=1)
    (ph, pw), (dh, dw) = pair(padding, f"{what}padding"), pair(dilation, f"{what}dilation", minimum=1)
    if out_size is None:
        out_size = (conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw))
    fl = None if floor is None else np.ascontiguousarray(np.asarray(floor, np.float32).reshape(-1))
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (int(out_size[0]), int(out_size[1])), fl
