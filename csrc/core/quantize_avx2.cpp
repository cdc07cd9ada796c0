// AVX2 input quantization (quantize.h; the loops around the passes below are quantize_walk.h's, the portable
// reference is quantize_generic.cpp). Compiled with -mavx2; selected only on CPUs with AVX2.
//
// Arithmetic, 4 doubles (or 8 floats) per step:
//   * H bits: the compare r < 0 gives an all-ones lane mask; vmovmskpd/vmovmskps collects the lanes' sign
//     bits into an int, which is the next 4 (8) bits of the word, value i0 + l at bit l.
//   * r_k = r_{k-1} - beta_k H_k: the mask ANDed with -0.0 is the sign bit where r < 0, and XORing it into
//     beta gives -beta there and +beta elsewhere, so one subtraction computes r -+ beta, exactly the
//     rounding of the scalar rule (quantize_generic.cpp). |r| is r with its sign bit cleared (andnot).
//   * Sums of |r| go to 4 double lanes (two accumulators in the taps pass, added lane-wise at the end);
//     the 0-3 (0-7) values a word leaves after its vector steps run the scalar rule into a scalar sum, and
//     the total is scalar + (lane0 + lane1) + (lane2 + lane3): a fixed order, so the same column gives
//     the same betas whatever the thread, but not the generic path's betas bit for bit.
//   * Order 2 (quantize_taps2): bit = |x| > floor32(beta_1) for x < 0, |x| < ceil32(beta_1) otherwise
//     (quantize_generic.cpp derives it), one blend of the two compares on the sign mask;
//     | |x| - float(beta_1) | summed in float lanes over one word (at most 8 steps), then added into
//     double lanes. When beta_1 is not a float32 value (nearly always), the cheaper pass of
//     quantize_avx512.cpp's Taps2BelowPass: H_2 = H_1 XOR (|x| < ceil32(beta_1)) with H_1's word from the walk,
//     and beta_2 from the sum of the |x| below beta_1.
//   * Pixel packing: per channel one masked load and a compare whose 32-bit lanes, widened to 64 bits,
//     select bit c of 8 pixels' words; NaN/Inf is an all-ones exponent; |x| widened to double and added
//     in channel order (the generic sums bit for bit). Long stretches (pack_plane_chunks) take each channel's
//     8 bits from vmovmskps instead, transposed into words at the end, and find NaN/Inf in the sums.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/quantize.h"
#include "core/quantize_walk.h"

namespace horq {
namespace {

constexpr std::size_t kDoubles = 4;  // doubles per ymm
constexpr std::size_t kFloats = 8;   // floats per ymm

// acc + the 8 float lanes of part, widened to double (lanes l and l + 4 into double lane l): how every pass adds a
// word's float sums into its double accumulator.
inline __m256d widen_add(__m256d acc, __m256 part) {
  return _mm256_add_pd(acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(part)),
                                          _mm256_cvtps_pd(_mm256_extractf128_ps(part, 1))));
}

// A whole word of 64 values at x, 8 vectors of |x|: f(a, term) returns a vector's compare mask and sets its term; the
// masks' lanes become the word returned (value i at bit i), and the terms go into four float sums (vectors v and v + 4
// into sum v % 4, rather than one chain of eight dependent adds), added as (s0 + s1) + (s2 + s3) and widened into the
// double lanes of acc.
template <class F>
inline word_t whole_word_walk(const float* x, __m256d& acc, F&& f) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  word_t bits = 0;
  __m256 s[4];
#pragma GCC unroll 8
  for (std::size_t v = 0; v < kWordBits / kFloats; ++v) {
    __m256 term;
    const __m256 m = f(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + v * kFloats)), term);
    bits |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(m))) << (v * kFloats);
    s[v % 4] = v < 4 ? term : _mm256_add_ps(s[v % 4], term);
  }
  acc = widen_add(acc, _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
  return bits;
}

// The whole vectors of values [i, i1) of a word starting at value i0 (a word cut short): f as for whole_word_walk; the
// masks' lanes as bits (value j at bit j - i0) returned, the terms added into `part` in order, and i left at the first
// value after them.
template <class F>
inline word_t vector_steps(const float* x, std::size_t i0, std::size_t& i, std::size_t i1, __m256& part, F&& f) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  word_t bits = 0;
  for (; i + kFloats <= i1; i += kFloats) {
    __m256 term;
    const __m256 m = f(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), term);
    bits |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(m))) << (i - i0);
    part = _mm256_add_ps(part, term);
  }
  return bits;
}

// s + (l0 + l1) + (l2 + l3) for the lanes l of v: the one order every AVX2 pass adds its lanes in.
inline double add_lanes(double s, __m256d v) {
  alignas(32) double l[kDoubles];
  _mm256_store_pd(l, v);
  return s + (l[0] + l[1]) + (l[2] + l[3]);
}

struct ColumnPass {
  double beta;
  __m256d vb, vnext = _mm256_setzero_pd();
  double next = 0.0;
  explicit ColumnPass(double b) : beta(b), vb(_mm256_set1_pd(b)) {}

  static double abs_sum(const double* r, std::size_t n) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d acc = _mm256_setzero_pd();
    std::size_t i = 0;
    for (; i + kDoubles <= n; i += kDoubles) acc = _mm256_add_pd(acc, _mm256_andnot_pd(sign, _mm256_loadu_pd(r + i)));
    double sum = 0.0;
    for (; i < n; ++i) sum += std::fabs(r[i]);
    return add_lanes(sum, acc);
  }

  template <bool Update>
  word_t word(double* rg, std::size_t i0, std::size_t i1) {
    const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
    __m256d vn = vnext;  // locals: rg's stores could otherwise alias the members
    double s = next;
    word_t word = 0;
    std::size_t j = i0;
    for (; j + kDoubles <= i1; j += kDoubles) {
      __m256d v = _mm256_loadu_pd(rg + j);
      const __m256d neg = _mm256_cmp_pd(v, zero, _CMP_LT_OQ);
      word |= static_cast<word_t>(_mm256_movemask_pd(neg)) << (j - i0);
      if (Update) {
        v = _mm256_sub_pd(v, _mm256_xor_pd(vb, _mm256_and_pd(neg, sign)));
        _mm256_storeu_pd(rg + j, v);
        vn = _mm256_add_pd(vn, _mm256_andnot_pd(sign, v));
      }
    }
    for (; j < i1; ++j) {
      double v = rg[j];
      const bool neg = v < 0.0;
      word |= static_cast<word_t>(neg) << (j - i0);
      if (Update) {
        v -= beta * (1.0 - 2.0 * static_cast<double>(neg));
        rg[j] = v;
        s += std::fabs(v);
      }
    }
    vnext = vn, next = s;
    return word;
  }

  double total() const { return add_lanes(next, vnext); }
};

