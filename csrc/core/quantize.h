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

}  // namespace horq
