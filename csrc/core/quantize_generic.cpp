// Portable input quantization (quantize.h): plain C++ in double, no intrinsics, always compiled. These are
// the portable references of the operations: the ISA versions must give their bits (and their betas to
// rounding; the AVX-512 emulation harness compares quantize_*_avx512 and pack_pixels_avx512 with them
// directly), and csrc/tests/test_kernels.cpp and tests/kernels run every path, this one included, against
// scalar models of the definitions.
//
// Arithmetic (docs/MATH.md "Inputs: residual binarization"). With H = sign(r) and sign(0) = +1,
//     r_k = r_{k-1} - beta_k H_k = r_{k-1} - beta_k (1 - 2 [r_{k-1} < 0]),
// and 1 - 2 [r < 0] is exactly +-1, so the product and the subtraction round exactly as r -+ beta: the
// residual is computed branch-free (signs are random: a branch would mispredict half the time) with the
// very rounding of the two-branch rule, which is what the ISA versions' masked add/sub compute too.
// beta_k = (sum_i |r_{k-1,i}|) / n in double: the bits are thresholds against zero, so a float32 beta
// would flip bits near them. The conv passes (quantize_taps) recompute r_{k-1} from x along the same chain
// of k - 1 steps instead of storing it, and sum |r| in four partial sums (p0..p3, added as (p0 + p1) +
// (p2 + p3)) so the adds do not form one dependency chain; the order is fixed, so the result is too.
// Order 2 from the taps (quantize_taps2) needs no double chain at all: for a float32 x and a = |x|,
//     x >= 0:  r_1 = x - beta_1 < 0  <=>  a < beta_1  <=>  a < ceil32(beta_1)   (no float lies strictly
//     x < 0:   r_1 = x + beta_1 < 0  <=>  a > beta_1  <=>  a > floor32(beta_1)   between the two roundings)
// so float compares give the double chain's bits exactly; beta_2 sums | a - float(beta_1) | in float32 per
// 64-value word, each word's sum then added in double (relative error ~1e-7 against float32 outputs).
// Pixel packing (pack_pixels): a pixel's H_1 word is bit c = [x_c < 0] over its <= 64 channels, its sum
// sum_c |x_c| is added in double in channel order (every path keeps that order, so the sums agree bit for
// bit), and NaN/Inf is an all-ones float exponent, tested on the bits so no float compare chain is needed.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/quantize.h"
#include "core/quantize_walk.h"

namespace horq {
namespace {

struct ColumnPass {
  double beta, next = 0.0;
  explicit ColumnPass(double b) : beta(b) {}

  static double abs_sum(const double* r, std::size_t n) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) sum += std::fabs(r[i]);
    return sum;
  }

  template <bool Update>
  word_t word(double* rg, std::size_t i0, std::size_t i1) {
    word_t word = 0;
    double s = next;  // a local: rg's stores could otherwise alias the member
    for (std::size_t i = i0; i < i1; ++i) {
      double v = rg[i];
      const bool neg = v < 0.0;
      word |= static_cast<word_t>(neg) << (i - i0);
      if (Update) {
        v -= beta * (1.0 - 2.0 * static_cast<double>(neg));
        rg[i] = v;
        s += std::fabs(v);
      }
    }
    next = s;
    return word;
  }

  double total() const { return next; }
};

// KC = k - 1 residual steps when known at compile time (orders 2 and 3), else `steps`.
struct TapsPass {
  double betas[kMaxOrder];
  int steps;
  double part[4] = {0.0, 0.0, 0.0, 0.0};

  TapsPass(const double* b, int nsteps) : steps(nsteps) {
    for (int j = 0; j < steps; ++j) betas[j] = b[j];
  }

  word_t word(const float* x, std::size_t i0, std::size_t i1, double&) {
    switch (steps) {
      case 1: return word_steps<1>(x, i0, i1);
      case 2: return word_steps<2>(x, i0, i1);
      default: return word_steps<-1>(x, i0, i1);
    }
  }

