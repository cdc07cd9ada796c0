// Float convolution for the runtime's full-precision layers (a network's first layer: few input channels, a large
// map), computed directly from the input instead of through an unfolded column matrix and a BLAS GEMM: for a 7x7
// stride-2 stem over 3x224x224 the unfolded matrix is 147 x 12544 floats (7.4 MB), written once and read back
// by the GEMM, slower than the arithmetic itself.
//
// Layout. The input of each image is copied once, zero-padded, with every row split into its sw column phases
// (xp[c][r][phase][u] = padded x[c][r][u sw + phase]), so the input values that the output pixels ox, ox + 1,
// ... read through one tap are consecutive floats of one phase row at any stride. Weights are transposed to
// blocks of kFloatConvRows output channels, wt[o / R][k][o % R] (k = (c, i, j), the reference's order; o padded
// with zeros to a whole block), so a block's weights are read in one contiguous run.
//
// Arithmetic. Output (o, oy, ox) = sum over k of w[o][k] x_k, the products added in k order into one float32
// accumulator per output (SIMD lanes run over output pixels; each output is one lane's chain): the AVX2 and
// AVX-512 paths use fused multiply-adds and give the same bits; the portable path multiplies, then adds (one
// rounding more per term), so it agrees with them to float rounding. Then, as the runtime's numpy steps do,
// y += bias[o], y = max(y, floor[o]) and y = min(y, ceiling[o]) in float32 (numpy.maximum's and numpy.minimum's
// rule: NaN kept; floor and ceiling together are numpy.clip's, a fused hardtanh). Each output row is one task, so
// results do not depend on the thread count.
//
// A ResNet stem's geometry also runs as Winograd tiles (float_conv_winograd.h; FloatConvAlgorithm below): ~4x fewer
// multiply-adds, a few 1e-6 of sum |w x| more rounding.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace horq {

// What every output row of one call reads (float_conv.cpp builds it).
struct FloatConvPlan {
  std::size_t k = 0;           // taps of a receptive field: C * kh * kw
  std::size_t m = 0;           // output channels
  std::size_t oh = 0, ow = 0;  // output size
  std::size_t y_plane = 0;     // floats between two output channels of the row's output (oh * ow in y)
  std::size_t row_step = 0;    // floats between the phase rows of output rows oy and oy + 1 (sh * sw * U)
  std::vector<std::int64_t> koff;  // per tap: its phase row and column offset in an image's copy
  std::vector<float> wt;           // ceil(m / kFloatConvRows) x k x kFloatConvRows
  // A grouped convolution (groups > 1): output channel o reads group o / group_out's C / groups input channels,
  // which start channel_offset[o] floats into the copy (k and koff are one group's); group_out 0: one group.
  std::size_t group_out = 0;
  std::vector<std::int64_t> channel_offset;
  const float* bias = nullptr;     // m values or nullptr
  const float* floor = nullptr;    // m values or nullptr
  const float* ceiling = nullptr;  // m values or nullptr
};

// Output row oy of channels [o_begin, o_end) of one image (o_begin a multiple of 2 kFloatConvRows): xp is that
// image's padded phase copy (of a grouped call: from the first input channel of o_begin's group on), its row oy
// * sh at xp + oy * row_step; channel o's ow values go to y + o * p.y_plane.
using float_conv_row_fn = void (*)(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y,
                                   std::size_t o_begin, std::size_t o_end);

void float_conv_row_generic(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                            std::size_t o_end);
void float_conv_row_avx2(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                         std::size_t o_end);
void float_conv_row_avx512(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                           std::size_t o_end);

// Block height (output channels per register block) of each path.
constexpr std::size_t kFloatConvRows = 4;
// The widest path's floats per register: an image's copy holds zeros up to whole vectors of this many output
// pixels past the last one (row() reads them into unused lanes).
constexpr std::size_t kFloatConvMaxLanes = 16;

