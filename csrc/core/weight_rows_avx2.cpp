// The weight binarizer and its gradient (weight_rows.h) compiled for AVX2: the shared loops vectorized 8 floats
// wide; signs packed 8 at a time from a compare's movemask.
#include <immintrin.h>

#include "core/weight_rows.h"

namespace horq {
namespace {

struct PackAvx2 {
  static void run(const float* src, std::size_t n, word_t* dst) {
    const __m256 zero = _mm256_setzero_ps();
    for (std::size_t w = 0; w < words_for(n); ++w) dst[w] = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const auto byte = static_cast<word_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + i), zero,
                                                                             _CMP_LT_OQ)));
      dst[i / kWordBits] |= byte << (i % kWordBits);
    }
    weight_rows::pack_tail(src, i, n, dst);
  }
};

}  // namespace

void binarize_rows_avx2(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff) {
  weight_rows::binarize<PackAvx2>(w, m, n, alpha, bits, w_eff);
}

void weight_grad_avx2(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n, double clip,
                      float* dw) {
  weight_rows::weight_grad<PackAvx2>(w, alpha, g, m, n, clip, dw);
}

}  // namespace horq
