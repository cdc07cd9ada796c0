// Test-only stand-in for <immintrin.h>: plain C++ versions of exactly the AVX-512 intrinsics that
// csrc/core/*_avx512.cpp use, so their logic (tiles, masks, tails, accumulation, epilogues) can be checked
// on a CPU without AVX-512 (tests/kernels/test_kernels_avx512_emulated.py). It proves the arithmetic, not
// the hardware encoding; the same harness is also built against the real header where the CPU has AVX-512,
// which checks this file against the hardware.
//
// Lane semantics follow Intel's intrinsics guide:
//   * masked loads read only the lanes their mask selects (fault suppression); zero-masking (maskz_) zeroes
//     the others, merge-masking (mask_) keeps the `src` lanes;
//   * masked stores write only the selected lanes and never touch the others;
//   * aligned stores (store_si512, _mm256_store_ps) fault on a misaligned address, here std::abort;
//   * compares take every _CMP_ predicate with its ordered/unordered NaN rule (the quiet/signalling
//     variants only differ in raising an exception, which is not modelled);
//   * conversions round to nearest even (the default MXCSR), float -> double is exact;
//   * abs clears the sign bit (a bitwise AND, so NaN payloads are kept);
//   * the compiler must not contract the separate mul and add intrinsics into FMAs (the test builds with
//     -ffp-contract=off), since the hardware executes them as separately rounded instructions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifndef _MM_SHUFFLE
#define _MM_SHUFFLE(z, y, x, w) (((z) << 6) | ((y) << 4) | ((x) << 2) | (w))
#endif

struct __m512i { std::uint64_t v[8]; };
struct __m512d { double v[8]; };
struct __m512 { float v[16]; };
struct __m256 { float v[8]; };
struct __m256i { std::uint32_t v[8]; };
using __mmask8 = unsigned char;
using __mmask16 = unsigned short;
using __mmask32 = unsigned int;
using __mmask64 = unsigned long long;

// Compare predicates (imm8 of vcmpps/vcmppd).
#define _CMP_EQ_OQ 0x00
#define _CMP_LT_OS 0x01
#define _CMP_LE_OS 0x02
#define _CMP_UNORD_Q 0x03
#define _CMP_NEQ_UQ 0x04
#define _CMP_NLT_US 0x05
#define _CMP_NLE_US 0x06
#define _CMP_ORD_Q 0x07
#define _CMP_EQ_UQ 0x08
#define _CMP_NGE_US 0x09
#define _CMP_NGT_US 0x0a
#define _CMP_FALSE_OQ 0x0b
#define _CMP_NEQ_OQ 0x0c
#define _CMP_GE_OS 0x0d
#define _CMP_GT_OS 0x0e
#define _CMP_TRUE_UQ 0x0f
#define _CMP_EQ_OS 0x10
#define _CMP_LT_OQ 0x11
#define _CMP_LE_OQ 0x12
#define _CMP_UNORD_S 0x13
#define _CMP_NEQ_US 0x14
#define _CMP_NLT_UQ 0x15
#define _CMP_NLE_UQ 0x16
#define _CMP_ORD_S 0x17
#define _CMP_EQ_US 0x18
#define _CMP_NGE_UQ 0x19
#define _CMP_NGT_UQ 0x1a
#define _CMP_FALSE_OS 0x1b
#define _CMP_NEQ_OS 0x1c
#define _CMP_GE_OQ 0x1d
#define _CMP_GT_OQ 0x1e
#define _CMP_TRUE_US 0x1f

