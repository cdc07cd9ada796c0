// Test-only stand-in for <immintrin.h>: plain C++ versions of exactly the AVX-512 intrinsics that
// csrc/core/*_avx512.cpp use, so their logic (tiles, masks, tails, accumulation) can be checked on a CPU
// without AVX-512 (tests/kernels/test_kernels_avx512_emulated.py). It proves the arithmetic, not the
// hardware encoding; real AVX-512 runs are covered by the normal tests on machines that have it.
// Masked loads read only the lanes their mask selects, as the hardware does (fault suppression).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __m512i { std::uint64_t v[8]; };
struct __m512d { double v[8]; };
struct __m256 { float v[8]; };
using __mmask8 = unsigned char;
#define _CMP_LT_OQ 0x11

inline __m512i _mm512_setzero_si512() { return __m512i{}; }
inline __m512i _mm512_loadu_si512(const void* p) { __m512i r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline __m512i _mm512_maskz_loadu_epi64(__mmask8 k, const void* p) {
  __m512i r{};
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1) std::memcpy(&r.v[i], static_cast<const char*>(p) + 8 * i, 8);
  return r;
}
inline __m512i _mm512_xor_si512(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i]; return a; }
inline __m512i _mm512_add_epi64(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] += b.v[i]; return a; }
inline __m512i _mm512_popcnt_epi64(__m512i a) {
  for (int i = 0; i < 8; ++i) a.v[i] = static_cast<std::uint64_t>(__builtin_popcountll(a.v[i]));
  return a;
}
inline long long _mm512_reduce_add_epi64(__m512i a) {
  std::uint64_t s = 0;
  for (int i = 0; i < 8; ++i) s += a.v[i];
  return static_cast<long long>(s);
}

inline __m512d _mm512_setzero_pd() { return __m512d{}; }
inline __m512d _mm512_set1_pd(double x) { __m512d r; for (double& e : r.v) e = x; return r; }
inline __m512d _mm512_maskz_loadu_pd(__mmask8 k, const void* p) {
  __m512d r{};
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1) std::memcpy(&r.v[i], static_cast<const char*>(p) + 8 * i, 8);
  return r;
}
inline void _mm512_mask_storeu_pd(void* p, __mmask8 k, __m512d a) {
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1) std::memcpy(static_cast<char*>(p) + 8 * i, &a.v[i], 8);
}
inline __m512d _mm512_add_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] += b.v[i]; return a; }
inline __m512d _mm512_sub_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i]; return a; }
inline __m512d _mm512_abs_pd(__m512d a) { for (double& e : a.v) e = std::fabs(e); return a; }
inline __m512d _mm512_mask_add_pd(__m512d src, __mmask8 k, __m512d a, __m512d b) {
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1) src.v[i] = a.v[i] + b.v[i];
  return src;
}
inline __mmask8 _mm512_mask_cmp_pd_mask(__mmask8 k, __m512d a, __m512d b, int imm) {
  __mmask8 r = 0;
  for (int i = 0; i < 8; ++i)
    if ((k >> i & 1) && imm == _CMP_LT_OQ && a.v[i] < b.v[i]) r = static_cast<__mmask8>(r | (1u << i));
  return r;
}
inline __m256 _mm256_maskz_loadu_ps(__mmask8 k, const void* p) {
  __m256 r{};
  for (int i = 0; i < 8; ++i)
    if (k >> i & 1) std::memcpy(&r.v[i], static_cast<const char*>(p) + 4 * i, 4);
  return r;
}
inline __m512d _mm512_cvtps_pd(__m256 a) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i]; return r; }
inline double _mm512_reduce_add_pd(__m512d a) {
  return ((a.v[0] + a.v[4]) + (a.v[2] + a.v[6])) + ((a.v[1] + a.v[5]) + (a.v[3] + a.v[7]));
}
