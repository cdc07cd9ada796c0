// The loops the quantize_*.cpp files share (operations declared in quantize.h), templated on each ISA's pass
// over one word of values, so an ISA file holds its intrinsics and nothing else.
//
// A pass object lives for one order k. Its word(...) packs the bits of values [i0, i1) of one 64-bit word
// and adds what it sums into its own accumulators (or into the walk's scalar `sum`, which it is handed);
// its total(sum) adds everything up in that ISA's fixed order. The walks below fix which words are visited
// in which order and where padding taps go, so every path visits the same values the same way, and each
// path's sums depend on nothing but the column (not on threads or on the tap's position in memory).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/quantize.h"

namespace horq {

// Each including file's own copy (core/isa_local.h).
namespace {

// One past the last value of word w of a group of cg values.
inline std::size_t word_end(std::size_t w, std::size_t cg) {
  const std::size_t i1 = (w + 1) * kWordBits;
  return i1 < cg ? i1 : cg;
}

// quantize_column_*: Pass(beta) for the order being packed; Pass::abs_sum(r, n) = sum |r_i| (beta_1 * n);
// word<update>(rg, i0, i1) packs sign(r) and, with `update`, stores r -+ beta and sums its |.|;
// total() = the sum of |r_k| over the column, for beta_{k+1}. The last order packs without updating.
template <class Pass>
void column_walk(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits, std::size_t ldbits,
                 double* betas) {
  const std::size_t n = groups * cg, gw = words_for(cg);
  double beta = Pass::abs_sum(r, n) / static_cast<double>(n);
  for (int k = 0; k < order; ++k) {
    betas[k] = beta;
    const bool last = k + 1 == order;
    Pass pass(beta);
    for (std::size_t g = 0; g < groups; ++g) {
      double* rg = r + g * cg;
      word_t* wg = bits + k * ldbits + g * gw;
      for (std::size_t w = 0; w < gw; ++w)
        wg[w] = last ? pass.template word<false>(rg, w * kWordBits, word_end(w, cg))
                     : pass.template word<true>(rg, w * kWordBits, word_end(w, cg));
    }
    beta = pass.total() / static_cast<double>(n);
  }
}

// A padding tap's residual chain is the same for every value of the tap: r_{k-1} for x = 0 under
// betas[0..k-2].
inline double padding_residual(const double* betas, int k) {
  double r = 0.0;
  for (int j = 0; j + 1 < k; ++j) r -= betas[j] * (1.0 - 2.0 * static_cast<double>(r < 0.0));
  return r;
}

// Packs a padding tap's bits (all values have bit `neg`) into its gw words of a row.
inline void fill_padding_words(word_t* words, std::size_t cg, bool neg) {
  const std::size_t gw = words_for(cg);
  for (std::size_t w = 0; w < gw; ++w) {
    const std::size_t nbits = cg - w * kWordBits < kWordBits ? cg - w * kWordBits : kWordBits;
    words[w] = neg ? (nbits == kWordBits ? ~word_t{0} : (word_t{1} << nbits) - 1) : word_t{0};
  }
}

// quantize_taps_*: Pass(betas, steps) for order k = steps + 1; word(x, i0, i1, sum) packs
// sign(r_{k-1}) of x[i0..i1) (each value's chain of `steps` residual steps recomputed from x) and sums
// |r_{k-1}|; total(sum) = the pass's sum with `sum` (padding taps, in tap order, and whatever the pass put there).
template <class Pass>
void taps_walk(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
               std::size_t ldbits, double* betas) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  for (int k = 2; k <= order; ++k) {
    word_t* row = bits + static_cast<std::size_t>(k - 1) * ldbits;
    const double pad = padding_residual(betas, k);
    Pass pass(betas, k - 1);
    double sum = 0.0;
    for (std::size_t t = 0; t < ntaps; ++t) {
      word_t* wg = row + t * gw;
      const float* x = taps[t];
      if (!x) {
        fill_padding_words(wg, cg, pad < 0.0);
        sum += std::fabs(pad) * static_cast<double>(cg);
        continue;
      }
      for (std::size_t w = 0; w < gw; ++w) wg[w] = pass.word(x, w * kWordBits, word_end(w, cg), sum);
    }
    betas[k - 1] = pass.total(sum) / static_cast<double>(n);
  }
}

// beta_1 (>= 0, not NaN: a mean of |x| over finite values) rounded to float32 three ways: nearest (for
// |a - beta_1|), up and down (the exact thresholds of quantize_taps2, quantize.h). The neighbours of a
// non-negative float are its bit pattern plus or minus one (0 -> the least denormal, FLT_MAX -> inf, inf ->
// FLT_MAX), which is what std::nextafter gives, without its library call once per column.
struct Threshold32 {
  float nearest, up, down;
  // Branch-free (which way beta_1 rounds is a coin toss per column: branches on it were mispredicted half the time).
  explicit Threshold32(double b) : nearest(static_cast<float>(b)) {
    std::uint32_t u;
    std::memcpy(&u, &nearest, sizeof u);
    const double n = static_cast<double>(nearest);
    up = from_bits(u + static_cast<std::uint32_t>(n < b));
    down = from_bits(u - static_cast<std::uint32_t>(n > b));
  }

