// AVX-512 half of the outer-product HORQ GEMM task (outer_panel.h: the task, its panel and its epilogue's
// arithmetic); 8 columns per zmm (64-bit lanes). Compiled with -mavx512f/bw/vl/dq/vpopcntdq; selected only
// when the CPU and OS report AVX512F + BW + VL + DQ + VPOPCNTDQ.
//
// Counts: vpopcntq counts every 64-bit lane of broadcast(W[o][w]) ^ B[v][w] directly, added in 64-bit
// lanes: no flush, no overflow for any row length.
//
// Epilogue: n - 2 pc in the integer lanes, which vcvtqq2ps converts to float32 (exactly below 2^24; whole blocks
// with n below 2^24 take the same float as fma(pc, -2, n) on the converted count), then the epilogue's float32
// operations in order (outer_panel.h) on 8 columns at once (lane_set_output); 8 consecutive columns of one image are
// one masked store. With an implicit_h1 q, plane 0 comes from the pixel image,
// read in place or by masked gathers (fill_h1).
//
// Register blocks (kRows): MR x NV accumulators (at most kMaxAcc = 24) beside the NV column vectors and the
// broadcast fit the 32 zmm registers: 8 x 2 at orders 1 and 2, 4 x 3 at order 3, the K planes of one octet at higher
// orders. A prepared layer's tasks at orders 1-3 read its weights as filter quads (filter_quads, in its WeightCache).
#include <immintrin.h>

#include <algorithm>
#include <mutex>

#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

constexpr std::size_t kLanes = 8;  // 64-bit lanes per zmm: columns per octet
constexpr int kMaxAcc = 24;        // accumulators that fit the 32 zmm registers beside NV loads

// H_1 of columns [j0, j0 + jb) from the pixel image (layer.h PixelImage): a lane set of 8 consecutive pixels is
// left in place (OuterPanel::h1: the kernel reads its word w at the first pixel's word plus word_off[w]; the copy
// into the panel was 225 KB of stores a call on a 64-channel 56x56 layer), any other is gathered into plane 0 of the
// panel (8 columns' word w one masked gather at the columns' offsets plus word_off[w]). At order 1
// beta_1 comes the same way from the pixel sums, added in tap order like the scalar box sum (a padding
// tap adds the border's +0.0, which leaves a non-negative sum unchanged), then divided by n.
void fill_h1_from_image(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
  const PixelImage& im = q.image;
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G;
  const std::size_t group_words = p.group_words(), stride = p.word_step();
  const long long* words = reinterpret_cast<const long long*>(im.words.data());
  const __m512i zero = _mm512_setzero_si512();
  const __m512d n = _mm512_set1_pd(static_cast<double>(q.n));
  p.h1_off = im.word_off.data();
  PixelCursor at(im, j0);
  alignas(64) std::int64_t apart[kLanes];  // lane l's pixel offset in a row of the image: l sw
  for (std::size_t l = 0; l < kLanes; ++l) apart[l] = static_cast<std::int64_t>(l * at.sw);
  const __m512i step = _mm512_load_si512(apart);
  for (std::size_t c = 0; c < p.sets; ++c) {
    const std::size_t valid = std::min(kLanes, jb - c * kLanes);
    const __mmask8 m = static_cast<__mmask8>((1u << valid) - 1u);
    __m512i vw, vs;        // the columns' first words and sums
    std::int64_t ow0, os0;  // lane 0's
    bool consecutive;      // the octet's columns are consecutive pixels of one image row: loads, not gathers
    if (valid == kLanes && at.row_holds(kLanes)) {
      // 8 columns of one output row, sw pixels apart, formed in registers: the lane by lane form below stores 16
      // scalars and loads them as two vectors, which the stores cannot forward (a stall of about 20 cycles an octet:
      // a sixth of this function's samples at 64ch 56x56, order 1)
      ow0 = at.word(), os0 = at.sum();
      vw = _mm512_add_epi64(_mm512_set1_epi64(ow0), step);
      vs = _mm512_add_epi64(_mm512_set1_epi64(os0), step);
      consecutive = at.sw == 1;
      at.skip(kLanes);
    } else {
      alignas(64) std::int64_t ow[kLanes] = {}, os[kLanes] = {};
      consecutive = true;
      for (std::size_t l = 0; l < valid; ++l, at.next()) {
        ow[l] = at.word();
        os[l] = at.sum();
        consecutive = consecutive && ow[l] == ow[0] + static_cast<std::int64_t>(l);
      }
      vw = _mm512_load_si512(ow);
      vs = _mm512_load_si512(os);
      ow0 = ow[0], os0 = os[0];
    }
    if (consecutive && valid == kLanes) {  // read in place by the kernel (OuterPanel::h1)
      p.h1[c] = im.words.data() + ow0;
    } else {
      word_t* dst = p.words.data() + (c / G) * group_words + (c % G) * K * kLanes;
      for (std::size_t w = 0; w < kw; ++w) {
        const __m512i at = _mm512_add_epi64(vw, _mm512_set1_epi64(im.word_off[w]));
        const __m512i h1 = consecutive ? _mm512_maskz_loadu_epi64(m, words + ow0 + im.word_off[w])
                                       : _mm512_mask_i64gather_epi64(zero, m, at, words, 8);
        _mm512_storeu_si512(dst + w * stride, h1);
      }
    }
    if (K == 1) {
      __m512d sum = _mm512_setzero_pd();
      for (const std::int64_t off : im.sum_off) {
        const __m512d s1 = consecutive ? _mm512_maskz_loadu_pd(m, im.sums.data() + os0 + off)
                                       : _mm512_mask_i64gather_pd(_mm512_setzero_pd(), m,
                                                                  _mm512_add_epi64(vs, _mm512_set1_epi64(off)),
                                                                  im.sums.data(), 8);
        sum = _mm512_add_pd(sum, s1);
      }
      _mm512_storeu_pd(p.betas.data() + c * kLanes, _mm512_div_pd(sum, n));
    }
  }
}

