// Portable residual binarization of one column (arithmetic derived in quantize.h), scalar double.
#include <cmath>

#include "core/quantize.h"

namespace horq {

void quantize_column_generic(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas) {
  const std::size_t n = groups * cg, gw = words_for(cg);
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum += std::fabs(r[i]);
  double beta = sum / static_cast<double>(n);
  for (int k = 0; k < order; ++k) {
    betas[k] = beta;
    const bool last = k + 1 == order;
    double next = 0.0;
    for (std::size_t g = 0; g < groups; ++g) {
      double* rg = r + g * cg;
      word_t* wg = bits + k * ldbits + g * gw;
      for (std::size_t w = 0; w < gw; ++w) {
        const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
        word_t word = 0;
        for (std::size_t i = i0; i < i1; ++i) {
          double v = rg[i];
          const bool neg = v < 0.0;
          word |= static_cast<word_t>(neg) << (i - i0);
          if (!last) {
            // Branch-free (signs are random, a branch mispredicts half the time); 1 - 2*neg is exactly
            // +-1, so this is exactly v -+ beta.
            v -= beta * (1.0 - 2.0 * static_cast<double>(neg));
            rg[i] = v;
            next += std::fabs(v);
          }
        }
        wg[w] = word;
      }
    }
    beta = next / static_cast<double>(n);
  }
}

}  // namespace horq

namespace horq {

void quantize_taps_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                           std::size_t ldbits, double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    const double pad = padding_residual(betas, k);
    double sum = 0.0;
    for (std::size_t t = 0; t < ntaps; ++t) {
      word_t* wg = row + t * gw;
      const float* x = taps[t];
      if (!x) {
        fill_padding_words(wg, cg, pad < 0.0);
        sum += std::fabs(pad) * static_cast<double>(cg);
        continue;
      }
      for (std::size_t w = 0; w < gw; ++w) {
        const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
        word_t word = 0;
        for (std::size_t i = i0; i < i1; ++i) {
          double v = x[i];
          for (int j = 0; j + 1 < k; ++j) v -= betas[j] * (1.0 - 2.0 * static_cast<double>(v < 0.0));
          word |= static_cast<word_t>(v < 0.0) << (i - i0);
          sum += std::fabs(v);
        }
        wg[w] = word;
      }
    }
    betas[k - 1] = sum / static_cast<double>(n);
  }
}

}  // namespace horq
