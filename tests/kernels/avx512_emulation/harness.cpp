// Checks csrc/core/*_avx512.cpp against the portable kernels or a scalar reference, on awkward sizes,
// after the intrinsics themselves (intrinsics_check.cpp):
//   * bgemm counts equal;
//   * quantize bits equal and betas equal to 1e-12 (the stored-column and the conv taps variants);
//   * pack_pixels words, sums and bad flag bit for bit (with and without an input affine), with guards
//     after every output and NaN in the gaps;
//   * gemm_task (outer-product GEMM + epilogue) bit for bit against the scalar formula of layer.h, in the
//     same float32 operation order, with guards around y to catch writes outside the task's block;
//   * whole convolutions (conv.cpp + gemm_driver.cpp) with a table of the AVX-512 kernels against the
//     generic table: the pixel image and the gathered H_1 / beta_1 of the outer-product path included;
//   * sign_gemm (the backward pass's float-by-sign product) bit for bit against the generic path, with and
//     without row scales, over lane counts around 16/32/64 and reduction lengths around 32/64, with guards
//     after the outputs of the task's block.
// The inputs the kernels read end right before an inaccessible page (POSIX), so a load past the end faults:
// types.h promises no over-read (kOverReadWords = 0), and masked loads of unselected lanes must not fault.
// Built either against the emulated immintrin.h next to this file or against the real one (AVX-512 CPUs);
// either way with -ffp-contract=off, so neither the reference nor the kernels are fused into FMAs.
// Prints "OK" and exits 0 on success.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define HORQ_GUARD_PAGES 1
#endif

#include "core/bgemm.h"
#include "core/dispatch.h"
#include "core/float_conv.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"
#include "core/layer.h"
#include "core/pool.h"
#include "core/pool_row.h"
#include "core/quantize.h"
#include "core/quantize_walk.h"
#include "core/sign_gemm.h"
#include "core/threadpool.h"

using namespace horq;

int check_intrinsics();  // intrinsics_check.cpp