// Pass k of the taps walk: 8 floats per step widened to two double vectors, the chain of `steps` masked
// subtractions in registers.
struct TapsPass {
  __m256d vb[kMaxOrder];
  double betas[kMaxOrder];
  int steps;
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();

  TapsPass(const double* b, int nsteps) : steps(nsteps) {
    for (int j = 0; j < steps; ++j) vb[j] = _mm256_set1_pd(b[j]), betas[j] = b[j];
  }

  word_t word(const float* x, std::size_t i0, std::size_t i1, double& sum) {
    const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
    word_t word = 0;
    std::size_t i = i0;
    for (; i + kFloats <= i1; i += kFloats) {
      const __m256 f = _mm256_loadu_ps(x + i);
      __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
      __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
      for (int j = 0; j < steps; ++j) {
        v0 = _mm256_sub_pd(v0, _mm256_xor_pd(vb[j], _mm256_and_pd(_mm256_cmp_pd(v0, zero, _CMP_LT_OQ), sign)));
        v1 = _mm256_sub_pd(v1, _mm256_xor_pd(vb[j], _mm256_and_pd(_mm256_cmp_pd(v1, zero, _CMP_LT_OQ), sign)));
      }
      const word_t m0 = static_cast<word_t>(_mm256_movemask_pd(_mm256_cmp_pd(v0, zero, _CMP_LT_OQ)));
      const word_t m1 = static_cast<word_t>(_mm256_movemask_pd(_mm256_cmp_pd(v1, zero, _CMP_LT_OQ)));
      word |= (m0 | m1 << kDoubles) << (i - i0);
      acc0 = _mm256_add_pd(acc0, _mm256_andnot_pd(sign, v0));
      acc1 = _mm256_add_pd(acc1, _mm256_andnot_pd(sign, v1));
    }
    for (; i < i1; ++i) {
      double v = x[i];
      for (int j = 0; j < steps; ++j) v -= betas[j] * (1.0 - 2.0 * static_cast<double>(v < 0.0));
      word |= static_cast<word_t>(v < 0.0) << (i - i0);
      sum += std::fabs(v);
    }
    return word;
  }

  double total(double sum) const { return add_lanes(sum, _mm256_add_pd(acc0, acc1)); }
};

// Order 2 when beta_1 is not a float32 value: with a = |x| and L = (a < up), H_2 = H_1 XOR L and
// sum |a - beta_1| = 2 (m beta_1 - S) over the m values of L and their sum S of a (beta_1 being the column's
// mean of a; the derivation, padding taps included: quantize_avx512.cpp's Taps2BelowPass). Per 8 values |x|, one
// compare and a masked add; S in float lanes over one word (at most 8 steps), then into double lanes.
struct Taps2BelowPass {
  float up_s;
  __m256 up;
  double beta1;
  __m256d acc = _mm256_setzero_pd();
  double tail = 0.0;        // S of the values past each word's last full vector
  std::uint64_t below = 0;  // m
  Taps2BelowPass(const Threshold32& t, double b) : up_s(t.up), up(_mm256_set1_ps(t.up)), beta1(b) {}

  word_t word(const float* x, std::size_t i0, std::size_t i1, double&, word_t h1) {
    if (i1 - i0 == kWordBits) return whole_word(x + i0, h1);
    __m256 part = _mm256_setzero_ps();
    std::size_t i = i0;
    word_t l = vector_steps(x, i0, i, i1, part, [&](__m256 a, __m256& term) {
      const __m256 lm = _mm256_cmp_ps(a, up, _CMP_LT_OQ);
      term = _mm256_and_ps(lm, a);
      return lm;
    });
    float t = 0.0f;
    for (; i < i1; ++i) {
      const float a = std::fabs(x[i]);
      if (a < up_s) l |= word_t{1} << (i - i0), t += a;
    }
    acc = widen_add(acc, part);
    tail += static_cast<double>(t);
    below += static_cast<std::uint64_t>(__builtin_popcountll(l));
    return h1 ^ l;
  }

  // A whole word (every word of a channel count that 64 divides, as in the image walk): word's steps unrolled, its
  // masked |x| in four float sums (vectors v and v + 4 into sum v % 4, then (s0 + s1) + (s2 + s3)) rather than one
  // chain of eight adds: a word's chain of dependent adds had been about as long as its other work (64 channels 56x56,
  // `profile_quantize_core 64 56 2 1`, fastest calls 300-306 -> 279-287 us: docs/KERNELS.md round 26). The sums of a
  // column are still a function of its values alone.
  word_t whole_word(const float* x, word_t h1) {
    const word_t l = whole_word_walk(x, acc, [&](__m256 a, __m256& term) {
      const __m256 lm = _mm256_cmp_ps(a, up, _CMP_LT_OQ);
      term = _mm256_and_ps(lm, a);
      return lm;
    });
    below += static_cast<std::uint64_t>(__builtin_popcountll(l));
    return h1 ^ l;
  }

