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

// Four words a register (sign_gemm_walk.h transpose64_walk): levels 2 and 1 inside it, HIGH the 32-bit halves of
// the lanes with bit j set as a blend_epi32 mask.
struct Words4 {
  using reg = __m256i;
  static constexpr int kWords = 4;
  static reg load(const word_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store(word_t* p, reg r) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), r); }
  static reg set1(word_t v) { return _mm256_set1_epi64x(static_cast<long long>(v)); }
  template <unsigned J>
  static reg srli(reg r) { return _mm256_srli_epi64(r, J); }
  template <unsigned J>
  static reg slli(reg r) { return _mm256_slli_epi64(r, J); }
  static reg xor_(reg a, reg b) { return _mm256_xor_si256(a, b); }
  static reg and_(reg a, reg b) { return _mm256_and_si256(a, b); }
  template <unsigned J>
  static reg partner(reg r) {
    return _mm256_permute4x64_epi64(r, J == 2 ? _MM_SHUFFLE(1, 0, 3, 2) : _MM_SHUFFLE(2, 3, 0, 1));
  }
  template <unsigned J>
  static reg high(reg x, reg y) { return _mm256_blend_epi32(x, y, J == 2 ? 0xF0 : 0xCC); }
};

}  // namespace

void transpose64_avx2(word_t* a) { transpose64_walk<Words4>(a); }

}  // namespace horq
