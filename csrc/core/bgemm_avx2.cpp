// AVX2 binary GEMM, 2x4 register tile (compiled with -mavx2; selected only when the CPU has AVX2).
//
// Arithmetic: AVX2 has no vector popcount, so each 256-bit XOR is counted with the nibble table
// (vpshufb of a 16-entry popcount LUT on the low and high nibble of every byte). Byte counts are at
// most 8 per step, so a byte accumulator can take kMaxByteSteps = 31 steps (31 * 8 = 248 <= 255)
// before vpsadbw folds it into four 64-bit lanes. The row tail (kw % 4 words) is read with a masked
// load, so nothing past the row is touched.
#include <immintrin.h>

#include "core/bgemm.h"

namespace horq {
namespace {

constexpr int kMR = 2, kNR = 4;
constexpr std::size_t kWordsPerVec = 4;
constexpr std::size_t kMaxByteSteps = 31;

inline __m256i popcount_bytes(__m256i v, __m256i lut, __m256i low) {
  const __m256i lo = _mm256_and_si256(v, low);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

inline std::uint64_t hsum64(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) + static_cast<std::uint64_t>(_mm_extract_epi64(s, 1));
}

void tile_2x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc64[kMR][kNR];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) acc64[i][j] = zero;

  const std::size_t nvec = kw / kWordsPerVec;
  for (std::size_t v0 = 0; v0 < nvec; v0 += kMaxByteSteps) {
    const std::size_t v1 = v0 + kMaxByteSteps < nvec ? v0 + kMaxByteSteps : nvec;
    __m256i acc8[kMR][kNR];
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc8[i][j] = zero;
    for (std::size_t v = v0; v < v1; ++v) {
      const std::size_t off = v * kWordsPerVec;
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[0] + off));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[1] + off));
      for (int j = 0; j < kNR; ++j) {
        const __m256i bj = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(br[j] + off));
        acc8[0][j] = _mm256_add_epi8(acc8[0][j], popcount_bytes(_mm256_xor_si256(a0, bj), lut, low));
        acc8[1][j] = _mm256_add_epi8(acc8[1][j], popcount_bytes(_mm256_xor_si256(a1, bj), lut, low));
      }
    }
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc64[i][j] = _mm256_add_epi64(acc64[i][j], _mm256_sad_epu8(acc8[i][j], zero));
  }

  const std::size_t tail = kw % kWordsPerVec;
  if (tail) {
    const std::size_t off = nvec * kWordsPerVec;
    const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(tail)),
                                            _mm256_setr_epi64x(0, 1, 2, 3));
    __m256i a[kMR];
    for (int i = 0; i < kMR; ++i) a[i] = _mm256_maskload_epi64(reinterpret_cast<const long long*>(ar[i] + off), mask);
    for (int j = 0; j < kNR; ++j) {
      const __m256i bj = _mm256_maskload_epi64(reinterpret_cast<const long long*>(br[j] + off), mask);
      for (int i = 0; i < kMR; ++i)
        acc64[i][j] = _mm256_add_epi64(
            acc64[i][j], _mm256_sad_epu8(popcount_bytes(_mm256_xor_si256(a[i], bj), lut, low), zero));
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = hsum64(acc64[i][j]);
}

}  // namespace

void bgemm_popcount_avx2(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                         std::int32_t* c, std::size_t ldc) {
  bgemm_walk<kMR, kNR>(a, m, b, nb, kw, c, ldc, tile_2x4);
}

}  // namespace horq
