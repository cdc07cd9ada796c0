"""Shapes and orders, one home for every layer of the stack (reference, nn, format, runtime, kernels).

A convolution's output size along one axis (input ``size``, padding ``p`` on both sides, dilation ``d``,
stride ``s``, kernel ``k``): the last tap of an output position lies at ``o*s + d*(k - 1)`` of the padded
input, so ``o`` runs from 0 to ``(size + 2p - d(k - 1) - 1) // s``. The C++ core checks the same formula
(``csrc/bindings.cpp``). Orders follow docs/MATH.md "Inputs: residual binarization": None (full precision),
0 (binary weights, real inputs), 1 (XNOR) and K >= 2, up to :data:`MAX_ORDER`.
"""

from __future__ import annotations

import numbers

#: Highest input order anything in horq accepts (the C++ core's ``kMaxOrder``, csrc/core/types.h).
MAX_ORDER = 8


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (may be < 1 for an input too small)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_hw(hw, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> tuple[int, int]:
    """``(OH, OW)`` of a 2-d convolution; every argument is a pair."""
    oh = conv_output_size(hw[0], kernel[0], stride[0], padding[0], dilation[0])
    return oh, conv_output_size(hw[1], kernel[1], stride[1], padding[1], dilation[1])


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(v, name: str | None = None, *, minimum: int | None = None) -> tuple[int, int]:
    """``(a, b)`` from an integer or a pair of integers.

    Args:
        v: an integer (both entries) or a sequence of two.
        name, minimum: with ``name``, anything but integers ``>= minimum`` (default 0) raises ValueError
            naming it; without, ``v`` is trusted.
    """
    t = (v, v) if _is_int(v) or not hasattr(v, "__len__") else tuple(v)
    if name is not None:
        lo = 0 if minimum is None else minimum
        if len(t) != 2 or not all(_is_int(e) and e >= lo for e in t):
            raise ValueError(f"{name} must be an integer >= {lo} or a pair of them, got {v!r}")
    return int(t[0]), int(t[1])


def check_order(order, *, lowest: int = 0, allow_none: bool = True) -> int | None:
    """Returns ``order`` as an int (or None where full precision is allowed); ValueError unless it is an
    integer in ``lowest..MAX_ORDER``."""
    if order is None and allow_none:
        return None
    if not _is_int(order) or not lowest <= order <= MAX_ORDER:
        allowed = (f"None or an integer in [{lowest}, {MAX_ORDER}]" if allow_none
                   else f"an integer in {lowest}..{MAX_ORDER}")
        raise ValueError(f"order must be {allowed}, got {order!r}")
    return int(order)