namespace avx512_emulation {

// One lane of a vcmpps/vcmppd: bits 0..3 of imm choose the relation, bit 4 only the signalling behaviour.
template <class T>
inline bool cmp_lane(T a, T b, int imm) {
  const bool un = std::isnan(a) || std::isnan(b);
  switch (imm & 0xf) {
    case 0x0: return !un && a == b;   // EQ_O
    case 0x1: return !un && a < b;    // LT_O
    case 0x2: return !un && a <= b;   // LE_O
    case 0x3: return un;              // UNORD
    case 0x4: return un || a != b;    // NEQ_U
    case 0x5: return un || !(a < b);  // NLT_U
    case 0x6: return un || !(a <= b); // NLE_U
    case 0x7: return !un;             // ORD
    case 0x8: return un || a == b;    // EQ_U
    case 0x9: return un || a < b;     // NGE_U
    case 0xa: return un || a <= b;    // NGT_U
    case 0xb: return false;           // FALSE
    case 0xc: return !un && a != b;   // NEQ_O
    case 0xd: return !un && a >= b;   // GE_O
    case 0xe: return !un && a > b;    // GT_O
    default: return true;             // TRUE
  }
}

inline bool bit(unsigned k, int i) { return (k >> i & 1u) != 0; }

inline std::uint32_t get32(const __m512i& a, int i) {
  std::uint32_t r;
  std::memcpy(&r, reinterpret_cast<const unsigned char*>(a.v) + 4 * i, 4);
  return r;
}
inline void set32(__m512i& a, int i, std::uint32_t x) {
  std::memcpy(reinterpret_cast<unsigned char*>(a.v) + 4 * i, &x, 4);
}

// Masked element moves between memory and a lane array: only selected lanes are touched.
template <class T>
inline void masked_load(T* dst, unsigned k, int lanes, const void* p) {
  for (int i = 0; i < lanes; ++i)
    if (bit(k, i)) std::memcpy(&dst[i], static_cast<const unsigned char*>(p) + sizeof(T) * i, sizeof(T));
}
template <class T>
inline void masked_store(void* p, unsigned k, int lanes, const T* src) {
  for (int i = 0; i < lanes; ++i)
    if (bit(k, i)) std::memcpy(static_cast<unsigned char*>(p) + sizeof(T) * i, &src[i], sizeof(T));
}
// Per 128-bit lane of 64-bit elements: lo takes element 0 of a and of b, hi element 1 (the epi64 and pd unpacks).
template <class V>
inline V unpack_lo64(V a, const V& b) {
  for (int l = 0; l < 4; ++l) a.v[2 * l + 1] = b.v[2 * l];
  return a;
}
template <class V>
inline V unpack_hi64(V a, const V& b) {
  for (int l = 0; l < 4; ++l) a.v[2 * l] = a.v[2 * l + 1], a.v[2 * l + 1] = b.v[2 * l + 1];
  return a;
}
inline std::uint64_t popcount64(std::uint64_t e) {
#if defined(__GNUC__)
  return static_cast<std::uint64_t>(__builtin_popcountll(e));
#else
  std::uint64_t c = 0;
  for (std::uint64_t x = e; x; x &= x - 1) ++c;
  return c;
#endif
}
inline void check_aligned(const void* p, std::uintptr_t align) {
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) std::abort();  // #GP on the hardware
}

}  // namespace avx512_emulation

