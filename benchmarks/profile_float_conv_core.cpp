// ResNet-18's 7x7 stride-2 stem (3 -> 64 channels, 224x224, batch 1, random weights) through float_conv2d on the
// C++ core alone, in a loop: the fastest and median call, 1 thread (HORQ_NUM_THREADS=N: N), on a kernel path
// (default: the best this CPU has). For `perf` with symbols and for A/B builds of the row kernels (docs/KERNELS.md
// round 8). With `pool` = 1 the stem's 3x3 stride-2 max pool (padding 1, a floor of 0: the ReLU before it) runs in
// the same call, as the runtime runs it (float_conv2d_pool: 64x56x56 out). `algorithm` picks FloatConvAlgorithm
// (float_conv.h): auto (default), direct or winograd. With `flush MB` > 0, that many MB of another buffer are written
// before every call (untimed), so each call finds its input, weights and buffers evicted from the caches (a "cold"
// call, as when other work ran between).
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_float_conv_core.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_float_conv_core       (one line)
//   /tmp/profile_float_conv_core [path [seconds [pool [algorithm [flush MB]]]]]
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
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  const bool pool = argc > 3 && std::atoi(argv[3]) != 0;
  const std::string name = argc > 4 ? argv[4] : "auto";
  const horq::FloatConvAlgorithm algorithm = name == "direct"     ? horq::FloatConvAlgorithm::direct
                                             : name == "winograd" ? horq::FloatConvAlgorithm::winograd
                                                                  : horq::FloatConvAlgorithm::automatic;
  const horq::ConvGeometry pg{1, 64, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 56, 56};
  const float zero = 0.0f;
  const horq::ConvGeometry g{1, 3, 224, 224, 7, 7, 2, 2, 3, 3, 1, 1, 112, 112};
  std::vector<float> x(3 * 224 * 224), w(64 * 147), y(64 * 112 * 112);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  for (auto& v : w) v = normal(rng);
  std::vector<char> flush((argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 0) << 20);
  std::vector<double> times;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (std::size_t i = 0; i < flush.size(); i += 64) ++flush[i];
    const auto t0 = std::chrono::steady_clock::now();
    if (pool) {
      horq::float_conv2d_pool(kt, x.data(), g, w.data(), 64, nullptr, nullptr, nullptr, pg, &zero, 1, y.data(),
                              algorithm);
    } else {
      horq::float_conv2d(kt, x.data(), g, w.data(), 64, nullptr, nullptr, nullptr, y.data(), algorithm);
    }
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::printf("%zu calls, fastest %.3f ms, median %.3f ms (%s, %s, ResNet-18 stem 3x224x224 -> 64x112x112%s, %d "
              "thread(s)%s)\n", times.size(), times.front() * 1e3, times[times.size() / 2] * 1e3, kt.name, name.c_str(),
              pool ? ", pooled to 64x56x56" : "", threads, flush.empty() ? "" : ", caches flushed before each call");
  return 0;
}