 private:
  static float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
};

// Order 3 of a column from float32 thresholds, given its beta_1, beta_2 and H_2 (the double chain's bits, as order 2's
// passes give them). With a = |x|, the chain's |r_1| = fl64(|a - beta_1|) for either sign of x (round to nearest is
// symmetric), and r_2 = r_1 -+ beta_2 is fl64(|r_1| - beta_2) where r_1 >= 0 (H_2 = 0), its negative where r_1 < 0
// (H_2 = 1); so H_3 = (r_2 < 0) is N = (|r_1| < beta_2) where H_2 = 0 and (|r_1| > beta_2) where H_2 = 1. Where no
// float32 a gives |r_1| = beta_2 exactly, the second is not-N, and H_3 = H_2 XOR N. N is a float32 band: fl64(a -
// beta_1) and fl64(beta_1 - a) are monotone in a, so N <=> lo < a < hi for hi the least float32 above beta_1 with
// fl64(hi - beta_1) >= beta_2 and lo the greatest below it with fl64(beta_1 - lo) >= beta_2 (-1 when even a = 0 is
// nearer: every a >= 0 is above it). By that monotony the a with |r_1| = beta_2, if any, are a run starting at hi or
// one ending at lo, so checking those two settles it: `ok` is false where either ties, where beta_2 is not positive
// and where a search took more than its bound of steps; the caller then runs the double chain. The searches take a
// step or two from float32(beta_1 +- beta_2).
struct Threshold3 {
  float lo = -1.0f, hi = 0.0f;
  bool ok = false;
  Threshold3(double b1, double b2) {
    if (!(b2 > 0.0) || !(b1 >= 0.0) || !(b1 + b2 < 1e38)) return;
    const auto above = [&](float a) {  // a is past the band's top
      const double d = static_cast<double>(a);
      return d > b1 && d - b1 >= b2;
    };
    const auto below = [&](float a) {  // a >= 0 is under the band's bottom
      const double d = static_cast<double>(a);
      return d < b1 && b1 - d >= b2;
    };
    constexpr int kSteps = 64;  // a bound on the searches (each takes a step or two)
    int steps = 0;
    float h = static_cast<float>(b1 + b2);
    while (!above(h) && ++steps < kSteps) h = step(h, 1);
    while (h > 0.0f && above(step(h, -1)) && ++steps < kSteps) h = step(h, -1);
    float l = -1.0f;
    if (below(0.0f)) {
      l = b1 - b2 > 0.0 ? static_cast<float>(b1 - b2) : 0.0f;
      while (!below(l) && ++steps < kSteps) l = step(l, -1);
      while (below(step(l, 1)) && ++steps < kSteps) l = step(l, 1);
    }
    lo = l, hi = h;
    ok = steps < kSteps && static_cast<double>(h) - b1 != b2 && !(l >= 0.0f && b1 - static_cast<double>(l) == b2);
  }