  // The pass's sums unreduced (quantize_walk.h image_walk reduces them after a group of columns) and the total.
  struct Partial {
    __m256d acc;
    double tail;
    std::uint64_t below;
    double sum;
  };
  Partial partial(double sum) const { return {acc, tail, below, sum}; }
  static double total_of(const Partial& p, double beta1) {
    return 2.0 * (static_cast<double>(p.below) * beta1 - add_lanes(p.tail, p.acc) + p.sum);
  }
  double total(double sum) const { return total_of(partial(sum), beta1); }
};

// Order 3 from Threshold3 (quantize_walk.h): per 8 values |x|, N = (lo < |x| < hi) from two compares, H_3 = H_2 XOR N;
// |r_2| as | | |x| - beta_1 | - beta_2 | in float32 (beta_1, beta_2 rounded to float32; relative error ~1e-7 a term,
// against the double chain's), summed as whole_word sums: four float sums a word, then into double lanes. A third of
// the double chain's instructions (its 8 values: two conversions and two masked subtractions per half).
struct Taps3Pass {
  __m256 lo, hi, b1, b2;
  __m256d acc = _mm256_setzero_pd();
  Taps3Pass(const Threshold3& t, double beta1, double beta2)
      : lo(_mm256_set1_ps(t.lo)), hi(_mm256_set1_ps(t.hi)), b1(_mm256_set1_ps(static_cast<float>(beta1))),
        b2(_mm256_set1_ps(static_cast<float>(beta2))) {}

  // N of 8 values a = |x| as a lane mask, and their | |a - beta_1| - beta_2 | in term.
  __m256 band(__m256 a, __m256& term) const {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    term = _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(a, b1)), b2));
    return _mm256_and_ps(_mm256_cmp_ps(a, lo, _CMP_GT_OQ), _mm256_cmp_ps(a, hi, _CMP_LT_OQ));
  }

  word_t word(const float* x, word_t h2) {
    return h2 ^ whole_word_walk(x, acc, [&](__m256 a, __m256& term) { return band(a, term); });
  }

  // Values [i0, i1) of a word (taps3_walk: channel counts that 64 does not divide): whole words as above, else the
  // word's whole vectors into one float sum and its last 1-7 values one by one (the same tests, in float32) into a
  // scalar one.
  word_t word(const float* x, std::size_t i0, std::size_t i1, word_t h2) {
    if (i1 - i0 == kWordBits) return word(x + i0, h2);
    __m256 part = _mm256_setzero_ps();
    std::size_t i = i0;
    word_t n = vector_steps(x, i0, i, i1, part, [&](__m256 a, __m256& term) { return band(a, term); });
    const float l = _mm256_cvtss_f32(lo), h = _mm256_cvtss_f32(hi);
    const float f1 = _mm256_cvtss_f32(b1), f2 = _mm256_cvtss_f32(b2);
    float t = 0.0f;
    for (; i < i1; ++i) {
      const float a = std::fabs(x[i]);
      n |= static_cast<word_t>(l < a && a < h) << (i - i0);
      t += std::fabs(std::fabs(a - f1) - f2);
    }
    acc = widen_add(acc, part);
    tail += static_cast<double>(t);
    return h2 ^ n;
  }

  double total(double sum = 0.0) const { return add_lanes(sum + tail, acc); }

 private:
  double tail = 0.0;  // the partial words' last values
};

struct Taps2Pass {
  Threshold32 th;
  __m256 up, down, nearest;
  __m256d acc = _mm256_setzero_pd();
  explicit Taps2Pass(const Threshold32& t)
      : th(t), up(_mm256_set1_ps(t.up)), down(_mm256_set1_ps(t.down)), nearest(_mm256_set1_ps(t.nearest)) {}

  word_t word(const float* x, std::size_t i0, std::size_t i1, double& sum, word_t /*h1*/) {
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    word_t word = 0;
    __m256 part = zero;
    std::size_t i = i0;
    for (; i + kFloats <= i1; i += kFloats) {
      const __m256 v = _mm256_loadu_ps(x + i);
      const __m256 a = _mm256_andnot_ps(sign, v);
      const __m256 neg_r = _mm256_blendv_ps(_mm256_cmp_ps(a, up, _CMP_LT_OQ), _mm256_cmp_ps(a, down, _CMP_GT_OQ),
                                            _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
      word |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(neg_r))) << (i - i0);
      part = _mm256_add_ps(part, _mm256_andnot_ps(sign, _mm256_sub_ps(a, nearest)));
    }
    float tail = 0.0f;
    for (; i < i1; ++i) {
      const float v = x[i], a = std::fabs(v);
      const bool neg_r = v < 0.0f ? a > th.down : a < th.up;
      word |= static_cast<word_t>(neg_r) << (i - i0);
      tail += std::fabs(a - th.nearest);
    }
    acc = widen_add(acc, part);
    sum += static_cast<double>(tail);
    return word;
  }

  double total(double sum) const { return add_lanes(sum, acc); }
};

