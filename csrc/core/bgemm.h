// Binary GEMM: popcount(A_i XOR B_j) for every row pair, the core of every binary dot product.
//
// Why popcounts (docs/MATH.md "Bit convention", "Output"): with bit 1 for -1 and bit 0 for +1, the product
// a_i b_i of two +-1 values is +1 where their bits agree and -1 where they differ, i.e. where a XOR b has a
// 1. Over n values with d = popcount(a XOR b) disagreements, a . b = (n - d) - d = n - 2 d. Padding bits
// past n are zero in both operands, so their XOR is zero and they add nothing to d; n stays the true
// length. The callers (gemm_driver.cpp) apply n - 2 d and the scales; the kernels only count.
//
// One portable version (bgemm_generic.cpp, the reference the others are tested against) and one per ISA
// (bgemm_avx2.cpp, bgemm_avx512.cpp), each a register-tile micro-kernel run by the shared walk below.
#pragma once
#include "core/types.h"

namespace horq {

// c[i * ldc + j] = sum_w popcount(a[i * kw + w] ^ b[j * kw + w])  for i < m, j < nb.
// Rows are contiguous, kw words each; nothing outside the rows is read (kOverReadWords == 0).
// Counts are 32-bit: n = 64 * kw < 2^31 is checked by the callers.
using bgemm_fn = void (*)(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                          std::int32_t* c, std::size_t ldc);

void bgemm_popcount_generic(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                            std::int32_t* c, std::size_t ldc);
void bgemm_popcount_avx2(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                         std::int32_t* c, std::size_t ldc);
void bgemm_popcount_avx512(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                           std::int32_t* c, std::size_t ldc);

// The tile walk every ISA shares: (m x nb) cut into MR x NR register tiles, row-tile after column-tile. The
// rows of an edge tile that fall outside the matrix repeat the tile's first row (their counts are computed
// and dropped), so each ISA writes one full-tile micro-kernel and no edge cases. row_a(r) / row_b(r) give
// what the micro-kernel reads of row r (a pointer to its words, or more: AVX2 also hands a pre-split copy);
// tile(arows, brows, out) sets out[i][j] = popcount(arows[i] ^ brows[j]) over the whole row. The walk is
// inlined into each ISA's bgemm_popcount_* with its micro-kernel (a template argument or a lambda, never a
// function pointer), so the tile loop makes no indirect call and the kernel keeps its registers.
template <int MR, int NR, class RowA, class RowB, class Tile>
[[gnu::always_inline]] inline void bgemm_walk(std::size_t m, std::size_t nb, std::int32_t* c, std::size_t ldc,
                                              RowA row_a, RowB row_b, Tile tile) {
  using A = decltype(row_a(std::size_t{0}));
  using B = decltype(row_b(std::size_t{0}));
  for (std::size_t j0 = 0; j0 < nb; j0 += NR) {
    B brows[NR];
    for (int j = 0; j < NR; ++j) brows[j] = row_b(j0 + j < nb ? j0 + j : j0);
    for (std::size_t i0 = 0; i0 < m; i0 += MR) {
      A arows[MR];
      for (int i = 0; i < MR; ++i) arows[i] = row_a(i0 + i < m ? i0 + i : i0);
      std::uint64_t out[MR][NR];
      tile(arows, brows, out);
      for (int i = 0; i < MR && i0 + i < m; ++i)
        for (int j = 0; j < NR && j0 + j < nb; ++j)
          c[(i0 + i) * ldc + j0 + j] = static_cast<std::int32_t>(out[i][j]);
    }
  }
}

// Micro-kernel over plain rows of kw words: out[i][j] = popcount(ar[i] ^ br[j]) summed over the kw words.
template <int NR>
using bgemm_tile_fn = void (*)(const word_t* const* ar, const word_t* const* br, std::size_t kw,
                               std::uint64_t (*out)[NR]);

// The walk over plain rows of kw words. The micro-kernel is a template argument, so the walk calls it
// directly and the compiler can inline it.
template <int MR, int NR, bgemm_tile_fn<NR> Tile>
[[gnu::always_inline]] inline void bgemm_walk_words(const word_t* a, std::size_t m, const word_t* b, std::size_t nb,
                                                    std::size_t kw, std::int32_t* c, std::size_t ldc) {
  bgemm_walk<MR, NR>(
      m, nb, c, ldc, [a, kw](std::size_t r) { return a + r * kw; }, [b, kw](std::size_t r) { return b + r * kw; },
      [kw](const word_t* const* ar, const word_t* const* br, std::uint64_t (*out)[NR]) { Tile(ar, br, kw, out); });
}

}  // namespace horq