  template <int KC>
  word_t word_steps(const float* x, std::size_t i0, std::size_t i1) {
    const int nsteps = KC >= 0 ? KC : steps;
    auto residual = [&](float xv) {
      double v = xv;
      for (int j = 0; j < nsteps; ++j) v -= betas[j] * (1.0 - 2.0 * static_cast<double>(v < 0.0));
      return v;
    };
    double p0 = part[0], p1 = part[1], p2 = part[2], p3 = part[3];
    word_t word = 0;
    std::size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
      const double v0 = residual(x[i]), v1 = residual(x[i + 1]), v2 = residual(x[i + 2]), v3 = residual(x[i + 3]);
      const word_t nib = static_cast<word_t>(v0 < 0.0) | static_cast<word_t>(v1 < 0.0) << 1 |
                         static_cast<word_t>(v2 < 0.0) << 2 | static_cast<word_t>(v3 < 0.0) << 3;
      word |= nib << (i - i0);
      p0 += std::fabs(v0);
      p1 += std::fabs(v1);
      p2 += std::fabs(v2);
      p3 += std::fabs(v3);
    }
    for (; i < i1; ++i) {
      const double v = residual(x[i]);
      word |= static_cast<word_t>(v < 0.0) << (i - i0);
      p0 += std::fabs(v);
    }
    part[0] = p0, part[1] = p1, part[2] = p2, part[3] = p3;
    return word;
  }

  double total(double sum) const { return sum + (part[0] + part[1]) + (part[2] + part[3]); }
};

// 8 bytes m[l] of 0 or 1 as the bits l of a word, by one multiply: byte l of u times 2^(56 - 7 l) lands on bit 56 + l,
// and no two products meet below bit 64.
inline word_t gather_bytes(const unsigned char* m) {
  std::uint64_t u = 0;  // byte l = m[l]
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(&u, m, sizeof u);
#else
  for (std::size_t l = 0; l < 8; ++l) u |= static_cast<std::uint64_t>(m[l]) << (8 * l);
#endif
  return (u * 0x0102040810204080ull) >> 56;
}

// Lanes l and l + 4 of 8 float lanes widened and added into double lane l (the avx2 path's widen_add).
inline void widen_lanes(double* lanes, const float* part) {
  for (std::size_t l = 0; l < 4; ++l) lanes[l] += static_cast<double>(part[l]) + static_cast<double>(part[l + 4]);
}

// H_2's bit from both compares, chosen by the sign without a branch (signs are random: a branch on them mispredicted
// half the time and had made this pass most of the generic path's order-2 layer); |a - float(beta_1)| summed in 8
// float lanes over a word's whole steps of 8 values (lane l: values 8 s + l; one chain of 64 dependent adds a word
// before), each word's lanes l and l + 4 widened and added into double lane l, the rest of a word (< 8 values) in
// one float sum added to the walk's `sum`; total = sum + (lane 0 + lane 1) + (lane 2 + lane 3): the avx2 path's
// Taps2Pass order.
struct Taps2Pass {
  Threshold32 th;
  double lanes[4] = {};

  static word_t bit(float v, float a, const Threshold32& th) {
    const bool neg = v < 0.0f;
    return static_cast<word_t>((neg & (a > th.down)) | (!neg & (a < th.up)));
  }
  float term(float a) const { return std::fabs(a - th.nearest); }  // |r_1| in float32

  word_t word(const float* x, std::size_t i0, std::size_t i1, double& sum, word_t /*h1*/) {
    word_t word = 0;
    float part[8] = {};
    std::size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      unsigned char m[8];  // the 8 bits as bytes of 0 or 1 (a loop the compiler vectorizes)
      for (std::size_t l = 0; l < 8; ++l) {
        const float v = x[i + l], a = std::fabs(v);
        m[l] = static_cast<unsigned char>(bit(v, a, th));
        part[l] += term(a);
      }
      word |= gather_bytes(m) << (i - i0);
    }
    float tail = 0.0f;
    for (; i < i1; ++i) {
      const float v = x[i], a = std::fabs(v);
      word |= bit(v, a, th) << (i - i0);
      tail += term(a);
    }
    widen_lanes(lanes, part);
    sum += static_cast<double>(tail);
    return word;
  }

  double total(double sum) const { return sum + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]); }
};

// Order 3 from Threshold3 (quantize_walk.h), as the avx2 path's Taps3Pass computes it lane for lane, so the two give
// the same bits and the same beta_3: per value a = |x|, N = (lo < a < hi) and H_3 = H_2 XOR N, the term
// | |a - beta_1| - beta_2 | in float32 (beta_1, beta_2 rounded to float32). A whole word's 64 values are 8 steps of 8
// lanes (lane l: value 8 s + l), their terms in four float sums (steps s and s + 4 into sum s % 4) added as (s0 + s1)
// + (s2 + s3), whose lanes l and l + 4 are widened and added into double lane l; a word cut short adds its whole steps
// in order into one float sum (widened the same way) and its last 1-7 values into a scalar float, added in double to
// `tail`. total = (sum + tail) + (lane 0 + lane 1) + (lane 2 + lane 3). The double chain (TapsPass) took ~80% of a
// 64-channel 56x56 order-3 layer on this path.
struct Taps3Pass {
  float lo, hi, b1, b2;
  double lanes[4] = {};
  double tail = 0.0;
  Taps3Pass(const Threshold3& t, double beta1, double beta2)
      : lo(t.lo), hi(t.hi), b1(static_cast<float>(beta1)), b2(static_cast<float>(beta2)) {}

