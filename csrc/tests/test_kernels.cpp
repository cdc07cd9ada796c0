// Every kernel path this build has -- the generic one on any target, AVX2 / AVX-512 where compiled and
// runnable -- against scalar models written here from the definitions (types.h: the bit convention;
// quantize.h: the residual recursion; layer.h: the layer epilogue), on the awkward sizes of STYLE.md.
// Plain C++ on the public headers of csrc/core, no Python: tests/kernels/test_portable_build.py builds it
// natively (and runs it under qemu as older x86-64 CPUs too) and cross-compiled for aarch64 (run under qemu), where it
// is the only test of the library.
//
//   horq_test_kernels [PATH ...]     (default: every path available_kernels() lists)
//
// Prints one line per failed case (the first kMaxReported) and a summary per path; the last line is
// "N passed, M failed" and the exit status is 1 if anything failed.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/quantize_walk.h"
#include "core/threadpool.h"
#include "core/train.h"

namespace {

using horq::KernelTable;
using horq::word_t;
using horq::words_for;

const std::size_t kSizes[] = {1, 3, 31, 32, 33, 63, 64, 65, 511, 512, 513};
const int kOrders[] = {1, 2, 3, 4};
constexpr int kMaxReported = 40;
// Fills output space a kernel must not write.
constexpr word_t kSentinelWord = 0xa5a5a5a5a5a5a5a5ull;
constexpr double kSentinelBeta = -12345.0;
constexpr std::int32_t kSentinelCount = -7;
// Betas are float64 means summed in another order than the model: a few ulps apart.
constexpr double kBetaRtol = 1e-12;
// quantize_taps2 sums beta_2 from float32 terms, each word's (<= 64 terms) partial sum in float32:
// relative error <= ~64 * 2^-24 = 4e-6 (quantize.h), so 1e-5.
constexpr double kBeta2Rtol32 = 1e-5;
// Layer outputs are float32 (relative 6e-8) of double sums whose order-2 conv beta_2 carries the 4e-6 above:
// 1e-5 of the largest expected output keeps a margin and covers outputs that cancel to near zero.
constexpr double kLayerRtol = 1e-5;

int g_passed = 0, g_failed = 0;

// One case: `error` is empty when it passed.
void record(const std::string& path, const std::string& what, const std::string& error) {
  if (error.empty()) {
    ++g_passed;
    return;
  }
  if (++g_failed <= kMaxReported) std::printf("FAIL [%s] %s: %s\n", path.c_str(), what.c_str(), error.c_str());
}

std::string fmt(const char* f, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

// splitmix64: fixed seed, the same stream on every target (std distributions are not specified bit-exactly).
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  // Mostly uniform in [-2, 2); one value in 16 is an exact zero (sign(0) = +1).
  float value() { return next() % 16 == 0 ? 0.0f : static_cast<float>(uniform() * 4.0 - 2.0); }
  std::vector<float> values(std::size_t count) {
    std::vector<float> v(count);
    for (auto& x : v) x = value();
    return v;
  }
};

// ---- scalar models -------------------------------------------------------------------------------------

bool get_bit(const word_t* row, std::size_t i) { return (row[i / 64] >> (i % 64)) & 1u; }

// Packs planes[i] (true = -1) for i in [begin, begin + count) into words_for(count) words.
void model_pack(const std::vector<bool>& plane, std::size_t begin, std::size_t count, word_t* out) {
  for (std::size_t w = 0; w < words_for(count); ++w) out[w] = 0;
  for (std::size_t i = 0; i < count; ++i)
    if (plane[begin + i]) out[i / 64] |= word_t{1} << (i % 64);
}

// quantize.h's recursion as written there: beta_k = mean |r_{k-1}|, H_k = sign(r_{k-1}), r_k = r_{k-1} - beta_k H_k.
struct ModelColumn {
  std::vector<std::vector<bool>> planes;  // planes[k][i]: H_{k+1} of value i is -1
  std::vector<double> betas;
};

ModelColumn model_quantize(const std::vector<double>& x, int order) {
  ModelColumn c;
  std::vector<double> r = x;
  for (int k = 0; k < order; ++k) {
    double sum = 0.0;
    for (double v : r) sum += std::fabs(v);
    const double beta = sum / static_cast<double>(r.size());
    std::vector<bool> plane(r.size());
    for (std::size_t i = 0; i < r.size(); ++i) {
      plane[i] = r[i] < 0.0;
      r[i] = plane[i] ? r[i] + beta : r[i] - beta;
    }
    c.planes.push_back(plane);
    c.betas.push_back(beta);
  }
  return c;
}

std::string compare_beta(double got, double want, double rtol, int k) {
  if (std::fabs(got - want) <= rtol * std::fabs(want) || got == want) return "";
  return "beta_" + std::to_string(k + 1) + fmt(" = %.17g, expected %.17g", got, want);
}

// ---- kernel tables: bgemm, quantize_column, quantize_taps, quantize_taps2 ----------------------------------

void test_bgemm(const KernelTable& kt, Rng& rng) {
  std::vector<std::size_t> ns(std::begin(kSizes), std::end(kSizes));
  ns.push_back(65536);  // counts up to 65536 overflow 16 bits (row 0 below is all ones against zeros)
  const std::size_t shapes[][2] = {{1, 1}, {6, 2}, {5, 3}, {3, 5}, {7, 9}, {17, 13}};  // few columns: avx2 scalar
  for (std::size_t n : ns)
    for (const auto& s : shapes) {
      const std::size_t m = s[0], nb = s[1], kw = words_for(n), ldc = nb + 3;
      if (n > 4096 && m > 3) continue;
      std::vector<word_t> a(m * kw), b(nb * kw);
      for (auto* v : {&a, &b})
        for (std::size_t r = 0; r < v->size() / kw; ++r)
          for (std::size_t i = 0; i < n; ++i)
            if (rng.next() & 1u) (*v)[r * kw + i / 64] |= word_t{1} << (i % 64);
      for (std::size_t i = 0; i < n; ++i) a[i / 64] |= word_t{1} << (i % 64);
      for (std::size_t w = 0; w < kw; ++w) b[w] = 0;
      std::vector<std::int32_t> c(m * ldc, kSentinelCount);
      kt.bgemm(a.data(), m, b.data(), nb, kw, c.data(), ldc);
      std::string err;
      for (std::size_t i = 0; i < m && err.empty(); ++i)
        for (std::size_t j = 0; j < ldc && err.empty(); ++j) {
          std::int32_t want = kSentinelCount;
          if (j < nb) {
            want = 0;
            for (std::size_t t = 0; t < n; ++t) want += get_bit(&a[i * kw], t) != get_bit(&b[j * kw], t);
          }
          if (c[i * ldc + j] != want)
            err = fmt("c[%g][%g]", static_cast<double>(i), static_cast<double>(j)) + " = " +
                  std::to_string(c[i * ldc + j]) + ", expected " + std::to_string(want);
        }
      record(kt.name, "bgemm n=" + std::to_string(n) + " m=" + std::to_string(m) + " nb=" + std::to_string(nb),
             err);
    }
}

// Checks `order` rows of bits (row stride ldbits, `groups` groups of cg values) against the model planes,
// rows [first, order); the words from groups * gw to ldbits must keep the sentinel.
std::string compare_planes(const std::vector<word_t>& bits, std::size_t ldbits, const ModelColumn& ref,
                           std::size_t groups, std::size_t cg, int first, int order) {
  const std::size_t gw = words_for(cg);
  std::vector<word_t> want(gw);
  for (int k = first; k < order; ++k) {
    for (std::size_t g = 0; g < groups; ++g) {
      model_pack(ref.planes[k], g * cg, cg, want.data());
      for (std::size_t w = 0; w < gw; ++w)
        if (bits[k * ldbits + g * gw + w] != want[w])
          return "H_" + std::to_string(k + 1) + " group " + std::to_string(g) + " word " + std::to_string(w) +
                 " differs";
    }
    for (std::size_t w = groups * gw; w < ldbits; ++w)
      if (bits[k * ldbits + w] != kSentinelWord) return "H_" + std::to_string(k + 1) + " wrote past its groups";
  }
  return "";
}

void test_quantize_column(const KernelTable& kt, Rng& rng) {
  for (std::size_t cg : kSizes)
    for (std::size_t groups : {std::size_t{1}, std::size_t{9}})
      for (int order : {1, 2, 3, 4, 8})
        for (bool zero : {false, true}) {
          if (zero && (groups > 1 || order != 3)) continue;  // one all-zero column per size: beta_1 = 0
          const std::size_t n = groups * cg, gw = words_for(cg), ldbits = groups * gw + 1;
          std::vector<double> x(n, 0.0);
          if (!zero)
            for (auto& v : x) v = rng.value();
          const ModelColumn ref = model_quantize(x, order);
          std::vector<double> r = x, betas(order + 1, kSentinelBeta);
          std::vector<word_t> bits(order * ldbits, kSentinelWord);
          kt.quantize(r.data(), groups, cg, order, bits.data(), ldbits, betas.data());
          std::string err = compare_planes(bits, ldbits, ref, groups, cg, 0, order);
          for (int k = 0; k < order && err.empty(); ++k) err = compare_beta(betas[k], ref.betas[k], kBetaRtol, k);
          if (err.empty() && betas[order] != kSentinelBeta) err = "wrote past betas[order - 1]";
          record(kt.name, "quantize_column cg=" + std::to_string(cg) + " groups=" + std::to_string(groups) +
                              " order=" + std::to_string(order) + (zero ? " zeros" : ""), err);
        }
}

// A conv column of ntaps taps of cg channels; every third tap (from tap 1) is padding unless all_pad.
struct TapColumn {
  std::vector<std::vector<float>> data;
  std::vector<const float*> taps;
  std::vector<double> x;  // the column as the model sees it, padding as zeros
};

TapColumn make_taps(Rng& rng, std::size_t ntaps, std::size_t cg, bool all_pad) {
  TapColumn c;
  c.data.resize(ntaps);
  for (std::size_t t = 0; t < ntaps; ++t) {
    const bool pad = all_pad || t % 3 == 1;
    if (!pad) c.data[t] = rng.values(cg);
    c.taps.push_back(pad ? nullptr : c.data[t].data());
    for (std::size_t i = 0; i < cg; ++i) c.x.push_back(pad ? 0.0 : c.data[t][i]);
  }
  return c;
}

void test_quantize_taps(const KernelTable& kt, Rng& rng, bool taps2) {
  const char* op = taps2 ? "quantize_taps2" : "quantize_taps";
  for (std::size_t cg : kSizes)
    for (std::size_t ntaps : {std::size_t{1}, std::size_t{4}, std::size_t{9}})
      for (int order : {2, 3, 4, 8})
        for (bool all_pad : {false, true}) {
          if ((taps2 && order != 2) || (all_pad && ntaps != 4)) continue;
          const TapColumn col = make_taps(rng, ntaps, cg, all_pad);
          const ModelColumn ref = model_quantize(col.x, order);
          const std::size_t ldbits = ntaps * words_for(cg) + 1;
          std::vector<word_t> bits(order * ldbits, kSentinelWord);
          std::vector<double> betas(order + 1, kSentinelBeta);
          betas[0] = ref.betas[0];  // the caller's box sum
          if (taps2) {  // row 0 holds H_1, as the caller gathers it (read, not written)
            for (std::size_t t = 0; t < ntaps; ++t)
              model_pack(ref.planes[0], t * cg, cg, bits.data() + t * words_for(cg));
            kt.quantize_taps2(col.taps.data(), ntaps, cg, bits.data(), ldbits, betas.data());
          } else {
            kt.quantize_taps(col.taps.data(), ntaps, cg, order, bits.data(), ldbits, betas.data());
          }
          std::string err = compare_planes(bits, ldbits, ref, ntaps, cg, 1, order);
          if (err.empty() && taps2) err = compare_planes(bits, ldbits, ref, ntaps, cg, 0, 1);  // H_1 as it was
          for (std::size_t w = taps2 ? ldbits - 1 : 0; w < ldbits && err.empty(); ++w)
            if (bits[w] != kSentinelWord) err = "row 0 (H_1) was written";
          for (int k = 1; k < order && err.empty(); ++k)
            err = compare_beta(betas[k], ref.betas[k], taps2 ? kBeta2Rtol32 : kBetaRtol, k);
          if (err.empty() && (betas[0] != ref.betas[0] || betas[order] != kSentinelBeta))
            err = "betas outside [1, order) were written";
          record(kt.name, std::string(op) + " cg=" + std::to_string(cg) + " taps=" + std::to_string(ntaps) +
                              " order=" + std::to_string(order) + (all_pad ? " all padding" : ""), err);
        }
}

// quantize_taps3 (paths that have it) after a given H_2 and beta_2 (the model's: the kernel's H_3 is then the double
// chain's exactly), against the model's H_3 and beta_3 (float32 terms: ~64 * 2^-24 of beta_1 a word's sum, the scale
// of the values; beta_3 itself may be far smaller); false (thresholds that do not apply) must write nothing. Every
// path with it gives the generic path's bits and betas exactly (the generic pass adds the avx2 lanes in their order).
// Values a few float32 steps around 1 make the thresholds' last step decide bits.
void test_quantize_taps3(const KernelTable& kt, Rng& rng) {
  if (!kt.quantize_taps3) return;
  const KernelTable& generic = horq::kernel_table("generic");
  for (std::size_t cg : kSizes)
    for (std::size_t ntaps : {std::size_t{1}, std::size_t{4}, std::size_t{9}})
      for (bool near_one : {false, true}) {
        TapColumn col = make_taps(rng, ntaps, cg, false);
        if (near_one)
          for (std::size_t t = 0; t < ntaps; ++t)
            for (std::size_t i = 0; i < col.data[t].size(); ++i) {
              const float m = 1.0f + static_cast<float>(rng.next() % 24) * 0x1p-23f;
              col.data[t][i] = rng.next() % 2 ? -m : m;
              col.x[t * cg + i] = col.data[t][i];
            }
        const ModelColumn ref = model_quantize(col.x, 3);
        const std::size_t ldbits = ntaps * words_for(cg) + 1;
        std::vector<word_t> bits(3 * ldbits, kSentinelWord);
        for (std::size_t t = 0; t < ntaps; ++t)  // rows 0 and 1: H_1 and H_2 as the caller leaves them
          for (int k = 0; k < 2; ++k)
            model_pack(ref.planes[k], t * cg, cg, bits.data() + k * ldbits + t * words_for(cg));
        std::vector<double> betas = {ref.betas[0], ref.betas[1], kSentinelBeta, kSentinelBeta};
        std::vector<word_t> gbits = bits;
        std::vector<double> gbetas = betas;
        const bool ok = kt.quantize_taps3(col.taps.data(), ntaps, cg, bits.data(), ldbits, betas.data());
        std::string err;
        if (ok) {
          err = compare_planes(bits, ldbits, ref, ntaps, cg, 2, 3);
          if (err.empty() && !(std::fabs(betas[2] - ref.betas[2]) <= 4e-6 * ref.betas[0]))
            err = "beta_3" + fmt(" = %.17g, expected %.17g", betas[2], ref.betas[2]);
          if (err.empty() && &kt != &generic) {
            const bool gok = generic.quantize_taps3(col.taps.data(), ntaps, cg, gbits.data(), ldbits, gbetas.data());
            if (!gok || gbits != bits || gbetas != betas) err = "differs from the generic path's bits or beta_3";
          }
        } else {
          for (std::size_t w = 2 * ldbits; w < 3 * ldbits && err.empty(); ++w)
            if (bits[w] != kSentinelWord) err = "returned false but wrote H_3";
          if (err.empty() && betas[2] != kSentinelBeta) err = "returned false but wrote beta_3";
        }
        if (err.empty() && (betas[0] != ref.betas[0] || betas[1] != ref.betas[1] || betas[3] != kSentinelBeta))
          err = "betas other than beta_3 were written";
        record(kt.name, "quantize_taps3 cg=" + std::to_string(cg) + " taps=" + std::to_string(ntaps) +
                            (near_one ? " near 1" : "") + (ok ? "" : " (declined)"), err);
      }
}

// ---- layer.h drivers: linear and conv layers, bgemm_dot -------------------------------------------------

struct Weights {
  std::vector<bool> neg;  // m rows of n signs, true = -1
  std::vector<word_t> bits;
  std::vector<double> coef, add;
};

Weights make_weights(Rng& rng, std::size_t m, std::size_t n) {
  Weights w;
  w.neg.resize(m * n);
  w.bits.assign(m * words_for(n), 0);
  for (std::size_t o = 0; o < m; ++o) {
    for (std::size_t i = 0; i < n; ++i) w.neg[o * n + i] = rng.value() < 0.0f;
    model_pack(w.neg, o * n, n, w.bits.data() + o * words_for(n));
    w.coef.push_back(0.1 + rng.uniform());  // alpha * scale
    w.add.push_back(rng.uniform() - 0.5);   // scale * bias + shift
  }
  return w;
}

// y = coef_o * sum_k beta_k (w_o . H_k) + add_o for one column.
double model_output(const Weights& w, std::size_t o, std::size_t n, const ModelColumn& col) {
  double s = 0.0;
  for (std::size_t k = 0; k < col.betas.size(); ++k) {
    long dot = 0;
    for (std::size_t i = 0; i < n; ++i) dot += w.neg[o * n + i] == col.planes[k][i] ? 1 : -1;
    s += col.betas[k] * static_cast<double>(dot);
  }
  return w.coef[o] * s + w.add[o];
}

std::string compare_outputs(const std::vector<float>& got, const std::vector<double>& want) {
  double scale = 1.0;
  for (double v : want) scale = std::fmax(scale, std::fabs(v));
  for (std::size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= kLayerRtol * scale))
      return "y[" + std::to_string(i) + "]" + fmt(" = %.9g, expected %.9g", got[i], want[i]);
  return "";
}

