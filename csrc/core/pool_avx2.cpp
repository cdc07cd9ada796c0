// Max pooling's loops (pool_walk.h) for the AVX2 path (compiled with -mavx2): the rows' maximum and the three column
// taps of a stride-2 window (ResNet stems' 3x3 stride-2 pool) in explicit intrinsics, the rest vectorized by the
// compiler; with one column of padding and all three kernel rows inside the image, a whole row in registers
// (row3s2, as pool_rows_avx512.cpp on 8 lanes); 2 x 2 stride-2 windows inside the row the same way, in the row walk
// (row2s2: a small CNN's float first layer's fused pool) and for whole planes (pool2x2_plane_avx2: VGG's and
// mnist-cnn's pools, and the AVX-512 path's rows of fewer than 16 outputs).
//
// nan_max(a, b) = (a > b ? a : b), or a when a is NaN: vmaxps(a, b) is the first part exactly (b when unordered or
// both zero), and a blend on the unordered compare of a with itself the second. The three taps of 8 outputs are the
// even and odd columns of 16 consecutive inputs and the even ones of the 16 after the next two: each two loads, one
// vshufps and one vpermpd (vshufps takes the even or odd floats of each 128-bit half, vpermpd puts the halves in
// order). Against the compiler's loops (it gathered the stride-2 taps and blended NaNs a float at a time), ResNet-18's
// stem with its pool on an AMD EPYC Zen 3 (`profile_float_conv_core avx2 1.5 1`, conv included, medians of 4
// alternated runs): 3.08-3.10 -> 3.01-3.03 ms.
#include <immintrin.h>

#include <limits>

#include "core/pool_walk.h"

namespace horq {
namespace {

inline __m256 nan_max8(__m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

// pool_walk::pool_max on 8 lanes: vmaxps alone where a is never NaN.
template <bool kNoNan>
inline __m256 pool_max8(__m256 a, __m256 b) {
  return kNoNan ? _mm256_max_ps(a, b) : nan_max8(a, b);
}

// Floats 2i + o of lo, hi (16 consecutive floats) for i = 0..7 (o = 0: even, 1: odd).
template <int O>
inline __m256 deinterleave(__m256 lo, __m256 hi) {
  const __m256 t = _mm256_shuffle_ps(lo, hi, O ? 0xdd : 0x88);  // lo 2i+o | hi 2i+o, per 128-bit half
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xd8));
}

template <int O>
inline __m256 deinterleave(const float* x) {
  return deinterleave<O>(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
}

// Floats x[0..7], -inf in the lanes at and past n (n < 8; those are not read).
inline __m256 load_below(const float* x, long n) {
  const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 0 ? 0 : n)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_blendv_ps(_mm256_set1_ps(-std::numeric_limits<float>::infinity()), _mm256_maskload_ps(x, m),
                          _mm256_castsi256_ps(m));
}

// 2 x 2 stride-2 windows (pool_walk.h row_pass's and plane2x2's order of maxima): 8 outputs from r0, r1, the maxima
// of a window's two kernel rows over 16 consecutive columns (floats 0-7 and 8-15): the even and odd columns' maximum,
// then the floor.
template <bool kNoNan>
inline __m256 pairs8(__m256 r0, __m256 r1, bool has_floor, __m256 f) {
  const __m256 m = pool_max8<kNoNan>(deinterleave<0>(r0, r1), deinterleave<1>(r0, r1));
  return has_floor ? pool_max8<kNoNan>(m, f) : m;
}

// Outputs ox .. ox + 7 of a row from its kernel rows a, b (columns 2 ox .. 2 ox + 15).
template <bool kNoNan>
inline __m256 pairs_at(const float* a, const float* b, std::size_t ox, bool has_floor, __m256 f) {
  const __m256 r0 = pool_max8<kNoNan>(_mm256_loadu_ps(a + 2 * ox), _mm256_loadu_ps(b + 2 * ox));
  const __m256 r1 = pool_max8<kNoNan>(_mm256_loadu_ps(a + 2 * ox + 8), _mm256_loadu_ps(b + 2 * ox + 8));
  return pairs8<kNoNan>(r0, r1, has_floor, f);
}

// A row of OW >= 8 outputs into out: whole steps of 8, and a last one that ends at the row's end (recomputing a few
// outputs of the step before with the same operations). Reads columns below 2 OW.
template <bool kNoNan>
inline void pairs_row(const float* a, const float* b, std::size_t OW, bool has_floor, __m256 f, float* out) {
  std::size_t ox = 0;
  for (; ox + 8 <= OW; ox += 8) _mm256_storeu_ps(out + ox, pairs_at<kNoNan>(a, b, ox, has_floor, f));
  if (ox < OW) _mm256_storeu_ps(out + OW - 8, pairs_at<kNoNan>(a, b, OW - 8, has_floor, f));
}

// The OW < 8 outputs of a row in lanes 0 .. OW - 1, by masked loads of its 2 OW columns (zeros past them, in lanes
// whose outputs are not used).
template <bool kNoNan>
inline __m256 pairs_short(const float* a, const float* b, std::size_t OW, bool has_floor, __m256 f) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n = static_cast<int>(2 * OW);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
  const __m256 r0 = pool_max8<kNoNan>(_mm256_maskload_ps(a, m0), _mm256_maskload_ps(b, m0));
  const __m256 r1 = pool_max8<kNoNan>(_mm256_maskload_ps(a + 8, m1), _mm256_maskload_ps(b + 8, m1));
  return pairs8<kNoNan>(r0, r1, has_floor, f);
}

