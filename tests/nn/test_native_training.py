"""The native training path (horq.nn.native_train) against the torch path, which stays the reference.

Truth is the torch path run in float64 on the same float32 inputs and weights (numpy-generated, identical on
every machine). The native quantizer works in double (exact thresholds at order 2), so its planes are those of
the float64 reference except at exact ties, which random normal inputs do not hit; what is left is float32
rounding: betas rounded once (2^-24 relative), and float32 sums of m products in the GEMMs and reductions,
whose error on random-sign data grows like sqrt(m) * 2^-24 relative to the largest entry (m <= 2e4 here:
about 1e-5 at the very worst, measured <= 1e-6). Each check is therefore
    max |native - float64 reference| <= TOL * max |reference|,   TOL = 5e-5,
which a single flipped plane bit (a change of about 2 beta_k alpha in one column, a few percent) would fail.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from horq import _core
from horq.nn import HORQConfig, HORQConv2d, HORQLinear, convert_, native_train
from horq.nn.native_train import native_training

TOL = 5e-5
PATHS = list(_core.available_kernels())


def _rand(rng, shape, scale=1.0):
    return torch.from_numpy((scale * rng.standard_normal(shape)).astype(np.float32))


def _close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    err = (got.double() - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= TOL * scale, f"{what}: max error {err:.3g} > {TOL} x {scale:.3g}"


def _native(y: torch.Tensor) -> bool:
    """Whether a native training node produced ``y`` (through views)."""
    fn = y.grad_fn
    while fn is not None and fn.name().startswith(("View", "Squeeze")):
        fn = fn.next_functions[0][0]
    return fn is not None and fn.name().startswith("_Native")


def _run(layer, x, g):
    """Output and gradients (input, weight, bias) of one forward/backward with upstream gradient ``g``."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    y.backward(g.to(y.dtype))
    grads = [x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad]
    return y.detach(), grads, _native(y)


def _check_layer(layer, x, seed):
    rng = np.random.default_rng(seed + 1)
    with torch.no_grad():
        out_shape = layer(x).shape
    g = _rand(rng, out_shape)
    ref_layer = copy.deepcopy(layer).double()
    y_ref, grads_ref, _ = _run(ref_layer, x.double(), g.double())
    with native_training():
        y, grads, native = _run(layer, x, g)
    assert native, "native path not taken"
    _close(y, y_ref, "output")
    for name, got, want in zip(("grad_input", "grad_weight", "grad_bias"), grads, grads_ref, strict=True):
        if want is None:
            assert got is None
        else:
            _close(got, want, name)


CONV_CASES = [
    # (C_in, C_out, kernel, stride, padding, dilation, H, W)
    (1, 3, 3, 1, 1, 1, 7, 9),
    (3, 5, 3, 2, 1, 1, 11, 10),
    (5, 7, (3, 2), 1, (1, 0), 1, 9, 8),
    (33, 6, 3, 2, 0, 2, 12, 11),  # compact layout, dilation
    (64, 9, 3, 1, 1, 1, 6, 7),  # grouped layout, one word per tap
    (70, 4, 1, 1, 0, 1, 5, 5),  # 1x1: one tap of two words
    (130, 3, 3, 2, 2, 1, 5, 6),  # three words per tap, wide padding
    # Input gradient as a float-by-sign product (native_train.sign_input_grad); the cases above take PyTorch's
    # but for the three with rows of 7 or more.
    (8, 5, 3, 1, 1, 1, 5, 18),  # 18 output columns
    (6, 130, 3, 2, 1, 1, 7, 9),  # 130 output channels, stride 2
    (3, 129, (3, 2), 1, (2, 0), 2, 9, 8),  # dilation, asymmetric kernel and padding
]


def test_input_grad_rule():
    """The product from 128 output channels, or from rows of 7 outputs, on any CPU."""
    assert native_train.sign_input_grad(64, 14) and native_train.sign_input_grad(128, 1)
    assert native_train.sign_input_grad(64, 7)
    assert not native_train.sign_input_grad(64, 6) and not native_train.sign_input_grad(127, 6)