 private:
  // The float32 neighbour of a >= 0 (up for dir 1, down for -1; down from 0 stays 0).
  static float step(float a, int dir) {
    std::uint32_t u;
    std::memcpy(&u, &a, sizeof u);
    if (dir < 0 && u == 0) return a;
    u = dir > 0 ? u + 1 : u - 1;
    std::memcpy(&a, &u, sizeof a);
    return a;
  }
};

// quantize_taps3_* (quantize.h): Pass(th, beta_1, beta_2) as image_walk's Third, with word(x, i0, i1, h2) for the
// values [i0, i1) of a word (any count) and total(sum) adding `sum` (the padding taps' |r_2|). A padding tap's values
// are all 0: H_3 = H_2 XOR N(0) (no tie at 0: Threshold3's checks), |r_2| the chain's for x = 0.
template <class Pass>
bool taps3_walk(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits, std::size_t ldbits,
                double* betas) {
  const Threshold3 th(betas[0], betas[1]);
  if (!th.ok) return false;
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  const word_t* row2 = bits + ldbits;
  word_t* row3 = bits + 2 * ldbits;
  const bool zero_in = th.lo < 0.0f && 0.0f < th.hi;
  const double pad = std::fabs(padding_residual(betas, 3));
  Pass pass(th, betas[0], betas[1]);
  double sum = 0.0;
  for (std::size_t t = 0; t < ntaps; ++t) {
    const word_t* h2 = row2 + t * gw;
    word_t* out = row3 + t * gw;
    const float* x = taps[t];
    if (!x) {
      fill_padding_words(out, cg, zero_in);
      for (std::size_t w = 0; w < gw; ++w) out[w] ^= h2[w];
      sum += pad * static_cast<double>(cg);
      continue;
    }
    for (std::size_t w = 0; w < gw; ++w) out[w] = pass.word(x, w * kWordBits, word_end(w, cg), h2[w]);
  }
  betas[2] = pass.total(sum) / static_cast<double>(n);
  return true;
}

// Order 2 of a padding tap (x = 0 in all cg values): r_1 = -beta_1 is negative unless beta_1 = 0, so every
// bit is (beta_1 > 0); the tap's part of beta_2's sum is |r_1| * cg = beta_1 * cg, returned.
inline double order2_padding_tap(word_t* words, std::size_t cg, double beta1) {
  fill_padding_words(words, cg, beta1 > 0.0);
  return beta1 * static_cast<double>(cg);
}

// quantize_taps2_*: `pass` made from beta_1 (its thresholds); word(x, i0, i1, sum, h1) packs H_2 of x[i0..i1)
// and sums what the pass needs for beta_2, given h1 = the word of H_1 (row 0 of bits) that holds those values'
// signs (a pass may use it instead of comparing x with 0); total(sum) = sum | |x| - beta_1 | over the column,
// with `sum` holding beta_1 * cg per padding tap (their | |x| - beta_1 |).
template <class Pass>
void taps2_walk(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits, std::size_t ldbits,
                double* betas, Pass pass) {
  const std::size_t n = ntaps * cg, gw = words_for(cg);
  word_t* row = bits + ldbits;
  double sum = 0.0;
  for (std::size_t t = 0; t < ntaps; ++t) {
    word_t* wg = row + t * gw;
    const float* x = taps[t];
    if (!x) {
      sum += order2_padding_tap(wg, cg, betas[0]);
      continue;
    }
    const word_t* h1 = bits + t * gw;
    for (std::size_t w = 0; w < gw; ++w) wg[w] = pass.word(x, w * kWordBits, word_end(w, cg), sum, h1[w]);
  }
  betas[1] = pass.total(sum) / static_cast<double>(n);
}

// quantize_image_* (quantize.h): per column the box sum, then order 2 with Below(th, beta_1) (a taps2 pass for
// beta_1 between two floats) or Exact(th) (beta_1 a float32 value), then orders 3.. with Chain(betas, k - 1) (a
// taps pass), each over the column's whole words in tap order. image_words runs a pass over a column's words (a
// pass with words2(x0, x1, h0, h1, out) gets them two at a time) and returns the walk's `sum` for the pass's total
// (zero: an image column has no padding taps). Below also has partial(sum) (its sums, unreduced) and
// total_of(partial, beta_1) (its total from them).
template <class Pass, class = void>
struct HasWords2 : std::false_type {};
template <class Pass>
struct HasWords2<Pass, std::void_t<decltype(&Pass::words2)>> : std::true_type {};

template <class Pass>
double image_words(Pass& pass, const ImageColumns& im, const float* x, const word_t* words, word_t* row) {
  const std::size_t gw = im.C / kWordBits;
  double sum = 0.0;
  if constexpr (HasWords2<Pass>::value) {
    // Word j of the column in tap-major order (word w of tap t, stepped without a division); whole words, two at
    // a time.
    const std::size_t nw = im.taps * gw;
    std::size_t t = 0, w = 0;
    auto next = [&] {
      const float* p = x + im.x_off[t] + w * kWordBits;
      if (++w == gw) w = 0, ++t;
      return p;
    };
    std::size_t j = 0;
    for (; j + 2 <= nw; j += 2) {
      const float* x0 = next();
      const float* x1 = next();
      pass.words2(x0, x1, words[im.word_off[j]], words[im.word_off[j + 1]], row + j);
    }
    if (j < nw) row[j] = pass.word(next(), 0, kWordBits, sum, words[im.word_off[j]]);
  } else {
    for (std::size_t t = 0; t < im.taps; ++t) {
      const float* xt = x + im.x_off[t];
      for (std::size_t w = 0; w < gw; ++w) {
        const word_t h1 = words ? words[im.word_off[t * gw + w]] : 0;
        row[t * gw + w] = pass.word(xt, w * kWordBits, (w + 1) * kWordBits, sum, h1);
      }
    }
  }
  return sum;
}

// A taps pass (word(x, i0, i1, sum)) in image_words' form.
template <class Chain>
struct ChainWords {
  Chain pass;
  word_t word(const float* x, std::size_t i0, std::size_t i1, double& sum, word_t) { return pass.word(x, i0, i1, sum); }
  double total(double sum) const { return pass.total(sum); }
};

// Columns per group of image_walk's order-2 passes (8 ran 64-channel layers a few percent faster than 4, 16 or 32:
// docs/KERNELS.md round 21).
constexpr std::size_t kImageGroup = 8;

// Columns whose box sums image_walk adds side by side.
constexpr std::size_t kBoxLanes = 8;

// The box sums of kBoxLanes columns whose first taps' pixel sums lie consecutively from `sums`: s[l] = the sums at
// off[t] + l added in tap order t = 0..taps-1 (box_beta's sums, side by side).
inline void box_sums(const double* sums, const std::int64_t* off, std::size_t taps, double* s) {
  for (std::size_t l = 0; l < kBoxLanes; ++l) s[l] = 0.0;
  for (std::size_t t = 0; t < taps; ++t)
    for (std::size_t l = 0; l < kBoxLanes; ++l) s[l] += sums[off[t] + static_cast<std::int64_t>(l)];
}

// band2_thresholds (quantize.h) column by column, kBoxLanes columns' box sums side by side.
inline bool band2_threshold_row(const double* sums, const std::int64_t* off, std::size_t ow, double n,
                                std::size_t ord, double* betas, float* pos, float* neg) {
  bool any = false;
  for (std::size_t ox0 = 0; ox0 < ow; ox0 += kBoxLanes) {
    const std::size_t nl = ow - ox0 < kBoxLanes ? ow - ox0 : kBoxLanes;
    double box[kBoxLanes] = {};
    if (nl == kBoxLanes) {
      box_sums(sums + ox0, off, 9, box);
    } else {
      for (std::size_t k = 0; k < 9; ++k)
        for (std::size_t j = 0; j < nl; ++j) box[j] += sums[off[k] + static_cast<std::int64_t>(ox0 + j)];
    }
    for (std::size_t j = 0; j < nl; ++j) {
      const std::size_t ox = ox0 + j;
      const double b = box[j] / n;
      betas[ox * ord] = b;
      const Threshold32 th(b);
      const bool e = th.up == th.down;  // beta_1 is a float32 value
      pos[ox] = th.up;
      neg[ox] = e ? std::nextafter(th.up, std::numeric_limits<float>::infinity()) : th.up;
      any |= e;
    }
  }
  return any;
}

template <class Pass, class = void>
struct HasTriple : std::false_type {};
template <class Pass>
struct HasTriple<Pass, std::void_t<decltype(&Pass::triple)>> : std::true_type {};

// A 3 x 3 window's steps (image_walk's triples): from a tap to the one a row below, in the NHWC copy's floats
// (xrow) and in the image's words (wrow), and from a pixel's word w to its word w + 1 (wplane: a plane of the image).
struct TripleStrides {
  std::int64_t xrow = 0, wrow = 0, wplane = 0;
};

// Whether an image's 9 taps are a 3 x 3 window (dilation 1) of pixels of whole words, and then its strides in `s`:
// tap (r, j) is r rows and j pixels from tap 0 in the NHWC copy, and its word w is w planes, r rows and j pixels
// from tap 0's first word in the image.
inline bool triple_geometry(const ImageColumns& im, TripleStrides& s) {
  if (im.taps != 9 || im.C % kWordBits != 0) return false;
  const std::size_t gw = im.C / kWordBits;
  const std::int64_t C = static_cast<std::int64_t>(im.C), xrow = im.x_off[3] - im.x_off[0];
  const std::int64_t wrow = im.word_off[3 * gw] - im.word_off[0], wplane = gw > 1 ? im.word_off[1] - im.word_off[0] : 0;
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t j = 0; j < 3; ++j) {
      const std::size_t t = static_cast<std::size_t>(r * 3 + j);
      if (im.x_off[t] != im.x_off[0] + r * xrow + j * C) return false;
      for (std::size_t w = 0; w < gw; ++w)
        if (im.word_off[t * gw + w] != im.word_off[0] + static_cast<std::int64_t>(w) * wplane + r * wrow + j)
          return false;
    }
  s = {xrow, wrow, wplane};
  return true;
}

