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

// Eight words a register (sign_gemm_walk.h transpose64_walk): levels 4, 2 and 1 inside it.
struct Words8 {
  using reg = __m512i;
  static constexpr int kWords = 8;
  static reg load(const word_t* p) { return _mm512_loadu_si512(p); }
  static void store(word_t* p, reg r) { _mm512_storeu_si512(p, r); }
  static reg set1(word_t v) { return _mm512_set1_epi64(static_cast<long long>(v)); }
  template <unsigned J>
  static reg srli(reg r) { return _mm512_srli_epi64(r, J); }
  template <unsigned J>
  static reg slli(reg r) { return _mm512_slli_epi64(r, J); }
  static reg xor_(reg a, reg b) { return _mm512_xor_si512(a, b); }
  static reg and_(reg a, reg b) { return _mm512_and_si512(a, b); }
  template <unsigned J>
  static reg partner(reg r) {
    if constexpr (J == 4) return _mm512_shuffle_i64x2(r, r, _MM_SHUFFLE(1, 0, 3, 2));
    else return _mm512_permutex_epi64(r, J == 2 ? _MM_SHUFFLE(1, 0, 3, 2) : _MM_SHUFFLE(2, 3, 0, 1));
  }
  template <unsigned J>
  static reg high(reg x, reg y) {
    return _mm512_mask_blend_epi64(static_cast<__mmask8>(J == 4 ? 0xF0 : J == 2 ? 0xCC : 0xAA), x, y);
  }
};

}  // namespace

void transpose64_avx512(word_t* a) { transpose64_walk<Words8>(a); }

}  // namespace horq
