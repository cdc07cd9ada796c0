"""The AVX2 path's table GEMM (csrc/core/gemm_outer_avx2.cpp, namespace table): where it applies (orders 1-3,
channel-major outputs, tasks of at least 64 columns at order 1, 32 at orders 2-3) it must give the outer-product
kernel's bits, which the rest of the suite checks against the reference; `_core._set_avx2_table_gemm(False)` makes
every task take the outer kernel.

The shapes reach each part of it: blocks of 3 x 32 columns (order 1, rows up to 10 words) and of 2 x 32 (longer rows),
order 2's blocks of 32 columns x 2 planes, order 3's of 32 columns x 3 planes; superblocks of several blocks; 32-column
groups cut by the task's last column, groups that run across images (small maps, batch > 1) and across image rows; a
task's last columns that fill no block (to the outer kernel) or one at least 3/4 full (stored rows of 24-31 columns);
filter counts below and between the register blocks (3, 5); tasks of 16-63 columns of rows of 32 words or more, which
take the filters-in-lanes table kernel at orders 1-3 (64 filters a block, whole and partial, lane sets across images
and rows, the filter panels kept in a prepared layer's cache or built per task); rows of 1 word (1x1), 2, 4, 5, 9, 18,
27, 36 and 72 words (byte counts widened into 16 bits every 63 nibble positions: up to 19 times); the compact layout's
stored planes (32 channels); stride 2 and no padding; the residual and floor epilogue; 1, 2 and 3 threads, whose tasks
(gemm_split_avx2) are a share of the whole blocks each, the filters split into blocks over every column, or the
driver's own split (where it leaves a task below a block, both sides run the outer kernel)."""

import numpy as np
import pytest

from horq import _core, kernels, reference

pytestmark = pytest.mark.skipif("avx2" not in _core.available_kernels(), reason="needs the AVX2 path")

GEOMETRIES = [
    # (batch, C_in, C_out, H, W, k, stride, padding)
    (1, 64, 64, 20, 20, 3, 1, 1),  # 400 columns: blocks of 96, a last partial group
    (2, 64, 13, 9, 9, 3, 1, 1),  # 162 columns: groups across the two images
    (3, 64, 5, 7, 7, 3, 1, 1),  # 147 columns of 7-pixel rows
    (1, 128, 7, 17, 19, 3, 1, 1),  # 18-word rows: 2-group blocks
    (1, 256, 10, 12, 12, 1, 1, 0),  # 1x1, 4-word rows
    (1, 64, 3, 30, 30, 1, 1, 0),  # 1-word rows, 3 filters
    (1, 128, 11, 13, 13, 1, 1, 0),  # 2-word rows
    (1, 64, 11, 30, 30, 3, 2, 1),  # stride 2
    (2, 64, 6, 11, 10, 3, 1, 0),  # no padding
    (1, 32, 9, 16, 16, 3, 1, 1),  # compact layout: 5-word rows from stored planes
    (1, 192, 4, 10, 11, 3, 1, 1),  # three words per pixel
    (2, 64, 8, 24, 24, 3, 1, 1),  # 1152 columns: tasks of 64 or more at 2 threads too
    (1, 64, 5, 7, 9, 3, 1, 1),  # 63 columns: order 2's second block 31/32 full (stored rows of 31 columns)
    (1, 32, 4, 10, 15, 3, 1, 1),  # compact, 150 columns: order 1's 96 + a 64-column block 54/64 full
    # Threads: 3 blocks of 64 at order 1 (filters split at 2 threads, a block each at 3), 6 of 32 at order 2
    (1, 256, 37, 14, 14, 3, 1, 1),
    (1, 64, 40, 28, 28, 3, 1, 1),  # 8 blocks of 96 + 16 columns: 4 a task at 2 threads, the driver's split at 3
    (1, 128, 50, 17, 19, 3, 1, 1),  # 5 blocks of 64: filters split at 2 and 3 threads
    (1, 64, 7, 16, 8, 3, 1, 1),  # 128 columns: two blocks of 64 rather than 96 + 32 on the outer kernel
    (1, 64, 9, 32, 32, 3, 1, 1),  # 1024 columns: at 2 threads two tasks of 512 (4 blocks of 96 + 2 of 64)
]
# 16-63 columns of rows of 32 words or more: filters in the lanes (blocks of 64 filters x a lane set of 4 columns)
FILTER_LANE_GEOMETRIES = [
    (1, 512, 3, 7, 7, 3, 1, 1),  # 72-word rows, 49 columns, 3 filters
    (1, 512, 64, 7, 7, 3, 1, 1),  # 49 columns: 12 whole lane sets and one of 1
    (1, 512, 70, 4, 4, 3, 1, 1),  # 16 columns, a second filter block of 6
    (2, 256, 40, 5, 5, 3, 1, 1),  # 50 columns across two images: a lane set split between them
    (1, 256, 33, 9, 7, 3, 2, 1),  # stride 2: 5 x 4 columns; 33 filters, a second vector of one
    (4, 256, 8, 2, 2, 3, 1, 1),  # 16 columns, an image of 4 per lane set
    (1, 256, 100, 14, 14, 3, 2, 1),  # 49 columns, 100 filters: at 2 threads tasks of 50 (not on a block's start)
    (1, 32, 24, 6, 6, 9, 1, 4),  # 9x9 over 32 channels, 41-word rows
    # 36-word rows, 144 columns: at order 1 two 2-group blocks at the panel limit, then the last 16 in the lanes
    (1, 256, 4, 12, 12, 3, 1, 1),
]
GEOMETRIES += FILTER_LANE_GEOMETRIES


