// AVX-512 input quantization (quantize.h; the loops around the passes below are quantize_walk.h's, the
// portable reference is quantize_generic.cpp). Compiled with -mavx512f/bw/vl/dq; selected only when the CPU
// and OS report AVX512F + BW + VL + DQ + VPOPCNTDQ.
//
// Arithmetic, 8 doubles (or 16 floats) per step, with mask registers throughout:
//   * H bits: the compare r < 0 writes a mask register whose bit l is value i0 + l's bit: it is ORed into
//     the word as it is, no movemask needed.
//   * r_k = r_{k-1} - beta_k H_k: r - beta everywhere, then r + beta in the lanes of the negative mask (a
//     masked add from r): exactly r -+ beta, the rounding of the scalar rule (quantize_generic.cpp).
//   * Tails: the last 1-7 (1-15) values of a word use zero-masked loads, masked stores and a masked
//     accumulate, so lanes past the row neither set bits nor count in beta, and nothing past it is read.
//   * Sums of |r| stay in 8 double lanes until one horizontal add (_mm512_reduce_add_pd) per pass: a fixed
//     order, but not the generic or AVX2 order, so paths agree on betas to double rounding.
//   * Order 2 (quantize_taps2): bit = x < -floor32(beta_1), or x >= 0 and x < ceil32(beta_1) (the float
//     thresholds derived in quantize_generic.cpp; -0.0 counts as >= 0); | |x| - float(beta_1) | summed in
//     16 float lanes per 64-value word, then in double.
//   * Pixel packing: up to 64 pixels' words and sums in registers across all channels; per channel a
//     compare to a mask sets bit c of the negative pixels' words (masked OR) and |x| is widened and added in
//     channel order (the generic sums bit for bit); a NaN/Inf value shows as a sum that is not finite.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/quantize.h"
#include "core/quantize_walk.h"

namespace horq {
namespace {

constexpr std::size_t kDoubles = 8;  // doubles per zmm
constexpr std::size_t kFloats = 16;  // floats per zmm

// The first min(rem, 8) lanes.
inline __mmask8 first_lanes8(std::size_t rem) {
  return rem >= kDoubles ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << rem) - 1u);
}
// The first min(rem, 16) lanes.
inline __mmask16 first_lanes16(std::size_t rem) {
  return rem >= kFloats ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
}

struct ColumnPass {
  __m512d vb, vnext = _mm512_setzero_pd();
  explicit ColumnPass(double b) : vb(_mm512_set1_pd(b)) {}

  static double abs_sum(const double* r, std::size_t n) {
    __m512d acc = _mm512_setzero_pd();
    for (std::size_t i = 0; i < n; i += kDoubles)
      acc = _mm512_add_pd(acc, _mm512_abs_pd(_mm512_maskz_loadu_pd(first_lanes8(n - i), r + i)));
    return _mm512_reduce_add_pd(acc);
  }

  template <bool Update>
  word_t word(double* rg, std::size_t i0, std::size_t i1) {
    const __m512d zero = _mm512_setzero_pd();
    __m512d vn = vnext;  // a local: rg's stores could otherwise alias the member
    word_t word = 0;
    for (std::size_t j = i0; j < i1; j += kDoubles) {
      const __mmask8 m = first_lanes8(i1 - j);
      __m512d v = _mm512_maskz_loadu_pd(m, rg + j);
      const __mmask8 neg = _mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ);
      word |= static_cast<word_t>(neg) << (j - i0);
      if (Update) {
        v = _mm512_mask_add_pd(_mm512_sub_pd(v, vb), neg, v, vb);
        _mm512_mask_storeu_pd(rg + j, m, v);
        vn = _mm512_mask_add_pd(vn, m, vn, _mm512_abs_pd(v));
      }
    }
    vnext = vn;
    return word;
  }

  double total() const { return _mm512_reduce_add_pd(vnext); }
};

// Pass k of the taps walk: 8 values per step from a zero-masked float load widened to double, the chain of
// `steps` masked add/subs in registers.
struct TapsPass {
  __m512d vb[kMaxOrder];
  int steps;
  __m512d acc = _mm512_setzero_pd();

  TapsPass(const double* b, int nsteps) : steps(nsteps) {
    for (int j = 0; j < steps; ++j) vb[j] = _mm512_set1_pd(b[j]);
  }

  word_t word(const float* x, std::size_t i0, std::size_t i1, double&) {
    const __m512d zero = _mm512_setzero_pd();
    word_t word = 0;
    for (std::size_t i = i0; i < i1; i += kDoubles) {
      const __mmask8 m = first_lanes8(i1 - i);
      __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i));
      for (int j = 0; j < steps; ++j) {
        const __mmask8 neg = _mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ);
        v = _mm512_mask_add_pd(_mm512_sub_pd(v, vb[j]), neg, v, vb[j]);
      }
      word |= static_cast<word_t>(_mm512_mask_cmp_pd_mask(m, v, zero, _CMP_LT_OQ)) << (i - i0);
      acc = _mm512_mask_add_pd(acc, m, acc, _mm512_abs_pd(v));
    }
    return word;
  }

  double total(double sum) const { return sum + _mm512_reduce_add_pd(acc); }
};

