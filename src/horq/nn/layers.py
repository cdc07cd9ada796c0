"""HORQ layers: drop-in subclasses of ``nn.Linear`` and ``nn.Conv2d`` (same parameters, same state_dict keys).

``order`` selects what the layer computes (docs/MATH.md):

* ``None``: full precision (exactly the parent class).
* ``0``: binary weights ``alpha * sign(W)``, real inputs (BWN).
* ``1``: binary weights and an order-one binarized input (XNOR-Net).
* ``K >= 2``: binary weights and an order-K residual binarized input (HORQ).

Inputs are binarized per column (a linear layer's input vector of one sample; a convolution's receptive field,
zero padding included), then multiplied by the effective weight. Gradients follow :mod:`horq.nn.quant`.

Non-finite input rule: a layer that binarizes its input (``order >= 1``) raises ValueError on NaN or infinite
input, in training and in eval mode alike: NaN has no sign (``horq.bits.pack_signs`` rejects it too, so the
packed runtime could not reproduce the result), and an infinite value makes every beta of its column infinite
and the residual NaN. Layers of order ``None``/``0`` follow PyTorch and let NaN propagate.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from horq.geometry import check_order, conv_output_hw, conv_output_size
from horq.nn import native_train
from horq.nn.quant import binary_weight, check_clip, residual_approx, sign

# Upper bound on the elements of one unfolded chunk (float32: 64 MiB); bounds the temporaries of the residual
# loop of a convolution of order >= 2 by splitting the batch.
UNFOLD_CHUNK_ELEMS = 1 << 24


class _HORQMixin:
    """Holds ``order`` and ``clip`` with validation on assignment."""

    @property
    def order(self) -> int | None:
        return self._order

    @order.setter
    def order(self, value: int | None) -> None:
        check_order(value)
        self._order = None if value is None else int(value)

    @property
    def clip(self) -> float | None:
        return self._clip

    @clip.setter
    def clip(self, value: float | None) -> None:
        check_clip(value)
        self._clip = None if value is None else float(value)

    def _check_finite(self, x: Tensor) -> None:
        if self._order is not None and self._order >= 1 and not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{type(self).__name__}(order={self._order}): input contains NaN or infinity, which cannot be "
                "binarized"
            )

    def _horq_repr(self) -> str:
        return f"order={self._order}, clip={self._clip}"

    # Opt-in native inference path (horq.kernels, XNOR-popcount on CPU): set ``layer.native = True``. It runs
    # only where it computes the same thing as the torch path -- order >= 1, float32 CPU input, no autograd
    # (eval mode under torch.no_grad / inference_mode) -- and the torch path runs otherwise. It runs the same
    # prepared kernel layer (horq.kernels.Conv2dLayer / LinearLayer) as the packed runtime, cached and rebuilt
    # whenever what it was built from changes (see _native_layer). While native training is enabled
    # (horq.nn.native_train), layers with ``native_train`` take this path too, so that the evaluation passes
    # of a native training run are native as well.
    native = False
    # Native training path (horq.nn.native_train): used when native training is enabled there and this is
    # True; set False to keep one layer on the torch path.
    native_train = True

    def _native_ready(self, x: Tensor) -> bool:
        return ((self.native or (self.native_train and native_train.enabled())) and self._order is not None
                and self._order >= 1 and not getattr(self, "training", False) and not torch.is_grad_enabled()
                and x.device.type == "cpu" and x.dtype == torch.float32)

    def _native_geometry(self) -> dict:
        """Keyword arguments of the prepared kernel layer besides weights, order and bias."""
        return {}

    def _native_layer(self):
        """The prepared kernel layer of this layer's weight, bias, order and geometry.

        Rebuilt when any of them changes: a tensor by data pointer or in-place version (an optimizer step or
        ``weight.mul_``), and the ``HORQ_KERNEL`` path, which a prepared layer resolves once where
        ``horq.kernels.conv2d`` resolves it per call.
        """
        from horq import kernels

        geometry = self._native_geometry()
        key = (_tensor_key(self.weight), _tensor_key(self.bias), self._order, tuple(geometry.items()),
               os.environ.get(kernels.KERNEL_ENV, ""))
        cache = getattr(self, "_native_cache", None)
        if cache is None or cache[0] != key:
            pw = kernels.pack_weights(self.weight.detach().cpu().float().numpy())
            bias = None if self.bias is None else self.bias.detach().cpu().float().numpy()
            make = kernels.Conv2dLayer if isinstance(self, nn.Conv2d) else kernels.LinearLayer
            cache = (key, make(pw, order=self._order, bias=bias, **geometry))
            self._native_cache = cache
        return cache[1]


def _tensor_key(t: Tensor | None) -> tuple | None:
    """What identifies a parameter's current values: an optimizer step bumps ``_version`` in place."""
    return None if t is None else (t.data_ptr(), t._version)


