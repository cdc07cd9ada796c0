// AVX-512 residual binarization of one column (arithmetic derived in quantize.h), 8 doubles per step:
// the compare gives the 8 bits directly as a mask register, r is updated by a masked add/sub, and the
// last 1-7 values of a word use zero-masked loads, masked stores and a masked accumulate, so padded lanes
// neither set bits nor count in beta.
#include <immintrin.h>

#include <cmath>

#include "core/quantize.h"

namespace horq {

void quantize_column_avx512(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                            std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 8;
  const std::size_t n = groups * cg, gw = words_for(cg);
  const __m512d zero = _mm512_setzero_pd();

  __m512d acc = zero;
  for (std::size_t i = 0; i < n; i += kLanes) {
    const std::size_t rem = n - i;
    const __mmask8 m = rem >= kLanes ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << rem) - 1u);
    acc = _mm512_add_pd(acc, _mm512_abs_pd(_mm512_maskz_loadu_pd(m, r + i)));
  }
  double beta = _mm512_reduce_add_pd(acc) / static_cast<double>(n);

  for (int k = 0; k < order; ++k) {
    betas[k] = beta;
    const bool last = k + 1 == order;
    const __m512d vb = _mm512_set1_pd(beta);
    __m512d vnext = zero;
    for (std::size_t g = 0; g < groups; ++g) {
      double* rg = r + g * cg;
      word_t* wg = bits + k * ldbits + g * gw;
      for (std::size_t w = 0; w < gw; ++w) {
        const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
        word_t word = 0;
        for (std::size_t j = i0; j < i1; j += kLanes) {
          const std::size_t rem = i1 - j;
          const __mmask8 m = rem >= kLanes ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << rem) - 1u);
          __m512d v = _mm512_maskz_loadu_pd(m, rg + j);
          const __mmask8 neg = _mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ);
          word |= static_cast<word_t>(neg) << (j - i0);
          if (!last) {
            v = _mm512_mask_add_pd(_mm512_sub_pd(v, vb), neg, v, vb);
            _mm512_mask_storeu_pd(rg + j, m, v);
            vnext = _mm512_mask_add_pd(vnext, m, vnext, _mm512_abs_pd(v));
          }
        }
        wg[w] = word;
      }
    }
    beta = _mm512_reduce_add_pd(vnext) / static_cast<double>(n);
  }
}

}  // namespace horq

namespace horq {

// Taps variant (quantize.h): 8 values per step from a zero-masked float load widened to double, the
// residual chain of pass k as masked add/sub, bits straight from the compare mask; masked-off lanes
// neither set bits nor count in beta.
void quantize_taps_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 8;
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const __m512d zero = _mm512_setzero_pd();
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    __m512d vb[kMaxOrder];
    for (int j = 0; j + 1 < k; ++j) vb[j] = _mm512_set1_pd(betas[j]);
    const double pad = padding_residual(betas, k);
    __m512d acc = zero;
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
        for (std::size_t i = i0; i < i1; i += kLanes) {
          const std::size_t rem = i1 - i;
          const __mmask8 m = rem >= kLanes ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << rem) - 1u);
          __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i));
          for (int j = 0; j + 1 < k; ++j) {
            const __mmask8 neg = _mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ);
            v = _mm512_mask_add_pd(_mm512_sub_pd(v, vb[j]), neg, v, vb[j]);
          }
          word |= static_cast<word_t>(_mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ)) << (i - i0);
          acc = _mm512_mask_add_pd(acc, m, acc, _mm512_abs_pd(v));
        }
        wg[w] = word;
      }
    }
    betas[k - 1] = (sum + _mm512_reduce_add_pd(acc)) / static_cast<double>(n);
  }
}

