"""The opt-in native path of horq.nn layers (layer.native = True) against their torch path.

Tolerance: the torch path computes in float32 (betas, residuals and the matmul), the native path in double
with exact integer dot products; relative differences are float32 rounding of sums of up to n terms
(~1e-6), so rtol/atol 1e-4 (relative to the output scale) is a safe bound -- except where float32 rounding
in the torch path flips a bit exactly at a threshold, which random data makes vanishingly rare.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from horq.nn.layers import HORQConv2d, HORQLinear  # noqa: E402


def close(a, b):
    scale = max(1.0, float(b.abs().max()))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_conv_native_matches_torch(order, stride, padding, dilation):
    torch.manual_seed(order)
    layer = HORQConv2d(5, 7, 3, stride=stride, padding=padding, dilation=dilation, order=order).eval()
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():
        ref = layer(x)
        layer.native = True
        got = layer(x)
        got_unbatched = layer(x[0])
    close(got, ref)
    close(got_unbatched, ref[0])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_linear_native_matches_torch(order):
    torch.manual_seed(order)
    layer = HORQLinear(65, 9, order=order).eval()
    x = torch.randn(2, 3, 65)
    with torch.no_grad():
        ref = layer(x)
        layer.native = True
        got = layer(x)
    assert got.shape == ref.shape
    close(got, ref)


def test_native_falls_back_and_tracks_weight_updates():
    torch.manual_seed(0)
    layer = HORQLinear(20, 4, order=2)
    layer.native = True
    x = torch.randn(3, 20, requires_grad=True)
    y = layer(x)  # training mode + grad: torch path, gradients flow
    y.sum().backward()
    assert x.grad is not None
    layer.eval()
    with torch.no_grad():
        first = layer(x)
        layer.weight.mul_(-1.0)  # in-place change -> cache rebuilt
        second = layer(x)
        expect = -first + 2 * layer.bias  # alpha * S + b  ->  -alpha * S + b
    close(second, expect)


def test_native_path_is_the_prepared_kernel_layer_and_follows_changes():
    """The native path runs a cached horq.kernels.Conv2dLayer (the runtime's prepared layer): bitwise the
    output of kernels.conv2d for the layer's current weight, bias and order, rebuilt after each change."""
    from horq import kernels

    torch.manual_seed(1)
    layer = HORQConv2d(4, 6, 3, stride=2, padding=1, order=2).eval()
    layer.native = True
    x = torch.randn(2, 4, 9, 7)

    def expected():
        pw = kernels.pack_weights(layer.weight.detach().numpy())
        bias = None if layer.bias is None else layer.bias.detach().numpy()
        return kernels.conv2d(x.numpy(), pw, order=layer.order, stride=2, padding=1, bias=bias)

    with torch.no_grad():
        for change in (lambda: None, lambda: layer.weight.mul_(-1.0), lambda: layer.bias.add_(0.5),
                       lambda: setattr(layer, "order", 3), lambda: setattr(layer, "bias", None)):
            change()
            got = layer(x)
            assert isinstance(layer._native_cache[1], kernels.Conv2dLayer)
            np.testing.assert_array_equal(got.numpy(), expected())
        prepared = layer._native_cache[1]
        layer(x)
        assert layer._native_cache[1] is prepared  # nothing changed: no rebuild
