"""Quantizers of HORQ (Li et al., ICCV 2017; docs/MATH.md) with straight-through gradients.

* :func:`residual_binarize` / :func:`residual_approx`: order-K residual binarization of the inputs, one scale
  per column per order.
* :func:`binarize_weights` / :func:`binary_weight`: order-one binarization of the weights, one scale per
  output filter (XNOR-Net, Rastegari et al., ECCV 2016).

``sign(0) = +1`` everywhere (the project's bit convention, :mod:`horq.bits`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from horq.geometry import check_order

# Straight-through window of the weight binarizer (XNOR-Net / BinaryNet use 1): the gradient of sign(w) is
# taken as 1 where |w| <= WEIGHT_CLIP and 0 outside, so weights that drifted far out stop moving.
WEIGHT_CLIP = 1.0


def check_clip(clip: float | None) -> None:
    """Raises ValueError unless ``clip`` is None (no clipping) or a positive number."""
    if clip is None:
        return
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
        raise ValueError(f"clip must be None or a positive number, got {clip!r}")


def sign(x: Tensor) -> Tensor:
    """``sign`` with ``sign(0) = +1``: values in {-1, +1} with the dtype of ``x`` (no gradient defined).

    NaN compares false with 0 and so maps to +1; callers that care reject NaN first.
    """
    return torch.ones_like(x).masked_fill_(x < 0, -1.0)


def _residual_forward(x: Tensor, order: int, dim: int, keep: bool, clip: float | None = None):
    """The forward arithmetic of docs/MATH.md.

    Returns ``approx``, the lists of planes and betas (empty unless ``keep``) and the straight-through mask
    ``|x| <= clip`` (None when ``clip`` is None).
    """
    # Adding +0.0 turns -0.0 into +0.0, so copysign below gives sign(0) = +1 (and no later residual is -0.0:
    # a - a rounds to +0.0). copysign(beta, r) is beta_k * H_k in one cheap pass.
    r = x + 0.0
    mag = r.abs()
    mask = None if clip is None else mag <= clip
    approx = None
    planes, betas = [], []
    for k in range(order):
        if k:
            mag = r.abs()
        beta = mag.mean(dim=dim, keepdim=True)
        step = torch.copysign(beta, r)
        if keep:
            planes.append(sign(r))
            betas.append(beta)
        approx = step if approx is None else approx.add_(step)
        if k + 1 < order:
            r = r - step
    return approx, planes, betas, mask


class _ResidualBinarize(torch.autograd.Function):
    """Forward: docs/MATH.md's residual binarization. Backward: straight-through, masked to ``|x| <= clip``."""

    @staticmethod
    def forward(ctx, x, order, dim, clip, keep):
        # no mask is needed when no gradient will flow (eval mode)
        clip_for_mask = clip if ctx.needs_input_grad[0] else None
        approx, planes, betas, mask = _residual_forward(x, order, dim, keep, clip_for_mask)
        ctx.save_for_backward(mask)
        ctx.has_mask = mask is not None
        if not keep:
            return approx
        planes, betas = torch.stack(planes), torch.stack(betas)
        ctx.mark_non_differentiable(planes, betas)
        return approx, planes, betas

    @staticmethod
    def backward(ctx, grad, *unused):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        if ctx.has_mask:
            (mask,) = ctx.saved_tensors
            grad = grad * mask
        return grad, None, None, None, None


def _check_order_at_least_one(order) -> None:
    check_order(order)
    if order is None or order < 1:
        raise ValueError(f"residual binarization needs an order >= 1, got {order!r}")