// Eight rows of 8 words each (r[i]: words w .. w + 7 of row i) as eight vectors of one word of the 8 rows each
// (r[j]: word w + j of rows 0-7), 64-bit words transposed in registers: pairs of rows interleaved word by word,
// then 128-bit lanes gathered in two rounds.
inline void transpose8x8(__m512i (&r)[8]) {
  __m512 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    const __m512d a = _mm512_castps_pd(_mm512_castsi512_ps(r[i])), b = _mm512_castps_pd(_mm512_castsi512_ps(r[i + 1]));
    t[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));      // words 0, 2, 4, 6 of rows i, i + 1
    t[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));  // words 1, 3, 5, 7
  }
  for (int h = 0; h < 8; h += 4)  // rows h .. h + 3: u[h + j] holds words j and j + 4 (j = 0, 2, 1, 3 in that order)
    for (int j = 0; j < 2; ++j) {
      u[h + 2 * j] = _mm512_shuffle_f32x4(t[h + j], t[h + j + 2], 0x88);
      u[h + 2 * j + 1] = _mm512_shuffle_f32x4(t[h + j], t[h + j + 2], 0xdd);
    }
  constexpr int kWord[4] = {0, 2, 1, 3};  // u[i]'s first word
  for (int i = 0; i < 4; ++i) {
    r[kWord[i]] = _mm512_castps_si512(_mm512_shuffle_f32x4(u[i], u[i + 4], 0x88));
    r[kWord[i] + 4] = _mm512_castps_si512(_mm512_shuffle_f32x4(u[i], u[i + 4], 0xdd));
  }
}