  // For a = |x|: N (lo < a < hi), and the term | |a - beta_1| - beta_2 | in float32.
  word_t band(float a) const { return static_cast<word_t>((a > lo) & (a < hi)); }
  float term(float a) const { return std::fabs(std::fabs(a - b1) - b2); }

  // 8 values at x: their N bits (value l at bit l) and terms into part (part[l] = term, or += where `add`).
  word_t step(const float* x, float* part, bool add) const {
    unsigned char m[8];
    for (std::size_t l = 0; l < 8; ++l) {
      const float a = std::fabs(x[l]);
      m[l] = static_cast<unsigned char>(band(a));
      const float t = term(a);
      part[l] = add ? part[l] + t : t;
    }
    return gather_bytes(m);
  }

  word_t word(const float* x, word_t h2) {
    float s[4][8], part[8];
    word_t n = 0;
    for (std::size_t v = 0; v < kWordBits / 8; ++v) n |= step(x + 8 * v, s[v % 4], v >= 4) << (8 * v);
    for (std::size_t l = 0; l < 8; ++l) part[l] = (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]);
    widen_lanes(lanes, part);
    return h2 ^ n;
  }

  word_t word(const float* x, std::size_t i0, std::size_t i1, word_t h2) {
    if (i1 - i0 == kWordBits) return word(x + i0, h2);
    float part[8] = {};
    word_t n = 0;
    std::size_t i = i0;
    for (; i + 8 <= i1; i += 8) n |= step(x + i, part, true) << (i - i0);
    float t = 0.0f;
    for (; i < i1; ++i) {
      const float a = std::fabs(x[i]);
      n |= band(a) << (i - i0);
      t += term(a);
    }
    widen_lanes(lanes, part);
    tail += static_cast<double>(t);
    return h2 ^ n;
  }

  double total(double sum = 0.0) const { return (sum + tail) + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]); }
};

// Taps2Pass for either case of beta_1 (image_walk's two order-2 pass types).
struct ImagePass : Taps2Pass {
  explicit ImagePass(const Threshold32& t, double = 0.0) : Taps2Pass{t} {}
  struct Partial {
    double total;
  };
  Partial partial(double sum) const { return {total(sum)}; }
  static double total_of(const Partial& p, double) { return p.total; }
};

}  // namespace

void quantize_column_generic(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas) {
  column_walk<ColumnPass>(r, groups, cg, order, bits, ldbits, betas);
}

void quantize_taps_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                           std::size_t ldbits, double* betas) {
  taps_walk<TapsPass>(taps, ntaps, cg, order, bits, ldbits, betas);
}

void quantize_taps2_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                            std::size_t ldbits, double* betas) {
  taps2_walk(taps, ntaps, cg, bits, ldbits, betas, Taps2Pass{Threshold32(betas[0])});
}

bool quantize_taps3_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                            std::size_t ldbits, double* betas) {
  return taps3_walk<Taps3Pass>(taps, ntaps, cg, bits, ldbits, betas);
}

void quantize_image_generic(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                            std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas) {
  image_walk<ImagePass, ImagePass, TapsPass, Taps3Pass>(im, pix, word, count, order, bits, ldbits, betas);
}

// One channel at a time along the contiguous row: every pixel has its own accumulators, so the loop
// vectorizes over w and each pixel's sum still adds its channels in order.
std::uint32_t pack_pixels_generic(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                  word_t* words, std::size_t wstride, double* sums, const float* scale,
                                  const float* shift) {
  for (std::size_t w = 0; w < W; ++w) words[w * wstride] = 0;
  std::uint32_t bad = 0;
  for (std::size_t c = 0; c < nchan; ++c) {
    const float* __restrict v = src + c * cstride;
    const float a = scale ? scale[c] : 1.0f, b = scale ? shift[c] : 0.0f;
    for (std::size_t w = 0; w < W; ++w) {
      const float x = scale ? v[w] * a + b : v[w];
      bad |= non_finite(x);
      sums[w] += std::fabs(static_cast<double>(x));
      words[w * wstride] |= static_cast<word_t>(x < 0.0f ? 1 : 0) << c;
    }
  }
  return bad;
}

void to_nhwc_generic(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                     const float* shift, float* dst, std::size_t ldd) {
  for (std::size_t c = 0; c < nchan; ++c)
    for (std::size_t w = 0; w < W; ++w) dst[w * ldd + c] = nhwc_value(src, cstride, c, w, scale, shift);
}

}  // namespace horq
