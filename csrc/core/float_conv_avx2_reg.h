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
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  // a0 b0 c0 a1 b1 c1 ... a7 b7 c7. Inside each 128-bit lane (sources' floats 4 h .. 4 h + 3), in-lane shuffles
  // give the lane's 12 outputs as three 4-float parts r0, r1, r2 (r0 = a b c a, r1 = b c a b, r2 = c a b c); the
  // lanes' parts then go to the three output vectors by two 128-bit permutes and a blend: (r0, r1) of the low lane,
  // (r2 of the low, r0 of the high), (r1, r2) of the high.
  static void store3(float* p, reg a, reg b, reg c) {
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);  // a0 b0 a1 b1 | a2 b2 a3 b3
    const __m256 c0a1 = _mm256_shuffle_ps(c, lo, _MM_SHUFFLE(2, 2, 0, 0));        // c0 c0 a1 a1
    const __m256 r0 = _mm256_shuffle_ps(lo, c0a1, _MM_SHUFFLE(2, 0, 1, 0));       // a0 b0 c0 a1
    const __m256 b1c1 = _mm256_shuffle_ps(lo, c, _MM_SHUFFLE(1, 1, 3, 3));        // b1 b1 c1 c1
    const __m256 r1 = _mm256_shuffle_ps(b1c1, hi, _MM_SHUFFLE(1, 0, 2, 0));       // b1 c1 a2 b2
    const __m256 c2a3 = _mm256_shuffle_ps(c, hi, _MM_SHUFFLE(2, 2, 2, 2));        // c2 c2 a3 a3
    const __m256 b3c3 = _mm256_shuffle_ps(hi, c, _MM_SHUFFLE(3, 3, 3, 3));        // b3 b3 c3 c3
    const __m256 r2 = _mm256_shuffle_ps(c2a3, b3c3, _MM_SHUFFLE(2, 0, 2, 0));     // c2 a3 b3 c3
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(r0, r1, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_blend_ps(r2, r0, 0xf0));
    _mm256_storeu_ps(p + 16, _mm256_permute2f128_ps(r1, r2, 0x31));
  }
};

}  // namespace
}  // namespace float_conv_avx2
}  // namespace horq