namespace {

constexpr int kMaxReports = 10;  // mismatch lines printed per check; the count covers the rest

std::uint32_t bits_of(float x) { std::uint32_t u; std::memcpy(&u, &x, 4); return u; }
std::uint64_t bits_of(double x) { std::uint64_t u; std::memcpy(&u, &x, 8); return u; }
float float_of(std::uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

// `count` values (value-initialized) that end where an inaccessible page begins.
template <class T>
class PageEnd {
 public:
  explicit PageEnd(std::size_t count, T fill = T{}) : count_(count) {
#ifdef HORQ_GUARD_PAGES
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    bytes_ = (count * sizeof(T) + page - 1) / page * page + page;
    base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED || mprotect(static_cast<char*>(base_) + bytes_ - page, page, PROT_NONE) != 0) {
      std::perror("guard page");
      std::exit(2);
    }
    data_ = reinterpret_cast<T*>(static_cast<char*>(base_) + bytes_ - page - count * sizeof(T));
#else
    data_ = new T[count];
#endif
    for (std::size_t i = 0; i < count; ++i) data_[i] = fill;
  }
  PageEnd(const PageEnd&) = delete;
  PageEnd& operator=(const PageEnd&) = delete;
  ~PageEnd() {
#ifdef HORQ_GUARD_PAGES
    munmap(base_, bytes_);
#else
    delete[] data_;
#endif
  }
  T* data() { return data_; }
  T* begin() { return data_; }
  T* end() { return data_ + count_; }
  T& operator[](std::size_t i) { return data_[i]; }

 private:
  std::size_t count_;
  T* data_;
#ifdef HORQ_GUARD_PAGES
  void* base_;
  std::size_t bytes_;
#endif
};

int check_bgemm(std::mt19937_64& rng) {
  int failures = 0;
  const std::size_t kws[] = {1, 3, 7, 8, 9, 15, 16, 17, 36, 72, 1094};
  for (std::size_t kw : kws)
    for (std::size_t m : {1, 3, 4, 5, 9})
      for (std::size_t nb : {1, 4, 6, 13}) {
        PageEnd<word_t> a(m * kw), b(nb * kw);
        for (auto& w : a) w = rng();
        for (auto& w : b) w = rng() & (kw == 1094 ? ~word_t{0} : rng());
        std::vector<std::int32_t> c1(m * nb, -1), c2(m * nb, -2);
        bgemm_popcount_generic(a.data(), m, b.data(), nb, kw, c1.data(), nb);
        bgemm_popcount_avx512(a.data(), m, b.data(), nb, kw, c2.data(), nb);
        if (c1 != c2 && ++failures <= kMaxReports) std::printf("bgemm mismatch kw=%zu m=%zu nb=%zu\n", kw, m, nb);
      }
  return failures;
}

int check_quantize(std::mt19937_64& rng) {
  int failures = 0;
  std::normal_distribution<double> normal;
  const std::size_t groups_cg[][2] = {{1, 1}, {1, 3},  {1, 63}, {1, 64}, {1, 65},
                                      {1, 513}, {9, 3}, {9, 64}, {9, 65}, {4, 7}};
  for (auto& gc : groups_cg)
    for (int order = 1; order <= kMaxOrder; ++order) {
      const std::size_t groups = gc[0], cg = gc[1], n = groups * cg, ld = groups * words_for(cg);
      std::vector<double> x(n);
      for (auto& v : x) v = static_cast<float>(normal(rng));
      if (n > 2) x[1] = 0.0, x[2] = -0.0;
      std::vector<double> r1 = x, b1(order), b2(order);
      PageEnd<double> r2(n);
      std::copy(x.begin(), x.end(), r2.begin());
      std::vector<word_t> w1(order * ld, 7), w2(order * ld, 9);
      quantize_column_generic(r1.data(), groups, cg, order, w1.data(), ld, b1.data());
      quantize_column_avx512(r2.data(), groups, cg, order, w2.data(), ld, b2.data());
      bool ok = w1 == w2;
      for (int k = 0; k < order; ++k) ok = ok && std::fabs(b1[k] - b2[k]) <= 1e-12 * std::fabs(b1[k]) + 1e-300;
      if (!ok && ++failures <= kMaxReports)
        std::printf("quantize mismatch groups=%zu cg=%zu order=%d\n", groups, cg, order);
    }
  // Taps variant: columns of `taps` pixel groups, some of them padding (nullptr), orders 2..8, given
  // the same H_1 row and beta_1.
  for (auto& gc : groups_cg)
    for (int order = 2; order <= kMaxOrder; ++order) {
      const std::size_t ntaps = gc[0], cg = gc[1], ld = ntaps * words_for(cg);
      PageEnd<float> x(ntaps * cg);
      for (auto& v : x) v = static_cast<float>(normal(rng));
      if (ntaps * cg > 2) x[1] = 0.0f, x[2] = -0.0f;
      std::vector<const float*> taps(ntaps);
      for (std::size_t t = 0; t < ntaps; ++t) taps[t] = (ntaps > 1 && t % 4 == 0) ? nullptr : x.data() + t * cg;
      std::vector<double> b1(order, 0.0), b2(order, 0.0);
      b1[0] = b2[0] = 0.75;
      std::vector<word_t> w1(order * ld, 7), w2(order * ld, 7);
      quantize_taps_generic(taps.data(), ntaps, cg, order, w1.data(), ld, b1.data());
      quantize_taps_avx512(taps.data(), ntaps, cg, order, w2.data(), ld, b2.data());
      bool ok = w1 == w2;
      for (int k = 0; k < order; ++k) ok = ok && std::fabs(b1[k] - b2[k]) <= 1e-12 * std::fabs(b1[k]) + 1e-300;
      if (!ok && ++failures <= kMaxReports)
        std::printf("quantize_taps mismatch taps=%zu cg=%zu order=%d\n", ntaps, cg, order);
    }
  return failures;
}

// Order 2 from taps in float32 (quantize_taps2): the H_2 bits must equal the generic kernel's exactly (exact
// thresholds), including values on and one ulp beside beta_1; beta_2 sums float32 terms in another lane
// order, so it agrees to float32 summation rounding. Rows other than H_2 keep their guard words (row 0 holds
// H_1, which the passes read). Two cases per shape: beta_1 = 0.75, a float32 value (Taps2Pass), and beta_1 the
// column's true mean of |x|, between two float32 values (Taps2BelowPass, whose sum relies on beta_1 being
// that mean), with values placed on the float32 neighbours of beta_1.
int check_quantize_taps2(std::mt19937_64& rng) {
  int failures = 0;
  std::normal_distribution<float> normal;
  const std::size_t taps_cg[][2] = {{1, 1}, {1, 3},  {1, 15}, {1, 16}, {1, 17}, {1, 63}, {1, 64},
                                    {1, 65}, {9, 3}, {9, 64}, {9, 65}, {4, 7}, {9, 128}, {2, 513}};
  for (auto& tc : taps_cg) {
    for (const bool mean : {false, true}) {
      const std::size_t ntaps = tc[0], cg = tc[1], n = ntaps * cg, gw = words_for(cg), ld = ntaps * gw;
      PageEnd<float> x(n);
      for (auto& v : x) v = normal(rng);
      std::vector<const float*> taps(ntaps);
      for (std::size_t t = 0; t < ntaps; ++t) taps[t] = (ntaps > 1 && t % 4 == 0) ? nullptr : x.data() + t * cg;
      const auto column_mean = [&] {
        double sum = 0.0;
        for (std::size_t t = 0; t < ntaps; ++t)
          for (std::size_t i = 0; taps[t] && i < cg; ++i) sum += std::fabs(static_cast<double>(taps[t][i]));
        return sum / static_cast<double>(n);
      };
      double beta1 = mean ? column_mean() : 0.75;
      for (int round = 0; round < (mean ? 4 : 1); ++round) {  // the neighbours of the mean move the mean a little
        const Threshold32 th(beta1);
        for (std::size_t i = 0; i < n; i += 5) {  // on and beside the threshold, both signs
          const float near[] = {th.nearest, th.down, th.up, -th.down, 0.0f, -0.0f,
                                std::nextafter(th.nearest, 0.0f), -std::nextafter(th.up, 2.0f)};
          x[i] = near[(i / 5) % 8];
        }
        if (mean) beta1 = column_mean();
      }
      double b1[2] = {beta1, 0.0}, b2[2] = {beta1, 0.0};
      std::vector<word_t> w1(2 * ld, 7);
      for (std::size_t t = 0; t < ntaps; ++t) {  // row 0: H_1 as the caller gathers it (zero for padding taps)
        std::fill_n(w1.begin() + t * gw, gw, word_t{0});
        if (!taps[t]) continue;
        for (std::size_t i = 0; i < cg; ++i)
          w1[t * gw + i / 64] |= static_cast<word_t>(taps[t][i] < 0.0f) << (i % 64);
      }
      std::vector<word_t> w2 = w1;
      quantize_taps2_generic(taps.data(), ntaps, cg, w1.data(), ld, b1);
      quantize_taps2_avx512(taps.data(), ntaps, cg, w2.data(), ld, b2);
      const bool ok = w1 == w2 && std::fabs(b1[1] - b2[1]) <= 1e-6 * std::fabs(b1[1]);
      if (!ok && ++failures <= kMaxReports)
        std::printf("quantize_taps2 mismatch taps=%zu cg=%zu beta1 %.17g beta2 %.17g vs %.17g\n", ntaps, cg, beta1,
                    b1[1], b2[1]);
    }
  }
  return failures;
}

// Sums agree bit for bit, except that any NaN matches any NaN: which payload an add propagates is the
// FPU's choice, and a NaN input is reported through the bad flag, not the sums.
bool same_sums(const std::vector<double>& a, const std::vector<double>& b) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (bits_of(a[i]) != bits_of(b[i]) && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
  return true;
}

// pack_pixels: W pixels of nchan channels (channel stride W + gap), specials (NaN of both signs with
// payloads, a signalling NaN, +-Inf) placed at random or at the very last value; the gaps hold NaN, so a
// compare outside the selected lanes would raise the bad flag, and the last channel ends at a guard page.
// Words are written every wstride words, the words between and after must keep their guard, and so must
// the sums past W (read and written with masks: the sums also end at a guard page in a second copy).
int check_pack_pixels(std::mt19937_64& rng) {
  constexpr word_t kGuardWord = 0xa5a5a5a5a5a5a5a5u;
  constexpr std::size_t kTail = 16;
  const std::uint32_t specials[] = {0x7fc00000u, 0xffc00123u, 0x7f800001u, 0x7f800000u, 0xff800000u};
  const float nan_fill = float_of(0x7fc0beefu);
  std::normal_distribution<float> normal;
  int failures = 0;
  // Runs of 2048 pixels or more go 16 channels at a time (pack_pixels_avx512 kRunMinPixels): a few of those too.
  const std::vector<std::array<std::size_t, 3>> long_runs = {{2048, 64, 1}, {2063, 17, 1}, {2063, 40, 2}};
  std::vector<std::array<std::size_t, 4>> cases;
  for (std::size_t W : {1, 7, 15, 16, 17, 31, 33, 56})
    for (std::size_t nchan : {1, 3, 31, 63, 64})
      for (std::size_t wstride : {1, 2})
        for (std::size_t mode = 0; mode <= 2 * 5; ++mode) cases.push_back({W, nchan, wstride, mode});
  for (const auto& r : long_runs)
    for (std::size_t mode : {0, 1, 4, 7}) cases.push_back({r[0], r[1], r[2], mode});
  for (const auto& [W, nchan, wstride, umode] : cases) {
    const int mode = static_cast<int>(umode);  // 0: finite; then each special at random / at the end
    const std::size_t gap = wstride == 2 ? 3 : 0, cstride = W + gap;
    PageEnd<float> src((nchan - 1) * cstride + W, nan_fill);
    for (std::size_t c = 0; c < nchan; ++c)
      for (std::size_t w = 0; w < W; ++w) {
        float v = normal(rng);
        switch (rng() % 32) {
          case 0: v = 0.0f; break;
          case 1: v = -0.0f; break;
          case 2: v = float_of(0x00000001u + static_cast<std::uint32_t>(rng() % 0x7fffff)); break;
          case 3: v = -float_of(0x00000001u + static_cast<std::uint32_t>(rng() % 0x7fffff)); break;
          default: break;
        }
        src[c * cstride + w] = v;
      }
    if (mode > 0) {
      const float s = float_of(specials[(mode - 1) / 2]);
      const bool at_end = mode % 2 == 0;
      const std::size_t c = at_end ? nchan - 1 : rng() % nchan, w = at_end ? W - 1 : rng() % W;
      src[c * cstride + w] = s;
    }
    std::vector<double> sums(W + kTail);
    for (auto& s : sums) s = 10.0 * normal(rng) + 0.25;
    std::vector<word_t> w1(W * wstride + kTail, kGuardWord), w2 = w1, w3 = w1;
    std::vector<double> s1 = sums, s2 = sums;
    PageEnd<double> s3(W);
    std::copy(sums.begin(), sums.begin() + W, s3.begin());
    // Every other case with a per-channel input affine (negative and zero scales included).
    std::vector<float> scale(nchan), shift(nchan);
    for (std::size_t c = 0; c < nchan; ++c) {
      scale[c] = c % 7 == 3 ? 0.0f : normal(rng);
      shift[c] = 0.5f * normal(rng);
    }
    const bool affine = (mode + W) % 2 == 1;
    const float* sc = affine ? scale.data() : nullptr;
    const float* sh = affine ? shift.data() : nullptr;
    const std::uint32_t bad1 =
        pack_pixels_generic(src.data(), cstride, nchan, W, w1.data(), wstride, s1.data(), sc, sh);
    const std::uint32_t bad2 =
        pack_pixels_avx512(src.data(), cstride, nchan, W, w2.data(), wstride, s2.data(), sc, sh);
    const std::uint32_t bad3 =
        pack_pixels_avx512(src.data(), cstride, nchan, W, w3.data(), wstride, s3.data(), sc, sh);
    bool guards = bad3 == bad2 && w3 == w2;
    for (std::size_t i = 0; i < W; ++i) guards = guards && bits_of(s3[i]) == bits_of(s2[i]);
    for (std::size_t i = W * wstride; i < w2.size(); ++i) guards = guards && w2[i] == kGuardWord;
    for (std::size_t i = W; i < s2.size(); ++i) guards = guards && bits_of(s2[i]) == bits_of(sums[i]);
    if ((bad1 != bad2 || w1 != w2 || !same_sums(s1, s2) || !guards) && ++failures <= kMaxReports)
      std::printf("pack_pixels mismatch W=%zu nchan=%zu wstride=%zu mode=%d: bad %u/%u words %s sums %s "
                  "guards %s\n",
                  W, nchan, wstride, mode, bad1, bad2, w1 == w2 ? "ok" : "differ",
                  same_sums(s1, s2) ? "ok" : "differ", guards ? "ok" : "overwritten");
  }
  return failures;
}

// The epilogue of layer.h for one (o, j), in the kernels' float32 operation order (docs/MATH.md "Output").
float gemm_reference(const word_t* wrow, const QuantizedColumns& q, const Epilogue& ep, std::size_t o,
                     std::size_t j) {
  const std::size_t K = static_cast<std::size_t>(q.order);
  float s = 0.0f;
  for (std::size_t k = 0; k < K; ++k) {
    std::int64_t pc = 0;
    for (std::size_t w = 0; w < q.kw; ++w) pc += __builtin_popcountll(wrow[w] ^ q.word(j, k, w));
    s = s + static_cast<float>(q.betas[j * K + k]) * static_cast<float>(static_cast<std::int64_t>(q.n) - 2 * pc);
  }
  return static_cast<float>(ep.coef[o]) * s + static_cast<float>(ep.add[o]);
}

// gemm_task on the whole matrix and on two random sub-blocks per shape, y framed by guards; every float of
// the frame is compared bit for bit (the guard is a NaN pattern no result can take). Each block runs twice: without a
// weight cache (rows as given) and with one (filter quads where its filters start on a quad: the first sub-block's
// start is rounded down to one), the cache shared by the shape's blocks as a prepared layer's.
int check_gemm_task(std::mt19937_64& rng) {
  constexpr std::uint32_t kGuard = 0x7fbadbadu;
  constexpr std::size_t kFrame = 32;
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 2.0);
  int failures = 0;
  for (int K = 1; K <= kMaxOrder; ++K)
    for (std::size_t m : {1, 3, 5, 12, 13, 16, 20, 23, 31, 64, 65})  // 20, 23: 12 + 8 (+ 3) row calls
      for (std::size_t kw : {1, 2, 8, 9, 17})  // 8, 9, 17: fill_rows' whole and masked 8-word blocks
        for (std::size_t ncols : {1, 7, 8, 9, 16, 17, 33}) {
          QuantizedColumns q;
          q.ncols = ncols;
          q.kw = kw;
          q.order = K;
          q.n = (kw - 1) * kWordBits + 1 + rng() % kWordBits;
          const std::size_t tail_bits = q.n - (kw - 1) * kWordBits;
          const word_t last_mask = tail_bits == kWordBits ? ~word_t{0} : (word_t{1} << tail_bits) - 1;
          auto fill_rows = [&](auto& v, std::size_t rows) {
            for (std::size_t r = 0; r < rows; ++r)
              for (std::size_t w = 0; w < kw; ++w) v[r * kw + w] = rng() & (w + 1 == kw ? last_mask : ~word_t{0});
          };
          PageEnd<word_t> wbits(m * kw);
          fill_rows(wbits, m);
          q.bits.resize(ncols * K * kw);
          fill_rows(q.bits, ncols * K);
          q.betas.resize(ncols * K);
          for (auto& b : q.betas) b = rng() % 16 == 0 ? 0.0 : uniform(rng);
          std::vector<double> coef(m), add(m);
          for (auto& c : coef) c = normal(rng);
          for (auto& a : add) a = normal(rng);
          std::vector<float> floor(m), ceiling(m);
          for (auto& f : floor) f = static_cast<float>(normal(rng));
          for (std::size_t o = 0; o < m; ++o) ceiling[o] = floor[o] + std::fabs(static_cast<float>(normal(rng)));
          WeightCache cache;
          for (std::size_t ppi : {std::size_t{1}, std::size_t{5}, ncols}) {
            if (ppi == ncols && (ncols == 1 || ncols == 5)) continue;  // already run
            const std::size_t ysize = ceil_div(ncols, ppi) * m * ppi;
            std::vector<float> residual(ysize);
            for (auto& r : residual) r = static_cast<float>(normal(rng));
            for (int blk = 0; blk < 3; ++blk) {
              std::size_t o0 = 0, mb = m, j0 = 0, jb = ncols;
              if (blk > 0) {
                const std::size_t align = blk == 1 ? 4 : 1;  // the first sub-block starts on a filter quad
                o0 = rng() % m / align * align;
                mb = 1 + rng() % (m - o0), j0 = rng() % ncols, jb = 1 + rng() % (ncols - j0);
              }
              // The second block takes a ceiling alone, the last adds a residual and takes a floor and a ceiling
              // (contiguous lanes and scattered ones).
              const Epilogue ep = blk == 2   ? Epilogue{coef.data(), add.data(), residual.data(), floor.data(),
                                                      ceiling.data()}
                                  : blk == 1 ? Epilogue{coef.data(), add.data(), nullptr, nullptr, ceiling.data()}
                                             : Epilogue{coef.data(), add.data()};
              std::vector<float> want(ysize + 2 * kFrame, float_of(kGuard));
              for (std::size_t o = o0; o < o0 + mb; ++o)
                for (std::size_t j = j0; j < j0 + jb; ++j) {
                  const std::size_t at = (j / ppi) * m * ppi + o * ppi + j % ppi;
                  want[kFrame + at] = finish_output(gemm_reference(wbits.data() + o * kw, q, ep, o, j), ep, at, o);
                }
              // With a residual, also as if it 4K-aliased y (layer.h Epilogue::residual_aliases: loads first).
              for (int run = 0; run < (ep.residual ? 4 : 2); ++run) {
                WeightCache* const c = run % 2 ? &cache : nullptr;
                Epilogue e = ep;
                e.residual_aliases = run >= 2;
                std::vector<float> got(want.size(), float_of(kGuard));
                gemm_task_avx512(wbits.data(), m, q, e, ppi, got.data() + kFrame, o0, mb, j0, jb, c);
                if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0) continue;
                if (++failures > kMaxReports) continue;
                std::size_t i = 0;
                while (bits_of(got[i]) == bits_of(want[i])) ++i;
                std::printf("gemm_task mismatch K=%d m=%zu kw=%zu n=%zu ncols=%zu ppi=%zu "
                            "block o0=%zu mb=%zu j0=%zu jb=%zu%s: ",
                            K, m, kw, q.n, ncols, ppi, o0, mb, j0, jb,
                            c ? (e.residual_aliases ? " (weight cache, loads first)" : " (weight cache)")
                              : (e.residual_aliases ? " (loads first)" : ""));
                if (i < kFrame || i >= kFrame + ysize) {
                  std::printf("write outside y at offset %td\n",
                              static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(kFrame));
                } else {
                  const std::size_t yi = i - kFrame, img = yi / (m * ppi), o = yi % (m * ppi) / ppi;
                  const std::size_t j = img * ppi + yi % ppi;
                  std::printf("y[%zu] (o=%zu j=%zu) want %a (0x%08x) got %a (0x%08x)\n", yi, o, j, want[i],
                              bits_of(want[i]), got[i], bits_of(got[i]));
                }
              }
            }
          }
        }
  return failures;
}