// Order 2 when beta_1 is not a float32 value (up = down + 1 ulp; the other case takes Taps2Pass below):
// with a = |x| and L = (a < up) (= a < beta_1 = a <= down),
//     H_2 = (x < 0) XOR L          (x >= 0: a < up;  x < 0: a > down = NOT(a <= down)),
// and, as beta_1 is the mean of the column's |x| (padding zeros included),
//     sum |a - beta_1| = 2 sum_{a < beta_1} (beta_1 - a) = 2 (m beta_1 - S)
// over the m values of L and their sum S of a. So per 16 values: |x|, one compare and one masked add of a
// (against three compares, |x| twice and a subtraction for |a - beta_1|), and per word one xor with H_1's word,
// which the walk hands over (the bits of x < 0: packed from the same float values). The padding taps are all
// in L (a = 0 < beta_1) with S = 0: the walk's `sum` holds beta_1 * cg per padding tap, their (m beta_1 - S), so
// total(sum) = 2 (m beta_1 - S + sum). The terms of S are float32 sums of up to four values per lane (as in
// Taps2Pass's words; here up to four vectors, across words when they are short), or of eight for the image walk's
// pairs of whole words (words2), added into double; m beta_1 - S then loses what S's relative error (~1e-7)
// costs against the difference (typically a third of m beta_1).
struct Taps2BelowPass {
  __m512 up;
  double beta1;
  __m512d acc = _mm512_setzero_pd();
  __m512 part = _mm512_setzero_ps();  // float sums of up to four values per lane, then into acc
  int pending = 0;                    // vectors added to part since it was last flushed into acc
  std::uint64_t below = 0;            // m
  Taps2BelowPass(const Threshold32& t, double b) : up(_mm512_set1_ps(t.up)), beta1(b) {}

  // sums + (part's low 8 lanes + its high 8), widened to double.
  static __m512d widen_add(__m512d sums, __m512 part) {
    return _mm512_add_pd(sums, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(part)),
                                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(part, 1))));
  }

  void flush() {
    acc = widen_add(acc, part);
    part = _mm512_setzero_ps();
    pending = 0;
  }

  word_t word(const float* x, std::size_t i0, std::size_t i1, double&, word_t h1) {
    word_t l = 0;
    const std::size_t len = i1 - i0;
    if (len == kWordBits) {  // a whole word: four vectors, no lane masks, the sums in a chain of their own
      if (pending) flush();
      l = whole(x + i0, part);
      pending = 4;
    } else {
      const int nv = static_cast<int>(ceil_div(len, kFloats));
      if (pending + nv > 4) flush();
      for (std::size_t i = i0; i < i1; i += kFloats) {
        const __mmask16 m = first_lanes16(i1 - i);
        const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + i));
        const __mmask16 lm = _mm512_mask_cmp_ps_mask(m, a, up, _CMP_LT_OQ);
        l |= static_cast<word_t>(lm) << (i - i0);
        part = _mm512_mask_add_ps(part, lm, part, a);
      }
      pending += nv;
    }
    below += static_cast<std::uint64_t>(__builtin_popcountll(l));
    return h1 ^ l;
  }

  // Two whole words (the image walk's columns, quantize_walk.h image_words), their sums in a chain each, added
  // in float and widened once: eight values per lane per float sum. Needs nothing pending (the image walk calls
  // word() only for a column's last odd word).
  void words2(const float* x0, const float* x1, word_t h0, word_t h1, word_t* out) {
    __m512 p0, p1;
    const word_t l0 = whole(x0, p0), l1 = whole(x1, p1);
    part = _mm512_add_ps(p0, p1);
    flush();
    below += static_cast<std::uint64_t>(__builtin_popcountll(l0) + __builtin_popcountll(l1));
    out[0] = h0 ^ l0;
    out[1] = h1 ^ l1;
  }

  // L of 64 values at p as a word, s = their a in L added per lane (below_word).
  word_t whole(const float* p, __m512& s) const {
    __m512 a[4];
    for (int q = 0; q < 4; ++q) a[q] = _mm512_abs_ps(_mm512_loadu_ps(p + 16 * q));
    return below_word(a, up, s);
  }

  // L of the 64 values a (|x|, 16 a vector) against `up` as a word (the four compares' masks joined by kunpck), and
  // s = the a in L added per lane.
  static word_t below_word(const __m512 (&a)[4], __m512 up, __m512& s) {
    __mmask16 lm[4];
    for (int q = 0; q < 4; ++q) lm[q] = _mm512_cmp_ps_mask(a[q], up, _CMP_LT_OQ);
    s = _mm512_maskz_mov_ps(lm[0], a[0]);
    for (int q = 1; q < 4; ++q) s = _mm512_mask_add_ps(s, lm[q], s, a[q]);
    return _cvtmask64_u64(_mm512_kunpackd(static_cast<__mmask64>(_mm512_kunpackw(lm[3], lm[2])),
                                          static_cast<__mmask64>(_mm512_kunpackw(lm[1], lm[0]))));
  }

  // The pass's sums unreduced (quantize_walk.h image_walk reduces them after a group of columns) and the total.
  struct Partial {
    __m512d acc;
    std::uint64_t below;
    double sum;
  };
  Partial partial(double sum) {
    if (pending) flush();
    return {acc, below, sum};
  }
  static double total_of(const Partial& p, double beta1) {
    return 2.0 * (static_cast<double>(p.below) * beta1 - _mm512_reduce_add_pd(p.acc) + p.sum);
  }
  double total(double sum) { return total_of(partial(sum), beta1); }

  // Three columns side by side (quantize_walk.h image_walk, where takes_triple(gw) and the columns' top-left pixels
  // are consecutive in a 3 x 3 window of gw whole words per pixel): each window row's five pixels are loaded and made
  // |x| once for the columns whose taps they are (of a row's nine loads per word, four saved), and each column gets
  // what its own pass computes, in its word order (word w of tap t is its word t gw + w): the words two at a time
  // added in float32 and widened once (words2), an odd last one alone (word). The same bits and sums as three
  // passes (the emulation harness's "conv image" check compares them bit for bit). With 8 words per pixel the
  // unrolled walk was no faster than three passes: those keep them.
  static bool takes_triple(std::size_t gw) { return gw == 1 || gw == 2 || gw == 4; }
  static void triple(const Threshold32* th, const float* x, std::int64_t xrow, const word_t* h1, std::int64_t wrow,
                     std::int64_t wplane, std::size_t gw, word_t* const* rows, Partial* out) {
    switch (gw) {
      case 1: triple_words<1>(th, x, xrow, h1, wrow, wplane, rows, out); break;
      case 2: triple_words<2>(th, x, xrow, h1, wrow, wplane, rows, out); break;
      default: triple_words<4>(th, x, xrow, h1, wrow, wplane, rows, out); break;
    }
  }

  // triple() with GW words per pixel (unrolled: with gw known only at run time it was slower than three passes).
  template <std::size_t GW>
  [[gnu::noinline]] static void triple_words(const Threshold32* th, const float* x, std::int64_t xrow,
                                             const word_t* h1, std::int64_t wrow, std::int64_t wplane,
                                             word_t* const* rows, Partial* out) {
    constexpr std::size_t gw = GW, nw = 9 * gw, C = gw * kWordBits;
    __m512 up[3], prev[3];
    __m512d acc[3];
    std::uint64_t count[3] = {0, 0, 0};  // each column's m
    for (int q = 0; q < 3; ++q) {
      up[q] = _mm512_set1_ps(th[q].up);
      acc[q] = _mm512_setzero_pd();
      prev[q] = _mm512_setzero_ps();
    }
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
#pragma GCC unroll 5
      for (int p = 0; p < 5; ++p) {
        const float* xp = x + r * xrow + static_cast<std::int64_t>(p * C);
        const word_t* hp = h1 + r * wrow + p;
#pragma GCC unroll 4
        for (std::size_t w = 0; w < gw; ++w) {
          __m512 a[4];
          for (int v = 0; v < 4; ++v) a[v] = _mm512_abs_ps(_mm512_loadu_ps(xp + w * kWordBits + 16 * v));
          const word_t hw = hp[static_cast<std::int64_t>(w) * wplane];
#pragma GCC unroll 3
          for (int q = p < 2 ? 0 : p - 2; q <= (p < 2 ? p : 2); ++q) {
            const std::size_t j = static_cast<std::size_t>(r * 3 + p - q) * gw + w;  // this word's place in column q
            __m512 sum;
            const word_t l = below_word(a, up[q], sum);
            count[q] += static_cast<std::uint64_t>(__builtin_popcountll(l));
            rows[q][j] = hw ^ l;
            if (j % 2 == 0 && j + 1 < nw) {  // the first of a pair
              prev[q] = sum;
              continue;
            }
            acc[q] = widen_add(acc[q], j % 2 == 0 ? sum : _mm512_add_ps(prev[q], sum));
          }
        }
      }
    }
    for (int q = 0; q < 3; ++q) out[q] = {acc[q], count[q], 0.0};
  }
};

