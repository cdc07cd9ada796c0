// The AVX2 register of the float convolution's kernels (float_conv.h, float_conv_winograd.h): 8 floats per __m256,
// fused multiply-adds. float_conv_avx2.cpp runs everything on it; float_conv_avx512.cpp runs the last tiles of a
// Winograd tile row on it where they fill no more than half a zmm register.
//
// Each including file gets its own copy (an unnamed namespace): the two are compiled with different target flags,
// and one shared inline copy could carry AVX-512 encodings into the AVX2 path.
#pragma once
#include <immintrin.h>

#include <cstddef>

namespace horq {
namespace float_conv_avx2 {
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
  // a0 b0 c0 a1 b1 c1 ... a7 b7 c7: output vector k holds floats 8 k .. 8 k + 7 of the run, float f from source
  // f % 3 at lane f / 3; one lane permute of each source per output vector, then two blends.
  static void store3(float* p, reg a, reg b, reg c) {
    const __m256i i0 = _mm256_setr_epi32(0, 0, 0, 1, 1, 1, 2, 2), i1 = _mm256_setr_epi32(2, 3, 3, 3, 4, 4, 4, 5),
                  i2 = _mm256_setr_epi32(5, 5, 6, 6, 6, 7, 7, 7);
    // Source of float f = 8 k + lane: f % 3 == 0 -> a, 1 -> b, 2 -> c (blend masks: lanes from b, lanes from c).
    _mm256_storeu_ps(p, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(a, i0),
                                                        _mm256_permutevar8x32_ps(b, i0), 0x92),
                                        _mm256_permutevar8x32_ps(c, i0), 0x24));
    _mm256_storeu_ps(p + 8, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(a, i1),
                                                            _mm256_permutevar8x32_ps(b, i1), 0x24),
                                            _mm256_permutevar8x32_ps(c, i1), 0x49));
    _mm256_storeu_ps(p + 16, _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(a, i2),
                                                             _mm256_permutevar8x32_ps(b, i2), 0x49),
                                             _mm256_permutevar8x32_ps(c, i2), 0x92));
  }
};

}  // namespace
}  // namespace float_conv_avx2
}  // namespace horq
