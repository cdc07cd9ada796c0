// Checks csrc/core/*_avx512.cpp (built against the emulated immintrin.h next to this file) against the
// portable kernels: bgemm counts must be equal, quantized bits equal and betas equal to 1e-12 (both the
// stored-column and the conv taps variants of quantize).
// Prints "OK" and exits 0 on success.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/bgemm.h"
#include "core/quantize.h"

using namespace horq;

int main() {
  std::mt19937_64 rng(42);
  int failures = 0;
  const std::size_t kws[] = {1, 3, 7, 8, 9, 15, 16, 17, 36, 72, 1094};
  for (std::size_t kw : kws)
    for (std::size_t m : {1, 3, 4, 5, 9})
      for (std::size_t nb : {1, 4, 6, 13}) {
        std::vector<word_t> a(m * kw), b(nb * kw);
        for (auto& w : a) w = rng();
        for (auto& w : b) w = rng() & (kw == 1094 ? ~word_t{0} : rng());
        std::vector<std::int32_t> c1(m * nb, -1), c2(m * nb, -2);
        bgemm_popcount_generic(a.data(), m, b.data(), nb, kw, c1.data(), nb);
        bgemm_popcount_avx512(a.data(), m, b.data(), nb, kw, c2.data(), nb);
        if (c1 != c2) {
          std::printf("bgemm mismatch kw=%zu m=%zu nb=%zu\n", kw, m, nb);
          ++failures;
        }
      }
  std::normal_distribution<double> normal;
  const std::size_t groups_cg[][2] = {{1, 1}, {1, 3}, {1, 63}, {1, 64}, {1, 65}, {1, 513}, {9, 3}, {9, 64}, {9, 65}, {4, 7}};
  for (auto& gc : groups_cg)
    for (int order = 1; order <= kMaxOrder; ++order) {
      const std::size_t groups = gc[0], cg = gc[1], n = groups * cg, ld = groups * words_for(cg);
      std::vector<double> x(n);
      for (auto& v : x) v = static_cast<float>(normal(rng));
      if (n > 2) x[1] = 0.0, x[2] = -0.0;
      std::vector<double> r1 = x, r2 = x, b1(order), b2(order);
      std::vector<word_t> w1(order * ld, 7), w2(order * ld, 9);
      quantize_column_generic(r1.data(), groups, cg, order, w1.data(), ld, b1.data());
      quantize_column_avx512(r2.data(), groups, cg, order, w2.data(), ld, b2.data());
      bool ok = w1 == w2;
      for (int k = 0; k < order; ++k) ok = ok && std::fabs(b1[k] - b2[k]) <= 1e-12 * std::fabs(b1[k]) + 1e-300;
      if (!ok) {
        std::printf("quantize mismatch groups=%zu cg=%zu order=%d\n", groups, cg, order);
        ++failures;
      }
    }
  // Taps variant: columns of `taps` pixel groups, some of them padding (nullptr), orders 2..8, given
  // the same H_1 row and beta_1.
  for (auto& gc : groups_cg)
    for (int order = 2; order <= kMaxOrder; ++order) {
      const std::size_t ntaps = gc[0], cg = gc[1], ld = ntaps * words_for(cg);
      std::vector<float> x(ntaps * cg);
      for (auto& v : x) v = static_cast<float>(normal(rng));
      if (x.size() > 2) x[1] = 0.0f, x[2] = -0.0f;
      std::vector<const float*> taps(ntaps);
      for (std::size_t t = 0; t < ntaps; ++t) taps[t] = (ntaps > 1 && t % 4 == 0) ? nullptr : x.data() + t * cg;
      std::vector<double> b1(order, 0.0), b2(order, 0.0);
      b1[0] = b2[0] = 0.75;
      std::vector<word_t> w1(order * ld, 7), w2(order * ld, 7);
      quantize_taps_generic(taps.data(), ntaps, cg, order, w1.data(), ld, b1.data());
      quantize_taps_avx512(taps.data(), ntaps, cg, order, w2.data(), ld, b2.data());
      bool ok = w1 == w2;
      for (int k = 0; k < order; ++k) ok = ok && std::fabs(b1[k] - b2[k]) <= 1e-12 * std::fabs(b1[k]) + 1e-300;
      if (!ok) {
        std::printf("quantize_taps mismatch taps=%zu cg=%zu order=%d\n", ntaps, cg, order);
        ++failures;
      }
    }
  std::printf(failures ? "FAILED %d\n" : "OK\n", failures);
  return failures ? 1 : 0;
}
