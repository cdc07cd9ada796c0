// One binary convolution's input gradient (horq::conv_input_grad: the float-by-sign product through the packed
// weight signs, its fold into the padded input grid and the crop with the clip window; train_backward.cpp) in a
// loop on the C++ core alone, for `perf` with symbols (the Python extension is stripped). 3x3, stride 1, padding
// 1, NCHW, random gradient, input and weight signs, alpha 0.5, clip 1. Prints the fastest and the median call,
// 1 thread, on the best kernel path this CPU has unless a path (avx512, avx2, generic) is named.
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_input_grad.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_input_grad       (one line)
//   /tmp/profile_input_grad [C_in [C_out [size [batch [seconds [path]]]]]]     default: mnist-cnn's 32 -> 64 14x14
//                                                                             layer at batch 64
//
// Per image the call costs what the data's place in the memory hierarchy allows: compare batch 64 (the gradient,
// input and output streamed from memory) with batch 1-4 (in cache) for the share that waits on memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/threadpool.h"
#include "core/train.h"

int main(int argc, char** argv) {
  const std::size_t c = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 32;
  const std::size_t m = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
  const std::size_t s = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 14;
  const std::size_t n = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 64;
  const double seconds = argc > 5 ? std::atof(argv[5]) : 3.0;
  horq::set_num_threads(1);
  const horq::KernelTable& kt = horq::kernel_table(argc > 6 ? argv[6] : "");
  const horq::ConvGeometry g{n, c, s, s, 3, 3, 1, 1, 1, 1, 1, 1, s, s};
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(n * c * s * s), gy(n * m * s * s), gx(n * c * s * s), alpha(m, 0.5f);
  for (auto& v : x) v = normal(rng);
  for (auto& v : gy) v = normal(rng);
  std::vector<horq::word_t> wbits(m * horq::words_for(c * 9));
  for (auto& v : wbits) v = rng();
  std::vector<double> times;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const auto t0 = std::chrono::steady_clock::now();
    horq::conv_input_grad(kt, gy.data(), alpha.data(), wbits.data(), g, m, x.data(), 1.0f, gx.data());
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::printf("%zu calls, fastest %.3f ms, median %.3f ms (%s, 3x3 input gradient, %zu -> %zu channels, %zux%zu, "
              "batch %zu, 1 thread)\n",
              times.size(), times.front() * 1e3, times[times.size() / 2] * 1e3, kt.name, c, m, s, s, n);
  return 0;
}
