"""The native core's training entry points (numpy in, numpy out), used by :mod:`horq.nn.native_train`.

The forward calls are :func:`horq.kernels.conv2d` / :func:`horq.kernels.linear` that also return the quantized
columns they computed, ``bits`` uint64 ``(ncols, order, words)`` and ``betas`` float64 ``(ncols, order)``, in
the kernels' layout (``csrc/core/layer.h``: a convolution column's values in ``(i, j, c)`` order, grouped per
tap or compact). :func:`planes_weight_grad` (orders 1 and 2) or :func:`expand_columns` (``out[j, :] = sum_k beta_{k,j}
H_{k,j}``, a block of columns as floats) take them to the weight gradient; :func:`conv_input_grad` and
:func:`linear_input_grad` give the input gradient. The products with packed signs are ``csrc/core/sign_gemm.h``.

These functions trust their caller (the HORQ layers validate shapes, dtypes and finiteness first); the core
still checks every size it indexes with.
"""

from __future__ import annotations

import numpy as np

from horq import _core
from horq.bits import WORD_BITS, words_for
from horq.kernels import _resolve_kernel


def conv_layout(channels: int, taps: int) -> tuple[int, int, int]:
    """``(groups, values_per_group, words_per_group)`` of a convolution column in the kernels' layout."""
    compact = channels % WORD_BITS != 0 and words_for(channels * taps) < taps * words_for(channels)
    if compact:
        return 1, channels * taps, words_for(channels * taps)
    return taps, channels, words_for(channels)


def binarize_weight_rows(rows: np.ndarray, with_eff: bool = True, kernel: str | None = None):
    """``(alpha, bits, w_eff)`` of float32 weight rows ``(C_out, n)``: ``alpha`` float32 mean ``|w|`` per row,
    ``bits`` = ``pack_signs(rows)``, ``w_eff = alpha * sign(rows)`` (``sign(0) = +1``; None unless
    ``with_eff``). Every kernel path gives the same bits."""
    return _core.binarize_weight_rows(np.ascontiguousarray(rows), with_eff, _resolve_kernel(kernel))


def binary_weight_grad(rows: np.ndarray, alpha: np.ndarray, grad: np.ndarray, clip: float | None,
                       kernel: str | None = None) -> np.ndarray:
    """Gradient of the latent weight rows from that of ``w_eff``, by :func:`horq.nn.quant.binary_weight`'s rule:
    ``alpha * 1{|w| <= clip} * g + sign(w) / n * sum(g * sign(w))`` per row (``clip=None``: no window). Every
    kernel path gives the same bits."""
    return _core.binary_weight_grad(rows, alpha, np.ascontiguousarray(grad), -1.0 if clip is None else float(clip),
                                    _resolve_kernel(kernel))


def conv_weight_bits(bits: np.ndarray, channels: int, kh: int, kw: int) -> np.ndarray:
    """``pack_signs`` bits of weight rows (``(c, i, j)`` order) re-laid out for the conv kernel."""
    return _core.relayout_conv_weights(bits, channels, kh, kw)


def conv2d_keep(x: np.ndarray, wbits: np.ndarray, coef: np.ndarray, add: np.ndarray, kh: int, kw: int, stride,
                padding, dilation, order: int, kernel: str | None = None, *, channels_last: bool = False):
    """``(y, (bits, betas))``: ``y = coef * horq_conv(x) + add`` (float32 NCHW) and the quantized columns,
    column ``j = (image * OH + oy) * OW + ox``; ``kernel`` as in :mod:`horq.kernels` (``HORQ_KERNEL``).
    ``channels_last``: ``x`` is NHWC ``(N, H, W, C)`` and ``y`` comes back NHWC ``(N, OH, OW, C_out)`` (the
    memory of PyTorch's channels_last tensors); the columns are the same."""
    return _core.conv2d_train(x, wbits, coef, add, kh, kw, tuple(stride), tuple(padding), tuple(dilation), order,
                              channels_last, _resolve_kernel(kernel))


def linear_keep(x: np.ndarray, wbits: np.ndarray, coef: np.ndarray, add: np.ndarray, order: int,
                kernel: str | None = None):
    """``(y, (bits, betas))`` of a linear layer (one column per row of ``x``); ``wbits`` = ``pack_signs(W)``."""
    return _core.linear_train(x, wbits, coef, add, order, _resolve_kernel(kernel))