// Two inputs where only separately rounded float32 operations give the reference's float (a multiply-add fused
// by the compiler, as GCC does at -ffp-contract=fast, gives another), 9 columns x 2 outputs each, W = 0:
//  * the final coef * s + add: s = beta_1 = 1 + 2^-12 and coef = 1 + 2^-12, so coef * s = 1 + 2^-11 + 2^-24
//    rounds (a tie, to even) to 1 + 2^-11, and add = -(1 + 2^-11) gives 0; fused, the 2^-24 survives.
//  * the sum over k: n = 3, H_1 = 111 (term -3 beta_1 = -3), beta_2 = 1 + 2^-23 (term 3 beta_2 = 3 + 3 2^-23,
//    which rounds, a tie to even, to 3 + 2^-21), so s = 2^-21 and y = 2^21 s = 1; fused, s = 3 2^-23, y = 0.75.
// Orders above add beta = 0 terms, which leave s unchanged either way.
int check_gemm_ties() {
  struct Tie {
    int min_order;
    std::size_t n;
    word_t h1;
    double beta1, beta2, coef, add;
    float want;
  };
  const Tie ties[] = {
      {1, 1, 0, 1.0 + std::ldexp(1.0, -12), 0.0, 1.0 + std::ldexp(1.0, -12), -(1.0 + std::ldexp(1.0, -11)), 0.0f},
      {2, 3, 7, 1.0, 1.0 + std::ldexp(1.0, -23), std::ldexp(1.0, 21), 0.0, 1.0f},
  };
  int failures = 0;
  for (const Tie& t : ties)
    for (int K = t.min_order; K <= kMaxOrder; ++K) {
      QuantizedColumns q;
      q.ncols = 9, q.n = t.n, q.kw = 1, q.order = K;
      q.bits.assign(q.ncols * K, 0);
      q.betas.assign(q.ncols * K, 0.0);
      for (std::size_t j = 0; j < q.ncols; ++j) {
        q.bits[j * K] = t.h1;
        q.betas[j * K] = t.beta1;
        if (K > 1) q.betas[j * K + 1] = t.beta2;
      }
      const double coef[2] = {t.coef, t.coef}, add[2] = {t.add, t.add};
      const Epilogue ep{coef, add};
      const std::vector<word_t> wbits(2, 0);
      std::vector<float> y(2 * q.ncols, -1.0f);
      gemm_task_avx512(wbits.data(), 2, q, ep, q.ncols, y.data(), 0, 2, 0, q.ncols, nullptr);
      const float ref = gemm_reference(wbits.data(), q, ep, 0, 0);
      bool ok = bits_of(ref) == bits_of(t.want);  // the reference itself is not fused
      for (float v : y) ok = ok && bits_of(v) == bits_of(t.want);
      if (!ok && ++failures <= kMaxReports)
        std::printf("gemm_task tie n=%zu K=%d: want %a, got %a (reference %a): a fused multiply-add?\n", t.n, K,
                    t.want, y[0], ref);
    }
  return failures;
}

}  // namespace

// The kernels a convolution's quantization and GEMM take, on the generic and the AVX-512 path (neither has
// quantize_taps3).
KernelTable generic_conv_table() {
  return {"generic",           bgemm_popcount_generic,  quantize_column_generic, quantize_taps_generic,
          quantize_taps2_generic, nullptr,                quantize_image_generic,  pack_pixels_generic,
          to_nhwc_generic,        nullptr};
}
KernelTable avx512_conv_table() {
  KernelTable t{"avx512",          bgemm_popcount_avx512,  quantize_column_avx512, quantize_taps_avx512,
                quantize_taps2_avx512, nullptr,               quantize_image_avx512,  pack_pixels_avx512,
                to_nhwc_avx512,        gemm_task_avx512};
  t.band2_pixels = band2_pixels_avx512;  // order 2's per-pixel bands (3 x 3, stride 1, >= 512 columns an image)
  t.band2_columns = band2_columns_avx512;
  t.band2_pixels_nchw = band2_pixels_nchw_avx512;
  t.band2_thresholds = band2_thresholds_avx512;
  return t;
}