struct KernelTable;
struct ConvGeometry;

// How a call computes: `direct` as above; `winograd` by Winograd F(3x3, 4x4) tiles (float_conv_winograd.h; the
// geometry must allow it: float_conv_winograd_geometry) where the weights and the inputs a chunk of images reads
// are finite and below winograd::kLimit, else directly (the whole call, or that chunk); `automatic` picks winograd
// on the avx2 and avx512 paths (the tiles measured faster on both: docs/KERNELS.md rounds 15 and 17; generic's are
// a scalar reference) where the geometry allows it and it pays (float_conv_winograd_pays: kh * kw >= 10 s^2,
// out_w >= 24), else direct.
enum class FloatConvAlgorithm { automatic, direct, winograd };

// Whether the Winograd tiles take geometry g: dilation 1, one stride s in {1, 2} both ways, kh and kw <= 4 s and
// C * s * s <= 16 phase channels.
bool float_conv_winograd_geometry(const ConvGeometry& g);
// Whether `automatic` takes them there (kh * kw >= 10 s^2: the direct kernel's C * kh * kw multiply-adds per
// output at least 2.5 times the tiles' 4 C s^2, the transforms' cost on top) and out_w >= 24 (8 tiles: a whole
// AVX2 vector of them; a 16-wide ResNet stem output ran slower on the tiles).
bool float_conv_winograd_pays(const ConvGeometry& g);

// y (N, m, out_h, out_w) = the convolution of x (N, C, H, W) in geometry g with weights w (m x C/groups*kh*kw, rows
// in (c, i, j) order), then + bias, max(., floor) and min(., ceiling) per output channel (each optional). With
// groups > 1 (dividing C and m), output channel o reads input channels [o / (m / groups) * C / groups, ...) only (a
// depthwise convolution: groups = C, on the path's depthwise kernel, float_conv_depthwise.h), always directly. Throws
// std::invalid_argument for FloatConvAlgorithm::winograd on a geometry it does not take (groups > 1 included) and for
// groups that do not divide C and m.
void float_conv2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                  const float* bias, const float* floor, const float* ceiling, float* y,
                  FloatConvAlgorithm algorithm = FloatConvAlgorithm::automatic, std::size_t groups = 1);

// float_conv2d, then max_pool2d (pool.h) of its output in geometry pg (pg.height/width = g.out_h/out_w,
// pg.channels = m) with the pool's floor (nullptr, one value or m): y (N, m, pg.out_h, pg.out_w), bitwise the two
// calls' result (with the same algorithm). The convolution's rows go through a ring of the rows one pooled row
// reads, in cache, instead of the whole map through memory (a ResNet stem's 64 x 112 x 112 output is 3.2 MB).
void float_conv2d_pool(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                       const float* bias, const float* floor, const float* ceiling, const ConvGeometry& pg,
                       const float* pool_floor, std::size_t npool_floor, float* y,
                       FloatConvAlgorithm algorithm = FloatConvAlgorithm::automatic, std::size_t groups = 1);

