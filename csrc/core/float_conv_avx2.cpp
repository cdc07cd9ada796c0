// float_conv.h's row kernel on AVX2 + FMA: 8 pixels per register, blocks of 4 channels x up to 3 registers
// (12 accumulators, the 3 input vectors and a broadcast weight within the 16 registers; 8 channels x 1 register
// measured slower on the ResNet-18 stem, 2.90 -> 3.56 ms).
#include <immintrin.h>

#include "core/float_conv.h"
#include "core/float_conv_winograd.h"

namespace horq {
namespace {

struct Avx2 {
  static constexpr std::size_t kLanes = 8;
  using reg = __m256;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg set1(float a) { return _mm256_set1_ps(a); }
  static reg madd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, reg r) { _mm256_storeu_ps(p, r); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  // a0 b0 c0 d0 a1 b1 c1 d1 ... a7 b7 c7 d7: a 4 x 8 transpose (pairs interleaved, then the pairs' pairs, then
  // the 128-bit halves put in order).
  static void store4(float* p, reg a, reg b, reg c, reg d) {
    const __m256 ab_lo = _mm256_unpacklo_ps(a, b), ab_hi = _mm256_unpackhi_ps(a, b);  // a0 b0 a1 b1 | a4 b4 a5 b5
    const __m256 cd_lo = _mm256_unpacklo_ps(c, d), cd_hi = _mm256_unpackhi_ps(c, d);
    const __m256 q0 = _mm256_shuffle_ps(ab_lo, cd_lo, 0x44), q1 = _mm256_shuffle_ps(ab_lo, cd_lo, 0xee);  // x0 | x4
    const __m256 q2 = _mm256_shuffle_ps(ab_hi, cd_hi, 0x44), q3 = _mm256_shuffle_ps(ab_hi, cd_hi, 0xee);  // x2 | x6
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(q0, q1, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(q2, q3, 0x20));
    _mm256_storeu_ps(p + 16, _mm256_permute2f128_ps(q0, q1, 0x31));
    _mm256_storeu_ps(p + 24, _mm256_permute2f128_ps(q2, q3, 0x31));
  }
};

}  // namespace

void float_conv_row_avx2(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y) {
  float_conv::row<Avx2, 1, 3>(p, xp, oy, y);
}

void float_conv_tiles_avx2(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                           std::size_t ch_stride) {
  winograd::tiles<Avx2, 1, 3>(p, q, ty, rows, ch_stride);
}

}  // namespace horq