// quantize_conv_columns + horq_gemm with the AVX-512 kernels against the generic ones on geometries with
// image borders, stride, dilation, octets spanning rows and images, compact and grouped layouts. Order 1
// must agree bit for bit (same sums in the same order, exact counts, written-out epilogue); orders 2-3 only
// to rounding (beta_2 is summed in another order), so they are compared with a tolerance that a flipped
// bit would still pass but a wrong plane or offset would not: the median relative error.
int check_conv(std::mt19937_64& rng) {
  const KernelTable gen = generic_conv_table(), emu = avx512_conv_table();
  std::normal_distribution<float> normal;
  int failures = 0, deferred_orders[3] = {0, 0, 0};
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t C_choices[] = {1, 3, 31, 64, 65, 128}, m_choices[] = {1, 5, 13, 64}, k_choices[] = {1, 2, 3};
    ConvGeometry g{};
    g.batch = 1 + rng() % 2, g.channels = C_choices[rng() % 6], g.height = 1 + rng() % 9, g.width = 1 + rng() % 9;
    g.kh = g.kw = k_choices[rng() % 3], g.sh = g.sw = 1 + rng() % 2;
    g.ph = g.pw = rng() % 2, g.dh = g.dw = 1 + rng() % 2;
    const std::size_t span = g.dh * (g.kh - 1) + 1;
    if (g.height + 2 * g.ph < span || g.width + 2 * g.pw < span) continue;
    g.out_h = (g.height + 2 * g.ph - span) / g.sh + 1, g.out_w = (g.width + 2 * g.pw - span) / g.sw + 1;
    const std::size_t m = m_choices[rng() % 4], taps = g.kh * g.kw, ppi = g.out_h * g.out_w;
    std::vector<float> x(g.batch * g.channels * g.height * g.width);
    for (auto& v : x) v = normal(rng);
    std::vector<word_t> w(m * words_for(g.channels * taps)), wl(m * conv_words(g.channels, taps));
    for (auto& v : w) v = rng();
    const std::size_t nbits = g.channels * taps, row = words_for(nbits);
    for (std::size_t o = 0; o < m; ++o)  // unused bits of each row are zero
      if (nbits % kWordBits) w[(o + 1) * row - 1] &= (word_t{1} << (nbits % kWordBits)) - 1;
    relayout_conv_weights(w.data(), m, g.channels, g.kh, g.kw, wl.data());
    std::vector<double> coef(m), add(m);
    for (std::size_t o = 0; o < m; ++o) coef[o] = 0.5 + normal(rng) * 0.1, add[o] = normal(rng);
    for (int order = 1; order <= 3; ++order) {
      std::vector<float> y1(g.batch * m * ppi), y2(y1.size());
      const auto q1 = quantize_conv_columns(gen, x.data(), g, order);
      horq_gemm(gen, wl.data(), m, q1, {coef.data(), add.data()}, ppi, y1.data());
      const auto q2 = quantize_conv_columns(emu, x.data(), g, order);
      horq_gemm(emu, wl.data(), m, q2, {coef.data(), add.data()}, ppi, y2.data());
      // conv_layer on 3 threads: where it can, the input quantization inside the GEMM's job (conv.cpp
      // DeferredPixels); the same floats as the emulated path's one call after another on 1 thread.
      std::vector<float> y3(y1.size());
      set_num_threads(3);
      const bool deferred = conv_defers_pixels(emu, g, order);
      conv_layer(emu, x.data(), g, order, nullptr, nullptr, wl.data(), m, {coef.data(), add.data()}, y3.data());
      set_num_threads(1);
      deferred_orders[order - 1] += deferred ? 1 : 0;
      bool ok = std::memcmp(y2.data(), y3.data(), y2.size() * sizeof(float)) == 0 &&
                (order > 1 || deferred == (emu.gemm_task != nullptr && !conv_compact(g.channels, taps)));
      if (order == 1) {
        ok = ok && std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0;
      } else {
        std::vector<double> rel(y1.size());
        double scale = 0.0;
        for (float v : y1) scale = std::max(scale, static_cast<double>(std::fabs(v)));
        for (std::size_t i = 0; i < y1.size(); ++i) rel[i] = std::fabs(y1[i] - y2[i]) / (scale + 1e-30);
        std::nth_element(rel.begin(), rel.begin() + rel.size() / 2, rel.end());
        ok = ok && rel[rel.size() / 2] <= 1e-5;
      }
      if (!ok && ++failures <= kMaxReports)
        std::printf("conv mismatch N=%zu C=%zu %zux%zu k=%zu s=%zu p=%zu d=%zu m=%zu order=%d\n", g.batch,
                    g.channels, g.height, g.width, g.kh, g.sh, g.ph, g.dh, m, order);
    }
  }
  for (int k = 0; k < 3; ++k)  // each order took the deferred route on some geometries
    if (deferred_orders[k] == 0 && ++failures <= kMaxReports) std::printf("conv: order %d never deferred\n", k + 1);
  return failures;
}

// quantize_image_avx512 one column per call: its three-column passes (quantize_walk.h image_walk) never apply.
void quantize_image_avx512_singly(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                                  std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas) {
  for (std::size_t i = 0; i < count; ++i)
    quantize_image_avx512(im, pix + i, word + i, 1, order, bits + i * ldbits, ldbits, betas + i * order);
}

// The image route of orders 2-3 (3 x 3 windows over whole words of channels: quantize_image, which takes three
// adjacent columns at once where it can) against the same kernel one column at a time, bit for bit (rows H_2.. and
// every beta: the same operations in the same order per column), and against the generic taps (bits exact, betas to
// float32 summation rounding): channel counts of one, two, three, four and eight words, widths around multiples of
// three columns, padding 0/1, stride and dilation 1/2 (which take the single-column passes), one and two images; a
// tenth of the values zero, so that some columns are all zeros (beta_1 = 0, a float32 value: the exact pass).
int check_conv_image(std::mt19937_64& rng) {
  const KernelTable gen = generic_conv_table(), emu = avx512_conv_table();
  KernelTable one = emu;
  one.quantize_image = quantize_image_avx512_singly;
  std::normal_distribution<float> normal;
  int failures = 0;
  const std::size_t Cs[] = {64, 128, 192, 256, 512}, sizes[][2] = {{3, 3}, {3, 7}, {5, 8}, {9, 4}, {6, 11}, {4, 14}};
  for (std::size_t C : Cs)
    for (auto& hw : sizes)
      for (int variant = 0; variant < 4; ++variant) {
        ConvGeometry g{};
        g.batch = 1 + (variant & 1), g.channels = C, g.height = hw[0], g.width = hw[1], g.kh = g.kw = 3;
        g.ph = g.pw = variant == 2 ? 0 : 1;
        g.sh = g.sw = variant == 3 ? 2 : 1;
        g.dh = g.dw = variant == 3 && C == 64 ? 2 : 1;
        const std::size_t span = g.dh * 2 + 1;
        if (g.height + 2 * g.ph < span || g.width + 2 * g.pw < span) continue;
        g.out_h = (g.height + 2 * g.ph - span) / g.sh + 1, g.out_w = (g.width + 2 * g.pw - span) / g.sw + 1;
        std::vector<float> x(g.batch * C * g.height * g.width);
        for (auto& v : x) v = rng() % 10 == 0 ? 0.0f : normal(rng);
        if (variant == 1)  // an image's first rows all zero: whole columns with beta_1 = 0
          std::fill_n(x.begin(), C * g.height * g.width / 2, 0.0f);
        for (int order = 2; order <= 3; ++order) {
          const auto qe = quantize_conv_columns(emu, x.data(), g, order);
          const auto qo = quantize_conv_columns(one, x.data(), g, order);
          const auto qg = quantize_conv_columns(gen, x.data(), g, order);
          const std::size_t K = static_cast<std::size_t>(order), kw = qe.kw;
          bool same = true, close = true;
          for (std::size_t j = 0; j < qe.ncols; ++j)
            for (std::size_t k = 1; k < K; ++k) {
              for (std::size_t w = 0; w < kw; ++w) {  // words where each q keeps them (layer.h word)
                same = same && qe.word(j, k, w) == qo.word(j, k, w);
                close = close && qe.word(j, k, w) == qg.word(j, k, w);
              }
              const double be = qe.betas[j * K + k], bo = qo.betas[j * K + k], bg = qg.betas[j * K + k];
              same = same && bits_of(be) == bits_of(bo);
              close = close && std::fabs(be - bg) <= 1e-6 * std::fabs(bg) + 1e-30;
            }
          if ((!same || !close) && ++failures <= kMaxReports)
            std::printf("conv image mismatch (%s) N=%zu C=%zu %zux%zu s=%zu p=%zu d=%zu order=%d\n",
                        same ? "generic" : "one column at a time", g.batch, C, g.height, g.width, g.sh, g.ph, g.dh,
                        order);
        }
      }
  return failures;
}