// ---- 512-bit integer ----
inline __m512i _mm512_setzero_si512() { return __m512i{}; }
inline __m512i _mm512_set1_epi64(long long x) {
  __m512i r;
  for (auto& e : r.v) e = static_cast<std::uint64_t>(x);
  return r;
}
inline __m512i _mm512_set1_epi32(int x) {
  __m512i r;
  for (int i = 0; i < 16; ++i) avx512_emulation::set32(r, i, static_cast<std::uint32_t>(x));
  return r;
}
inline __m512i _mm512_set1_epi16(short x) {
  __m512i r;
  for (int i = 0; i < 32; ++i) std::memcpy(reinterpret_cast<unsigned char*>(r.v) + 2 * i, &x, 2);
  return r;
}
// VPTESTMW: bit i set where word i of a AND word i of b is nonzero.
inline __mmask32 _mm512_test_epi16_mask(__m512i a, __m512i b) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) {
    std::uint16_t x, y;
    std::memcpy(&x, reinterpret_cast<const unsigned char*>(a.v) + 2 * i, 2);
    std::memcpy(&y, reinterpret_cast<const unsigned char*>(b.v) + 2 * i, 2);
    if ((x & y) != 0) r |= 1u << i;
  }
  return r;
}
inline __m512i _mm512_loadu_si512(const void* p) { __m512i r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline void _mm512_store_si512(void* p, __m512i a) {
  avx512_emulation::check_aligned(p, 64);
  std::memcpy(p, a.v, sizeof a.v);
}
inline __m512i _mm512_maskz_loadu_epi64(__mmask8 k, const void* p) {
  __m512i r{};
  avx512_emulation::masked_load(r.v, k, 8, p);
  return r;
}
inline __m512i _mm512_xor_si512(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i]; return a; }
inline __m512i _mm512_and_si512(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] &= b.v[i]; return a; }
// Shifts of each 64-bit lane; a count above 63 gives 0.
inline __m512i _mm512_srli_epi64(__m512i a, unsigned n) {
  for (auto& e : a.v) e = n > 63 ? 0 : e >> n;
  return a;
}
inline __m512i _mm512_slli_epi64(__m512i a, unsigned n) {
  for (auto& e : a.v) e = n > 63 ? 0 : e << n;
  return a;
}
inline __m512i _mm512_mask_blend_epi64(__mmask8 k, __m512i a, __m512i b) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i)) a.v[i] = b.v[i];
  return a;
}
// 128-bit lanes (two words): lanes 0-1 from a, 2-3 from b, each chosen by two bits of imm.
inline __m512i _mm512_shuffle_i64x2(__m512i a, __m512i b, int imm) {
  __m512i r;
  for (int l = 0; l < 4; ++l) std::memcpy(r.v + 2 * l, (l < 2 ? a : b).v + 2 * (imm >> (2 * l) & 3), 16);
  return r;
}
// ---- 256-bit integer as four 64-bit words (AVX512VL forms; __m256i holds them as eight 32-bit lanes) ----
namespace avx512_emulation {
inline void get64x4(const __m256i& a, std::uint64_t (&w)[4]) { std::memcpy(w, a.v, sizeof w); }
inline __m256i make64x4(const std::uint64_t (&w)[4]) {
  __m256i r;
  std::memcpy(r.v, w, sizeof w);
  return r;
}
}  // namespace avx512_emulation
inline __m256i _mm256_maskz_loadu_epi64(__mmask8 k, const void* p) {
  std::uint64_t w[4] = {};
  avx512_emulation::masked_load(w, k, 4, p);
  return avx512_emulation::make64x4(w);
}
inline __m256i _mm256_xor_si256(__m256i a, __m256i b) {
  for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i];
  return a;
}
inline __m256i _mm256_popcnt_epi64(__m256i a) {
  std::uint64_t w[4];
  avx512_emulation::get64x4(a, w);
  for (auto& e : w) e = avx512_emulation::popcount64(e);
  return avx512_emulation::make64x4(w);
}
// The four words in the low lanes, zero above.
inline __m512i _mm512_zextsi256_si512(__m256i a) {
  __m512i r{};
  std::memcpy(r.v, a.v, sizeof a.v);
  return r;
}

