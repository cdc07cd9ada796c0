"""Bad inputs (specific ValueErrors), the NaN/Inf rule, and the kernel selector (argument, env var, info)."""

import numpy as np
import pytest

from horq import _core, kernels


@pytest.fixture
def conv_case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    return x, kernels.pack_weights(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))


@pytest.fixture
def linear_case():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 10)).astype(np.float32)
    return x, kernels.pack_weights(rng.standard_normal((4, 10)).astype(np.float32))


def test_conv_bad_inputs(conv_case):
    x, pw = conv_case
    cases = [
        (dict(x=x.astype(np.float64)), "x must be float32"),
        (dict(x=x.astype(np.int32)), "x must be float32"),
        (dict(x=x[0]), "4 dimensions"),
        (dict(x=x[:, :2]), "x has 2 channels, the weights expect 3"),
        (dict(x=x[:0]), "x is empty"),
        (dict(x=x[:, :, :1, :1]), "too small"),
        (dict(order=0), "order 0 .* not supported by the native kernels"),
        (dict(order=9), "order must be an integer in 1..8"),
        (dict(order=-1), "order must be an integer in 1..8"),
        (dict(order=2.0), "order must be an integer"),
        (dict(order=True), "order must be an integer"),
        (dict(stride=0), "stride must be an integer >= 1"),
        (dict(padding=-1), "padding must be an integer >= 0"),
        (dict(dilation=(1, 2, 3)), "dilation must be"),
        (dict(bias=np.zeros(5, np.float32)), r"bias must have shape \(4,\)"),
        (dict(scale=np.array([1, np.nan, 1, 1], np.float32)), "scale contains NaN"),
        (dict(pw=np.zeros((4, 1), np.uint64)), "weights must be PackedWeights"),
        (dict(kernel="sse9"), "unknown kernel path 'sse9'"),
    ]
    for change, message in cases:
        args = dict(x=x, pw=pw, order=2)
        args.update(change)
        with pytest.raises(ValueError, match=message):
            kernels.conv2d(args.pop("x"), args.pop("pw"), **args)