// Order 2 of 3 x 3 stride-1 layers large enough for the per-pixel bands (conv.cpp band2_route: whole words of
// channels, 512 or more output positions an image) against the generic per-column passes: rows H_2 and beta_1 bit
// for bit, beta_2 (and at order 3 beta_3) to float32 summation rounding of beta_1's scale (H_3 follows beta_2 and is
// not compared); each pixel scaled by its own factor (0.05 .. 20), so that its readers' thresholds differ widely and
// many values fall in its band, some values 0, one image border row all zeros (beta_1 = 0 beside nonzero columns),
// padding 0 and 1, one and two images; and magnitudes a float32 step or a few apart, where beta_1 ties with values
// (the exact thresholds).
int check_conv_band2(std::mt19937_64& rng) {
  const KernelTable gen = generic_conv_table(), emu = avx512_conv_table();
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> logscale(std::log(0.05f), std::log(20.0f));
  int failures = 0;
  const std::size_t geoms[][6] = {{1, 64, 24, 24, 1, 0}, {2, 128, 16, 34, 1, 0}, {1, 192, 25, 25, 0, 0},
                                  {1, 64, 3, 600, 0, 0},   {1, 64, 520, 1, 1, 0},   {1, 512, 23, 24, 1, 0},
                                  {1, 64, 24, 24, 1, 1},   {2, 128, 23, 23, 0, 1}};
  for (const auto& gm : geoms) {
    ConvGeometry g{};
    g.batch = gm[0], g.channels = gm[1], g.height = gm[2], g.width = gm[3], g.kh = g.kw = 3;
    g.ph = g.pw = gm[4], g.sh = g.sw = g.dh = g.dw = 1;
    g.out_h = g.height + 2 * g.ph - 2, g.out_w = g.width + 2 * g.pw - 2;
    const std::size_t C = g.channels, P = g.height * g.width;
    std::vector<float> x(g.batch * C * P);
    for (std::size_t i = 0; i < g.batch; ++i)
      for (std::size_t p = 0; p < P; ++p) {
        const float sc = std::exp(logscale(rng));
        for (std::size_t c = 0; c < C; ++c) x[(i * C + c) * P + p] = rng() % 16 == 0 ? 0.0f : normal(rng) * sc;
      }
    if (gm[5])  // magnitudes 1 + j 2^-23 (j < 24), random signs: each beta_1 among the values, a float step from some
      for (auto& v : x) v = (rng() % 2 ? -1.0f : 1.0f) * (1.0f + static_cast<float>(rng() % 24) * 0x1p-23f);
    for (std::size_t c = 0; c < C; ++c) std::fill_n(x.begin() + c * P, g.width, 0.0f);  // image 0's top row
    for (int order = 2; order <= 3; ++order) {
      const auto qe = quantize_conv_columns(emu, x.data(), g, order);
      const auto qg = quantize_conv_columns(gen, x.data(), g, order);
      const std::size_t K = static_cast<std::size_t>(order), kw = qe.kw;
      bool ok = qe.ncols == qg.ncols;
      for (std::size_t j = 0; ok && j < qe.ncols; ++j) {
        ok = bits_of(qe.betas[j * K]) == bits_of(qg.betas[j * K]);
        for (std::size_t k = 1; k < K; ++k) {
          // plane 3 follows beta_2, which may round differently: only plane 2's bits are compared
          if (k == 1)
            for (std::size_t w = 0; w < kw; ++w) ok = ok && qe.word(j, k, w) == qg.word(j, k, w);
          // float32 terms: their rounding is relative to the values' scale (beta_1), not to a small beta_k (the
          // Python tests' bound against exact sums, test_kernels_order3 _check_chain, twice: two such roundings)
          const double be = qe.betas[j * K + k], bg = qg.betas[j * K + k];
          ok = ok && std::fabs(be - bg) <= 4e-6 * qg.betas[j * K] + 1e-30;
        }
      }
      if (!ok && ++failures <= kMaxReports)
        std::printf("conv band2 mismatch N=%zu C=%zu %zux%zu p=%zu order=%d\n", g.batch, C, g.height, g.width, g.ph,
                    order);
    }
    // Order 2 reads an NCHW input's rows where they are (band2_pixels_nchw), an NHWC input's from its copy
    // (band2_pixels), and an input affine on the fly: the same bits and betas bit for bit as the NHWC input and as the
    // affine's output (multiply, then add, in float32) without one.
    const auto qe = quantize_conv_columns(emu, x.data(), g, 2);
    std::vector<float> xt(x.size()), sc(C), sh(C), xa(x.size());
    for (std::size_t i = 0; i < g.batch; ++i)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t p = 0; p < P; ++p) xt[(i * P + p) * C + c] = x[(i * C + c) * P + p];
    for (std::size_t c = 0; c < C; ++c) sc[c] = c % 7 == 0 ? 0.0f : normal(rng), sh[c] = normal(rng);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::size_t c = i / P % C;
      const float prod = x[i] * sc[c];
      xa[i] = prod + sh[c];
    }
    ConvGeometry gl = g;
    gl.nhwc = true;
    const auto ql = quantize_conv_columns(emu, xt.data(), gl, 2);
    const auto qa = quantize_conv_columns(emu, x.data(), g, 2, sc.data(), sh.data());
    const auto qw = quantize_conv_columns(emu, xa.data(), g, 2);
    const auto same = [](const QuantizedColumns& a, const QuantizedColumns& b) {  // H_2's rows and both betas
      bool eq = a.ncols == b.ncols && a.kw == b.kw;
      for (std::size_t j = 0; eq && j < a.ncols; ++j) {
        for (std::size_t k = 0; k < 2; ++k) eq = eq && bits_of(a.betas[2 * j + k]) == bits_of(b.betas[2 * j + k]);
        for (std::size_t w = 0; w < a.kw; ++w) eq = eq && a.word(j, 1, w) == b.word(j, 1, w);
      }
      return eq;
    };
    if ((!same(qe, ql) || !same(qa, qw)) && ++failures <= kMaxReports)
      std::printf("conv band2 NCHW rows: %s N=%zu C=%zu %zux%zu p=%zu\n", same(qe, ql) ? "affine" : "NHWC", g.batch,
                  C, g.height, g.width, g.ph);
  }
  return failures;
}

// Batches whose NHWC copy passes 4 MB are quantized a chunk of images at a time (conv.cpp images_per_chunk): every
// image's columns (rows H_2.. and all betas on the image route, every row elsewhere) bit for bit the image's alone, on
// the image route with rows narrower than 24 pixels (chunks of at least 4 images a thread), a 1x1 stride-2 shortcut
// and 96 channels (per-pixel words, the copy without a border); each batch's last chunk is partial.
int check_conv_chunks(std::mt19937_64& rng) {
  const KernelTable emu = avx512_conv_table();
  std::normal_distribution<float> normal;
  int failures = 0;
  struct Case {
    std::size_t n, C, hw, k, s, p;
    int order;
  };
  const Case cases[] = {{11, 512, 12, 3, 1, 1, 2}, {11, 512, 12, 3, 1, 1, 3}, {16, 128, 24, 1, 2, 0, 2},
                        {9, 96, 40, 3, 2, 1, 2}};
  for (const Case& c : cases) {
    ConvGeometry g{c.n, c.C, c.hw, c.hw, c.k, c.k, c.s, c.s, c.p, c.p, 1, 1, 0, 0};
    g.out_h = g.out_w = (c.hw + 2 * c.p - c.k) / c.s + 1;
    const std::size_t per = c.C * c.hw * c.hw, ppi = g.out_h * g.out_w, K = static_cast<std::size_t>(c.order);
    std::vector<float> x(c.n * per);
    for (auto& v : x) v = normal(rng);
    const auto qb = quantize_conv_columns(emu, x.data(), g, c.order);
    ConvGeometry g1 = g;
    g1.batch = 1;
    bool same = true;
    for (std::size_t i = 0; i < c.n; ++i) {
      const auto qi = quantize_conv_columns(emu, x.data() + i * per, g1, c.order);
      const std::size_t k0 = qb.implicit_h1 ? 1 : 0, kw = qb.kw;
      for (std::size_t j = 0; j < ppi; ++j)
        for (std::size_t k = 0; k < K; ++k) {
          same = same && bits_of(qb.betas[((i * ppi + j) * K + k)]) == bits_of(qi.betas[j * K + k]);
          if (k >= k0)
            same = same && std::memcmp(qb.row(i * ppi + j, k), qi.row(j, k), kw * sizeof(word_t)) == 0;
        }
    }
    if (!same && ++failures <= kMaxReports)
      std::printf("conv chunks mismatch N=%zu C=%zu %zux%zu k=%zu s=%zu order=%d\n", c.n, c.C, c.hw, c.hw, c.k, c.s,
                  c.order);
  }
  return failures;
}

int check_sign_gemm(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  int failures = 0;
  const std::size_t Rs[] = {1, 3, 4, 31, 32, 33, 63, 64, 65, 130}, Ms[] = {1, 15, 16, 17, 33, 64, 65, 100, 129};
  for (std::size_t R : Rs)
    for (std::size_t M : Ms) {
      const std::size_t J = 1 + rng() % 40, words = words_for(R);
      // Each a row ends at a guard page: a read past lane M - 1 faults.
      std::vector<std::unique_ptr<PageEnd<float>>> arows;
      std::vector<const float*> rows(R);
      for (std::size_t r = 0; r < R; ++r) {
        arows.push_back(std::make_unique<PageEnd<float>>(M));
        for (std::size_t m = 0; m < M; ++m) arows[r]->data()[m] = normal(rng);
        rows[r] = arows[r]->data();
      }
      std::vector<float> scale(R);
      for (auto& v : scale) v = normal(rng);
      std::vector<word_t> sbits(words * J);
      for (auto& v : sbits) v = rng();  // bits past R are set too: they must not matter
      for (int scaled = 0; scaled < 2; ++scaled) {
        const std::size_t ldo = M + 3;  // guards after each output row
        std::vector<float> want(J * ldo, -7.0f), got(J * ldo, -7.0f);
        const float* sc = scaled ? scale.data() : nullptr;
        sign_gemm_generic(SignGemm{rows.data(), sc, R, M, sbits.data(), J, want.data(), ldo, false}, 0, M, 0, J);
        sign_gemm_avx512(SignGemm{rows.data(), sc, R, M, sbits.data(), J, got.data(), ldo, false}, 0, M, 0, J);
        // Accumulating into the previous result: the same sums again, added.
        sign_gemm_generic(SignGemm{rows.data(), sc, R, M, sbits.data(), J, want.data(), ldo, true}, 0, M, 0, J);
        sign_gemm_avx512(SignGemm{rows.data(), sc, R, M, sbits.data(), J, got.data(), ldo, true}, 0, M, 0, J);
        if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0 && ++failures <= kMaxReports)
          std::printf("sign_gemm mismatch R=%zu M=%zu J=%zu scaled=%d\n", R, M, J, scaled);
      }
    }
  return failures;
}

