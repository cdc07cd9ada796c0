"""kernels.max_pool2d (csrc/core/pool.cpp), the native backend's max pooling, against a numpy definition:
maxima are exact, so results must be equal value for value (NaN where a window holds one)."""

import numpy as np
import pytest

from horq import kernels


def _reference(x, k, s, p, d, out_size, floor=None):
    """max over the taps inside x (padding skipped), then max with floor; -inf for a window with no tap."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    oh, ow = out_size
    y = np.full((n, c, oh, ow), -np.inf, np.float32)
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh - ph + i * dh, ox * sw - pw + j * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        y[:, :, oy, ox] = np.maximum(y[:, :, oy, ox], x[:, :, iy, ix])
    if floor is not None:
        y = np.maximum(y, np.asarray(floor, np.float32).reshape(1, -1, 1, 1))
    return y


CASES = [
    # (N, C, H, W, kernel, stride, padding, dilation)
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 3, 7, 9, (2, 2), (2, 2), (0, 0), (1, 1)),
    (1, 5, 17, 16, (3, 3), (2, 2), (1, 1), (1, 1)),  # the ResNet stem's pool on an odd map
    (2, 4, 9, 11, (3, 2), (1, 2), (1, 1), (1, 1)),
    (1, 2, 12, 13, (3, 3), (2, 3), (1, 0), (2, 2)),  # dilation
    (3, 1, 5, 40, (1, 5), (1, 4), (0, 2), (1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}-c{}-{}x{}-k{}-s{}-p{}-d{}".format(*c))
def test_max_pool_matches_definition(case):
    n, c, h, w, k, s, p, d = case
    rng = np.random.default_rng(h * w + c)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    np.testing.assert_array_equal(kernels.max_pool2d(x, k, s, p, d), _reference(x, k, s, p, d, (oh, ow)))
    # ceil mode: one more output row / column, whose window may reach past the input
    out = (oh + 1, ow + 1)
    np.testing.assert_array_equal(kernels.max_pool2d(x, k, s, p, d, out_size=out), _reference(x, k, s, p, d, out))
    floor = rng.standard_normal(c).astype(np.float32)
    np.testing.assert_array_equal(kernels.max_pool2d(x, k, s, p, d, floor=floor),
                                  _reference(x, k, s, p, d, (oh, ow), floor))
    np.testing.assert_array_equal(kernels.max_pool2d(x, k, s, p, d, floor=0.0),
                                  _reference(x, k, s, p, d, (oh, ow), [0.0] * c))


def test_nan_spreads_to_its_windows_only():
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(1, 2, 6, 6)
    x[0, 1, 2, 3] = np.nan
    y = kernels.max_pool2d(x, 3, 2, 1, floor=0.0)
    ref = _reference(x, (3, 3), (2, 2), (1, 1), (1, 1), (3, 3), [0.0, 0.0])
    np.testing.assert_array_equal(y, ref)  # NaN where the reference has it, equal elsewhere
    assert np.isnan(y[0, 1]).sum() == 2 and not np.isnan(y[0, 0]).any()  # windows (1, 1) and (1, 2)


def test_two_by_two_pool_is_the_general_pool():
    """The 2 x 2 stride-2 pool (its own loop, csrc/core/pool.cpp) gives the general loop's bits: the same operations
    in the same order, so also -0.0 against +0.0 (which equality cannot tell apart) and NaN in its windows only."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 10, 13)).astype(np.float32)
    x[0, 0, :2, :2] = [[0.0, -0.0], [-0.0, 0.0]]
    x[1, 2, 4, 6] = np.nan
    x[2, 4, 9, 12] = np.nan  # a row and a column the windows do not reach (10 x 13 -> 5 x 6)
    for floor in (None, 0.0, rng.standard_normal(5).astype(np.float32)):
        fast = kernels.max_pool2d(x, 2, 2, 0, floor=floor)
        general = kernels.max_pool2d(x, 2, 2, 0, floor=floor, out_size=(5, 7))[:, :, :, :6]  # ceil mode: general
        assert fast.shape == (3, 5, 5, 6)
        np.testing.assert_array_equal(fast.view(np.uint32), general.view(np.uint32))
        assert np.isnan(fast).sum() == 1 and np.isnan(fast[1, 2, 2, 3])


def test_bad_input_is_refused():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="float32"):
        kernels.max_pool2d(x.astype(np.float64), 2)
    with pytest.raises(ValueError, match="dimensions"):
        kernels.max_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="kernel_size"):
        kernels.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="floor"):
        kernels.max_pool2d(x, 2, floor=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="output size"):
        kernels.max_pool2d(x, 2, out_size=(9, 1))
    with pytest.raises(ValueError, match="output size"):
        kernels.max_pool2d(x, 5)


