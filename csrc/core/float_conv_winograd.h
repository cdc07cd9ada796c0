// Winograd F(3x3, 4x4) for the float first layer (float_conv.h): a ResNet stem's 7x7 stride-2 convolution over 3
// channels is 147 multiply-adds per output; here at most 12 * 36 / 9 = 48 (363 / 9 ~ 40.3 without the products of
// zero transformed weights, WinogradWeights), plus the transforms, which the 64 output channels share.
//
// Stride phases. A stride-s convolution is the sum over the s * s phases (pr, pc) of stride-1 convolutions: phase
// channel c' = (c * s + pr) * s + pc reads Q[c'][u][v] = padded x[c][u s + pr][v s + pc] through the sub-kernel
// w'[c'][a][b] = w[c][a s + pr][b s + pc] (zero where a s + pr >= kh or b s + pc >= kw). With kh, kw <= 4 s every
// sub-kernel fits 4 x 4: a 7x7 stride-2 kernel over 3 channels is a 4x4 stride-1 kernel over 12 phase channels.
//
// Tiles. Output rows and columns go in tiles of 3 x 3 (tile (ty, tx) = outputs 3 ty + i, 3 tx + j), each read from
// 6 x 6 inputs d = Q[c'][3 ty + a][3 tx + b]. With the points 0, 1, -1, 2, -1/2 and infinity:
//   V = BT d BT^T (per tile and phase channel), U = G w' G^T (per output and phase channel, in double), M[o] = sum
//   over c' of U[o][c'] * V[c'] (36 elementwise sums: 36 small GEMMs over the tiles), and the outputs Y[o] = AT M[o]
//   AT^T (3 x 3).
// Error (tests/kernels/test_kernels_float_conv.py bounds it against float64 at 5e-6 of sum |w x|): ~9e-7 of sum |w x|
// on the ResNet stem (the direct float32 sum: ~2e-7, 147 * 2^-24 bound), more against a small kernel's sum (~1.6e-6
// on a 3x3 stem; `benchmarks/bench_float_conv.py --winograd` prints both). These points gave the smallest error of
// the sets tried. Tiles of 4 x 4 (F(4x4, 4x4), 7 x 7 inputs) ran the stem ~15% faster
// with ~2.5x the error, and then an order-2 ResNet-34 behind a float stem took another argmax than float64 PyTorch
// on 2 of 1000 inputs (tests/test_export_trace.py allows 1; none here, as with the direct kernel): not kept
// (docs/KERNELS.md round 15).
//
// Arithmetic. Each transform is a fixed sequence of adds, subtracts, multiplies and fused multiply-adds by the
// constants below (combine()), the GEMM a chain of fused multiply-adds in c' order per output lane: every path
// runs the same operations per lane, so avx2 and avx512 give the same bits, and the generic path (a scalar with
// std::fma) is their reference. Then + bias, max(., floor) and min(., ceiling) as in the direct kernel.
//
// Layout. Each image is copied once as q[((c' * q_rows + u) * 3 + rho) * q_cols + w] = Q[c'][u][3 w + rho], zeros
// outside the padded input, so the inputs that consecutive tiles read through one (a, b) are consecutive floats;
// SIMD lanes run over tile columns.
//
// A NaN or Inf would spread through a tile's transforms to outputs that do not read it, and huge values could
// overflow them: float_conv.cpp uses this path only where the weights and the copied inputs are finite and below
// kLimit (else the direct kernel, per chunk of images).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/float_conv.h"
#include "core/isa_local.h"

