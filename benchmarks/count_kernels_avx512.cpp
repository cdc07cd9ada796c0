// The AVX-512 outer-product count loop alone (gemm_outer_avx512.cpp's outer_kernel), in register blocks, on data
// that stays in L1: binary MAC/s of each block (filters x column vectors of 8 lanes) for rows of `kw` words,
// fastest of 200 rounds of 1000 calls. For choosing blocks (docs/KERNELS.md round 17), not a test: the variants
// count random bits and their results are not checked here (the library's kernels are, in tests/kernels).
//
//   g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vpopcntdq -std=c++17
//       benchmarks/count_kernels_avx512.cpp -o /tmp/count_kernels_avx512       (one line)
//   /tmp/count_kernels_avx512 [kw]       # default 9 (a 3x3 conv over 64 channels)
//
// Variants:
//   MR x NV      per word and filter one broadcast, then per vector XOR, VPOPCNTQ, add (the library's loop)
//   csa MR x NV  three words at a time through a carry-save adder (two VPTERNLOGQ): 2 popcounts per 3 words
//                instead of 3, at the price of the adder and a shift (kw a multiple of 3)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

using word = std::uint64_t;
constexpr int kLanes = 8;

template <int MR, int NV>
[[gnu::noinline]] void plain(const word* a, const word* b, int kw, __m512i* out) {
  __m512i acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  for (int w = 0; w < kw; ++w) {
    __m512i bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + (w * NV + v) * kLanes);
    for (int i = 0; i < MR; ++i) {
      const __m512i ai = _mm512_set1_epi64(static_cast<long long>(a[i * kw + w]));
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_add_epi64(acc[i][v], _mm512_popcnt_epi64(_mm512_xor_si512(ai, bv[v])));
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) out[i * NV + v] = acc[i][v];
}

template <int MR, int NV>
[[gnu::noinline]] void csa(const word* a, const word* b, int kw, __m512i* out) {
  __m512i acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  for (int w = 0; w + 3 <= kw; w += 3)
    for (int i = 0; i < MR; ++i) {  // written out: at -O2 arrays of the three words' registers went to memory
      const __m512i a0 = _mm512_set1_epi64(static_cast<long long>(a[i * kw + w]));
      const __m512i a1 = _mm512_set1_epi64(static_cast<long long>(a[i * kw + w + 1]));
      const __m512i a2 = _mm512_set1_epi64(static_cast<long long>(a[i * kw + w + 2]));
      for (int v = 0; v < NV; ++v) {
        const __m512i x0 = _mm512_xor_si512(a0, _mm512_loadu_si512(b + (w * NV + v) * kLanes));
        const __m512i x1 = _mm512_xor_si512(a1, _mm512_loadu_si512(b + ((w + 1) * NV + v) * kLanes));
        const __m512i x2 = _mm512_xor_si512(a2, _mm512_loadu_si512(b + ((w + 2) * NV + v) * kLanes));
        const __m512i sum = _mm512_ternarylogic_epi64(x0, x1, x2, 0x96);    // odd parity
        const __m512i carry = _mm512_ternarylogic_epi64(x0, x1, x2, 0xe8);  // majority
        acc[i][v] = _mm512_add_epi64(
            acc[i][v], _mm512_add_epi64(_mm512_popcnt_epi64(sum), _mm512_slli_epi64(_mm512_popcnt_epi64(carry), 1)));
      }
    }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) out[i * NV + v] = acc[i][v];
}

using kernel_fn = void (*)(const word*, const word*, int, __m512i*);

double rate(kernel_fn f, int MR, int NV, int kw) {
  std::vector<word> a(static_cast<std::size_t>(MR * kw)), b(static_cast<std::size_t>(kw * NV * kLanes));
  std::mt19937_64 rng(1);
  for (auto& x : a) x = rng();
  for (auto& x : b) x = rng();
  alignas(64) __m512i out[64];
  double best = 1e9;
  for (int round = 0; round < 200; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 1000; ++k) f(a.data(), b.data(), kw, out);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 1000.0 * MR * NV * kLanes * 64.0 * kw / best;
}

}  // namespace

int main(int argc, char** argv) {
  const int kw = argc > 1 ? std::atoi(argv[1]) : 9;
  std::printf("rows of %d words, data in L1, fastest of 200 rounds (G binary MAC/s):\n", kw);
  std::printf("  12 x 2  %.0f\n", rate(plain<12, 2>, 12, 2, kw) / 1e9);
  std::printf("  24 x 1  %.0f\n", rate(plain<24, 1>, 24, 1, kw) / 1e9);
  std::printf("   8 x 3  %.0f\n", rate(plain<8, 3>, 8, 3, kw) / 1e9);
  std::printf("   6 x 4  %.0f\n", rate(plain<6, 4>, 6, 4, kw) / 1e9);
  if (kw % 3 == 0) {
    std::printf("  csa 12 x 2  %.0f\n", rate(csa<12, 2>, 12, 2, kw) / 1e9);
    std::printf("  csa 8 x 2   %.0f\n", rate(csa<8, 2>, 8, 2, kw) / 1e9);
    std::printf("  csa 6 x 3   %.0f\n", rate(csa<6, 3>, 6, 3, kw) / 1e9);
  }
  return 0;
}
