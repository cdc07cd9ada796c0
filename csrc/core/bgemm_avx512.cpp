// AVX-512 binary GEMM (bgemm.h), 4x4 register tile (compiled with -mavx512f/bw/vl/dq/vpopcntdq; selected
// only when the CPU and OS report AVX512F + BW + VL + DQ + VPOPCNTDQ). Counts popcount(a ^ b) for
// a . b = n - 2 popcount(a ^ b); bgemm_generic.cpp is the reference.
//
// Arithmetic: vpopcntq counts each 64-bit lane of a 512-bit XOR directly, and the counts are summed in
// 64-bit lanes (no overflow for any row length). At the end of the rows the 16 accumulators' lanes are added
// across them (reduce_tile: 42 vector operations where 16 horizontal adds took ~110). The row tail (kw % 8 words) is
// read with a zero-masked load (zero words XOR to zero and count nothing), so nothing past the row is touched, and
// counted first: the accumulators start from its counts. A tail of at most 4 words goes through 256-bit operations,
// whose results leave the upper lanes zero (half the work of a 512-bit step on CPUs that split those in two, as AMD
// Zen 4 does: a 36-word row's masked 512-bit tail was an eighth of its tile's work).
//
// Tile: 4x4 = 16 accumulators + 4 A rows + 1 B row = 21 of the 32 zmm registers; each loaded vector
// feeds 4 XORs, twice the reuse of a 2x4 tile. The columns past the last whole 4 go one at a time through 8 x 1
// tiles (bgemm_popcount_avx512; the avx2 path has its few_columns for the same case).
#include <immintrin.h>

#include "core/bgemm.h"

namespace horq {
namespace {

constexpr int kMR = 4, kNR = 4;
constexpr int kColumnRows = 8;  // rows of the tiles of the last columns (8 x 1)
constexpr std::size_t kWordsPerVec = 8;

// Two accumulators' lane pairs added: lanes 2l and 2l + 1 of the result hold a's and b's lanes 2l + 2l + 1.
inline __m512i add_pairs(__m512i a, __m512i b) {
  return _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

// 128-bit lanes 0 + 1 and 2 + 3 of a, then of b (the lanes of a result: a's pair, a's pair, b's, b's).
inline __m512i add_halves(__m512i a, __m512i b) {
  return _mm512_add_epi64(_mm512_shuffle_i64x2(a, b, 0x88), _mm512_shuffle_i64x2(a, b, 0xdd));
}

// out[i][j] = the sum of acc[i][j]'s eight lanes, for a 4 x 4 tile's 16 accumulators: per row i, add_pairs of columns
// (0, 1) and (2, 3), then add_halves of those (128-bit lane l then holds columns (0, 1) or (2, 3)'s partial sums), and
// add_halves of rows (0, 1) and (2, 3): 64-bit lane 4 r + j of the last two vectors is row 2 h + r's column j.
void reduce_tile(const __m512i (&acc)[4][4], std::uint64_t (*out)[4]) {
  __m512i row[4];
  for (int i = 0; i < 4; ++i) row[i] = add_halves(add_pairs(acc[i][0], acc[i][1]), add_pairs(acc[i][2], acc[i][3]));
  _mm512_storeu_si512(out[0], add_halves(row[0], row[1]));
  _mm512_storeu_si512(out[2], add_halves(row[2], row[3]));
}

// The same for an 8 x 1 tile: add_pairs of rows (0, 1) .. (6, 7), add_halves of those two by two (lanes (r, r + 1) of
// each half), and add_halves of the two results: lane r is row r.
void reduce_tile(const __m512i (&acc)[8][1], std::uint64_t (*out)[1]) {
  const __m512i p01 = add_pairs(acc[0][0], acc[1][0]), p23 = add_pairs(acc[2][0], acc[3][0]);
  const __m512i p45 = add_pairs(acc[4][0], acc[5][0]), p67 = add_pairs(acc[6][0], acc[7][0]);
  _mm512_storeu_si512(out[0], add_halves(add_halves(p01, p23), add_halves(p45, p67)));
}

// An MR x NR tile: the row tail first (its counts start the accumulators), then the whole vectors, then reduce_tile.
template <int MR, int NR>
void tile(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[NR]) {
  __m512i acc[MR][NR];
  const std::size_t nvec = kw / kWordsPerVec, tail = kw % kWordsPerVec, toff = nvec * kWordsPerVec;
  const __mmask8 tmask = static_cast<__mmask8>((1u << tail) - 1u);
  if (tail == 0) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  } else if (tail <= kWordsPerVec / 2) {
    __m256i a[MR];
    for (int i = 0; i < MR; ++i) a[i] = _mm256_maskz_loadu_epi64(tmask, ar[i] + toff);
    for (int j = 0; j < NR; ++j) {
      const __m256i bj = _mm256_maskz_loadu_epi64(tmask, br[j] + toff);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_zextsi256_si512(_mm256_popcnt_epi64(_mm256_xor_si256(a[i], bj)));
    }
  } else {
    __m512i a[MR];
    for (int i = 0; i < MR; ++i) a[i] = _mm512_maskz_loadu_epi64(tmask, ar[i] + toff);
    for (int j = 0; j < NR; ++j) {
      const __m512i bj = _mm512_maskz_loadu_epi64(tmask, br[j] + toff);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_popcnt_epi64(_mm512_xor_si512(a[i], bj));
    }
  }

  for (std::size_t v = 0; v < nvec; ++v) {
    const std::size_t off = v * kWordsPerVec;
    __m512i a[MR];
    for (int i = 0; i < MR; ++i) a[i] = _mm512_loadu_si512(ar[i] + off);
    for (int j = 0; j < NR; ++j) {
      const __m512i bj = _mm512_loadu_si512(br[j] + off);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(a[i], bj)));
    }
  }
  reduce_tile(acc, out);
}

}  // namespace

// Whole groups of 4 columns by 4 x 4 tiles; the last nb % 4 columns (a linear layer's one sample at order 1, two at
// order 2) one at a time by 8 x 1 tiles, instead of 4 x 4 tiles whose missing columns repeat the first (at batch 1
// three quarters of the work, dropped: mnist-cnn's 3136 -> 256 binary layer, docs/KERNELS.md round 42).
void bgemm_popcount_avx512(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                           std::int32_t* c, std::size_t ldc) {
  const std::size_t whole = nb / kNR * kNR;
  if (whole) bgemm_walk_words<kMR, kNR, tile<kMR, kNR>>(a, m, b, whole, kw, c, ldc);
  if (whole < nb) bgemm_walk_words<kColumnRows, 1, tile<kColumnRows, 1>>(a, m, b + whole * kw, nb - whole, kw,
                                                                         c + whole, ldc);
}

}  // namespace horq
