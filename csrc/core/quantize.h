// Order-K residual binarization of one column, packed (HORQ.md "Inputs"):
//   r_0 = x;  for k = 1..K:  H_k = sign(r_{k-1}),  beta_k = mean |r_{k-1}|,  r_k = r_{k-1} - beta_k H_k.
// Since H_k = sign(r_{k-1}), r_k = r_{k-1} + beta_k where r_{k-1} < 0 and r_{k-1} - beta_k elsewhere, so one
// pass per order packs H_k from a compare mask, updates r and sums |r_k| for beta_{k+1}.
//
// The arithmetic is double precision: the bits are thresholds of the residual against zero, and float32
// rounding of beta and r would flip bits near a threshold (a few per million values), which the float64
// reference (horq.reference) would count as errors. With doubles only exact ties can disagree.
#pragma once
#include "core/types.h"

namespace horq {

// r: the column, `groups * cg` values, group g at r + g * cg (a conv column is kh*kw pixel groups of C
// channels; a linear column is one group). Overwritten with residuals.
// bits: `order` rows of ldbits words; row k holds H_{k+1}, group g in words [g*gw, (g+1)*gw), gw = words_for(cg),
// with the unused bits of each group's last word zero (the weights are laid out the same way).
// betas: `order` values. A non-finite x gives a non-finite betas[0] (the caller's NaN/Inf check).
using quantize_fn = void (*)(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas);

void quantize_column_generic(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas);
void quantize_column_avx2(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas);
void quantize_column_avx512(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                            std::size_t ldbits, double* betas);

// Orders 2..order of one convolution column read straight from its taps, with H_1 and beta_1 already
// known (the caller packs sign(x) once per pixel and gets beta_1 as a box sum, conv.cpp).
// taps[t]: the `cg` input values of tap t (a pixel's channels, contiguous floats), or nullptr for a
// padding tap (all zeros). Pass k = 2..order recomputes the residual of every value from x,
//     r_{k-1} = (((x - beta_1 H_1) - beta_2 H_2) ... - beta_{k-1} H_{k-1}),  H_j = sign(r_{j-1}),
// in double with the very roundings of the stored-residual loop above (each step is r -+ beta_j), packs
// H_k = sign(r_{k-1}) into row k-1 of bits (same layout as quantize_column) and sums |r_{k-1}| into
// betas[k-1] = beta_k. So no float column is materialized and nothing is written but bits; the cost is
// O(k) per value in pass k, which is cheaper than streaming a stored residual for the orders used (<= 3).
// betas[0] (beta_1) is read, betas[1..order-1] written; row 0 of bits is not touched.
using quantize_taps_fn = void (*)(const float* const* taps, std::size_t ntaps, std::size_t cg, int order,
                                  word_t* bits, std::size_t ldbits, double* betas);

void quantize_taps_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                           std::size_t ldbits, double* betas);
void quantize_taps_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                        std::size_t ldbits, double* betas);
void quantize_taps_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas);

// Shared by the ISA versions: a padding tap's residual chain is the same for every value of the tap.
// Returns r_{k-1} for x = 0 under betas[0..k-2].
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

}  // namespace horq
