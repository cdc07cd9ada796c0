// float_linear.h's driver, and its portable kernel: the 32 partial sums as scalars with std::fma, the x86 paths'
// operations lane for lane, so their reference bit for bit.
#include "core/float_linear.h"

#include <algorithm>
#include <cmath>

#include "core/dispatch.h"
#include "core/threadpool.h"

namespace horq {

void float_dots_generic(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows,
                        std::size_t ldx, float* y, std::size_t ldy) {
  constexpr std::size_t L = kFloatDotLanes;
  for (std::size_t o = 0; o < m; ++o)
    for (std::size_t r = 0; r < rows; ++r) {
      const float *wo = w + o * n, *xr = x + r * ldx;
      float s[L] = {};
      for (std::size_t i0 = 0; i0 < n; i0 += L)
        for (std::size_t l = 0; l < L; ++l) {
          const std::size_t i = i0 + l;
          s[l] = std::fma(i < n ? wo[i] : 0.0f, i < n ? xr[i] : 0.0f, s[l]);
        }
      for (std::size_t half = L / 2; half >= 1; half /= 2)
        for (std::size_t l = 0; l < half; ++l) s[l] += s[l + half];
      y[r * ldy + o] = s[0];
    }
}

namespace {

// Outputs per task: 64 rows of a 512-wide layer are 128 KB of weights, read in order; a 1000-way classifier is 16
// tasks. Jobs under kSerialFloats weights stay on the calling thread (a helper's wake-up costs more).
constexpr std::size_t kOutputsPerTask = 64;
constexpr std::size_t kSerialFloats = std::size_t{1} << 16;

}  // namespace

void float_linear(const KernelTable& kt, const float* x, std::size_t rows, std::size_t n, const float* w,
                  std::size_t m, const float* bias, const float* floor, const float* ceiling, float* y) {
  const SerialScope serial(m * n < kSerialFloats);
  parallel_for((m + kOutputsPerTask - 1) / kOutputsPerTask, [&](std::size_t t) {
    const std::size_t o0 = t * kOutputsPerTask, mb = std::min(kOutputsPerTask, m - o0);
    kt.float_dots(w + o0 * n, mb, n, x, rows, n, y + o0, m);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t o = o0; o < o0 + mb; ++o) {
        float& v = y[r * m + o];
        if (bias) v += bias[o];
        if (floor && !(v >= floor[o]) && !std::isnan(v)) v = floor[o];  // numpy.maximum(v, floor): NaN from either
        if (ceiling && !(v <= ceiling[o]) && !std::isnan(v)) v = ceiling[o];  // numpy.minimum(v, ceiling): the same
      }
  });
}

}  // namespace horq
