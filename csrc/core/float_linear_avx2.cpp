// float_linear.h's kernel on AVX2 + FMA: an output's 32 partial sums in four registers of 8 (lanes 0-7, 8-15, 16-23,
// 24-31), a row's last partial block from masked loads (zeros past n); the halves folded as float_linear.h says.
#include <immintrin.h>

#include <cstdint>

#include "core/float_linear.h"

namespace horq {
namespace {

// Lanes [0, k) of a masked load: all-ones in the first k of 8 32-bit lanes.
__m256i first_lanes(std::size_t k) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), lane);
}

float fold(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 s16 = _mm256_add_ps(a0, a2), s16b = _mm256_add_ps(a1, a3);  // lane l += lane l + 16
  const __m256 s8 = _mm256_add_ps(s16, s16b);                               // l += l + 8
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));  // l += l + 4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                           // l += l + 2
  s = _mm_add_ss(s, _mm_movehdup_ps(s));                                            // l += l + 1
  return _mm_cvtss_f32(s);
}

// One output against row xr, its row read in order. Two outputs side by side (two rows read in turn, 8 chains of
// multiply-adds instead of 4) ran ResNet-18's classifier at about half the speed with its weights in memory and
// slower from L3 as well (an experiment build, not kept): the rows stream best one at a time.
float dot(const float* w, std::size_t n, const float* xr) {
  constexpr std::size_t L = kFloatDotLanes;
  const std::size_t whole = n / L * L;
  __m256 a[4];
  for (int v = 0; v < 4; ++v) a[v] = _mm256_setzero_ps();
  for (std::size_t i = 0; i < whole; i += L)
    for (int v = 0; v < 4; ++v)
      a[v] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * v), _mm256_loadu_ps(xr + i + 8 * v), a[v]);
  if (whole < n) {  // zeros past n: every lane takes one more product, as the generic kernel's
    for (std::size_t v = 0; v < 4; ++v) {
      const std::size_t at = whole + 8 * v, left = at < n ? n - at : 0, from = left ? at : 0;
      const __m256i m = first_lanes(left < 8 ? left : 8);
      a[v] = _mm256_fmadd_ps(_mm256_maskload_ps(w + from, m), _mm256_maskload_ps(xr + from, m), a[v]);
    }
  }
  return fold(a[0], a[1], a[2], a[3]);
}

}  // namespace

void float_dots_avx2(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows, std::size_t ldx,
                     float* y, std::size_t ldy) {
  for (std::size_t o = 0; o < m; ++o)
    for (std::size_t r = 0; r < rows; ++r) y[r * ldy + o] = dot(w + o * n, n, x + r * ldx);
}

void float_dots_avx512(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows,
                       std::size_t ldx, float* y, std::size_t ldy) {
  float_dots_avx2(w, m, n, x, rows, ldx, y, ldy);
}

}  // namespace horq