// Per 128-bit lane: its low (unpacklo) or high (unpackhi) word of a, then of b.
inline __m512i _mm512_unpacklo_epi64(__m512i a, __m512i b) { return avx512_emulation::unpack_lo64(a, b); }
inline __m512i _mm512_unpackhi_epi64(__m512i a, __m512i b) { return avx512_emulation::unpack_hi64(a, b); }
// Inside each 256-bit half: word i takes word (imm >> 2i) & 3 of the same half.
inline __m512i _mm512_permutex_epi64(__m512i a, int imm) {
  __m512i r;
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) r.v[4 * h + i] = a.v[4 * h + (imm >> (2 * i) & 3)];
  return r;
}
inline __m512i _mm512_mask_or_epi64(__m512i src, __mmask8 k, __m512i a, __m512i b) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i)) src.v[i] = a.v[i] | b.v[i];
  return src;
}
inline __m512i _mm512_add_epi64(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] += b.v[i]; return a; }
inline __m512i _mm512_sub_epi64(__m512i a, __m512i b) { for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i]; return a; }
inline __m512i _mm512_popcnt_epi64(__m512i a) {
  for (auto& e : a.v) e = avx512_emulation::popcount64(e);
  return a;
}
inline long long _mm512_reduce_add_epi64(__m512i a) {
  std::uint64_t s = 0;
  for (std::uint64_t e : a.v) s += e;
  return static_cast<long long>(s);
}
inline __mmask16 _mm512_mask_cmpeq_epi32_mask(__mmask16 k, __m512i a, __m512i b) {
  unsigned r = 0;
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i) && avx512_emulation::get32(a, i) == avx512_emulation::get32(b, i)) r |= 1u << i;
  return static_cast<__mmask16>(r);
}
inline __m512i _mm512_castps_si512(__m512 a) { __m512i r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
inline __m512d _mm512_cvtepi64_pd(__m512i a) {
  __m512d r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<double>(static_cast<std::int64_t>(a.v[i]));
  return r;
}
// VCVTQQ2PS: one rounding (to nearest even) from the integer, as the C++ conversion
inline __m256 _mm512_cvtepi64_ps(__m512i a) {
  __m256 r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<float>(static_cast<std::int64_t>(a.v[i]));
  return r;
}

inline __m512i _mm512_load_si512(const void* p) {
  avx512_emulation::check_aligned(p, 64);
  __m512i r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void _mm512_storeu_si512(void* p, __m512i a) { std::memcpy(p, a.v, sizeof a.v); }
inline void _mm512_mask_storeu_epi64(void* p, __mmask8 k, __m512i a) { avx512_emulation::masked_store(p, k, 8, a.v); }
// Gathers: lane i reads base + scale * index_i only where mask bit i is set, else keeps src's lane.
inline __m512i _mm512_mask_i64gather_epi64(__m512i src, __mmask8 k, __m512i idx, const void* base, int scale) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i))
      std::memcpy(&src.v[i], static_cast<const unsigned char*>(base) +
                  static_cast<std::int64_t>(idx.v[i]) * scale, 8);
  return src;
}