// acc[i][v] = per-lane popcount sums of rows a[i] against vectors v over kw words, word w's vector v at
// src[v] + off[v][w] (outer_panel.h counts_direct: a panel's vectors, or plane 0 read in place from the pixel image).
// Row i's word w is a[i][w * S]: S = 1 for rows of kw consecutive words, S = kQuad for filter quads (filter_quads),
// where with MR a multiple of S each quad's S rows are read through one pointer stepped S words a word (fewer
// registers than MR row pointers with a scaled index). The sums are a local array, copied to acc at the end, and every
// loop over registers is unrolled by pragma: written into acc (the caller's array, which __m512i's may_alias type lets
// the word loads alias) or left to GCC's own unrolling, some instantiations kept their sums on the stack, loaded and
// stored every word (order 1's odd last lane set: 512ch 7x7 0.127 -> 0.138 ms).
template <int MR, int NV, std::size_t S>
inline void outer_kernel(const word_t* const* a, const word_t* const* src, const std::int64_t* const* off,
                         std::size_t kw, __m512i (&acc)[MR][NV]) {
  static_assert(MR * NV <= kMaxAcc, "accumulators beyond the register file");
  __m512i sum[MR][NV];  // local: kept in registers (acc, the caller's array, may alias the loads)
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 24
    for (int v = 0; v < NV; ++v) sum[i][v] = _mm512_setzero_si512();
  // Word w: its NV vectors against every row's word (row_word(i)), into the sums.
  const auto word_step = [&](std::size_t w, const auto& row_word) __attribute__((always_inline)) {
    __m512i bv[NV];
#pragma GCC unroll 24
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(src[v] + off[v][w]);
#pragma GCC unroll 24
    for (int i = 0; i < MR; ++i) {
      const __m512i ai = _mm512_set1_epi64(static_cast<long long>(row_word(i)));
#pragma GCC unroll 24
      for (int v = 0; v < NV; ++v)
        sum[i][v] = _mm512_add_epi64(sum[i][v], _mm512_popcnt_epi64(_mm512_xor_si512(ai, bv[v])));
    }
  };
  if constexpr (S == 1 || MR % S != 0) {
    for (std::size_t w = 0; w < kw; ++w) word_step(w, [&](int i) { return a[i][w * S]; });
  } else {
    constexpr int Q = MR / static_cast<int>(S);
    const word_t* qp[Q];
#pragma GCC unroll 24
    for (int g = 0; g < Q; ++g) qp[g] = a[g * static_cast<int>(S)];
    for (std::size_t w = 0; w < kw; ++w) {
      word_step(w, [&](int i) { return qp[i / static_cast<int>(S)][i % static_cast<int>(S)]; });
#pragma GCC unroll 24
      for (int g = 0; g < Q; ++g) qp[g] += S;
    }
  }
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 24
    for (int v = 0; v < NV; ++v) acc[i][v] = sum[i][v];
}

// outer_kernel as a call of its own, for blocks of more than 16 accumulators (orders 4-8; measured on order 2's 12 x 2
// of rounds 35-37): inlined into outer_rows, GCC kept 8 of the 24 sums in the caller's count array too, stored
// every word, and moved 4 between registers (perf annotate); apart, the word loop has no stores (64ch 56x56 order 2
// 0.440 -> 0.437 ms, 512ch 7x7 0.259 -> 0.256, 128ch 28x28 level; profile_conv_core on a Zen 4, alternated). The
// blocks of orders 1-3 stay inlined (order 1 apart: 2% slower).
template <int MR, int NV, std::size_t S>
__attribute__((noinline)) void outer_kernel_apart(const word_t* const* a, const word_t* const* src,
                                                  const std::int64_t* const* off, std::size_t kw,
                                                  __m512i (&acc)[MR][NV]) {
  outer_kernel<MR, NV, S>(a, src, off, kw, acc);
}

