// Max pooling for the runtime's float32 glue (src/horq/runtime/ops.py max_pool2d on the native backend): one
// pass per output row in C++ instead of numpy's one pass per tap over the whole map.
#pragma once
#include <cstddef>

#include "core/layer.h"
#include "core/pool_row.h"

namespace horq {

struct KernelTable;

// y[n, c, oy, ox] = max(floor_c, max over the taps (i, j) inside x of x[n, c, oy sh - ph + i dh, ox sw - pw + j dw])
// for x (N, C, H, W) and y (N, C, out_h, out_w) as in `g` (its kh, kw, strides, padding, dilation and output
// size; channels, batch; out_channels unused). Padding taps are skipped (never -inf); a window with no tap
// inside x gives -inf (then the floor). floor: nullptr (none), one value (nfloor = 1) or one per channel
// (nfloor = C). A NaN in a window gives NaN, as numpy.maximum does. Threaded over the (n, c) planes.
void max_pool2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* floor, std::size_t nfloor,
                float* y);

// y[p] = float(sum of the hw values of x's plane p, in double, / hw) for `planes` planes: global average pooling.
// Each plane's sum is numpy's pairwise summation (runs of 8 partial sums, halves above 128 values), so the result
// is numpy.add.reduce(..., dtype=float64)'s wherever numpy sums a plane in one pass (planes that fit its 8192-value
// buffer whole); elsewhere it differs from numpy's in rounding only. Threaded over planes.
void global_avg_pool(const float* x, std::size_t planes, std::size_t hw, float* y);

// Whether none of the n values at x is NaN or +-Inf: a runtime model's input check. The exponent bits of every value
// are tested as integers in 16 independent lanes (a loop the compiler vectorizes at the build's baseline), in blocks
// across the threads: on a 3 x 224 x 224 input just evicted by a model's call, numpy's isfinite(x).all() took ~85 us
// (it writes a mask, then reads it again), serial time before a call's first layer (docs/KERNELS.md round 24).
bool all_finite(const float* x, std::size_t n);

// The column taps of g (pool_row.h).
PoolColumns pool_columns(const ConvGeometry& g);

}  // namespace horq
