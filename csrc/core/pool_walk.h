// The loops of max pooling (pool.h), compiled once per kernel path (pool_generic.cpp, pool_avx2.cpp,
// pool_avx512.cpp) so that the compiler vectorizes them at each path's width: maxima are exact, so every path gives
// the same bits.
#pragma once
#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "core/pool_row.h"

namespace horq {
namespace pool_walk {

// Each including file's own copy (core/isa_local.h).
namespace {

// numpy.maximum's rule: NaN if either is NaN, else the larger (b when they compare equal). Written as a select the
// compiler maps to maxps (a > b ? a : b; b when unordered) and a NaN blend, so the loops below vectorize without
// branches (a branch per compare of random data mispredicts half the time).
inline float nan_max(float a, float b) {
  const float m = a > b ? a : b;
  return a != a ? a : m;
}

// nan_max where the caller knows that no value it pools is NaN (kNoNan: a > b ? a : b, one maxps, the same value
// whenever a is not NaN), else nan_max.
template <bool kNoNan>
inline float pool_max(float a, float b) {
  return kNoNan ? (a > b ? a : b) : nan_max(a, b);
}

// out[ox] = pool_max(out[ox], r[ox * stride + off]) for ox in [lo, hi); S = the stride when it is a compile-time
// constant (1 and 2: contiguous and pairwise loads the compiler vectorizes), 0 for any other.
template <std::size_t S, bool kNoNan>
inline void column_tap(float* __restrict out, const float* __restrict r, std::size_t lo, std::size_t hi, long off,
                       std::size_t stride) {
  const std::size_t s = S ? S : stride;
  const float* at = r + off;
  for (std::size_t ox = lo; ox < hi; ++ox) out[ox] = pool_max<kNoNan>(out[ox], at[ox * s]);
}

// The three taps of a 3-wide window at stride S (offsets o, o + d, o + 2d) and the floor for ox in [lo, hi), in the
// order of the general loop below (-inf, then each tap, then the floor; nan_max(-inf, v) is v bit for bit, NaN and
// -0.0 included), one pass over the outputs instead of one per tap.
template <std::size_t S, bool kNoNan>
inline void three_taps(float* __restrict out, const float* __restrict r, std::size_t lo, std::size_t hi, long o, long d,
                       bool has_floor, float floor) {
  const float* a = r + o;
  const float* b = a + d;
  const float* c = b + d;
  for (std::size_t ox = lo; ox < hi; ++ox) {
    const float m = pool_max<kNoNan>(pool_max<kNoNan>(a[ox * S], b[ox * S]), c[ox * S]);
    out[ox] = has_floor ? pool_max<kNoNan>(m, floor) : m;
  }
}

// The two taps of a 2-wide window at stride S (offsets o, o + d) and the floor for ox in [lo, hi), in the general
// loop's order as three_taps: pool_max(tap_o, tap_o+d), then the floor (2 x 2 pools, as in a small CNN's stem).
template <std::size_t S, bool kNoNan>
inline void two_taps(float* __restrict out, const float* __restrict r, std::size_t lo, std::size_t hi, long o, long d,
                     bool has_floor, float floor) {
  const float* a = r + o;
  const float* b = a + d;
  for (std::size_t ox = lo; ox < hi; ++ox) {
    const float m = pool_max<kNoNan>(a[ox * S], b[ox * S]);
    out[ox] = has_floor ? pool_max<kNoNan>(m, floor) : m;
  }
}

// A path's explicit loops for the hot steps of row_pass() below, each doing a prefix of its range and returning
// where it stopped (row_pass() finishes the rest with the loops above): Portable does none (the compiler vectorizes
// the loops above); pool_avx2.cpp's does most of both. Every one computes pool_max in the same operand order, so
// the same bits.
//   max_rows<kNoNan>(prev, in, n, r)    r[w] = pool_max<kNoNan>(prev[w], in[w]) for w in [0, k), returns k <= n
//   three_taps2<kNoNan>(out, r, lo, hi, o, width, has_floor, floor)   three_taps<2, kNoNan> with d = 1 for ox in
//                               [lo, k), reading no input column at or past `width`, returns k in [lo, hi]
//   two_taps2<kNoNan>(out, r, lo, hi, o, width, has_floor, floor)     two_taps<2, kNoNan> with d = 1, the same way
struct Portable {
  template <bool kNoNan>
  static std::size_t max_rows(const float*, const float*, std::size_t, float*) { return 0; }
  template <bool kNoNan>
  static std::size_t three_taps2(float*, const float*, std::size_t lo, std::size_t, long, std::size_t, bool, float) {
    return lo;
  }
  template <bool kNoNan>
  static std::size_t two_taps2(float*, const float*, std::size_t lo, std::size_t, long, std::size_t, bool, float) {
    return lo;
  }
};

// Whether a path's Ops has row3s2<kNoNan>(a, b, c, W, OW, has_floor, floor, out): a whole output row of a 3x3
// stride-2 window with one column of padding each side (column taps at -1, 0, +1: ResNet stems' pool) from its three
// kernel rows a, b, c (W floats each), every operation of row_pass() below in its order, so the same bits: per column
// the rows' maximum pool_max(pool_max(a, b), c); per output pool_max(pool_max(t_-1, t_0), t_+1), a tap outside the row
// read as -inf (pool_max(-inf, v) and pool_max(v, -inf) are v, as skipping the tap leaves it), then the floor.
template <class Ops, class = void>
struct HasRow3s2 : std::false_type {};
template <class Ops>
struct HasRow3s2<Ops, std::void_t<decltype(&Ops::template row3s2<true>)>> : std::true_type {};

// Whether a path's Ops has row2s2<kNoNan>(a, b, W, OW, has_floor, floor, out): a whole output row of a 2x2 stride-2
// window without padding, every window inside the row (2 OW <= W), from its two kernel rows a, b, in row_pass()'s
// order below: the rows' maximum pool_max(a, b) per column, per output pool_max(t_0, t_1), then the floor.
template <class Ops, class = void>
struct HasRow2s2 : std::false_type {};
template <class Ops>
struct HasRow2s2<Ops, std::void_t<decltype(&Ops::template row2s2<true>)>> : std::true_type {};

// The column geometry's part that is the same for every row: where all taps of a 2- or 3-wide window apply.
struct Taps {
  std::size_t lo = 0, hi = 0;  // the outputs every tap reaches (three_taps, two_taps), when one applies; else none
  explicit Taps(const PoolColumns& pc) {
    if (pc.off.size() == 3 && (pc.sw == 1 || pc.sw == 2) && pc.off[1] - pc.off[0] == pc.off[2] - pc.off[1]) {
      lo = std::max({pc.lo[0], pc.lo[1], pc.lo[2]});
      hi = std::max(lo, std::min({pc.hi[0], pc.hi[1], pc.hi[2]}));
    } else if (pc.off.size() == 2 && (pc.sw == 1 || pc.sw == 2)) {
      lo = std::max(pc.lo[0], pc.lo[1]);
      hi = std::max(lo, std::min(pc.hi[0], pc.hi[1]));
    }
  }
};

// One output row of pool_row (pool.h) in one plane, whose kernel rows are rows[i] + at: the kernel's rows inside the
// input maxed together (into scratch; a lone row is read in place), then its column taps, then the floor. Windows of
// three columns at stride 1 or 2 (ResNet stems' 3x3 stride-2 pools) take every column all three taps reach in one pass
// (three_taps), the rest tap by tap. kNoNan: the caller knows that no input value is NaN (every maximum then has a
// non-NaN first operand: pool_max's plain compare).
template <class Ops, bool kNoNan>
inline void row_pass(const float* const* rows, std::size_t at, std::size_t kh, const PoolColumns& pc, const Taps& tp,
                     bool has_floor, float floor, float* scratch, float* out) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const std::size_t W = pc.width, OW = pc.out_w;
  const float* src = nullptr;  // the rows' maximum
  const bool three = kh == 3 && rows[0] && rows[1] && rows[2];
  if constexpr (HasRow3s2<Ops>::value) {
    if (three && pc.sw == 2 && pc.off.size() == 3 && pc.off[0] == -1 && pc.off[1] == 0 && pc.off[2] == 1) {
      Ops::template row3s2<kNoNan>(rows[0] + at, rows[1] + at, rows[2] + at, W, OW, has_floor, floor, out);
      return;
    }
  }
  if constexpr (HasRow2s2<Ops>::value) {
    if (kh == 2 && rows[0] && rows[1] && pc.sw == 2 && pc.off.size() == 2 && pc.off[0] == 0 && pc.off[1] == 1 &&
        2 * OW <= W) {
      Ops::template row2s2<kNoNan>(rows[0] + at, rows[1] + at, W, OW, has_floor, floor, out);
      return;
    }
  }
  if (three) {
    // Three rows in one pass (the two passes' maxima in their order: the same bits), reading each row once and
    // writing scratch once instead of twice.
    const float* __restrict a = rows[0] + at;
    const float* __restrict b = rows[1] + at;
    const float* __restrict c = rows[2] + at;
    float* __restrict r = scratch;
    for (std::size_t w = 0; w < W; ++w) r[w] = pool_max<kNoNan>(pool_max<kNoNan>(a[w], b[w]), c[w]);
    src = scratch;
  }
  for (std::size_t i = 0; i < kh && !three; ++i) {
    if (!rows[i]) continue;
    const float* __restrict in = rows[i] + at;
    if (!src) {
      src = in;
    } else {
      float* __restrict r = scratch;
      const float* __restrict prev = src;
      for (std::size_t w = Ops::template max_rows<kNoNan>(prev, in, W, r); w < W; ++w)
        r[w] = pool_max<kNoNan>(prev[w], in[w]);
      src = scratch;
    }
  }
  if (!src) {
    for (std::size_t ox = 0; ox < OW; ++ox) out[ox] = has_floor ? nan_max(kNegInf, floor) : kNegInf;
    return;
  }
  const std::size_t lo = tp.lo, hi = tp.hi;
  // The other outputs tap by tap: -inf, each tap whose column lies inside the row, then the floor.
  const auto general = [&](std::size_t a, std::size_t b) {
    if (a >= b) return;
    std::fill(out + a, out + b, kNegInf);
    for (std::size_t j = 0; j < pc.off.size(); ++j) {  // the input column is inside x for ox in [lo[j], hi[j])
      const std::size_t l = std::max(a, pc.lo[j]), h = std::min(b, pc.hi[j]);  // empty when l >= h
      if (pc.sw == 2) {
        column_tap<2, kNoNan>(out, src, l, h, pc.off[j], 2);
      } else if (pc.sw == 1) {
        column_tap<1, kNoNan>(out, src, l, h, pc.off[j], 1);
      } else {
        column_tap<0, kNoNan>(out, src, l, h, pc.off[j], pc.sw);
      }
    }
    if (has_floor)
      for (std::size_t ox = a; ox < b; ++ox) out[ox] = pool_max<kNoNan>(out[ox], floor);
  };
  if (lo < hi) {
    const long d = pc.off[1] - pc.off[0];
    if (pc.off.size() == 2 && pc.sw == 2) {
      const std::size_t done =
          d == 1 ? Ops::template two_taps2<kNoNan>(out, src, lo, hi, pc.off[0], W, has_floor, floor) : lo;
      two_taps<2, kNoNan>(out, src, done, hi, pc.off[0], d, has_floor, floor);
    } else if (pc.off.size() == 2) {
      two_taps<1, kNoNan>(out, src, lo, hi, pc.off[0], d, has_floor, floor);
    } else if (pc.sw == 2) {
      const std::size_t done =
          d == 1 ? Ops::template three_taps2<kNoNan>(out, src, lo, hi, pc.off[0], W, has_floor, floor) : lo;
      three_taps<2, kNoNan>(out, src, done, hi, pc.off[0], d, has_floor, floor);
    } else {
      three_taps<1, kNoNan>(out, src, lo, hi, pc.off[0], d, has_floor, floor);
    }
    general(0, lo);
    general(hi, OW);
  } else {
    general(0, OW);
  }
}

// pool_row (pool_row_fn) on a path's Ops: row_pass with kNoNan = no_nan, plane by plane.
template <class Ops, bool kNoNan>
inline void planes_pass(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                        std::size_t nfloor, float* scratch, float* out, std::size_t planes, std::size_t in_stride,
                        std::size_t out_stride) {
  const Taps tp(pc);
  for (std::size_t p = 0; p < planes; ++p) {
    row_pass<Ops, kNoNan>(rows, p * in_stride, kh, pc, tp, floor != nullptr, floor ? floor[nfloor == 1 ? 0 : p] : 0.0f,
                          scratch, out + p * out_stride);
  }
}

template <class Ops = Portable>
inline void row(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor, std::size_t nfloor,
                bool no_nan, float* scratch, float* out, std::size_t planes, std::size_t in_stride,
                std::size_t out_stride) {
  if (no_nan) {
    planes_pass<Ops, true>(rows, kh, pc, floor, nfloor, scratch, out, planes, in_stride, out_stride);
  } else {
    planes_pass<Ops, false>(rows, kh, pc, floor, nfloor, scratch, out, planes, in_stride, out_stride);
  }
}

// pool2x2_plane (pool.h): 2 x 2 windows at stride 2, every window inside the plane, the operations of row_pass() in its
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

}  // namespace
}  // namespace pool_walk
}  // namespace horq
