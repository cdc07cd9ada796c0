// The loops the quantize_*.cpp files share (operations declared in quantize.h), templated on each ISA's pass
// over one word of values, so an ISA file holds its intrinsics and nothing else.
//
// A pass object lives for one order k. Its word(...) packs the bits of values [i0, i1) of one 64-bit word
// and adds what it sums into its own accumulators (or into the walk's scalar `sum`, which it is handed);
// its total(sum) adds everything up in that ISA's fixed order. The walks below fix which words are visited
// in which order and where padding taps go, so every path visits the same values the same way, and each
// path's sums depend on nothing but the column (not on threads or on the tap's position in memory).
#pragma once
#include <cmath>

#include "core/quantize.h"

namespace horq {

// One past the last value of word w of a group of cg values.
inline std::size_t word_end(std::size_t w, std::size_t cg) {
  const std::size_t i1 = (w + 1) * kWordBits;
  return i1 < cg ? i1 : cg;
}

// quantize_column_*: Pass(beta) for the order being packed; Pass::abs_sum(r, n) = sum |r_i| (beta_1 * n);
// word<update>(rg, i0, i1) packs sign(r) and, with `update`, stores r -+ beta and sums its |.|;
// total() = the sum of |r_k| over the column, for beta_{k+1}. The last order packs without updating.
template <class Pass>
void column_walk(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits, std::size_t ldbits,
                 double* betas) {
  const std::size_t n = groups * cg, gw = words_for(cg);
  double beta = Pass::abs_sum(r, n) / static_cast<double>(n);
  for (int k = 0; k < order; ++k) {
    betas[k] = beta;
    const bool last = k + 1 == order;
    Pass pass(beta);
    for (std::size_t g = 0; g < groups; ++g) {
      double* rg = r + g * cg;
      word_t* wg = bits + k * ldbits + g * gw;
      for (std::size_t w = 0; w < gw; ++w)
        wg[w] = last ? pass.template word<false>(rg, w * kWordBits, word_end(w, cg))
                     : pass.template word<true>(rg, w * kWordBits, word_end(w, cg));
    }
    beta = pass.total() / static_cast<double>(n);
  }
}

// A padding tap's residual chain is the same for every value of the tap: r_{k-1} for x = 0 under
// betas[0..k-2].
inline double padding_residual(const double* betas, int k) {
  double r = 0.0;
  for (int j = 0; j + 1 < k; ++j) r -= betas[j] * (1.0 - 2.0 * static_cast<double>(r < 0.0));
  return r;
}

// Packs a padding tap's bits (all values have bit `neg`) into its gw words of a row.
inline void fill_padding_words(word_t* words, std::size_t cg, bool neg) {
  const std::size_t gw = words_for(cg);
  for (std::size_t w = 0; w < gw; ++w) {
    const std::size_t nbits = cg - w * kWordBits < kWordBits ? cg - w * kWordBits : kWordBits;
    words[w] = neg ? (nbits == kWordBits ? ~word_t{0} : (word_t{1} << nbits) - 1) : word_t{0};
  }
}

// quantize_taps_*: Pass(betas, steps) for order k = steps + 1; word(x, i0, i1, sum) packs
// sign(r_{k-1}) of x[i0..i1) (each value's chain of `steps` residual steps recomputed from x) and sums
// |r_{k-1}|; total(sum) = the pass's sum with `sum` (padding taps, in tap order, and whatever the pass put there).
template <class Pass>
void taps_walk(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
               std::size_t ldbits, double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    const double pad = padding_residual(betas, k);
    Pass pass(betas, k - 1);
    double sum = 0.0;
    for (std::size_t t = 0; t < ntaps; ++t) {
      word_t* wg = row + t * gw;
      const float* x = taps[t];
      if (!x) {
        fill_padding_words(wg, cg, pad < 0.0);
        sum += std::fabs(pad) * static_cast<double>(cg);
        continue;
      }
      for (std::size_t w = 0; w < gw; ++w) wg[w] = pass.word(x, w * kWordBits, word_end(w, cg), sum);
    }
    betas[k - 1] = pass.total(sum) / static_cast<double>(n);
  }
}

// beta_1 rounded to float32 three ways: nearest (for |a - beta_1|), up and down (the exact thresholds of
// quantize_taps2, quantize.h).
struct Threshold32 {
  float nearest, up, down;
  explicit Threshold32(double b) : nearest(static_cast<float>(b)), up(nearest), down(nearest) {
    if (static_cast<double>(nearest) < b) up = std::nextafter(nearest, HUGE_VALF);
    if (static_cast<double>(nearest) > b) down = std::nextafter(nearest, -HUGE_VALF);
  }
};

// Order 2 of a padding tap (x = 0 in all cg values): r_1 = -beta_1 is negative unless beta_1 = 0, so every
// bit is (beta_1 > 0); the tap's part of beta_2's sum is |r_1| * cg = beta_1 * cg, returned.
inline double order2_padding_tap(word_t* words, std::size_t cg, double beta1) {
  fill_padding_words(words, cg, beta1 > 0.0);
  return beta1 * static_cast<double>(cg);
}

// quantize_taps2_*: Pass(th) from beta_1's thresholds; word(x, i0, i1, sum) packs H_2 of x[i0..i1) and
// sums | |x| - beta_1 |; total(sum) as for taps_walk.
template <class Pass>
void taps2_walk(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits, std::size_t ldbits,
                double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  Pass pass{Threshold32(betas[0])};
  word_t* row = bits + ldbits;
  double sum = 0.0;
  for (std::size_t t = 0; t < ntaps; ++t) {
    word_t* wg = row + t * gw;
    const float* x = taps[t];
    if (!x) {
      sum += order2_padding_tap(wg, cg, betas[0]);
      continue;
    }
    for (std::size_t w = 0; w < gw; ++w) wg[w] = pass.word(x, w * kWordBits, word_end(w, cg), sum);
  }
  betas[1] = pass.total(sum) / static_cast<double>(n);
}

}  // namespace horq
