// float_conv.h's row kernel on AVX2 + FMA: 8 pixels per register, blocks of 4 channels x up to 3 registers
// (12 accumulators, the 3 input vectors and a broadcast weight within the 16 registers; 8 channels x 1 register
// measured slower on the ResNet-18 stem, 2.90 -> 3.56 ms).
#include <immintrin.h>

#include "core/float_conv.h"

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
};

}  // namespace

void float_conv_row_avx2(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y) {
  float_conv::row<Avx2, 1, 3>(p, xp, oy, y);
}

}  // namespace horq
