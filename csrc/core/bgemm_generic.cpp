// Portable binary GEMM, 2x4 register tile, in GCC/Clang vector extensions (two 64-bit lanes: SSE2 on
// the x86-64 baseline, NEON on AArch64) -- no ISA flags, no intrinsics.
//
// Arithmetic: the x86-64 baseline has no popcount instruction (and -mpopcnt is not allowed in a
// portable file), so each XOR is counted with the SWAR tree: 2-bit, 4-bit, then byte counts
// (each <= 8). Byte counts of kMaxByteSteps = 31 steps add up to at most 248 and cannot carry into the
// next byte, so the horizontal sum runs once per 31 steps instead of once per word. That sum (up to
// 8 * 248 = 1984) does not fit a byte, so bytes are first paired into 16-bit fields and the four fields
// summed by one multiply by 0x0001000100010001 (top 16 bits). An odd last word runs the same tree on a
// scalar.
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

// Sum of the 8 byte fields of x (each <= 255).
inline std::uint64_t sum_bytes(std::uint64_t x) {
  x = (x & kM8) + ((x >> 8) & kM8);
  return (x * kOnes16) >> 48;
}

inline v2u64 load(const word_t* p) {
  v2u64 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

void tile_2x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  std::uint64_t sums[kMR][kNR] = {};
  const std::size_t nvec = kw / kWordsPerVec;
  for (std::size_t v0 = 0; v0 < nvec; v0 += kMaxByteSteps) {
    const std::size_t v1 = std::min(nvec, v0 + kMaxByteSteps);
    v2u64 acc[kMR][kNR] = {};
    for (std::size_t v = v0; v < v1; ++v) {
      const std::size_t off = v * kWordsPerVec;
      const v2u64 a0 = load(ar[0] + off), a1 = load(ar[1] + off);
      for (int j = 0; j < kNR; ++j) {
        const v2u64 b = load(br[j] + off);
        acc[0][j] += byte_counts(a0 ^ b);
        acc[1][j] += byte_counts(a1 ^ b);
      }
    }
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) sums[i][j] += sum_bytes(acc[i][j][0]) + sum_bytes(acc[i][j][1]);
  }
  if (kw % kWordsPerVec) {
    const std::size_t w = kw - 1;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) sums[i][j] += sum_bytes(byte_counts(ar[i][w] ^ br[j][w]));
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = sums[i][j];
}

}  // namespace

void bgemm_popcount_generic(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                            std::int32_t* c, std::size_t ldc) {
  bgemm_walk<kMR, kNR>(a, m, b, nb, kw, c, ldc, tile_2x4);
}

}  // namespace horq