def _layers(pw, order, s, p, floor):
    """The plain layer and one with a floor and a ceiling (floor + 1)."""
    return (kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, kernel="avx2"),
            kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, out_floor=floor, out_ceiling=floor + 1.0,
                                kernel="avx2"))


@pytest.fixture
def outer_kernel():
    """Run the block with the table kernel off; it is back on afterwards whatever happens."""

    class Switch:
        def __enter__(self):
            _core._set_avx2_table_gemm(False)

        def __exit__(self, *exc):
            _core._set_avx2_table_gemm(True)

    yield Switch()
    _core._set_avx2_table_gemm(True)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_table_kernel_gives_the_outer_kernels_bits(geom, order, threads, outer_kernel):
    b, c, co, h, w, k, s, p = geom
    rng = np.random.default_rng(sum(geom) + 7 * order)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    x[0, :, 0, :3] = 0.0  # zeros: sign +1, |x| = 0
    wt = rng.standard_normal((co, c, k, k)).astype(np.float32)
    pw = kernels.pack_weights(wt)
    floor = rng.standard_normal(co).astype(np.float32)
    floor[::2] = 0.0
    kernels.set_num_threads(threads)
    plain, floored = _layers(pw, order, s, p, floor)
    y = plain(x)
    r = rng.standard_normal(y.shape).astype(np.float32)
    got = (y, floored(x, r), plain(x, r))
    with outer_kernel:
        plain, floored = _layers(pw, order, s, p, floor)
        want = (plain(x), floored(x, r), plain(x, r))
    for g, wnt in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.view(np.uint32), wnt.view(np.uint32))
    ref = reference.horq_conv2d(x, wt, order=order, stride=s, padding=p)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


def test_switch_reports_its_state(outer_kernel):
    assert _core._avx2_table_gemm()
    with outer_kernel:
        assert not _core._avx2_table_gemm()
    assert _core._avx2_table_gemm()


@pytest.mark.parametrize("c, size", [(64, 20), (256, 7)], ids=["columns-in-lanes", "filters-in-lanes"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_negative_zero_add_keeps_its_zeros(order, c, size, outer_kernel):
    """Filters whose add (scale * bias + shift) is -0.0, over windows of zeros (beta = 0, so beta * (n - 2 pc) is
    -0.0 where n - 2 pc < 0): the table kernel then starts each sum from 0.0 as the outer kernel does, and the
    outputs' zeros keep their signs (a sum started from the first product would give -0.0 * coef + -0.0 = -0.0
    there)."""
    rng = np.random.default_rng(order)
    co = 6
    x = rng.standard_normal((1, c, size, size)).astype(np.float32)
    x[:, :, 2:6, :] = 0.0  # rows of zero pixels: whole 3x3 windows of them
    pw = kernels.pack_weights(rng.standard_normal((co, c, 3, 3)).astype(np.float32))
    neg = np.full(co, -0.0, np.float32)
    neg[::2] = rng.standard_normal(3).astype(np.float32)  # some filters' add -0.0, the others' not
    layer = kernels.Conv2dLayer(pw, order=order, padding=1, bias=neg, shift=neg, kernel="avx2")
    got = layer(x)
    with outer_kernel:
        want = kernels.Conv2dLayer(pw, order=order, padding=1, bias=neg, shift=neg, kernel="avx2")(x)
    assert (want[0, 1::2] == 0).any()  # zero outputs of the -0.0 filters: +0.0 (+0.0 * coef + -0.0)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("geom", FILTER_LANE_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_filter_panels_kept_by_a_layer_give_the_same_bits(geom, order, threads):
    """A prepared layer keeps the filter-lane kernel's filter panels after its first call; the unprepared core call
    (no cache) builds them per task. Both, and every later call of the layer, give the same bits."""
    b, c, co, h, w, k, s, p = geom
    rng = np.random.default_rng(sum(geom) + order)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, c, k, k)).astype(np.float32)
    pw = kernels.pack_weights(wt)
    kernels.set_num_threads(threads)
    layer = kernels.Conv2dLayer(pw, order=order, stride=s, padding=p, kernel="avx2")
    coef = pw.alpha.astype(np.float64)
    uncached = _core.conv2d(x, pw.conv_bits(), coef, np.zeros(co), k, k, (s, s), (p, p), (1, 1), order, "avx2")
    first = layer(x)
    x2 = rng.standard_normal(x.shape).astype(np.float32)
    second = layer(x2)
    np.testing.assert_array_equal(first.view(np.uint32), uncached.view(np.uint32))
    want2 = _core.conv2d(x2, pw.conv_bits(), coef, np.zeros(co), k, k, (s, s), (p, p), (1, 1), order, "avx2")
    np.testing.assert_array_equal(second.view(np.uint32), want2.view(np.uint32))
    ref = reference.horq_conv2d(x2, wt, order=order, stride=s, padding=p)
    np.testing.assert_allclose(second, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