// 8 x 8 transpose. A whole block (8 pixels): register i holds pixels 0-3 of rows i and i + 4 (and register i + 4 their
// pixels 4-7), one 128-bit half from each, so that two rounds of unpacks inside the 128-bit lanes (32-, then 64-bit)
// leave each pixel's 8 channels in one register: no lane exchange (vperm2f128, one a cycle) is left. A short block (n
// < 8 pixels): masked loads (nothing past the n is read), then the rows interleaved and the lanes exchanged. Each
// value takes the affine (multiply then add, as the scalar copy rounds) as it is loaded.
struct Nhwc8 {
  static constexpr std::size_t kBlock = 8;
  static void transpose(const float* const* rows, std::size_t n, const float* scale, const float* shift, float* dst,
                        std::size_t ldd) {
    if (n == 8) return whole(rows, scale, shift, dst, ldd);
    __m256 r[8], t[8];
    // n <= 8 pixels: lanes below n loaded (a masked load reads nothing past them), the others zero.
    const __m256i m =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm256_maskload_ps(rows[i], m);
      if (scale) r[i] = _mm256_add_ps(_mm256_mul_ps(r[i], _mm256_set1_ps(scale[i])), _mm256_set1_ps(shift[i]));
    }
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
      for (int j = 0; j < 2; ++j) {
        r[i + j] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[i + j]), _mm256_castps_pd(t[i + j + 2])));
        r[i + j + 2] =
            _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[i + j]), _mm256_castps_pd(t[i + j + 2])));
      }
    for (int j = 0; j < 4; ++j) {
      t[j] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x20);
      t[j + 4] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x31);
    }
    // t[k] holds the 8 channels of pixel 4 (k / 4) + {0, 2, 1, 3}[k % 4].
    for (int k = 0; k < 8; ++k) {
      const std::size_t px = static_cast<std::size_t>((k & ~3) | (k & 1) << 1 | (k >> 1 & 1));
      if (px < n) _mm256_storeu_ps(dst + px * ldd, t[k]);
    }
  }

 private:
  static void whole(const float* const* rows, const float* scale, const float* shift, float* dst, std::size_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 4; ++i) {  // r[4 h + i]: pixels 4 h .. 4 h + 3 of row i (low half) and of row i + 4 (high)
      __m256 sc = _mm256_setzero_ps(), sh = sc;  // rows i and i + 4's affine, one value per half
      if (scale) {
        sc = _mm256_setr_m128(_mm_set1_ps(scale[i]), _mm_set1_ps(scale[i + 4]));
        sh = _mm256_setr_m128(_mm_set1_ps(shift[i]), _mm_set1_ps(shift[i + 4]));
      }
      for (int h = 0; h < 2; ++h) {
        const __m256 v = _mm256_loadu2_m128(rows[i + 4] + 4 * h, rows[i] + 4 * h);
        r[4 * h + i] = scale ? _mm256_add_ps(_mm256_mul_ps(v, sc), sh) : v;
      }
    }
    for (int h = 0; h < 8; h += 4) {
      // 32-bit: rows (0, 1) and (2, 3) of each half interleaved; then 64-bit: pixel p's channels 0-3 | 4-7.
      t[h] = _mm256_unpacklo_ps(r[h], r[h + 1]);
      t[h + 1] = _mm256_unpackhi_ps(r[h], r[h + 1]);
      t[h + 2] = _mm256_unpacklo_ps(r[h + 2], r[h + 3]);
      t[h + 3] = _mm256_unpackhi_ps(r[h + 2], r[h + 3]);
      const auto lo = [](__m256 a, __m256 b) {
        return _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
      };
      const auto hi = [](__m256 a, __m256 b) {
        return _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
      };
      _mm256_storeu_ps(dst + (h + 0) * ldd, lo(t[h], t[h + 2]));
      _mm256_storeu_ps(dst + (h + 1) * ldd, hi(t[h], t[h + 2]));
      _mm256_storeu_ps(dst + (h + 2) * ldd, lo(t[h + 1], t[h + 3]));
      _mm256_storeu_ps(dst + (h + 3) * ldd, hi(t[h + 1], t[h + 3]));
    }
  }
};

}  // namespace

void quantize_column_avx2(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas) {
  column_walk<ColumnPass>(r, groups, cg, order, bits, ldbits, betas);
}

void quantize_taps_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                        std::size_t ldbits, double* betas) {
  taps_walk<TapsPass>(taps, ntaps, cg, order, bits, ldbits, betas);
}

bool quantize_taps3_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                         std::size_t ldbits, double* betas) {
  return taps3_walk<Taps3Pass>(taps, ntaps, cg, bits, ldbits, betas);
}

void quantize_taps2_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                         std::size_t ldbits, double* betas) {
  const Threshold32 th(betas[0]);
  if (th.up != th.down) {
    taps2_walk(taps, ntaps, cg, bits, ldbits, betas, Taps2BelowPass(th, betas[0]));
  } else {
    taps2_walk(taps, ntaps, cg, bits, ldbits, betas, Taps2Pass{th});
  }
}

void quantize_image_avx2(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                         std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas) {
  image_walk<Taps2BelowPass, Taps2Pass, TapsPass, Taps3Pass>(im, pix, word, count, order, bits, ldbits, betas);
}

namespace {

// Lanes 0..2 of v reduced by f (min or max).
template <class F>
inline float lanes3(__m128 v, F&& f) {
  const __m128 a = f(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(1, 1, 1, 1)));
  return _mm_cvtss_f32(f(a, _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 2, 2, 2))));
}

// The values value(c0 + c) whose bits c are set in `band` (channels c0 .. c0 + 31 of a word as bits 0-31), each
// compared with the readers' thresholds in float lanes (tp01: slots 0-7, tp2: slots 8-11; tn01 / tn2 for x < 0 where
// Exact): where below one, bit c set in that slot's 32-bit lane of sel01 / sel2 and |x| added to its float sum (bs01 /
// bs2), in channel order.
template <bool Exact, class Value>
inline void resolve_half(Value value, unsigned c0, std::uint32_t band, __m256 tp01, __m128 tp2, __m256 tn01,
                         __m128 tn2, __m256i& sel01, __m128i& sel2, __m256& bs01, __m128& bs2) {
  while (band) {
    const unsigned c = static_cast<unsigned>(__builtin_ctz(band));
    band &= band - 1;
    const float v = value(c0 + c);
    const __m256 a = _mm256_set1_ps(std::fabs(v));
    const __m256i bit = _mm256_set1_epi32(static_cast<int>(1u << c));
    const bool neg = Exact && v < 0.0f;
    const __m256 m01 = _mm256_cmp_ps(a, neg ? tn01 : tp01, _CMP_LT_OQ);
    const __m128 m2 = _mm_cmp_ps(_mm256_castps256_ps128(a), neg ? tn2 : tp2, _CMP_LT_OQ);
    sel01 = _mm256_or_si256(sel01, _mm256_and_si256(_mm256_castps_si256(m01), bit));
    sel2 = _mm_or_si128(sel2, _mm_and_si128(_mm_castps_si128(m2), _mm256_castsi256_si128(bit)));
    bs01 = _mm256_add_ps(bs01, _mm256_and_ps(m01, a));
    bs2 = _mm_add_ps(bs2, _mm_and_ps(m2, _mm256_castps256_ps128(a)));
  }
}

