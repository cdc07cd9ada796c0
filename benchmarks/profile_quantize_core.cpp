// A HORQ convolution's input side alone (quantize_conv_columns: pixel packing, and at order >= 2 the NHWC copy
// and the per-column passes) in a loop on the C++ core, for `perf` with symbols and for the time per column:
// order 2 minus order 1 is what the column passes cost. 3x3 kernel, padding 1, stride 1 unless given, batch 1,
// random N(0, 1) input, 1 thread, the best kernel path this CPU has unless one (avx512, avx2, generic) is named.
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_quantize_core.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_quantize_core       (one line)
//   /tmp/profile_quantize_core 64 32 2                # channels, size, order [, seconds [, path [, stride
//                                                     #  [, affine (1: a per-channel in_scale / in_shift)]]]]
//
// Prints the fastest and the median call and the median per output column.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/threadpool.h"

int main(int argc, char** argv) {
  const std::size_t c = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  const std::size_t s = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 32;
  const int order = argc > 3 ? std::atoi(argv[3]) : 2;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 2.0;
  horq::set_num_threads(1);
  const horq::KernelTable& kt = horq::kernel_table(argc > 5 ? argv[5] : "");
  const std::size_t stride = argc > 6 ? std::strtoul(argv[6], nullptr, 10) : 1;
  const bool affine = argc > 7 && std::atoi(argv[7]) != 0;
  const std::size_t out = (s + 2 - 3) / stride + 1;
  const horq::ConvGeometry g{1, c, s, s, 3, 3, stride, stride, 1, 1, 1, 1, out, out};
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(c * s * s), scale(c), shift(c);
  for (auto& v : x) v = normal(rng);
  for (std::size_t i = 0; i < c; ++i) scale[i] = 0.5f + 0.01f * static_cast<float>(i), shift[i] = normal(rng);
  std::vector<double> times;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const auto t0 = std::chrono::steady_clock::now();
    const float* sc = affine ? scale.data() : nullptr;
    const float* sh = affine ? shift.data() : nullptr;
    const horq::QuantizedColumns q = horq::quantize_conv_columns(kt, x.data(), g, order, sc, sh);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  std::printf("%zu calls, fastest %.1f us, median %.1f us, %.1f ns per column (%s, %zu channels, %zux%zu, stride %zu, "
              "order %d%s, 1 thread)\n",
              times.size(), times.front() * 1e6, med * 1e6, med * 1e9 / static_cast<double>(out * out), kt.name, c, s,
              s, stride, order, affine ? ", input affine" : "");
  return 0;
}