// The NHWC copy (quantize.h to_nhwc): channel counts and row widths around the 16 x 16 blocks, with and without
// the affine, into rows with guard values between them; every value as the generic copy writes it.
int check_to_nhwc(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  int failures = 0;
  for (std::size_t nchan : {1, 15, 16, 17, 33, 64})
    for (std::size_t W : {1, 7, 16, 31, 56})
      for (int affine = 0; affine < 2; ++affine) {
        const std::size_t cstride = W + 3, ldd = nchan + 5;
        PageEnd<float> src(nchan * cstride);
        for (std::size_t i = 0; i < nchan * cstride; ++i) src.data()[i] = normal(rng);
        std::vector<float> scale(nchan), shift(nchan);
        for (std::size_t c = 0; c < nchan; ++c) scale[c] = normal(rng), shift[c] = normal(rng);
        std::vector<float> want(W * ldd, -7.0f), got(W * ldd, -7.0f);
        const float* sc = affine ? scale.data() : nullptr;
        const float* sh = affine ? shift.data() : nullptr;
        to_nhwc_generic(src.data(), cstride, nchan, W, sc, sh, want.data(), ldd);
        to_nhwc_avx512(src.data(), cstride, nchan, W, sc, sh, got.data(), ldd);
        if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0 && ++failures <= kMaxReports)
          std::printf("to_nhwc mismatch nchan=%zu W=%zu affine=%d\n", nchan, W, affine);
      }
  return failures;
}

// pool_row (pool_row.h) against the generic path bit for bit: widths around 16 and 32 columns (the explicit 3x3 and
// 2x2 stride-2 rows' blocks and masks), the stems' geometry (3 wide, stride 2, padding 1), 2x2 windows at stride 2
// and others that take the compiler's loops, two or three kernel rows or a missing one (an image's top or bottom),
// several planes, no floor, one or one per plane, ties, -0.0 and +0.0, NaN where the caller does not promise none;
// each kernel row of the last plane ends at an inaccessible page, and guard values around each output row must stay.
int check_pool_rows(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  int failures = 0;
  struct Cols {
    std::size_t kw, sw, pw;
  };
  const Cols geoms[] = {{3, 2, 1}, {3, 1, 1}, {3, 2, 0}, {2, 2, 0}, {3, 2, 2}};
  for (const Cols& cg : geoms)
    for (std::size_t W : {1, 2, 3, 15, 16, 17, 31, 32, 33, 34, 63, 64, 65, 112})
      for (int missing = -1; missing < 3; ++missing)
        for (int no_nan = 0; no_nan < 2; ++no_nan)
          for (int nf : {0, 1, 3})
            for (std::size_t kh : {2, 3}) {
              if (W + 2 * cg.pw < cg.kw || missing >= static_cast<int>(kh)) continue;
              ConvGeometry g{1, 3, 3, W, 3, cg.kw, 2, cg.sw, 1, cg.pw, 1, 1, 1, (W + 2 * cg.pw - cg.kw) / cg.sw + 1};
              const PoolColumns pc = pool_columns(g);
              const std::size_t planes = 3, in_stride = W + 5, OW = g.out_w, out_stride = OW + 4;
              std::vector<std::unique_ptr<PageEnd<float>>> rowbuf;
              const float* rows[3];
              for (int i = 0; i < 3; ++i) {
                rowbuf.push_back(std::make_unique<PageEnd<float>>((planes - 1) * in_stride + W));
                PageEnd<float>& r = *rowbuf.back();
                for (float& v : r) {
                  const unsigned pick = static_cast<unsigned>(rng() % 16);
                  v = pick == 0 ? 0.0f : pick == 1 ? -0.0f : pick == 2 ? 0.5f : normal(rng);
                  if (!no_nan && pick == 3) v = std::nanf("");
                }
                rows[i] = i == missing ? nullptr : r.data();
              }
              const float floors[3] = {0.25f, -0.0f, 0.0f};
              const float* fl = nf ? floors : nullptr;
              std::vector<float> want(planes * out_stride, -7.0f), got(planes * out_stride, -7.0f), scratch(W);
              pool_row_generic(rows, kh, pc, fl, nf, no_nan != 0, scratch.data(), want.data(), planes, in_stride,
                               out_stride);
              pool_row_avx512(rows, kh, pc, fl, nf, no_nan != 0, scratch.data(), got.data(), planes, in_stride,
                              out_stride);
              if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0 && ++failures <= kMaxReports)
                std::printf("pool_row mismatch kh=%zu kw=%zu sw=%zu pw=%zu W=%zu missing=%d no_nan=%d floors=%d\n", kh,
                            cg.kw, cg.sw, cg.pw, W, missing, no_nan, nf);
            }
  return failures;
}

// Kept planes rebuilt as floats (sign_gemm.h expand_column): one and two groups, lengths around 16 and 64,
// orders 1-5, a zero beta (-0.0 where a bit is set); bit for bit like the generic walk, nothing written past
// the column.
int check_expand_column(std::mt19937_64& rng) {
  int failures = 0;
  for (std::size_t cg : {1, 7, 15, 16, 17, 33, 64, 65, 130})
    for (int order = 1; order <= 5; ++order)
      for (std::size_t groups : {1, 2}) {
        const std::size_t gw = (cg + 63) / 64, words = groups * gw;
        std::vector<std::vector<word_t>> planes(order, std::vector<word_t>(words));
        std::vector<const word_t*> ptr(order);
        std::vector<float> b(order);
        for (int k = 0; k < order; ++k) {
          for (auto& w : planes[k]) w = rng();
          ptr[k] = planes[k].data();
          b[k] = k == 1 ? 0.0f : static_cast<float>(rng() % 1000) / 337.0f;
        }
        std::vector<float> want(groups * cg + 3, -7.0f), got(groups * cg + 3, -7.0f);
        expand_column_generic(ptr.data(), b.data(), order, groups, cg, gw, want.data());
        expand_column_avx512(ptr.data(), b.data(), order, groups, cg, gw, got.data());
        if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0 && ++failures <= kMaxReports)
          std::printf("expand_column mismatch cg=%zu order=%d groups=%zu\n", cg, order, groups);
      }
  return failures;
}

// The 64 x 64 bit transpose (sign_gemm.h transpose64): random, single-bit and all-ones matrices, bit for bit like
// the generic path and like the definition (bit c of word r <-> bit r of word c).
int check_transpose64(std::mt19937_64& rng) {
  int failures = 0;
  for (int trial = 0; trial < 300; ++trial) {
    word_t a[64], want[64], got[64];
    for (int r = 0; r < 64; ++r)
      a[r] = trial == 0 ? ~word_t{0} : trial < 65 ? (r == trial - 1 ? word_t{1} << (trial * 7 % 64) : 0) : rng();
    std::memcpy(want, a, sizeof a);
    std::memcpy(got, a, sizeof a);
    transpose64_generic(want);
    transpose64_avx512(got);
    bool ok = std::memcmp(want, got, sizeof got) == 0;
    for (int r = 0; r < 64 && ok; ++r)
      for (int c = 0; c < 64; ++c) ok = ok && ((got[c] >> r & 1) == (a[r] >> c & 1));
    if (!ok && ++failures <= kMaxReports) std::printf("transpose64 mismatch, trial %d\n", trial);
  }
  return failures;
}

// The input gradient's fold (sign_gemm.h, Fold): random blocks of runs on padded grids, unit and wider strides,
// kernels 1-5 wide, runs shorter and longer than a vector; the grid (with guard values around it) bit for bit
// like the generic walk, and the buffer read only within its rows' margins (it ends at a guard page).
int check_fold(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  int failures = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t kh = 1 + rng() % 3, kw = 1 + rng() % 5, sw = 1 + rng() % 2, dw = 1 + rng() % 2 * (rng() % 3 == 0);
    const std::size_t dh = 1 + rng() % 2, OW = 1 + rng() % 40, OH = 1 + rng() % 3, channels = 1 + rng() % 4;
    const std::size_t Wg = (OW - 1) * sw + (kw - 1) * dw + 1, Hg = (OH - 1) + (kh - 1) * dh + 1, Pz = Hg * Wg;
    const std::size_t lanes = 64, ldb = lanes, margin = 16, T = kh * kw;
    // Runs: the block's lanes along the output rows (one image), starting part way into a row.
    std::vector<FoldRun> runs;
    const std::size_t first = rng() % OW;
    for (std::size_t q = 0, pos = first; q < lanes && pos < OW * OH;) {
      const std::size_t oy = pos / OW, ox = pos % OW, len = std::min(OW - ox, lanes - q);
      runs.push_back({q, len, oy * Wg + ox * sw});
      q += len, pos += len;
    }
    PageEnd<float> buf(channels * T * ldb + 2 * margin);
    for (std::size_t i = 0; i < channels * T * ldb + 2 * margin; ++i) buf.data()[i] = normal(rng);
    const std::size_t guard = 7;
    std::vector<float> want(channels * Pz + 2 * guard), got;
    for (auto& v : want) v = normal(rng);
    got = want;
    for (int p = 0; p < 2; ++p) {
      float* grid = (p ? got : want).data() + guard;
      // The fold may touch the grid and, in half the trials, the guard values after it (written back unchanged).
      const float* end = grid + channels * Pz + (trial % 2 ? guard : 0);
      const Fold f{buf.data() + margin, ldb, channels, kh, kw, dh, dw, sw, Wg, Pz, runs.data(), runs.size(), grid, end};
      if (p) fold_rows_avx512(f);
      else fold_rows_generic(f);
    }
    if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0 && ++failures <= kMaxReports)
      std::printf("fold mismatch kh=%zu kw=%zu sw=%zu dw=%zu OW=%zu\n", kh, kw, sw, dw, OW);
  }
  return failures;
}