// Orders 3..order of image columns whose rows H_2 and betas beta_1, beta_2 are written (image_walk, band2_walk).
template <class Chain, class Third>
void image_orders3(const ImageColumns& im, const std::int64_t* pix, std::size_t count, int order, word_t* bits,
                   std::size_t ldbits, double* betas) {
  const std::size_t gw = im.C / kWordBits, kw = im.taps * gw, ord = static_cast<std::size_t>(order);
  for (std::size_t i = 0; i < count && order > 2; ++i) {
    double* b = betas + i * ord;
    const float* x = im.x + pix[i] * static_cast<std::int64_t>(im.C);
    word_t* row = bits + i * ldbits;
    int k = 3;
    if constexpr (!std::is_void_v<Third>) {
      const Threshold3 th(b[0], b[1]);
      if (th.ok) {  // H_3 from H_2's words (row) into row + kw, tap by tap
        Third pass(th, b[0], b[1]);
        for (std::size_t t = 0, j = 0; t < im.taps; ++t)
          for (std::size_t w = 0; w < gw; ++w, ++j) row[kw + j] = pass.word(x + im.x_off[t] + w * kWordBits, row[j]);
        b[2] = pass.total() / im.n;
        k = 4;
      }
    }
    for (; k <= order; ++k) {
      ChainWords<Chain> pass{Chain(b, k - 1)};
      word_t* rk = row + static_cast<std::size_t>(k - 2) * kw;
      b[k - 1] = pass.total(image_words(pass, im, x, nullptr, rk)) / im.n;
    }
  }
}

