// One depthwise float convolution (groups = channels, padding k / 2, bias and a floor of 0: BatchNorm folded and the
// ReLU after it, as the runtime runs MobileNet's layers) through float_conv2d on the C++ core alone, in a loop: the
// fastest and median call, 1 thread (HORQ_NUM_THREADS=N: N), batch 1, random values, on a kernel path (default: the
// best this CPU has). For `perf` and for A/B builds of the depthwise kernel (docs/KERNELS.md round 50). With `flush
// MB` > 0, that many MB of another buffer are written before every call (untimed), so each call finds its input and
// output evicted from the caches, as in a network whose layers' activations pass through memory.
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_depthwise_core.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_depthwise_core       (one line)
//   /tmp/profile_depthwise_core [path [channels [size [kernel [stride [seconds [flush MB]]]]]]]
//
// Defaults: the best path, 144 channels, 56x56, 3x3, stride 1 (MobileNetV2's third block), 2 seconds, no flush.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/float_conv.h"
#include "core/layer.h"
#include "core/threadpool.h"

int main(int argc, char** argv) {
  const int threads = std::getenv("HORQ_NUM_THREADS") ? std::atoi(std::getenv("HORQ_NUM_THREADS")) : 1;
  horq::set_num_threads(threads);
  const horq::KernelTable& kt = horq::kernel_table(argc > 1 ? argv[1] : "");
  const auto arg = [&](int i, std::size_t fallback) {
    return argc > i ? static_cast<std::size_t>(std::strtoul(argv[i], nullptr, 10)) : fallback;
  };
  const std::size_t c = arg(2, 144), size = arg(3, 56), k = arg(4, 3), s = arg(5, 1);
  const double seconds = argc > 6 ? std::atof(argv[6]) : 2.0;
  const std::size_t out = (size + 2 * (k / 2) - k) / s + 1;
  const horq::ConvGeometry g{1, c, size, size, k, k, s, s, k / 2, k / 2, 1, 1, out, out};
  std::vector<float> x(c * size * size), w(c * k * k), bias(c), floor(c, 0.0f), y(c * out * out);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  for (auto& v : w) v = normal(rng);
  for (auto& v : bias) v = normal(rng);
  std::vector<char> flush(arg(7, 0) << 20);
  std::vector<double> times;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (std::size_t i = 0; i < flush.size(); i += 64) ++flush[i];
    const auto t0 = std::chrono::steady_clock::now();
    horq::float_conv2d(kt, x.data(), g, w.data(), c, bias.data(), floor.data(), nullptr, y.data(),
                       horq::FloatConvAlgorithm::direct, c);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::printf("%zu calls, fastest %.4f ms, median %.4f ms (%s, depthwise %zux%zu stride %zu, %zu channels %zux%zu -> "
              "%zux%zu, %d thread(s)%s)\n", times.size(), times.front() * 1e3, times[times.size() / 2] * 1e3, kt.name,
              k, k, s, c, size, size, out, out, threads, flush.empty() ? "" : ", caches flushed before each call");
  return 0;
}
