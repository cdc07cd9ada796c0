// The AVX2 outer-product count loop alone (gemm_outer_avx2.cpp's counts), in variants, on data that stays in L1:
// binary MAC/s of each register block (filters x column vectors) for rows of `kw` words, fastest of 200 rounds.
// For choosing the kernel's operand layout and blocks (docs/KERNELS.md round 13), not a test: the variants count
// random bits and their results are not checked here (the library's kernels are, in tests/kernels).
//
//   g++ -O3 -mavx2 -std=c++17 benchmarks/count_kernels.cpp -o /tmp/count_kernels
//   /tmp/count_kernels [kw]       # default 9 (a 3x3 conv over 64 channels)
//
// Variants:
//   whole  MR x NV   words as stored; per 256 bits XOR, AND, shift, AND, two table lookups, two byte adds (8 ops)
//   split  MR x NV   weights and columns stored as low and high nibbles; XOR, lookup, add twice (6 ops)
//   table  MR x NC   tables of popcount(w_nibble ^ x) per weight nibble, the columns' nibbles (one per byte,
//                    32 columns a vector) as vpshufb indices: one lookup and one add per 128 binary MACs (the
//                    loop of gemm_outer_avx2.cpp's table kernel since round 14, there in assembly)
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

using word = std::uint64_t;
constexpr int kLanes = 4;

const __m256i kLut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                      2, 3, 2, 3, 3, 4);

// acc = 0, and out = acc (row-major) after a variant's loop.
template <int A, int B>
void clear(__m256i (&acc)[A][B]) {
  for (int i = 0; i < A; ++i)
    for (int v = 0; v < B; ++v) acc[i][v] = _mm256_setzero_si256();
}
template <int A, int B>
void store_all(const __m256i (&acc)[A][B], __m256i* out) {
  for (int i = 0; i < A; ++i)
    for (int v = 0; v < B; ++v) out[i * B + v] = acc[i][v];
}

template <int MR, int NV>
__attribute__((noinline)) void whole(const word* a, const word* b, std::size_t kw, __m256i* out) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i acc[MR][NV];
  clear(acc);
  for (std::size_t w = 0; w < kw; ++w) {
    __m256i bv[NV];
    for (int v = 0; v < NV; ++v)
      bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (w * NV + v) * kLanes));
    for (int i = 0; i < MR; ++i) {
      const __m256i ai = _mm256_set1_epi64x(static_cast<long long>(a[i * kw + w]));
      for (int v = 0; v < NV; ++v) {
        const __m256i x = _mm256_xor_si256(ai, bv[v]);
        const __m256i lo = _mm256_shuffle_epi8(kLut, _mm256_and_si256(x, low));
        const __m256i hi = _mm256_shuffle_epi8(kLut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
        acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_add_epi8(lo, hi));
      }
    }
  }
  store_all(acc, out);
}

// a: row i's low nibbles at a[2 i kw + w], high at a[2 i kw + kw + w]; b: word w's NV low vectors, then NV high.
template <int MR, int NV>
__attribute__((noinline)) void split(const word* a, const word* b, std::size_t kw, __m256i* out) {
  __m256i acc[MR][NV];
  clear(acc);
  for (std::size_t w = 0; w < kw; ++w) {
    __m256i lo[NV], hi[NV];
    for (int v = 0; v < NV; ++v) {
      lo[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (2 * w * NV + v) * kLanes));
      hi[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (2 * w * NV + NV + v) * kLanes));
    }
    for (int i = 0; i < MR; ++i) {
      const __m256i al = _mm256_set1_epi64x(static_cast<long long>(a[2 * i * kw + w]));
      const __m256i ah = _mm256_set1_epi64x(static_cast<long long>(a[2 * i * kw + kw + w]));
      for (int v = 0; v < NV; ++v) {
        acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_shuffle_epi8(kLut, _mm256_xor_si256(al, lo[v])));
        acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_shuffle_epi8(kLut, _mm256_xor_si256(ah, hi[v])));
      }
    }
  }
  store_all(acc, out);
}

// tables: 16 rows of 16 bytes, row t = popcount(t ^ x) for x = 0..15; woff: per filter and nibble position, 16 x
// the weight's nibble; cols: per nibble position, NC vectors of 32 columns' nibbles (one per byte).
template <int MR, int NC>
__attribute__((noinline)) void table(const std::uint8_t* tables, const std::uint32_t* woff, std::size_t groups,
                                     const std::uint8_t* cols, __m256i* out) {
  __m256i acc[MR][NC];
  clear(acc);
  for (std::size_t g = 0; g < groups; ++g) {
    __m256i idx[NC];
    for (int v = 0; v < NC; ++v)
      idx[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cols + (g * NC + v) * 32));
    for (int i = 0; i < MR; ++i) {
      const __m256i t = _mm256_broadcastsi128_si256(
          _mm_load_si128(reinterpret_cast<const __m128i*>(tables + woff[i * groups + g])));
      for (int v = 0; v < NC; ++v) acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_shuffle_epi8(t, idx[v]));
    }
  }
  store_all(acc, out);
}

