// One HORQ convolution (3x3 or k x k with k / 2 padding, stride 1 and C_in = C_out unless a stride is given: then
// C_out = 2 C_in, a ResNet downsampling layer; random weights) in a loop on the C++
// core alone, for `perf` with symbols: the Python extension is stripped (nanobind's release builds), so a
// profile of benchmarks/profile_conv.py shows the core's internal functions as bare addresses, while the static
// core library that `make install` leaves in build/ keeps them.
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_conv_core.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_conv_core       (one line)
//   perf record -o /tmp/perf.data /tmp/profile_conv_core 64 56 2      # channels, size, order [, seconds
//                                 #  [, batch [, train [, kernel size [, path [, flush MB [, stride [, nhwc
//                                 #  [, C_out [, residual [, rewrite]]]]]]]]]]]
//   perf report -i /tmp/perf.data --no-children --sort symbol
//
// With a batch and `train` = 1, each call also makes the columns explicit for the backward pass
// (materialize_columns, as the native training forward does). HORQ_AVX2_TABLE=0 puts every AVX2 task on the outer
// kernel instead of the table kernel (both its forms) where it applies. The calls share a WeightCache, as a runtime
// layer's do (the filter-lane table kernel's panels are built by the first). Prints the fastest call, 1 thread
// (HORQ_NUM_THREADS=N: N), on the best kernel path this CPU has unless a path (avx512, avx2, generic) is named
// (HORQ_KERNEL is not read here), the median call and the median of its input quantization alone
// (quantize_conv_columns; the rest is the GEMM with its epilogue), except where the runtime runs the input
// quantization inside the GEMM's job (more than one thread, layer.h conv_defers_pixels: conv_layer, then timed whole).
// With `flush MB` > 0, that many MB of another buffer are written before every call (untimed), so each call finds its
// weights, input and output evicted from the caches, as in a network whose other layers ran between (a "cold" call; 0,
// the default: every call after the first finds them cached).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/threadpool.h"
#include "core/train.h"

// The runtime's arrays start on a 64-byte line (bindings.cpp make_array); a std::vector's large buffer starts 16 bytes
// past a page, and at 2 threads the two halves of the output would then share a line per filter plane. The input,
// output and residual here are allocated as the runtime's are.
template <class T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <class U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const LineAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const LineAligned<U>&) const { return false; }
};
using Floats = std::vector<float, LineAligned<float>>;