def test_prepared_pool_is_max_pool2d_and_checks_new_shapes():
    """kernels.MaxPool2d (the runtime's pool steps): max_pool2d's results; after a good call, arrays of the same
    shape go straight to the core, and anything else is checked again."""
    rng = np.random.default_rng(7)
    floor = rng.standard_normal(3).astype(np.float32)
    pool = kernels.MaxPool2d(3, 2, 1, floor=floor)
    for shape in [(2, 3, 9, 8), (2, 3, 9, 8), (1, 3, 5, 12), (2, 3, 9, 8)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(pool(x), kernels.max_pool2d(x, 3, 2, 1, floor=floor))
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    pool(x)
    with pytest.raises(ValueError, match="float32"):
        pool(x.astype(np.float64))
    with pytest.raises(ValueError, match="floor"):
        pool(rng.standard_normal((2, 4, 9, 8)).astype(np.float32))  # 4 channels against 3 floors
    view = np.zeros((2, 3, 9, 16), np.float32)[..., ::2]
    view[...] = x
    np.testing.assert_array_equal(pool(view), pool(x))  # a non-contiguous view of the same shape: copied
    with pytest.raises(ValueError, match="kernel_size"):
        kernels.MaxPool2d(0)(x)


@pytest.mark.parametrize("width", [13, 16, 17, 33, 40, 112])  # outputs per row around vectors of 8 and 16
def test_every_path_pools_the_same_bits(path, width):
    """Each path compiles the pool's loops at its own vector width (pool_walk.h; the AVX-512 2 x 2 loop hands rows
    of fewer than 16 outputs to the AVX2 one): maxima are exact, so every path gives the generic path's bits,
    -0.0 and NaN included."""
    rng = np.random.default_rng(width)
    x = rng.standard_normal((2, 3, 9, width)).astype(np.float32)
    x[0, 0, 0, :4] = [0.0, -0.0, -0.0, 0.0]
    x[1, 2, 3, width // 2] = np.nan
    for floor in (None, 0.0, rng.standard_normal(3).astype(np.float32)):
        for geometry in ((2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), (2, 3, 0, 1)):
            want = kernels.max_pool2d(x, *geometry, floor=floor, kernel="generic")
            got = kernels.max_pool2d(x, *geometry, floor=floor, kernel=path)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("width", [37, 112])
def test_nan_payloads_and_zero_signs_pool_the_same_bits(path, width):
    """Many NaNs of distinct payloads (which one a window keeps depends on the order its maxima are taken in) and
    signed zeros (max(+0, -0) keeps its second operand) in every row: the paths' explicit loops (pool_avx2.cpp)
    keep the generic path's bits."""
    rng = np.random.default_rng(width + 1)
    x = rng.standard_normal((1, 4, 11, width)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    x[rng.random(x.shape) < 0.3] *= -1.0  # -0.0 among the zeros
    bits = x.view(np.uint32)
    nan = rng.random(x.shape) < 0.08
    bits[nan] = 0x7FC00000 | rng.integers(1, 1 << 22, size=int(nan.sum()), dtype=np.uint32)
    for floor in (None, 0.0, -0.0):
        for geometry in ((3, 2, 1, 1), (3, 2, 0, 1), (2, 2, 0, 1)):
            want = kernels.max_pool2d(x, *geometry, floor=floor, kernel="generic")
            got = kernels.max_pool2d(x, *geometry, floor=floor, kernel=path)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (2, 4), (3, 3), (1, 9), (4, 4), (7, 7), (8, 16), (1, 129), (10, 20),
                                (14, 14), (17, 19), (64, 64)])
def test_global_avg_pool_is_numpys(hw):
    """kernels.global_avg_pool sums each plane in double in numpy's pairwise order (runs of 8 partial sums, halves
    above 128 values), so it gives the runtime's numpy op bit for bit on planes numpy sums in one pass (up to its
    8192-value buffer), on values whose sum depends on the order; NaN and Inf propagate to their plane only."""
    from horq.runtime import ops

    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    n = hw[0] * hw[1]
    x = rng.standard_normal((3, 5, n)).astype(np.float32)
    # Pairs +-1e20 among small values: what the double sum keeps of the small ones depends on where each pair
    # cancels, i.e. on the summation order, and shows in the float32 mean.
    for row in x.reshape(15, n):
        at = rng.permutation(n)[: 2 * (n // 4)]
        row[at[: len(at) // 2]], row[at[len(at) // 2 :]] = 1e20, -1e20
    x = x.reshape(3, 5, *hw)
    want = ops.global_avg_pool(None, None, x)
    got = kernels.global_avg_pool(x)
    assert got.shape == (3, 5, 1, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    x[1, 2, 0, 0], x[2, 4, -1, -1] = np.nan, np.inf
    got = kernels.global_avg_pool(x)
    assert np.isnan(got[1, 2, 0, 0]) and got[2, 4, 0, 0] == np.inf
    assert np.isfinite(np.delete(got.ravel(), [1 * 5 + 2, 2 * 5 + 4])).all()


def test_global_avg_pool_refuses_bad_input():
    with pytest.raises(ValueError, match="float32"):
        kernels.global_avg_pool(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        kernels.global_avg_pool(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        kernels.global_avg_pool(np.zeros((0, 2, 3, 3), np.float32))


@pytest.mark.parametrize("width", [17, 37, 112])
def test_two_wide_windows_of_the_row_walk_pool_the_same_bits(path, width):
    """2-wide windows in the row walk (pool_walk.h two_taps; pool_avx2.cpp two_taps2, 8 outputs a step), which the
    fused pools of float convolutions and ceil-mode 2 x 2 pools take: every path gives the generic path's bits, NaN
    payloads (which one a window keeps depends on the order of its maxima) and signed zeros included, and the
    definition's values."""
    rng = np.random.default_rng(width + 2)
    x = rng.standard_normal((1, 3, 7, width)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    x[rng.random(x.shape) < 0.3] *= -1.0
    bits = x.view(np.uint32)
    nan = rng.random(x.shape) < 0.05
    bits[nan] = 0x7FC00000 | rng.integers(1, 1 << 22, size=int(nan.sum()), dtype=np.uint32)
    oh, ow = 4, (width + 1) // 2  # ceil mode: the walk, not the 2 x 2 plane loop
    for floor in (None, 0.0, -0.0, rng.standard_normal(3).astype(np.float32)):
        for stride in (2, 1):
            out = (oh, ow) if stride == 2 else (6, width - 1)
            want = kernels.max_pool2d(x, 2, stride, 0, floor=floor, out_size=out, kernel="generic")
            got = kernels.max_pool2d(x, 2, stride, 0, floor=floor, out_size=out, kernel=path)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
            ref = _reference(x, (2, 2), (stride, stride), (0, 0), (1, 1), out, floor if np.ndim(floor) else
                             None if floor is None else [floor] * 3)
            assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(got)],
                                                                                   ref[~np.isnan(ref)])


@pytest.mark.parametrize("width", [2, 4, 6, 8, 9, 10, 14, 15, 16, 18, 30, 31])
@pytest.mark.parametrize("height", [7, 8])
def test_two_by_two_windows_of_narrow_rows_pool_the_same_bits(path, width, height):
    """2 x 2 stride-2 windows on rows of 1-15 outputs (pool_avx2.cpp: masked loads below 8 outputs, two output rows a
    vector at 4, a last step that overlaps the one before above 8), through the plane loop (floor mode) and through
    the row walk (ceil mode in height only: every window of a row inside it, the last row's windows cut): every path
    gives the generic path's bits, NaN payloads and signed zeros included, the definition's values, and nothing is
    written outside the output."""
    rng = np.random.default_rng(100 * width + height)
    x = rng.standard_normal((2, 3, height, width)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    x[rng.random(x.shape) < 0.3] *= -1.0
    bits = x.view(np.uint32)
    nan = rng.random(x.shape) < 0.05
    bits[nan] = 0x7FC00000 | rng.integers(1, 1 << 22, size=int(nan.sum()), dtype=np.uint32)
    ow = width // 2
    for floor in (None, 0.0, -0.0, rng.standard_normal(3).astype(np.float32)):
        for out in ((height // 2, ow), ((height + 1) // 2, ow)):
            want = kernels.max_pool2d(x, 2, 2, 0, floor=floor, out_size=out, kernel="generic")
            got = kernels.max_pool2d(x, 2, 2, 0, floor=floor, out_size=out, kernel=path)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
            ref = _reference(x, (2, 2), (2, 2), (0, 0), (1, 1), out, floor if np.ndim(floor) else
                             None if floor is None else [floor] * 3)
            assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(got)],
                                                                                   ref[~np.isnan(ref)])
    # The prepared pool writes into an array of its own: the planes' outputs only (a store past a plane's last
    # output would change the next plane's first ones, which run as other tasks at 2 threads).
    kernels.set_num_threads(2)
    try:
        for _ in range(3):
            got = kernels.MaxPool2d(2, kernel=path)(x)
            np.testing.assert_array_equal(got.view(np.uint32),
                                          kernels.max_pool2d(x, 2, kernel="generic").view(np.uint32))
    finally:
        kernels.set_num_threads(1)
