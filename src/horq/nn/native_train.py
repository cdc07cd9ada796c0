"""Training the HORQ layers on the native XNOR-popcount kernels (CPU, float32): issue 13.

Forward: the layer's output comes from :mod:`horq.kernels` (the same arithmetic as the torch path,
``alpha_o * sum_k beta_{k,j} (B_o . H_{k,j}) + bias``, docs/MATH.md), with the weights packed from the latent float
weights at every call (``csrc/core/train_generic.cpp``) and the input's planes and betas computed once, by
the kernels. The forward pass keeps the input ``x`` (as a float convolution does, for the clip window), the
planes (K bits per value of the unfolded input) and betas (K per column), and the binarized weight; nothing
the size of the unfolded float input is stored.

Backward (the gradients of the torch path, :mod:`horq.nn.quant`), as products of float gradients with the
packed signs (``csrc/core/sign_gemm.h``: a table lookup per four terms instead of four multiply-adds):

* ``grad_input = conv_transpose(grad_out, W~) * 1{|x| <= clip}`` with ``W~ = alpha * sign(W)``: sign(W)
  against ``grad_out`` scaled by alpha, folded into the input's grid block by block, clip window fused (a
  linear layer: ``grad_out @ W~``, masked); small convolutions (:func:`sign_input_grad`) take PyTorch's own
  input gradient (``convolution_backward``) through ``W~`` instead;
* ``grad_W~ = G^T A`` with ``A[j] = sum_k beta_{k,j} H_{k,j}``: at orders 1 and 2 one product per plane, the
  kept planes transposed to run along the columns and ``beta_{k,j}`` the scale of column j's gradient
  (``csrc/core/train_backward.cpp``); from order 3, one float GEMM against ``A`` rebuilt 4 MiB of columns at a
  time (``expand_column``, ``csrc/core/sign_gemm.h``); nothing the size of the unfolded float input is built;
* ``grad_W`` follows from ``grad_W~`` by :func:`horq.nn.quant.binary_weight`'s straight-through rule, fused in
  C++ (``alpha * 1{|W| <= 1} * g + sign(W) / n * sum(g * sign(W))`` per filter; for a linear layer whose weight
  gradient runs as products, in the same pass as them);
* ``grad_bias = sum of grad_out`` (for an NCHW convolution in double, summed while its rows are transposed).

When it runs: :func:`enabled` (off by default in the library; ``horq train`` turns it on unless
``--no-native``; :func:`native_training` scopes it), the layer's ``native_train`` attribute (default True),
order >= 1, autograd on, float32 CPU input and weights, and for a convolution symmetric padding. Everything else
(CUDA, order 0, float64, ``padding='same'`` with an even kernel) takes the torch path, which stays the
reference.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from horq.bits import words_for
from horq.nn.quant import WEIGHT_CLIP

# The weight gradient's rebuilt columns (orders above PLANES_MAX_ORDER, and linear layers) go a block at a time:
# EXPAND_CHUNK_ELEMS floats (1 MiB, so the block is still in L2 when the GEMM reads it), but at least
# EXPAND_MIN_COLS columns (the GEMM's reduction; wide columns, e.g. 4608 values at 512 channels, would otherwise
# make it short). In mnist-cnn's order-3 training step (`python benchmarks/profile_training.py --model mnist-cnn
# --order 3`, three runs each way) 4 MiB blocks took 8.8-10.3 ms of _NativeConv2dBackward self time and 7.6-7.8
# of GEMM, these 7.4-8.4 and 7.1-7.5.
EXPAND_CHUNK_ELEMS = 1 << 18
EXPAND_MIN_COLS = 256
# Columns from which the weight gradient runs as float-by-sign products above order PLANES_ANY_COLS_ORDER. A linear
# layer at batch 64 has 64 columns: a reduction of 64 terms into an (n_in x n_out) output, where K products'
# per-output work costs more than one float GEMM against the rebuilt columns from K = 3: mnist-cnn's 3136 -> 256
# layer 2.75 ms against 2.13 (below).
PLANES_MIN_COLS = 1000
# Orders up to which the products run whatever the number of columns. Each block of a product is transposed into
# PyTorch's order while in cache, and for a linear layer the latent weights' STE rule follows on it in the same pass
# (csrc/core/train_backward.cpp planes_weight_grad_rows): mnist-cnn's 3136 -> 256 layer 1.19 / 1.79 ms at K = 1 / 2
# against 1.89 / 1.99 for the GEMM route, mnist-mlp's 512 -> 512 0.45 / 0.70 against 0.75 / 0.70 (AMD EPYC Zen 3,
# avx2, 1 thread, medians of 20 round-robin runs, `python benchmarks/bench_backward.py --linear --repeats 20`); in
# mnist-cnn's order-1 training step the products and the STE rule took 1.7 ms against 2.4 + 1.2 ms before
# (`python benchmarks/profile_native_training.py --model mnist-cnn --order 1 --steps 30`).
PLANES_ANY_COLS_ORDER = 2
# Highest order whose weight gradient runs as products (one per plane). At K = 2 the products take 0.93-1.06x the
# rebuilt-columns GEMM's time on cifar-vgg's layers and 0.69-0.94x on mnist-cnn's (bench_backward), and whole
# training steps ran faster with them (their output is a few KiB where the GEMM route writes every column as
# floats): cifar-vgg order 2 at 0.76x / 0.75x the FP step at 2 / 1 threads against 0.84x / 0.76x.
PLANES_MAX_ORDER = 2
# The same on the avx512 path of AMD CPUs: there the products at K = 3 took 0.60-0.94x the rebuilt-columns GEMM's
# time on cifar-vgg's and mnist-cnn's layers (on the Intel Xeon of docs/KERNELS.md 1.4-1.55x), and the order-3
# training step of the 32x32 ResNet-18 went from 1.24x / 1.31x the FP step (1 / 2 threads) to 0.95x / 1.08x
# (AMD EPYC, Zen 5; `python benchmarks/bench_backward.py`, `horq bench training`, docs/TRAINING.md). PyTorch's float
# GEMM (MKL) runs relatively slower on that CPU than on the Xeon, which moves the balance towards the products.
PLANES_MAX_ORDER_AMD = 3
# Output channels from which, on kernel paths other than avx512 of CPUs other than AMD's, order 2 takes the GEMM
# route instead: the AVX2 product runs at about half the AVX-512 one's rate per term where PyTorch's float GEMM
# loses less, so on the Intel Xeon the K = 2 products took 1.15-1.29x the GEMM route's time on cifar-vgg's layers
# (128-512 channels) and 0.76-0.86x on mnist-cnn's (64), while on avx512 0.81-0.95x on cifar-vgg's (`python
# benchmarks/bench_backward.py`, with and without HORQ_KERNEL=avx2 ATEN_CPU_CAPABILITY=avx2). cifar-vgg's order-2
# step at HORQ_KERNEL=avx2, `horq bench training`: 0.97x FP before, 0.91x after (docs/TRAINING.md). On the AMD EPYC
# (Zen 5) the avx2 K = 2 products took 0.70-0.81x the GEMM route's time on the same layers: there they stay.
PLANES_WIDE_OUT = 128

_enabled = False


def enabled() -> bool:
    """Whether HORQ layers train on the native kernels where they can (see the module docstring)."""
    return _enabled


def set_enabled(on: bool) -> None:
    """Turns native training on or off for every HORQ layer (process-wide)."""
    global _enabled
    _enabled = bool(on)


@contextlib.contextmanager
def native_training(on: bool = True):
    """Context manager: native training on (or off) inside the block, the previous setting restored after.

    Example:
        >>> with native_training():
        ...     loss = F.cross_entropy(model(x), y); loss.backward()
    """
    before = _enabled
    set_enabled(on)
    try:
        yield
    finally:
        set_enabled(before)


def applies(layer, x: Tensor) -> bool:
    """Whether ``layer`` (a HORQ layer) runs its training forward natively for input ``x``."""
    order = layer.order
    return (_enabled and layer.native_train and order is not None and order >= 1 and torch.is_grad_enabled()
            and x.device.type == "cpu" and x.dtype == torch.float32 and layer.weight.device.type == "cpu"
            and layer.weight.dtype == torch.float32)


# Output rows from which a convolution with fewer than 128 output channels takes its input gradient as the
# float-by-sign product (sign_input_grad), on every CPU measured.
SIGN_INPUT_MIN_WIDTH = 7


def sign_input_grad(c_out: int, out_width: int) -> bool:
    """Whether a convolution's input gradient runs as a float-by-sign product (else PyTorch's input gradient
    through ``W~``, then the clip window). The product sums over the ``c_out`` output channels and folds each
    row of ``out_width`` outputs into the input grid, so it pays when the sum is long or the rows are
    (``python benchmarks/bench_backward.py``, docs/TRAINING.md): on cifar-vgg's layers (128-512 channels) 1.50-1.83x
    PyTorch's speed on an AVX-512 Intel Xeon and a Zen 5 EPYC, 1.70-2.02x on a Zen 4 EPYC (AVX-512 too), 1.53-2.16x on
    an AVX2-only Zen 3 EPYC; on mnist-cnn's (64 channels, rows of 14 and 7) 1.22x / 1.05x, 1.75x / 1.37x and 1.33x /
    1.22x. Narrower rows than 7 with fewer than 128 channels keep PyTorch's."""
    return c_out >= 128 or out_width >= SIGN_INPUT_MIN_WIDTH


