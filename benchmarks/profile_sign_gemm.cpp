// The backward pass's float-by-sign product (csrc/core/sign_gemm.h) on the C++ core alone, for `perf` with symbols
// (the Python extension is stripped; the static core library that `make install` leaves in build/ is not):
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/profile_sign_gemm.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/profile_sign_gemm       (one line)
//   /tmp/profile_sign_gemm product R M J [seconds [path]]
//       one task's sign_gemm over R reduction rows, M lanes (in blocks of 64) and J sign rows; prints the median
//       call and the time per (sign row, 64 reduction rows, 64 lanes) step, also in cycles at 3.15 GHz (the rate
//       benchmarks/fma_peak.cpp implies on this development machine's core: use it for comparisons only)
//   /tmp/profile_sign_gemm wgrad ncols M words order [seconds [path]]
//       planes_weight_grad, the weight gradient from `order` kept planes of `ncols` columns of `words` words
//       against a (ncols, M) float gradient (mnist-cnn's 32 -> 64 layer at batch 64: wgrad 12544 64 5 2), 1 thread
//   /tmp/profile_sign_gemm igrad N C S M [seconds [path]]
//       conv_input_grad of a 3x3 stride-1 padding-1 convolution, C -> M channels on S x S maps, batch N, no clip
//       window (mnist-cnn's 32 -> 64 layer at batch 64: igrad 64 32 14 64), 1 thread
//   /tmp/profile_sign_gemm lgrad N O n [seconds [path]]
//       linear_input_grad of a linear layer n -> O at batch N with the clip window (mnist-cnn's 3136 -> 256 layer
//       at batch 64: lgrad 64 256 3136), 1 thread
//   perf record -o /tmp/perf.data /tmp/profile_sign_gemm ...; perf report -i /tmp/perf.data --sort symbol
//
// Random operands, 1 thread (HORQ_NUM_THREADS=N: N), the best kernel path unless one is named (avx512, avx2,
// generic).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/threadpool.h"
#include "core/train.h"