namespace float_conv {

// V: a SIMD register of V::kLanes floats with zero(), load(p), set1(v), madd(a, b, acc) (acc + a * b, fused or
// not as the path says) and store(p, r).
// B consecutive weight blocks (B * kFloatConvRows channels, block b's weights at wt + b * k * kFloatConvRows)
// against P vectors of pixels. With K > 0, k is K and its loop over the taps unrolled (the Winograd tiles' 3, 6 or 12
// phase channels per transform element, float_conv_winograd.h).
template <class V, int B, int P, int K = 0>
[[gnu::always_inline]] inline void block(const float* in, const std::int64_t* koff, const float* wt, std::size_t k,
                                         float* out, std::size_t ld) {
  constexpr int R = static_cast<int>(kFloatConvRows), BR = B * R;
  constexpr std::size_t L = V::kLanes;
  if constexpr (K > 0) k = K;
  typename V::reg acc[BR][P];
#pragma GCC unroll 16
  for (int r = 0; r < BR; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[r][q] = V::zero();
  const auto tap = [&](std::size_t t) __attribute__((always_inline)) {
    const float* src = in + koff[t];
    typename V::reg v[P];
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) v[q] = V::load(src + q * L);
#pragma GCC unroll 16
    for (int r = 0; r < BR; ++r) {
      const typename V::reg w = V::set1(wt[(r / R) * k * R + t * R + r % R]);
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) acc[r][q] = V::madd(w, v[q], acc[r][q]);
    }
  };
  if constexpr (K > 0) {
#pragma GCC unroll 16
    for (std::size_t t = 0; t < static_cast<std::size_t>(K); ++t) tap(t);
  } else {
    for (std::size_t t = 0; t < k; ++t) tap(t);
  }
#pragma GCC unroll 16
  for (int r = 0; r < BR; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) V::store(out + r * ld + q * L, acc[r][q]);
}

// block<V, 1, P> for a grouped convolution's kFloatConvRows output channels when they read different input channels:
// row r's taps at in + roff[r] + koff[t] (each output the same chain of multiply-adds in tap order as block's).
template <class V, int P>
[[gnu::always_inline]] inline void block_rows(const float* in, const std::int64_t* roff, const std::int64_t* koff,
                                              const float* wt, std::size_t k, float* out, std::size_t ld) {
  constexpr int R = static_cast<int>(kFloatConvRows);
  constexpr std::size_t L = V::kLanes;
  typename V::reg acc[R][P];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[r][q] = V::zero();
  for (std::size_t t = 0; t < k; ++t) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const typename V::reg w = V::set1(wt[t * R + r]);
      const float* src = in + roff[r] + koff[t];
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) acc[r][q] = V::madd(w, V::load(src + q * L), acc[r][q]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) V::store(out + r * ld + q * L, acc[r][q]);
}

// block_rows<V, pv>, pv <= PMAX <= 8.
template <class V, int PMAX>
[[gnu::always_inline]] inline void dispatch_rows(std::size_t pv, const float* at, const std::int64_t* roff,
                                                 const std::int64_t* koff, const float* wt, std::size_t k, float* tile,
                                                 std::size_t ld) {
  switch (pv) {
    case 1: block_rows<V, 1>(at, roff, koff, wt, k, tile, ld); break;
    case 2: if constexpr (PMAX >= 2) block_rows<V, 2>(at, roff, koff, wt, k, tile, ld); break;
    case 3: if constexpr (PMAX >= 3) block_rows<V, 3>(at, roff, koff, wt, k, tile, ld); break;
    case 4: if constexpr (PMAX >= 4) block_rows<V, 4>(at, roff, koff, wt, k, tile, ld); break;
    case 5: if constexpr (PMAX >= 5) block_rows<V, 5>(at, roff, koff, wt, k, tile, ld); break;
    case 6: if constexpr (PMAX >= 6) block_rows<V, 6>(at, roff, koff, wt, k, tile, ld); break;
    case 7: if constexpr (PMAX >= 7) block_rows<V, 7>(at, roff, koff, wt, k, tile, ld); break;
    default: if constexpr (PMAX >= 8) block_rows<V, 8>(at, roff, koff, wt, k, tile, ld); break;
  }
}