// A pixel's readers' thresholds: tp01 / tn01 slots 0-7, tp2 / tn2 slots 8-11.
struct Readers {
  __m256 tp01, tn01;
  __m128 tp2, tn2;
};

// A pixel's word of 64 channels into its 12 slots at lw: the bits of |x| < lo (`low`, in every slot) ORed with the
// band's bits that resolve_half set, channels 0-31 (lo01 / lo2) and 32-63 (hi01 / hi2); the band's values from
// value(c), their sums added into bs01 / bs2.
template <bool Exact, class Value>
inline void word_slots(Value value, word_t low, word_t band, const Readers& t, __m256& bs01, __m128& bs2, word_t* lw) {
  __m256i lo01 = _mm256_setzero_si256(), hi01 = _mm256_setzero_si256();
  __m128i lo2 = _mm_setzero_si128(), hi2 = _mm_setzero_si128();
  resolve_half<Exact>(value, 0, static_cast<std::uint32_t>(band), t.tp01, t.tp2, t.tn01, t.tn2, lo01, lo2, bs01, bs2);
  resolve_half<Exact>(value, 32, static_cast<std::uint32_t>(band >> 32), t.tp01, t.tp2, t.tn01, t.tn2, hi01, hi2, bs01,
                      bs2);
  const __m256i vl = _mm256_set1_epi64x(static_cast<long long>(low));
  const __m256i w01a = _mm256_unpacklo_epi32(lo01, hi01), w01b = _mm256_unpackhi_epi32(lo01, hi01);
  const __m128i w2a = _mm_unpacklo_epi32(lo2, hi2), w2b = _mm_unpackhi_epi32(lo2, hi2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lw), _mm256_or_si256(vl, _mm256_permute2x128_si256(w01a, w01b, 0x20)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lw + 4),
                      _mm256_or_si256(vl, _mm256_permute2x128_si256(w01a, w01b, 0x31)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lw + 8), _mm256_or_si256(vl, _mm256_set_m128i(w2b, w2a)));
}

// A pixel's 12 sums at sb: below (its values under lo, in double) plus each slot's band sum.
inline void store_sums(double below, __m256 bs01, __m128 bs2, double* sb) {
  const __m256d slo = _mm256_set1_pd(below);
  _mm256_storeu_pd(sb, _mm256_add_pd(slo, _mm256_cvtps_pd(_mm256_castps256_ps128(bs01))));
  _mm256_storeu_pd(sb + 4, _mm256_add_pd(slo, _mm256_cvtps_pd(_mm256_extractf128_ps(bs01, 1))));
  _mm256_storeu_pd(sb + 8, _mm256_add_pd(slo, _mm256_cvtps_pd(bs2)));
}

// One pixel of band2_pixels_avx2: its gw words of channels at x, its readers' thresholds t and their least (lo) and
// greatest (hi).
template <bool Exact>
void band2_pixel(const float* x, std::size_t gw, const Readers& t, float lo, float hi, word_t* l, double* sb) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  __m256d acc = _mm256_setzero_pd();
  __m256 bs01 = _mm256_setzero_ps();
  __m128 bs2 = _mm_setzero_ps();
  for (std::size_t w = 0; w < gw; ++w) {
    const float* xw = x + w * kWordBits;
    // whole_word_walk's steps with a second compare: bits of |x| < lo and of |x| < hi, the |x| < lo in four float sums
    const __m256 sign = _mm256_set1_ps(-0.0f);
    word_t low = 0, under_hi = 0;
    __m256 s4[4];
#pragma GCC unroll 8
    for (std::size_t v = 0; v < kWordBits / kFloats; ++v) {
      const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(xw + v * kFloats));
      const __m256 m = _mm256_cmp_ps(a, vlo, _CMP_LT_OQ);
      low |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(m))) << (v * kFloats);
      under_hi |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, vhi, _CMP_LT_OQ))))
                  << (v * kFloats);
      const __m256 term = _mm256_and_ps(m, a);
      s4[v % 4] = v < 4 ? term : _mm256_add_ps(s4[v % 4], term);
    }
    acc = widen_add(acc, _mm256_add_ps(_mm256_add_ps(s4[0], s4[1]), _mm256_add_ps(s4[2], s4[3])));
    word_slots<Exact>([xw](unsigned c) { return xw[c]; }, low, under_hi & ~low, t, bs01, bs2, l + w * kBand2Slots);
  }
  store_sums(add_lanes(0.0, acc), bs01, bs2, sb);
}

// Padded pixel px of r: its readers' thresholds, their least and greatest, and band2_pixel on its C values at x.
void pixel_slots(const Band2Row& r, std::size_t px, const float* x) {
  __m128 p[3], n[3];
  for (int q = 0; q < 3; ++q) p[q] = _mm_loadu_ps(r.pos[q] + px), n[q] = _mm_loadu_ps(r.neg[q] + px);
  const auto min = [](__m128 a, __m128 b) { return _mm_min_ps(a, b); };
  const auto max = [](__m128 a, __m128 b) { return _mm_max_ps(a, b); };
  const float lo = lanes3(min(min(p[0], p[1]), p[2]), min), hi = lanes3(max(max(n[0], n[1]), n[2]), max);
  const Readers t{_mm256_set_m128(p[1], p[0]), _mm256_set_m128(n[1], n[0]), p[2], n[2]};
  const std::size_t gw = r.C / kWordBits;
  word_t* l = r.l + px * gw * kBand2Slots;
  double* sb = r.sb + px * kBand2Slots;
  if (r.exact)
    band2_pixel<true>(x, gw, t, lo, hi, l, sb);
  else
    band2_pixel<false>(x, gw, t, lo, hi, l, sb);
}

