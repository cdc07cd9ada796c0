// Portable sign packing: the reference every ISA-specific packer is tested against.
#include "core/bitpack.h"

namespace horq {

void pack_signs_generic(const float* x, std::size_t rows, std::size_t n, std::size_t row_stride,
                        word_t* out) {
  const std::size_t nw = words_for(n);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* src = x + r * row_stride;
    word_t* dst = out + r * nw;
    for (std::size_t w = 0; w < nw; ++w) dst[w] = 0;
    for (std::size_t i = 0; i < n; ++i) dst[i / kWordBits] |= sign_bit(src[i]) << (i % kWordBits);
  }
}

}  // namespace horq