// The first n < 8 lanes of v to out (nothing past them written).
inline void store_first(float* out, __m256 v, std::size_t n) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  for (std::size_t i = 0; i < n; ++i) out[i] = lanes[i];
}

struct Avx2Ops {
  template <bool kNoNan>
  static std::size_t max_rows(const float* prev, const float* in, std::size_t n, float* r) {
    std::size_t w = 0;
    for (; w + 8 <= n; w += 8)
      _mm256_storeu_ps(r + w, pool_max8<kNoNan>(_mm256_loadu_ps(prev + w), _mm256_loadu_ps(in + w)));
    return w;
  }

  // pool_walk.h HasRow3s2: a 3x3 stride-2 row with one column of padding, 8 outputs at a time in registers (the
  // rows' maximum, its even and odd columns, the columns to the left from the odd ones rotated by one lane with the
  // last of the 8 outputs before; -inf for the padding and past the row's end).
  template <bool kNoNan>
  static void row3s2(const float* a, const float* b, const float* c, std::size_t W, std::size_t OW, bool has_floor,
                     float floor, float* out) {
    const __m256 f = _mm256_set1_ps(floor), ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    const __m256i rotate = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
    const auto rows_max = [&](std::size_t col) {  // columns col .. col + 7, -inf from column W on
      const long n = static_cast<long>(W) - static_cast<long>(col);
      if (n >= 8)
        return pool_max8<kNoNan>(pool_max8<kNoNan>(_mm256_loadu_ps(a + col), _mm256_loadu_ps(b + col)),
                                 _mm256_loadu_ps(c + col));
      return pool_max8<kNoNan>(pool_max8<kNoNan>(load_below(a + col, n), load_below(b + col, n)),
                               load_below(c + col, n));
    };
    __m256 before = ninf;  // the previous 8 outputs' right taps: lane 7 is column 2 ox - 1 (-inf: the padding)
    for (std::size_t ox = 0; ox < OW; ox += 8) {
      const __m256 u0 = rows_max(2 * ox), u1 = rows_max(2 * ox + 8);
      const __m256 mid = deinterleave<0>(u0, u1), right = deinterleave<1>(u0, u1);
      const __m256 left = _mm256_blend_ps(_mm256_permutevar8x32_ps(right, rotate),
                                          _mm256_permutevar8x32_ps(before, rotate), 0x01);
      __m256 y = pool_max8<kNoNan>(pool_max8<kNoNan>(left, mid), right);
      if (has_floor) y = pool_max8<kNoNan>(y, f);
      const std::size_t n = OW - ox;
      if (n >= 8) {
        _mm256_storeu_ps(out + ox, y);
      } else {
        alignas(32) float tail[8];
        _mm256_store_ps(tail, y);
        for (std::size_t i = 0; i < n; ++i) out[ox + i] = tail[i];
      }
      before = right;
    }
  }

  // pool_walk.h HasRow2s2: pairs_row, or pairs_short for fewer than 8 outputs.
  template <bool kNoNan>
  static void row2s2(const float* a, const float* b, std::size_t W, std::size_t OW, bool has_floor, float floor,
                     float* out) {
    (void)W;  // 2 OW <= W: every load stays inside the row
    const __m256 f = _mm256_set1_ps(floor);
    if (OW >= 8) {
      pairs_row<kNoNan>(a, b, OW, has_floor, f, out);
    } else {
      store_first(out, pairs_short<kNoNan>(a, b, OW, has_floor, f), OW);
    }
  }