// ---- 512-bit float (16 lanes) ----
inline __m512 _mm512_setzero_ps() { return __m512{}; }
inline __m512 _mm512_load_ps(const void* p) {
  avx512_emulation::check_aligned(p, 64);
  __m512 r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void _mm512_store_ps(void* p, __m512 a) {
  avx512_emulation::check_aligned(p, 64);
  std::memcpy(p, a.v, sizeof a.v);
}
inline void _mm512_mask_storeu_ps(void* p, __mmask16 k, __m512 a) { avx512_emulation::masked_store(p, k, 16, a.v); }
inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void* p) {
  __m512 r{};
  avx512_emulation::masked_load(r.v, k, 16, p);
  return r;
}
inline __m512 _mm512_abs_ps(__m512 a) {
  for (float& e : a.v) {
    std::uint32_t u;
    std::memcpy(&u, &e, 4);
    u &= 0x7fffffffu;
    std::memcpy(&e, &u, 4);
  }
  return a;
}
inline __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, int imm) {
  unsigned r = 0;
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::cmp_lane(a.v[i], b.v[i], imm)) r |= 1u << i;
  return static_cast<__mmask16>(r);
}
inline __m512 _mm512_set1_ps(float x) { __m512 r; for (float& e : r.v) e = x; return r; }
inline __m512 _mm512_sub_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] -= b.v[i]; return a; }
inline __m512 _mm512_add_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] += b.v[i]; return a; }
inline __m512 _mm512_mul_ps(__m512 a, __m512 b) { for (int i = 0; i < 16; ++i) a.v[i] *= b.v[i]; return a; }
// a * b + c rounded once (std::fma), as the hardware's fused multiply-add.
inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) {
  for (int i = 0; i < 16; ++i) c.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
  return c;
}
inline __m512 _mm512_mask_add_ps(__m512 src, __mmask16 k, __m512 a, __m512 b) {
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i)) src.v[i] = a.v[i] + b.v[i];
  return src;
}
inline __mmask16 _mm512_mask_cmp_ps_mask(__mmask16 k, __m512 a, __m512 b, int imm) {
  unsigned r = 0;
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i) && avx512_emulation::cmp_lane(a.v[i], b.v[i], imm)) r |= 1u << i;
  return static_cast<__mmask16>(r);
}
inline __m512 _mm512_loadu_ps(const void* p) { __m512 r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline void _mm512_storeu_ps(void* p, __m512 a) { std::memcpy(p, a.v, sizeof a.v); }
inline __m512 _mm512_mask_blend_ps(__mmask16 k, __m512 a, __m512 b) {
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i)) a.v[i] = b.v[i];
  return a;
}
// MINPS: a < b ? a : b per lane, so b where either is NaN (and b for +-0.0 against each other).
inline __m512 _mm512_min_ps(__m512 a, __m512 b) {
  for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
  return a;
}
// MAXPS: a > b ? a : b per lane, so b where either is NaN (and b for +-0.0 against each other).
inline __m512 _mm512_max_ps(__m512 a, __m512 b) {
  for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
  return a;
}
// VPERMPS: lane i of the result is lane (idx's int32 lane i) & 15 of a.
inline __m512 _mm512_permutexvar_ps(__m512i idx, __m512 a) {
  std::uint32_t lanes[16];
  std::memcpy(lanes, idx.v, sizeof lanes);
  __m512 r;
  for (int i = 0; i < 16; ++i) r.v[i] = a.v[lanes[i] & 15u];
  return r;
}
inline __m512 _mm512_maskz_mov_ps(__mmask16 k, __m512 a) {
  for (int i = 0; i < 16; ++i)
    if (!avx512_emulation::bit(k, i)) a.v[i] = 0.0f;
  return a;
}
inline __m512 _mm512_maskz_add_ps(__mmask16 k, __m512 a, __m512 b) {
  __m512 r{};
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i)) r.v[i] = a.v[i] + b.v[i];
  return r;
}
// Interleaves inside each 128-bit lane: lo takes elements 0 and 1 of a and b, hi elements 2 and 3.
inline __m512 _mm512_unpacklo_ps(__m512 a, __m512 b) {
  __m512 r;
  for (int l = 0; l < 4; ++l)
    for (int e = 0; e < 2; ++e) r.v[4 * l + 2 * e] = a.v[4 * l + e], r.v[4 * l + 2 * e + 1] = b.v[4 * l + e];
  return r;
}
inline __m512 _mm512_unpackhi_ps(__m512 a, __m512 b) {
  __m512 r;
  for (int l = 0; l < 4; ++l)
    for (int e = 0; e < 2; ++e) r.v[4 * l + 2 * e] = a.v[4 * l + 2 + e], r.v[4 * l + 2 * e + 1] = b.v[4 * l + 2 + e];
  return r;
}
// 128-bit lanes: lanes 0-1 from a, 2-3 from b, each chosen by two bits of imm.
inline __m512 _mm512_shuffle_f32x4(__m512 a, __m512 b, int imm) {
  __m512 r;
  for (int l = 0; l < 4; ++l) std::memcpy(r.v + 4 * l, (l < 2 ? a : b).v + 4 * (imm >> (2 * l) & 3), 16);
  return r;
}
inline __m256 _mm512_castps512_ps256(__m512 a) { __m256 r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
inline __m256 _mm512_extractf32x8_ps(__m512 a, int imm) {
  __m256 r;
  std::memcpy(r.v, a.v + 8 * (imm & 1), sizeof r.v);
  return r;
}

// ---- 512-bit double ----
inline __m512d _mm512_setzero_pd() { return __m512d{}; }
inline __m512d _mm512_set1_pd(double x) { __m512d r; for (double& e : r.v) e = x; return r; }
inline __m512d _mm512_loadu_pd(const void* p) { __m512d r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline __m512d _mm512_castps_pd(__m512 a) { __m512d r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
inline __m512 _mm512_castpd_ps(__m512d a) { __m512 r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
// Inside each 128-bit lane: lo takes element 0 of a and of b, hi element 1.
inline __m512d _mm512_unpacklo_pd(__m512d a, __m512d b) { return avx512_emulation::unpack_lo64(a, b); }
inline __m512d _mm512_unpackhi_pd(__m512d a, __m512d b) { return avx512_emulation::unpack_hi64(a, b); }
inline __m512d _mm512_maskz_loadu_pd(__mmask8 k, const void* p) {
  __m512d r{};
  avx512_emulation::masked_load(r.v, k, 8, p);
  return r;
}
inline void _mm512_mask_storeu_pd(void* p, __mmask8 k, __m512d a) { avx512_emulation::masked_store(p, k, 8, a.v); }
inline void _mm512_storeu_pd(void* p, __m512d a) { std::memcpy(p, a.v, sizeof a.v); }
inline __m512d _mm512_div_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] /= b.v[i]; return a; }
inline __m512d _mm512_mask_i64gather_pd(__m512d src, __mmask8 k, __m512i idx, const void* base, int scale) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i))
      std::memcpy(&src.v[i], static_cast<const unsigned char*>(base) +
                  static_cast<std::int64_t>(idx.v[i]) * scale, 8);
  return src;
}
inline __m512d _mm512_add_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] += b.v[i]; return a; }
inline __m512d _mm512_sub_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i]; return a; }
inline __m512d _mm512_mul_pd(__m512d a, __m512d b) { for (int i = 0; i < 8; ++i) a.v[i] *= b.v[i]; return a; }
inline __m512d _mm512_abs_pd(__m512d a) {
  for (double& e : a.v) {
    std::uint64_t u;
    std::memcpy(&u, &e, 8);
    u &= 0x7fffffffffffffffu;
    std::memcpy(&e, &u, 8);
  }
  return a;
}
inline __m512d _mm512_mask_add_pd(__m512d src, __mmask8 k, __m512d a, __m512d b) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i)) src.v[i] = a.v[i] + b.v[i];
  return src;
}
inline __mmask8 _mm512_mask_cmp_pd_mask(__mmask8 k, __m512d a, __m512d b, int imm) {
  unsigned r = 0;
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i) && avx512_emulation::cmp_lane(a.v[i], b.v[i], imm)) r |= 1u << i;
  return static_cast<__mmask8>(r);
}
inline __m512d _mm512_cvtps_pd(__m256 a) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i]; return r; }
inline __m256 _mm512_cvtpd_ps(__m512d a) {
  __m256 r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<float>(a.v[i]);  // round to nearest even
  return r;
}
// The order of GCC's and Clang's reduction tree (halves, then quarters, then pairs).
inline double _mm512_reduce_add_pd(__m512d a) {
  return ((a.v[0] + a.v[4]) + (a.v[2] + a.v[6])) + ((a.v[1] + a.v[5]) + (a.v[3] + a.v[7]));
}