// S: the weights' layout, 1 (rows of kw words) or kQuad (filter_quads); row_at gives row r's first word, its word w
// S words further on (outer_panel.h filter_row).
template <std::size_t S>
struct Avx512Outer {
  static constexpr std::size_t kLanes = horq::kLanes;
  static constexpr std::size_t kWordStride = S;
  static const word_t* row_at(const word_t* wbits, std::size_t r, std::size_t kw) {
    return wbits + r / S * S * kw + r % S;
  }
  // Order 1: 8 filters x 2 lane sets (16 accumulators), not 12 x 2: its epilogue is the larger share of a call, and
  // with 8 filters a block's outputs and counts stay in registers (profile_conv_core on a Zen 4, medians: 64ch 56x56
  // 0.184 -> 0.180 ms, 64ch 32x32 + residual 0.066 -> 0.063, 1x1 256ch 28x28 0.119 -> 0.116, other suite layers level
  // or 1% faster; 6 x 2 was slower, 0.185). Order 2: 8 filters x its 2 planes as well, not 12 x 2 (level in round 35;
  // since, 64 filters as five blocks of 12 and one of 4 ran slower than eight of 8: benchmarks/ab_conv_core.py on a
  // Zen 4, with a residual, 64ch 56x56 0.429 -> 0.416 ms, 1x1 256ch 28x28 0.238 -> 0.227, 512ch 7x7 0.253 -> 0.251,
  // 64ch 32x32 without one 0.151 -> 0.145; 4 x 2 level at 32x32, slower at 56x56, 0.433). Order 3: 4 filters x 3
  // planes (12 accumulators, inlined), not 8 x 3 (24, outer_kernel_apart): 64ch 56x56 0.825 -> 0.808 ms, 128ch 28x28
  // 0.535 -> 0.528, 512ch 7x7 0.391 -> 0.387, 64ch 32x32 without a residual 0.271 -> 0.266. Orders 4-8 level either
  // way (their input quantization is most of a call).
  static constexpr int kRows[kMaxOrder + 1] = {0, 8, 8, 4, 6, 4, 4, 3, 3};
  static constexpr int kMidRows = 8, kLastRows = 4;  // a task's last rows: eights, then fours (<= 3 dropped)
  using Count = __m512i;
  static constexpr std::size_t kSplit = 1;  // vpopcntq counts whole words: panel and rows as filled
  static constexpr bool kCountsDirect = true;

  template <int MR>
  static void prepare_rows(const word_t* (&)[MR], std::size_t, word_t*) {}

  template <int MR, int NV>
  static void counts_direct(const word_t* const* a, const word_t* const* src, const std::int64_t* const* off,
                            std::size_t kw, __m512i (&cnt)[MR][NV]) {
    if constexpr (MR * NV > 16)
      outer_kernel_apart<MR, NV, S>(a, src, off, kw, cnt);
    else
      outer_kernel<MR, NV, S>(a, src, off, kw, cnt);
  }

  static void fill_h1(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    fill_h1_from_image(q, j0, jb, p);
  }

  // q's stored planes (rows j * K + k of q.bits, from plane 1 with an implicit_h1 q) into the panel: a lane set's 8
  // rows 8 words at a time (a row's last kw % 8 words by masked loads), transposed in registers, each word's vector
  // one store; a partial lane set word by word. Order 2 (profile_conv_core 64 56 2 and 128 28 2, fastest calls,
  // alternated with the word-by-word copy: 1-2% faster; most of what is left is reading the rows from L2, which a
  // fill skipped altogether would save: ~3% at 64 channels, docs/KERNELS.md round 23).
  // Word by word columns (QuantizedColumns::word_major): whole lane sets are read where they lie (OuterPanel::stored),
  // a partial one word by word.
  static void fill_rows(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    const std::size_t kw = q.kw, stride = p.word_step();
    if (q.word_major) {
      const std::size_t K = static_cast<std::size_t>(q.order), ws = q.word_stride();
      p.stored_off.resize(kw);
      for (std::size_t w = 0; w < kw; ++w) p.stored_off[w] = static_cast<std::int64_t>(w * ws);
      const std::size_t whole = jb / kLanes, gwords = p.group_words();
      for (std::size_t k = 1; k < K; ++k) {
        for (std::size_t c = 0; c < whole; ++c) p.stored[c * K + k] = q.row(j0 + c * kLanes, k);
        if (whole == p.sets) continue;
        word_t* dst = p.words.data() + (whole / p.G) * gwords + ((whole % p.G) * K + k) * kLanes;
        const std::size_t first = j0 + whole * kLanes;
        for (std::size_t w = 0; w < kw; ++w)
          for (std::size_t l = 0; first + l < j0 + jb; ++l) dst[w * stride + l] = q.word(first + l, k, w);
      }
      return;
    }
    each_stored_row_set(q, j0, jb, p, [&](word_t* dst, const word_t* const* src, std::size_t valid) {
      if (valid < kLanes) {
        for (std::size_t w = 0; w < kw; ++w)
          for (std::size_t l = 0; l < valid; ++l) dst[w * stride + l] = src[l][w];
        return;
      }
      for (std::size_t w = 0; w < kw; w += kLanes) {
        const std::size_t nw = std::min(kLanes, kw - w);
        const __mmask8 m = static_cast<__mmask8>((1u << nw) - 1u);
        __m512i r[kLanes];
        for (std::size_t l = 0; l < kLanes; ++l) r[l] = _mm512_maskz_loadu_epi64(m, src[l] + w);
        transpose8x8(r);
        for (std::size_t j = 0; j < nw; ++j) _mm512_storeu_si512(dst + (w + j) * stride, r[j]);
      }
    });
  }

