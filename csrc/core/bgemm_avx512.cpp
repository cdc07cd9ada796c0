// AVX-512 binary GEMM (bgemm.h), 4x4 register tile (compiled with -mavx512f/bw/vl/dq/vpopcntdq; selected
// only when the CPU and OS report AVX512F + BW + VL + DQ + VPOPCNTDQ). Counts popcount(a ^ b) for
// a . b = n - 2 popcount(a ^ b); bgemm_generic.cpp is the reference.
//
// Arithmetic: vpopcntq counts each 64-bit lane of a 512-bit XOR directly, and the counts are summed in
// 64-bit lanes (no overflow for any row length); one horizontal add per pair at the end of the row. The
// row tail (kw % 8 words) is read with a zero-masked load (zero words XOR to zero and count nothing), so
// nothing past the row is touched.
//
// Tile: 4x4 = 16 accumulators + 4 A rows + 1 B row = 21 of the 32 zmm registers; each loaded vector
// feeds 4 XORs, twice the reuse of a 2x4 tile.
#include <immintrin.h>

#include "core/bgemm.h"

namespace horq {
namespace {

constexpr int kMR = 4, kNR = 4;
constexpr std::size_t kWordsPerVec = 8;

void tile_4x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  __m512i acc[kMR][kNR];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_setzero_si512();

  const std::size_t nvec = kw / kWordsPerVec;
  for (std::size_t v = 0; v < nvec; ++v) {
    const std::size_t off = v * kWordsPerVec;
    __m512i a[kMR];
    for (int i = 0; i < kMR; ++i) a[i] = _mm512_loadu_si512(ar[i] + off);
    for (int j = 0; j < kNR; ++j) {
      const __m512i bj = _mm512_loadu_si512(br[j] + off);
      for (int i = 0; i < kMR; ++i)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(a[i], bj)));
    }
  }
  const std::size_t tail = kw % kWordsPerVec;
  if (tail) {
    const std::size_t off = nvec * kWordsPerVec;
    const __mmask8 mask = static_cast<__mmask8>((1u << tail) - 1u);
    __m512i a[kMR];
    for (int i = 0; i < kMR; ++i) a[i] = _mm512_maskz_loadu_epi64(mask, ar[i] + off);
    for (int j = 0; j < kNR; ++j) {
      const __m512i bj = _mm512_maskz_loadu_epi64(mask, br[j] + off);
      for (int i = 0; i < kMR; ++i)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(a[i], bj)));
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc[i][j]));
}

}  // namespace

void bgemm_popcount_avx512(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                           std::int32_t* c, std::size_t ldc) {
  bgemm_walk_words<kMR, kNR, tile_4x4>(a, m, b, nb, kw, c, ldc);
}

}  // namespace horq