// Band2Row::src's 8 pixels x0 + p0 .. (count of them) in the lanes, channel by channel, into what band2_pixel gives
// for each from its NHWC values, bit for bit. Per word, channel c's compares with the pixels' lo and hi are kept as
// bytes (bit j: pixel j), and a pixel's L and band words are then bit j of the 64 bytes (shifted to each byte's top
// bit and collected by vpmovmskb, 32 channels at a time). The values below lo are added as band2_pixel adds them: its
// float lane k is ((k + (32 + k)) + ((8 + k) + (40 + k))) + (((16 + k) + (48 + k)) + ((24 + k) + (56 + k))) in
// channels, here a vector of the 8 pixels per k, widened (lanes k and k + 4 into double lane k) and accumulated over
// words; the band's values follow one by one in channel order, per pixel (word_slots).
template <bool Affine, bool Exact>
void band2_block(const Band2Row& r, std::size_t p0, std::size_t count) {
  const std::size_t gw = r.C / kWordBits, px0 = r.x0 + p0, cs = r.cstride;
  const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 vlo = _mm256_set1_ps(HUGE_VALF), vhi = _mm256_set1_ps(-HUGE_VALF);
  for (int q = 0; q < 3; ++q)
    for (std::size_t j = 0; j < 3; ++j) {  // pixel px0 + i: grid columns px0 + i .. px0 + i + 2
      vlo = _mm256_min_ps(vlo, _mm256_maskload_ps(r.pos[q] + px0 + j, in));
      vhi = _mm256_max_ps(vhi, _mm256_maskload_ps(r.neg[q] + px0 + j, in));
    }
  alignas(32) std::uint8_t below[kWordBits], under_hi[kWordBits];  // per channel, bit j: pixel j
  alignas(32) float bs[kFloats][2 * kFloats];                      // per pixel, the band's sums per slot
  __m256d acc[kDoubles][2];  // per double lane d of band2_pixel's acc (float lanes d, d + 4): pixels 0-3, 4-7
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_pd();
  std::uint32_t banded = 0;  // the pixels whose bs holds sums
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (std::size_t w = 0; w < gw; ++w) {
    const float* src = r.src + w * kWordBits * cs + p0;
    const float* scale = Affine ? r.scale + w * kWordBits : nullptr;
    const float* shift = Affine ? r.shift + w * kWordBits : nullptr;
    // channel c of the 8 pixels: its compares kept, |x| where below lo (else +0.0) returned
    const auto term = [&](std::size_t c) {
      __m256 v = _mm256_maskload_ps(src + c * cs, in);
      if (Affine) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(scale[c])), _mm256_set1_ps(shift[c]));
      const __m256 a = _mm256_andnot_ps(sign, v), m = _mm256_cmp_ps(a, vlo, _CMP_LT_OQ);
      below[c] = static_cast<std::uint8_t>(_mm256_movemask_ps(m));
      under_hi[c] = static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, vhi, _CMP_LT_OQ)));
      return _mm256_and_ps(m, a);
    };
    const auto pair = [&](std::size_t c) { return _mm256_add_ps(term(c), term(c + 32)); };
    const auto lane = [&](std::size_t k) {
      return _mm256_add_ps(_mm256_add_ps(pair(k), pair(8 + k)), _mm256_add_ps(pair(16 + k), pair(24 + k)));
    };
    for (std::size_t k = 0; k < kDoubles; ++k) {
      const __m256 s = lane(k), t = lane(k + kDoubles);
      for (int h = 0; h < 2; ++h) {
        const __m128 sh = h ? _mm256_extractf128_ps(s, 1) : _mm256_castps256_ps128(s);
        const __m128 th = h ? _mm256_extractf128_ps(t, 1) : _mm256_castps256_ps128(t);
        acc[k][h] = _mm256_add_pd(acc[k][h], _mm256_add_pd(_mm256_cvtps_pd(sh), _mm256_cvtps_pd(th)));
      }
    }
    const __m256i lo0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(below));
    const __m256i lo1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(below + 32));
    const __m256i hi0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(under_hi));
    const __m256i hi1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(under_hi + 32));
    for (std::size_t j = 0; j < count; ++j) {
      const __m128i up = _mm_cvtsi32_si128(static_cast<int>(7 - j));  // bit j to each byte's top bit
      const auto bits = [up](__m256i a, __m256i b) {
        return static_cast<word_t>(static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_sll_epi16(a, up)))) |
               static_cast<word_t>(static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_sll_epi16(b, up)))) << 32;
      };
      const word_t low = bits(lo0, lo1), band = bits(hi0, hi1) & ~low;
      const std::size_t px = px0 + j;
      word_t* lw = r.l + (px * gw + w) * kBand2Slots;
      if (!band) {
        const __m256i vl = _mm256_set1_epi64x(static_cast<long long>(low));
        for (std::size_t s = 0; s < kBand2Slots; s += kDoubles)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(lw + s), vl);
        continue;
      }
      Readers t{};
      for (int q = 0; q < 2; ++q) t.tp01 = _mm256_insertf128_ps(t.tp01, _mm_loadu_ps(r.pos[q] + px), q);
      t.tp2 = _mm_loadu_ps(r.pos[2] + px);
      if (Exact) {
        for (int q = 0; q < 2; ++q) t.tn01 = _mm256_insertf128_ps(t.tn01, _mm_loadu_ps(r.neg[q] + px), q);
        t.tn2 = _mm_loadu_ps(r.neg[2] + px);
      }
      __m256 bs01 = _mm256_setzero_ps();
      __m128 bs2 = _mm_setzero_ps();
      if (banded >> j & 1u) bs01 = _mm256_load_ps(bs[j]), bs2 = _mm_load_ps(bs[j] + kFloats);
      const auto value = [&](unsigned c) {
        const float v = src[c * cs + j];
        return Affine ? v * scale[c] + shift[c] : v;
      };
      word_slots<Exact>(value, low, band, t, bs01, bs2, lw);
      _mm256_store_ps(bs[j], bs01);
      _mm_store_ps(bs[j] + kFloats, bs2);
      banded |= 1u << j;
    }
  }
  alignas(32) double a[kDoubles][kFloats];
  for (std::size_t k = 0; k < kDoubles; ++k) _mm256_store_pd(a[k], acc[k][0]), _mm256_store_pd(a[k] + 4, acc[k][1]);
  for (std::size_t j = 0; j < count; ++j) {
    const bool b = banded >> j & 1u;
    store_sums(0.0 + (a[0][j] + a[1][j]) + (a[2][j] + a[3][j]), b ? _mm256_load_ps(bs[j]) : _mm256_setzero_ps(),
               b ? _mm_load_ps(bs[j] + kFloats) : _mm_setzero_ps(), r.sb + (px0 + j) * kBand2Slots);
  }
}

}  // namespace