// Order 3 from Threshold3 (quantize_walk.h), as quantize_avx2.cpp's Taps3Pass: per 16 values |x|, N = (lo < |x| < hi)
// from two compares (the masks joined by kunpck), H_3 = H_2 XOR N; |r_2| as | | |x| - beta_1 | - beta_2 | in float32,
// a word's four vectors added in float, then widened into double lanes.
struct Taps3Pass {
  __m512 lo, hi, b1, b2;
  __m512d acc = _mm512_setzero_pd();
  Taps3Pass(const Threshold3& t, double beta1, double beta2)
      : lo(_mm512_set1_ps(t.lo)), hi(_mm512_set1_ps(t.hi)), b1(_mm512_set1_ps(static_cast<float>(beta1))),
        b2(_mm512_set1_ps(static_cast<float>(beta2))) {}

  word_t word(const float* x, word_t h2) {
    __mmask16 in[4];
    __m512 e[4];
    for (int q = 0; q < 4; ++q) {
      const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * q));
      in[q] = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(a, lo, _CMP_GT_OQ), a, hi, _CMP_LT_OQ);
      e[q] = _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(_mm512_sub_ps(a, b1)), b2));
    }
    const __m512 part = _mm512_add_ps(_mm512_add_ps(e[0], e[1]), _mm512_add_ps(e[2], e[3]));
    acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(part)),
                                           _mm512_cvtps_pd(_mm512_extractf32x8_ps(part, 1))));
    return h2 ^ _cvtmask64_u64(_mm512_kunpackd(static_cast<__mmask64>(_mm512_kunpackw(in[3], in[2])),
                                               static_cast<__mmask64>(_mm512_kunpackw(in[1], in[0]))));
  }

  double total() const { return _mm512_reduce_add_pd(acc); }
};

// Order 2: x < 0 selects which threshold applies (|x| > floor32(beta_1) for negative x, written
// x < -floor32(beta_1); x < ceil32(beta_1) otherwise).
struct Taps2Pass {
  __m512 up, ndown, nearest;
  __m512d acc = _mm512_setzero_pd();
  explicit Taps2Pass(const Threshold32& t)
      : up(_mm512_set1_ps(t.up)), ndown(_mm512_set1_ps(-t.down)), nearest(_mm512_set1_ps(t.nearest)) {}

  word_t word(const float* x, std::size_t i0, std::size_t i1, double&, word_t /*h1*/) {
    const __m512 zero = _mm512_setzero_ps();
    word_t word = 0;
    __m512 part = zero;
    for (std::size_t i = i0; i < i1; i += kFloats) {
      const __mmask16 m = first_lanes16(i1 - i);
      const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
      const __mmask16 ge0 = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GE_OQ);
      const __mmask16 neg_r = static_cast<__mmask16>(_mm512_mask_cmp_ps_mask(m, v, ndown, _CMP_LT_OQ) |
                                                     _mm512_mask_cmp_ps_mask(ge0, v, up, _CMP_LT_OQ));
      word |= static_cast<word_t>(neg_r) << (i - i0);
      part = _mm512_mask_add_ps(part, m, part, _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(v), nearest)));
    }
    acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(part)),
                                           _mm512_cvtps_pd(_mm512_extractf32x8_ps(part, 1))));
    return word;
  }

  double total(double sum) const { return sum + _mm512_reduce_add_pd(acc); }
};

// One vector of a block: 16 pixels' words (lanes 0-7 and 8-15), their sums, and which of them are real.
struct PixelVec {
  __m512i lo, hi;
  __m512d slo, shi;
  __mmask16 m;
};