// Runs `layer` with 1 and 3 threads: the results must be bitwise identical (threadpool.h).
template <class F>
std::string run_threads(F layer, std::vector<float>& y) {
  horq::set_num_threads(1);
  std::vector<float> y1 = layer();
  horq::set_num_threads(3);
  y = layer();
  if (std::memcmp(y1.data(), y.data(), y.size() * sizeof(float)) != 0) return "1 and 3 threads differ";
  return "";
}

void test_linear(const KernelTable& kt, Rng& rng) {
  for (std::size_t n : kSizes)
    for (int order : kOrders)
      for (std::size_t rows : {std::size_t{1}, std::size_t{5}}) {
        const std::size_t m = rows == 1 ? 66 : 7;  // 66 crosses the driver's 64-output block
        const std::vector<float> x = rng.values(rows * n);
        const Weights w = make_weights(rng, m, n);
        std::vector<float> y;
        std::string err = run_threads([&] {
          const horq::QuantizedColumns q = horq::quantize_rows(kt, x.data(), rows, n, order);
          std::vector<float> out(rows * m);
          horq::horq_gemm(kt, w.bits.data(), m, q, horq::Epilogue{w.coef.data(), w.add.data()}, 1, out.data());
          return out;
        }, y);
        std::vector<double> want(rows * m);
        for (std::size_t j = 0; j < rows; ++j) {
          const ModelColumn col =
              model_quantize(std::vector<double>(x.begin() + j * n, x.begin() + (j + 1) * n), order);
          for (std::size_t o = 0; o < m; ++o) want[j * m + o] = model_output(w, o, n, col);
        }
        if (err.empty()) err = compare_outputs(y, want);
        record(kt.name, "linear n=" + std::to_string(n) + " rows=" + std::to_string(rows) + " m=" +
                            std::to_string(m) + " order=" + std::to_string(order), err);
      }
}