// Third: a pass for order 3 from Threshold3 (Third(th, beta_1, beta_2); word(x, h2) = H_3 of the whole word of 64
// values at x given the word h2 of their H_2; total() = sum |r_2| over the column), or void: the double chain.
template <class Below, class Exact, class Chain, class Third = void>
void image_walk(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word, std::size_t count,
                int order, word_t* bits, std::size_t ldbits, double* betas) {
  const std::size_t ord = static_cast<std::size_t>(order);
  // Every column's beta_1 first: its box sum and division are a chain of ~40 cycles that the passes of a column
  // wait on, and one column's passes are more instructions than the CPU looks ahead, so computed inside the
  // column loop it would stall every column; here eight columns' chains run side by side (each its taps in tap
  // order: the same sums), their pixel sums consecutive where the columns' pixels are.
  std::size_t i = 0;
  for (; i + kBoxLanes <= count; i += kBoxLanes) {
    double s[kBoxLanes] = {};
    // Offsets grow by at least one from column to column, so the last one's settles whether all are consecutive.
    if (pix[i + kBoxLanes - 1] == pix[i] + static_cast<std::int64_t>(kBoxLanes - 1)) {
      box_sums(im.sums + pix[i], im.pix_off, im.taps, s);
    } else {
      for (std::size_t t = 0; t < im.taps; ++t)
        for (std::size_t l = 0; l < kBoxLanes; ++l) s[l] += im.sums[pix[i + l] + im.pix_off[t]];
    }
    for (std::size_t l = 0; l < kBoxLanes; ++l) betas[(i + l) * ord] = s[l] / im.n;
  }
  for (; i < count; ++i) {
    const double* sums = im.sums + pix[i];
    double s = 0.0;
    for (std::size_t t = 0; t < im.taps; ++t) s += sums[im.pix_off[t]];
    betas[i * ord] = s / im.n;
  }
  // Order 2 in groups of columns, each Below pass's total (a reduction and a division: the same kind of chain)
  // taken after the group's last column, so those chains overlap the next columns' words too. (Exact, beta_1 a
  // float32 value, is rare: its total is taken at once.) A Below with triple(...) takes three adjacent columns of
  // a 3 x 3 window at once where it can (groups of 9 then): their passes share the loads of the pixels they share.
  constexpr bool kTriple = HasTriple<Below>::value;
  constexpr std::size_t kGroup = kTriple ? 9 : kImageGroup;
  const std::size_t gw = im.C / kWordBits;
  bool triples = false;
  TripleStrides st;
  if constexpr (kTriple) triples = Below::takes_triple(gw) && triple_geometry(im, st);
  typename Below::Partial partial[kGroup];
  bool below[kGroup];
  for (std::size_t i0 = 0; i0 < count; i0 += kGroup) {
    const std::size_t g = count - i0 < kGroup ? count - i0 : kGroup;
    for (std::size_t q = 0; q < g; ++q) {
      const std::size_t i = i0 + q;
      if constexpr (kTriple) {
        if (triples && q + 3 <= g && pix[i + 1] == pix[i] + 1 && pix[i + 2] == pix[i] + 2 &&
            word[i + 1] == word[i] + 1 && word[i + 2] == word[i] + 2) {
          const Threshold32 th[3] = {Threshold32(betas[i * ord]), Threshold32(betas[(i + 1) * ord]),
                                     Threshold32(betas[(i + 2) * ord])};
          if (th[0].up != th[0].down && th[1].up != th[1].down && th[2].up != th[2].down) {
            word_t* const rows[3] = {bits + i * ldbits, bits + (i + 1) * ldbits, bits + (i + 2) * ldbits};
            Below::triple(th, im.x + pix[i] * static_cast<std::int64_t>(im.C) + im.x_off[0], st.xrow,
                          im.words + word[i] + im.word_off[0], st.wrow, st.wplane, gw, rows, partial + q);
            below[q] = below[q + 1] = below[q + 2] = true;
            q += 2;
            continue;
          }
        }
      }
      double* b = betas + i * ord;
      const Threshold32 th(b[0]);
      const float* x = im.x + pix[i] * static_cast<std::int64_t>(im.C);
      const word_t* words = im.words + word[i];
      word_t* row = bits + i * ldbits;
      below[q] = th.up != th.down;
      if (below[q]) {
        Below pass(th, b[0]);
        partial[q] = pass.partial(image_words(pass, im, x, words, row));
      } else {
        Exact pass(th);
        b[1] = pass.total(image_words(pass, im, x, words, row)) / im.n;
      }
    }
    for (std::size_t q = 0; q < g; ++q)
      if (below[q]) betas[(i0 + q) * ord + 1] = Below::total_of(partial[q], betas[(i0 + q) * ord]) / im.n;
  }
  image_orders3<Chain, Third>(im, pix, count, order, bits, ldbits, betas);
}