namespace {

using Clock = std::chrono::steady_clock;

template <class F>
double median_seconds(double secs, F&& call) {
  std::vector<double> ts;
  const auto t0 = Clock::now();
  while (ts.size() < 5 || std::chrono::duration<double>(Clock::now() - t0).count() < secs) {
    const auto a = Clock::now();
    call();
    ts.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

int usage() {
  std::fprintf(stderr, "usage: profile_sign_gemm product R M J [seconds [path]]\n"
                       "       profile_sign_gemm wgrad ncols M words order [seconds [path]]\n"
                       "       profile_sign_gemm igrad N C S M [seconds [path]]\n"
                       "       profile_sign_gemm lgrad N O n [seconds [path]]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace horq;
  if (argc < 5) return usage();
  const std::string mode = argv[1];
  const bool product = mode == "product", lgrad = mode == "lgrad";
  if (!product && !lgrad && ((mode != "wgrad" && mode != "igrad") || argc < 6)) return usage();
  const int extra = product || lgrad ? 5 : 6;  // first optional argument
  const double secs = argc > extra ? std::atof(argv[extra]) : 2.0;
  const KernelTable& kt = kernel_table(argc > extra + 1 ? argv[extra + 1] : "");
  // 1 thread unless HORQ_NUM_THREADS says otherwise (the library's own default would take every core).
  set_num_threads(std::getenv("HORQ_NUM_THREADS") ? std::atoi(std::getenv("HORQ_NUM_THREADS")) : 1);
  std::mt19937_64 rng(1);
  auto uniform = [&] { return static_cast<float>(rng() % 1000) / 1000.0f - 0.5f; };
  if (product) {
    const std::size_t R = std::strtoul(argv[2], nullptr, 10), M = std::strtoul(argv[3], nullptr, 10),
                      J = std::strtoul(argv[4], nullptr, 10);
    std::vector<float> a(R * M), scale(R, 0.5f), out(J * M);
    for (float& v : a) v = uniform();
    std::vector<const float*> rows(R);
    for (std::size_t r = 0; r < R; ++r) rows[r] = a.data() + r * M;
    std::vector<word_t> s(words_for(R) * J);
    for (word_t& w : s) w = rng();
    const SignGemm p{rows.data(), scale.data(), R, M, s.data(), J, out.data(), M, false};
    const double t = median_seconds(secs, [&] {
      for (std::size_t m = 0; m < M; m += 64) kt.sign_gemm(p, m, std::min(M, m + 64), 0, J);
    });
    const double steps = static_cast<double>(J) * (static_cast<double>(R) / 64) * (static_cast<double>(M) / 64);
    std::printf("%s sign_gemm R=%zu M=%zu J=%zu: median %.3f ms, %.2f ns = %.0f cycles at 3.15 GHz per step\n",
                kt.name, R, M, J, t * 1e3, t / steps * 1e9, t / steps * 3.15e9);
    return 0;
  }
  if (lgrad) {
    const std::size_t N = std::strtoul(argv[2], nullptr, 10), O = std::strtoul(argv[3], nullptr, 10),
                      n = std::strtoul(argv[4], nullptr, 10), words = words_for(n);
    std::vector<float> g(N * O), x(N * n), gx(x.size()), alpha(O, 0.5f);
    for (float& v : g) v = uniform();
    for (float& v : x) v = 2.5f * uniform();  // about 1 in 5 outside the clip window
    std::vector<word_t> wbits(O * words);
    for (word_t& w : wbits) w = rng();
    const double t = median_seconds(secs, [&] {
      linear_input_grad(kt, g.data(), alpha.data(), wbits.data(), N, O, n, x.data(), 1.0f, gx.data());
    });
    std::printf("%s linear_input_grad N=%zu O=%zu n=%zu: median %.3f ms\n", kt.name, N, O, n, t * 1e3);
    return 0;
  }
  if (mode == "igrad") {
    const std::size_t N = std::strtoul(argv[2], nullptr, 10), C = std::strtoul(argv[3], nullptr, 10),
                      S = std::strtoul(argv[4], nullptr, 10), M = std::strtoul(argv[5], nullptr, 10);
    const ConvGeometry geo{N, C, S, S, 3, 3, 1, 1, 1, 1, 1, 1, S, S};
    const std::size_t n = C * 9, words = words_for(n);
    std::vector<float> g(N * M * S * S), x(N * C * S * S), gx(x.size()), alpha(M, 0.5f);
    for (float& v : g) v = uniform();
    for (float& v : x) v = uniform();
    std::vector<word_t> wbits(M * words);
    for (std::size_t o = 0; o < M; ++o)
      for (std::size_t w = 0; w < words; ++w) {
        const std::size_t valid = std::min<std::size_t>(kWordBits, n - w * kWordBits);
        wbits[o * words + w] = rng() & (valid == kWordBits ? ~word_t{0} : (word_t{1} << valid) - 1);
      }
    const double t = median_seconds(secs, [&] {
      conv_input_grad(kt, g.data(), alpha.data(), wbits.data(), geo, M, x.data(), -1.0f, gx.data());
    });
    std::printf("%s conv_input_grad N=%zu C=%zu S=%zu M=%zu: median %.3f ms\n", kt.name, N, C, S, M, t * 1e3);
    return 0;
  }
  const std::size_t ncols = std::strtoul(argv[2], nullptr, 10), M = std::strtoul(argv[3], nullptr, 10),
                    ld = std::strtoul(argv[4], nullptr, 10);
  const int order = std::atoi(argv[5]);
  std::vector<float> g(ncols * M), out(ld * kWordBits * weight_grad_stride(M));
  for (float& v : g) v = uniform();
  std::vector<word_t> bits(ncols * static_cast<std::size_t>(order) * ld);
  for (word_t& w : bits) w = rng();
  std::vector<double> betas(ncols * static_cast<std::size_t>(order), 0.5);
  const double t = median_seconds(secs, [&] {
    planes_weight_grad(kt, g.data(), M, bits.data(), betas.data(), ncols, order, ld, ld * kWordBits, out.data());
  });
  std::printf("%s planes_weight_grad ncols=%zu M=%zu words=%zu order=%d: median %.3f ms\n", kt.name, ncols, M, ld,
              order, t * 1e3);
  return 0;
}
