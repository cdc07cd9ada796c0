// The core's fused multiply-add rate on 512-bit registers, the ceiling of the float convolution's row kernel
// (docs/KERNELS.md round 8): 12 independent accumulator chains, so latency does not limit it. x86-64 with
// AVX-512F only.
//
//   g++ -O2 -mavx512f -mfma benchmarks/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
#include <immintrin.h>

#include <chrono>
#include <cstdio>

int main() {
  // Distinct starting values: twelve identical chains would be folded into one by the compiler.
  __m512 a0 = _mm512_set1_ps(0.01f), a1 = _mm512_set1_ps(0.02f), a2 = _mm512_set1_ps(0.03f),
         a3 = _mm512_set1_ps(0.04f), a4 = _mm512_set1_ps(0.05f), a5 = _mm512_set1_ps(0.06f),
         a6 = _mm512_set1_ps(0.07f), a7 = _mm512_set1_ps(0.08f), a8 = _mm512_set1_ps(0.09f),
         a9 = _mm512_set1_ps(0.10f), a10 = _mm512_set1_ps(0.11f), a11 = _mm512_set1_ps(0.12f);
  const __m512 m = _mm512_set1_ps(0.5f), b = _mm512_set1_ps(0.25f);
  constexpr long kIters = 100000000;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIters; ++i) {
#define HORQ_FMA(x) x = _mm512_fmadd_ps(x, m, b);
    HORQ_FMA(a0) HORQ_FMA(a1) HORQ_FMA(a2) HORQ_FMA(a3) HORQ_FMA(a4) HORQ_FMA(a5)
    HORQ_FMA(a6) HORQ_FMA(a7) HORQ_FMA(a8) HORQ_FMA(a9) HORQ_FMA(a10) HORQ_FMA(a11)
#undef HORQ_FMA
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  t = _mm512_add_ps(t, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  float out[16];
  _mm512_storeu_ps(out, t);
  std::printf("%.2f G 512-bit fused multiply-adds per second, 1 thread (checksum %g)\n",
              static_cast<double>(kIters) * 12 / s / 1e9, static_cast<double>(out[0]));
  return 0;
}