class HORQLinear(_HORQMixin, nn.Linear):
    """``nn.Linear`` with HORQ quantization; each sample's input vector is one column.

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear``.
        order: None, 0, 1 or K >= 2 (module docstring).
        clip: straight-through window of the input quantizer (> 0) or None.

    Shape:
        Input ``(*, in_features)``, output ``(*, out_features)``; every vector along the last axis gets its own
        betas.

    Raises:
        ValueError: on a bad order/clip, an input whose last axis is not ``in_features``, or (order >= 1) a
            non-finite input.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, order=2, clip=1.0):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.order = order
        self.clip = clip

    @classmethod
    def from_float(cls, module: nn.Linear, *, order, clip=1.0) -> HORQLinear:
        """A HORQLinear that shares ``module``'s parameter objects (an optimizer holding them keeps working)."""
        new = cls(module.in_features, module.out_features, bias=module.bias is not None, device="meta",
                  order=order, clip=clip)
        new.weight = module.weight
        new.bias = module.bias
        new.train(module.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"HORQLinear expected input of shape (*, {self.in_features}), got {tuple(x.shape)}")
        if self._order is None:
            return F.linear(x, self.weight, self.bias)
        if native_train.applies(self, x):
            return native_train.linear(self, x)
        self._check_finite(x)
        if self._native_ready(x):
            y = self._native_layer()(x.detach().reshape(-1, self.in_features).numpy())
            return torch.from_numpy(y).reshape(*x.shape[:-1], self.out_features)
        w = binary_weight(self.weight)
        if self._order >= 1:
            x = residual_approx(x, self._order, dim=-1, clip=self._clip)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._horq_repr()}"


class _XnorConv2d(torch.autograd.Function):
    """Order-one convolution without unfolding, on an already zero-padded input ``xp``.

    ``H_1 = sign(x)`` does not depend on the column, and ``beta_1`` of a column is the box sum of ``|x|`` over its
    ``C_in x kh x kw`` window divided by ``n``; so ``Y = beta_1 * conv(sign(xp), W~)``. The backward pass gives
    what the unfold definition gives: d(approx)/dx = 1{|x| <= clip} (so the input gradient is that of a plain
    ``conv(x, W~)``, masked), and the weight sees the quantized input ``beta_1 * sign(x)``.
    """

    @staticmethod
    def forward(ctx, xp, w, stride, dilation, clip):
        _, c, kh, kw = w.shape
        box = torch.ones((1, c, kh, kw), dtype=xp.dtype, device=xp.device)
        beta = F.conv2d(xp.abs(), box, stride=stride, dilation=dilation) / (c * kh * kw)
        y = F.conv2d(sign(xp), w, stride=stride, dilation=dilation) * beta
        ctx.save_for_backward(xp, w, beta)
        ctx.conf = (stride, dilation, clip)
        return y

    @staticmethod
    def backward(ctx, grad):
        xp, w, beta = ctx.saved_tensors
        stride, dilation, clip = ctx.conf
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(xp.shape, w, grad, stride=stride, dilation=dilation)
            if clip is not None:
                gx = gx * (xp.abs() <= clip)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(sign(xp), w.shape, grad * beta, stride=stride, dilation=dilation)
        return gx, gw, None, None, None