def residual_binarize(x: Tensor, order: int, *, dim: int, clip: float | None = 1.0):
    """Order-K residual binarization of ``x``; every slice of ``x`` along ``dim`` is one column.

    Forward (docs/MATH.md "Inputs: residual binarization"): ``r_0 = x``; for k = 1..K:
    ``H_k = sign(r_{k-1})`` (``sign(0) = +1``),
    ``beta_k = mean(|r_{k-1}|)`` over the column, ``r_k = r_{k-1} - beta_k H_k``; ``approx = sum_k beta_k H_k``.
    Then ``||r_k||^2 = ||r_{k-1}||^2 - n beta_k^2`` (n = column length): the error shrinks with every order.

    Gradient (straight-through estimator; the paper's exact rule is not available, docs/MATH.md "Gradients"):
    ``d approx / d x = 1`` where ``|x| <= clip`` and 0 elsewhere, elementwise; the betas are treated as
    constants. ``clip=None`` passes the gradient everywhere. ``planes`` and ``betas`` carry no gradient.

    NaN is not rejected here: a column containing NaN gets NaN betas and a NaN approximation (the layers
    reject non-finite input before calling this).

    Args:
        x: floating tensor of any shape.
        order: K >= 1.
        dim: the axis along which columns run (negative values allowed).
        clip: straight-through window (> 0) or None.

    Returns:
        ``(approx, planes, betas)``: ``approx`` with the shape of ``x``; ``planes`` of shape ``(K,) + x.shape``
        with values in {-1, +1}; ``betas`` of shape ``(K,) + x.shape`` except that ``dim`` has size 1
        (the same layout as :func:`horq.reference.residual_binarize`).

    Raises:
        ValueError: on an order outside [1, MAX_ORDER], a bad ``clip``, or a non-floating ``x``.

    Example:
        >>> approx, planes, betas = residual_binarize(torch.randn(4, 9), 2, dim=1)
        >>> planes.shape, betas.shape
        (torch.Size([2, 4, 9]), torch.Size([2, 4, 1]))
    """
    _check_args(x, order, clip)
    return _ResidualBinarize.apply(x, order, dim, clip, True)


def residual_approx(x: Tensor, order: int, *, dim: int, clip: float | None = 1.0) -> Tensor:
    """Only the ``approx`` of :func:`residual_binarize` (same forward and gradient), without storing planes."""
    _check_args(x, order, clip)
    return _ResidualBinarize.apply(x, order, dim, clip, False)


def _check_args(x: Tensor, order, clip) -> None:
    _check_order_at_least_one(order)
    check_clip(clip)
    if not torch.is_floating_point(x):
        raise ValueError(f"residual binarization needs a floating tensor, got {x.dtype}")


def binarize_weights(w: Tensor) -> tuple[Tensor, Tensor]:
    """Order-one weight binarization: ``alpha[o] = mean(|w[o]|)`` per output filter and ``sign(w)``.

    Args:
        w: weight of shape ``(C_out, ...)``.

    Returns:
        ``(alpha, signs)``: ``alpha`` of shape ``(C_out,)``; ``signs`` with the shape of ``w``, in {-1, +1}.
        Both are detached (see :func:`binary_weight` for the differentiable effective weight).
    """
    w = w.detach()
    return w.abs().reshape(w.shape[0], -1).mean(dim=1), sign(w)


class _BinaryWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, clip):
        alpha, s = binarize_weights(w)
        alpha = alpha.reshape((-1,) + (1,) * (w.dim() - 1))
        ctx.save_for_backward(w, alpha)
        ctx.clip = clip
        return alpha * s

    @staticmethod
    def backward(ctx, grad):
        w, alpha = ctx.saved_tensors
        s = sign(w)
        through = alpha * grad
        if ctx.clip is not None:
            through = through * (w.abs() <= ctx.clip)
        # d alpha / d w_j = sign(w_j) / n (with sign(0) = +1, as |w| = w * sign(w) in the forward)
        n = w[0].numel()
        via_alpha = s * (grad * s).reshape(w.shape[0], -1).sum(dim=1).reshape(alpha.shape) / n
        return through + via_alpha, None


def binary_weight(w: Tensor, *, clip: float | None = WEIGHT_CLIP) -> Tensor:
    """The effective binary weight ``alpha * sign(w)`` (XNOR-Net, Rastegari et al., ECCV 2016, Sec. 3.1).

    Forward: ``W~[o] = alpha_o * sign(w[o])`` with ``alpha_o = mean(|w[o]|)`` over the ``n`` values of filter
    ``o`` and ``sign(0) = +1``.

    Gradient: the exact chain rule through ``alpha`` plus a straight-through estimate of ``sign``
    (XNOR-Net Sec. 3.2 writes this rule; its ``1/n`` term is here the full derivative of ``alpha``):
    for an upstream gradient ``g`` and a value ``j`` of filter ``o``,

        dL/dw_j = alpha_o * 1{|w_j| <= clip} * g_j  +  sign(w_j) / n * sum_i g_i * sign(w_i)

    where the sum runs over filter ``o`` and ``d|w|/dw = sign(w)`` with ``sign(0) = +1``. ``clip=None`` drops
    the indicator. The real-valued ``w`` is kept and updated by the optimizer.

    Args:
        w: weight of shape ``(C_out, ...)``.
        clip: straight-through window of ``sign`` (> 0) or None.

    Returns:
        A tensor with the shape of ``w``.
    """
    check_clip(clip)
    return _BinaryWeight.apply(w, clip)