// The slot of a pixel (quantize.h Band2Row) through which the column reads it at tap t = 3 q + s: 4 q + 2 - s.
constexpr std::size_t band2_slot(std::size_t t) { return 4 * (t / 3) + 2 - t % 3; }

// band2_walk's combine for GW words per pixel (unrolled over taps and words; offsets per tap computed once per call).
template <std::size_t GW>
void band2_combine(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                   const std::int64_t* pix, const std::int64_t* word, std::size_t count, std::size_t ord, word_t* bits,
                   std::size_t ldbits, std::size_t ldword, double* betas) {
  std::int64_t loff[9], soff[9], woff[9 * GW];
  for (std::size_t t = 0; t < 9; ++t) {
    const std::int64_t slot = static_cast<std::int64_t>(band2_slot(t));
    loff[t] = im.pix_off[t] * static_cast<std::int64_t>(GW * kBand2Slots) + slot;
    soff[t] = im.pix_off[t] * static_cast<std::int64_t>(kBand2Slots) + slot;
    for (std::size_t w = 0; w < GW; ++w) woff[t * GW + w] = im.word_off[t * GW + w];
  }
  for (std::size_t i = 0; i < count; ++i) {
    word_t* row = bits + i * ldbits;
    const word_t* h1 = im.words + word[i];
    const word_t* lp = l + (pix[i] - lbase) * static_cast<std::int64_t>(GW * kBand2Slots);
    const double* sp = sb + (pix[i] - lbase) * static_cast<std::int64_t>(kBand2Slots);
    std::uint64_t below = 0;
    double s = 0.0;
#pragma GCC unroll 9
    for (std::size_t t = 0; t < 9; ++t) {
#pragma GCC unroll 8
      for (std::size_t w = 0; w < GW; ++w) {
        const word_t lw = lp[loff[t] + static_cast<std::int64_t>(w * kBand2Slots)];
        row[(t * GW + w) * ldword] = h1[woff[t * GW + w]] ^ lw;
        below += static_cast<std::uint64_t>(__builtin_popcountll(lw));
      }
      s += sp[soff[t]];
    }
    const double b1 = betas[i * ord];
    betas[i * ord + 1] = 2.0 * (static_cast<double>(below) * b1 - s) / im.n;
  }
}