def expand_columns(bits: np.ndarray, betas: np.ndarray, layout: tuple[int, int, int], col0: int, col1: int,
                   out: np.ndarray, kernel: str | None = None) -> None:
    """Writes columns ``[col0, col1)`` as float32 rows of ``out`` (``(col1 - col0, n)``), values in the order of
    ``layout`` (:func:`conv_layout`, or ``(1, n, words_for(n))`` for a linear layer), each value
    ``sum_k beta_k * (+-1)`` summed in float32 for k = 1..K."""
    groups, cg, gw = layout
    _core.expand_columns(bits, betas, groups, cg, gw, col0, col1, out, _resolve_kernel(kernel))


def planes_weight_grad(g: np.ndarray, bits: np.ndarray, betas: np.ndarray, layout: tuple[int, int, int], taps: int,
                       kernel: str | None = None) -> np.ndarray:
    """The weight gradient ``G^T A`` with ``A[j] = sum_k beta_{k,j} H_{k,j}`` from the rows of ``G`` (one per
    column, float32 ``(ncols, M)``) and the kept planes, as float32 ``(M, n)`` in PyTorch's weight order
    (``(c, tap)`` for a convolution of ``taps`` taps: the column ``layout`` of :func:`conv_layout`; ``(1, n,
    words_for(n))`` and ``taps=1`` for a linear layer): one float-by-sign product per plane
    (``csrc/core/train.h``)."""
    groups, cg, gw = layout
    return _core.planes_weight_grad(g, bits, betas, groups, cg, gw, taps, _resolve_kernel(kernel))


def linear_weight_grad(g: np.ndarray, bits: np.ndarray, betas: np.ndarray, rows: np.ndarray, alpha: np.ndarray,
                       clip: float | None, kernel: str | None = None) -> np.ndarray:
    """The gradient of a binary linear layer's latent weights ``rows`` (``(M, n)``, binarized to ``alpha * sign``)
    from the rows of ``G`` (``(ncols, M)``) and the kept planes: :func:`planes_weight_grad`'s ``G^T A`` through
    :func:`binary_weight_grad`'s straight-through rule, in one pass (the same bits as the two calls)."""
    return _core.linear_weight_grad(g, bits, betas, rows, alpha, -1.0 if clip is None else float(clip),
                                    _resolve_kernel(kernel))


def conv_input_grad(g: np.ndarray, alpha: np.ndarray, bits: np.ndarray, x: np.ndarray, kh: int, kw: int, stride,
                    padding, dilation, clip: float | None, kernel: str | None = None, *,
                    channels_last: bool = False) -> np.ndarray:
    """Input gradient of a binary convolution through ``W~ = alpha * sign(W)``, given ``bits`` = ``pack_signs``
    of the weight rows ``(C_out, C_in * kh * kw)`` (:func:`binarize_weight_rows`' bits), times the clip window
    of ``x`` (``clip=None``: none); float32 NCHW, or with ``channels_last`` ``g``, ``x`` and the result NHWC."""
    return _core.conv_input_grad(g, alpha, bits, x, kh, kw, tuple(stride), tuple(padding), tuple(dilation),
                                 -1.0 if clip is None else float(clip), channels_last, _resolve_kernel(kernel))


def linear_input_grad(g: np.ndarray, alpha: np.ndarray, bits: np.ndarray, x: np.ndarray, clip: float | None,
                      kernel: str | None = None) -> np.ndarray:
    """Input gradient of a binary linear layer, ``(g @ (alpha * sign(W))) * 1{|x| <= clip}``, given ``bits`` =
    ``pack_signs(W)``."""
    return _core.linear_input_grad(g, alpha, bits, x, -1.0 if clip is None else float(clip), _resolve_kernel(kernel))


def nchw_rows(x: np.ndarray, kernel: str | None = None, *, sums: bool = False):
    """An NCHW float32 map's pixels as rows, ``(N * H * W, C)`` (``x.transpose(0, 2, 3, 1).reshape(-1, C)``,
    copied by the kernels' in-register transposes): the row order :func:`planes_weight_grad` reads. With
    ``sums``, ``(rows, channel_sums)``: also ``x.sum((0, 2, 3))`` (a bias gradient) as float32, summed in double in
    one fixed order (per image and channel, then over the images), the same bits on every path and thread count."""
    rows, total = _core.nchw_rows(x, sums, _resolve_kernel(kernel))
    return (rows, total) if sums else rows


def clip_window(g: np.ndarray, x: np.ndarray, clip: float) -> None:
    """In place: ``g[i] = 0`` where ``|x[i]| > clip`` (float32, C-contiguous, same size)."""
    _core.clip_window(g, x, clip)
