// The loops of max pooling (pool.h), compiled once per kernel path (pool_generic.cpp, pool_avx2.cpp,
// pool_avx512.cpp) so that the compiler vectorizes them at each path's width: maxima are exact, so every path gives
// the same bits.
#pragma once
#include <algorithm>
#include <cstddef>
#include <limits>

#include "core/pool_row.h"

namespace horq {
namespace pool_walk {

// numpy.maximum's rule: NaN if either is NaN, else the larger (b when they compare equal). Written as a select the
// compiler maps to maxps (a > b ? a : b; b when unordered) and a NaN blend, so the loops below vectorize without
// branches (a branch per compare of random data mispredicts half the time).
inline float nan_max(float a, float b) {
  const float m = a > b ? a : b;
  return a != a ? a : m;
}

// out[ox] = nan_max(out[ox], r[ox * stride + off]) for ox in [lo, hi); S = the stride when it is a compile-time
// constant (1 and 2: contiguous and pairwise loads the compiler vectorizes), 0 for any other.
template <std::size_t S>
inline void column_tap(float* __restrict out, const float* __restrict r, std::size_t lo, std::size_t hi, long off,
                       std::size_t stride) {
  const std::size_t s = S ? S : stride;
  const float* at = r + off;
  for (std::size_t ox = lo; ox < hi; ++ox) out[ox] = nan_max(out[ox], at[ox * s]);
}

// pool_row (pool.h): the kernel's rows inside the input maxed into scratch, then its column taps, then the floor.
inline void row(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor, float floor,
                float* scratch, float* out) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const std::size_t W = pc.width, OW = pc.out_w;
  bool any = false;
  for (std::size_t i = 0; i < kh; ++i) {
    const float* __restrict in = rows[i];
    if (!in) continue;
    float* __restrict r = scratch;
    if (!any) {
      std::copy_n(in, W, r);
      any = true;
    } else {
      for (std::size_t w = 0; w < W; ++w) r[w] = nan_max(r[w], in[w]);
    }
  }
  std::fill_n(out, OW, kNegInf);
  if (any) {
    for (std::size_t j = 0; j < pc.off.size(); ++j) {  // the input column is inside x for ox in [lo, hi)
      if (pc.sw == 2) {
        column_tap<2>(out, scratch, pc.lo[j], pc.hi[j], pc.off[j], 2);
      } else if (pc.sw == 1) {
        column_tap<1>(out, scratch, pc.lo[j], pc.hi[j], pc.off[j], 1);
      } else {
        column_tap<0>(out, scratch, pc.lo[j], pc.hi[j], pc.off[j], pc.sw);
      }
    }
  }
  if (has_floor)
    for (std::size_t ox = 0; ox < OW; ++ox) out[ox] = nan_max(out[ox], floor);
}

// pool2x2_plane (pool.h): 2 x 2 windows at stride 2, every window inside the plane, the operations of row() in its
// order (rows first, then columns, then the floor), so the same bits.
inline void plane2x2(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                     float* y) {
  for (std::size_t oy = 0; oy < OH; ++oy) {
    const float* __restrict a = x + 2 * oy * W;
    const float* __restrict b = a + W;
    float* __restrict out = y + oy * OW;
    for (std::size_t ox = 0; ox < OW; ++ox) {
      const float m = nan_max(nan_max(a[2 * ox], b[2 * ox]), nan_max(a[2 * ox + 1], b[2 * ox + 1]));
      out[ox] = has_floor ? nan_max(m, floor) : m;
    }
  }
}

}  // namespace pool_walk
}  // namespace horq