class HORQConv2d(_HORQMixin, nn.Conv2d):
    """``nn.Conv2d`` with HORQ quantization; each receptive field (zero padding included) is one column.

    Zero padding is applied before the input is quantized, so the padded zeros of a border column get
    ``sign(0) = +1`` and count in ``n = C_in * kh * kw`` (docs/MATH.md "Padding"). Order 1 runs as two convolutions
    (signs and a box sum for the betas); order >= 2 unfolds the input and binarizes every column.

    Args:
        in_channels, ..., dtype: as ``nn.Conv2d``; only ``groups=1`` and ``padding_mode='zeros'``.
        order: None, 0, 1 or K >= 2 (module docstring).
        clip: straight-through window of the input quantizer (> 0) or None.

    Shape:
        Input ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; output as ``nn.Conv2d``.

    Raises:
        ValueError: on ``groups != 1``, ``padding_mode != 'zeros'``, a bad order/clip, an input of the wrong
            rank/channel count or too small for the kernel, or (order >= 1) a non-finite input.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, order=2, clip=1.0):
        if groups != 1:
            raise ValueError(f"HORQConv2d supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"HORQConv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self.order = order
        self.clip = clip

    @classmethod
    def from_float(cls, module: nn.Conv2d, *, order, clip=1.0) -> HORQConv2d:
        """A HORQConv2d that shares ``module``'s parameter objects; raises ValueError if unsupported."""
        new = cls(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                  padding=module.padding, dilation=module.dilation, groups=module.groups,
                  bias=module.bias is not None, padding_mode=module.padding_mode, device="meta",
                  order=order, clip=clip)
        new.weight = module.weight
        new.bias = module.bias
        new.train(module.training)
        return new

    def _native_geometry(self) -> dict:
        pads = self._reversed_padding_repeated_twice  # [left, right, top, bottom]; symmetric where it runs
        return {"stride": self.stride, "padding": (pads[2], pads[0]), "dilation": self.dilation}

    def _check_input(self, x: Tensor) -> None:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"HORQConv2d expected input of shape (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        left, right, top, bottom = self._reversed_padding_repeated_twice
        for axis, padded in ((0, x.shape[-2] + top + bottom), (1, x.shape[-1] + left + right)):
            k, d, s = self.kernel_size[axis], self.dilation[axis], self.stride[axis]
            if conv_output_size(padded, k, s, 0, d) < 1:
                raise ValueError(f"HORQConv2d: input {tuple(x.shape[-2:])} is too small for kernel "
                                 f"{self.kernel_size} (padding {self.padding}, dilation {self.dilation})")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self._order is None:
            return self._conv_forward(x, self.weight, self.bias)
        pads = self._reversed_padding_repeated_twice  # [left, right, top, bottom]
        if native_train.applies(self, x) and pads[0] == pads[1] and pads[2] == pads[3]:
            y = native_train.conv2d(self, x.unsqueeze(0) if x.dim() == 3 else x, (pads[2], pads[0]))
            return y.squeeze(0) if x.dim() == 3 else y
        self._check_finite(x)
        w = binary_weight(self.weight)
        if self._order == 0:
            return self._conv_forward(x, w, self.bias)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if self._native_ready(x) and pads[0] == pads[1] and pads[2] == pads[3]:
            y = torch.from_numpy(self._native_layer()(x.detach().numpy()))
            return y.squeeze(0) if unbatched else y
        xp = F.pad(x, self._reversed_padding_repeated_twice) if any(self._reversed_padding_repeated_twice) else x
        if self._order == 1:
            y = _XnorConv2d.apply(xp, w, self.stride, self.dilation, self._clip)
        else:
            y = self._unfold_forward(xp, w)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y.squeeze(0) if unbatched else y

    def _columns(self, xp: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Receptive fields of the padded input as rows ``(N, P, n)`` (``n`` ordered ``(c, i, j)`` like ``W_r``)
        and the output size ``(OH, OW)``.

        This is ``F.unfold(xp).transpose(1, 2)`` built from strided views, so the residual loop reduces over
        contiguous memory and the matmul needs no transposed copy.
        """
        n_batch = xp.shape[0]
        (kh, kw), (dh, dw), (sh, sw) = self.kernel_size, self.dilation, self.stride
        v = xp.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
        _, c, oh, ow, _, _ = v.shape
        return v.permute(0, 2, 3, 1, 4, 5).reshape(n_batch, oh * ow, c * kh * kw), (oh, ow)

    def _unfold_forward(self, xp: Tensor, w: Tensor, order: int | None = None) -> Tensor:
        """The definition: unfold the padded input, binarize every column, multiply (no bias)."""
        order = self._order if order is None else order
        n_batch = xp.shape[0]
        w_r = w.reshape(self.out_channels, -1)
        kh, kw = self.kernel_size
        oh, ow = conv_output_hw(xp.shape[2:], (kh, kw), self.stride, (0, 0), self.dilation)
        rows_per_sample = oh * ow
        chunk = max(1, UNFOLD_CHUNK_ELEMS // (w_r.shape[1] * rows_per_sample))
        outs = []
        for start in range(0, n_batch, chunk):
            cols, (oh, ow) = self._columns(xp[start:start + chunk])
            cols = residual_approx(cols, order, dim=2, clip=self._clip)  # type: ignore[arg-type]  # K >= 2 here
            outs.append(F.linear(cols, w_r))  # (chunk, P, C_out)
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y.reshape(n_batch, oh, ow, self.out_channels).permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._horq_repr()}"