void band2_pixels_avx2(const Band2Row& r) {
  for (std::size_t px = 0; px < r.wp; ++px) pixel_slots(r, px, r.x + px * r.C);
}

void band2_pixels_nchw_avx2(const Band2Row& r) {
  // the zero pixels of the border one by one, as band2_pixels_avx2 takes them
  for (std::size_t px = 0; px < r.x0; ++px) pixel_slots(r, px, r.x);
  for (std::size_t px = r.x0 + r.n; px < r.wp; ++px) pixel_slots(r, px, r.x);
  for (std::size_t p0 = 0; p0 < r.n; p0 += kFloats) {
    const std::size_t count = std::min(kFloats, r.n - p0);
    if (r.scale)
      r.exact ? band2_block<true, true>(r, p0, count) : band2_block<true, false>(r, p0, count);
    else
      r.exact ? band2_block<false, true>(r, p0, count) : band2_block<false, false>(r, p0, count);
  }
}

bool band2_thresholds_avx2(const double* sums, const std::int64_t* off, std::size_t ow, double n, std::size_t ord,
                           double* betas, float* pos, float* neg) {
  return band2_threshold_row(sums, off, ow, n, ord, betas, pos, neg);
}

void band2_columns_avx2(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                        const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order, word_t* bits,
                        std::size_t ldbits, std::size_t ldword, double* betas) {
  band2_walk<TapsPass, Taps3Pass>(im, l, sb, lbase, pix, word, count, order, bits, ldbits, ldword, betas);
}

// 8 pixels at a time with their 8 words and 8 sums in registers across all channels (the AVX-512 version's
// scheme): per channel one load, a compare whose 32-bit lanes widen to 64-bit masks selecting bit c of the
// words, an exponent test for NaN/Inf, and |x| widened to double and added per lane in channel order (the
// generic sums bit for bit). A row's last 1-7 pixels use masked loads and stores (plain stores
// elsewhere: AMD CPUs microcode masked stores).
//
// A stretch of W >= kPlanePixels (image planes or bands of rows, conv.cpp pack_input_band, or a row) goes channel by
// channel instead, kPlaneChunk pixels at a time with their words and sums in a local buffer: each channel's part is
// then one sequential stream. Across all channels at once, as below, a 64 x 32 x 14 x 14 input is 32 short streams at a
// time, which the hardware prefetchers do not follow: on an AMD EPYC Zen 3, layers of mnist-cnn's shapes at batch 64
// with the columns kept (profile_conv_core 32 14 K 0.4 64 1, and 64 7 K 0.4 64 1) went 2.67 -> 1.61 ms (order 1) and
// 5.41 -> 3.81 ms (order 2) on the 14x14 maps, 3.77 -> 2.35 ms (order 2) on the 7x7 ones (first quartiles of 8-12
// alternated runs; docs/KERNELS.md round 12). The same operations per pixel and channel, in the same order: the same
// words and sums. Since the chunks take their bits from vmovmskps (round 13), a batch-1 row of 8 or more pixels goes
// that way too (1x1 256ch 28x28: `profile_conv_core 256 28 1 0.3 1 0 1` 0.366 -> 0.341 ms); rows of 1-7 pixels stay
// faster below.
constexpr std::size_t kPlanePixels = 8, kPlaneChunk = 256;

namespace {

// The per-channel step of both loops: one channel's values v of 8 pixels (after the affine) into the pixels' words
// (bit: bit c in every 64-bit lane; lo pixels 0-3, hi 4-7) and sums (|v| widened to double and added, slo / shi).
// Returns the lanes whose value is NaN or Inf (an all-ones exponent).
[[gnu::always_inline]] inline __m256i pack_channel(__m256 v, __m256i bit, __m256i& lo, __m256i& hi, __m256d& slo,
                                                   __m256d& shi) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(neg)), bit));
  hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(neg, 1)), bit));
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  slo = _mm256_add_pd(slo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
  shi = _mm256_add_pd(shi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), exp_mask), exp_mask);
}

// Channels [c, c + N) of a chunk's pn pixels from p0 (pack_plane_chunks): per block of 8 pixels, each channel's sign
// bits into mbuf's byte and its |v| widened to double and added to the pixels' sums in sbuf, the N channels in order
// in registers (each pixel's sum loaded and stored once per N channels: per channel, those loads and stores had been
// a third of the step's operations; the same sums). tail: the lanes of a last partial block.
template <std::size_t N>
[[gnu::always_inline]] inline void pack_gang(const float* src, std::size_t cstride, std::size_t c, std::size_t p0,
                                             std::size_t pn, __m256i tail, const float* scale, const float* shift,
                                             std::uint8_t (*mbuf)[kWordBits], double* sbuf) {
  const __m256 zero = _mm256_setzero_ps(), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const std::size_t full = pn / 8 * 8;
  const float* x[N];
  __m256 a[N], b[N];
  for (std::size_t g = 0; g < N; ++g) {
    x[g] = src + (c + g) * cstride + p0;
    a[g] = scale ? _mm256_set1_ps(scale[c + g]) : zero, b[g] = scale ? _mm256_set1_ps(shift[c + g]) : zero;
  }
  for (std::size_t i = 0; i < pn; i += 8) {
    __m256d* sd = reinterpret_cast<__m256d*>(sbuf + i);
    __m256d s0 = sd[0], s1 = sd[1];
    for (std::size_t g = 0; g < N; ++g) {
      __m256 v = i < full ? _mm256_loadu_ps(x[g] + i) : _mm256_maskload_ps(x[g] + i, tail);  // zeros past the end
      if (scale) v = _mm256_add_ps(_mm256_mul_ps(v, a[g]), b[g]);
      mbuf[i / 8][c + g] = static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
      const __m256 av = _mm256_and_ps(v, absmask);
      s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(av)));
      s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(av, 1)));
    }
    sd[0] = s0, sd[1] = s1;
  }
}

