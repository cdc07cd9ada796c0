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
// Blocking: a task's outputs are walked half-word by half-word, and within one in blocks of NV vectors of lanes
// (m): for each block the tables of the half-word (8 tables x 16 entries x NV vectors: 32 KiB at 64 lanes, inside
// a core's L1 data cache) are built and then used by every sign row of the task, so the float operand is read
// once (the driver keeps a task's rows few enough for its outputs to stay in the L2 cache). Rows of `s` are read
// one word per row per half-word, contiguous in j (the word-block-major layout).
//
// Measured on a Sapphire Rapids core (round 9 of docs/KERNELS.md, benchmarks/profile_sign_gemm.cpp):
// two half-words per step (64 KiB of tables, outputs loaded and stored half as often) lost to one, as the
// tables no longer fit in L1 (their build then writes lines that are not there and the lookups miss); and with
// the row loop inlined into the block GCC formed all sixteen table addresses of a row up front and spilled
// them, so it is a function of its own (sign_rows).
#pragma once
#include <algorithm>
#include <cstddef>

#include "core/sign_gemm.h"

namespace horq {

// Each including file's own copy (core/isa_local.h).
namespace {

// The sign rows j0..j1 of one half-word step of sign_gemm_block against its tables (table g, entry b at
// tables + (g * 16 + b) * NV * L). FULL: every lane of the block present (plain loads and stores, no per-row
// tests), the common case, compiled apart; the same operations either way. A function of its own, so the few
// values the loop needs stay in registers.
struct SignRows {
  const float* tables;
  const word_t* srow;
  unsigned shift;
  float* out;  // the block's first lane of output row 0
  std::size_t ldo;
  const int* part;
  bool first;  // no earlier value to add to
};

template <class V, int NV, bool FULL>
[[gnu::noinline]] void sign_rows(const SignRows sr, std::size_t j0, std::size_t j1) {
  using reg = typename V::reg;
  constexpr int L = V::kLanes;
  constexpr std::size_t kEntry = static_cast<std::size_t>(NV) * L;
  // A nibble's entry is (word >> 4g) & 15 entries into table g: as a byte offset, one rotation and one mask of the
  // word (an entry's bytes are a power of two), where (nibble + 16 g) * bytes took a copy, a shift, a mask, an add
  // and a second shift per nibble, which the loop's integer ops then queued on.
  constexpr unsigned kShift = static_cast<unsigned>(__builtin_ctzll(kEntry * sizeof(float)));
  static_assert((std::size_t{1} << kShift) == kEntry * sizeof(float), "a table entry's bytes must be a power of two");
  constexpr word_t kMask = word_t{15} << kShift;
  const char* const tbytes = reinterpret_cast<const char*>(sr.tables);
  for (std::size_t j = j0; j < j1; ++j) {
    const word_t word = sr.srow[j] >> sr.shift;
    float* dst = sr.out + j * sr.ldo;
    reg acc[NV];
    for (int q = 0; q < NV; ++q) {
      if (sr.first) acc[q] = V::zero();
      else if (FULL) acc[q] = V::loadu(dst + q * L);
      else acc[q] = sr.part[q] == 0 ? V::zero() : V::load_part(dst + q * L, sr.part[q]);
    }
    // Nibble by nibble; per lane the order is E = ((T_0 + T_2) + T_4) + T_6 and O likewise (see above).
    reg e[NV], o[NV];
    for (int g = 0; g < 8; ++g) {
      // A rotation (rorx with BMI2: no copy of the word first); the bits it wraps around fall outside the mask.
      constexpr unsigned kBits = 64;
      const unsigned r = (4 * static_cast<unsigned>(g) + kBits - kShift) % kBits;
      const word_t off = ((word >> r) | (word << ((kBits - r) % kBits))) & kMask;
      const float* te = reinterpret_cast<const float*>(tbytes + ((static_cast<std::size_t>(g) * 16) << kShift) + off);
      for (int q = 0; q < NV; ++q) {
        const reg x = V::load(te + q * L);
        if (g == 0) e[q] = x;
        else if (g == 1) o[q] = x;
        else if (g % 2 == 0) e[q] = V::add(e[q], x);
        else o[q] = V::add(o[q], x);
      }
    }
    for (int q = 0; q < NV; ++q) acc[q] = V::add(acc[q], V::add(e[q], o[q]));
    for (int q = 0; q < NV; ++q) {
      if (FULL) V::storeu(dst + q * L, acc[q]);
      else if (sr.part[q] != 0) V::store_part(dst + q * L, acc[q], sr.part[q]);
    }
  }
}

// One half-word step (the float rows r0 .. r0 + 31) of a block of lanes at mb: its tables built, then used by
// every sign row of the task. V: the vector traits of one path (reg, kLanes, zero, load (aligned), loadu / storeu
// (unaligned), load_part / store_part (the first n lanes, the rest zero / untouched), add, sub, mul_scalar).
template <class V, int NV>
[[gnu::always_inline]] inline void sign_gemm_block(const SignGemm& p, std::size_t mb, std::size_t nlanes,
                                                   std::size_t r0, std::size_t j0, std::size_t j1) {
  using reg = typename V::reg;
  constexpr int L = V::kLanes;
  alignas(64) float table[8][16][NV * L];
  const std::size_t R = p.R;
  int part[NV];  // lanes of each vector inside the block
  for (int q = 0; q < NV; ++q) {
    const std::ptrdiff_t left = static_cast<std::ptrdiff_t>(nlanes) - q * L;
    part[q] = static_cast<int>(std::clamp<std::ptrdiff_t>(left, 0, L));
  }
  const float* const rscale = p.rscale;
  for (int g = 0; g < 8; ++g) {
    const std::size_t rg = r0 + 4 * g;
    for (int q = 0; q < NV; ++q) {
      float* const tq = table[g][0] + q * L;
      if (part[q] == 0 || rg >= R) {  // lanes past the block or rows past R: every entry 0
        for (int b = 0; b < 16; ++b) V::store(tq + b * NV * L, V::zero());
        continue;
      }
      reg v[4];
      for (int i = 0; i < 4; ++i) {
        const std::size_t r = rg + i;
        if (r >= R) {
          v[i] = V::zero();
          continue;
        }
        const reg x = V::load_part(p.arows[r] + mb + q * L, part[q]);
        v[i] = rscale ? V::mul_scalar(x, rscale[r]) : x;
      }
      // The entries in registers (each from an earlier one), stored once: no entry is read back from memory.
      reg t[16];
      t[0] = V::add(V::add(v[0], v[1]), V::add(v[2], v[3]));
      V::store(tq, t[0]);
      for (int b = 1; b < 16; ++b) {
        const int i = __builtin_ctz(static_cast<unsigned>(b));
        t[b] = V::sub(t[b & (b - 1)], V::add(v[i], v[i]));
        V::store(tq + b * NV * L, t[b]);
      }
    }
  }
  const word_t* srow = p.s + (r0 / kWordBits) * p.J;
  const unsigned shift = static_cast<unsigned>(r0 % kWordBits);
  const bool first = r0 == 0 && !p.accumulate;
  const SignRows sr{&table[0][0][0], srow, shift, p.out + mb, p.ldo, part, first};
  if (nlanes == static_cast<std::size_t>(NV * L))
    sign_rows<V, NV, true>(sr, j0, j1);
  else
    sign_rows<V, NV, false>(sr, j0, j1);
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
        const bool whole = n == L || dst + (f.channels - 1) * f.Pz + L <= f.end;
        for (std::size_t c = 0; c < f.channels; ++c, dst += f.Pz, src += static_cast<std::ptrdiff_t>(T) * ldb) {
          reg acc = whole ? V::loadu(dst) : V::load_part(dst, n);
          for (std::ptrdiff_t t = 0; t < nt; ++t) acc = V::add_masked(acc, src + from[t], masks[t]);
          if (whole) V::storeu(dst, acc);
          else V::store_part(dst, acc, n);
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

// transpose64 (sign_gemm.h) on registers of T::kWords words (1 on the generic path): level j swaps the pairs of
// words k, k + j (k without bit j) as t = ((a >> j) ^ b) & mask, a ^= t << j, b ^= t, with mask the low j bits of
// each 2j-bit group. While j >= kWords a pair is two registers j / kWords apart; below, a register's own lanes
// (T::partner<j>: lanes k and k ^ j exchanged; T::high<j>(x, y): y in the lanes with bit j set, the pair's b).
// T: reg, kWords, load, store, set1, srli<j>, slli<j>, xor_, and_, and for kWords > 1 partner<j> and high<j>.
template <class T, unsigned J>
[[gnu::always_inline]] inline void transpose64_level(typename T::reg* r) {
  using reg = typename T::reg;
  constexpr int W = T::kWords, R = 64 / W;
  // Bit i of the mask is set where bit i of the word's column index has bit log2(J) clear.
  constexpr word_t kMask = J == 32 ? 0x00000000FFFFFFFFull : J == 16 ? 0x0000FFFF0000FFFFull
                         : J == 8  ? 0x00FF00FF00FF00FFull : J == 4  ? 0x0F0F0F0F0F0F0F0Full
                         : J == 2  ? 0x3333333333333333ull : 0x5555555555555555ull;
  const reg mask = T::set1(kMask);
  if constexpr (J >= static_cast<unsigned>(W)) {
    constexpr int d = static_cast<int>(J) / W;
    for (int i = 0; i < R; ++i) {
      if (i & d) continue;
      const reg t = T::and_(T::xor_(T::template srli<J>(r[i]), r[i + d]), mask);
      r[i] = T::xor_(r[i], T::template slli<J>(t));
      r[i + d] = T::xor_(r[i + d], t);
    }
  } else {
    for (int i = 0; i < R; ++i) {
      const reg p = T::template partner<J>(r[i]);
      const reg a = T::template high<J>(r[i], p), b = T::template high<J>(p, r[i]);
      const reg t = T::and_(T::xor_(T::template srli<J>(a), b), mask);
      r[i] = T::xor_(r[i], T::template high<J>(T::template slli<J>(t), t));
    }
  }
}

template <class T>
[[gnu::always_inline]] inline void transpose64_walk(word_t* a) {
  constexpr int W = T::kWords, R = 64 / W;
  typename T::reg r[R];
  for (int i = 0; i < R; ++i) r[i] = T::load(a + W * i);
  transpose64_level<T, 32>(r);
  transpose64_level<T, 16>(r);
  transpose64_level<T, 8>(r);
  transpose64_level<T, 4>(r);
  transpose64_level<T, 2>(r);
  transpose64_level<T, 1>(r);
  for (int i = 0; i < R; ++i) T::store(a + W * i, r[i]);
}

// A task: outputs [m0, m1) x [j0, j1) in blocks of NV * kLanes lanes (the last block masked), half-word by
// half-word, each half-word's blocks in turn: a float row's lanes in [m0, m1) are read together (a task's 64 lanes
// on AVX2 are two blocks; one block after the other read each row twice, half of it at a time, and the table
// builds waited on those reads). The order of the sums of each output does not change.
template <class V, int NV>
[[gnu::always_inline]] inline void sign_gemm_walk(const SignGemm& p, std::size_t m0, std::size_t m1,
                                                  std::size_t j0, std::size_t j1) {
  constexpr std::size_t B = static_cast<std::size_t>(NV) * V::kLanes;
  for (std::size_t r0 = 0; r0 < p.R; r0 += 32)
    for (std::size_t mb = m0; mb < m1; mb += B) sign_gemm_block<V, NV>(p, mb, std::min(B, m1 - mb), r0, j0, j1);
}

}  // namespace
}  // namespace horq