// With `resume`, the 16 words (consecutive) come in with the bits of earlier channels set (pack_pixels_avx512's runs
// of channels), else they start at zero.
[[gnu::always_inline]] inline void pixel_start(PixelVec& p, std::size_t r, const double* sums, bool resume,
                                               const word_t* words) {
  p.m = r >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << r) - 1u);
  if (resume) {
    p.lo = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(p.m), words);
    p.hi = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(p.m >> 8), words + 8);
  } else {
    p.lo = p.hi = _mm512_setzero_si512();
  }
  p.slo = _mm512_maskz_loadu_pd(static_cast<__mmask8>(p.m), sums);
  p.shi = _mm512_maskz_loadu_pd(static_cast<__mmask8>(p.m >> 8), sums + 8);
}

// Channel c of the vector's 16 pixels (at x): the sign into bit c of their words, |x| into their sums.
[[gnu::always_inline]] inline void pixel_channel(PixelVec& p, const float* x, std::size_t W, __m512i bit, bool affine,
                                                 __m512 a, __m512 b) {
  // Ahead in the same channel: a channel's rows are far apart, and from memory (a batch's input, or a map evicted
  // since it was written) the hardware prefetchers did not follow 64 such streams. Short rows (tasks of one row): the
  // same pixels two image rows below, for the tasks that follow; a stretch of 128 pixels or more (a band of rows,
  // plane by plane: conv.cpp pack_input_band, W its length) two blocks of 64 further on, where 2 W was this block's
  // own channel c + 2, read a moment later (64ch 56x56 with 32 MB written between calls: input quantization 0.080 ->
  // 0.063 ms, level when cached; profile_conv_core, docs/KERNELS.md round 35).
  __builtin_prefetch(x + (W >= 128 ? 128 : 2 * W));
  __m512 v = _mm512_maskz_loadu_ps(p.m, x);
  if (affine) v = _mm512_add_ps(_mm512_mul_ps(v, a), b);
  const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
  p.lo = _mm512_mask_or_epi64(p.lo, static_cast<__mmask8>(neg), p.lo, bit);
  p.hi = _mm512_mask_or_epi64(p.hi, static_cast<__mmask8>(neg >> 8), p.hi, bit);
  const __m512 ax = _mm512_abs_ps(v);
  p.slo = _mm512_add_pd(p.slo, _mm512_cvtps_pd(_mm512_castps512_ps256(ax)));
  p.shi = _mm512_add_pd(p.shi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(ax, 1)));
}

// The vector's sums and words out; returns its lanes whose sum is not finite.
inline __mmask16 pixel_finish(const PixelVec& p, std::size_t r, double* sums, word_t* words, std::size_t wstride) {
  const __m512d inf = _mm512_set1_pd(HUGE_VAL);
  const __mmask8 bad_lo = _mm512_mask_cmp_pd_mask(static_cast<__mmask8>(p.m), p.slo, inf, _CMP_NLT_UQ);
  const __mmask8 bad_hi = _mm512_mask_cmp_pd_mask(static_cast<__mmask8>(p.m >> 8), p.shi, inf, _CMP_NLT_UQ);
  _mm512_mask_storeu_pd(sums, static_cast<__mmask8>(p.m), p.slo);
  _mm512_mask_storeu_pd(sums + 8, static_cast<__mmask8>(p.m >> 8), p.shi);
  if (wstride == 1) {
    _mm512_mask_storeu_epi64(words, static_cast<__mmask8>(p.m), p.lo);
    _mm512_mask_storeu_epi64(words + 8, static_cast<__mmask8>(p.m >> 8), p.hi);
  } else {
    alignas(64) word_t out[16];
    _mm512_store_si512(out, p.lo);
    _mm512_store_si512(out + 8, p.hi);
    const std::size_t n = r >= 16 ? 16 : r;
    for (std::size_t i = 0; i < n; ++i) words[i * wstride] = out[i];
  }
  return static_cast<__mmask16>(bad_lo | (static_cast<unsigned>(bad_hi) << 8));
}

// One block of up to 16 * NV pixels starting at w0 (rem >= 16 * (NV - 1) + 1 of them), its words and sums
// in registers across all channels (four named vectors, not an array: GCC kept an array of them in memory and
// stored every accumulator back after each channel); returns the lanes whose sum is not finite: those with a NaN
// or Inf value (|x| of finite floats adds up to a finite double over any channel count, and a NaN or Inf value
// makes the double sum NaN or +Inf), found once per block instead of by one exponent test per value.
// Channels [c0, c1) of them (with c0 > 0 the words resume from memory, wstride 1).
template <int NV>
__mmask16 pack_block(const float* src, std::size_t cstride, std::size_t c0, std::size_t c1, std::size_t W,
                     std::size_t w0, std::size_t rem,
                     word_t* words, std::size_t wstride, double* sums, const float* scale, const float* shift) {
  static_assert(NV >= 1 && NV <= 4, "one to four vectors");
  PixelVec p0, p1, p2, p3;
  const bool resume = c0 > 0;
  pixel_start(p0, rem, sums + w0, resume, words + w0);
  if (NV > 1) pixel_start(p1, rem - 16, sums + w0 + 16, resume, words + w0 + 16);
  if (NV > 2) pixel_start(p2, rem - 32, sums + w0 + 32, resume, words + w0 + 32);
  if (NV > 3) pixel_start(p3, rem - 48, sums + w0 + 48, resume, words + w0 + 48);
  for (std::size_t c = c0; c < c1; ++c) {
    const __m512i bit = _mm512_set1_epi64(static_cast<long long>(word_t{1} << c));
    const __m512 a = _mm512_set1_ps(scale ? scale[c] : 1.0f), b = _mm512_set1_ps(scale ? shift[c] : 0.0f);
    const float* x = src + c * cstride + w0;
    pixel_channel(p0, x, W, bit, scale != nullptr, a, b);
    if (NV > 1) pixel_channel(p1, x + 16, W, bit, scale != nullptr, a, b);
    if (NV > 2) pixel_channel(p2, x + 32, W, bit, scale != nullptr, a, b);
    if (NV > 3) pixel_channel(p3, x + 48, W, bit, scale != nullptr, a, b);
  }
  __mmask16 bad = pixel_finish(p0, rem, sums + w0, words + w0 * wstride, wstride);
  if (NV > 1) bad |= pixel_finish(p1, rem - 16, sums + w0 + 16, words + (w0 + 16) * wstride, wstride);
  if (NV > 2) bad |= pixel_finish(p2, rem - 32, sums + w0 + 32, words + (w0 + 32) * wstride, wstride);
  if (NV > 3) bad |= pixel_finish(p3, rem - 48, sums + w0 + 48, words + (w0 + 48) * wstride, wstride);
  return bad;
}

