// The loop every path of sign_gemm (sign_gemm.h) shares, inlined into each ISA file with its vector type.
//
// The order of the float operations is fixed here, the same for every path, so all paths give the same
// bits: for output (j, m), with acc = the old output (accumulate) or +0,
//     for each half-word of 32 reduction rows r0 = 0, 32, 64, ...:
//         nibble g = 0..7 of row j's bits at r0 picks T_g[b] (the table of rows r0+4g .. r0+4g+3),
//         E = ((T_0 + T_2) + T_4) + T_6,  O = ((T_1 + T_3) + T_5) + T_7,  acc = acc + (E + O);
// and a table is T[0] = (v_0 + v_1) + (v_2 + v_3), T[b] = T[b & (b-1)] - (v_i + v_i) with i the lowest set
// bit of b, over v_i = a_{r}[m] * scale_r (just a_r[m] without scales; 0 for r >= R).
//
// Blocking: a task's outputs are walked in blocks of NV vectors of lanes (m), and for each block the tables of
// one half-word (8 tables x 16 entries x NV vectors: 16 KiB at 32 lanes) are built and then used by every
// sign row of the task, so the float operand is read once per block of lanes (the driver keeps a task's
// rows few enough for its outputs to stay in the L2 cache). Rows of `s` are read one word per row per
// half-word, contiguous in j (the word-block-major layout).
#pragma once
#include <algorithm>
#include <cstddef>

#include "core/sign_gemm.h"

namespace horq {

// V: the vector traits of one path (reg, kLanes, zero, load (aligned), load_part / store_part (the first n
// lanes, the rest zero / untouched), add, sub, mul_scalar). HW: half-words per step (1 or 2): the tables of
// HW half-words are built together and a sign row's accumulator stays in registers across them, which halves
// the loads and stores of the outputs at HW = 2 (the operation order is the same either way).
template <class V, int NV, int HW>
[[gnu::always_inline]] inline void sign_gemm_block(const SignGemm& p, std::size_t mb, std::size_t nlanes,
                                                   std::size_t j0, std::size_t j1) {
  using reg = typename V::reg;
  constexpr int L = V::kLanes, G = 8 * HW;
  alignas(64) float table[G][16][NV * L];
  const std::size_t R = p.R;
  int part[NV];  // lanes of each vector inside the block
  for (int q = 0; q < NV; ++q) {
    const std::ptrdiff_t left = static_cast<std::ptrdiff_t>(nlanes) - q * L;
    part[q] = static_cast<int>(std::clamp<std::ptrdiff_t>(left, 0, L));
  }
  for (std::size_t r0 = 0; r0 < R; r0 += 32 * HW) {
    for (int g = 0; g < G; ++g) {
      reg v[4][NV];
      for (int i = 0; i < 4; ++i) {
        const std::size_t r = r0 + 4 * g + i;
        for (int q = 0; q < NV; ++q) {
          if (r >= R || part[q] == 0) {
            v[i][q] = V::zero();
            continue;
          }
          const reg x = V::load_part(p.arows[r] + mb + q * L, part[q]);
          v[i][q] = p.rscale ? V::mul_scalar(x, p.rscale[r]) : x;
        }
      }
      for (int q = 0; q < NV; ++q) {
        V::store(table[g][0] + q * L, V::add(V::add(v[0][q], v[1][q]), V::add(v[2][q], v[3][q])));
        for (int b = 1; b < 16; ++b) {
          const int i = __builtin_ctz(static_cast<unsigned>(b));
          V::store(table[g][b] + q * L, V::sub(V::load(table[g][b & (b - 1)] + q * L), V::add(v[i][q], v[i][q])));
        }
      }
    }
    // Half-words of this step that hold rows (< R): a second half-word past R is skipped, as if absent.
    const int halves = HW == 1 || r0 + 32 < R ? HW : 1;
    const word_t* srow = p.s + (r0 / kWordBits) * p.J;
    const unsigned shift = static_cast<unsigned>(r0 % kWordBits);
    const bool first = r0 == 0 && !p.accumulate;
    for (std::size_t j = j0; j < j1; ++j) {
      const word_t word = srow[j] >> shift;
      float* dst = p.out + j * p.ldo + mb;
      reg acc[NV];
      for (int q = 0; q < NV; ++q) acc[q] = first || part[q] == 0 ? V::zero() : V::load_part(dst + q * L, part[q]);
      for (int h = 0; h < halves; ++h) {
        const word_t w = word >> (32 * h);
        const float(*t)[16][NV * L] = table + 8 * h;
        reg e[NV], o[NV];
        for (int q = 0; q < NV; ++q) {
          e[q] = V::add(V::load(t[0][w & 15] + q * L), V::load(t[2][(w >> 8) & 15] + q * L));
          o[q] = V::add(V::load(t[1][(w >> 4) & 15] + q * L), V::load(t[3][(w >> 12) & 15] + q * L));
        }
        for (int q = 0; q < NV; ++q) {
          e[q] = V::add(e[q], V::load(t[4][(w >> 16) & 15] + q * L));
          o[q] = V::add(o[q], V::load(t[5][(w >> 20) & 15] + q * L));
        }
        for (int q = 0; q < NV; ++q) {
          e[q] = V::add(e[q], V::load(t[6][(w >> 24) & 15] + q * L));
          o[q] = V::add(o[q], V::load(t[7][(w >> 28) & 15] + q * L));
        }
        for (int q = 0; q < NV; ++q) acc[q] = V::add(acc[q], V::add(e[q], o[q]));
      }
      for (int q = 0; q < NV; ++q)
        if (part[q] != 0) V::store_part(dst + q * L, acc[q], part[q]);
    }
  }
}

// fold_rows (sign_gemm.h). V::lanes(lo, hi): a mask of lanes lo <= l < hi; V::add_masked(acc, p, mask):
// acc + p[l] in the mask's lanes, acc elsewhere, reading nothing outside them.
template <class V>
[[gnu::always_inline]] inline void fold_rows_walk(const Fold& f) {
  using reg = typename V::reg;
  using lane_mask = typename V::lane_mask;
  constexpr std::ptrdiff_t L = V::kLanes;
  constexpr std::size_t kMaxKw = 16;  // wider kernels take the value-at-a-time loop (the same order)
  const std::size_t T = f.kh * f.kw;
  if (f.sw != 1 || f.dw != 1 || f.kw > kMaxKw) {
    for (std::size_t i = 0; i < f.kh; ++i)
      for (std::size_t k = 0; k < f.nruns; ++k)
        for (std::size_t c = 0; c < f.channels; ++c)
          for (std::size_t j = 0; j < f.kw; ++j) {
            const FoldRun& r = f.runs[k];
            float* dst = f.grid + c * f.Pz + i * f.dh * f.Wg + j * f.dw + r.at;
            const float* src = f.buf + (c * T + i * f.kw + j) * f.ldb + r.lane;
            for (std::size_t u = 0; u < r.len; ++u) dst[u * f.sw] += src[u];
          }
    return;
  }
  const std::ptrdiff_t kw = static_cast<std::ptrdiff_t>(f.kw), ldb = static_cast<std::ptrdiff_t>(f.ldb);
  lane_mask masks[kMaxKw];
  std::ptrdiff_t from[kMaxKw];  // buf offset of lane 0 for tap j, relative to the channel's row of tap (i, 0)
  for (std::size_t i = 0; i < f.kh; ++i)
    for (std::size_t k = 0; k < f.nruns; ++k) {
      const FoldRun& r = f.runs[k];
      const std::ptrdiff_t len = static_cast<std::ptrdiff_t>(r.len), span = len + kw - 1;
      for (std::ptrdiff_t x0 = 0; x0 < span; x0 += L) {
        // Grid value x0 + l of the row takes output x0 + l - j of tap j when that is in [0, len).
        std::ptrdiff_t nt = 0;
        for (std::ptrdiff_t j = 0; j < kw; ++j) {
          const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, j - x0), hi = std::min(L, len + j - x0);
          if (lo >= hi) continue;
          masks[nt] = V::lanes(lo, hi);
          from[nt++] = j * ldb + static_cast<std::ptrdiff_t>(r.lane) + x0 - j;
        }
        const int n = static_cast<int>(std::min(L, span - x0));
        float* dst = f.grid + i * f.dh * f.Wg + r.at + x0;
        const float* src = f.buf + static_cast<std::ptrdiff_t>(i * f.kw) * ldb;
        for (std::size_t c = 0; c < f.channels; ++c, dst += f.Pz, src += static_cast<std::ptrdiff_t>(T) * ldb) {
          reg acc = V::load_part(dst, n);
          for (std::ptrdiff_t t = 0; t < nt; ++t) acc = V::add_masked(acc, src + from[t], masks[t]);
          V::store_part(dst, acc, n);
        }
      }
    }
}

