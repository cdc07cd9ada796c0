// AVX2 residual binarization of one column (arithmetic derived in quantize.h), 4 doubles per step:
// the compare mask r < 0 gives 4 bits by vmovmskpd, the update r -= (beta with the mask's sign) is one
// xor + sub, and |r| is an andnot of the sign bit. The last 0-3 values of a word run the scalar rule.
#include <immintrin.h>

#include <cmath>

#include "core/quantize.h"

namespace horq {

void quantize_column_avx2(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 4;
  const std::size_t n = groups * cg, gw = words_for(cg);
  const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();

  __m256d acc = zero;
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = _mm256_add_pd(acc, _mm256_andnot_pd(sign, _mm256_loadu_pd(r + i)));
  double sum = 0.0;
  for (; i < n; ++i) sum += std::fabs(r[i]);
  alignas(32) double lanes[kLanes];
  _mm256_store_pd(lanes, acc);
  double beta = (sum + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / static_cast<double>(n);

  for (int k = 0; k < order; ++k) {
    betas[k] = beta;
    const bool last = k + 1 == order;
    const __m256d vb = _mm256_set1_pd(beta);
    __m256d vnext = zero;
    double next = 0.0;
    for (std::size_t g = 0; g < groups; ++g) {
      double* rg = r + g * cg;
      word_t* wg = bits + k * ldbits + g * gw;
      for (std::size_t w = 0; w < gw; ++w) {
        const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
        word_t word = 0;
        std::size_t j = i0;
        for (; j + kLanes <= i1; j += kLanes) {
          __m256d v = _mm256_loadu_pd(rg + j);
          const __m256d neg = _mm256_cmp_pd(v, zero, _CMP_LT_OQ);
          word |= static_cast<word_t>(_mm256_movemask_pd(neg)) << (j - i0);
          if (!last) {
            v = _mm256_sub_pd(v, _mm256_xor_pd(vb, _mm256_and_pd(neg, sign)));
            _mm256_storeu_pd(rg + j, v);
            vnext = _mm256_add_pd(vnext, _mm256_andnot_pd(sign, v));
          }
        }
        for (; j < i1; ++j) {
          double v = rg[j];
          const bool neg = v < 0.0;
          word |= static_cast<word_t>(neg) << (j - i0);
          if (!last) {
            v -= beta * (1.0 - 2.0 * static_cast<double>(neg));  // exactly v -+ beta, branch-free
            rg[j] = v;
            next += std::fabs(v);
          }
        }
        wg[w] = word;
      }
    }
    _mm256_store_pd(lanes, vnext);
    beta = (next + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / static_cast<double>(n);
  }
}

}  // namespace horq