def test_input_grad_paths_are_both_exercised():
    def out_width(k, s, p, d, w):
        last = lambda v: v if isinstance(v, int) else v[1]  # noqa: E731
        return (w + 2 * last(p) - d * (last(k) - 1) - 1) // s + 1

    chosen = {native_train.sign_input_grad(c_out, out_width(k, s, p, d, w))
              for _, c_out, k, s, p, d, _, w in CONV_CASES}
    assert chosen == {True, False}


# The weight gradient's two routes (native_train._columns_weight_grad): float-by-sign products per plane from
# PLANES_MIN_COLS columns at orders 1-2 and at order 1 (PLANES_ANY_COLS_ORDER) whatever the columns, else the
# rebuilt-columns GEMM. Each case runs as it is, with the products forced and (where asked) with the GEMM forced.
@pytest.fixture
def planes_from(request, monkeypatch):
    if request.param == "gemm":
        monkeypatch.setattr(native_train, "PLANES_MIN_COLS", 10**9)
        monkeypatch.setattr(native_train, "PLANES_ANY_COLS_ORDER", 0)
    elif request.param is not None:  # the products at every order, whatever the machine's default route
        monkeypatch.setattr(native_train, "PLANES_MIN_COLS", request.param)
        monkeypatch.setattr(native_train, "_planes_max_order", lambda c_out: 8)
    return request.param


@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD", ""])
def test_planes_order_depends_on_path_width_and_vendor(monkeypatch, vendor):
    """Order 2's weight gradient takes the products on avx512 at any width, elsewhere below PLANES_WIDE_OUT
    output channels only (on AMD CPUs at any width); order 3 on the avx512 path of AMD CPUs (both routes are
    checked against the float64 torch path below)."""
    from horq import _core, kernels

    monkeypatch.setattr(kernels, "cpu_vendor", lambda: vendor)
    wide = native_train.PLANES_WIDE_OUT
    monkeypatch.setenv("HORQ_KERNEL", "generic")
    assert native_train._planes_max_order(wide - 1) == 2
    assert native_train._planes_max_order(wide) == (2 if vendor == "AuthenticAMD" else 1)
    if "avx512" in _core.available_kernels():
        monkeypatch.setenv("HORQ_KERNEL", "avx512")
        assert native_train._planes_max_order(wide) == (3 if vendor == "AuthenticAMD" else 2)
        assert native_train._planes_max_order(wide - 1) == (3 if vendor == "AuthenticAMD" else 2)


def test_cpu_vendor_is_reported():
    from horq import kernels

    assert kernels.info()["vendor"] == kernels.cpu_vendor()
    assert isinstance(kernels.cpu_vendor(), str)


def test_cpu_flags_agree_with_the_core():
    """kernels.cpu_flags (the benchmarks' CPU line): where the OS reports them, the core's avx2 / avx512 paths imply
    them."""
    import os

    from horq import _core, kernels

    flags = kernels.cpu_flags()
    assert isinstance(flags, frozenset)
    if not os.path.exists("/proc/cpuinfo"):
        return
    assert flags
    avail = _core.available_kernels()
    assert ("avx2" not in avail or "avx2" in flags) and ("avx512" not in avail or "avx512f" in flags)


@pytest.mark.parametrize("planes_from", [None, 0], ids=["default-route", "products"], indirect=True)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "c{}-o{}-k{}-s{}-p{}-d{}".format(*c[:6]))
def test_conv_matches_float64_torch_path(case, order, planes_from):
    c_in, c_out, k, s, p, d, h, w = case
    torch.manual_seed(0)
    layer = HORQConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, order=order)
    x = _rand(np.random.default_rng(order), (2, c_in, h, w))
    _check_layer(layer, x, order)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[6]], ids=["c3", "c33", "c130"])
def test_conv_weight_gradient_in_many_blocks(case, order, monkeypatch):
    """The GEMM route's columns rebuilt a few at a time (native_train.expand_step): blocks of 7 columns, the last
    one short, give the float64 torch path's gradients as one block does."""
    monkeypatch.setattr(native_train, "EXPAND_MIN_COLS", 7)
    monkeypatch.setattr(native_train, "EXPAND_CHUNK_ELEMS", 1)
    monkeypatch.setattr(native_train, "PLANES_MIN_COLS", 10**9)  # the GEMM route at order 1 too
    monkeypatch.setattr(native_train, "PLANES_ANY_COLS_ORDER", 0)
    c_in, c_out, k, s, p, d, h, w = case
    assert native_train.expand_step(c_in * 9) == 7
    torch.manual_seed(0)
    layer = HORQConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, order=order)
    x = _rand(np.random.default_rng(order), (2, c_in, h, w))
    _check_layer(layer, x, order)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "c{}-o{}-k{}-s{}-p{}-d{}".format(*c[:6]))