def test_linear_bad_inputs(linear_case, conv_case):
    x, pw = linear_case
    with pytest.raises(ValueError, match="x must be float32"):
        kernels.linear(x.astype(np.float16), pw, order=1)
    with pytest.raises(ValueError, match="2 dimensions"):
        kernels.linear(x[0], pw, order=1)
    with pytest.raises(ValueError, match="x has 9 features, the weights expect 10"):
        kernels.linear(x[:, :9], pw, order=1)
    with pytest.raises(ValueError, match="x is empty"):
        kernels.linear(x[:0], pw, order=1)
    with pytest.raises(ValueError, match="order 0"):
        kernels.linear(x, pw, order=0)
    with pytest.raises(ValueError, match="linear needs a 2-d weight"):
        kernels.linear(x, conv_case[1], order=1)
    with pytest.raises(ValueError, match="conv2d needs a 4-d weight"):
        kernels.conv2d(conv_case[0], pw, order=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected(path, bad, conv_case, linear_case):
    # Rule: any NaN/Inf anywhere in x is an error -- including a pixel that no output reads (stride 2,
    # 1x1 kernel skips odd rows), so the outcome never depends on the geometry.
    x, pw = conv_case
    xb = x.copy()
    xb[1, 2, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.conv2d(xb, pw, order=2, padding=1, kernel=path)
    pw1 = kernels.pack_weights(np.ones((2, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.conv2d(xb, pw1, order=1, stride=2, kernel=path)
    xl, pl = linear_case
    xlb = xl.copy()
    xlb[1, 9] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        kernels.linear(xlb, pl, order=1, kernel=path)


def test_huge_finite_inputs_are_fine(path, linear_case):
    xl, pl = linear_case
    xl = xl.copy()
    xl[:, :] = np.float32(3e38)  # beta is summed in double: no overflow to Inf
    y = kernels.linear(xl, pl, order=2, kernel=path)
    assert not np.isnan(y).any()  # may overflow float32 to Inf, but raises nothing


def test_paths_offered_match_the_cpu_flags():
    """kernels.PATH_FEATURES against the core's dispatch, which reads the CPU itself: a path is offered exactly where
    /proc/cpuinfo reports every instruction set it is compiled for, and info()["missing"] names the others'. (Under
    qemu's user-mode emulation /proc/cpuinfo is the host's: test_portable_build.py checks the emulated CPUs.)"""
    if set(_core.known_kernels()) == {"generic"}:
        pytest.skip("a build without the x86 paths (non-x86 target): nothing to dispatch")
    flags = kernels.cpu_flags()
    if not flags:
        pytest.skip("/proc/cpuinfo has no flags line here; the emulated CPUs of test_portable_build.py check this")
    assert set(kernels.PATH_FEATURES) == set(_core.known_kernels()) - {"generic"}
    missing = kernels.info()["missing"]
    for name, needs in kernels.PATH_FEATURES.items():
        assert (name in _core.available_kernels()) == set(needs).issubset(flags), (name, sorted(set(needs) - flags))
        assert missing.get(name, []) == [f for f in needs if f not in flags]


def test_info_names_what_a_path_lacks(monkeypatch):
    """On a CPU without some of a path's instruction sets, info() names them (the flags as Linux would report them
    for an AVX-512 CPU without VPOPCNTDQ, a Skylake-SP, and for one with none of the sets)."""
    monkeypatch.setattr(_core, "available_kernels", lambda: ["generic"])
    skylake = frozenset({"avx2", "fma", "bmi2", "popcnt", "avx512f", "avx512bw", "avx512vl", "avx512dq", "sse4_2"})
    for flags, want in [(skylake, {"avx512": ["avx512_vpopcntdq"], "avx2": []}),
                        (frozenset({"sse2"}), {p: list(f) for p, f in kernels.PATH_FEATURES.items()}),
                        (frozenset(), {"avx512": [], "avx2": []})]:
        monkeypatch.setattr(kernels, "cpu_flags", lambda flags=flags: flags)
        info = kernels.info()
        assert info["in_use"] == "generic" or info["in_use"].startswith("invalid")
        assert info["missing"] == {p: want[p] for p in _core.known_kernels() if p != "generic"}


def test_info_and_selector(monkeypatch, linear_case):
    info = kernels.info()
    assert info["available"] == list(_core.available_kernels())
    assert info["available"][-1] == "generic" and set(info["available"]) <= set(info["known"])
    # x86 builds have every path; other targets (aarch64, ...) build the generic one alone (issue 12).
    assert set(info["known"]) in ({"avx512", "avx2", "generic"}, {"generic"})
    assert info["in_use"] == info["available"][0]
    assert info["threads"] == kernels.get_num_threads() >= 1
    x, pw = linear_case
    monkeypatch.setenv(kernels.KERNEL_ENV, "generic")
    assert kernels.info()["in_use"] == "generic"
    y_env = kernels.linear(x, pw, order=2)
    np.testing.assert_array_equal(y_env, kernels.linear(x, pw, order=2, kernel="generic"))
    monkeypatch.setenv(kernels.KERNEL_ENV, "bogus")
    with pytest.raises(ValueError, match="unknown kernel path 'bogus'"):
        kernels.linear(x, pw, order=2)
    assert "invalid" in kernels.info()["in_use"]
    monkeypatch.delenv(kernels.KERNEL_ENV)
    for name in info["known"]:
        if name not in info["available"]:
            with pytest.raises(ValueError, match=f"'{name}' is not supported by this CPU"):
                kernels.linear(x, pw, order=1, kernel=name)
            monkeypatch.setenv(kernels.KERNEL_ENV, name)
            with pytest.raises(ValueError, match="not supported by this CPU"):
                kernels.linear(x, pw, order=1)
            monkeypatch.delenv(kernels.KERNEL_ENV)


def test_set_num_threads_validation():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            kernels.set_num_threads(bad)
    kernels.set_num_threads(3)
    assert kernels.get_num_threads() == 3


def test_kernels_import_without_torch():
    # horq.kernels sits under horq.runtime, which must run with numpy and the extension only (STYLE.md).
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, horq.kernels as K\n"
            "pw = K.pack_weights(np.ones((2, 3, 3, 3), np.float32))\n"
            "y = K.conv2d(np.ones((1, 3, 4, 4), np.float32), pw, order=2, padding=1)\n"
            "assert y.shape == (1, 2, 4, 4) and 'torch' not in [m for m in sys.modules if sys.modules[m]]\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_prepared_layers(path, conv_case, linear_case, monkeypatch):
    """Conv2dLayer / LinearLayer: the one-shot functions' results, checks at construction and at call, and the
    kernel path fixed when the layer is built."""
    x, pw = conv_case
    rng = np.random.default_rng(2)
    bias, scale, shift = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    layer = kernels.Conv2dLayer(pw, order=2, padding=1, stride=(1, 2), bias=bias, scale=scale, shift=shift,
                                kernel=path)
    want = kernels.conv2d(x, pw, order=2, padding=1, stride=(1, 2), bias=bias, scale=scale, shift=shift,
                          kernel=path)
    np.testing.assert_array_equal(layer(x), want)
    np.testing.assert_array_equal(layer(x), want)  # nothing in the layer changes between calls
    assert layer.kernel == path and layer.output_size(6, 6) == (6, 3)
    with pytest.raises(ValueError, match="x has 2 channels"):
        layer(x[:, :2])
    with pytest.raises(ValueError, match="float32"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match="too small"):
        kernels.Conv2dLayer(pw, order=1, dilation=4, kernel=path)(x)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        kernels.Conv2dLayer(pw, order=1, bias=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="order"):
        kernels.Conv2dLayer(pw, order=9)
    with pytest.raises(ValueError, match="4-d weight shape"):
        kernels.Conv2dLayer(linear_case[1], order=1)

    xl, pwl = linear_case
    lin = kernels.LinearLayer(pwl, order=3, bias=bias, kernel=path)
    np.testing.assert_array_equal(lin(xl), kernels.linear(xl, pwl, order=3, bias=bias, kernel=path))
    with pytest.raises(ValueError, match="x has 9 features"):
        lin(xl[:, :9])
    with pytest.raises(ValueError, match="2-d weight shape"):
        kernels.LinearLayer(pw, order=1)

    fixed = kernels.Conv2dLayer(pw, order=1)
    monkeypatch.setenv(kernels.KERNEL_ENV, "no-such-path")
    assert fixed.kernel == _core.available_kernels()[0]
    fixed(x)  # resolved at construction: the later environment change does not reach it
    with pytest.raises(ValueError, match="unknown kernel path"):
        kernels.Conv2dLayer(pw, order=1)


def test_prepared_conv_layer_checks_after_a_good_call(path, conv_case):
    """After a call that passed the checks, a call with arrays of the same shapes goes straight to the core: it
    must give the same result, and every other input must still be refused with its own message (the core
    checks shapes and NaN/Inf itself)."""
    x, pw = conv_case
    layer = kernels.Conv2dLayer(pw, order=1, padding=1, out_floor=np.zeros(4, np.float32), kernel=path)
    want = layer(x)
    np.testing.assert_array_equal(layer(x), want)
    r = np.random.default_rng(3).standard_normal(want.shape).astype(np.float32)
    with_r = layer(x, r)
    np.testing.assert_array_equal(layer(x, r), with_r)
    np.testing.assert_array_equal(layer(x), want)  # the residual is not kept from the call before
    with pytest.raises(ValueError, match="residual has shape"):
        layer(x, r[:, :3])
    with pytest.raises(ValueError, match="float32"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match="float32"):
        layer(x, r.astype(np.float64))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer(bad)
    strided = np.zeros((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), np.float32)[..., ::2]
    strided[...] = x
    np.testing.assert_array_equal(layer(strided), want)  # a view of the same shape: copied, same result
    np.testing.assert_array_equal(layer(x[:1]), want[:1])  # another batch size: checked again


def test_core_prepared_conv_holds_its_arrays(path, conv_case):
    """_core.PreparedConv (Conv2dLayer's call): conv2d's bits from arrays it was given once and holds (they may be
    the only references left), and conv2d's checks on every call."""
    import gc

    x, pw = conv_case
    layer = kernels.Conv2dLayer(pw, order=2, padding=1, kernel=path)
    want = kernels.conv2d(x, pw, order=2, padding=1, kernel=path)
    prepared = _core.PreparedConv(pw.conv_bits().copy(), layer._coef.copy(), layer._add.copy(), 3, 3, 3, (1, 1),
                                  (1, 1), (1, 1), 2, path)
    gc.collect()
    np.testing.assert_array_equal(prepared(x), want)
    with pytest.raises(ValueError, match="input channels"):
        prepared(x[:, :2].copy())  # 18 values a column, one word as 27 are: only the channel count tells
    with pytest.raises(ValueError):
        prepared(x, np.zeros((1, 1, 1, 1), np.float32))  # a residual of another shape
    bad = x.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        prepared(bad)
    with pytest.raises(ValueError):
        _core.PreparedConv(pw.conv_bits(), layer._coef, layer._add, 3, 3, 3, (1, 1), (1, 1), (1, 1), 9, path)
    with pytest.raises(ValueError, match="conv layout"):
        _core.PreparedConv(pw.conv_bits(), layer._coef, layer._add, 30, 3, 3, (1, 1), (1, 1), (1, 1), 1, path)


def test_epilogue_is_not_contracted_into_fma():
    """A float tie that a fused multiply-add rounds differently from the written mul-then-add: every path
    must give the written operations' result (found by the AVX-512 emulation harness, which checks it too)."""
    # beta_1 = |x| = 1 + 2^-12 and coef = 1 + 2^-12: coef * s = 1 + 2^-11 + 2^-24 rounds (a tie, to even) to
    # 1 + 2^-11 in float32, and add = -(1 + 2^-11) then gives +0.0; fused, the 2^-24 would survive.
    x = np.array([[np.float32(1 + 2.0**-12)]], np.float32)
    coef = np.array([1 + 2.0**-12])
    add = np.array([-(1 + 2.0**-11)])
    for kernel in _core.available_kernels():
        y = _core.linear(x, np.zeros((1, 1), np.uint64), coef, add, 1, kernel)
        assert y[0, 0] == 0.0 and not np.signbit(y[0, 0]), (kernel, float(y[0, 0]).hex())


def test_epilogue_values_outside_float32_are_refused():
    """The epilogue runs in float32 (docs/MATH.md "Output"): a coef or add that would round to infinity is an
    error with its own message, for convolutions and linear layers, on every path."""
    x = np.ones((1, 64), np.float32)
    w = np.zeros((2, 1), np.uint64)
    ok = np.array([1.0, 2.0])
    for kernel in _core.available_kernels():
        for coef, add in ((np.array([1.0, 1e39]), ok), (ok, np.array([-1e39, 0.0]))):
            with pytest.raises(ValueError, match="finite float32"):
                _core.linear(x, w, coef, add, 1, kernel)
        conv_w = np.zeros((2, 9), np.uint64)
        with pytest.raises(ValueError, match="finite float32"):
            _core.conv2d(np.ones((1, 64, 4, 4), np.float32), conv_w, np.array([1.0, 1e39]), ok, 3, 3, (1, 1),
                         (1, 1), (1, 1), 1, kernel, None, None, None, None)
        # prepared layers check once, when they are made
        with pytest.raises(ValueError, match="finite float32"):
            _core.PreparedConv(conv_w, ok, np.array([0.0, 1e39]), 64, 3, 3, (1, 1), (1, 1), (1, 1), 1, kernel)
        with pytest.raises(ValueError, match="finite float32"):
            _core.PreparedLinear(w, np.array([1e39, 1.0]), ok, 64, 1, kernel)