// expand_column (sign_gemm.h): V::kLanes values at a time (a divisor of 64, so a step never crosses a word),
// each plane's bits for them as a lane mask; V::signed_value(bits, b): b in lanes whose bit is clear, -b where
// set.
template <class V>
[[gnu::always_inline]] inline void expand_column_walk(const word_t* const* planes, const float* b, int order,
                                                      std::size_t groups, std::size_t cg, std::size_t gw,
                                                      float* out) {
  constexpr std::size_t L = V::kLanes;
  constexpr word_t kMask = (word_t{1} << L) - 1;
  for (std::size_t g = 0; g < groups; ++g, out += cg)
    for (std::size_t i = 0; i < cg; i += L) {
      const std::size_t pos = g * gw * kWordBits + i, w = pos / kWordBits, sh = pos % kWordBits;
      auto acc = V::signed_value(static_cast<unsigned>((planes[0][w] >> sh) & kMask), b[0]);
      for (int k = 1; k < order; ++k)
        acc = V::add(acc, V::signed_value(static_cast<unsigned>((planes[k][w] >> sh) & kMask), b[k]));
      V::store_part(out + i, acc, static_cast<int>(std::min(L, cg - i)));
    }
}

// A task: outputs [m0, m1) x [j0, j1) in blocks of NV * kLanes lanes (the last block masked).
template <class V, int NV, int HW>
[[gnu::always_inline]] inline void sign_gemm_walk(const SignGemm& p, std::size_t m0, std::size_t m1,
                                                  std::size_t j0, std::size_t j1) {
  constexpr std::size_t B = static_cast<std::size_t>(NV) * V::kLanes;
  for (std::size_t mb = m0; mb < m1; mb += B) sign_gemm_block<V, NV, HW>(p, mb, std::min(B, m1 - mb), j0, j1);
}

}  // namespace horq