  // The epilogue for one filter and one lane set (outer_panel.h's order, in float32): K counts, their betas (float32),
  // the filter's coef and add broadcast; the 8 outputs before the residual, floor and ceiling. n - 2 pc is formed in the
  // integer lanes and converted once (vcvtqq2ps: exact below 2^24, one rounding above, as the other paths). The
  // first term is s = 0 + beta_1 t written as beta_1 t: the same float, since beta_1 >= 0 and t, converted from an
  // integer, is never -0.0, so beta_1 t is never -0.0 (the one value that adding +0.0 changes).
  // Small (n < 2^24): n - 2 pc taken as fma(pc, -2, n) on the converted count instead, the same float: pc and n are
  // exact in float32, and so is n - 2 pc, which the FMA then returns unrounded (two operations instead of three:
  // 64ch 56x56 order 1 0.1745 -> 0.1705 ms, order 2 0.435 -> 0.432, 512ch 7x7 order 2 0.2575 -> 0.256;
  // profile_conv_core on a Zen 4, alternated, docs/KERNELS.md round 36).
  template <int K, bool Small = false>
  static __m256 lane_set_output(const __m512i* cnt, const __m256* beta, __m512i vn, __m256 coef, __m256 add) {
    const auto t = [vn](__m512i c) {
      if constexpr (Small)
        return _mm256_fmadd_ps(_mm512_cvtepi64_ps(c), _mm256_set1_ps(-2.0f), _mm512_cvtepi64_ps(vn));
      else
        return _mm512_cvtepi64_ps(_mm512_sub_epi64(vn, _mm512_add_epi64(c, c)));
    };
    __m256 s = _mm256_mul_ps(beta[0], t(cnt[0]));
    for (int k = 1; k < K; ++k) s = _mm256_add_ps(s, _mm256_mul_ps(beta[k], t(cnt[k])));
    return _mm256_add_ps(_mm256_mul_ps(coef, s), add);
  }

  // A lane set's 8 betas of one plane, rounded to float32 (the epilogue's operand).
  static __m256 betas32(const double* b) { return _mm512_cvtpd_ps(_mm512_loadu_pd(b)); }