// 16 x 16 transpose: rows interleaved at 32- and 64-bit granularity inside 128-bit lanes, then 128-bit lanes
// exchanged twice (four rounds of 16 shuffles), after the affine (multiply then add, as the scalar copy rounds).
struct Nhwc16 {
  static constexpr std::size_t kBlock = 16;
  static void transpose(const float* const* rows, std::size_t n, const float* scale, const float* shift, float* dst,
                        std::size_t ldd) {
    __m512 r[16], t[16];
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);  // n <= 16 pixels
    for (int i = 0; i < 16; ++i) {
      r[i] = _mm512_maskz_loadu_ps(m, rows[i]);
      if (scale) r[i] = _mm512_add_ps(_mm512_mul_ps(r[i], _mm512_set1_ps(scale[i])), _mm512_set1_ps(shift[i]));
    }
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
      for (int j = 0; j < 2; ++j) {
        r[i + j] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
        r[i + j + 2] =
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
      }
    for (int i = 0; i < 16; i += 8)
      for (int j = 0; j < 4; ++j) {
        t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
        t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
      }
    for (int j = 0; j < 8; ++j) {
      r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
      r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
    // r[k] holds the 16 channels of pixel 4 (k / 4) + {0, 2, 1, 3}[k % 4].
    for (int k = 0; k < 16; ++k) {
      const std::size_t px = static_cast<std::size_t>((k & ~3) | (k & 1) << 1 | (k >> 1 & 1));
      if (px < n) _mm512_storeu_ps(dst + px * ldd, r[k]);
    }
  }
};

// ---- Order 2 from per-pixel bands (quantize.h Band2Row; quantize_avx2.cpp's band2_pixels with mask registers) ----

// Value v of a pixel's band, channel c of its word: compared once with the pixel's 12 reader thresholds in the lanes
// of tp (tn for v < 0 where Exact), bit c ORed into the words of the slots whose threshold |v| is below (sel0: slots
// 0-7, sel1: 8-11, masked ORs of 64-bit lanes) and |v| added into their float sums.
template <bool Exact>
inline void band_value(float v, unsigned c, __m512 tp, __m512 tn, __m512i& sel0, __m512i& sel1, __m512& sums) {
  const __m512 av = _mm512_set1_ps(std::fabs(v));
  const __mmask16 m = _mm512_cmp_ps_mask(av, Exact && v < 0.0f ? tn : tp, _CMP_LT_OQ);
  const __m512i bit = _mm512_set1_epi64(static_cast<long long>(word_t{1} << c));
  sel0 = _mm512_mask_or_epi64(sel0, static_cast<__mmask8>(m), sel0, bit);
  sel1 = _mm512_mask_or_epi64(sel1, static_cast<__mmask8>(m >> 8), sel1, bit);
  sums = _mm512_mask_add_ps(sums, m, sums, av);
}

// One pixel: its gw words of 64 channels at x, its readers' 12 thresholds in the lanes of tp (and tn for x < 0 where
// Exact; lanes 12-15 unused), their least (lo) and greatest (hi). Per word, four vectors of |x|: the compares with lo
// and hi write masks that are the word's bits as they stand (no movemask), and the values below lo are added in
// their 16 float lanes, (v0 + v1) + (v2 + v3), widened into 8 double lanes; each value of the band lo <= |x| < hi is
// compared once with all 12 thresholds, its bit ORed into the slots' words where below (masked ORs of 64-bit lanes:
// slots 0-7, then 8-11) and |x| added into those slots' float sums.
template <bool Exact>
void band2_pixel(const float* x, std::size_t gw, __m512 tp, __m512 tn, float lo, float hi, word_t* l, double* sb) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512d acc = _mm512_setzero_pd();
  __m512 bs = _mm512_setzero_ps();
  for (std::size_t w = 0; w < gw; ++w) {
    const float* xw = x + w * kWordBits;
    __m512 a[4];
    __mmask16 mlo[4], mhi[4];
    for (int v = 0; v < 4; ++v) {
      a[v] = _mm512_abs_ps(_mm512_loadu_ps(xw + v * kFloats));
      mlo[v] = _mm512_cmp_ps_mask(a[v], vlo, _CMP_LT_OQ);
      mhi[v] = _mm512_cmp_ps_mask(a[v], vhi, _CMP_LT_OQ);
    }
    // (v0 + v1) + (v2 + v3), a masked value taken as +0.0: a masked add onto the first's (+0.0 leaves a value >= 0)
    const __m512 z0 = _mm512_maskz_mov_ps(mlo[0], a[0]), z2 = _mm512_maskz_mov_ps(mlo[2], a[2]);
    const __m512 s = _mm512_add_ps(_mm512_mask_add_ps(z0, mlo[1], z0, a[1]), _mm512_mask_add_ps(z2, mlo[3], z2, a[3]));
    acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(s)),
                                           _mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1))));
    const word_t low = static_cast<word_t>(_mm512_kunpackd(_mm512_kunpackw(mlo[3], mlo[2]),
                                                           _mm512_kunpackw(mlo[1], mlo[0])));
    const word_t under_hi = static_cast<word_t>(_mm512_kunpackd(_mm512_kunpackw(mhi[3], mhi[2]),
                                                                _mm512_kunpackw(mhi[1], mhi[0])));
    const __m512i vl = _mm512_set1_epi64(static_cast<long long>(low));
    __m512i sel0 = vl, sel1 = vl;  // slots 0-7 and 8-15: the bits of |x| < lo in every slot, then the band's
    for (word_t band = under_hi & ~low; band; band &= band - 1) {
      const unsigned c = static_cast<unsigned>(__builtin_ctzll(band));
      band_value<Exact>(xw[c], c, tp, tn, sel0, sel1, bs);
    }
    word_t* lw = l + w * kBand2Slots;
    _mm512_storeu_si512(lw, sel0);
    _mm512_mask_storeu_epi64(lw + 8, static_cast<__mmask8>(0x0f), sel1);
  }
  const __m512d slo = _mm512_set1_pd(_mm512_reduce_add_pd(acc));
  _mm512_storeu_pd(sb, _mm512_add_pd(slo, _mm512_cvtps_pd(_mm512_castps512_ps256(bs))));
  _mm512_mask_storeu_pd(sb + 8, static_cast<__mmask8>(0x0f),
                        _mm512_add_pd(slo, _mm512_cvtps_pd(_mm512_extractf32x8_ps(bs, 1))));
}