class _Weights:
    """The binarized weight of one forward pass: packed bits and ``alpha`` (kept for the backward), and
    ``W~ = alpha * sign(W)`` on demand (:meth:`w_eff`: only the PyTorch input-gradient fallback needs it)."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        from horq.kernels import train as ktrain

        self.shape = weight.shape
        self.rows = weight.detach().reshape(weight.shape[0], -1).contiguous()
        self.alpha, self.bits, _ = ktrain.binarize_weight_rows(self.rows.numpy(), with_eff=False)
        self.coef = self.alpha.astype(np.float64)
        self.add = np.zeros(len(self.alpha)) if bias is None else bias.detach().double().numpy()

    def w_eff(self) -> Tensor:
        a = torch.from_numpy(self.alpha)[:, None]
        return torch.where(self.rows < 0, -a, a).reshape(self.shape)  # sign(0) = sign(-0.0) = +1

    def grad(self, grad_eff: Tensor) -> Tensor:
        """Gradient of the latent weight from that of ``W~`` (binary_weight's straight-through rule)."""
        from horq.kernels import train as ktrain

        g = ktrain.binary_weight_grad(self.rows.numpy(), self.alpha, grad_eff.reshape(self.rows.shape).numpy(),
                                      WEIGHT_CLIP)
        return torch.from_numpy(g).reshape(self.shape)


def expand_step(n: int) -> int:
    """Columns of ``n`` values rebuilt per block of the weight gradient's GEMM route (see EXPAND_CHUNK_ELEMS)."""
    return max(EXPAND_MIN_COLS, EXPAND_CHUNK_ELEMS // n)


def _weight_grad(g_cols, bits, betas, layout, n: int, cols_per_step: int) -> Tensor:
    """``G^T A`` over all columns, ``A`` rebuilt ``cols_per_step`` columns at a time; ``g_cols(c0, c1)`` gives
    the rows ``[c0, c1)`` of G transposed, ``(C_out, c1-c0)``."""
    from horq.kernels import train as ktrain

    ncols = bits.shape[0]
    buf = torch.empty(min(ncols, cols_per_step), n)
    out = None
    for c0 in range(0, ncols, cols_per_step):
        c1 = min(ncols, c0 + cols_per_step)
        a = buf[: c1 - c0]
        ktrain.expand_columns(bits, betas, layout, c0, c1, a.numpy())
        g = g_cols(c0, c1)
        out = g @ a if out is None else out.addmm_(g, a)
    assert out is not None  # ncols >= 1
    return out


def _planes_max_order(c_out: int) -> int:
    """The highest order whose weight gradient runs as float-by-sign products, for ``c_out`` output channels on
    the kernel path in use and this CPU (PLANES_MAX_ORDER, PLANES_MAX_ORDER_AMD, PLANES_WIDE_OUT)."""
    from horq.kernels import _resolve_kernel, cpu_vendor

    path, amd = _resolve_kernel(None), cpu_vendor() == "AuthenticAMD"
    if path == "avx512":
        return PLANES_MAX_ORDER_AMD if amd else PLANES_MAX_ORDER
    if c_out >= PLANES_WIDE_OUT and not amd:
        return min(PLANES_MAX_ORDER, 1)
    return PLANES_MAX_ORDER


def _products(bits: np.ndarray, c_out: int) -> bool:
    """Whether the weight gradient from kept planes ``bits`` (``(ncols, order, words)``) runs as float-by-sign
    products (else the rebuilt-columns GEMM): see :func:`_columns_weight_grad`."""
    ncols, order = bits.shape[0], bits.shape[1]
    return order <= _planes_max_order(c_out) and (ncols >= PLANES_MIN_COLS or order <= PLANES_ANY_COLS_ORDER)


def _columns_weight_grad(g_rows: Tensor, cols, layout: tuple[int, int, int], taps: int) -> Tensor:
    """``G^T A`` as ``(C_out, n)`` in PyTorch's weight order (``(c, tap)``), from the rows of ``G`` (one per
    column) and the kept planes ``cols = (bits, betas)``: up to order :func:`_planes_max_order`, from
    :data:`PLANES_MIN_COLS` columns (up to :data:`PLANES_ANY_COLS_ORDER` from any number), one float-by-sign
    product per plane; otherwise one float GEMM against ``A`` rebuilt a block of columns at a time (K products cost
    more from K = 3: on cifar-vgg's layers 0.50-0.56x, 0.93-1.06x and 1.4-1.55x the time of the rebuilt-columns
    GEMM at K = 1, 2, 3, ``python benchmarks/bench_backward.py``)."""
    from horq.kernels import train as ktrain

    bits, betas = cols
    if _products(bits, g_rows.shape[1]):
        return torch.from_numpy(ktrain.planes_weight_grad(g_rows.contiguous().numpy(), bits, betas, layout, taps))
    n = layout[0] * layout[1]
    step = expand_step(n)
    dw = _weight_grad(lambda c0, c1: g_rows[c0:c1].t(), bits, betas, layout, n, step)  # (tap, c) order
    return dw.reshape(dw.shape[0], taps, n // taps).transpose(1, 2).reshape(dw.shape[0], n)


def _torch_input_grad(grad: Tensor, x: Tensor, w: Tensor, stride, padding, dilation) -> Tensor:
    """PyTorch's input gradient of ``conv2d(x, w)``, as its own backward computes it."""
    return torch.ops.aten.convolution_backward(grad, x, w, None, stride, padding, dilation, False, (0, 0), 1,
                                               (True, False, False))[0]


def _channels_last(t: Tensor) -> bool:
    """Whether ``t``'s strides read as channels_last under PyTorch's own rule (``suggest_memory_format``, which a
    convolution follows for its input and weight): each stride, in the order C, W, H, N, at least the extent of
    the dimensions before it, with PyTorch's tie-break to NCHW when N's stride equals C's. A one-channel tensor
    counts by its actual strides (``.contiguous(memory_format=...)`` leaves an NCHW one as it is; ``Module.to``
    restrides it), as it does for PyTorch."""
    if t.dim() != 4 or t.stride(1) == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if t.shape[d] == 0 or t.stride(d) < least or (d == 0 and least == t.stride(1)):
            return False
        least = t.stride(d) * max(1, t.shape[d])
    return True


def _layout(t: Tensor, channels_last: bool) -> Tensor:
    """``t`` contiguous in the given memory format (no copy when it already is)."""
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def _array(t: Tensor, channels_last: bool) -> np.ndarray:
    """The memory of ``t`` (laid out by :func:`_layout`) as the kernels read it: NCHW, or an NHWC array."""
    t = t.detach()
    return t.permute(0, 2, 3, 1).numpy() if channels_last else t.numpy()


def _tensor(a: np.ndarray, channels_last: bool) -> Tensor:
    """A kernel's NCHW or NHWC array as an NCHW-shaped tensor (channels_last strides for NHWC), no copy."""
    t = torch.from_numpy(a)
    return t.permute(0, 3, 1, 2) if channels_last else t


def _conv_weight_grad(ctx, grad: Tensor, wt: _Weights, cl: bool):
    """The latent weight's gradient of a native convolution and, for an NCHW gradient, the bias gradient summed on
    the way (else None)."""
    from horq.kernels import train as ktrain

    c_out, c_in, kh, kw = wt.shape
    gb = None
    # row j = column j = (image, oy, ox): a free view of an NHWC gradient, the kernels' transpose of NCHW
    # (which sums the bias gradient on its way through: mnist-cnn's 14x14 layer's grad.sum took 0.8 ms)
    if cl:
        g_rows = grad.permute(0, 2, 3, 1).reshape(-1, c_out)
    elif ctx.needs_input_grad[2]:
        rows, sums = ktrain.nchw_rows(grad.numpy(), sums=True)
        g_rows, gb = torch.from_numpy(rows), torch.from_numpy(sums)
    else:
        g_rows = torch.from_numpy(ktrain.nchw_rows(grad.numpy()))
    return wt.grad(_columns_weight_grad(g_rows, ctx.cols, ktrain.conv_layout(c_in, kh * kw), kh * kw)), gb


class _NativeConv2d(torch.autograd.Function):
    """As torch.nn.Conv2d does, the output (and in backward the input's gradient) is channels_last when the input
    or the weight is, so the layers around keep PyTorch's NHWC kernels: the kernels then read and write NHWC
    memory directly (the columns are the same), and the weight gradient reads the output gradient as (pixels,
    channels) rows, a free view of an NHWC gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, conf):
        from horq.kernels import train as ktrain

        stride, padding, dilation, order, clip = conf
        cl = ctx.channels_last = _channels_last(x) or _channels_last(weight)
        x = _layout(x, cl)
        _, c_in, kh, kw = weight.shape
        wt = _Weights(weight, bias)
        wbits = ktrain.conv_weight_bits(wt.bits, c_in, kh, kw)
        y, (bits, betas) = ktrain.conv2d_keep(_array(x, cl), wbits, wt.coef, wt.add, kh, kw, stride, padding,
                                              dilation, order, channels_last=cl)
        ctx.conf, ctx.wt = conf, wt
        ctx.cols = (bits, betas) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(weight, x.detach())  # the weight only for autograd's in-place check
        return _tensor(y, cl)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        from horq.kernels import train as ktrain

        saved = ctx.saved_tensors  # also the version check of the weight
        wt, cl = ctx.wt, ctx.channels_last
        stride, padding, dilation, order, clip = ctx.conf
        c_out, c_in, kh, kw = wt.shape
        gx = gw = gb = None
        grad = _layout(grad, cl)
        # The weight gradient first, while the output gradient the layer above just wrote is still in cache: its
        # transpose (nchw_rows) of mnist-cnn's 14x14 gradient took 1.2 ms after the input gradient, 0.9 ms before it
        # (first quartiles over 30 alternated steps, AMD EPYC Zen 3, benchmarks/ab_native_steps.py against a
        # module flag for the order, since removed); the input gradient's time did not change.
        if ctx.needs_input_grad[1]:
            gw, gb = _conv_weight_grad(ctx, grad, wt, cl)
        if ctx.needs_input_grad[0]:
            x = saved[1]  # laid out as forward's input: channels_last when cl
            if sign_input_grad(c_out, grad.shape[3]):
                gx = _tensor(ktrain.conv_input_grad(_array(grad, cl), wt.alpha, wt.bits, _array(x, cl), kh, kw, stride,
                                                    padding, dilation, clip, channels_last=cl), cl)
            else:
                gx = _layout(_torch_input_grad(grad, x, wt.w_eff(), stride, padding, dilation), cl)
                if clip is not None:
                    ktrain.clip_window(_array(gx, cl), _array(x, cl), clip)
        if ctx.needs_input_grad[2] and gb is None:
            gb = grad.sum(dim=(0, 2, 3))
        ctx.cols = ctx.wt = None
        return gx, gw, gb, None


class _NativeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, conf):
        from horq.kernels import train as ktrain

        order, clip = conf
        x = x.contiguous()
        wt = _Weights(weight, bias)
        y, (bits, betas) = ktrain.linear_keep(x.detach().numpy(), wt.bits, wt.coef, wt.add, order)
        ctx.cols = (bits, betas) if ctx.needs_input_grad[1] else None
        ctx.wt, ctx.clip = wt, clip
        ctx.save_for_backward(weight, x.detach())  # the weight only for autograd's in-place check
        return torch.from_numpy(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        from horq.kernels import train as ktrain

        _, x = ctx.saved_tensors
        wt = ctx.wt
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.from_numpy(ktrain.linear_input_grad(grad.numpy(), wt.alpha, wt.bits, x.numpy(), ctx.clip))
        if ctx.needs_input_grad[1]:
            n = wt.rows.shape[1]
            if _products(ctx.cols[0], grad.shape[1]):  # the products and the weight's STE rule in one pass
                gw = torch.from_numpy(ktrain.linear_weight_grad(grad.numpy(), *ctx.cols, wt.rows.numpy(), wt.alpha,
                                                                WEIGHT_CLIP)).reshape(wt.shape)
            else:
                gw = wt.grad(_columns_weight_grad(grad, ctx.cols, (1, n, words_for(n)), 1))
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=0)
        ctx.cols = ctx.wt = None
        return gx, gw, gb, None


def _run(layer, fn, *args):
    try:
        return fn.apply(*args)
    except ValueError:
        layer._check_finite(args[0])  # the layer's own message for NaN/Inf input (the core found one)
        raise


def conv2d(layer, x: Tensor, padding: tuple[int, int]) -> Tensor:
    """The native training forward of ``layer`` (a HORQConv2d) on a batched input ``x``; ValueError on NaN/Inf."""
    conf = (tuple(layer.stride), tuple(padding), tuple(layer.dilation), layer.order, layer.clip)
    return _run(layer, _NativeConv2d, x, layer.weight, layer.bias, conf)


def linear(layer, x: Tensor) -> Tensor:
    """The native training forward of ``layer`` (a HORQLinear) on an input ``(*, in_features)``; ValueError on
    NaN/Inf."""
    y = _run(layer, _NativeLinear, x.reshape(-1, layer.in_features), layer.weight, layer.bias,
             (layer.order, layer.clip))
    return y.reshape(*x.shape[:-1], layer.out_features)
