// Portable binary GEMM (bgemm.h), 2x4 register tile, in GCC/Clang vector extensions (two 64-bit lanes:
// SSE2 on the x86-64 baseline, NEON on AArch64) -- no ISA flags, no intrinsics, always compiled. It is the
// portable reference of the operation: the ISA versions must give its counts (the AVX-512 emulation harness
// compares bgemm_popcount_avx512 with it directly), and csrc/tests/test_kernels.cpp and tests/kernels run
// every path, this one included, against scalar models of the definition.
//
// Tile: 2 A rows x 4 B rows = 8 accumulators, each A and B vector loaded once per step and used 4 or 2
// times; larger tiles spill on the 16 vector registers of SSE2/NEON-class targets.
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

void tile_2x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  std::uint64_t sums[kMR][kNR] = {};
  // An odd last word is one more step with lane 1 zero in both operands (it adds nothing there), so it
  // shares the byte accumulators and their single horizontal sum.
  const std::size_t nvec = kw / kWordsPerVec, nsteps = nvec + kw % kWordsPerVec;
  for (std::size_t v0 = 0; v0 < nsteps; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nsteps, v0 + kMaxByteSteps), vfull = std::min(v1, nvec);
    v2u64 acc[kMR][kNR] = {};
    auto step = [&](v2u64 a0, v2u64 a1, const v2u64* b) __attribute__((always_inline)) {
      for (int j = 0; j < kNR; ++j) {
        acc[0][j] += byte_counts(a0 ^ b[j]);
        acc[1][j] += byte_counts(a1 ^ b[j]);
      }
    };
    for (std::size_t v = v0; v < vfull; ++v) {
      const std::size_t off = v * kWordsPerVec;
      const v2u64 b[kNR] = {load(br[0] + off), load(br[1] + off), load(br[2] + off), load(br[3] + off)};
      step(load(ar[0] + off), load(ar[1] + off), b);
    }
    if (v1 > nvec) {
      const std::size_t w = kw - 1;
      const v2u64 b[kNR] = {v2u64{br[0][w], 0}, v2u64{br[1][w], 0}, v2u64{br[2][w], 0}, v2u64{br[3][w], 0}};
      step(v2u64{ar[0][w], 0}, v2u64{ar[1][w], 0}, b);
    }
    // Bytes (<= 248) pair into 16-bit fields (<= 496) on both lanes at once, the lanes add (<= 992),
    // then one multiply sums the four fields.
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) {
        const v2u64 f = (acc[i][j] & kM8) + ((acc[i][j] >> 8) & kM8);
        sums[i][j] += ((f[0] + f[1]) * kOnes16) >> 48;
      }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = sums[i][j];
}

}  // namespace

void bgemm_popcount_generic(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                            std::int32_t* c, std::size_t ldc) {
  bgemm_walk_words<kMR, kNR, tile_2x4>(a, m, b, nb, kw, c, ldc);
}

}  // namespace horq
