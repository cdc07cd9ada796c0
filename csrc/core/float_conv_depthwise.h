// Depthwise float convolutions (float_conv.h with one input channel per group: MobileNet's 3x3 layers, EfficientNet's
// 5x5, ConvNeXt's 7x7) on kernels of their own. The grouped direct path (float_conv.cpp grouped_direct) had run them on
// the row kernel, whose register blocks hold 4 output channels that each read a channel of their own: every tap loaded
// its input vectors for one channel only, and the block's results went through a scratch tile and a scalar epilogue.
// Here a block is R output rows x P vectors of one channel, its epilogue (+ bias, the floor, the ceiling) done in
// registers and stored in place, in one of two forms:
//   * a 3x3 kernel of dilation 1 at one stride s of 1 or 2 (DepthwisePlan::shared3): the 9 weights in registers, and
//     the block's taps by input row, each input vector loaded once for the (up to 3) output rows that read it (input
//     row k is tap row k - r s of output row r);
//   * any other kernel, stride and dilation: tap by tap, one broadcast weight for the block's R x P chains.
//
// The same operations per output as the row kernel: a chain of multiply-adds from +0.0 over the taps in (i, j) order
// (fused on the x86 paths, V::madd), then + bias, max(floor, .) and min(ceiling, .). So every path gives the bits the
// grouped call gave before, and those of an ungrouped call on the channel alone (tests/kernels/
// test_kernels_float_conv.py; the AVX-512 kernels under the emulation harness against a scalar chain).
//
// Input: the channel's padded rows as float_conv.cpp's copy lays them out (padded row r at xp + r * row_floats, its
// column phase ph at + ph * u, padded column v sw + ph at index v of its phase): tap (i, j) of output (oy, ox) reads
// padded row oy sh + i dh at koff[(i, j)] + ox from that row's start. Output: rows of ow floats, one after the other.
// Each output row's last vector is stored whole where it ends before y_end: its lanes past ow land on the next
// row(s), which the kernel stores later (the vector blocks of R rows are computed last one first, the rows of a block
// in order), so only stores that would pass y_end are cut to their floats.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/types.h"