int main(int argc, char** argv) {
  const std::size_t c = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  const std::size_t s = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 56;
  const int order = argc > 3 ? std::atoi(argv[3]) : 2;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 4.0;
  const std::size_t batch = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 1;
  const bool train = argc > 6 && std::atoi(argv[6]) != 0;
  const std::size_t k = argc > 7 ? std::strtoul(argv[7], nullptr, 10) : 3, pad = k / 2;  // k x k, "same" padding
  // 1 thread unless HORQ_NUM_THREADS says otherwise (the library's own default would take every core).
  horq::set_num_threads(std::getenv("HORQ_NUM_THREADS") ? std::atoi(std::getenv("HORQ_NUM_THREADS")) : 1);
  // HORQ_AVX2_TABLE=0: the AVX2 path's outer kernel on every task (dispatch.h set_avx2_table_gemm), for A/B runs.
  if (const char* t = std::getenv("HORQ_AVX2_TABLE")) horq::set_avx2_table_gemm(std::atoi(t) != 0);
  const horq::KernelTable& kt = horq::kernel_table(argc > 8 ? argv[8] : "");
  // Stride (argument 11): padding k / 2 either way, so a stride-2 1x1 is a ResNet shortcut with C_out = 2 C_in.
  const std::size_t st = argc > 10 ? std::strtoul(argv[10], nullptr, 10) : 1;
  // Argument 13: the output channels, when given (mnist-cnn's 32 -> 64 layer); else as above.
  const std::size_t m = argc > 12 ? std::strtoul(argv[12], nullptr, 10) : st == 1 ? c : 2 * c;
  if (c == 0 || s == 0 || batch == 0 || k == 0 || st == 0 || m == 0 || order < 1 || order > horq::kMaxOrder ||
      !(seconds > 0.0)) {
    std::fprintf(stderr, "profile_conv_core: channels, size, batch, kernel size, stride and C_out must be positive, "
                         "the order 1-%d and the seconds above 0\n", horq::kMaxOrder);
    return 2;
  }
  const std::size_t os = (s + 2 * pad - k) / st + 1;
  horq::ConvGeometry g{batch, c, s, s, k, k, st, st, pad, pad, 1, 1, os, os};
  g.nhwc = argc > 11 && std::atoi(argv[11]) != 0;  // argument 12: an NHWC input (channels_last training's)
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  Floats x(batch * c * s * s);
  for (auto& v : x) v = normal(rng);
  const std::size_t words = horq::conv_words(c, k * k);
  std::vector<horq::word_t> w(m * words);
  for (auto& v : w) v = rng();
  std::vector<double> coef(m, 0.5), add(m, 0.0);
  Floats y(batch * m * os * os);
  // Argument 14 = 1: the epilogue of a residual block's second convolution, + a residual map of the output's size,
  // then a floor of 0 (the ReLU after the add), as the runtime fuses them.
  const bool residual = argc > 13 && std::atoi(argv[13]) != 0;
  Floats res(residual ? y.size() : 0);
  std::vector<float> floor(residual ? m : 0, 0.0f);
  for (auto& v : res) v = normal(rng);
  const horq::Epilogue ep{coef.data(), add.data(), residual ? res.data() : nullptr,
                          residual ? floor.data() : nullptr};
  // Argument 15 = 1: before each call the calling thread writes the input (and residual) anew, as a network's
  // previous layer would: at 2 threads the helper then reads lines another core has just modified.
  const bool rewrite = argc > 14 && std::atoi(argv[14]) != 0;
  std::vector<char> flush((argc > 9 ? std::strtoul(argv[9], nullptr, 10) : 0) << 20);
  std::vector<double> times, quantize_times;  // whole calls; their input quantization alone
  horq::WeightCache cache;                    // what the path keeps of the weights, as a runtime layer does
  // Inference calls where the runtime runs the input quantization inside the GEMM's job (conv_layer) take that route;
  // their input quantization is not timed apart.
  const bool deferred = !train && horq::conv_defers_pixels(kt, g, order);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (std::size_t i = 0; i < flush.size(); i += 64) ++flush[i];
    if (rewrite) {  // every input value (and the residual's) written anew by this thread, untimed
      for (auto& v : x) v = -v;
      for (auto& v : res) v = -v;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (deferred) {
      horq::conv_layer(kt, x.data(), g, order, nullptr, nullptr, w.data(), m, ep, y.data(), &cache);
    } else {
      horq::QuantizedColumns q = horq::quantize_conv_columns(kt, x.data(), g, order);
      quantize_times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      horq::horq_gemm(kt, w.data(), m, q, ep, os * os, y.data(), &cache);
      if (train) horq::materialize_columns(q);
    }
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::sort(quantize_times.begin(), quantize_times.end());
  char quantize[64] = "inside the GEMM's job";
  if (!deferred)
    std::snprintf(quantize, sizeof quantize, "%.4f (median)", quantize_times[quantize_times.size() / 2] * 1e3);
  std::printf("%zu calls, fastest %.4f ms, median %.4f ms, of which input quantization %s (%s, %zux%zu "
              "kernel, stride %zu, %zu -> %zu channels, %zux%zu, order %d, batch %zu%s, %d thread(s)%s%s%s%s)\n",
              times.size(), times.front() * 1e3, times[times.size() / 2] * 1e3,
              quantize, kt.name, k, k, st, c, m, s, s, order,
              batch, train ? ", columns made explicit" : "", horq::get_num_threads(),
              flush.empty() ? "" : ", caches flushed before each call",
              g.nhwc ? ", NHWC input" : "", residual ? ", + residual and floor" : "",
              rewrite ? ", input rewritten before each call" : "");
  return 0;
}