// The 12 reader thresholds of padded pixel px in slot order (quantize.h Band2Row: slot 4 q + j is reader j of window
// row q; the 128-bit lanes of rows 0, 1, 2 and 2 again, so j = 3 and slots 12-15 are no readers: computed, never
// stored), from grids t (r.pos or r.neg).
inline __m512 reader_slots(const float* const* t, std::size_t px) {
  const __m512 a = _mm512_maskz_loadu_ps(0x000f, t[0] + px), b = _mm512_maskz_loadu_ps(0x000f, t[1] + px);
  return _mm512_shuffle_f32x4(_mm512_shuffle_f32x4(a, b, 0x00), _mm512_maskz_loadu_ps(0x000f, t[2] + px), 0x08);
}

// 16 pixels' least and greatest reader threshold (pixel p0 + i: columns p0 + i .. p0 + i + 2 of the three grid rows)
// in lo and hi, lanes past m zero.
inline void reader_limits(const Band2Row& r, std::size_t p0, __mmask16 m, __m512& lo, __m512& hi) {
  lo = _mm512_set1_ps(HUGE_VALF), hi = _mm512_set1_ps(-HUGE_VALF);
  for (int q = 0; q < 3; ++q)
    for (std::size_t j = 0; j < 3; ++j) {
      lo = _mm512_min_ps(lo, _mm512_maskz_loadu_ps(m, r.pos[q] + p0 + j));
      hi = _mm512_max_ps(hi, _mm512_maskz_loadu_ps(m, r.neg[q] + p0 + j));
    }
}

// Padded pixel px of r, its C values at x, its readers' least and greatest threshold lo and hi: band2_pixel into r's
// slots.
inline void pixel_slots(const Band2Row& r, std::size_t px, const float* x, float lo, float hi) {
  const std::size_t gw = r.C / kWordBits;
  word_t* l = r.l + px * gw * kBand2Slots;
  double* sb = r.sb + px * kBand2Slots;
  if (r.exact)
    band2_pixel<true>(x, gw, reader_slots(r.pos, px), reader_slots(r.neg, px), lo, hi, l, sb);
  else
    band2_pixel<false>(x, gw, reader_slots(r.pos, px), reader_slots(r.neg, px), lo, hi, l, sb);
}

