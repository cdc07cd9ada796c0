// sign_gemm (sign_gemm.h) on AVX2: 8-lane vectors in blocks of 32 lanes (tables of 16 KiB, half a typical
// L1 data cache), masked loads and stores at the edge. Operation order: sign_gemm_walk.h (the same bits as
// the generic path).
#include <immintrin.h>

#include "core/sign_gemm_walk.h"

namespace horq {
namespace {

struct Avx2 {
  static constexpr int kLanes = 8;
  using reg = __m256;
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, reg r) { _mm256_store_ps(p, r); }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, reg r) { _mm256_storeu_ps(p, r); }
  static reg load_part(const float* p, int n) { return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n)); }
  static void store_part(float* p, reg r, int n) {
    if (n >= 8) _mm256_storeu_ps(p, r);
    else _mm256_maskstore_ps(p, mask(n), r);
  }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul_scalar(reg a, float s) { return _mm256_mul_ps(a, _mm256_set1_ps(s)); }
  static reg signed_value(unsigned bits, float b) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), bit), bit);
    return _mm256_xor_ps(_mm256_set1_ps(b), _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_set1_ps(-0.0f)));
  }
  using lane_mask = __m256i;
  static lane_mask lanes(std::ptrdiff_t lo, std::ptrdiff_t hi) {
    return _mm256_andnot_si256(mask(static_cast<int>(lo)), mask(static_cast<int>(hi)));
  }
  static reg add_masked(reg acc, const float* p, lane_mask k) {
    return _mm256_blendv_ps(acc, _mm256_add_ps(acc, _mm256_maskload_ps(p, k)), _mm256_castsi256_ps(k));
  }
};

}  // namespace

void sign_gemm_avx2(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1) {
  sign_gemm_walk<Avx2, 4>(p, m0, m1, j0, j1);
}

void fold_rows_avx2(const Fold& f) { fold_rows_walk<Avx2>(f); }

void expand_column_avx2(const word_t* const* planes, const float* b, int order, std::size_t groups,
                        std::size_t cg, std::size_t gw, float* out) {
  expand_column_walk<Avx2>(planes, b, order, groups, cg, gw, out);
}

namespace {

// Level j's swap of the pair (a, b): t = ((a >> j) ^ b) & mask, a ^= t << j, b ^= t (transpose64_generic).
template <int J>
inline void swap_pair(__m256i& a, __m256i& b, __m256i mask) {
  const __m256i t = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi64(a, J), b), mask);
  a = _mm256_xor_si256(a, _mm256_slli_epi64(t, J));
  b = _mm256_xor_si256(b, t);
}

// Level j < 4: the pairs are lanes j apart in one register; `partner` has lanes k and k ^ j exchanged, and the
// lanes with bit j set hold the pair's b (HIGH: their 32-bit halves, as a blend_epi32 mask).
template <int J, int HIGH>
inline __m256i swap_lanes(__m256i r, __m256i partner, __m256i mask) {
  const __m256i a = _mm256_blend_epi32(r, partner, HIGH), b = _mm256_blend_epi32(partner, r, HIGH);
  const __m256i t = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi64(a, J), b), mask);
  return _mm256_xor_si256(r, _mm256_blend_epi32(_mm256_slli_epi64(t, J), t, HIGH));
}

}  // namespace

// Sixteen registers of four words: levels 32, 16, 8, 4 pair registers 8, 4, 2, 1 apart; levels 2, 1 pair lanes.
void transpose64_avx2(word_t* a) {
  __m256i r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 4 * i));
  const __m256i m32 = _mm256_set1_epi64x(0x00000000FFFFFFFFll), m16 = _mm256_set1_epi64x(0x0000FFFF0000FFFFll);
  const __m256i m8 = _mm256_set1_epi64x(0x00FF00FF00FF00FFll), m4 = _mm256_set1_epi64x(0x0F0F0F0F0F0F0F0Fll);
  const __m256i m2 = _mm256_set1_epi64x(0x3333333333333333ll), m1 = _mm256_set1_epi64x(0x5555555555555555ll);
  for (int i = 0; i < 16; ++i)
    if (!(i & 8)) swap_pair<32>(r[i], r[i + 8], m32);
  for (int i = 0; i < 16; ++i)
    if (!(i & 4)) swap_pair<16>(r[i], r[i + 4], m16);
  for (int i = 0; i < 16; ++i)
    if (!(i & 2)) swap_pair<8>(r[i], r[i + 2], m8);
  for (int i = 0; i < 16; ++i)
    if (!(i & 1)) swap_pair<4>(r[i], r[i + 1], m4);
  for (int i = 0; i < 16; ++i) {
    __m256i x = r[i];
    x = swap_lanes<2, 0xF0>(x, _mm256_permute4x64_epi64(x, _MM_SHUFFLE(1, 0, 3, 2)), m2);
    x = swap_lanes<1, 0xCC>(x, _mm256_permute4x64_epi64(x, _MM_SHUFFLE(2, 3, 0, 1)), m1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a + 4 * i), x);
  }
}

}  // namespace horq
