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

namespace horq {

// Taps variant (quantize.h): 4 values per step, float -> double on load, the residual chain of pass k
// (k - 1 masked subtractions) in registers; bits by vmovmskpd. The last 0-3 values of a word run the
// scalar rule of quantize_taps_generic.
void quantize_taps_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                        std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 4;
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    __m256d vb[kMaxOrder];
    for (int j = 0; j + 1 < k; ++j) vb[j] = _mm256_set1_pd(betas[j]);
    const double pad = padding_residual(betas, k);
    __m256d acc0 = zero, acc1 = zero;
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
        std::size_t i = i0;
        for (; i + 2 * kLanes <= i1; i += 2 * kLanes) {
          const __m256 f = _mm256_loadu_ps(x + i);
          __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
          __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
          for (int j = 0; j + 1 < k; ++j) {
            v0 = _mm256_sub_pd(v0, _mm256_xor_pd(vb[j], _mm256_and_pd(_mm256_cmp_pd(v0, zero, _CMP_LT_OQ), sign)));
            v1 = _mm256_sub_pd(v1, _mm256_xor_pd(vb[j], _mm256_and_pd(_mm256_cmp_pd(v1, zero, _CMP_LT_OQ), sign)));
          }
          const word_t m0 = static_cast<word_t>(_mm256_movemask_pd(_mm256_cmp_pd(v0, zero, _CMP_LT_OQ)));
          const word_t m1 = static_cast<word_t>(_mm256_movemask_pd(_mm256_cmp_pd(v1, zero, _CMP_LT_OQ)));
          word |= (m0 | m1 << kLanes) << (i - i0);
          acc0 = _mm256_add_pd(acc0, _mm256_andnot_pd(sign, v0));
          acc1 = _mm256_add_pd(acc1, _mm256_andnot_pd(sign, v1));
        }
        for (; i < i1; ++i) {
          double v = x[i];
          for (int j = 0; j + 1 < k; ++j) v -= betas[j] * (1.0 - 2.0 * static_cast<double>(v < 0.0));
          word |= static_cast<word_t>(v < 0.0) << (i - i0);
          sum += std::fabs(v);
        }
        wg[w] = word;
      }
    }
    alignas(32) double lanes[kLanes];
    _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
    betas[k - 1] = (sum + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / static_cast<double>(n);
  }
}

// 8 floats per step (quantize_taps2 in quantize.h): neg = x < 0, a = |x|, the bit is a > floor32(beta_1)
// where neg and a < ceil32(beta_1) elsewhere (one blend of the two compares), |a - beta_1| is summed in
// float lanes over one word (at most 8 steps) and then added into double lanes.
void quantize_taps2_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                         std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 8;
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const Threshold32 th(betas[0]);
  const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
  const __m256 up = _mm256_set1_ps(th.up), down = _mm256_set1_ps(th.down), nearest = _mm256_set1_ps(th.nearest);
  word_t* row = bits + ldbits;
  __m256d acc = _mm256_setzero_pd();
  double sum = 0.0;
  for (std::size_t t = 0; t < ntaps; ++t) {
    word_t* wg = row + t * gw;
    const float* x = taps[t];
    if (!x) {
      sum += order2_padding_tap(wg, cg, betas[0]);
      continue;
    }
    for (std::size_t w = 0; w < gw; ++w) {
      const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
      word_t word = 0;
      __m256 part = zero;
      std::size_t i = i0;
      for (; i + kLanes <= i1; i += kLanes) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 a = _mm256_andnot_ps(sign, v);
        const __m256 neg_r = _mm256_blendv_ps(_mm256_cmp_ps(a, up, _CMP_LT_OQ), _mm256_cmp_ps(a, down, _CMP_GT_OQ),
                                              _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        word |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(neg_r))) << (i - i0);
        part = _mm256_add_ps(part, _mm256_andnot_ps(sign, _mm256_sub_ps(a, nearest)));
      }
      float tail = 0.0f;
      for (; i < i1; ++i) {
        const float v = x[i], a = std::fabs(v);
        const bool neg_r = v < 0.0f ? a > th.down : a < th.up;
        word |= static_cast<word_t>(neg_r) << (i - i0);
        tail += std::fabs(a - th.nearest);
      }
      wg[w] = word;
      acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(part)),
                                             _mm256_cvtps_pd(_mm256_extractf128_ps(part, 1))));
      sum += static_cast<double>(tail);
    }
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  betas[1] = (sum + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / static_cast<double>(n);
}

// 8 pixels at a time with their 8 words and 8 sums in registers across all channels (the AVX-512 version's
// scheme): per channel one load, a compare whose 32-bit lanes widen to 64-bit masks selecting bit c of the
// words, an exponent test for NaN/Inf, and |x| widened to double and added per lane in channel order (the
// generic sums bit for bit). A row's last 1-7 pixels use masked loads and stores.
std::uint32_t pack_pixels_avx2(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                               word_t* words, std::size_t wstride, double* sums, const float* scale,
                               const float* shift) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  const __m256i lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i bad = _mm256_setzero_si256();
  for (std::size_t w0 = 0; w0 < W; w0 += 8) {
    const std::size_t rem = W - w0 < 8 ? W - w0 : 8;
    const __m256i m32 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), lane_ids);
    const __m256i mlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m32));
    const __m256i mhi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m32, 1));
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    __m256d slo = _mm256_maskload_pd(sums + w0, mlo), shi = _mm256_maskload_pd(sums + w0 + 4, mhi);
    for (std::size_t c = 0; c < nchan; ++c) {
      __m256 v = _mm256_maskload_ps(src + c * cstride + w0, m32);
      if (scale) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(scale[c])), _mm256_set1_ps(shift[c]));
      const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exp_mask);
      bad = _mm256_or_si256(bad, _mm256_and_si256(_mm256_cmpeq_epi32(e, exp_mask), m32));
      const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
      const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(word_t{1} << c));
      lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(neg)), bit));
      hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(neg, 1)), bit));
      const __m256 a = _mm256_andnot_ps(sign, v);
      slo = _mm256_add_pd(slo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
      shi = _mm256_add_pd(shi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    }
    _mm256_maskstore_pd(sums + w0, mlo, slo);
    _mm256_maskstore_pd(sums + w0 + 4, mhi, shi);
    alignas(32) word_t out[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 4), hi);
    for (std::size_t i = 0; i < rem; ++i) words[(w0 + i) * wstride] = out[i];
  }
  return _mm256_testz_si256(bad, bad) ? 0u : 1u;
}

}  // namespace horq
