// Portable residual binarization of one column (arithmetic derived in quantize.h), scalar double.
#include <cmath>
#include <cstring>

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

namespace {

// One pass (order k) over a tap's words. KC = k - 1 residual steps when known at compile time (the
// common orders), else kc. Four partial sums of |r| keep the double adds from forming one long
// dependency chain; their order is fixed, so the result depends on nothing but the column.
template <int KC>
void taps_pass(const float* x, std::size_t cg, const double* betas_in, int kc, word_t* wg, double* part) {
  const int steps = KC >= 0 ? KC : kc;
  double betas[kMaxOrder];
  for (int j = 0; j < steps; ++j) betas[j] = betas_in[j];
  double p0 = part[0], p1 = part[1], p2 = part[2], p3 = part[3];
  const std::size_t gw = words_for(cg);
  auto residual = [&](float xv) {
    double v = xv;
    for (int j = 0; j < steps; ++j) v -= betas[j] * (1.0 - 2.0 * static_cast<double>(v < 0.0));
    return v;
  };
  for (std::size_t w = 0; w < gw; ++w) {
    const std::size_t i0 = w * kWordBits, i1 = i0 + kWordBits < cg ? i0 + kWordBits : cg;
    word_t word = 0;
    std::size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
      const double v0 = residual(x[i]), v1 = residual(x[i + 1]), v2 = residual(x[i + 2]), v3 = residual(x[i + 3]);
      const word_t nib = static_cast<word_t>(v0 < 0.0) | static_cast<word_t>(v1 < 0.0) << 1 |
                         static_cast<word_t>(v2 < 0.0) << 2 | static_cast<word_t>(v3 < 0.0) << 3;
      word |= nib << (i - i0);
      p0 += std::fabs(v0);
      p1 += std::fabs(v1);
      p2 += std::fabs(v2);
      p3 += std::fabs(v3);
    }
    for (; i < i1; ++i) {
      const double v = residual(x[i]);
      word |= static_cast<word_t>(v < 0.0) << (i - i0);
      p0 += std::fabs(v);
    }
    wg[w] = word;
  }
  part[0] = p0, part[1] = p1, part[2] = p2, part[3] = p3;
}

}  // namespace

void quantize_taps_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                           std::size_t ldbits, double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    const double pad = padding_residual(betas, k);
    double part[4] = {0.0, 0.0, 0.0, 0.0}, sum = 0.0;
    for (std::size_t t = 0; t < ntaps; ++t) {
      word_t* wg = row + t * gw;
      const float* x = taps[t];
      if (!x) {
        fill_padding_words(wg, cg, pad < 0.0);
        sum += std::fabs(pad) * static_cast<double>(cg);
      } else if (k == 2) {
        taps_pass<1>(x, cg, betas, k - 1, wg, part);
      } else if (k == 3) {
        taps_pass<2>(x, cg, betas, k - 1, wg, part);
      } else {
        taps_pass<-1>(x, cg, betas, k - 1, wg, part);
      }
    }
    betas[k - 1] = (sum + (part[0] + part[1]) + (part[2] + part[3])) / static_cast<double>(n);
  }
}

void quantize_taps2_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                            std::size_t ldbits, double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const Threshold32 th(betas[0]);
  word_t* row = bits + ldbits;
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
      float part = 0.0f;
      for (std::size_t i = i0; i < i1; ++i) {
        const float v = x[i], a = std::fabs(v);
        const bool neg_r = v < 0.0f ? a > th.down : a < th.up;
        word |= static_cast<word_t>(neg_r) << (i - i0);
        part += std::fabs(a - th.nearest);
      }
      wg[w] = word;
      sum += static_cast<double>(part);
    }
  }
  betas[1] = sum / static_cast<double>(n);
}

// One channel at a time along the contiguous row: every pixel has its own accumulators, so the loop
// vectorizes over w and each pixel's sum still adds its channels in order.
std::uint32_t pack_pixels_generic(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                  word_t* words, std::size_t wstride, double* sums, const float* scale,
                                  const float* shift) {
  constexpr std::uint32_t kExpMask = 0x7f800000u;  // float exponent bits: all ones for NaN and +-Inf
  for (std::size_t w = 0; w < W; ++w) words[w * wstride] = 0;
  std::uint32_t bad = 0;
  for (std::size_t c = 0; c < nchan; ++c) {
    const float* __restrict v = src + c * cstride;
    const float a = scale ? scale[c] : 1.0f, b = scale ? shift[c] : 0.0f;
    for (std::size_t w = 0; w < W; ++w) {
      const float x = scale ? v[w] * a + b : v[w];
      std::uint32_t u;
      std::memcpy(&u, &x, sizeof u);
      bad |= (u & kExpMask) == kExpMask ? 1u : 0u;
      sums[w] += std::fabs(static_cast<double>(x));
      words[w * wstride] |= static_cast<word_t>(x < 0.0f ? 1 : 0) << c;
    }
  }
  return bad;
}

}  // namespace horq