// ---- 256-bit float ----
inline __m256 _mm256_set1_ps(float x) { __m256 r; for (float& e : r.v) e = x; return r; }
inline __m256 _mm256_add_ps(__m256 a, __m256 b) { for (int i = 0; i < 8; ++i) a.v[i] += b.v[i]; return a; }
// MAXPS: the first operand where it is greater, else the second (so NaN and equal values give the second).
inline __m256 _mm256_max_ps(__m256 a, __m256 b) {
  for (int i = 0; i < 8; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
  return a;
}
// MINPS: a < b ? a : b per lane (b where either is NaN).
inline __m256 _mm256_min_ps(__m256 a, __m256 b) {
  for (int i = 0; i < 8; ++i) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
  return a;
}
inline __m256 _mm256_maskz_loadu_ps(__mmask8 k, const void* p) {
  __m256 r{};
  avx512_emulation::masked_load(r.v, k, 8, p);
  return r;
}
inline void _mm256_mask_storeu_ps(void* p, __mmask8 k, __m256 a) { avx512_emulation::masked_store(p, k, 8, a.v); }
inline __m256 _mm256_setzero_ps() { return __m256{}; }
// The 8-lane float register of float_conv_avx2_reg.h, which the AVX-512 Winograd tiles also run on.
inline __m256 _mm256_loadu_ps(const float* p) { __m256 r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline void _mm256_storeu_ps(float* p, __m256 a) { std::memcpy(p, a.v, sizeof a.v); }
inline __m256 _mm256_sub_ps(__m256 a, __m256 b) { for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i]; return a; }
inline __m256 _mm256_mul_ps(__m256 a, __m256 b) { for (int i = 0; i < 8; ++i) a.v[i] *= b.v[i]; return a; }
inline __m256 _mm256_fmadd_ps(__m256 a, __m256 b, __m256 c) {
  for (int i = 0; i < 8; ++i) c.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
  return c;
}
inline __m256i _mm256_setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6, int e7) {
  const int e[8] = {e0, e1, e2, e3, e4, e5, e6, e7};
  __m256i r;
  for (int i = 0; i < 8; ++i) r.v[i] = static_cast<std::uint32_t>(e[i]);
  return r;
}
// Lane i of the result: a's lane idx[i] mod 8.
inline __m256 _mm256_permutevar8x32_ps(__m256 a, __m256i idx) {
  __m256 r;
  for (int i = 0; i < 8; ++i) r.v[i] = a.v[idx.v[i] & 7u];
  return r;
}
// Lane i from b where bit i of the immediate is set, else from a.
inline __m256 _mm256_blend_ps(__m256 a, __m256 b, int imm) {
  for (int i = 0; i < 8; ++i)
    if ((imm >> i) & 1) a.v[i] = b.v[i];
  return a;
}
// Inside each 128-bit half h (lanes 4 h .. 4 h + 3): unpacklo interleaves the halves' lanes 0, 1 of a and b (a0 b0 a1
// b1), unpackhi their lanes 2, 3; shuffle takes lanes imm[1:0], imm[3:2] of a's half and imm[5:4], imm[7:6] of b's.
inline __m256 _mm256_unpacklo_ps(__m256 a, __m256 b) {
  __m256 r;
  for (int h = 0; h < 8; h += 4)
    for (int i = 0; i < 2; ++i) r.v[h + 2 * i] = a.v[h + i], r.v[h + 2 * i + 1] = b.v[h + i];
  return r;
}
inline __m256 _mm256_unpackhi_ps(__m256 a, __m256 b) {
  __m256 r;
  for (int h = 0; h < 8; h += 4)
    for (int i = 0; i < 2; ++i) r.v[h + 2 * i] = a.v[h + 2 + i], r.v[h + 2 * i + 1] = b.v[h + 2 + i];
  return r;
}
inline __m256 _mm256_shuffle_ps(__m256 a, __m256 b, int imm) {
  __m256 r;
  for (int h = 0; h < 8; h += 4)
    for (int i = 0; i < 4; ++i) r.v[h + i] = (i < 2 ? a : b).v[h + (imm >> (2 * i) & 3)];
  return r;
}
// Each 128-bit half of the result: imm[1:0] (low) / imm[5:4] (high) selects a's low, a's high, b's low or b's high
// half; bit 3 (low) / bit 7 (high) zeroes it instead.
inline __m256 _mm256_permute2f128_ps(__m256 a, __m256 b, int imm) {
  __m256 r;
  for (int h = 0; h < 2; ++h) {
    const int sel = imm >> (4 * h) & 0xf;
    const __m256& src = sel & 2 ? b : a;
    for (int i = 0; i < 4; ++i) r.v[4 * h + i] = sel & 8 ? 0.0f : src.v[4 * (sel & 1) + i];
  }
  return r;
}
// Gather / scatter of 8 floats at base + scale * index_i (64-bit indices), only where mask bit i is set (the
// gather keeps src's lane elsewhere; the scatter writes nothing there).
inline __m256 _mm512_mask_i64gather_ps(__m256 src, __mmask8 k, __m512i idx, const void* base, int scale) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i))
      std::memcpy(&src.v[i], static_cast<const unsigned char*>(base) +
                  static_cast<std::int64_t>(idx.v[i]) * scale, 4);
  return src;
}
inline void _mm512_mask_i64scatter_ps(void* base, __mmask8 k, __m512i idx, __m256 a, int scale) {
  for (int i = 0; i < 8; ++i)
    if (avx512_emulation::bit(k, i))
      std::memcpy(static_cast<unsigned char*>(base) + static_cast<std::int64_t>(idx.v[i]) * scale, &a.v[i], 4);
}
inline void _mm256_store_ps(float* p, __m256 a) {
  avx512_emulation::check_aligned(p, 32);
  std::memcpy(p, a.v, sizeof a.v);
}

