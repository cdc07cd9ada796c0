// float_conv.h's row kernel on AVX-512: 16 pixels per register, blocks of 4 channels x up to 6 registers
// (24 accumulators; a 112-pixel row is two blocks of 4 and 3 registers).
#include <immintrin.h>

#include "core/float_conv.h"

namespace horq {
namespace {

struct Avx512 {
  static constexpr std::size_t kLanes = 16;
  using reg = __m512;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg set1(float a) { return _mm512_set1_ps(a); }
  static reg madd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, reg r) { _mm512_storeu_ps(p, r); }
};

}  // namespace

void float_conv_row_avx512(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y) {
  float_conv::row<Avx512, 6>(p, xp, oy, y);
}

}  // namespace horq
