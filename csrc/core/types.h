// The bit convention of horq, written once for C++ (its Python twin is src/horq/bits.py).
//
//   * one bit per value; bit = 1 means the value is -1 (x < 0); sign(0) = +1, so 0 packs to bit 0;
//   * bits fill each 64-bit word least-significant bit first; value i of a row lives in
//     word i / 64, bit i % 64;
//   * the unused bits of a row's last word are zero in every operand;
//   * for two packed rows a, b of n values:  a . b = n - 2 * popcount(a XOR b)  (derived in bgemm.h).
//
// docs/MATH.md "Bit convention" states the same rules for the maths; src/horq/bits.py for Python.
//
// Kernels never over-read: rows are packed back to back with no padding words, and SIMD tails use
// masked loads (kOverReadWords = 0 documents that promise).
#pragma once
#include <cstddef>
#include <cstdint>

namespace horq {

using word_t = std::uint64_t;
constexpr int kWordBits = 64;
constexpr std::size_t kOverReadWords = 0;
// Highest input order the kernels accept: orders 1..kMaxOrder binarize the input; order 0 (binary weights,
// real inputs) is not run natively (docs/MATH.md "Inputs: residual binarization").
constexpr int kMaxOrder = 8;

constexpr std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }
constexpr std::size_t words_for(std::size_t n) { return ceil_div(n, kWordBits); }

// Bit of one value under the convention above.
inline word_t sign_bit(float x) { return x < 0.0f ? word_t{1} : word_t{0}; }

// The convention applied to `rows` rows of `n` floats (row r starts at x + r * row_stride): rows of
// words_for(n) words each, back to back in `out`. This is how weights are packed (horq._core.pack_signs);
// inputs are packed by the fused quantizers (quantize.h), which give these bits for H_1.
inline void pack_signs(const float* x, std::size_t rows, std::size_t n, std::size_t row_stride, word_t* out) {
  const std::size_t nw = words_for(n);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* src = x + r * row_stride;
    word_t* dst = out + r * nw;
    for (std::size_t w = 0; w < nw; ++w) {  // each word built in a register, then stored once
      const std::size_t i0 = w * kWordBits, len = n - i0 < kWordBits ? n - i0 : kWordBits;
      word_t word = 0;
      for (std::size_t b = 0; b < len; ++b) word |= sign_bit(src[i0 + b]) << b;
      dst[w] = word;
    }
  }
}

}  // namespace horq
