// Training side of the HORQ layers (src/horq/nn/native_train.py): what the backward pass needs from the
// columns the forward pass quantized.
//
// The straight-through weight gradient of a binary layer is dW~ = G^T A, where G holds the output gradients
// (one row per column j) and A the quantized input, A[j, :] = sum_k beta_{k,j} H_{k,j} (HORQ.md "Inputs";
// the betas are constants in the backward pass). A is rebuilt here from the packed bits and betas the forward
// pass kept -- K bits and K doubles per column instead of a float copy of the unfolded input -- a block of
// columns at a time, so the caller's float GEMM G^T A never holds more than one block.
#pragma once
#include <cstddef>

#include "core/types.h"

namespace horq {

// Columns [col0, col1) of a QuantizedColumns (layer.h) as floats: out[(j - col0) * n + i] =
// float(sum_k beta_{k,j} * (1 - 2 bit_{k,j}(i))), the sum taken in float32 in the order k = 1..K (the
// arithmetic of the torch path, horq.nn.quant). `i` runs over the column's n = groups * cg values in the
// order the bits store them: `groups` groups of `cg` bits, group g starting at word g * gw (the conv layout
// of layer.h: groups = kh*kw taps of C channels, gw = words_for(C); or one group of n bits, compact/linear).
// bits: row (j * order + k) of `ldbits` words holds H_{k+1} of column j; betas: (j * order + k).
void expand_columns(const word_t* bits, const double* betas, std::size_t ldbits, int order, std::size_t groups,
                    std::size_t cg, std::size_t gw, std::size_t col0, std::size_t col1, float* out);

}  // namespace horq
