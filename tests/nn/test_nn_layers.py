"""HORQLinear / HORQConv2d against horq.reference (forward) and hand-composed numpy gradients."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nn_helpers import near_tie
from torch import nn

from horq import reference as ref
from horq.nn import HORQConv2d, HORQLinear
from horq.nn import layers as layers_mod

# float64 layers vs the float64 numpy reference: only summation order differs (a few ulps); random normal data
# never puts a residual exactly on a sign tie, so the bits agree and the tolerance can be tight.
TOL = dict(rtol=1e-9, atol=1e-10)
ORDERS = [None, 0, 1, 2, 3]

# (N, C_in, H, W, C_out, k, stride, padding, dilation, bias)
CONV_CASES = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1, False),
    (2, 3, 7, 5, 5, 3, 1, 1, 1, True),
    (1, 5, 9, 8, 3, 3, 2, 1, 1, True),
    (2, 2, 7, 7, 4, 3, 1, 2, 1, False),
    (1, 3, 9, 9, 2, 3, 1, 2, 2, True),
    (3, 4, 6, 7, 3, 1, 2, 0, 1, True),
    (1, 3, 5, 6, 4, (2, 3), (2, 1), (0, 1), (1, 2), True),
    (1, 33, 4, 4, 7, 2, 1, 1, 1, True),
]


def _conv(case, order, clip=1.0, seed=0):
    n, cin, h, w, cout, k, s, p, d, bias = case
    torch.manual_seed(seed)
    layer = HORQConv2d(cin, cout, k, stride=s, padding=p, dilation=d, bias=bias, order=order, clip=clip,
                       dtype=torch.float64)
    with torch.no_grad():
        layer.weight.view(-1)[0] = 0.0  # an exact zero weight: sign(0) = +1
    x = torch.randn(n, cin, h, w, dtype=torch.float64)
    x[:, :, 0, 0] = 0.0  # exact zeros at a border
    return layer, x


def _ref_conv(layer, x, order):
    b = None if layer.bias is None else layer.bias.detach().numpy()
    return ref.horq_conv2d(x.numpy(), layer.weight.detach().numpy(), b, order=order, stride=layer.stride,
                           padding=layer.padding, dilation=layer.dilation)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_reference(case, order):
    layer, x = _conv(case, order)
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), _ref_conv(layer, x, order), **TOL)


def test_conv_border_columns_include_padding_zeros():
    # A constant positive input: interior columns are exactly represented at order 1, but border columns
    # contain the padded zeros, whose sign is +1, so they differ from a "zero-padded after quantization" conv.
    layer = HORQConv2d(1, 1, 3, padding=1, bias=False, order=1, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    y = layer(torch.ones(1, 1, 4, 4, dtype=torch.float64))
    # corner column: 4 ones and 5 padded zeros -> beta = 4/9, all signs +1 -> 9 * 4/9 = 4 (as for the reals)
    assert y[0, 0, 0, 0].item() == pytest.approx(4.0)
    # interior: 9 ones -> 9
    assert y[0, 0, 1, 1].item() == pytest.approx(9.0)
    np.testing.assert_allclose(y.detach().numpy(), _ref_conv(layer, torch.ones(1, 1, 4, 4, dtype=torch.float64), 1))


def _col2im_adjoint(cols, x_shape, layer):
    """Adjoint of reference.im2col (the input gradient of unfolding), by linearity on basis inputs."""
    n, c, h, w = x_shape
    size = c * h * w
    eye = np.eye(size).reshape(size, c, h, w)
    kh, kw = layer.kernel_size
    basis, _ = ref.im2col(eye, kh, kw, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    return np.einsum("bnp,snp->bs", cols, basis).reshape(n, c, h, w)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[2], CONV_CASES[4]])
@pytest.mark.parametrize("clip", [1.0, None])
def test_conv_gradients_match_hand_composed_reference(case, order, clip):
    layer, x = _conv(case, order, clip=clip, seed=1)
    x[0, 0, 1, 1] = 1.0 if clip is None else clip  # a value exactly at +clip
    x.requires_grad_(True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    w = layer.weight.detach().numpy()
    cout = w.shape[0]
    w_eff = ref.effective_weight(w, order).reshape(cout, -1)
    xn = x.detach().numpy()
    cols, _ = ref.im2col(xn, *layer.kernel_size, stride=layer.stride, padding=layer.padding,
                         dilation=layer.dilation)
    gn = g.numpy().reshape(g.shape[0], cout, -1)
    # input: STE on the quantized columns, then the adjoint of unfolding
    window = 1.0 if (order == 0 or clip is None) else (np.abs(xn) <= clip)
    gx = _col2im_adjoint(np.einsum("on,bop->bnp", w_eff, gn), xn.shape, layer) * window
    np.testing.assert_allclose(x.grad.numpy(), gx, **TOL)
    # weight: the quantized columns times the output gradient, then binary_weight's documented rule
    g_eff = np.einsum("bop,bnp->on", gn, ref.quantize_input(cols, order, axis=1)).reshape(w.shape)
    wf, gf = w.reshape(cout, -1), g_eff.reshape(cout, -1)
    s = np.where(wf < 0, -1.0, 1.0)
    alpha = np.abs(wf).mean(axis=1, keepdims=True)
    gw = alpha * (np.abs(wf) <= 1.0) * gf + s * (gf * s).sum(axis=1, keepdims=True) / wf.shape[1]
    np.testing.assert_allclose(layer.weight.grad.numpy(), gw.reshape(w.shape), **TOL)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.bias.grad.numpy(), g.numpy().sum(axis=(0, 2, 3)), **TOL)


@pytest.mark.parametrize("case", CONV_CASES)
def test_order1_fast_path_equals_unfold_definition(case):
    layer, x = _conv(case, 1, seed=2)
    x.requires_grad_(True)
    y_fast = layer(x)
    g = torch.randn_like(y_fast)
    gx_fast, gw_fast = torch.autograd.grad(y_fast, (x, layer.weight), g)
    xp = torch.nn.functional.pad(x, layer._reversed_padding_repeated_twice)
    w_eff = layers_mod.binary_weight(layer.weight)
    y_unf = layer._unfold_forward(xp, w_eff, order=1)
    if layer.bias is not None:
        y_unf = y_unf + layer.bias.reshape(1, -1, 1, 1)
    gx_unf, gw_unf = torch.autograd.grad(y_unf, (x, layer.weight), g)
    torch.testing.assert_close(y_fast, y_unf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx_fast, gx_unf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw_fast, gw_unf, rtol=1e-10, atol=1e-10)


def test_unfold_chunking_gives_the_same_result(monkeypatch):
    layer, x = _conv(CONV_CASES[1], 2)
    y = layer(x)
    monkeypatch.setattr(layers_mod, "UNFOLD_CHUNK_ELEMS", 1)  # one sample per chunk
    # the batched matmul may sum in another order: ulp-level differences only
    torch.testing.assert_close(layer(x), y, rtol=1e-12, atol=1e-13)


def test_conv_unbatched_input_and_float32():
    layer, x = _conv(CONV_CASES[1], 2)
    torch.testing.assert_close(layer(x[0]), layer(x[:1])[0])
    layer32 = HORQConv2d(3, 4, 3, padding=1, order=2)
    x32 = torch.randn(2, 3, 6, 6)
    y = layer32(x32)
    assert y.dtype == torch.float32
    b = layer32.bias.detach().numpy()
    # float32 vs float64: rounding can flip a sign of a near-tie residual; a loose tolerance covers that
    np.testing.assert_allclose(y.detach().numpy(), ref.horq_conv2d(x32.numpy(), layer32.weight.detach().numpy(),
                                                                   b, order=2, padding=1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 64), (1, 65), (4, 2, 33)])
def test_linear_matches_reference(shape, order):
    torch.manual_seed(sum(shape))
    layer = HORQLinear(shape[-1], 5, order=order, dtype=torch.float64)
    x = torch.randn(*shape, dtype=torch.float64)
    x[..., 0] = 0.0
    y = layer(x)
    expected = ref.horq_linear(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(), order=order)
    np.testing.assert_allclose(y.detach().numpy(), expected, **TOL)


@pytest.mark.parametrize("order", [1, 2])
def test_linear_input_gradient_is_masked_straight_through(order):
    layer = HORQLinear(6, 3, order=order, clip=0.5, dtype=torch.float64)
    x = torch.tensor([[0.0, 0.5, -0.5, 0.7, -3.0, 0.1]], dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 3, dtype=torch.float64)
    layer(x).backward(g)
    w_eff = ref.effective_weight(layer.weight.detach().numpy(), order)
    expected = (g.numpy() @ w_eff) * (np.abs(x.detach().numpy()) <= 0.5)
    np.testing.assert_allclose(x.grad.numpy(), expected, **TOL)


def test_full_precision_is_the_parent_layer():
    lin = HORQLinear(4, 3, order=None)
    plain = nn.Linear(4, 3)
    plain.load_state_dict(lin.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(lin(x), plain(x), rtol=0, atol=0)
    conv = HORQConv2d(2, 3, 3, padding=1, order=None)
    pconv = nn.Conv2d(2, 3, 3, padding=1)
    assert conv.state_dict().keys() == pconv.state_dict().keys()
    pconv.load_state_dict(conv.state_dict())
    xc = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(conv(xc), pconv(xc), rtol=0, atol=0)


def test_extra_repr_and_attributes():
    lin = HORQLinear(4, 3, order=2, clip=None)
    assert "order=2" in repr(lin) and "clip=None" in repr(lin)
    conv = HORQConv2d(2, 3, 3, order=1)
    assert "order=1" in repr(conv)
    conv.order = 3
    assert conv.order == 3 and "order=3" in repr(conv)
    with pytest.raises(ValueError, match="order"):
        conv.order = -1
    with pytest.raises(ValueError, match="clip"):
        lin.clip = 0.0


def test_conv_unsupported_configurations():
    with pytest.raises(ValueError, match="groups"):
        HORQConv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        HORQConv2d(4, 4, 3, padding_mode="reflect")


def test_input_validation():
    conv = HORQConv2d(3, 4, 3, order=2)
    with pytest.raises(ValueError, match="shape"):
        conv(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="shape"):
        conv(torch.randn(5, 5))
    with pytest.raises(ValueError, match="too small"):
        conv(torch.randn(1, 3, 2, 5))
    lin = HORQLinear(4, 2)
    with pytest.raises(ValueError, match="in_features|4"):
        lin(torch.randn(2, 5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("training", [True, False])
def test_non_finite_input_rule(bad, training):
    for order in (1, 2):
        for layer, x in ((HORQLinear(4, 2, order=order), torch.randn(2, 4)),
                         (HORQConv2d(2, 2, 3, order=order), torch.randn(1, 2, 4, 4))):
            layer.train(training)
            x.view(-1)[1] = bad
            with pytest.raises(ValueError, match="NaN or infinity"):
                layer(x)
    # Full precision and binary-weight layers do not binarize the input: NaN propagates as in PyTorch.
    for order in (None, 0):
        x = torch.randn(2, 4)
        x[0, 1] = bad
        y = HORQLinear(4, 2, order=order).train(training)(x)
        assert not bool(torch.isfinite(y[0]).all()) and bool(torch.isfinite(y[1]).all())


@settings(max_examples=40, deadline=None)
@given(
    cin=st.integers(1, 5), cout=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    order=st.sampled_from(ORDERS), seed=st.integers(0, 2**16),
)
def test_conv_random_configurations_match_reference(cin, cout, h, w, k, stride, padding, dilation, order, seed):
    eff = [dilation[i] * (k[i] - 1) + 1 for i in range(2)]
    assume(h + 2 * padding[0] >= eff[0] and w + 2 * padding[1] >= eff[1])
    torch.manual_seed(seed)
    layer = HORQConv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, order=order,
                       dtype=torch.float64)
    x = torch.randn(1, cin, h, w, dtype=torch.float64)
    if order is not None and order >= 2:
        cols, _ = ref.im2col(x.numpy(), *k, stride=stride, padding=padding, dilation=dilation)
        assume(not near_tie(cols, order, 1))  # half-padding columns can tie exactly; see near_tie
    np.testing.assert_allclose(layer(x).detach().numpy(), _ref_conv(layer, x, order), **TOL)


@pytest.mark.parametrize("case", CONV_CASES)
def test_strided_columns_equal_unfold(case):
    layer, x = _conv(case, 2)
    xp = torch.nn.functional.pad(x, layer._reversed_padding_repeated_twice)
    cols, (oh, ow) = layer._columns(xp)
    expected = torch.nn.functional.unfold(xp, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
    torch.testing.assert_close(cols.transpose(1, 2), expected, rtol=0, atol=0)
    assert oh * ow == expected.shape[2]
