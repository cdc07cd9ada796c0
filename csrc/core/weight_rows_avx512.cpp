// The weight binarizer and its gradient (weight_rows.h) compiled for AVX-512: the shared loops vectorized 16
// floats wide; signs packed 16 at a time, a compare's mask register being the bits themselves.
#include <immintrin.h>

#include "core/weight_rows.h"

namespace horq {
namespace {

struct PackAvx512 {
  static void run(const float* src, std::size_t n, word_t* dst) {
    const __m512 zero = _mm512_setzero_ps();
    for (std::size_t w = 0; w < words_for(n); ++w) dst[w] = 0;
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __mmask16 neg = _mm512_mask_cmp_ps_mask(0xffff, _mm512_maskz_loadu_ps(0xffff, src + i), zero, _CMP_LT_OQ);
      dst[i / kWordBits] |= static_cast<word_t>(neg) << (i % kWordBits);
    }
    weight_rows::pack_tail(src, i, n, dst);
  }
};

}  // namespace

void binarize_rows_avx512(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff) {
  weight_rows::binarize<PackAvx512>(w, m, n, alpha, bits, w_eff);
}

void weight_grad_avx512(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                        double clip, float* dw) {
  weight_rows::weight_grad<PackAvx512>(w, alpha, g, m, n, clip, dw);
}

}  // namespace horq