// Band2Row::src's 16 pixels x0 + p0 .. (count of them) in the lanes, channel by channel, into what band2_pixel gives
// for each from its NHWC values, bit for bit. Per word, channel c's compares with the pixels' lo and hi are kept as
// 16-bit masks (below, under_hi), and a pixel's L and band words are then bit j of the 64 masks (two vptestmw over 32
// channels each, the band the bits under hi not in L); the values below lo are added as band2_pixel adds them, its
// lane k being channels k, 16 + k, 32 + k, 48 + k ((a + b) + (c + d) in float), widened, lanes k and k + 8 added and
// accumulated over words in double, then reduced in _mm512_reduce_add_pd's order (halves, quarters, pairs: the
// emulation header's note); the band's values follow one by one in channel order, per pixel (band_value).
template <bool Affine, bool Exact>
void band2_block(const Band2Row& r, std::size_t p0, std::size_t count) {
  const std::size_t gw = r.C / kWordBits, px0 = r.x0 + p0, cs = r.cstride;
  const __mmask16 m = first_lanes16(count);
  __m512 vlo, vhi;
  reader_limits(r, px0, m, vlo, vhi);
  alignas(64) std::uint16_t below[kWordBits], under_hi[kWordBits];  // per channel, bit j: pixel j
  alignas(64) float bs[kFloats][kFloats];                          // per pixel, the band's sums per slot
  alignas(64) double acc[kDoubles][kFloats];                       // per lane k of band2_pixel's sums, per pixel
  std::uint32_t banded = 0;                                        // the pixels whose bs holds sums
  for (std::size_t w = 0; w < gw; ++w) {
    const float* src = r.src + w * kWordBits * cs + p0;
    const float* scale = Affine ? r.scale + w * kWordBits : nullptr;
    const float* shift = Affine ? r.shift + w * kWordBits : nullptr;
    // channel c of the 16 pixels: its masks kept, |x| returned in a, the mask of the values below lo
    const auto channel = [&](std::size_t c, __m512& a) {
      __m512 v = _mm512_maskz_loadu_ps(m, src + c * cs);
      if (Affine) v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(scale[c])), _mm512_set1_ps(shift[c]));
      a = _mm512_abs_ps(v);
      const __mmask16 lm = _mm512_cmp_ps_mask(a, vlo, _CMP_LT_OQ);
      below[c] = lm;
      under_hi[c] = _mm512_cmp_ps_mask(a, vhi, _CMP_LT_OQ);
      return lm;
    };
    // the values below lo of channels c and c + 16 added (band2_pixel's (a + b), a masked value taken as +0.0: one
    // masked add onto the first's, which adding +0.0 to a value >= 0 leaves as it is)
    const auto pair = [&](std::size_t c) {
      __m512 a, b;
      const __mmask16 ma = channel(c, a), mb = channel(c + 16, b);
      const __m512 first = _mm512_maskz_mov_ps(ma, a);
      return _mm512_mask_add_ps(first, mb, first, b);
    };
    // band2_pixel's sum lane l: (channel l + channel 16 + l) + (channel 32 + l + channel 48 + l)
    const auto lane = [&](std::size_t l) { return _mm512_add_ps(pair(l), pair(32 + l)); };
    for (std::size_t k = 0; k < kDoubles; ++k) {
      const __m512 s = lane(k), t = lane(k + kDoubles);
      __m512d t0 = _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(s)),
                                 _mm512_cvtps_pd(_mm512_castps512_ps256(t)));
      __m512d t1 = _mm512_add_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1)),
                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(t, 1)));
      if (w > 0) {
        t0 = _mm512_add_pd(_mm512_loadu_pd(acc[k]), t0);
        t1 = _mm512_add_pd(_mm512_loadu_pd(acc[k] + kDoubles), t1);
      }
      _mm512_storeu_pd(acc[k], t0);
      _mm512_storeu_pd(acc[k] + kDoubles, t1);
    }
    const __m512i lo0 = _mm512_load_si512(below), lo1 = _mm512_load_si512(below + 32);
    const __m512i hi0 = _mm512_load_si512(under_hi), hi1 = _mm512_load_si512(under_hi + 32);
    for (std::size_t j = 0; j < count; ++j) {
      const std::size_t px = px0 + j;
      const __m512i pick = _mm512_set1_epi16(static_cast<short>(1u << j));
      const word_t low = _cvtmask64_u64(_mm512_kunpackd(_mm512_test_epi16_mask(lo1, pick),
                                                        _mm512_test_epi16_mask(lo0, pick)));
      const word_t band = _cvtmask64_u64(_mm512_kunpackd(_mm512_test_epi16_mask(hi1, pick),
                                                         _mm512_test_epi16_mask(hi0, pick))) & ~low;
      const __m512i vl = _mm512_set1_epi64(static_cast<long long>(low));
      __m512i sel0 = vl, sel1 = vl;  // slots 0-7 and 8-15, as band2_pixel's
      if (band) {
        const __m512 tp = reader_slots(r.pos, px), tn = Exact ? reader_slots(r.neg, px) : tp;
        __m512 sums = banded >> j & 1u ? _mm512_load_ps(bs[j]) : _mm512_setzero_ps();
        for (word_t b = band; b; b &= b - 1) {
          const unsigned c = static_cast<unsigned>(__builtin_ctzll(b));
          const float v = src[c * cs + j];
          band_value<Exact>(Affine ? v * scale[c] + shift[c] : v, c, tp, tn, sel0, sel1, sums);
        }
        _mm512_store_ps(bs[j], sums);
        banded |= 1u << j;
      }
      word_t* lw = r.l + (px * gw + w) * kBand2Slots;
      _mm512_storeu_si512(lw, sel0);
      _mm512_mask_storeu_epi64(lw + 8, static_cast<__mmask8>(0x0f), sel1);
    }
  }
  for (std::size_t j = 0; j < count; ++j) {
    const auto a = [&](std::size_t k) { return acc[k][j]; };
    const __m512d slo = _mm512_set1_pd(((a(0) + a(4)) + (a(2) + a(6))) + ((a(1) + a(5)) + (a(3) + a(7))));
    const __m512 sums = banded >> j & 1u ? _mm512_load_ps(bs[j]) : _mm512_setzero_ps();
    double* sb = r.sb + (px0 + j) * kBand2Slots;
    _mm512_storeu_pd(sb, _mm512_add_pd(slo, _mm512_cvtps_pd(_mm512_castps512_ps256(sums))));
    _mm512_mask_storeu_pd(sb + 8, static_cast<__mmask8>(0x0f),
                          _mm512_add_pd(slo, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sums, 1))));
  }
}

}  // namespace

void to_nhwc_avx512(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                    const float* shift, float* dst, std::size_t ldd) {
  to_nhwc_walk<Nhwc16>(src, cstride, nchan, W, scale, shift, dst, ldd);
}

void quantize_column_avx512(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                            std::size_t ldbits, double* betas) {
  column_walk<ColumnPass>(r, groups, cg, order, bits, ldbits, betas);
}

void quantize_taps_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas) {
  taps_walk<TapsPass>(taps, ntaps, cg, order, bits, ldbits, betas);
}

void quantize_taps2_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                           std::size_t ldbits, double* betas) {
  const Threshold32 th(betas[0]);
  if (th.up != th.down) {
    taps2_walk(taps, ntaps, cg, bits, ldbits, betas, Taps2BelowPass(th, betas[0]));
  } else {
    taps2_walk(taps, ntaps, cg, bits, ldbits, betas, Taps2Pass(th));
  }
}

void quantize_image_avx512(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                           std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas) {
  image_walk<Taps2BelowPass, Taps2Pass, TapsPass, Taps3Pass>(im, pix, word, count, order, bits, ldbits, betas);
}

void band2_pixels_avx512(const Band2Row& r) {
  alignas(64) float lo[kFloats], hi[kFloats];
  for (std::size_t p0 = 0; p0 < r.wp; p0 += kFloats) {
    __m512 vlo, vhi;
    reader_limits(r, p0, first_lanes16(r.wp - p0), vlo, vhi);
    _mm512_store_ps(lo, vlo);
    _mm512_store_ps(hi, vhi);
    for (std::size_t px = p0; px < std::min(r.wp, p0 + kFloats); ++px)
      pixel_slots(r, px, r.x + px * r.C, lo[px - p0], hi[px - p0]);
  }
}