// The core's clock while it runs, in GHz: a chain of dependent 64-bit adds retires one add a cycle on every x86-64
// core, so its fastest pass over n adds takes n cycles (a VM's /proc/cpuinfo shows the nominal clock, not this).
double clock_ghz() {
  constexpr long kAdds = 1 << 20;  // 16 adds per iteration
  double best = 1e30;
  for (int r = 0; r < 50; ++r) {
    long x = r, n = kAdds / 16;
    const auto t0 = std::chrono::steady_clock::now();
    asm volatile(
        "1:\n\t"
        "add %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\t"
        "add %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\t"
        "add %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\t"
        "add %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\tadd %[x], %[x]\n\t"
        "dec %[n]\n\tjnz 1b\n\t"
        : [x] "+r"(x), [n] "+r"(n)
        :
        : "cc");
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return kAdds / best / 1e9;
}

// Fastest of 200 passes of 1000 calls. With shuffles > 0 (the table variants: lookups per nibble position) also the
// cycles per position at the clock measured before, against shuffles / 2: AMD's Zen 3 and Zen 4 issue two 256-bit
// vpshufb a cycle.
template <class F>
void report(const char* name, double macs, F&& f, double ghz = 0, double positions = 0, int shuffles = 0) {
  double best = 1e30;
  for (int r = 0; r < 200; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 1000; ++k) f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("%-14s %6.1f G binary MAC/s", name, macs * 1000 / best / 1e9);
  if (shuffles > 0)
    std::printf(", %.2f cycles a position (%d lookups: %.1f at two a cycle)", best / 1000 / positions * ghz * 1e9,
                shuffles, shuffles / 2.0);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t kw = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 9;
  if (kw < 1 || kw > 31) {
    std::fprintf(stderr, "kw must be 1..31 (one byte-counter flush)\n");
    return 1;
  }
  std::mt19937_64 rng(1);
  std::vector<word> a(8 * 2 * kw), b(kw * 2 * 8 * kLanes);
  for (auto& v : a) v = rng();
  for (auto& v : b) v = rng();
  alignas(32) static __m256i out[64];
  const double bits = 64.0 * static_cast<double>(kw);
  std::printf("rows of %zu words (%g bits), 4 columns per vector\n", kw, bits);
  report("whole 4 x 2", 4 * 8 * bits, [&] { whole<4, 2>(a.data(), b.data(), kw, out); });
  report("whole 3 x 2", 3 * 8 * bits, [&] { whole<3, 2>(a.data(), b.data(), kw, out); });
  report("split 3 x 2", 3 * 8 * bits, [&] { split<3, 2>(a.data(), b.data(), kw, out); });
  report("split 4 x 2", 4 * 8 * bits, [&] { split<4, 2>(a.data(), b.data(), kw, out); });
  report("split 2 x 3", 2 * 12 * bits, [&] { split<2, 3>(a.data(), b.data(), kw, out); });
  report("split 1 x 4", 1 * 16 * bits, [&] { split<1, 4>(a.data(), b.data(), kw, out); });
  // The table variant over the same number of bits per row: kw * 16 nibble positions.
  alignas(16) static std::uint8_t tables[256];
  for (int t = 0; t < 16; ++t)
    for (int x = 0; x < 16; ++x) tables[16 * t + x] = static_cast<std::uint8_t>(__builtin_popcount(t ^ x));
  const std::size_t groups = kw * 16;
  std::vector<std::uint32_t> woff(4 * groups);
  for (auto& v : woff) v = static_cast<std::uint32_t>(16 * (rng() & 15));
  std::vector<std::uint8_t> cols(groups * 4 * 32);
  for (auto& v : cols) v = static_cast<std::uint8_t>(rng() & 15);
  const double ghz = clock_ghz(), positions = static_cast<double>(groups);
  std::printf("clock %.2f GHz (dependent adds)\n", ghz);
  report("table 3 x 3", 3 * 96 * bits, [&] { table<3, 3>(tables, woff.data(), groups, cols.data(), out); }, ghz,
         positions, 9);
  report("table 2 x 4", 2 * 128 * bits, [&] { table<2, 4>(tables, woff.data(), groups, cols.data(), out); }, ghz,
         positions, 8);
  return 0;
}