def test_conv_channels_last_reads_and_writes_nhwc(case, order):
    """A channels_last layer and input: the kernels take and give NHWC memory (no layout copies), the output and
    the input gradient come back channels_last as torch.nn.Conv2d's do, every value matches the float64 torch
    path, and the output is the NCHW native call's bit for bit."""
    c_in, c_out, k, s, p, d, h, w = case
    torch.manual_seed(0)
    layer = HORQConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, order=order)
    x = _rand(np.random.default_rng(order), (2, c_in, h, w))
    with native_training():
        y_nchw = layer(x).detach()
    layer = layer.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    _check_layer(layer, x_cl, order)
    with native_training():
        xg = x_cl.clone().requires_grad_(True)
        y = layer(xg)
        y.backward(torch.ones_like(y))
    with torch.no_grad():  # the memory format torch.nn.Conv2d gives (NCHW when C_in = 1: both formats at once)
        y_torch = F.conv2d(x_cl, layer.weight, None, layer.stride, layer.padding, layer.dilation)
        want_cl = y_torch.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if want_cl else torch.contiguous_format
    assert y.is_contiguous(memory_format=layout) and xg.grad.is_contiguous(memory_format=layout)
    assert torch.equal(y.detach(), y_nchw)


def test_channels_last_rule_is_torch_convolutions():
    """native_train._channels_last picks the output memory format torch.nn.functional.conv2d picks, on plain,
    channels_last (``.contiguous``), restrided (as ``Module.to`` does) and ambiguous (one channel, 1x1 maps)
    inputs and weights."""
    cl = torch.channels_last

    def variants(shape):
        t = torch.randn(shape)
        restrided = torch.empty_strided(shape, (shape[1] * shape[2] * shape[3], 1, shape[3] * shape[1], shape[1]))
        return [t, t.contiguous(memory_format=cl), restrided.copy_(t)]

    checked = 0
    for x_shape, w_shape in [((2, 1, 5, 6), (3, 1, 3, 3)), ((2, 4, 5, 6), (3, 4, 3, 3)), ((2, 4, 1, 1), (3, 4, 1, 1)),
                             ((1, 3, 4, 4), (1, 3, 1, 1))]:
        for x in variants(x_shape):
            for w in variants(w_shape):
                y = F.conv2d(x, w, padding=w.shape[-1] // 2)
                if y.is_contiguous() and y.is_contiguous(memory_format=cl):
                    continue  # the output is both at once: nothing to tell apart
                want = y.is_contiguous(memory_format=cl)
                got = native_train._channels_last(x) or native_train._channels_last(w)
                assert got == want, (x.shape, x.stride(), w.shape, w.stride())
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize("order", [1, 2, 3])
def test_conv_batch_1_and_64_every_path(order, monkeypatch):
    torch.manual_seed(1)
    for path in PATHS:
        monkeypatch.setenv("HORQ_KERNEL", path)
        for batch in (1, 64):
            layer = HORQConv2d(32, 16, 3, padding=1, order=order)
            _check_layer(layer, _rand(np.random.default_rng(batch), (batch, 32, 8, 8)), batch)


@pytest.mark.parametrize("planes_from", [None, 0, "gemm"], ids=["default-route", "products", "gemm"], indirect=True)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("n_out", [7, 40])
@pytest.mark.parametrize("n_in", [1, 33, 64, 65, 513])
def test_linear_matches_float64_torch_path(n_in, n_out, order, planes_from):
    """Input widths around 64-bit words, outputs under and over the 8 x 8 / 16 x 16 register transposes that
    give the products' weight gradient PyTorch's order."""
    torch.manual_seed(2)
    layer = HORQLinear(n_in, n_out, order=order)
    _check_layer(layer, _rand(np.random.default_rng(n_in), (3, 4, n_in)), n_in)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_clip_window_and_no_bias(clip):
    torch.manual_seed(3)
    conv = HORQConv2d(8, 5, 3, padding=1, bias=False, order=2, clip=clip)
    _check_layer(conv, _rand(np.random.default_rng(3), (2, 8, 6, 6)), 3)
    lin = HORQLinear(40, 6, bias=False, order=3, clip=clip)
    _check_layer(lin, _rand(np.random.default_rng(4), (5, 40)), 4)


def test_unbatched_conv_input():
    torch.manual_seed(4)
    _check_layer(HORQConv2d(4, 3, 3, padding=1, order=2), _rand(np.random.default_rng(5), (4, 6, 5)), 5)


def test_zero_weights_and_inputs_follow_sign_zero_plus_one():
    """sign(0) = +1 for weights and inputs alike (exact zeros, the larq test's point)."""
    torch.manual_seed(5)
    layer = HORQConv2d(6, 4, 3, padding=1, order=2)
    with torch.no_grad():
        layer.weight[0].zero_()
        layer.weight[1, :, 1] = 0.0
    x = _rand(np.random.default_rng(6), (2, 6, 5, 5))
    x[:, :2] = 0.0
    _check_layer(layer, x, 6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_model_loss_and_every_gradient_match(channels_last):
    """A small network at order 1: the loss and the gradient of every parameter, BatchNorms included; also with
    the model and the batch in PyTorch's channels_last memory format (NHWC strides reach the native layers).

    No max-pooling after a binary layer: its outputs are alpha * beta * (integer), so neighbours tie or nearly
    tie, and float32 and float64 may pick different maxima (a routing difference, not an arithmetic one).
    """
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.BatchNorm2d(8), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.BatchNorm2d(16), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.BatchNorm1d(16 * 36), nn.Linear(16 * 36, 32), nn.ReLU(),
        nn.BatchNorm1d(32), nn.Linear(32, 10),
    )
    convert_(model, HORQConfig(order=1))
    rng = np.random.default_rng(7)
    x, y = _rand(rng, (16, 1, 12, 12)), torch.from_numpy(rng.integers(0, 10, 16))
    ref = copy.deepcopy(model).double()
    loss_ref = F.cross_entropy(ref(x.double()), y)
    loss_ref.backward()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)  # 1 channel: the first conv's output is NHWC
        assert not model[0](x).is_contiguous()
    with native_training():
        out = model[:5](x)  # through the first binary convolution and its ReLU
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        loss = F.cross_entropy(model[5:](out), y)
        loss.backward()
    assert abs(loss.item() - loss_ref.item()) <= TOL * abs(loss_ref.item())
    for (name, p), p_ref in zip(model.named_parameters(), ref.parameters(), strict=True):
        _close(p.grad, p_ref.grad, name)


