// The weight binarizer and its gradient (weight_rows.h), portable: the shared loops at the baseline ISA.
#include "core/weight_rows.h"

namespace horq {
namespace {

struct PackGeneric {
  static void run(const float* src, std::size_t n, word_t* dst) {
    for (std::size_t w = 0; w < words_for(n); ++w) {
      const std::size_t i0 = w * kWordBits, len = n - i0 < kWordBits ? n - i0 : kWordBits;
      word_t word = 0;
      for (std::size_t b = 0; b < len; ++b) word |= static_cast<word_t>(src[i0 + b] < 0.0f) << b;
      dst[w] = word;
    }
  }
};

}  // namespace

void binarize_rows_generic(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff) {
  weight_rows::binarize<PackGeneric>(w, m, n, alpha, bits, w_eff);
}

void weight_grad_generic(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                         double clip, float* dw) {
  weight_rows::weight_grad(w, alpha, g, m, n, clip, dw);
}

}  // namespace horq