namespace horq {

// Output rows (and columns) per tile: a tile row writes this many output rows.
constexpr std::size_t kWinogradOut = 3;

namespace winograd {
constexpr std::size_t kOut = kWinogradOut, kTap = 4, kTile = kOut + kTap - 1, kXi = kTile * kTile;
constexpr std::size_t kMaxPhaseChannels = 16;  // C * s * s that the path takes (a stem: 3 channels at stride 2)
constexpr float kLimit = 0x1p40f;              // |input|, |weight| bound: the transforms stay far from overflow
}  // namespace winograd

// U = G w' G^T without the phase channels whose U is zero at a transform element for every output: those
// products add nothing, and skipping them leaves every sum's bits as they were (M's chain starts at +0.0 and
// adds finite products, so it is never -0.0, and x + (+-0.0) is x for any other x). At the point infinity U is
// w''s last tap, zero for a phase whose sub-kernel has 3 taps: a 7x7 stride-2 stem needs 363 products per tile
// and output channel, not 36 x 12 = 432.
struct WinogradWeights {
  // Element xi's phase channels that count, in c' order, and their weights: u + offset[xi] holds
  // ceil(m / kFloatConvRows) blocks of count[xi] x kFloatConvRows floats (the last block's missing outputs zero).
  std::size_t offset[winograd::kXi] = {}, count[winograd::kXi] = {};
  std::uint8_t channels[winograd::kXi][winograd::kMaxPhaseChannels] = {};
  std::vector<float> u;
};

struct WinogradPlan {
  std::size_t stride = 1;      // s, both directions
  std::size_t cq = 0;          // phase channels: C * s * s
  std::size_t m = 0;           // output channels
  std::size_t tile_rows = 0;   // ceil(oh / 3)
  std::size_t tiles_x = 0;     // tile columns: ceil(ow / 3); a path computes them in whole vectors of its lanes
  std::size_t tile_cols = 0;   // tiles_x rounded up to whole vectors of kFloatConvMaxLanes: what any path reads
  std::size_t q_rows = 0;      // rows u of a phase channel in the copy: 3 * tile_rows + 3
  std::size_t q_cols = 0;      // floats of one (c', u, rho) run of the copy: tile_cols + 1
  // The transformed weights (float_conv.cpp keeps recent ones).
  std::shared_ptr<const WinogradWeights> weights;
  const float* bias = nullptr;  // m values or nullptr
  const float* floor = nullptr;  // m values or nullptr
  const float* ceiling = nullptr;  // m values or nullptr
  std::uint64_t id = 0;  // unique per plan (a path may keep a tile row's results for the next call of the same plan)