// Per chunk pixel block of 8, bit c of its pixels' words as one byte per channel (bit l: pixel l of the block),
// from one compare and vmovmskps; at the chunk's end, bit l of 32 such bytes (channels 32 h .. 32 h + 31) moved to
// each byte's top bit by a 16-bit shift (the neighbouring byte's bits land below it) and collected by
// vpmovmskb: the 32-bit half h of pixel l's word. NaN or Inf shows in the pixel's sum of |v| (a finite float's
// |v| is below 2^128, so 64 of them add to a finite double): one test per pixel instead of one per value.
std::uint32_t pack_plane_chunks(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                word_t* words, std::size_t wstride, double* sums, const float* scale,
                                const float* shift) {
  constexpr std::size_t kBlocks = kPlaneChunk / 8;
  const __m256i lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256d inf = _mm256_set1_pd(HUGE_VAL);
  alignas(32) std::uint8_t mbuf[kBlocks][kWordBits];
  alignas(32) double sbuf[kPlaneChunk];
  __m256d bad = _mm256_setzero_pd();
  for (std::size_t p0 = 0; p0 < W; p0 += kPlaneChunk) {
    const std::size_t pn = std::min(kPlaneChunk, W - p0), full = pn / 8 * 8, nb = (pn + 7) / 8;
    if (nchan < kWordBits)
      for (std::size_t b = 0; b < nb; ++b) std::fill(mbuf[b] + nchan, mbuf[b] + kWordBits, std::uint8_t{0});
    std::copy_n(sums + p0, pn, sbuf);
    std::fill(sbuf + pn, sbuf + kPlaneChunk, 0.0);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(pn - full)), lane_ids);
    // Four channels at a time (pack_gang), the last 1-3 as one smaller gang.
    std::size_t c = 0;
    for (; c + 4 <= nchan; c += 4) pack_gang<4>(src, cstride, c, p0, pn, tail, scale, shift, mbuf, sbuf);
    switch (nchan - c) {
      case 3: pack_gang<3>(src, cstride, c, p0, pn, tail, scale, shift, mbuf, sbuf); break;
      case 2: pack_gang<2>(src, cstride, c, p0, pn, tail, scale, shift, mbuf, sbuf); break;
      case 1: pack_gang<1>(src, cstride, c, p0, pn, tail, scale, shift, mbuf, sbuf); break;
      default: break;
    }
    for (std::size_t i = 0; i < pn; i += 4) {  // |sum| < inf is false for Inf and NaN
      const __m256d sv = _mm256_load_pd(sbuf + i);
      bad = _mm256_or_pd(bad, _mm256_cmp_pd(_mm256_andnot_pd(_mm256_set1_pd(-0.0), sv), inf, _CMP_NLT_UQ));
    }
    std::copy_n(sbuf, pn, sums + p0);
    for (std::size_t b = 0; b < nb; ++b) {
      const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(mbuf[b]));
      const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(mbuf[b] + 32));
      word_t* out = words + (p0 + b * 8) * wstride;
      const std::size_t nl = std::min<std::size_t>(8, pn - b * 8);
      for (std::size_t l = 0; l < nl; ++l) {
        const int sh = 7 - static_cast<int>(l);
        const auto wlo = static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(lo, sh)));
        const auto whi = static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(hi, sh)));
        out[l * wstride] = static_cast<word_t>(wlo) | static_cast<word_t>(whi) << 32;
      }
    }
  }
  return _mm256_movemask_pd(bad) ? 1u : 0u;
}

}  // namespace

std::uint32_t pack_pixels_avx2(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                               word_t* words, std::size_t wstride, double* sums, const float* scale,
                               const float* shift) {
  if (W >= kPlanePixels) return pack_plane_chunks(src, cstride, nchan, W, words, wstride, sums, scale, shift);
  const __m256i lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i bad = _mm256_setzero_si256();
  for (std::size_t w0 = 0; w0 < W; w0 += 8) {
    const std::size_t rem = W - w0 < 8 ? W - w0 : 8;
    const __m256i m32 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), lane_ids);
    const __m256i mlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m32));
    const __m256i mhi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m32, 1));
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    __m256d slo = _mm256_maskload_pd(sums + w0, mlo), shi = _mm256_maskload_pd(sums + w0 + 4, mhi);
    for (std::size_t c = 0; c < nchan; ++c) {
      __m256 v = _mm256_maskload_ps(src + c * cstride + w0, m32);
      if (scale) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(scale[c])), _mm256_set1_ps(shift[c]));
      const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(word_t{1} << c));
      bad = _mm256_or_si256(bad, _mm256_and_si256(pack_channel(v, bit, lo, hi, slo, shi), m32));
    }
    if (rem == 8) {  // plain stores where they can be: AMD CPUs microcode masked stores
      _mm256_storeu_pd(sums + w0, slo);
      _mm256_storeu_pd(sums + w0 + 4, shi);
    } else {
      _mm256_maskstore_pd(sums + w0, mlo, slo);
      _mm256_maskstore_pd(sums + w0 + 4, mhi, shi);
    }
    alignas(32) word_t out[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 4), hi);
    for (std::size_t i = 0; i < rem; ++i) words[(w0 + i) * wstride] = out[i];
  }
  return _mm256_testz_si256(bad, bad) ? 0u : 1u;
}

void to_nhwc_avx2(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                  const float* shift, float* dst, std::size_t ldd) {
  to_nhwc_walk<Nhwc8>(src, cstride, nchan, W, scale, shift, dst, ldd);
}

}  // namespace horq