def test_torch_path_where_native_does_not_apply():
    x = torch.randn(2, 4, 6, 6)
    cases = [
        (HORQConv2d(4, 3, 3, order=0), x),  # binary weights, real inputs
        (HORQConv2d(4, 3, 2, padding="same", order=2), x),  # asymmetric padding
        (HORQConv2d(4, 3, 3, order=2).double(), x.double()),  # float64
        (HORQLinear(6, 3, order=None), x),  # full precision
    ]
    off = HORQConv2d(4, 3, 3, order=1)
    off.native_train = False
    cases.append((off, x))
    with native_training():
        for layer, inp in cases:
            assert not _native(layer(inp)), layer
        with torch.no_grad():  # no autograd: the inference paths
            assert HORQConv2d(4, 3, 3, order=2)(x).grad_fn is None
    assert not native_train.enabled()
    assert not _native(HORQConv2d(4, 3, 3, order=2)(x))  # off by default


def test_non_finite_input_is_the_layers_error():
    x = torch.randn(2, 4, 6, 6)
    x[1, 2, 3, 3] = float("nan")
    with native_training(), pytest.raises(ValueError, match="NaN or infinity"):
        HORQConv2d(4, 3, 3, order=2)(x)
    with native_training(), pytest.raises(ValueError, match="NaN or infinity"):
        HORQLinear(6, 3, order=1)(x)