namespace {

// One block of up to 16 * NV pixels starting at w0 (rem >= 16 * (NV - 1) + 1 of them), its words and sums
// in registers across all channels; returns the NaN/Inf lanes seen.
template <int NV>
__mmask16 pack_block(const float* src, std::size_t cstride, std::size_t nchan, std::size_t w0, std::size_t rem,
                     word_t* words, std::size_t wstride, double* sums, const float* scale, const float* shift) {
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
  const __m512 zero = _mm512_setzero_ps();
  __mmask16 m[NV], bad = 0;
  __m512i lo[NV], hi[NV];
  __m512d slo[NV], shi[NV];
  for (int v = 0; v < NV; ++v) {
    const std::size_t r = rem - 16 * v;
    m[v] = r >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << r) - 1u);
    lo[v] = hi[v] = _mm512_setzero_si512();
    slo[v] = _mm512_maskz_loadu_pd(static_cast<__mmask8>(m[v]), sums + w0 + 16 * v);
    shi[v] = _mm512_maskz_loadu_pd(static_cast<__mmask8>(m[v] >> 8), sums + w0 + 16 * v + 8);
  }
  for (std::size_t c = 0; c < nchan; ++c) {
    const __m512i bit = _mm512_set1_epi64(static_cast<long long>(word_t{1} << c));
    const __m512 a = _mm512_set1_ps(scale ? scale[c] : 1.0f), b = _mm512_set1_ps(scale ? shift[c] : 0.0f);
    for (int v = 0; v < NV; ++v) {
      __m512 x = _mm512_maskz_loadu_ps(m[v], src + c * cstride + w0 + 16 * v);
      if (scale) x = _mm512_add_ps(_mm512_mul_ps(x, a), b);
      bad |= _mm512_mask_cmpeq_epi32_mask(m[v], _mm512_and_si512(_mm512_castps_si512(x), exp_mask), exp_mask);
      const __mmask16 neg = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
      lo[v] = _mm512_mask_or_epi64(lo[v], static_cast<__mmask8>(neg), lo[v], bit);
      hi[v] = _mm512_mask_or_epi64(hi[v], static_cast<__mmask8>(neg >> 8), hi[v], bit);
      const __m512 ax = _mm512_abs_ps(x);
      slo[v] = _mm512_add_pd(slo[v], _mm512_cvtps_pd(_mm512_castps512_ps256(ax)));
      shi[v] = _mm512_add_pd(shi[v], _mm512_cvtps_pd(_mm512_extractf32x8_ps(ax, 1)));
    }
  }
  for (int v = 0; v < NV; ++v) {
    _mm512_mask_storeu_pd(sums + w0 + 16 * v, static_cast<__mmask8>(m[v]), slo[v]);
    _mm512_mask_storeu_pd(sums + w0 + 16 * v + 8, static_cast<__mmask8>(m[v] >> 8), shi[v]);
    alignas(64) word_t out[16];
    _mm512_store_si512(out, lo[v]);
    _mm512_store_si512(out + 8, hi[v]);
    const std::size_t r = rem - 16 * v, n = r >= 16 ? 16 : r;
    for (std::size_t i = 0; i < n; ++i) words[(w0 + 16 * v + i) * wstride] = out[i];
  }
  return bad;
}

}  // namespace

// Up to 64 pixels at a time (4 vectors) with their words and sums in registers across all channels, so a
// channel's row is read as one run (a row of a 56-wide map in one pass, not four: the channel planes are
// far apart, and revisiting them per 16 pixels cost TLB and cache misses). Per channel and vector: one
// load, a compare to a mask for the signs (ORed into the words' lanes as bit c), one for NaN/Inf, and |x|
// widened to double and added per lane in channel order (the generic sums bit for bit).
std::uint32_t pack_pixels_avx512(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                 word_t* words, std::size_t wstride, double* sums, const float* scale,
                                 const float* shift) {
  __mmask16 bad = 0;
  for (std::size_t w0 = 0; w0 < W; w0 += 64) {
    const std::size_t rem = W - w0;
    switch (rem > 48 ? 4 : rem > 32 ? 3 : rem > 16 ? 2 : 1) {
      case 4: bad |= pack_block<4>(src, cstride, nchan, w0, rem, words, wstride, sums, scale, shift); break;
      case 3: bad |= pack_block<3>(src, cstride, nchan, w0, rem, words, wstride, sums, scale, shift); break;
      case 2: bad |= pack_block<2>(src, cstride, nchan, w0, rem, words, wstride, sums, scale, shift); break;
      default: bad |= pack_block<1>(src, cstride, nchan, w0, rem, words, wstride, sums, scale, shift); break;
    }
  }
  return bad ? 1u : 0u;
}

// Order 2 of a conv column from its taps (quantize.h, quantize_taps2): the AVX2 version's exact float32
// thresholds, 16 values per step, the H_2 bits straight from mask registers (x < 0 selects which threshold
// applies: |x| > floor32(beta_1) for negative x, |x| < ceil32(beta_1) otherwise). beta_2 sums
// | |x| - beta_1 | in float32 lanes per 64-value word, then in double: a different summation order from
// the AVX2 lanes, so the paths agree to float32 rounding of beta_2 (the bits are identical).
void quantize_taps2_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                           std::size_t ldbits, double* betas) {
  constexpr std::size_t kLanes = 16;
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const Threshold32 th(betas[0]);
  const __m512 zero = _mm512_setzero_ps();
  const __m512 up = _mm512_set1_ps(th.up), ndown = _mm512_set1_ps(-th.down), nearest = _mm512_set1_ps(th.nearest);
  word_t* row = bits + ldbits;
  __m512d acc = _mm512_setzero_pd();
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
      __m512 part = zero;
      for (std::size_t i = i0; i < i1; i += kLanes) {
        const std::size_t rem = i1 - i;
        const __mmask16 m = rem >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        // r_1 < 0: x < -floor32(beta_1) (negative x), or 0 <= x < ceil32(beta_1); -0.0 counts as >= 0.
        const __mmask16 ge0 = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GE_OQ);
        const __mmask16 neg_r = static_cast<__mmask16>(_mm512_mask_cmp_ps_mask(m, v, ndown, _CMP_LT_OQ) |
                                                       _mm512_mask_cmp_ps_mask(ge0, v, up, _CMP_LT_OQ));
        word |= static_cast<word_t>(neg_r) << (i - i0);
        part = _mm512_mask_add_ps(part, m, part, _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(v), nearest)));
      }
      wg[w] = word;
      acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(part)),
                                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(part, 1))));
    }
  }
  betas[1] = (sum + _mm512_reduce_add_pd(acc)) / static_cast<double>(n);
}

}  // namespace horq