// band2_combine for one word per pixel (64 channels) where the taps are a 3 x 3 window at stride 1 of the padded
// image, as band2_route takes them (tap (q, s) at q wp + s pixels, its word too): each window row's slots, sums and
// words through one pointer and the taps' constant offsets from it (slot 4 q + 2 - s of pixel q wp + s is word
// q (12 wp + 4) + 11 s + 2), instead of 27 offsets that the general form keeps on the stack and reloads per column.
// The same operations in the same order. False (nothing done) for another tap layout.
inline bool band2_combine_window1(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                                  const std::int64_t* pix, const std::int64_t* word, std::size_t count,
                                  std::size_t ord, word_t* bits, std::size_t ldbits, std::size_t ldword,
                                  double* betas) {
  const std::int64_t wp = im.pix_off[3];
  for (std::size_t t = 0; t < 9; ++t) {
    const std::int64_t at = static_cast<std::int64_t>(t / 3) * wp + static_cast<std::int64_t>(t % 3);
    if (im.pix_off[t] != at || im.word_off[t] != at) return false;
  }
  constexpr std::int64_t S = static_cast<std::int64_t>(kBand2Slots);
  const std::int64_t row_slots = wp * S + 4;  // from tap (q, s) to tap (q + 1, s) in l and sb
  for (std::size_t i = 0; i < count; ++i) {
    word_t* row = bits + i * ldbits;
    const word_t* h1 = im.words + word[i];
    const word_t* lp = l + (pix[i] - lbase) * S + 2;
    const double* sp = sb + (pix[i] - lbase) * S + 2;
    std::uint64_t below = 0;
    double s = 0.0;
#pragma GCC unroll 3
    for (std::int64_t q = 0; q < 3; ++q) {
      const word_t* lq = lp + q * row_slots;
      const double* sq = sp + q * row_slots;
      const word_t* hq = h1 + q * wp;
#pragma GCC unroll 3
      for (std::int64_t c = 0; c < 3; ++c) {
        const word_t lw = lq[11 * c];
        row[static_cast<std::size_t>(3 * q + c) * ldword] = hq[c] ^ lw;
        below += static_cast<std::uint64_t>(__builtin_popcountll(lw));
        s += sq[11 * c];
      }
    }
    const double b1 = betas[i * ord];
    betas[i * ord + 1] = 2.0 * (static_cast<double>(below) * b1 - s) / im.n;
  }
  return true;
}