  // A whole register block (outer_panel.h: MR real filters x G lane sets, each 8 consecutive columns of one
  // image): per output the operations of store, with the betas loaded once per block, coef / add / floor / ceiling
  // broadcast once per filter and plain stores (store re-derived each of these per output, and branched on its
  // destination's kind).
  template <int MR, int G, int K>
  static void store_block(const __m512i (*cnt)[G * K], const double* betas, double n, const double* coef,
                          const double* add, const LaneDest<kLanes>* dest, const Epilogue& ep, std::size_t o,
                          std::size_t ppi, float* y) {
    // Later: every residual load before the block's first store (layer.h Epilogue::residual_aliases).
    const bool small = n < 0x1p24, later = ep.residual_aliases;
    if (small && later)
      store_block_as<MR, G, K, true, true>(cnt, betas, n, coef, add, dest, ep, o, ppi, y);
    else if (small)
      store_block_as<MR, G, K, true, false>(cnt, betas, n, coef, add, dest, ep, o, ppi, y);
    else if (later)
      store_block_as<MR, G, K, false, true>(cnt, betas, n, coef, add, dest, ep, o, ppi, y);
    else
      store_block_as<MR, G, K, false, false>(cnt, betas, n, coef, add, dest, ep, o, ppi, y);
  }

  // Later: the block's outputs kept in registers and stored after all of them are formed.
  template <int MR, int G, int K, bool Small, bool Later>
  static void store_block_as(const __m512i (*cnt)[G * K], const double* betas, double n, const double* coef,
                             const double* add, const LaneDest<kLanes>* dest, const Epilogue& ep, std::size_t o,
                             std::size_t ppi, float* y) {
    constexpr __mmask8 kAll = 0xff;
    const __m512i vn = _mm512_set1_epi64(static_cast<long long>(n));
    __m256 beta[G * K];
    for (int v = 0; v < G * K; ++v) beta[v] = betas32(betas + v * kLanes);
    std::size_t at[G];  // lane set cg's first output of filter o in y
    for (int cg = 0; cg < G; ++cg) at[cg] = o * ppi + dest[cg].base[0];
    const float* const residual = ep.residual;
    const float* const floor = ep.floor ? ep.floor + o : nullptr;
    const float* const ceiling = ep.ceiling ? ep.ceiling + o : nullptr;
    __m256 outs[Later ? MR : 1][G];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m256 c = _mm256_set1_ps(static_cast<float>(coef[i])), a = _mm256_set1_ps(static_cast<float>(add[i]));
#pragma GCC unroll 4
      for (int cg = 0; cg < G; ++cg) {
        __m256 out = lane_set_output<K, Small>(cnt[i] + cg * K, beta + cg * K, vn, c, a);
        const std::size_t off = at[cg] + static_cast<std::size_t>(i) * ppi;
        if (residual) out = _mm256_add_ps(out, _mm256_maskz_loadu_ps(kAll, residual + off));
        if (floor) out = _mm256_max_ps(_mm256_set1_ps(floor[i]), out);  // floor > out ? floor : out
        if (ceiling) out = _mm256_min_ps(_mm256_set1_ps(ceiling[i]), out);  // ceiling < out ? ceiling : out
        if constexpr (Later)
          outs[i][cg] = out;
        else
          _mm256_mask_storeu_ps(y + off, kAll, out);  // all lanes (masked forms: the emulation harness's set)
      }
    }
    if constexpr (Later) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int cg = 0; cg < G; ++cg)
          _mm256_mask_storeu_ps(y + at[cg] + static_cast<std::size_t>(i) * ppi, kAll, outs[i][cg]);
    }
  }

  // A block of an NHWC output (outer_panel.h): the per-lane-set store (its scatter) of each of its outputs.
  template <int MR, int G, int K>
  static void store_columns(const __m512i (*cnt)[G * K], const double* betas, double n, const double* coef,
                            const double* add, const LaneDest<kLanes>* dest, const Epilogue& ep, std::size_t o,
                            std::size_t ppi, float* y) {
    for (int i = 0; i < MR; ++i)
      for (int cg = 0; cg < G; ++cg)
        store<K>(cnt[i] + cg * K, betas + cg * K * kLanes, n, coef[i], add[i], dest[cg], ep, o + i, ppi, y);
  }

  template <int K>
  static void store(const __m512i* cnt, const double* betas, double n, double coef, double add,
                    const LaneDest<kLanes>& d, const Epilogue& ep, std::size_t o, std::size_t ppi, float* y) {
    __m256 beta[K];
    for (int k = 0; k < K; ++k) beta[k] = betas32(betas + k * kLanes);
    __m256 out = lane_set_output<K>(cnt, beta, _mm512_set1_epi64(static_cast<long long>(n)),
                                    _mm256_set1_ps(static_cast<float>(coef)), _mm256_set1_ps(static_cast<float>(add)));
    if (d.contiguous) {
      const __mmask8 valid = static_cast<__mmask8>((1u << d.valid) - 1u);
      float* dst = y + d.base[0] + o * ppi;
      if (ep.residual) out = _mm256_add_ps(out, _mm256_maskz_loadu_ps(valid, ep.residual + (dst - y)));
      if (ep.floor) out = _mm256_max_ps(_mm256_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
      if (ep.ceiling) out = _mm256_min_ps(_mm256_set1_ps(ep.ceiling[o]), out);  // ceiling < out ? ceiling : out
      _mm256_mask_storeu_ps(dst, valid, out);
    } else {  // lanes apart in y (across images; an NHWC output or a linear layer's: m apart): scattered
      const __mmask8 valid = static_cast<__mmask8>((1u << d.valid) - 1u);
      static_assert(sizeof d.base[0] == 8, "lane offsets are read as 64-bit indices");
      const __m512i at = _mm512_loadu_si512(d.base);
      if (ep.residual)
        out = _mm256_add_ps(out, _mm512_mask_i64gather_ps(_mm256_setzero_ps(), valid, at, ep.residual + o * ppi, 4));
      if (ep.floor) out = _mm256_max_ps(_mm256_set1_ps(ep.floor[o]), out);
      if (ep.ceiling) out = _mm256_min_ps(_mm256_set1_ps(ep.ceiling[o]), out);
      _mm512_mask_i64scatter_ps(y + o * ppi, valid, at, out, 4);
    }
  }
};