// The weight binarizer and its gradient (weight_rows.h): rows of every length around the 16-value vectors and
// 64-bit words, ending at a guard page, with zeros and -0.0 (bit 0) among the values; bit for bit like generic.
int check_weight_rows(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  int failures = 0;
  const std::size_t ns[] = {1, 7, 15, 16, 17, 31, 63, 64, 65, 100, 129};
  for (std::size_t n : ns) {
    const std::size_t m = 3, nw = words_for(n);
    PageEnd<float> w(m * n), g(m * n);
    for (std::size_t i = 0; i < m * n; ++i) {
      w.data()[i] = i % 5 == 0 ? 0.0f : i % 7 == 1 ? -0.0f : normal(rng);
      g.data()[i] = normal(rng);
    }
    std::vector<float> alpha[2], eff[2], dw[2];
    std::vector<word_t> bits[2];
    for (int p = 0; p < 2; ++p) {
      alpha[p].assign(m, -7.0f);
      eff[p].assign(m * n, -7.0f);
      dw[p].assign(m * n, -7.0f);
      bits[p].assign(m * nw, ~word_t{0});
      auto binarize = p ? binarize_rows_avx512 : binarize_rows_generic;
      auto grad = p ? weight_grad_avx512 : weight_grad_generic;
      binarize(w.data(), m, n, alpha[p].data(), bits[p].data(), eff[p].data());
      grad(w.data(), alpha[p].data(), g.data(), m, n, 1.0, dw[p].data());
    }
    const bool same = alpha[0] == alpha[1] && bits[0] == bits[1] &&
                      std::memcmp(eff[0].data(), eff[1].data(), eff[0].size() * sizeof(float)) == 0 &&
                      std::memcmp(dw[0].data(), dw[1].data(), dw[0].size() * sizeof(float)) == 0;
    if (!same && ++failures <= kMaxReports) std::printf("weight rows mismatch n=%zu\n", n);
  }
  return failures;
}

// float_conv2d (the runtime's float first layer) with the AVX-512 row kernel against a scalar chain of fused
// multiply-adds in the same (c, i, j) order, then + bias, the floor and the ceiling: equal bit for bit, on geometries
// with output rows around the 16-lane vectors (tails, blocks of several vectors), strides, padding, dilation,
// channel counts that are not whole 4-row blocks, batches, zero weights with a -0.0 bias, and NaN propagation. Every
// fourth of the first 80 trials and all of the last 100 are depthwise (the depthwise kernels, float_conv_depthwise.h);
// the last 100 take MobileNet's, EfficientNet's and ConvNeXt's kernels (3x3 and 5x5 at stride 1 and 2, 7x7), output
// rows around the vectors and the 4-row blocks, maps of 1 to 3 channels (row bands) and of up to 40, a channel
// multiplier of 1 or 2, and guards after the last output (the last row's vector cut at the call's end).
int check_float_conv(std::mt19937_64& rng) {
  KernelTable emu{};
  emu.name = "avx512";
  emu.float_conv_row = float_conv_row_avx512;
  emu.float_conv_depthwise = float_conv_depthwise_avx512;
  std::normal_distribution<float> normal;
  int failures = 0;
  for (int trial = 0; trial < 180; ++trial) {
    const std::size_t widths[] = {1, 5, 15, 16, 17, 31, 33, 48, 97, 113};
    ConvGeometry g{};
    g.batch = 1 + rng() % 3, g.channels = 1 + rng() % 5, g.height = 1 + rng() % 6;
    g.width = widths[rng() % std::size(widths)];
    g.kh = 1 + rng() % 5, g.kw = 1 + rng() % 5, g.sh = 1 + rng() % 3, g.sw = 1 + rng() % 3;
    g.ph = rng() % 3, g.pw = rng() % 3, g.dh = 1 + rng() % 2, g.dw = 1 + rng() % 2;
    if (trial >= 80) {  // the depthwise kernel's geometries
      const std::size_t kernels[][2] = {{3, 1}, {3, 2}, {5, 1}, {5, 2}, {7, 1}}, dw_widths[] = {7, 8, 9, 14, 28, 56};
      const std::size_t* k = kernels[trial % 5];
      g.kh = g.kw = k[0], g.sh = g.sw = k[1], g.dh = g.dw = 1, g.ph = rng() % 4, g.pw = rng() % 4;
      g.height = 1 + rng() % 19, g.width = trial % 2 ? widths[rng() % std::size(widths)] : dw_widths[rng() % 6];
      g.channels = trial % 3 == 0 ? 1 + rng() % 3 : 1 + rng() % 40;
    }
    const std::size_t sph = g.dh * (g.kh - 1) + 1, spw = g.dw * (g.kw - 1) + 1;
    if (g.height + 2 * g.ph < sph || g.width + 2 * g.pw < spw) continue;
    g.out_h = (g.height + 2 * g.ph - sph) / g.sh + 1, g.out_w = (g.width + 2 * g.pw - spw) / g.sw + 1;
    // Every fourth trial depthwise (groups = C, 1-3 outputs a group; every eighth over 17-40 channels: several of
    // the direct driver's 16-channel chunks of a grouped call), every fourth another one of 2 groups.
    std::size_t m = 1 + rng() % 11, groups = 1;
    if (trial % 4 == 1) groups = g.channels, m = g.channels * (1 + rng() % 3);
    if (trial % 8 == 5) g.channels = groups = 17 + rng() % 24, m = g.channels;  // depthwise over several chunks
    if (trial % 4 == 3) g.channels = 2 * (1 + rng() % 3), groups = 2, m = 2 * (1 + rng() % 6);
    if (trial >= 80) groups = g.channels, m = g.channels * (1 + trial % 7 / 5);  // a multiplier of 2 in 2 of 7
    const std::size_t cg = g.channels / groups, k = cg * g.kh * g.kw;
    std::vector<float> x(g.batch * g.channels * g.height * g.width), w(m * k), bias(m), floor(m), ceiling(m);
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    for (auto& v : bias) v = normal(rng);
    for (std::size_t o = 0; o < m; ++o) floor[o] = o % 3 == 0 ? 0.0f : normal(rng);
    for (std::size_t o = 0; o < m; ++o) ceiling[o] = o % 2 == 0 ? 6.0f : 0.5f + normal(rng);
    if (trial % 7 == 0) x[rng() % x.size()] = std::nanf("");
    if (trial % 5 == 0) std::fill(bias.begin(), bias.end(), -0.0f), std::fill(w.begin(), w.end(), 0.0f);
    const bool with_bias = trial % 3 != 1, with_floor = trial % 2 == 0, with_ceiling = trial % 5 < 2;
    const std::size_t ny = g.batch * m * g.out_h * g.out_w;
    std::vector<float> got(ny + 2, 1234.5f), want(ny);
    float_conv2d(emu, x.data(), g, w.data(), m, with_bias ? bias.data() : nullptr, with_floor ? floor.data() : nullptr,
                 with_ceiling ? ceiling.data() : nullptr, got.data() + 1, FloatConvAlgorithm::direct, groups);
    for (std::size_t n = 0; n < g.batch; ++n)
      for (std::size_t o = 0; o < m; ++o)
        for (std::size_t oy = 0; oy < g.out_h; ++oy)
          for (std::size_t ox = 0; ox < g.out_w; ++ox) {
            float acc = 0.0f;
            const std::size_t c0 = o / (m / groups) * cg;  // the output's group's first input channel
            for (std::size_t c = c0; c < c0 + cg; ++c)
              for (std::size_t i = 0; i < g.kh; ++i)
                for (std::size_t j = 0; j < g.kw; ++j) {
                  const long iy = static_cast<long>(oy * g.sh + i * g.dh) - static_cast<long>(g.ph);
                  const long ix = static_cast<long>(ox * g.sw + j * g.dw) - static_cast<long>(g.pw);
                  const bool in = iy >= 0 && ix >= 0 && iy < static_cast<long>(g.height) &&
                                  ix < static_cast<long>(g.width);
                  const float xv = in ? x[((n * g.channels + c) * g.height + static_cast<std::size_t>(iy)) * g.width +
                                          static_cast<std::size_t>(ix)]
                                      : 0.0f;
                  acc = std::fma(w[o * k + ((c - c0) * g.kh + i) * g.kw + j], xv, acc);
                }
            if (with_bias) acc += bias[o];
            if (with_floor && floor[o] > acc) acc = floor[o];
            if (with_ceiling && ceiling[o] < acc) acc = ceiling[o];
            want[((n * m + o) * g.out_h + oy) * g.out_w + ox] = acc;
          }
    const bool guards = got[0] == 1234.5f && got[ny + 1] == 1234.5f;
    if ((!guards || std::memcmp(got.data() + 1, want.data(), ny * sizeof(float)) != 0) && ++failures <= kMaxReports)
      std::printf("float_conv mismatch C=%zu %zux%zu k=%zux%zu s=%zu,%zu p=%zu,%zu d=%zu,%zu m=%zu batch=%zu "
                  "groups=%zu\n", g.channels, g.height, g.width, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, m,
                  g.batch, groups);
  }
  return failures;
}