struct ConvCase {
  std::size_t batch, channels, height, width, kh, kw, sh, sw, ph, pw, dh, dw;
};

void test_conv(const KernelTable& kt, Rng& rng) {
  const ConvCase cases[] = {
      {2, 3, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1},    // compact layout (3 channels x 9 taps in one word)
      {1, 1, 4, 5, 1, 1, 2, 2, 0, 0, 1, 1},    // 1x1, stride 2
      {1, 32, 6, 5, 3, 3, 2, 2, 1, 1, 1, 1},   // compact, 5 words
      {1, 64, 5, 5, 3, 3, 1, 1, 0, 0, 1, 1},   // grouped, exact words
      {2, 65, 4, 6, 2, 3, 1, 2, 1, 0, 2, 1},   // grouped, dilation, asymmetric everything
      {1, 130, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},  // 3 words per pixel
  };
  for (const ConvCase& c : cases)
    for (int order : kOrders)
      for (std::size_t m : {std::size_t{5}, std::size_t{65}}) {
        horq::ConvGeometry g{c.batch, c.channels, c.height, c.width, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw,
                             0, 0};
        g.out_h = (c.height + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
        g.out_w = (c.width + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
        const std::size_t taps = c.kh * c.kw, n = c.channels * taps, ppi = g.out_h * g.out_w;
        const std::vector<float> x = rng.values(c.batch * c.channels * c.height * c.width);
        const Weights w = make_weights(rng, m, n);  // PackedWeights order: (c, i, j)
        std::vector<word_t> wl(m * horq::conv_words(c.channels, taps));
        horq::relayout_conv_weights(w.bits.data(), m, c.channels, c.kh, c.kw, wl.data());
        std::vector<float> y;
        std::string err = run_threads([&] {
          const horq::QuantizedColumns q = horq::quantize_conv_columns(kt, x.data(), g, order);
          std::vector<float> out(c.batch * m * ppi);
          horq::horq_gemm(kt, wl.data(), m, q, horq::Epilogue{w.coef.data(), w.add.data()}, ppi, out.data());
          return out;
        }, y);
        std::vector<double> want(c.batch * m * ppi);
        for (std::size_t b = 0; b < c.batch; ++b)
          for (std::size_t oy = 0; oy < g.out_h; ++oy)
            for (std::size_t ox = 0; ox < g.out_w; ++ox) {
              std::vector<double> col;  // the receptive field in (c, i, j) order, zero padding included
              for (std::size_t ch = 0; ch < c.channels; ++ch)
                for (std::size_t i = 0; i < c.kh; ++i)
                  for (std::size_t j = 0; j < c.kw; ++j) {
                    const long iy = static_cast<long>(oy * c.sh + i * c.dh) - static_cast<long>(c.ph);
                    const long ix = static_cast<long>(ox * c.sw + j * c.dw) - static_cast<long>(c.pw);
                    const bool in = iy >= 0 && ix >= 0 && iy < static_cast<long>(c.height) &&
                                    ix < static_cast<long>(c.width);
                    col.push_back(in ? x[((b * c.channels + ch) * c.height + iy) * c.width + ix] : 0.0);
                  }
              const ModelColumn rc = model_quantize(col, order);
              for (std::size_t o = 0; o < m; ++o)
                want[(b * m + o) * ppi + oy * g.out_w + ox] = model_output(w, o, n, rc);
            }
        if (err.empty()) err = compare_outputs(y, want);
        record(kt.name, "conv C=" + std::to_string(c.channels) + " " + std::to_string(c.height) + "x" +
                            std::to_string(c.width) + " k=" + std::to_string(c.kh) + "x" + std::to_string(c.kw) +
                            " m=" + std::to_string(m) + " order=" + std::to_string(order), err);
      }
}

// A residual whose loads 4K-alias the outputs (page-aligned buffers, 32x32 maps: layer.h residual_aliases_output)
// takes the loads-first epilogue where a path has one: the same floats as a residual that does not alias, and as the
// epilogue without it plus the residual, then the floor (the same float32 operations).
void test_residual_aliasing(const KernelTable& kt, Rng& rng) {
  constexpr std::size_t kPage = 4096 / sizeof(float), C = 64, S = 32, M = 24, P = S * S;
  horq::ConvGeometry g{1, C, S, S, 3, 3, 1, 1, 1, 1, 1, 1, S, S};
  const std::vector<float> x = rng.values(C * P);
  const Weights w = make_weights(rng, M, C * 9);
  std::vector<word_t> wl(M * horq::conv_words(C, 9));
  horq::relayout_conv_weights(w.bits.data(), M, C, 3, 3, wl.data());
  const std::vector<float> res = rng.values(M * P), floor = rng.values(M);
  // One buffer, page-aligned: y at 0, an aliasing residual one page on, a shifted one 64 floats further.
  std::vector<float> buf(4 * M * P + 3 * kPage);
  float* base = buf.data() + (kPage - reinterpret_cast<std::uintptr_t>(buf.data()) / sizeof(float) % kPage) % kPage;
  float* y = base;
  float* aliasing = base + ((M * P + kPage - 1) / kPage) * kPage;
  float* shifted = aliasing + M * P + kPage + 64;
  std::copy(res.begin(), res.end(), aliasing);
  std::copy(res.begin(), res.end(), shifted);
  std::string err;
  if (!horq::residual_aliases_output(y, aliasing, P) || horq::residual_aliases_output(y, shifted, P) ||
      horq::residual_aliases_output(y, aliasing, 16 * 16) || horq::residual_aliases_output(y, nullptr, P))
    err = "residual_aliases_output";
  for (int order : {1, 2}) {
    if (!err.empty()) break;
    const horq::QuantizedColumns q = horq::quantize_conv_columns(kt, x.data(), g, order);
    std::vector<float> a(M * P), b(M * P), plain(M * P);
    horq::horq_gemm(kt, wl.data(), M, q, horq::Epilogue{w.coef.data(), w.add.data(), aliasing, floor.data()}, P, y);
    std::copy(y, y + M * P, a.begin());
    horq::horq_gemm(kt, wl.data(), M, q, horq::Epilogue{w.coef.data(), w.add.data(), shifted, floor.data()}, P, y);
    std::copy(y, y + M * P, b.begin());
    horq::horq_gemm(kt, wl.data(), M, q, horq::Epilogue{w.coef.data(), w.add.data()}, P, plain.data());
    for (std::size_t i = 0; i < M * P && err.empty(); ++i) {
      float want = plain[i] + res[i];
      if (floor[i / P] > want) want = floor[i / P];
      if (std::memcmp(&a[i], &want, sizeof(float)) != 0 || std::memcmp(&b[i], &want, sizeof(float)) != 0)
        err = "order " + std::to_string(order) + " output " + std::to_string(i) + ": " + std::to_string(a[i]) +
              " (aliasing) / " + std::to_string(b[i]) + " (not) against " + std::to_string(want);
    }
  }
  record(kt.name, "residual aliasing the outputs", err);
}

void test_bgemm_dot(const KernelTable& kt, Rng& rng) {
  for (std::size_t n : kSizes) {
    const std::size_t m = 5, nb = 70, kw = words_for(n);  // 70 crosses the driver's 64-column block
    std::vector<bool> a(m * n), b(nb * n);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = rng.next() & 1u;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = rng.next() & 1u;
    std::vector<word_t> pa(m * kw), pb(nb * kw);
    for (std::size_t i = 0; i < m; ++i) model_pack(a, i * n, n, pa.data() + i * kw);
    for (std::size_t j = 0; j < nb; ++j) model_pack(b, j * n, n, pb.data() + j * kw);
    std::vector<std::int32_t> out(m * nb);
    horq::bgemm_dot(kt, pa.data(), m, pb.data(), nb, kw, n, out.data());
    std::string err;
    for (std::size_t i = 0; i < m && err.empty(); ++i)
      for (std::size_t j = 0; j < nb && err.empty(); ++j) {
        std::int32_t dot = 0;
        for (std::size_t t = 0; t < n; ++t) dot += a[i * n + t] == b[j * n + t] ? 1 : -1;
        if (out[i * nb + j] != dot)
          err = "out[" + std::to_string(i * nb + j) + "] = " + std::to_string(out[i * nb + j]) + ", expected " +
                std::to_string(dot);
      }
    record(kt.name, "bgemm_dot n=" + std::to_string(n), err);
  }
}

// The backward pass's float-by-sign product (sign_gemm.h) against the definition summed in double: random
// floats and signs, the sizes of kSizes for the reduction (R) and the lanes (M), with and without row
// scales, threaded, all rows or a leading part of them (the rest untouched); float32 sums of R terms of size ~1
// stay within R * 2^-24 of the double sum relative to the sum of |terms|, so the check allows
// 1e-6 * sum |terms| + 1e-30.
void test_sign_gemm(const KernelTable& kt, Rng& rng) {
  for (std::size_t R : kSizes)
    for (std::size_t M : {std::size_t{1}, std::size_t{17}, std::size_t{64}, std::size_t{65}}) {
      const std::size_t J = 37;
      std::vector<float> a(R * M), scale(R);
      for (auto& v : a) v = rng.value();
      for (auto& v : scale) v = rng.value();
      std::vector<word_t> s(words_for(R) * J);
      for (auto& v : s) v = rng.next();
      std::vector<const float*> rows(R);
      for (std::size_t r = 0; r < R; ++r) rows[r] = a.data() + r * M;
      for (int scaled = 0; scaled < 2; ++scaled) {
        // Scaled: all J rows; unscaled: the first 30 only, the rest must stay untouched.
        const std::size_t rows_done = scaled ? J : 30;
        std::vector<float> out(J * M, -7.0f);
        horq::sign_gemm(kt, horq::SignGemm{rows.data(), scaled ? scale.data() : nullptr, R, M, s.data(), J, out.data(),
                                           M, false},
                        rows_done);
        std::string err;
        for (std::size_t j = rows_done; j < J && err.empty(); ++j)
          for (std::size_t m = 0; m < M && err.empty(); ++m)
            if (out[j * M + m] != -7.0f) err = "row " + std::to_string(j) + " past the rows asked for was written";
        for (std::size_t j = 0; j < rows_done && err.empty(); ++j)
          for (std::size_t m = 0; m < M && err.empty(); ++m) {
            double want = 0.0, mag = 0.0;
            for (std::size_t r = 0; r < R; ++r) {
              const bool neg = (s[(r / 64) * J + j] >> (r % 64)) & 1u;
              const double t = static_cast<double>(a[r * M + m]) * (scaled ? scale[r] : 1.0f);
              want += neg ? -t : t;
              mag += std::fabs(t);
            }
            if (std::fabs(out[j * M + m] - want) > 1e-6 * mag + 1e-30)
              err = "out[" + std::to_string(j) + ", " + std::to_string(m) + "] = " + std::to_string(out[j * M + m]) +
                    ", expected " + std::to_string(want);
          }
        record(kt.name, "sign_gemm R=" + std::to_string(R) + " M=" + std::to_string(M) +
                            (scaled ? " scaled" : ""), err);
      }
    }
}

// ---- path-independent: sign packing and the dispatch table ---------------------------------------------

// Threshold3 (quantize_walk.h): for (beta_1, beta_2) pairs, random and crafted (dyadic pairs whose band edges beta_1 +-
// beta_2 are float32 values that tie exactly; edges far apart or below zero; tiny beta_2 against a large beta_1), every
// float32 a >= 0 within 200 steps of either edge (and 0) has, where `ok`, lo < a < hi exactly when the double chain's
// fl64(|a - beta_1|) < beta_2, and `ok` is false where one of those a gives equality; the random pairs nearly all `ok`
// (the dyadic ones tie by design).
void test_threshold3(Rng& rng) {
  std::vector<std::pair<double, double>> pairs = {{2.0, 1.0},       {1.0625, 0.9375}, {0.515625, 0.515625},
                                                  {0.3, 0.456789},  {1e6 + 0.3, 1e-3}, {0.7978123, 0.45678912},
                                                  {1.0, 0x1p-30},   {0.0, 0.5},        {5.0, 5.0},
                                                  {1.0 + 0x1p-30, 0.875 + 0x1p-30},  // ties at lo = 0.125 only
                                                  // far from 1: huge, tiny, subnormal, one edge far off the other
                                                  {1e30, 3e29}, {1e-30, 4e-31}, {3e-39, 1e-39},
                                                  {1e20, 1e-10}, {1e-10, 1e20}, {2e38, 1e38}};
  for (int i = 0; i < 400; ++i) {
    const double b1 = rng.uniform() * (i % 3 == 0 ? 100.0 : 2.0);
    pairs.push_back({b1, b1 * (0.1 + 2.0 * rng.uniform())});
    // Edges on float32 values: beta_1 and beta_2 short binary fractions (ties at hi and lo).
    pairs.push_back({std::ldexp(std::floor(rng.uniform() * 4096.0), -10),
                     std::ldexp(1.0 + std::floor(rng.uniform() * 512.0), -9)});
  }
  std::string err;
  std::size_t oks = 0;
  for (const auto& [b1, b2] : pairs) {
    const horq::Threshold3 th(b1, b2);
    bool tie = false, wrong = false;
    const auto check = [&](float a) {
      const double d = std::fabs(static_cast<double>(a) - b1);
      tie = tie || d == b2;
      if ((th.lo < a && a < th.hi) != (d < b2)) wrong = true;
    };
    const auto around = [&](double at) {
      float f = static_cast<float>(std::max(0.0, at));
      for (int k = 0; k < 200 && f > 0.0f; ++k) f = std::nextafter(f, 0.0f);
      for (int k = 0; k < 400; ++k, f = std::nextafter(f, 1e38f)) check(f);
    };
    around(b1 + b2);
    around(b1 - b2);
    check(0.0f);
    oks += th.ok && b2 != std::ldexp(std::floor(std::ldexp(b2, 9)), -9);  // a random pair's
    if (((th.ok && wrong) || (tie && th.ok)) && err.empty())
      err = fmt("beta_1 %.17g, beta_2 %.17g: ", b1, b2) + (wrong ? "a value on the wrong side" : "ok with a tie");
  }
  if (err.empty() && oks < 390) err = "only " + std::to_string(oks) + " of 400 random pairs ok";
  record("-", "Threshold3 band edges", err);
}

void test_pack_signs(Rng& rng) {
  for (std::size_t n : kSizes) {
    const std::size_t rows = 3, stride = n + 2;
    const std::vector<float> x = rng.values(rows * stride);
    std::vector<word_t> got(rows * words_for(n), kSentinelWord), want(words_for(n));
    horq::pack_signs(x.data(), rows, n, stride, got.data());
    std::string err;
    for (std::size_t r = 0; r < rows && err.empty(); ++r) {
      std::vector<bool> neg(n);
      for (std::size_t i = 0; i < n; ++i) neg[i] = x[r * stride + i] < 0.0f;
      model_pack(neg, 0, n, want.data());
      if (std::memcmp(want.data(), got.data() + r * words_for(n), want.size() * sizeof(word_t)) != 0)
        err = "row " + std::to_string(r) + " differs";
    }
    record("-", "pack_signs n=" + std::to_string(n), err);
  }
}

// ColumnCursor::skip(k), where row_holds(k), lands where k calls of next() do: images of 1-3 rows of 1-17 columns,
// every start and every k the row holds (the last column of a row, of an image: the step to the next row, image).
void test_column_cursor() {
  std::string err;
  for (std::size_t w = 1; w <= 17 && err.empty(); ++w)
    for (std::size_t h = 1; h <= 3 && err.empty(); ++h)
      for (std::size_t j = 0; j < 2 * w * h && err.empty(); ++j)
        for (std::size_t k = 1; k <= w && err.empty(); ++k) {
          horq::ColumnCursor a(w * h, w, j), b(w * h, w, j);
          if (!a.row_holds(k)) continue;
          a.skip(k);
          for (std::size_t i = 0; i < k; ++i) b.next();
          if (a.img != b.img || a.r != b.r || a.oy != b.oy || a.ox != b.ox)
            err = std::to_string(h) + " x " + std::to_string(w) + " map, column " + std::to_string(j) + ", skip(" +
                  std::to_string(k) + "): pixel " + std::to_string(a.r) + " of image " + std::to_string(a.img) +
                  ", next() gives pixel " + std::to_string(b.r) + " of image " + std::to_string(b.img);
        }
  record("-", "ColumnCursor::skip", err);
}

std::string throws(const std::string& name, const std::string& needle) {
  try {
    horq::kernel_table(name);
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find(needle) != std::string::npos ? "" : "message '" + std::string(e.what()) + "'";
  }
  return "kernel_table('" + name + "') did not throw";
}

#if defined(__x86_64__) || defined(__i386__)
// The instruction sets the x86 paths need, read from CPUID leaves 1 and 7 and XGETBV, independently of dispatch.cpp.
struct X86Sets {
  bool os_avx = false, os_avx512 = false, fma = false, popcnt = false, avx2 = false, bmi2 = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false, vpopcntdq = false;
};

X86Sets x86_sets() {
  X86Sets s;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return s;
  s.fma = c >> 12 & 1, s.popcnt = c >> 23 & 1;
  if ((c >> 27 & 1) && (c >> 28 & 1)) {  // OSXSAVE and AVX: XGETBV says which register states the OS saves
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    s.os_avx = (lo & 0x6) == 0x6;            // XMM and YMM
    s.os_avx512 = s.os_avx && (lo & 0xe0) == 0xe0;  // opmask, upper ZMM halves, ZMM16-31
  }
  if (__get_cpuid_max(0, nullptr) < 7) return s;
  __cpuid_count(7, 0, a, b, c, d);
  s.avx2 = b >> 5 & 1, s.bmi2 = b >> 8 & 1, s.avx512f = b >> 16 & 1, s.avx512dq = b >> 17 & 1;
  s.avx512bw = b >> 30 & 1, s.avx512vl = b >> 31 & 1, s.vpopcntdq = c >> 14 & 1;
  return s;
}
#endif

void test_dispatch() {
  const auto& known = horq::known_kernels();
  const auto& avail = horq::available_kernels();
  std::string err;
  if (avail.empty() || avail.back() != "generic" || known.back() != "generic") err = "generic is not last";
  for (const auto& p : avail) {
    bool listed = false;
    for (const auto& k : known) listed = listed || k == p;
    if (!listed) err = p + " is available but not known";
    if (horq::kernel_table(p).name != p) err = "kernel_table('" + p + "') has another name";
  }
  if (err.empty() && horq::kernel_table("").name != avail.front()) err = "the default is not the best available path";
  record("-", "dispatch: available paths", err);
  record("-", "dispatch: unknown path", throws("sse9", "unknown kernel path 'sse9'"));
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
  record("-", "dispatch: x86 build knows avx512, avx2, generic",
         known == std::vector<std::string>{"avx512", "avx2", "generic"} ? "" : "known paths differ");
#if defined(__x86_64__) || defined(__i386__)
  // The paths offered against CPUID's own bits (and the OS's saved register state, XGETBV): a path is offered exactly
  // where the CPU has every instruction set its files are compiled for (CMakeLists.txt).
  const X86Sets x = x86_sets();
  const bool avx2 = x.os_avx && x.avx2 && x.fma && x.popcnt && x.bmi2;
  const bool avx512 = avx2 && x.os_avx512 && x.avx512f && x.avx512bw && x.avx512vl && x.avx512dq && x.vpopcntdq;
  std::vector<std::string> want;
  if (avx512) want.push_back("avx512");
  if (avx2) want.push_back("avx2");
  want.push_back("generic");
  record("-", "dispatch: paths offered match CPUID", avail == want ? "" : "CPUID allows another list of paths");
#endif
#else
  // The x86 kernels are not built for this target: only the generic path, and a clear refusal of the others.
  record("-", "dispatch: non-x86 build knows generic only",
         known == std::vector<std::string>{"generic"} && avail == known ? "" : "known paths differ");
  record("-", "dispatch: avx2 is not built", throws("avx2", "'avx2' is not built into this library"));
  record("-", "dispatch: avx512 is not built", throws("avx512", "'avx512' is not built into this library"));
#endif
}

// parallel_for (threadpool.h) runs every task exactly once, whatever the thread count and however long the helpers
// have been idle: back-to-back jobs (helpers watching), after a pause of a few milliseconds (dozing) and after one
// longer than the doze (asleep on the condition variable); task counts around the thread counts and larger.
void test_parallel_for() {
  // "" when parallel_for ran each of ntasks tasks once, else which one it did not.
  const auto once = [](std::size_t ntasks) -> std::string {
    std::vector<std::atomic<int>> runs(ntasks);
    for (auto& r : runs) r.store(0);
    horq::parallel_for(ntasks, [&](std::size_t t) { runs[t].fetch_add(1); });
    for (std::size_t t = 0; t < ntasks; ++t)
      if (runs[t].load() != 1)
        return "task " + std::to_string(t) + " of " + std::to_string(ntasks) + " ran " +
               std::to_string(runs[t].load()) + " times";
    return "";
  };
  const int restore = horq::get_num_threads();
  for (int threads : {1, 2, 3, 5}) {
    horq::set_num_threads(threads);
    std::string err;
    for (int pause_ms : {0, 3, 25})
      for (std::size_t ntasks : {0, 1, 2, 3, 4, 5, 7, 8, 9, 64, 1000}) {
        if (pause_ms) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
        const std::string e = once(ntasks);
        if (err.empty() && !e.empty()) err = e + " (pause " + std::to_string(pause_ms) + " ms)";
      }
    for (int rep = 0; rep < 200 && err.empty(); ++rep) {  // many short jobs in a row: tasks taken from both ends
      const std::string e = once(37);
      if (!e.empty()) err = "repeat " + std::to_string(rep) + ": " + e;
    }
    record("-", "parallel_for, " + std::to_string(threads) + " thread(s)", err);
  }
  horq::set_num_threads(restore);
}

// A child fork()ed while a job holds the pool (here from inside one of its tasks, with the other thread still in the
// job) inherits a locked job mutex and no helper: its parallel_for must run serially, not wait on them. The child runs
// a job and exits 0; one that hangs is killed after 10 s and the case fails.
void test_fork_in_job() {
  const int restore = horq::get_num_threads();
  horq::set_num_threads(2);
  std::string err;
  std::atomic<int> forked{0};
  pid_t child = -1;
  horq::parallel_for(2, [&](std::size_t) {
    if (forked.fetch_add(1) != 0) {  // the second task waits until the child exists, so the job is still running
      while (forked.load() < 3) std::this_thread::yield();
      return;
    }
    child = fork();
    if (child == 0) {
      std::atomic<int> sum{0};
      horq::parallel_for(16, [&](std::size_t t) { sum.fetch_add(static_cast<int>(t)); });
      _exit(sum.load() == 120 ? 0 : 1);
    }
    forked.store(3);
  });
  if (child < 0) {
    err = "fork failed";
  } else {
    int status = 0;
    for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10) {
      if (waitpid(child, &status, WNOHANG) == child) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (waited_ms + 10 >= 10000) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        err = "the child's parallel_for hung";
      }
    }
    if (err.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) err = "the child's job went wrong";
  }
  record("-", "parallel_for in a child forked during a job", err);
  horq::set_num_threads(restore);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths(argv + 1, argv + argc);
  if (paths.empty()) paths = horq::available_kernels();
  std::printf("horq_test_kernels: known paths:");
  for (const auto& p : horq::known_kernels()) std::printf(" %s", p.c_str());
  std::printf("; testing:");
  for (const auto& p : paths) std::printf(" %s", p.c_str());
  std::printf("\n");
  Rng rng{20261201};
  test_dispatch();
  test_parallel_for();
  test_fork_in_job();
  test_pack_signs(rng);
  test_threshold3(rng);
  test_column_cursor();
  for (const auto& p : paths) {
    const int before = g_failed + g_passed, failed_before = g_failed;
    try {
      const KernelTable& kt = horq::kernel_table(p);
      test_bgemm(kt, rng);
      test_quantize_column(kt, rng);
      test_quantize_taps(kt, rng, false);
      test_quantize_taps(kt, rng, true);
      test_quantize_taps3(kt, rng);
      test_bgemm_dot(kt, rng);
      test_linear(kt, rng);
      test_conv(kt, rng);
      test_residual_aliasing(kt, rng);
      test_sign_gemm(kt, rng);
    } catch (const std::exception& e) {
      record(p, "exception", e.what());
    }
    std::printf("%s: %d cases, %d failed\n", p.c_str(), g_failed + g_passed - before, g_failed - failed_before);
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