// The weights as filter quads: filters 4 q .. 4 q + 3 word by word, word w of filter 4 q + r at (q kw + w) 4 + r
// (filters past m zero), built into the cache by the first task that asks and read by every later one. A register
// block's rows (8 or 12 filters, whole quads) are then 2-3 sequential streams, not 8-12 rows 8 kw bytes apart read a
// word at a time: from memory the hardware prefetchers follow those, and the rows stop waiting on their loads.
// Inside a network (ResNet-18 224x224, 1 thread) a layer's weights come from memory, evicted by the maps since its
// last call: 512ch 7x7 takes 0.262 ms at order 2 with its weights cached, 0.307 with them flushed before each call,
// 0.274 as quads (profile_conv_core with the weights flushed, a throwaway build; docs/KERNELS.md round 35).
constexpr std::size_t kQuad = 4;

const word_t* filter_quads(const word_t* wbits, std::size_t m, std::size_t kw, WeightCache& cache) {
  std::call_once(cache.filter_quads_once, [&] {
    cache.filter_quads.assign(ceil_div(m, kQuad) * kQuad * kw, 0);
    for (std::size_t r = 0; r < m; ++r)
      for (std::size_t w = 0; w < kw; ++w)
        cache.filter_quads[(r / kQuad * kw + w) * kQuad + r % kQuad] = wbits[r * kw + w];
  });
  return cache.filter_quads.data();
}

}  // namespace

void gemm_task_avx512(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                      float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb, WeightCache* cache,
                      std::uint64_t call) {
  // Quads where a task's filters start on one and every register block is whole quads (orders 1-3: 8 or 4 rows, then
  // 8 and 4); calls without a cache (a linear layer, training) read the rows as they are.
  if (cache != nullptr && o0 % kQuad == 0 && q.order <= 3) {
    outer_task<Avx512Outer<kQuad>>(filter_quads(wbits, m, q.kw, *cache), m, q, ep, ppi, y, o0, mb, j0, jb, call);
    return;
  }
  outer_task<Avx512Outer<1>>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, call);
}

}  // namespace horq
