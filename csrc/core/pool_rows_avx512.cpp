// Max pooling's rows (pool_row, pool_walk.h) for the AVX-512 path: the loops vectorized by the compiler, a 2x2
// stride-2 window inside the row (row2s2, below) and a 3x3 stride-2 window with one column of padding (ResNet stems'
// pool, row3s2) in explicit intrinsics, 16 outputs at a time, every step in registers: per kernel row two loads of 16
// columns (masked, -inf at and past the row's end, only in the steps that reach it), the rows' maximum, the even and
// odd columns by two vpermt2ps, the columns one to the left by one valignd from the odd ones of the 16 outputs
// before, two maxima and the floor. The compiler's loops took the rows' maximum into a scratch row and back, gathered
// the stride-2 taps with a pair of loads each, and ran the first output (whose left tap is padding) on scalars.
//
// pool_max(a, b) = (a > b ? a : b), or a when a is NaN and NaN can occur: vmaxps(a, b) is the first part exactly (b
// when unordered or both zero), a masked move on the unordered compare of a with itself the second.
#include <immintrin.h>

#include <limits>

#include "core/pool_walk.h"

namespace horq {
namespace {

template <bool kNoNan>
inline __m512 pool_max16(__m512 a, __m512 b) {
  const __m512 m = _mm512_max_ps(a, b);
  return kNoNan ? m : _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}

// Lane i: index 2 i (even) or 2 i + 1 (odd) of two registers' 32 floats, for vpermt2ps.
inline __m512i even_lanes() { return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
inline __m512i odd_lanes() { return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31); }

// The lanes l < n (all 16 for n >= 16, none for n <= 0).
inline __mmask16 first_lanes(long n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1u);
}

struct Avx512Ops : pool_walk::Portable {  // the other loops: the compiler's
  template <bool kNoNan>
  static void row3s2(const float* a, const float* b, const float* c, std::size_t W, std::size_t OW, bool has_floor,
                     float floor, float* out) {
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), f = _mm512_set1_ps(floor);
    const __m512i even = even_lanes(), odd = odd_lanes();
    // Columns col .. col + 15 of the rows' maximum (pool_max(pool_max(a, b), c)), -inf from column W on: masked
    // lanes are not read.
    const auto rows_max = [&](std::size_t col) {
      const __mmask16 m = first_lanes(static_cast<long>(W) - static_cast<long>(col));
      const __m512 va = _mm512_mask_loadu_ps(ninf, m, a + col), vb = _mm512_mask_loadu_ps(ninf, m, b + col);
      const __m512 vc = _mm512_mask_loadu_ps(ninf, m, c + col);
      return pool_max16<kNoNan>(pool_max16<kNoNan>(va, vb), vc);
    };
    // The same with whole vectors (no masks), while 16 outputs and their 32 columns lie inside the row.
    const auto rows_max_full = [&](std::size_t col) {
      return pool_max16<kNoNan>(pool_max16<kNoNan>(_mm512_loadu_ps(a + col), _mm512_loadu_ps(b + col)),
                                _mm512_loadu_ps(c + col));
    };
    __m512 before = ninf;  // the previous 16 outputs' right taps: lane 15 is column 2 ox - 1 (-inf: the padding)
    // 16 outputs ox + i from the rows' maximum of columns 2 ox .. 2 ox + 31 (u0, u1).
    const auto outputs = [&](__m512 u0, __m512 u1) {
      const __m512 mid = _mm512_permutex2var_ps(u0, even, u1);   // output ox + i: column 2 (ox + i)
      const __m512 right = _mm512_permutex2var_ps(u0, odd, u1);  // column 2 (ox + i) + 1
      const __m512 left = _mm512_castsi512_ps(  // column 2 (ox + i) - 1: lane 15 of before, then right's 0..14
          _mm512_alignr_epi32(_mm512_castps_si512(right), _mm512_castps_si512(before), 15));
      before = right;
      const __m512 y = pool_max16<kNoNan>(pool_max16<kNoNan>(left, mid), right);
      return has_floor ? pool_max16<kNoNan>(y, f) : y;
    };
    std::size_t ox = 0;
    for (; ox + 16 <= OW && 2 * ox + 32 <= W; ox += 16)
      _mm512_storeu_ps(out + ox, outputs(rows_max_full(2 * ox), rows_max_full(2 * ox + 16)));
    for (; ox < OW; ox += 16)
      _mm512_mask_storeu_ps(out + ox, first_lanes(static_cast<long>(OW) - static_cast<long>(ox)),
                            outputs(rows_max(2 * ox), rows_max(2 * ox + 16)));
  }

  // pool_walk.h HasRow2s2: a 2x2 stride-2 window inside the row, 16 outputs a step: per kernel row two masked loads of
  // 16 columns, the rows' maximum, its even and odd columns by two vpermt2ps, their maximum and the floor (the
  // compiler's loops had taken the rows' maximum into scratch and the taps a float at a time: a small CNN's float
  // first layer with its 2x2 pool, 1 -> 32 channels on 28x28, spent as long in the pool as in the convolution).
  template <bool kNoNan>
  static void row2s2(const float* a, const float* b, std::size_t W, std::size_t OW, bool has_floor, float floor,
                     float* out) {
    (void)W;  // 2 OW <= W: columns 0 .. 2 OW - 1 are read, no more (the masks)
    const __m512 f = _mm512_set1_ps(floor);
    const __m512i even = even_lanes(), odd = odd_lanes();
    for (std::size_t ox = 0; ox < OW; ox += 16) {
      const long cols = 2 * static_cast<long>(OW - ox);  // columns 2 ox .. 2 OW - 1 left to read
      const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
      const __m512 u0 =
          pool_max16<kNoNan>(_mm512_maskz_loadu_ps(m0, a + 2 * ox), _mm512_maskz_loadu_ps(m0, b + 2 * ox));
      const __m512 u1 =
          pool_max16<kNoNan>(_mm512_maskz_loadu_ps(m1, a + 2 * ox + 16), _mm512_maskz_loadu_ps(m1, b + 2 * ox + 16));
      __m512 y = pool_max16<kNoNan>(_mm512_permutex2var_ps(u0, even, u1), _mm512_permutex2var_ps(u0, odd, u1));
      if (has_floor) y = pool_max16<kNoNan>(y, f);
      _mm512_mask_storeu_ps(out + ox, first_lanes(static_cast<long>(OW) - static_cast<long>(ox)), y);
    }
  }
};

}  // namespace

void pool_row_avx512(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                     std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                     std::size_t in_stride, std::size_t out_stride) {
  pool_walk::row<Avx512Ops>(rows, kh, pc, floor, nfloor, no_nan, scratch, out, planes, in_stride, out_stride);
}

}  // namespace horq