  // pool_walk.h three_taps2 / two_taps2: the T = 3 or 2 taps of 8 outputs of a T-wide stride-2 window are the even
  // and odd columns of 16 consecutive inputs and, for the third, the even ones of the 16 after the next two.
  template <int T, bool kNoNan>
  static std::size_t stride2_taps(float* out, const float* r, std::size_t lo, std::size_t hi, long o,
                                  std::size_t width, bool has_floor, float floor) {
    const __m256 f = _mm256_set1_ps(floor);
    // 8 outputs read columns 2 ox + o .. 2 ox + o + 15 (T = 2) or + 17 (T = 3: the last vector's two extra floats
    // unused): all below width.
    constexpr long kReach = T == 3 ? 18 : 16;
    std::size_t ox = lo;
    for (; ox + 8 <= hi && static_cast<long>(2 * ox) + o + kReach <= static_cast<long>(width); ox += 8) {
      const float* a = r + static_cast<long>(2 * ox) + o;
      __m256 m = pool_max8<kNoNan>(deinterleave<0>(a), deinterleave<1>(a));
      if constexpr (T == 3) m = pool_max8<kNoNan>(m, deinterleave<0>(a + 2));
      if (has_floor) m = pool_max8<kNoNan>(m, f);
      _mm256_storeu_ps(out + ox, m);
    }
    return ox;
  }

  template <bool kNoNan>
  static std::size_t three_taps2(float* out, const float* r, std::size_t lo, std::size_t hi, long o, std::size_t width,
                                 bool has_floor, float floor) {
    return stride2_taps<3, kNoNan>(out, r, lo, hi, o, width, has_floor, floor);
  }

  template <bool kNoNan>
  static std::size_t two_taps2(float* out, const float* r, std::size_t lo, std::size_t hi, long o, std::size_t width,
                               bool has_floor, float floor) {
    return stride2_taps<2, kNoNan>(out, r, lo, hi, o, width, has_floor, floor);
  }
};

}  // namespace

void pool_row_avx2(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                   std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                   std::size_t in_stride, std::size_t out_stride) {
  pool_walk::row<Avx2Ops>(rows, kh, pc, floor, nfloor, no_nan, scratch, out, planes, in_stride, out_stride);
}

namespace {

// pool_walk.h plane2x2 in explicit intrinsics (the compiler's loop had gathered the stride-2 columns and blended NaNs
// a float at a time): rows of at least 8 outputs by pairs_row; rows of 4 outputs two to a register; other rows of
// fewer than 8 by pairs_short and one store of 8 lanes whose extra lanes the next rows overwrite, where those 8 lie
// inside the plane's outputs, else store_first (nothing past the plane's outputs is written).
void plane2x2(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor, float* y) {
  const __m256 f = _mm256_set1_ps(floor);
  if (OW >= 8) {
    for (std::size_t oy = 0; oy < OH; ++oy)
      pairs_row<false>(x + 2 * oy * W, x + (2 * oy + 1) * W, OW, has_floor, f, y + oy * OW);
    return;
  }
  if (OW == 4) {  // the first 8 floats of both kernel rows of two output rows
    std::size_t oy = 0;
    for (; oy + 2 <= OH; oy += 2) {
      const float* a = x + 2 * oy * W;
      const __m256 r0 = nan_max8(_mm256_loadu_ps(a), _mm256_loadu_ps(a + W));
      const __m256 r1 = nan_max8(_mm256_loadu_ps(a + 2 * W), _mm256_loadu_ps(a + 3 * W));
      _mm256_storeu_ps(y + oy * OW, pairs8<false>(r0, r1, has_floor, f));
    }
    if (oy < OH) {
      const float* a = x + 2 * oy * W;
      const __m256 r0 = nan_max8(_mm256_loadu_ps(a), _mm256_loadu_ps(a + W));
      _mm_storeu_ps(y + oy * OW, _mm256_castps256_ps128(pairs8<false>(r0, r0, has_floor, f)));
    }
    return;
  }
  for (std::size_t oy = 0; oy < OH; ++oy) {
    const __m256 v = pairs_short<false>(x + 2 * oy * W, x + (2 * oy + 1) * W, OW, has_floor, f);
    if (oy * OW + 8 <= OH * OW) {  // 8 lanes inside the plane's outputs
      _mm256_storeu_ps(y + oy * OW, v);
    } else {
      store_first(y + oy * OW, v, OW);
    }
  }
}

}  // namespace

void pool2x2_plane_avx2(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                        float* y) {
  plane2x2(x, W, OH, OW, has_floor, floor, y);
}

}  // namespace horq