// block<V, B, pv>, pv <= PMAX <= 8.
template <class V, int B, int PMAX>
[[gnu::always_inline]] inline void dispatch(std::size_t pv, const float* at, const std::int64_t* koff, const float* wt,
                                            std::size_t k, float* tile, std::size_t ld) {
  switch (pv) {
    case 1: block<V, B, 1>(at, koff, wt, k, tile, ld); break;
    case 2: if constexpr (PMAX >= 2) block<V, B, 2>(at, koff, wt, k, tile, ld); break;
    case 3: if constexpr (PMAX >= 3) block<V, B, 3>(at, koff, wt, k, tile, ld); break;
    case 4: if constexpr (PMAX >= 4) block<V, B, 4>(at, koff, wt, k, tile, ld); break;
    case 5: if constexpr (PMAX >= 5) block<V, B, 5>(at, koff, wt, k, tile, ld); break;
    case 6: if constexpr (PMAX >= 6) block<V, B, 6>(at, koff, wt, k, tile, ld); break;
    case 7: if constexpr (PMAX >= 7) block<V, B, 7>(at, koff, wt, k, tile, ld); break;
    default: if constexpr (PMAX >= 8) block<V, B, 8>(at, koff, wt, k, tile, ld); break;
  }
}

// The row: blocks of B * kFloatConvRows channels (B = 1 for the last channels when fewer remain) x up to PMAX
// vectors of pixels (the row's vectors split evenly into blocks), each computed into a scratch tile, then the
// epilogue into y.
template <class V, int B, int PMAX>
void row(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin, std::size_t o_end) {
  constexpr std::size_t L = V::kLanes, R = kFloatConvRows, LD = PMAX * L;
  static_assert(L <= kFloatConvMaxLanes && kFloatConvMaxLanes % L == 0, "the copy's slack covers whole vectors");
  // The row's nv vectors in nb blocks as even as they go: the first nv % nb take one vector more.
  const std::size_t nv = ceil_div(p.ow, L), nb = ceil_div(nv, PMAX), base = nv / nb, extra = nv % nb;
  const float* in = xp + oy * p.row_step;
  alignas(64) float tile[B * R * LD];
  for (std::size_t o0 = o_begin; o0 < o_end;) {
    const float* wt = p.wt.data() + o0 * p.k;
    const bool wide = B > 1 && p.group_out == 0 && o_end - o0 >= B * R;
    const std::size_t rows = wide ? B * R : R;
    // A grouped convolution's block: each row's group's offset in the copy (the last block's padding rows, whose
    // weights are zero, take the last channel's), one for the block where all rows share a group.
    std::int64_t roff[R] = {};
    bool shared = true;
    if (p.group_out != 0)
      for (std::size_t r = 0; r < R; ++r) {
        roff[r] = p.channel_offset[std::min(o0 + r, p.m - 1)] - p.channel_offset[o_begin];
        shared = shared && roff[r] == roff[0];
      }
    for (std::size_t bi = 0, v0 = 0; bi < nb; ++bi) {
      const std::size_t pv = base + (bi < extra ? 1 : 0);
      const float* at = in + v0 * L;
      if (wide) {
        dispatch<V, B, PMAX>(pv, at, p.koff.data(), wt, p.k, tile, LD);
      } else if (shared) {
        dispatch<V, 1, PMAX>(pv, at + roff[0], p.koff.data(), wt, p.k, tile, LD);
      } else {
        dispatch_rows<V, PMAX>(pv, at, roff, p.koff.data(), wt, p.k, tile, LD);
      }
      const std::size_t x0 = v0 * L, x1 = (v0 + pv) * L < p.ow ? (v0 + pv) * L : p.ow;
      for (std::size_t r = 0; r < rows && o0 + r < o_end; ++r) {
        const std::size_t o = o0 + r;
        const float* __restrict t = tile + r * LD;
        float* __restrict dst = y + o * p.y_plane;
        const float b = p.bias ? p.bias[o] : 0.0f, f = p.floor ? p.floor[o] : 0.0f;
        const float c = p.ceiling ? p.ceiling[o] : 0.0f;
        for (std::size_t x = x0; x < x1; ++x) {
          float v = t[x - x0];
          if (p.bias) v += b;
          if (p.floor && f > v) v = f;
          if (p.ceiling && c < v) v = c;
          dst[x] = v;
        }
      }
      v0 += pv;
    }
    o0 += rows;
  }
}

}  // namespace float_conv
}  // namespace horq