  std::size_t image() const { return cq * q_rows * kWinogradOut * q_cols; }  // floats of one image's copy
  std::size_t width() const { return kWinogradOut * tile_cols; }  // floats of an output row the kernel writes
};

// Tile row ty of one image (q: its copy): output rows 3 ty + i (i < 3) of channel o go to rows[i] + o * ch_stride,
// width() floats each (columns past ow are computed from the copy's zeros and are the caller's scratch).
using float_conv_tiles_fn = void (*)(const WinogradPlan& p, const float* q, std::size_t ty,
                                     float* const rows[kWinogradOut], std::size_t ch_stride);

// The tiles' plan for weights w (m x C*kh*kw) of geometry g (float_conv_winograd_geometry), with a new id.
WinogradPlan make_winograd_plan(const ConvGeometry& g, const float* w, std::size_t m, const float* bias,
                                const float* floor, const float* ceiling);

void float_conv_tiles_generic(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                              std::size_t ch_stride);
void float_conv_tiles_avx2(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                           std::size_t ch_stride);
void float_conv_tiles_avx512(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                             std::size_t ch_stride);

namespace winograd {

// Input transform: row k of BT holds the coefficients of prod over the other finite points l != k of (x - p_l)
// (the last row: of all five), so V's rows are the input polynomial's values at the points.
constexpr float kBT[kTile][kTile] = {
    {1.0f, 1.5f, -2.0f, -1.5f, 1.0f, 0.0f},  {0.0f, -1.0f, -2.5f, -0.5f, 1.0f, 0.0f},
    {0.0f, 1.0f, 0.5f, -2.5f, 1.0f, 0.0f},   {0.0f, -0.5f, -1.0f, 0.5f, 1.0f, 0.0f},
    {0.0f, 2.0f, -1.0f, -2.0f, 1.0f, 0.0f},  {0.0f, 1.0f, 1.5f, -2.0f, -1.5f, 1.0f}};
// Output transform: the points' powers 0..2 (infinity: the leading coefficient, in the last row only).
constexpr float kAT[kOut][kTile] = {{1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.0f},
                                    {0.0f, 1.0f, -1.0f, 2.0f, -0.5f, 0.0f},
                                    {0.0f, 1.0f, 1.0f, 4.0f, 0.25f, 1.0f}};
// Weight transform, in double: row k = p_k^j / prod over l != k of (p_k - p_l); infinity's row picks the last tap.
constexpr double kG[kTile][kTap] = {{1.0, 0.0, 0.0, 0.0},
                                    {-1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3},
                                    {1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3},
                                    {1.0 / 15, 2.0 / 15, 4.0 / 15, 8.0 / 15},
                                    {-16.0 / 15, 8.0 / 15, -4.0 / 15, 2.0 / 15},
                                    {0.0, 0.0, 0.0, 1.0}};

// sum over k of c[k] * v[k] for the nonzero c[k], in k order: the first term v[k], -v[k] (0 - v[k]) or c * v[k];
// each later one an add or subtract (c = +-1) or a fused multiply-add. V also has add, sub and mul.
template <class V, std::size_t N>
[[gnu::always_inline]] inline typename V::reg combine(const float (&c)[N], const typename V::reg (&v)[N]) {
  typename V::reg acc = V::zero();
  bool first = true;
#pragma GCC unroll 8
  for (std::size_t k = 0; k < N; ++k) {
    if (c[k] == 0.0f) continue;
    if (first) {
      acc = c[k] == 1.0f ? v[k] : c[k] == -1.0f ? V::sub(V::zero(), v[k]) : V::mul(V::set1(c[k]), v[k]);
    } else {
      acc = c[k] == 1.0f ? V::add(acc, v[k]) : c[k] == -1.0f ? V::sub(acc, v[k]) : V::madd(V::set1(c[k]), v[k], acc);
    }
    first = false;
  }
  return acc;
}

// With a pair, tiles() computes tile columns [t0, t1) (t1 - t0 <= L / 2) of tile rows ty and ty + 1 at once: lanes
// 0..L/2-1 row ty's, the others row ty + 1's, whose input is in_off floats further in the copy and whose outputs go
// to rows[i] + o * ch_stride. V then also has load_pair(p, p2) (half a vector from each) and store3_pair(p, p2, a,
// b, c) (store3's first half at p, its second at p2).
struct TilePair {
  std::ptrdiff_t in_off = 0;
  float* rows[kWinogradOut] = {};
  std::size_t ch_stride = 0;
};

// A stem's GEMMs (3 channels at stride 2: 12, 6 or 3 phase channels per transform element, 2 or 3 vectors of tiles)
// with the phase-channel loop unrolled (float_conv::block with K = k): the same operations in the same order as the
// loop, whose ~10 steps per call had cost ~2% of the pooled stem (docs/KERNELS.md round 27). Returns false (nothing
// done) for other shapes.
template <class V>
[[gnu::always_inline]] inline bool unrolled_block(std::size_t pv, std::size_t k, const float* in,
                                                  const std::int64_t* koff, const float* wt, float* out,
                                                  std::size_t ld) {
  using float_conv::block;
  switch (pv * 100 + k) {
    case 312: block<V, 1, 3, 12>(in, koff, wt, k, out, ld); return true;
    case 306: block<V, 1, 3, 6>(in, koff, wt, k, out, ld); return true;
    case 303: block<V, 1, 3, 3>(in, koff, wt, k, out, ld); return true;
    case 212: block<V, 1, 2, 12>(in, koff, wt, k, out, ld); return true;
    case 206: block<V, 1, 2, 6>(in, koff, wt, k, out, ld); return true;
    case 203: block<V, 1, 2, 3>(in, koff, wt, k, out, ld); return true;
    default: return false;
  }
}

// Tile columns [t0, t1) of the tile row (float_conv_tiles_fn; t0 a multiple of L) with V's lanes over tile columns:
// the input transform of every tile and phase channel into a per-thread buffer, then per block of B *
// kFloatConvRows output channels and up to PMAX vectors of tiles the 36 GEMMs (float_conv::block, the phase
// channels as its taps) and the output transform. V also has max(a, b) (a > b ? a : b per lane, else b: NaN in b
// kept), min(a, b) (a < b ? a : b, else b) and store3(p, a, b, c) (a0 b0 c0 a1 b1 c1 ... at p). The tiles of a
// column are computed alike whatever range or lane count takes them, so a path may split a row between two register
// widths.
template <class V, int B, int PMAX, bool kPair = false>
void tiles(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
           std::size_t ch_stride, std::size_t t0, std::size_t t1, const TilePair* pair = nullptr) {
  using reg = typename V::reg;
  constexpr std::size_t L = V::kLanes, R = kFloatConvRows, BR = B * R, PL = PMAX * L;
  static_assert(kFloatConvMaxLanes % L == 0, "whole vectors of tiles");
  static_assert(!kPair || PMAX == 1, "a pair of rows is one vector");
  // tc: the tile columns this call computes (whole vectors; with 8 lanes a 112-pixel row's 38 tiles are 40, not 48).
  const std::size_t nv = kPair ? 1 : ceil_div(t1 - t0, L), tc = nv * L, cq = p.cq, qc = p.q_cols;
  q += t0;
  const WinogradWeights& uw = *p.weights;
  // Both buffers start on a cache line (isa_local.h line_start).
  thread_local LocalVector<float> vbuf, mbuf;
  if (vbuf.size() < kXi * cq * tc + kLineFloats) vbuf.resize(kXi * cq * tc + kLineFloats);
  if (mbuf.size() < kXi * BR * PL + kLineFloats) mbuf.resize(kXi * BR * PL + kLineFloats);
  float* const vb = line_start(vbuf.data());
  float* const mb = line_start(mbuf.data());

  // The vectors of tiles in nb blocks of up to PMAX, as even as they go (the first nv % nb take one more). Each
  // block's V is one run, [(k, l)][c'][its tiles] = (BT d BT^T)[k][l], so that the GEMMs of a block read
  // kXi * cq * pv * L consecutive floats (a run per block, not the row's columns interleaved).
  const std::size_t nb = ceil_div(nv, PMAX), base = nv / nb, extra = nv % nb;
  for (std::size_t c = 0; c < cq; ++c)
    for (std::size_t bi = 0, v0 = 0, pv = base + (extra > 0 ? 1 : 0), v = 0; v < nv; ++v) {
      if (v == v0 + pv) v0 = v, pv = base + (++bi < extra ? 1 : 0);  // the next block
      float* const vrun = vb + v0 * L * kXi * cq + c * pv * L + (v - v0) * L;  // (xi, c') at vrun + xi cq pv L
      const float* src = q + (c * p.q_rows + kOut * ty) * kOut * qc + v * L;
      reg t[kTile][kTile];  // t[k][b] = sum over a of BT[k][a] d[a][b]
#pragma GCC unroll 8
      for (std::size_t b = 0; b < kTile; ++b) {
        reg d[kTile];
#pragma GCC unroll 8
        for (std::size_t a = 0; a < kTile; ++a) {
          const float* at = src + (a * kOut + b % kOut) * qc + b / kOut;
          if constexpr (kPair) {
            d[a] = V::load_pair(at, at + pair->in_off);
          } else {
            d[a] = V::load(at);
          }
        }
#pragma GCC unroll 8
        for (std::size_t k = 0; k < kTile; ++k) t[k][b] = combine<V>(kBT[k], d);
      }
#pragma GCC unroll 8
      for (std::size_t k = 0; k < kTile; ++k)
#pragma GCC unroll 8
        for (std::size_t l = 0; l < kTile; ++l)
          V::store(vrun + (k * kTile + l) * cq * pv * L, combine<V>(kBT[l], t[k]));
    }

  // Element xi's phase channels that count, as offsets into its V in a block of base + 1 vectors ([0]) or base ([1]).
  std::int64_t koff[2][kXi][kMaxPhaseChannels];
  for (std::size_t w = 0; w < 2; ++w)
    for (std::size_t xi = 0; xi < kXi; ++xi)
      for (std::size_t t = 0; t < uw.count[xi]; ++t)
        koff[w][xi][t] = static_cast<std::int64_t>(uw.channels[xi][t] * (base + 1 - w) * L);
  for (std::size_t o0 = 0; o0 < p.m;) {
    const bool wide = B > 1 && p.m - o0 >= BR;
    const std::size_t nrows = wide ? BR : R;
    for (std::size_t bi = 0, v0 = 0; bi < nb; ++bi) {
      const std::size_t pv = base + (bi < extra ? 1 : 0);
      const std::int64_t(&ko)[kXi][kMaxPhaseChannels] = koff[bi < extra ? 0 : 1];
      for (std::size_t xi = 0; xi < kXi; ++xi) {
        const std::size_t k = uw.count[xi];
        const float* wt = uw.u.data() + uw.offset[xi] + o0 / R * k * R;
        const float* in = vb + v0 * L * kXi * cq + xi * cq * pv * L;
        float* const mxi = mb + xi * BR * PL;
        if (wide) {
          float_conv::dispatch<V, B, PMAX>(pv, in, ko[xi], wt, k, mxi, PL);
        } else if (!unrolled_block<V>(pv, k, in, ko[xi], wt, mxi, PL)) {
          float_conv::dispatch<V, 1, PMAX>(pv, in, ko[xi], wt, k, mxi, PL);
        }
      }
      for (std::size_t r = 0; r < nrows && o0 + r < p.m; ++r) {
        const std::size_t o = o0 + r;
        const reg bias = V::set1(p.bias ? p.bias[o] : 0.0f), floor = V::set1(p.floor ? p.floor[o] : 0.0f);
        const reg ceiling = V::set1(p.ceiling ? p.ceiling[o] : 0.0f);
        for (std::size_t qv = 0; qv < pv; ++qv) {
          const float* mm = mb + r * PL + qv * L;
          reg s[kOut][kTile];  // s[i][l] = sum over k of AT[i][k] M[k][l]
#pragma GCC unroll 8
          for (std::size_t l = 0; l < kTile; ++l) {
            reg col[kTile];
#pragma GCC unroll 8
            for (std::size_t k = 0; k < kTile; ++k) col[k] = V::load(mm + (k * kTile + l) * BR * PL);
#pragma GCC unroll 3
            for (std::size_t i = 0; i < kOut; ++i) s[i][l] = combine<V>(kAT[i], col);
          }
          const std::size_t x0 = kOut * (t0 + (v0 + qv) * L);
#pragma GCC unroll 3
          for (std::size_t i = 0; i < kOut; ++i) {
            reg y[kOut];
#pragma GCC unroll 3
            for (std::size_t j = 0; j < kOut; ++j) {
              y[j] = combine<V>(kAT[j], s[i]);
              if (p.bias) y[j] = V::add(y[j], bias);
              if (p.floor) y[j] = V::max(floor, y[j]);
              if (p.ceiling) y[j] = V::min(ceiling, y[j]);
            }
            if constexpr (kPair) {
              V::store3_pair(rows[i] + o * ch_stride + x0, pair->rows[i] + o * pair->ch_stride, y[0], y[1], y[2]);
            } else {
              V::store3(rows[i] + o * ch_stride + x0, y[0], y[1], y[2]);
            }
          }
        }
      }
      v0 += pv;
    }
    o0 += nrows;
  }
}

}  // namespace winograd
}  // namespace horq
