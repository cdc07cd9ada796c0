// AVX2 binary GEMM, 2x4 register tile (compiled with -mavx2; selected only when the CPU has AVX2).
//
// Arithmetic: AVX2 has no vector popcount, so each 256-bit XOR is counted with the nibble table
// (vpshufb of a 16-entry popcount LUT on the low and high nibble of every byte). A byte then holds at
// most 8 per step, so a byte accumulator can take kMaxByteSteps = 31 steps (31 * 8 = 248 <= 255) before
// vpsadbw folds it into 64-bit sums. The row tail (kw % 4 words) is the last step of the last block,
// read with a masked load (nothing past the row is touched; masked-off lanes are 0 in both operands, so
// they add nothing). The 8 byte accumulators + 2 A rows + LUT + mask + temporaries fit 16 ymm registers.
#include <immintrin.h>

#include <algorithm>

#include "core/bgemm.h"

namespace horq {
namespace {

constexpr int kMR = 2, kNR = 4;
constexpr std::size_t kWordsPerVec = 4;
constexpr std::size_t kMaxByteSteps = 31;

inline __m256i load(const word_t* p, bool masked, __m256i mask) {
  return masked ? _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), mask)
                : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

void tile_2x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const word_t* ap[kMR] = {ar[0], ar[1]};
  const word_t* bp[kNR] = {br[0], br[1], br[2], br[3]};
  std::uint64_t sums[kMR][kNR] = {};
  const std::size_t nfull = kw / kWordsPerVec, tail = kw % kWordsPerVec, nsteps = nfull + (tail != 0);
  const __m256i tail_mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(tail)),
                                               _mm256_setr_epi64x(0, 1, 2, 3));

  for (std::size_t v0 = 0; v0 < nsteps; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nsteps, v0 + kMaxByteSteps), vfull = std::min(v1, nfull);
    __m256i c[kMR][kNR];
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) c[i][j] = zero;
    auto step = [&](std::size_t off, bool masked) __attribute__((always_inline)) {
      __m256i a[kMR];
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) a[i] = load(ap[i] + off, masked, tail_mask);
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) {
        const __m256i b = load(bp[j] + off, masked, tail_mask);
#pragma GCC unroll 8
        for (int i = 0; i < kMR; ++i) {
          const __m256i x = _mm256_xor_si256(a[i], b);
          c[i][j] = _mm256_add_epi8(c[i][j], _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)));
          c[i][j] = _mm256_add_epi8(c[i][j],
                                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
        }
      }
    };
    for (std::size_t v = v0; v < vfull; ++v) step(v * kWordsPerVec, false);
    if (v1 > nfull) step(nfull * kWordsPerVec, true);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) {
        const __m256i s = _mm256_sad_epu8(c[i][j], zero);
        const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        sums[i][j] += static_cast<std::uint64_t>(_mm_cvtsi128_si64(h)) +
                      static_cast<std::uint64_t>(_mm_extract_epi64(h, 1));
      }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = sums[i][j];
}

}  // namespace

void bgemm_popcount_avx2(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                         std::int32_t* c, std::size_t ldc) {
  bgemm_walk<kMR, kNR>(a, m, b, nb, kw, c, ldc, tile_2x4);
}

}  // namespace horq
