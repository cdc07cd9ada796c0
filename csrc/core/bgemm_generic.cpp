// Portable binary GEMM (bgemm.h), 2x4 register tile, in GCC/Clang vector extensions (two 64-bit lanes:
// SSE2 on the x86-64 baseline, NEON on AArch64) -- no ISA flags, no intrinsics, always compiled. It is the
// portable reference of the operation: the ISA versions must give its counts (the AVX-512 emulation harness
// compares bgemm_popcount_avx512 with it directly), and csrc/tests/test_kernels.cpp and tests/kernels run
// every path, this one included, against scalar models of the definition.
//
// Tile: 2 A rows x 4 B rows = 8 accumulators, each A and B vector loaded once per step and used 4 or 2
// times; larger tiles spill on the 16 vector registers of SSE2/NEON-class targets. The columns past the last whole 4
// go one at a time through 8 x 1 tiles.
//
// Arithmetic (a . b = n - 2 popcount(a ^ b), bgemm.h): the x86-64 baseline has no popcount instruction (and -mpopcnt
// is not allowed in a portable file), so each XOR is counted with the SWAR tree: 2-bit, 4-bit, then byte counts
// (each <= 8). Byte counts of kMaxByteSteps = 31 steps add up to at most 248 and cannot carry into the
// next byte, so the horizontal sum runs once per 31 steps instead of once per word. That sum (up to
// 8 * 248 = 1984) does not fit a byte, so bytes are first paired into 16-bit fields (both lanes at once),
// the two lanes added, and the four fields summed by one multiply by 0x0001000100010001 (top 16 bits).
// An odd last word is one more step with a zero second lane.
#include <algorithm>

#include "core/bgemm.h"

namespace horq {
namespace {

using v2u64 = std::uint64_t __attribute__((vector_size(16)));
constexpr std::uint64_t kM1 = 0x5555555555555555ull, kM2 = 0x3333333333333333ull;
constexpr std::uint64_t kM4 = 0x0f0f0f0f0f0f0f0full, kM8 = 0x00ff00ff00ff00ffull;
constexpr std::uint64_t kOnes16 = 0x0001000100010001ull;
constexpr int kMR = 2, kNR = 4;
constexpr int kColumnRows = 8;  // rows of the tiles of the last columns (8 x 1)
constexpr std::size_t kWordsPerVec = 2;
constexpr std::size_t kMaxByteSteps = 31;

// Per-byte popcounts of x (works on a scalar word or lane-wise on a vector).
template <class T>
inline T byte_counts(T x) {
  x = x - ((x >> 1) & kM1);
  x = (x & kM2) + ((x >> 2) & kM2);
  return (x + (x >> 4)) & kM4;
}

inline v2u64 load(const word_t* p) {
  v2u64 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <int MR, int NR>
void tile(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[NR]) {
  std::uint64_t sums[MR][NR] = {};
  // An odd last word is one more step with lane 1 zero in both operands (it adds nothing there), so it
  // shares the byte accumulators and their single horizontal sum.
  const std::size_t nvec = kw / kWordsPerVec, nsteps = nvec + kw % kWordsPerVec;
  for (std::size_t v0 = 0; v0 < nsteps; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nsteps, v0 + kMaxByteSteps), vfull = std::min(v1, nvec);
    v2u64 acc[MR][NR] = {};
    auto step = [&](const v2u64* a, const v2u64* b) __attribute__((always_inline)) {
      for (int j = 0; j < NR; ++j)
        for (int i = 0; i < MR; ++i) acc[i][j] += byte_counts(a[i] ^ b[j]);
    };
    for (std::size_t v = v0; v < vfull; ++v) {
      const std::size_t off = v * kWordsPerVec;
      v2u64 a[MR], b[NR];
      for (int i = 0; i < MR; ++i) a[i] = load(ar[i] + off);
      for (int j = 0; j < NR; ++j) b[j] = load(br[j] + off);
      step(a, b);
    }
    if (v1 > nvec) {
      const std::size_t w = kw - 1;
      v2u64 a[MR], b[NR];
      for (int i = 0; i < MR; ++i) a[i] = v2u64{ar[i][w], 0};
      for (int j = 0; j < NR; ++j) b[j] = v2u64{br[j][w], 0};
      step(a, b);
    }
    // Bytes (<= 248) pair into 16-bit fields (<= 496) on both lanes at once, the lanes add (<= 992),
    // then one multiply sums the four fields.
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        const v2u64 f = (acc[i][j] & kM8) + ((acc[i][j] >> 8) & kM8);
        sums[i][j] += ((f[0] + f[1]) * kOnes16) >> 48;
      }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i][j] = sums[i][j];
}

}  // namespace

// Whole groups of 4 columns by 2 x 4 tiles, the last nb % 4 (a batch-1 linear layer's one or two) one at a time by
// 8 x 1 tiles (the same 8 accumulators), not by 2 x 4 tiles that compute copies of their first column.
void bgemm_popcount_generic(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                            std::int32_t* c, std::size_t ldc) {
  const std::size_t whole = nb / kNR * kNR;
  if (whole) bgemm_walk_words<kMR, kNR, tile<kMR, kNR>>(a, m, b, whole, kw, c, ldc);
  if (whole < nb) bgemm_walk_words<kColumnRows, 1, tile<kColumnRows, 1>>(a, m, b + whole * kw, nb - whole, kw,
                                                                         c + whole, ldc);
}

}  // namespace horq
