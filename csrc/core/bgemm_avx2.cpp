// AVX2 binary GEMM (bgemm.h), 2x4 register tile (compiled with -mavx2; selected only when the CPU has AVX2
// and POPCNT). Counts popcount(a ^ b) for a . b = n - 2 popcount(a ^ b); bgemm_generic.cpp is the reference.
//
// Arithmetic: AVX2 has no vector popcount, so each 256-bit XOR is counted with the nibble table
// (vpshufb of a 16-entry popcount LUT on the low and high nibble of every byte). A byte then holds at
// most 8 per step, so a byte accumulator can take kMaxByteSteps = 31 steps (31 * 8 = 248 <= 255) before
// vpsadbw folds it into 64-bit sums (four accumulators reduced together, sum4). The row tail (kw % 4
// words) is counted with scalar popcnt after the vector steps, so nothing past the row is touched.
//
// Nibble split: the nibble masks commute with XOR, (a ^ b) & 0x0f = (a & 0x0f) ^ (b & 0x0f) and the same
// for (x >> 4) & 0x0f, so each row is split into its two nibble vectors once per call (split_rows) and a
// row pair then costs 2 xor + 2 vpshufb + 2 add per 256 bits instead of 8 ops. The split is paid once per
// row and amortized over the rows it meets; it pays from 4 vectors per row on (kSplitMinVecs), shorter
// rows run the direct kernel. Both use 8 byte accumulators + LUT + operands within 16 ymm registers.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/bgemm.h"

namespace horq {
namespace {

constexpr int kMR = 2, kNR = 4;
constexpr std::size_t kWordsPerVec = 4;
constexpr std::size_t kMaxByteSteps = 31;
// Rows of at least this many vectors take the nibble-split kernel (below that, splitting every row of
// the block costs more than it saves: measured with 2-vector rows, kw = 9).
constexpr std::size_t kSplitMinVecs = 4;

// Full 64-bit sums of four byte-count accumulators, as one vector {c0, c1, c2, c3}: vpsadbw gives four
// partial sums per accumulator, two unpack/add rounds and a lane swap finish them (13 vector ops for the
// four, instead of a scalar extract chain per accumulator).
inline __m256i sum4(__m256i c0, __m256i c1, __m256i c2, __m256i c3) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i s0 = _mm256_sad_epu8(c0, zero), s1 = _mm256_sad_epu8(c1, zero);
  const __m256i s2 = _mm256_sad_epu8(c2, zero), s3 = _mm256_sad_epu8(c3, zero);
  const __m256i t01 = _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
  const __m256i t23 = _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
  return _mm256_add_epi64(_mm256_permute2x128_si256(t01, t23, 0x20), _mm256_permute2x128_si256(t01, t23, 0x31));
}

void tile_2x4_direct(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const word_t* ap[kMR] = {ar[0], ar[1]};
  const word_t* bp[kNR] = {br[0], br[1], br[2], br[3]};
  const std::size_t nvec = kw / kWordsPerVec;
  __m256i total[kMR] = {zero, zero};

  for (std::size_t v0 = 0; v0 < nvec; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nvec, v0 + kMaxByteSteps);
    __m256i c[kMR][kNR];
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) c[i][j] = zero;
    for (std::size_t v = v0; v < v1; ++v) {
      const std::size_t off = v * kWordsPerVec;
      __m256i a[kMR];
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) a[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap[i] + off));
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp[j] + off));
#pragma GCC unroll 8
        for (int i = 0; i < kMR; ++i) {
          const __m256i x = _mm256_xor_si256(a[i], b);
          c[i][j] = _mm256_add_epi8(c[i][j], _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)));
          c[i][j] = _mm256_add_epi8(c[i][j],
                                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) total[i] = _mm256_add_epi64(total[i], sum4(c[i][0], c[i][1], c[i][2], c[i][3]));
  }
  alignas(32) std::uint64_t sums[kMR][kNR];
  for (int i = 0; i < kMR; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(sums[i]), total[i]);
  // Row tail (kw % 4 words): scalar popcnt (this file is built with -mpopcnt and dispatch requires it),
  // cheaper than a masked vector step when only 1-3 words remain.
  for (std::size_t w = nvec * kWordsPerVec; w < kw; ++w)
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j)
        sums[i][j] += static_cast<std::uint64_t>(_mm_popcnt_u64(ap[i][w] ^ bp[j][w]));
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = sums[i][j];
}

// One 256-bit vector of a row in nibble-split form: lo = x & 0x0f.., hi = (x >> 4) & 0x0f.. per byte.
struct alignas(32) SplitVec {
  __m256i lo, hi;
};

// A row in both forms, as the tile walk hands it to the split kernel.
struct SplitRow {
  const SplitVec* split;
  const word_t* words;
};

// Rows of kw words -> nvec = kw / 4 split vectors each (the tail words stay in the original rows).
void split_rows(const word_t* x, std::size_t rows, std::size_t kw, std::size_t nvec, SplitVec* out) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t v = 0; v < nvec; ++v) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + r * kw + v * kWordsPerVec));
      out[r * nvec + v].lo = _mm256_and_si256(w, low);
      out[r * nvec + v].hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
    }
}

std::vector<SplitVec>& split_buffer(int which, std::size_t size) {
  thread_local std::vector<SplitVec> bufs[2];
  if (bufs[which].size() < size) bufs[which].resize(size);
  return bufs[which];
}