// float_conv2d's Winograd tiles (float_conv_winograd.h) with the AVX-512 tile row against the generic path's
// scalar tiles (std::fma for the fused operations): equal bit for bit, guard values intact, on strides 1 and 2,
// kernels up to 4 x stride (rectangular, sub-kernels of every size), 1..16 phase channels, output widths whose tile
// columns fall around the 16-lane vectors (1 to 3 vectors; 17, 34 and 49 columns end on the 8-lane tail; 81 and 97
// columns, 5 and 6 vectors, are rows of two blocks of vectors, of 3 + 2 and 3 + 3), channel counts that are not whole
// 8-channel blocks, batches, bias and floor.
int check_float_conv_winograd(std::mt19937_64& rng) {
  KernelTable emu{}, gen{};
  emu.name = "avx512", gen.name = "generic";
  emu.float_conv_row = float_conv_row_avx512, gen.float_conv_row = float_conv_row_generic;
  emu.float_conv_tiles = float_conv_tiles_avx512, gen.float_conv_tiles = float_conv_tiles_generic;
  std::normal_distribution<float> normal;
  int failures = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t widths[] = {1, 4, 40, 45, 46, 48, 49, 96, 100, 143, 146, 243, 290};
    ConvGeometry g{};
    g.sh = g.sw = 1 + rng() % 2, g.dh = g.dw = 1;
    g.batch = 1 + rng() % 2, g.channels = 1 + rng() % (16 / (g.sh * g.sh));
    g.kh = 1 + rng() % (4 * g.sh), g.kw = 1 + rng() % (4 * g.sw), g.ph = rng() % 3, g.pw = rng() % 3;
    const std::size_t ow = widths[rng() % std::size(widths)], oh = 1 + rng() % 8;
    g.height = (oh - 1) * g.sh + g.kh, g.width = (ow - 1) * g.sw + g.kw;  // before padding: out = ow, oh ...
    g.height = g.height > 2 * g.ph ? g.height - 2 * g.ph : g.height;    // ... or a little more with it
    g.width = g.width > 2 * g.pw ? g.width - 2 * g.pw : g.width;
    if (g.height + 2 * g.ph < g.kh || g.width + 2 * g.pw < g.kw) continue;
    g.out_h = (g.height + 2 * g.ph - g.kh) / g.sh + 1, g.out_w = (g.width + 2 * g.pw - g.kw) / g.sw + 1;
    const std::size_t m = 1 + rng() % 19, k = g.channels * g.kh * g.kw;
    std::vector<float> x(g.batch * g.channels * g.height * g.width), w(m * k), bias(m), floor(m), ceiling(m);
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    for (auto& v : bias) v = normal(rng);
    for (std::size_t o = 0; o < m; ++o) floor[o] = o % 3 == 0 ? 0.0f : normal(rng);
    for (std::size_t o = 0; o < m; ++o) ceiling[o] = o % 2 == 0 ? 6.0f : 0.5f + normal(rng);
    const bool with_bias = trial % 3 != 1, with_floor = trial % 2 == 0, with_ceiling = trial % 5 < 2;
    const std::size_t ny = g.batch * m * g.out_h * g.out_w;
    std::vector<float> got(ny + 2, 1234.5f), want(ny + 2, 1234.5f);
    for (auto* run : {&got, &want})
      float_conv2d(run == &got ? emu : gen, x.data(), g, w.data(), m, with_bias ? bias.data() : nullptr,
                   with_floor ? floor.data() : nullptr, with_ceiling ? ceiling.data() : nullptr, run->data() + 1,
                   FloatConvAlgorithm::winograd);
    const bool guards = got[0] == 1234.5f && got[ny + 1] == 1234.5f;
    if ((!guards || std::memcmp(got.data(), want.data(), (ny + 2) * sizeof(float)) != 0) && ++failures <= kMaxReports)
      std::printf("float_conv winograd mismatch C=%zu %zux%zu k=%zux%zu s=%zu p=%zu,%zu m=%zu batch=%zu\n",
                  g.channels, g.height, g.width, g.kh, g.kw, g.sh, g.ph, g.pw, m, g.batch);
  }
  return failures;
}

// The avx512 tiles compute a row's last tiles with the next row's and keep those for the next call of the thread
// (float_conv_avx512.cpp TailRow): a later call with another plan, or another copy, must not take them.
int check_winograd_tail_rows(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  ConvGeometry g{};
  g.batch = 1, g.channels = 3, g.kh = g.kw = 7, g.sh = g.sw = 2, g.ph = g.pw = 3, g.dh = g.dw = 1;
  g.height = 23, g.width = 199, g.out_h = 12, g.out_w = 100;  // 34 tile columns (32 + 2), 4 tile rows
  const std::size_t m = 20;
  std::vector<float> w(m * 3 * 49), bias(m);
  for (auto& v : w) v = normal(rng);
  for (auto& v : bias) v = normal(rng);
  int failures = 0;
  const auto row = [&](const WinogradPlan& p, const float* q, std::size_t ty, bool emulated) {
    const std::size_t wd = p.width();
    std::vector<float> out(kWinogradOut * m * wd, 0.0f);
    float* rows[kWinogradOut];
    for (std::size_t i = 0; i < kWinogradOut; ++i) rows[i] = out.data() + i * wd;
    (emulated ? float_conv_tiles_avx512 : float_conv_tiles_generic)(p, q, ty, rows, kWinogradOut * wd);
    std::vector<float> kept;  // the real output columns only
    for (std::size_t i = 0; i < kWinogradOut; ++i)
      for (std::size_t o = 0; o < m; ++o) kept.insert(kept.end(), rows[i] + o * kWinogradOut * wd,
                                                      rows[i] + o * kWinogradOut * wd + g.out_w);
    return kept;
  };
  const WinogradPlan a = make_winograd_plan(g, w.data(), m, bias.data(), nullptr, nullptr);
  std::vector<float> q1(a.image()), q2(a.image());
  for (auto& v : q1) v = normal(rng);
  for (auto& v : q2) v = normal(rng);
  const auto check = [&](const char* what, const WinogradPlan& p, const float* q, std::size_t ty) {
    if (row(p, q, ty, true) != row(p, q, ty, false) && ++failures <= kMaxReports)
      std::printf("winograd tail rows mismatch: %s, tile row %zu\n", what, ty);
  };
  check("plan a, first row", a, q1.data(), 0);  // leaves row 1 of (a, q1) kept
  check("plan a, row 1 kept", a, q1.data(), 1);
  row(a, q1.data(), 0, true);  // row 1 of (a, q1) kept again
  for (auto& v : q1) v = normal(rng);  // the same copy's memory, new values, a new plan
  const WinogradPlan b = make_winograd_plan(g, w.data(), m, bias.data(), nullptr, nullptr);
  check("a new plan on the same memory", b, q1.data(), 1);  // leaves row 2 of (b, q1) kept
  check("plan b, row 2 kept", b, q1.data(), 2);
  row(b, q2.data(), 2, true);  // row 3 of (b, q2) kept
  check("another copy", b, q1.data(), 3);
  check("plan b, row 3 kept", b, q2.data(), 3);
  row(b, q2.data(), 0, true);  // row 1 of (b, q2) kept
  check("another row", b, q2.data(), 2);
  return failures;
}

int main() {
  set_num_threads(1);
  std::mt19937_64 rng(42);
  struct Check {
    const char* name;
    int (*run)(std::mt19937_64&);
  };
  const Check checks[] = {
      {"intrinsics", [](std::mt19937_64&) { return check_intrinsics(); }},
      {"bgemm", check_bgemm},
      {"quantize", check_quantize},
      {"quantize_taps2", check_quantize_taps2},
      {"pack_pixels", check_pack_pixels},
      {"gemm_task", check_gemm_task},
      {"gemm_task ties", [](std::mt19937_64&) { return check_gemm_ties(); }},
      {"conv", check_conv},
      {"conv image", check_conv_image},
      {"conv band2", check_conv_band2},
      {"conv chunks", check_conv_chunks},
      {"sign_gemm", check_sign_gemm},
      {"to_nhwc", check_to_nhwc},
      {"pool rows", check_pool_rows},
      {"fold", check_fold},
      {"expand_column", check_expand_column},
      {"transpose64", check_transpose64},
      {"weight_rows", check_weight_rows},
      {"float_conv", check_float_conv},
      {"float_conv winograd", check_float_conv_winograd},
      {"winograd tail rows", check_winograd_tail_rows},
  };
  int failures = 0;
  for (const Check& c : checks) {
    const int f = c.run(rng);
    std::printf("%s: %d failures\n", c.name, f);
    std::fflush(stdout);  // a fault in the next check still shows how far it got
    failures += f;
  }
  std::printf(failures ? "FAILED %d\n" : "OK\n", failures);
  return failures ? 1 : 0;
}
