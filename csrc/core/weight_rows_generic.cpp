// The weight binarizer and its gradient (weight_rows.h), portable: the shared loops at the baseline ISA.
#include "core/weight_rows.h"

namespace horq {
namespace {

// The bit convention's own packing (types.h pack_signs), one row.
struct PackGeneric {
  static void run(const float* src, std::size_t n, word_t* dst) { pack_signs(src, 1, n, n, dst); }
};

}  // namespace

void binarize_rows_generic(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff) {
  weight_rows::binarize<PackGeneric>(w, m, n, alpha, bits, w_eff);
}

void weight_grad_generic(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                         double clip, float* dw) {
  weight_rows::weight_grad<PackGeneric>(w, alpha, g, m, n, clip, dw);
}

}  // namespace horq
