#pragma once
#include "core/types.h"

namespace horq {

// Packs `rows` rows of `n` floats (row r starts at x + r * row_stride) into rows of words_for(n)
// words each, under the convention of types.h.
void pack_signs_generic(const float* x, std::size_t rows, std::size_t n, std::size_t row_stride,
                        word_t* out);

}  // namespace horq
