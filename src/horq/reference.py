"""Plain numpy reference of the HORQ arithmetic (docs/MATH.md), used by the numpy runtime and as
the independent reference that the PyTorch layers and the native kernels are tested against.

Shapes follow docs/MATH.md: a convolution is ``Y = W_r X_r`` with ``W_r`` of shape ``(C_out, n)``,
``n = C_in * kh * kw``, and the unfolded input ``X_r`` of shape ``(n, P)``; every column of ``X_r``
(one receptive field, zero padding included) gets its own betas.
"""

from __future__ import annotations

import numpy as np

from horq.bits import sign
from horq.geometry import check_order, conv_output_size, pair


def residual_binarize(x: np.ndarray, order: int, axis: int = -1):
    """Order-K residual binarization of ``x`` along ``axis`` (each slice along ``axis`` is one column).

    ``r_0 = x``; for k = 1..K: ``H_k = sign(r_{k-1})``, ``beta_k = mean(|r_{k-1}|)``,
    ``r_k = r_{k-1} - beta_k H_k``.

    Returns:
        ``(approx, planes, betas)``: ``approx = sum_k beta_k H_k`` with the shape of ``x``; ``planes`` of
        shape ``(K,) + x.shape`` in {-1, +1}; ``betas`` of shape ``(K,) + x.shape`` with ``axis`` reduced to 1.
    """
    check_order(order)
    if order is None or order < 1:
        raise ValueError(f"residual_binarize needs order >= 1, got {order!r}")
    r = np.asarray(x, dtype=np.float64)
    approx = np.zeros_like(r)
    planes, betas = [], []
    for _ in range(order):
        h = sign(r).astype(np.float64)
        beta = np.abs(r).mean(axis=axis, keepdims=True)
        approx = approx + beta * h
        r = r - beta * h
        planes.append(h)
        betas.append(beta)
    return approx, np.stack(planes), np.stack(betas)


def weight_alpha(w: np.ndarray) -> np.ndarray:
    """``alpha[o] = mean(|w[o]|)`` per output filter, in float64 (docs/MATH.md "Weights"); every weight
    binarizer of horq (this module, the kernels' packer, the exporter) takes its scale from here."""
    w = np.asarray(w, dtype=np.float64)
    return np.abs(w.reshape(w.shape[0], -1)).mean(axis=1)


def binarize_weights(w: np.ndarray):
    """Returns ``(alpha, signs)``: :func:`weight_alpha` and ``signs = sign(w)``."""
    w = np.asarray(w, dtype=np.float64)
    return weight_alpha(w), sign(w).astype(np.float64)


def quantize_input(x_cols: np.ndarray, order: int | None, axis: int) -> np.ndarray:
    """The input as a layer of this order sees it: itself for None/0, its order-K approximation otherwise."""
    check_order(order)
    if order is None or order == 0:
        return np.asarray(x_cols, dtype=np.float64)
    return residual_binarize(x_cols, order, axis=axis)[0]


def effective_weight(w: np.ndarray, order: int | None) -> np.ndarray:
    """The weight as a layer of this order uses it: ``alpha * sign(w)`` unless full precision."""
    if order is None:
        return np.asarray(w, dtype=np.float64)
    alpha, s = binarize_weights(w)
    return alpha.reshape((-1,) + (1,) * (s.ndim - 1)) * s


def im2col(x: np.ndarray, kh: int, kw: int, *, stride=1, padding=0, dilation=1):
    """Unfolds ``x`` of shape ``(N, C, H, W)`` into ``(N, C*kh*kw, P)`` columns, zero padding included.

    The row order is ``(c, i, j)``, matching ``W.reshape(C_out, -1)`` of a ``(C_out, C, kh, kw)`` weight.
    Returns the columns and the output size ``(OH, OW)``.
    """
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"input {h}x{w} is too small for a {kh}x{kw} kernel (padding {padding}, dilation {dilation})")
    xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols[:, :, i, j] = xp[:, :, rows, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
    return cols.reshape(n, c * kh * kw, oh * ow), (oh, ow)


def horq_conv2d(x, w, bias=None, *, order, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Reference HORQ convolution (groups = 1): quantize every unfolded column, then ``W_eff @ X_r``."""
    cout, _, kh, kw = w.shape
    cols, (oh, ow) = im2col(x, kh, kw, stride=stride, padding=padding, dilation=dilation)
    xq = quantize_input(cols, order, axis=1)
    y = np.einsum("on,bnp->bop", effective_weight(w, order).reshape(cout, -1), xq)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None]
    return y.reshape(x.shape[0], cout, oh, ow)


def horq_linear(x, w, bias=None, *, order) -> np.ndarray:
    """Reference HORQ linear layer: each sample's input vector is one column."""
    xq = quantize_input(np.asarray(x), order, axis=-1)
    y = xq @ effective_weight(w, order).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y