def test_in_place_weight_change_before_backward_is_refused():
    layer = HORQConv2d(4, 3, 3, order=2)
    with native_training():
        y = layer(torch.randn(2, 4, 6, 6))
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_kept_state_is_smaller_than_the_input():
    """Nothing the size of the unfolded input is kept: K bits per unfolded value, K betas per column, one
    byte of mask per input value -- at order 2 on a 3x3 conv over 64 channels, less than the float input."""
    from horq.kernels import train as ktrain

    x = torch.randn(4, 64, 8, 8)
    w = torch.randn(32, 64, 3, 3)
    alpha, bits, _ = ktrain.binarize_weight_rows(w.reshape(32, -1).numpy())
    _, (cols, betas) = ktrain.conv2d_keep(x.numpy(), ktrain.conv_weight_bits(bits, 64, 3, 3),
                                          alpha.astype(np.float64), np.zeros(32), 3, 3, (1, 1), (1, 1), (1, 1), 2)
    kept = cols.nbytes + betas.nbytes + x.numel()  # + the bool mask
    assert kept < x.numel() * 4, (kept, x.numel() * 4)  # the float unfolded input would be 9 x the input


def test_switch_restores_previous_state():
    native_train.set_enabled(False)
    with native_training():
        assert native_train.enabled()
        with native_training(False):
            assert not native_train.enabled()
        assert native_train.enabled()
    assert not native_train.enabled()


def test_training_steps_follow_the_torch_path():
    """A few Adam steps of a small conv model at order 2: the native losses track the torch path's (float32
    both; a flipped bit moves one step's loss by far less than the 2% allowed)."""
    def run(native):
        torch.manual_seed(8)
        model = nn.Sequential(nn.BatchNorm2d(3), HORQConv2d(3, 8, 3, padding=1, order=2), nn.ReLU(),
                              nn.Flatten(), nn.BatchNorm1d(8 * 36), HORQLinear(8 * 36, 4, order=2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(9)
        x, y = _rand(rng, (32, 3, 6, 6)), torch.from_numpy(rng.integers(0, 4, 32))
        losses = []
        with native_training(native):
            for _ in range(5):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return losses

    native, ref = run(True), run(False)
    assert np.allclose(native, ref, rtol=0.02), (native, ref)
    assert native[-1] < native[0]


def test_horq_train_flag_and_loop_switch(monkeypatch, tmp_path):
    """`horq train` trains natively by default and on the torch path with --no-native; the loop scopes it."""
    from horq.apps.cli import build_parser
    from horq.apps.train import settings_from_args
    from horq.nn import training

    assert settings_from_args(build_parser().parse_args(["train"])).native
    assert not settings_from_args(build_parser().parse_args(["train", "--no-native"])).native
    seen = []
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: (seen.append(native_train.enabled()), (0.0, 0.0))[1])
    for native in (True, False):
        settings = training.TrainSettings(model="mnist-mlp", data="digits", order=2, epochs=1, limit_train=64,
                                          limit_test=16, progress=False, native=native, out=str(tmp_path / str(native)))
        training.train(settings)
    assert seen == [True, False]
    assert not native_train.enabled()  # restored after the loop



def test_evaluation_inside_native_training_runs_the_native_inference_path():
    """horq train's evaluation pass (eval mode, no autograd) takes the native inference path while native
    training is on: the same output, bitwise, as ``layer.native = True``; the torch path when it is off."""
    torch.manual_seed(3)
    conv = HORQConv2d(5, 7, 3, padding=1, order=2).eval()
    lin = HORQLinear(37, 6, order=3).eval()
    cases = [(conv, torch.randn(2, 5, 9, 9)), (lin, torch.randn(4, 37))]
    with torch.no_grad():
        for layer, x in cases:
            layer(x)  # the torch path: no packed weights
            assert getattr(layer, "_native_cache", None) is None
            with native_training():
                inside = layer(x)
            assert getattr(layer, "_native_cache", None) is not None
            layer.native = True
            explicit = layer(x)
            layer.native = False
            assert torch.equal(inside, explicit)
            layer.native_train = False
            layer._native_cache = None
            with native_training():
                layer(x)
            assert layer._native_cache is None