// 2x4 tile on split rows: as[i], bs[j] point at nvec split vectors; ar/br at the original rows (tail).
void tile_2x4_split(const SplitVec* const* as, const SplitVec* const* bs, const word_t* const* ar,
                    const word_t* const* br, std::size_t nvec, std::size_t kw, std::uint64_t (*out)[kNR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i zero = _mm256_setzero_si256();
  __m256i total[kMR] = {zero, zero};
  for (std::size_t v0 = 0; v0 < nvec; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nvec, v0 + kMaxByteSteps);
    __m256i c[kMR][kNR];
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) c[i][j] = zero;
    // Low nibbles of the whole tile, then high nibbles: 2 A + 1 B operand live at a time, so the 8
    // accumulators stay in registers.
    auto half = [&](std::size_t v, __m256i SplitVec::*part) __attribute__((always_inline)) {
      const __m256i a0 = as[0][v].*part, a1 = as[1][v].*part;
#pragma GCC unroll 8
      for (int j = 0; j < kNR; ++j) {
        const __m256i bj = bs[j][v].*part;
        c[0][j] = _mm256_add_epi8(c[0][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(a0, bj)));
        c[1][j] = _mm256_add_epi8(c[1][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(a1, bj)));
      }
    };
    for (std::size_t v = v0; v < v1; ++v) {
      half(v, &SplitVec::lo);
      half(v, &SplitVec::hi);
    }
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) total[i] = _mm256_add_epi64(total[i], sum4(c[i][0], c[i][1], c[i][2], c[i][3]));
  }
  alignas(32) std::uint64_t sums[kMR][kNR];
  for (int i = 0; i < kMR; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(sums[i]), total[i]);
  // Row tail (kw % 4 words): scalar popcnt (this file is built with -mpopcnt and dispatch requires it).
  for (std::size_t w = nvec * kWordsPerVec; w < kw; ++w)
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j)
        sums[i][j] += static_cast<std::uint64_t>(_mm_popcnt_u64(ar[i][w] ^ br[j][w]));
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = sums[i][j];
}

}  // namespace

// One or two columns (a linear layer's single sample at orders 1-2: one column per order): the 2 x 4 tiles would
// count 4 columns and split every weight row per call, so each row's words meet the columns' with scalar popcnt
// instead, 4 words a step into independent sums. The same counts (exact integers). Binary linear layers at batch 1,
// order 1 (LinearLayer calls, 1 thread, AMD EPYC Zen 3; a throwaway script, minima of 4 runs' medians): 256 x 3136
// 19.0 -> 11.2 us, 1000 x 512 16.4 -> 12.9, 4096 x 4096 278 -> 124; two columns (order 2, or a batch of 2) 290 ->
// 224 and 21.3 -> 18.1; three (order 3) slower than the tiles (281 -> 315): kept on them. docs/KERNELS.md round 25.
namespace {
constexpr std::size_t kFewColumns = 2;

void few_columns(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw, std::int32_t* c,
                 std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    const word_t* ar = a + i * kw;
    for (std::size_t j = 0; j < nb; ++j) {
      const word_t* br = b + j * kw;
      std::uint64_t s[4] = {0, 0, 0, 0};
      std::size_t w = 0;
      for (; w + 4 <= kw; w += 4)
        for (int u = 0; u < 4; ++u) s[u] += static_cast<std::uint64_t>(__builtin_popcountll(ar[w + u] ^ br[w + u]));
      for (; w < kw; ++w) s[0] += static_cast<std::uint64_t>(__builtin_popcountll(ar[w] ^ br[w]));
      c[i * ldc + j] = static_cast<std::int32_t>(s[0] + s[1] + s[2] + s[3]);
    }
  }
}
}  // namespace

void bgemm_popcount_avx2(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                         std::int32_t* c, std::size_t ldc) {
  if (nb <= kFewColumns) return few_columns(a, m, b, nb, kw, c, ldc);
  const std::size_t nvec = kw / kWordsPerVec;
  if (nvec < kSplitMinVecs) {
    bgemm_walk_words<kMR, kNR, tile_2x4_direct>(a, m, b, nb, kw, c, ldc);
    return;
  }
  SplitVec* sa = split_buffer(0, m * nvec + 1).data();
  SplitVec* sb = split_buffer(1, nb * nvec + 1).data();
  split_rows(a, m, kw, nvec, sa);
  split_rows(b, nb, kw, nvec, sb);
  // The walk hands each row in both forms (its split vectors, and its words for the tail).
  bgemm_walk<kMR, kNR>(
      m, nb, c, ldc, [=](std::size_t r) { return SplitRow{sa + r * nvec, a + r * kw}; },
      [=](std::size_t r) { return SplitRow{sb + r * nvec, b + r * kw}; },
      [=](const SplitRow* ar, const SplitRow* br, std::uint64_t (*out)[kNR]) {
        const SplitVec* as[kMR] = {ar[0].split, ar[1].split};
        const SplitVec* bs[kNR] = {br[0].split, br[1].split, br[2].split, br[3].split};
        const word_t* aw[kMR] = {ar[0].words, ar[1].words};
        const word_t* bw[kNR] = {br[0].words, br[1].words, br[2].words, br[3].words};
        tile_2x4_split(as, bs, aw, bw, nvec, kw, out);
      });
}

}  // namespace horq