void band2_pixels_nchw_avx512(const Band2Row& r) {
  // the zero pixels of the border one by one, as band2_pixels_avx512 takes them
  const auto border = [&r](std::size_t px0, std::size_t px1) {
    for (std::size_t px = px0; px < px1; ++px) {
      __m512 vlo, vhi;
      reader_limits(r, px, 1, vlo, vhi);
      alignas(64) float lo[kFloats], hi[kFloats];
      _mm512_store_ps(lo, vlo);
      _mm512_store_ps(hi, vhi);
      pixel_slots(r, px, r.x, lo[0], hi[0]);
    }
  };
  border(0, r.x0);
  border(r.x0 + r.n, r.wp);
  for (std::size_t p0 = 0; p0 < r.n; p0 += kFloats) {
    const std::size_t count = std::min(kFloats, r.n - p0);
    if (r.scale)
      r.exact ? band2_block<true, true>(r, p0, count) : band2_block<true, false>(r, p0, count);
    else
      r.exact ? band2_block<false, true>(r, p0, count) : band2_block<false, false>(r, p0, count);
  }
}

// 8 columns a step: the box sums (masked loads past the row), the division and float32 rounding in the lanes; a
// column's up is its float32 nearest one step up where that lies below beta_1 (a compare of the two as doubles), and
// beta_1 is a float32 value where neither lies above or below the other (Threshold32's up == down); the float bits
// stepped lane by lane.
bool band2_thresholds_avx512(const double* sums, const std::int64_t* off, std::size_t ow, double n, std::size_t ord,
                             double* betas, float* pos, float* neg) {
  const __m512d vn = _mm512_set1_pd(n);
  unsigned any = 0;
  for (std::size_t ox0 = 0; ox0 < ow; ox0 += kDoubles) {
    const std::size_t nl = std::min(kDoubles, ow - ox0);
    const __mmask8 m = first_lanes8(nl);
    __m512d box = _mm512_setzero_pd();
    for (std::size_t t = 0; t < 9; ++t)
      box = _mm512_add_pd(box, _mm512_maskz_loadu_pd(m, sums + off[t] + static_cast<std::int64_t>(ox0)));
    const __m512d b = _mm512_div_pd(box, vn);
    const __m256 nearest = _mm512_cvtpd_ps(b);
    const __m512d back = _mm512_cvtps_pd(nearest);
    const unsigned below = _mm512_mask_cmp_pd_mask(m, back, b, _CMP_LT_OQ);
    const unsigned exact = m & ~(below | _mm512_mask_cmp_pd_mask(m, back, b, _CMP_GT_OQ));
    alignas(64) double bd[kDoubles];
    alignas(32) std::uint32_t u[kDoubles];
    _mm512_storeu_pd(bd, b);
    _mm256_storeu_ps(reinterpret_cast<float*>(u), nearest);
    for (std::size_t j = 0; j < nl; ++j) {
      betas[(ox0 + j) * ord] = bd[j];
      const std::uint32_t up = u[j] + (below >> j & 1u);
      const std::uint32_t above = up + (exact >> j & 1u);
      std::memcpy(pos + ox0 + j, &up, sizeof up);
      std::memcpy(neg + ox0 + j, &above, sizeof above);
    }
    any |= exact;
  }
  return any != 0;
}

void band2_columns_avx512(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                          const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order, word_t* bits,
                          std::size_t ldbits, std::size_t ldword, double* betas) {
  band2_walk<TapsPass, Taps3Pass>(im, l, sb, lbase, pix, word, count, order, bits, ldbits, ldword, betas);
}

// Up to 64 pixels at a time (4 vectors) with their words and sums in registers across all channels, so a
// channel's row is read as one run (a row of a 56-wide map in one pass, not four: the channel planes are
// far apart, and revisiting them per 16 pixels cost TLB and cache misses). Per channel and vector: one
// load, a compare to a mask for the signs (ORed into the words' lanes as bit c), and |x| widened to double and
// added per lane in channel order (the generic sums bit for bit; NaN/Inf found in them, pack_block).
// Runs of kRunMinPixels or more (a 56x56 plane or larger, packed whole) go kChannelRun channels at a time over the
// whole run, the words and sums taken up again from memory for the next channels (the same additions in the same
// order): 64 channels read side by side are 64 streams from memory, more than the hardware prefetchers follow, 16
// are not (benchmarks/read_streams.cpp: a 64 x 3136 float image after 64 MB written, 109-123 us with 64 streams,
// 54-60 with 16). 64ch 56x56 order 1 with 48 MB written before each call 0.207 -> 0.183 ms, cached 0.161 -> 0.164
// (benchmarks/ab_conv_core.py, 1 thread; docs/KERNELS.md round 41). Shorter runs, whose planes a network finds in the
// caches, stay as they were: split from 512 pixels on, ResNet-18 32x32 ran up to 2% slower.
constexpr std::size_t kRunMinPixels = 2048;
constexpr std::size_t kChannelRun = 16;

std::uint32_t pack_pixels_avx512(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                 word_t* words, std::size_t wstride, double* sums, const float* scale,
                                 const float* shift) {
  const std::size_t run = wstride == 1 && W >= kRunMinPixels ? kChannelRun : nchan;
  __mmask16 bad = 0;
  for (std::size_t c0 = 0; c0 < nchan; c0 += run) {
    const std::size_t c1 = std::min(nchan, c0 + run);
    for (std::size_t w0 = 0; w0 < W; w0 += 64) {
      const std::size_t rem = W - w0;
      switch (rem > 48 ? 4 : rem > 32 ? 3 : rem > 16 ? 2 : 1) {
        case 4: bad |= pack_block<4>(src, cstride, c0, c1, W, w0, rem, words, wstride, sums, scale, shift); break;
        case 3: bad |= pack_block<3>(src, cstride, c0, c1, W, w0, rem, words, wstride, sums, scale, shift); break;
        case 2: bad |= pack_block<2>(src, cstride, c0, c1, W, w0, rem, words, wstride, sums, scale, shift); break;
        default: bad |= pack_block<1>(src, cstride, c0, c1, W, w0, rem, words, wstride, sums, scale, shift); break;
      }
    }
  }
  return bad ? 1u : 0u;
}

}  // namespace horq