// band2_columns (quantize.h): per column its 9 taps' words of L-bits and sums from the pixels' slots (tap (q, s) reads
// slot 4 q + 2 - s of its pixel), H_2 = H_1 XOR L (word w of column i's at bits[i * ldbits + w * ldword]), beta_2 =
// 2 (n_l beta_1 - S_l) / n (the sums in tap order), then orders 3.. as image_walk computes them (ldword = 1 there).
template <class Chain, class Third>
void band2_walk(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order, word_t* bits,
                std::size_t ldbits, std::size_t ldword, double* betas) {
  const std::size_t gw = im.C / kWordBits, ord = static_cast<std::size_t>(order);
  switch (gw) {
    case 1:
      if (!band2_combine_window1(im, l, sb, lbase, pix, word, count, ord, bits, ldbits, ldword, betas))
        band2_combine<1>(im, l, sb, lbase, pix, word, count, ord, bits, ldbits, ldword, betas);
      break;
    case 2: band2_combine<2>(im, l, sb, lbase, pix, word, count, ord, bits, ldbits, ldword, betas); break;
    case 4: band2_combine<4>(im, l, sb, lbase, pix, word, count, ord, bits, ldbits, ldword, betas); break;
    case 8: band2_combine<8>(im, l, sb, lbase, pix, word, count, ord, bits, ldbits, ldword, betas); break;
    default:
      for (std::size_t i = 0; i < count; ++i) {
        word_t* row = bits + i * ldbits;
        const word_t* h1 = im.words + word[i];
        std::uint64_t below = 0;
        double s = 0.0;
        for (std::size_t t = 0; t < 9; ++t) {
          const std::size_t slot = band2_slot(t);
          const std::int64_t p = pix[i] - lbase + im.pix_off[t];
          const word_t* lp = l + static_cast<std::size_t>(p) * gw * kBand2Slots + slot;
          for (std::size_t w = 0; w < gw; ++w) {
            const word_t lw = lp[w * kBand2Slots];
            row[(t * gw + w) * ldword] = h1[im.word_off[t * gw + w]] ^ lw;
            below += static_cast<std::uint64_t>(__builtin_popcountll(lw));
          }
          s += sb[static_cast<std::size_t>(p) * kBand2Slots + slot];
        }
        betas[i * ord + 1] = 2.0 * (static_cast<double>(below) * betas[i * ord] - s) / im.n;
      }
  }
  image_orders3<Chain, Third>(im, pix, count, order, bits, ldbits, betas);
}

// to_nhwc (quantize.h) for blocks of B channels x B pixels, V's transpose in registers
// (V::transpose(const float* const* rows, n, const float* scale, const float* shift, float* dst, ldd): B rows of
// n <= B values, each through its channel's affine when scale is given, written as n rows of B values at dst with
// stride ldd; a row's tail of fewer than B pixels is one such call with masked loads), the channels past the
// last whole block of B value by value.
inline float nhwc_value(const float* src, std::size_t cstride, std::size_t c, std::size_t w, const float* scale,
                        const float* shift) {
  const float v = src[c * cstride + w];
  return scale ? v * scale[c] + shift[c] : v;
}

template <class V>
void to_nhwc_walk(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                  const float* shift, float* dst, std::size_t ldd) {
  constexpr std::size_t B = V::kBlock;
  const std::size_t cb = nchan / B * B, wb = W / B * B;
  for (std::size_t c0 = 0; c0 < cb; c0 += B) {
    const float* rows[B];
    for (std::size_t c = 0; c < B; ++c) rows[c] = src + (c0 + c) * cstride;
    for (std::size_t w0 = 0; w0 < W; w0 += B) {
      const float* at[B];
      for (std::size_t c = 0; c < B; ++c) at[c] = rows[c] + w0;
      V::transpose(at, w0 < wb ? B : W - wb, scale ? scale + c0 : nullptr, scale ? shift + c0 : nullptr,
                   dst + w0 * ldd + c0, ldd);
    }
  }
  for (std::size_t c = cb; c < nchan; ++c)
    for (std::size_t w = 0; w < W; ++w) dst[w * ldd + c] = nhwc_value(src, cstride, c, w, scale, shift);
}

}  // namespace
}  // namespace horq