// Mask registers: kunpckwd / kunpckdq put the low half of the first operand above the low half of the second.
inline __mmask32 _mm512_kunpackw(__mmask32 hi, __mmask32 lo) { return (hi & 0xffffu) << 16 | (lo & 0xffffu); }
inline __mmask64 _mm512_kunpackd(__mmask64 hi, __mmask64 lo) {
  return (hi & 0xffffffffu) << 32 | (lo & 0xffffffffu);
}
inline unsigned long long _cvtmask64_u64(__mmask64 k) { return k; }

// Permutes and moves of the pool's rows (pool_rows_avx512.cpp).
inline __m512i _mm512_setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6, int e7, int e8, int e9,
                                 int e10, int e11, int e12, int e13, int e14, int e15) {
  const int e[16] = {e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15};
  __m512i r;
  std::memcpy(r.v, e, sizeof e);
  return r;
}
inline __m512 _mm512_castsi512_ps(__m512i a) {
  __m512 r;
  std::memcpy(r.v, a.v, sizeof r.v);
  return r;
}
// VPERMT2PS: lane i is lane (idx_i & 15) of a when bit 4 of idx_i is clear, of b when it is set.
inline __m512 _mm512_permutex2var_ps(__m512 a, __m512i idx, __m512 b) {
  std::uint32_t lanes[16];
  std::memcpy(lanes, idx.v, sizeof lanes);
  __m512 r;
  for (int i = 0; i < 16; ++i) r.v[i] = (lanes[i] & 16u) ? b.v[lanes[i] & 15u] : a.v[lanes[i] & 15u];
  return r;
}
// VALIGND: the 32 lanes b (low) then a (high), shifted down by imm lanes; the low 16 returned.
inline __m512i _mm512_alignr_epi32(__m512i a, __m512i b, int imm) {
  std::uint32_t lo[16], hi[16], out[16];
  std::memcpy(lo, b.v, sizeof lo);
  std::memcpy(hi, a.v, sizeof hi);
  const int s = imm & 15;
  for (int i = 0; i < 16; ++i) out[i] = i + s < 16 ? lo[i + s] : hi[i + s - 16];
  __m512i r;
  std::memcpy(r.v, out, sizeof out);
  return r;
}
inline __m512 _mm512_mask_mov_ps(__m512 src, __mmask16 k, __m512 a) {
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i)) src.v[i] = a.v[i];
  return src;
}
// Merge-masked load: unselected lanes keep src and are not read.
inline __m512 _mm512_mask_loadu_ps(__m512 src, __mmask16 k, const void* p) {
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 16; ++i)
    if (avx512_emulation::bit(k, i)) std::memcpy(&src.v[i], f + i, sizeof(float));
  return src;
}