namespace horq {

struct DepthwisePlan {
  std::size_t kh = 0, kw = 0;          // kernel
  std::size_t sh = 1;                  // row stride (the column stride is in koff and the copy's phases)
  std::size_t ow = 0;                  // output row width
  std::size_t u = 0, row_floats = 0;   // floats of a padded row's column phase, and of the row (sw * u)
  std::vector<std::int64_t> koff;      // per tap (i, j): its offset from an output's first tap (dilation included)
  const float* w = nullptr;            // m x kh * kw, rows in (i, j) order
  const float* bias = nullptr;         // m values or nullptr
  const float* floor = nullptr;        // m values or nullptr
  const float* ceiling = nullptr;      // m values or nullptr
  bool shared3 = false;                // a 3x3 kernel of dilation 1 and one stride of 1 or 2: the shared-row blocks
};

// Output rows [0, rows) of output channel o from its input channel's padded rows at xp (padded row 0: the one output
// row 0's first tap reads), into y; nothing at or past y_end is written.
using float_conv_depthwise_fn = void (*)(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows,
                                         float* y, const float* y_end);

void float_conv_depthwise_generic(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                                  const float* y_end);
void float_conv_depthwise_avx2(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                               const float* y_end);
void float_conv_depthwise_avx512(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                                 const float* y_end);

namespace float_conv {

// The epilogue of a block's R x P accumulators (+ bias, max(floor, .), min(ceiling, .), where given) and their stores:
// row r's vector q at y + r ow + x0 + q L, whole where it ends before y_end, else only its floats before y_end.
template <class V, int R, int P>
[[gnu::always_inline]] inline void depthwise_store(const DepthwisePlan& p, typename V::reg (&acc)[R][P],
                                                   const typename V::reg (&epi)[3], float* y, std::size_t x0,
                                                   const float* y_end) {
  using reg = typename V::reg;
  constexpr std::size_t L = V::kLanes;
  const bool bias = p.bias != nullptr, floor = p.floor != nullptr, ceiling = p.ceiling != nullptr;
  const std::size_t ow = p.ow;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) {
      reg v = acc[r][q];
      if (bias) v = V::add(v, epi[0]);
      if (floor) v = V::max(epi[1], v);
      if (ceiling) v = V::min(epi[2], v);
      float* dst = y + static_cast<std::size_t>(r) * ow + x0 + q * L;
      const std::size_t room = static_cast<std::size_t>(y_end - dst);  // > 0: dst is an output of the call
      if (room >= L) {
        V::store(dst, v);
      } else {  // the call's last floats: only those before y_end
        alignas(64) float t[L];
        V::store(t, v);
        for (std::size_t l = 0; l < room; ++l) dst[l] = t[l];
      }
    }
}

// A 3x3 kernel at stride S (dilation 1): R output rows x P vectors from x0 on. Input row k is tap row i = k - r S of
// output row r, so each input vector is loaded once for the (up to 3) rows that read it; for each output row its taps
// still come in (i, j) order. wr: the 9 weights broadcast.
template <class V, int S, int R, int P>
[[gnu::always_inline]] inline void depthwise_block3(const DepthwisePlan& p, const float* in,
                                                    const typename V::reg (&wr)[9], const typename V::reg (&epi)[3],
                                                    float* y, std::size_t x0, const float* y_end) {
  using reg = typename V::reg;
  constexpr std::size_t L = V::kLanes;
  const std::size_t rf = p.row_floats, u = p.u;
  reg acc[R][P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[r][q] = V::zero();
#pragma GCC unroll 16
  for (int k = 0; k < (R - 1) * S + 3; ++k)
#pragma GCC unroll 3
    for (int j = 0; j < 3; ++j) {
      const float* src = in + static_cast<std::size_t>(k) * rf + (j % S) * u + j / S + x0;
      reg v[P];
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) v[q] = V::load(src + q * L);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int i = k - r * S;
        if (i < 0 || i >= 3) continue;
#pragma GCC unroll 8
        for (int q = 0; q < P; ++q) acc[r][q] = V::madd(wr[i * 3 + j], v[q], acc[r][q]);
      }
    }
  depthwise_store<V, R, P>(p, acc, epi, y, x0, y_end);
}

// Any other kernel: R output rows x P vectors from x0 on, tap by tap (p.koff), one broadcast weight for the block's
// R x P chains.
template <class V, int R, int P>
[[gnu::always_inline]] inline void depthwise_block(const DepthwisePlan& p, const float* in, const float* w,
                                                   const typename V::reg (&epi)[3], float* y, std::size_t x0,
                                                   const float* y_end) {
  using reg = typename V::reg;
  constexpr std::size_t L = V::kLanes;
  const std::size_t rstep = p.sh * p.row_floats, taps = p.kh * p.kw;
  const std::int64_t* koff = p.koff.data();
  reg acc[R][P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[r][q] = V::zero();
  for (std::size_t t = 0; t < taps; ++t) {
    const reg wv = V::set1(w[t]);
    const float* src = in + koff[t] + x0;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) acc[r][q] = V::madd(wv, V::load(src + r * rstep + q * L), acc[r][q]);
  }
  depthwise_store<V, R, P>(p, acc, epi, y, x0, y_end);
}

