// Portable binary GEMM, 2x4 register tile.
//
// Arithmetic: each output is sum_w popcount(a_w ^ b_w) over the row's kw words, accumulated in 64 bits.
// Without a hardware popcount (x86-64 baseline has none; -mpopcnt is not allowed in a portable file) the
// count uses the SWAR tree: 2-bit, 4-bit, then byte counts, and one multiply by 0x0101.. to sum the bytes.
// With a native popcount (__POPCNT__ on x86, every AArch64) the builtin is one instruction.
#include "core/bgemm.h"

namespace horq {
namespace {

inline std::uint64_t popcount64(std::uint64_t x) {
#if defined(__POPCNT__) || defined(__aarch64__)
  return static_cast<std::uint64_t>(__builtin_popcountll(x));
#else
  constexpr std::uint64_t k1 = 0x5555555555555555ull, k2 = 0x3333333333333333ull;
  constexpr std::uint64_t k4 = 0x0f0f0f0f0f0f0f0full, kOnes = 0x0101010101010101ull;
  x = x - ((x >> 1) & k1);
  x = (x & k2) + ((x >> 2) & k2);
  x = (x + (x >> 4)) & k4;
  return (x * kOnes) >> 56;
#endif
}

constexpr int kMR = 2, kNR = 4;

void tile_2x4(const word_t* const* ar, const word_t* const* br, std::size_t kw, std::uint64_t (*out)[kNR]) {
  std::uint64_t acc[kMR][kNR] = {};
  for (std::size_t w = 0; w < kw; ++w) {
    const word_t a0 = ar[0][w], a1 = ar[1][w];
    for (int j = 0; j < kNR; ++j) {
      const word_t bj = br[j][w];
      acc[0][j] += popcount64(a0 ^ bj);
      acc[1][j] += popcount64(a1 ^ bj);
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) out[i][j] = acc[i][j];
}

}  // namespace

void bgemm_popcount_generic(const word_t* a, std::size_t m, const word_t* b, std::size_t nb, std::size_t kw,
                            std::int32_t* c, std::size_t ldc) {
  bgemm_walk<kMR, kNR>(a, m, b, nb, kw, c, ldc, tile_2x4);
}

}  // namespace horq
