// Binary GEMM: popcount(A_i XOR B_j) for every row pair; the caller turns it into a dot product with
// types.h's identity a . b = n - 2 * popcount(a XOR b).
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

// Shared tile walker: cuts (m x nb) into MR x NR register tiles, pointing the rows of an edge tile that
// fall outside the matrix at row 0 (their results are computed and dropped), so each ISA writes one
// full-tile micro-kernel only. `tile(arows, brows, kw, out)` fills out[i][j] for a full tile.
template <int MR, int NR, class Tile>
inline void bgemm_walk(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                       std::int32_t* c, std::size_t ldc, Tile tile) {
  for (std::size_t j0 = 0; j0 < nb; j0 += NR) {
    const word_t* brows[NR];
    for (int j = 0; j < NR; ++j) brows[j] = b + (j0 + j < nb ? j0 + j : j0) * kw;
    for (std::size_t i0 = 0; i0 < m; i0 += MR) {
      const word_t* arows[MR];
      for (int i = 0; i < MR; ++i) arows[i] = a + (i0 + i < m ? i0 + i : i0) * kw;
      std::uint64_t out[MR][NR];
      tile(arows, brows, kw, out);
      for (int i = 0; i < MR && i0 + i < m; ++i)
        for (int j = 0; j < NR && j0 + j < nb; ++j)
          c[(i0 + i) * ldc + j0 + j] = static_cast<std::int32_t>(out[i][j]);
    }
  }
}

}  // namespace horq