// f(std::integral_constant<int, n>{}) for n in [1, N].
template <int N, class F>
[[gnu::always_inline]] inline void with_constant(std::size_t n, F&& f) {
  if constexpr (N > 1) {
    if (n < static_cast<std::size_t>(N)) return with_constant<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}

// The rows in blocks of R (the last rows % R one block of fewer), each row's vectors in blocks of up to PMAX as even as
// they go, a band of R rows' blocks last one first (see the top of this file); block(rows, vectors, in, yr, x0) with
// rows and vectors as std::integral_constant.
template <class V, int R, int PMAX, class Block>
[[gnu::always_inline]] inline void depthwise_rows(const DepthwisePlan& p, const float* xp, std::size_t rows, float* y,
                                                  Block&& block) {
  constexpr std::size_t L = V::kLanes;
  const std::size_t nv = ceil_div(p.ow, L), nb = ceil_div(nv, static_cast<std::size_t>(PMAX)), base = nv / nb;
  const std::size_t extra = nv % nb;
  for (std::size_t r0 = 0; r0 < rows; r0 += R) {
    const float* in = xp + r0 * p.sh * p.row_floats;
    float* yr = y + r0 * p.ow;
    const std::size_t nr = rows - r0 < static_cast<std::size_t>(R) ? rows - r0 : R;
    // Block bi holds base (+1 for the first `extra`) vectors: it starts at vector bi * base + min(bi, extra).
    for (std::size_t bi = nb; bi-- > 0;) {
      const std::size_t pv = base + (bi < extra ? 1 : 0), x0 = (bi * base + (bi < extra ? bi : extra)) * L;
      with_constant<R>(nr, [&](auto rows_c) __attribute__((always_inline)) {
        with_constant<PMAX>(pv, [&](auto vectors_c) __attribute__((always_inline)) {
          block(rows_c, vectors_c, in, yr, x0);
        });
      });
    }
  }
}

// A 3x3 kernel of stride S (p.shared3) in blocks of R rows x up to P vectors, its weights in registers.
template <class V, int S, int R, int P>
void depthwise3(const DepthwisePlan& p, const float* xp, const float* w, const typename V::reg (&epi)[3],
                std::size_t rows, float* y, const float* y_end) {
  typename V::reg wr[9];
  for (int t = 0; t < 9; ++t) wr[t] = V::set1(w[t]);
  depthwise_rows<V, R, P>(p, xp, rows, y, [&](auto rows_c, auto vectors_c, const float* in, float* yr,
                                             std::size_t x0) __attribute__((always_inline)) {
    depthwise_block3<V, S, decltype(rows_c)::value, decltype(vectors_c)::value>(p, in, wr, epi, yr, x0, y_end);
  });
}

// Any other kernel in blocks of R rows x up to PMAX vectors, tap by tap.
template <class V, int R, int PMAX>
void depthwise_taps(const DepthwisePlan& p, const float* xp, const float* w, const typename V::reg (&epi)[3],
                    std::size_t rows, float* y, const float* y_end) {
  depthwise_rows<V, R, PMAX>(p, xp, rows, y, [&](auto rows_c, auto vectors_c, const float* in, float* yr,
                                                 std::size_t x0) __attribute__((always_inline)) {
    depthwise_block<V, decltype(rows_c)::value, decltype(vectors_c)::value>(p, in, w, epi, yr, x0, y_end);
  });
}

// float_conv_depthwise_fn on register V: blocks of R3 rows x up to P3 vectors for the 3x3 kernels of p.shared3, R x
// up to PMAX for the others.
template <class V, int R3, int P3, int R, int PMAX>
void depthwise(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y, const float* y_end) {
  const float* w = p.w + o * p.kh * p.kw;
  const typename V::reg epi[3] = {V::set1(p.bias ? p.bias[o] : 0.0f), V::set1(p.floor ? p.floor[o] : 0.0f),
                                  V::set1(p.ceiling ? p.ceiling[o] : 0.0f)};
  if (!p.shared3) {
    depthwise_taps<V, R, PMAX>(p, xp, w, epi, rows, y, y_end);
  } else if (p.sh == 1) {
    depthwise3<V, 1, R3, P3>(p, xp, w, epi, rows, y, y_end);
  } else {
    depthwise3<V, 2, R3, P3>(p, xp, w, epi, rows, y, y_end);
  }
}

}  // namespace float_conv
}  // namespace horq
