// float_conv.h's row kernel on AVX-512: 16 pixels per register, blocks of 8 channels (two weight blocks) x up to 3
// registers (24 accumulators; a 112-pixel row is blocks of 3, 2 and 2 registers). Per tap 3 pixel loads serve 24
// multiply-adds (with 4 channels x 6 registers: 6 loads, often split across cache lines, for 24); measured on
// ResNet-18's 7x7 stem 2.10 -> 1.84 ms, a 64 -> 64 3x3 at 56x56 2.54 -> 2.24 ms (benchmarks/bench_float_conv.py
// shapes, 1 thread; 12 channels x 2 registers: 1.94 and 2.11 ms).
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
  float_conv::row<Avx512, 2, 3>(p, xp, oy, y);
}

}  // namespace horq
