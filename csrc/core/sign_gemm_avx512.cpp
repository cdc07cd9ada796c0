// sign_gemm (sign_gemm.h) on AVX-512: 16-lane vectors, blocks of 64 lanes where a task has them (32 KiB of
// tables: inside L1; sign_gemm_walk.h says why one half-word per step), 32 and 16 lanes for narrower ones;
// masked loads and stores at the edge. Operation order: sign_gemm_walk.h (the same bits as the generic path).
#include <immintrin.h>

#include "core/sign_gemm_walk.h"

namespace horq {
namespace {

struct Avx512 {
  static constexpr int kLanes = 16;
  using reg = __m512;
  static __mmask16 mask(int n) { return static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1u); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, reg r) { _mm512_store_ps(p, r); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, reg r) { _mm512_storeu_ps(p, r); }
  static reg load_part(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_part(float* p, reg r, int n) { _mm512_mask_storeu_ps(p, mask(n), r); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul_scalar(reg a, float s) { return _mm512_mul_ps(a, _mm512_set1_ps(s)); }
  static reg signed_value(unsigned bits, float b) {
    return _mm512_mask_blend_ps(static_cast<__mmask16>(bits), _mm512_set1_ps(b), _mm512_set1_ps(-b));
  }
  using lane_mask = __mmask16;
  static lane_mask lanes(std::ptrdiff_t lo, std::ptrdiff_t hi) {
    return static_cast<__mmask16>(mask(static_cast<int>(hi)) & ~mask(static_cast<int>(lo)));
  }
  static reg add_masked(reg acc, const float* p, lane_mask k) {
    return _mm512_mask_add_ps(acc, k, acc, _mm512_maskz_loadu_ps(k, p));
  }
};

}  // namespace

void sign_gemm_avx512(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1) {
  std::size_t m = m0;
  for (; m + 64 <= m1; m += 64) sign_gemm_walk<Avx512, 4>(p, m, m + 64, j0, j1);
  if (m1 - m > 16) sign_gemm_walk<Avx512, 2>(p, m, m1, j0, j1);
  else if (m < m1) sign_gemm_walk<Avx512, 1>(p, m, m1, j0, j1);
}

void fold_rows_avx512(const Fold& f) { fold_rows_walk<Avx512>(f); }

void expand_column_avx512(const word_t* const* planes, const float* b, int order, std::size_t groups,
                          std::size_t cg, std::size_t gw, float* out) {
  expand_column_walk<Avx512>(planes, b, order, groups, cg, gw, out);
}

namespace {

// Level j's swap of the pair (a, b): t = ((a >> j) ^ b) & mask, a ^= t << j, b ^= t (transpose64_generic).
template <unsigned J>
inline void swap_pair(__m512i& a, __m512i& b, __m512i mask) {
  const __m512i t = _mm512_and_si512(_mm512_xor_si512(_mm512_srli_epi64(a, J), b), mask);
  a = _mm512_xor_si512(a, _mm512_slli_epi64(t, J));
  b = _mm512_xor_si512(b, t);
}

// Level j < 8: the pairs are lanes j apart in one register. Each lane sees its partner through `partner` (the
// register with lanes k and k ^ j exchanged); the lanes with bit j set (`high`) hold the pair's b.
template <unsigned J>
inline __m512i swap_lanes(__m512i r, __m512i partner, __mmask8 high, __m512i mask) {
  const __m512i a = _mm512_mask_blend_epi64(high, r, partner), b = _mm512_mask_blend_epi64(high, partner, r);
  const __m512i t = _mm512_and_si512(_mm512_xor_si512(_mm512_srli_epi64(a, J), b), mask);
  return _mm512_xor_si512(r, _mm512_mask_blend_epi64(high, _mm512_slli_epi64(t, J), t));
}

}  // namespace

// Eight registers of eight words: levels 32, 16, 8 pair registers 4, 2, 1 apart; levels 4, 2, 1 pair lanes.
void transpose64_avx512(word_t* a) {
  __m512i r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_si512(a + 8 * i);
  const __m512i m32 = _mm512_set1_epi64(0x00000000FFFFFFFFll), m16 = _mm512_set1_epi64(0x0000FFFF0000FFFFll);
  const __m512i m8 = _mm512_set1_epi64(0x00FF00FF00FF00FFll), m4 = _mm512_set1_epi64(0x0F0F0F0F0F0F0F0Fll);
  const __m512i m2 = _mm512_set1_epi64(0x3333333333333333ll), m1 = _mm512_set1_epi64(0x5555555555555555ll);
  for (int i = 0; i < 4; ++i) swap_pair<32>(r[i], r[i + 4], m32);
  for (int i : {0, 1, 4, 5}) swap_pair<16>(r[i], r[i + 2], m16);
  for (int i : {0, 2, 4, 6}) swap_pair<8>(r[i], r[i + 1], m8);
  for (int i = 0; i < 8; ++i) {
    __m512i x = r[i];
    x = swap_lanes<4>(x, _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(1, 0, 3, 2)), 0xF0, m4);
    x = swap_lanes<2>(x, _mm512_permutex_epi64(x, _MM_SHUFFLE(1, 0, 3, 2)), 0xCC, m2);
    x = swap_lanes<1>(x, _mm512_permutex_epi64(x, _MM_SHUFFLE(2, 3, 0, 1)), 0xAA, m1);
    _mm512_storeu_si512(a + 8 * i, x);
  }
}

}  // namespace horq
