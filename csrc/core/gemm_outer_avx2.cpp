// AVX2 half of the outer-product HORQ GEMM task (outer_panel.h: the task, its panel and its epilogue's
// arithmetic); 4 columns per ymm (64-bit lanes). Compiled with -mavx2; selected only on CPUs with AVX2. Tasks of
// orders 1-3 with enough columns take the table kernel at the end of this file instead, and tasks of 16-63 columns
// of long rows its filters-in-lanes form (same bits).
//
// Counts: AVX2 has no vector popcount, so each 64-bit lane of a XOR is counted with the nibble table. Weight rows
// and panel vectors are both stored split into their low and high nibbles (prepare_rows, fill_rows, fill_h1), and
// nibble(a ^ b) = nibble(a) ^ nibble(b), so per 256 bits
//     cnt8 += lut[Wlo[o][w] ^ Blo[v][w]] + lut[Whi[o][w] ^ Bhi[v][w]]      (vpshufb, bytes)
// is two XORs, two lookups and two byte adds: 6 operations instead of the 8 that splitting each XOR costs (AND,
// shift, AND). On an AMD EPYC Zen 3, the loops alone on 9-word rows (benchmarks/count_kernels.cpp): 3 x 2 blocks
// ~370 -> ~500 G binary MAC/s. A byte gains at most 8 per word, so byte counts are summed over up to kFlushWords =
// 31 words (8 * 31 = 248 <= 255) before vpsadbw adds the 8 bytes of each 64-bit lane into 64-bit counts.
//
// Epilogue: n - 2 * count is an integer far below 2^51 in magnitude, so it converts to double exactly by the
// exponent trick (signed_count below), and from there to float32 exactly (below 2^24). Then the epilogue's float32
// operations in order (outer_panel.h) on 4 columns at once; 4 consecutive columns of one image are one store
// (masked only for a lane set's last 1-3 columns: AMD CPUs microcode masked stores, ~10x the time of a plain one).
// A register block whose lane sets are all such whole stores takes store_block, the rest store.
//
// Register blocks (kRows): the 16 ymm registers hold MR x NV byte accumulators, 2 NV column vectors, two
// broadcasts and the table: 3 x 2 at orders 1-2, 2 x 3 at order 3, one filter from order 4 (the same tool: 3 x 2
// ~500 G, 2 x 3 ~515 G, 1 x 4 ~525 G, 4 x 2 ~415 G: more than the 16 registers hold).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "core/isa_local.h"
#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

// box_beta (layer.h) of 4 columns whose first taps' pixel sums are consecutive, from im.sums[at]: one vector add per
// tap in tap order (each lane the scalar box sum), then / n (in every lane); box_beta's bits.
inline __m256d box_betas4(const PixelImage& im, std::int64_t at, __m256d n) {
  const double* sums = im.sums.data() + at;
  __m256d sum = _mm256_setzero_pd();
  for (const std::int64_t off : im.sum_off) sum = _mm256_add_pd(sum, _mm256_loadu_pd(sums + off));
  return _mm256_div_pd(sum, n);
}

// The order-1 betas of nc columns from column j of an image, box_beta's each: four at a time where their first taps'
// pixel sums are consecutive (a stride-1 row) by box_betas4, the same adds per lane in the same order and the same
// division, so the same bits. One column at a time, the chain of adds and the division's latency had made the table
// kernel's betas ~6% of a 64ch 56x56 order-1 layer.
void box_betas(const PixelImage& im, std::size_t j, std::size_t nc, double n, double* out) {
  const __m256d vn = _mm256_set1_pd(n);
  PixelCursor at(im, j);
  std::size_t c = 0;
  for (; c + 4 <= nc; c += 4) {
    std::int64_t sum_at[4];
    for (std::int64_t& a : sum_at) a = at.sum(), at.next();
    const std::int64_t a = sum_at[0];
    if (sum_at[1] == a + 1 && sum_at[2] == a + 2 && sum_at[3] == a + 3) {
      _mm256_storeu_pd(out + c, box_betas4(im, a, vn));
    } else {
      for (std::size_t i = 0; i < 4; ++i) out[c + i] = box_beta(im, sum_at[i], n);
    }
  }
  for (; c < nc; ++c, at.next()) out[c] = box_beta(im, at.sum(), n);
}

struct Avx2Outer {
  static constexpr std::size_t kLanes = 4;  // 64-bit lanes per ymm: columns per lane set
  static constexpr int kRows[kMaxOrder + 1] = {0, 3, 3, 2, 1, 1, 1, 1, 1};
  static constexpr int kMidRows = 2, kLastRows = 1;  // a task's last rows: pairs, then one: none dropped
  static constexpr std::size_t kFlushWords = 31;    // words whose byte counts fit a byte (8 per word)
  static constexpr std::size_t kSplit = 2;          // each word as its low nibbles, then its high nibbles
  using Count = __m256i;

  // Every byte of the 4 words in v as its two nibbles, stored at lo and hi: lo = v & 0x0f.., hi = (v >> 4) & 0x0f...
  // XOR acts on nibbles separately, so nibble(a ^ b) = nibble(a) ^ nibble(b): with both operands stored split, a
  // count needs no masking or shifting in the kernel (6 operations per 256 bits, not 8).
  static void store_split(word_t* lo, word_t* hi, __m256i v) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo), _mm256_and_si256(v, low));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi), _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
  }

  // store_split for n words from x, 4 at a time, the last 1-3 one by one.
  static void split_words(const word_t* x, std::size_t n, word_t* lo, word_t* hi) {
    std::size_t w = 0;
    for (; w + kLanes <= n; w += kLanes)
      store_split(lo + w, hi + w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + w)));
    for (; w < n; ++w) {
      const word_t v = x[w];
      lo[w] = v & 0x0f0f0f0f0f0f0f0fULL, hi[w] = (v >> 4) & 0x0f0f0f0f0f0f0f0fULL;
    }
  }

  // q's stored planes (rows j * K + k of q.bits, from plane 1 with an implicit_h1 q) into the panel, already split:
  // 4 columns' rows 4 words at a time, a 4 x 4 transpose of 64-bit words in registers, each word vector then stored
  // as its two nibble copies; partial lane sets and a row's last 1-3 words word by word.
  // Word by word columns (QuantizedColumns::word_major) have a lane set's words side by side: one load a word.
  static void fill_rows(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    const std::size_t kw = q.kw, stride = p.word_step(), copy = p.NV * kLanes, ws = q.word_stride();
    const auto put = [&](word_t* dst, __m256i v) { store_split(dst, dst + copy, v); };
    each_stored_row_set(q, j0, jb, p, [&](word_t* dst, const word_t* const* src, std::size_t valid) {
      std::size_t w = 0;
      if (valid == kLanes && q.word_major) {
        for (; w < kw; ++w)
          put(dst + w * stride, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[0] + w * ws)));
      } else if (valid == kLanes) {
        for (; w + 4 <= kw; w += 4) {
          __m256i r[kLanes];
          for (std::size_t l = 0; l < kLanes; ++l)
            r[l] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[l] + w));
          transpose4x4(r);
          for (std::size_t j = 0; j < 4; ++j) put(dst + (w + j) * stride, r[j]);
        }
      }
      for (; w < kw; ++w)
        for (std::size_t l = 0; l < valid; ++l)
          split_words(src[l] + w * ws, 1, dst + w * stride + l, dst + w * stride + copy + l);
    });
  }

  // Four rows of 4 words each (r[i]: words w .. w + 3 of row i) as four vectors of one word of the 4 rows each
  // (r[j]: word w + j of rows 0-3), 64-bit words transposed in registers.
  static void transpose4x4(__m256i (&r)[4]) {
    const __m256i t0 = _mm256_unpacklo_epi64(r[0], r[1]), t1 = _mm256_unpackhi_epi64(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi64(r[2], r[3]), t3 = _mm256_unpackhi_epi64(r[2], r[3]);
    r[0] = _mm256_permute2x128_si256(t0, t2, 0x20), r[1] = _mm256_permute2x128_si256(t1, t3, 0x20);
    r[2] = _mm256_permute2x128_si256(t0, t2, 0x31), r[3] = _mm256_permute2x128_si256(t1, t3, 0x31);
  }

  // A register block's MR rows, each rewritten as its kw low-nibble words then its kw high-nibble words.
  template <int MR>
  static void prepare_rows(const word_t* (&a)[MR], std::size_t kw, word_t* buf) {
    for (int i = 0; i < MR; ++i) {
      word_t* row = buf + static_cast<std::size_t>(i) * 2 * kw;
      split_words(a[i], kw, row, row + kw);
      a[i] = row;
    }
  }

  // Rows a[i] (low nibbles at a[i][w], high at a[i][kw + w]) against a group's vectors (word w's low-nibble
  // vectors at b + w * step, the high-nibble ones `copy` words after them).
  template <int MR, int NV>
  static void counts(const word_t* const* a, const word_t* b, std::size_t kw, std::size_t step, std::size_t copy,
                     __m256i (&cnt)[MR][NV]) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i zero = _mm256_setzero_si256();
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) cnt[i][v] = zero;
    for (std::size_t w0 = 0; w0 < kw; w0 += kFlushWords) {
      const std::size_t w1 = std::min(kw, w0 + kFlushWords);
      __m256i acc[MR][NV];
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = zero;
      for (std::size_t w = w0; w < w1; ++w) {
        __m256i lo[NV], hi[NV];
        for (int v = 0; v < NV; ++v) {
          lo[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w * step + v * kLanes));
          hi[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w * step + copy + v * kLanes));
        }
        for (int i = 0; i < MR; ++i) {
          const __m256i al = _mm256_set1_epi64x(static_cast<long long>(a[i][w]));
          const __m256i ah = _mm256_set1_epi64x(static_cast<long long>(a[i][kw + w]));
          for (int v = 0; v < NV; ++v) {
            acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_shuffle_epi8(lut, _mm256_xor_si256(al, lo[v])));
            acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah, hi[v])));
          }
        }
      }
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) cnt[i][v] = _mm256_add_epi64(cnt[i][v], _mm256_sad_epu8(acc[i][v], zero));
    }
  }

  // Plane 0 of an implicit_h1 q (and at order 1 beta_1), fill_h1_scalar's values: a lane set of 4 consecutive
  // pixels of one image row (stride 1, away from row ends: nearly all of them) takes one load and one store per
  // word, and its 4 betas one vector add per tap in tap order (the scalar box sum of each lane), then / n;
  // any other lane set goes lane by lane. Each word goes in split into its two nibble copies, as fill_rows writes
  // the other planes.
  static void fill_h1(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    const PixelImage& im = q.image;
    const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G, gwords = p.group_words();
    const std::size_t stride = p.word_step(), copy = p.NV * kLanes;
    const __m256d n = _mm256_set1_pd(static_cast<double>(q.n));
    PixelCursor at(im, j0);
    for (std::size_t c = 0; c < p.sets; ++c) {
      const std::size_t valid = std::min(kLanes, jb - c * kLanes);
      std::int64_t ow[kLanes], os[kLanes];
      bool consecutive = valid == kLanes;
      if (consecutive && at.sw == 1 && at.row_holds(kLanes)) {  // 4 pixels of one row: no lane by lane cursor
        ow[0] = at.word(), os[0] = at.sum();
        at.skip(kLanes);
      } else {
        for (std::size_t l = 0; l < valid; ++l, at.next()) {
          ow[l] = at.word(), os[l] = at.sum();
          consecutive = consecutive && ow[l] == ow[0] + static_cast<std::int64_t>(l) &&
                        os[l] == os[0] + static_cast<std::int64_t>(l);
        }
      }
      word_t* dst = p.words.data() + (c / G) * gwords + (c % G) * K * kLanes;
      if (consecutive) {
        const word_t* src = im.words.data() + ow[0];
        for (std::size_t w = 0; w < kw; ++w)
          store_split(dst + w * stride, dst + w * stride + copy,
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + im.word_off[w])));
        if (K == 1) _mm256_storeu_pd(p.betas.data() + c * kLanes, box_betas4(im, os[0], n));
        continue;
      }
      for (std::size_t l = 0; l < valid; ++l) {
        const word_t* src = im.words.data() + ow[l];
        for (std::size_t w = 0; w < kw; ++w)
          split_words(src + im.word_off[w], 1, dst + w * stride + l, dst + w * stride + copy + l);
        if (K == 1) p.betas[c * kLanes + l] = box_beta(im, os[l], static_cast<double>(q.n));
      }
    }
  }

  // n - 2 pc of 4 lanes as doubles, exactly: |n - 2 pc| < 2^51, so (the bits of 2^52 + 2^51) + n - 2 pc are
  // the bits of the double 2^52 + 2^51 + (n - 2 pc), from which 2^52 + 2^51 subtracts exactly. nbits: the bits
  // of 2^52 + 2^51 + n.
  static __m256i count_bits(double n) { return _mm256_set1_epi64x(0x4338000000000000LL + static_cast<long long>(n)); }
  static __m256d signed_count(__m256i cnt, __m256i nbits) {
    const __m256i t = _mm256_sub_epi64(nbits, _mm256_add_epi64(cnt, cnt));
    return _mm256_sub_pd(_mm256_castsi256_pd(t), _mm256_set1_pd(6755399441055744.0));
  }

  // The epilogue for one filter and one lane set (outer_panel.h's order, in float32): K counts, their betas
  // (float32), the filter's coef and add broadcast; the 4 outputs before the residual and floor. n - 2 pc comes
  // exactly as a double (signed_count) and converts exactly (an integer below 2^24).
  template <int K>
  static __m128 lane_set_output(const __m256i* cnt, const __m128* beta, __m256i nbits, __m128 coef, __m128 add) {
    __m128 s = _mm_setzero_ps();
    for (int k = 0; k < K; ++k)
      s = _mm_add_ps(s, _mm_mul_ps(beta[k], _mm256_cvtpd_ps(signed_count(cnt[k], nbits))));
    return _mm_add_ps(_mm_mul_ps(coef, s), add);
  }

  // A lane set's 4 betas of one plane, rounded to float32 (the epilogue's operand).
  static __m128 betas32(const double* b) { return _mm256_cvtpd_ps(_mm256_loadu_pd(b)); }

  // A register block's outputs (MR filters x G lane sets of 4 columns) before the float32 steps, the betas loaded
  // and the count constants made once per block, coef/add broadcast once per filter.
  template <int MR, int G, int K>
  static void block_outputs(const __m256i (*cnt)[G * K], const double* betas, double n, const double* coef,
                            const double* add, __m128 (&out)[MR][G]) {
    const __m256i nbits = count_bits(n);
    __m128 beta[G * K];
    for (int v = 0; v < G * K; ++v) beta[v] = betas32(betas + v * kLanes);
    for (int i = 0; i < MR; ++i) {
      const __m128 c = _mm_set1_ps(static_cast<float>(coef[i])), a = _mm_set1_ps(static_cast<float>(add[i]));
      for (int cg = 0; cg < G; ++cg) out[i][cg] = lane_set_output<K>(cnt[i] + cg * K, beta + cg * K, nbits, c, a);
    }
  }

  // The epilogue of a whole register block: MR filters x G lane sets, each lane set 4 consecutive columns of
  // one image (LaneDest::whole), every filter a real output. The same operations per output as store, with the
  // betas loaded and the count constants made once per block and coef/add broadcast once per filter
  // (per-store, that overhead cost as much as the arithmetic: 64-channel 3x3 layers, 9-word rows).
  template <int MR, int G, int K>
  static void store_block(const __m256i (*cnt)[G * K], const double* betas, double n, const double* coef,
                          const double* add, const LaneDest<kLanes>* dest, const Epilogue& ep, std::size_t o,
                          std::size_t ppi, float* y) {
    __m128 out[MR][G];
    block_outputs<MR, G, K>(cnt, betas, n, coef, add, out);
    float* dst[G];
    for (int cg = 0; cg < G; ++cg) dst[cg] = y + o * ppi + dest[cg].base[0];
    if (ep.residual) {
      const float* r[G];
      for (int cg = 0; cg < G; ++cg) r[cg] = ep.residual + (dst[cg] - y);
      for (int i = 0; i < MR; ++i)
        for (int cg = 0; cg < G; ++cg) out[i][cg] = _mm_add_ps(out[i][cg], _mm_loadu_ps(r[cg] + i * ppi));
    }
    if (ep.floor)
      for (int i = 0; i < MR; ++i) {
        const __m128 f = _mm_set1_ps(ep.floor[o + i]);
        for (int cg = 0; cg < G; ++cg) out[i][cg] = _mm_max_ps(f, out[i][cg]);  // floor > out ? floor : out
      }
    if (ep.ceiling)
      for (int i = 0; i < MR; ++i) {
        const __m128 c = _mm_set1_ps(ep.ceiling[o + i]);
        for (int cg = 0; cg < G; ++cg) out[i][cg] = _mm_min_ps(c, out[i][cg]);  // ceiling < out ? ceiling : out
      }
    for (int i = 0; i < MR; ++i)
      for (int cg = 0; cg < G; ++cg) _mm_storeu_ps(dst[cg] + i * ppi, out[i][cg]);
  }

  // A register block of an NHWC output (each lane set LaneDest::columns; no residual, floor or ceiling): the block's
  // outputs as store_block computes them, each lane set's 4 x MR transposed in registers so that a column's MR
  // filters, consecutive in y, go out as one or two plain stores instead of lane by lane.
  template <int MR, int G, int K>
  static void store_columns(const __m256i (*cnt)[G * K], const double* betas, double n, const double* coef,
                            const double* add, const LaneDest<kLanes>* dest, const Epilogue&, std::size_t o,
                            std::size_t, float* y) {
    static_assert(MR >= 1 && MR <= 4, "a column's filters fill at most one xmm");
    __m128 out[MR][G];
    block_outputs<MR, G, K>(cnt, betas, n, coef, add, out);
    for (int cg = 0; cg < G; ++cg) {
      __m128 col[kLanes] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
      for (int i = 0; i < MR; ++i) col[i] = out[i][cg];  // row i: filter o + i's 4 columns
      _MM_TRANSPOSE4_PS(col[0], col[1], col[2], col[3]);  // now col[l]: column l's filters o .. o + 3
      for (std::size_t l = 0; l < kLanes; ++l) {
        float* dst = y + dest[cg].base[l] + o;
        if (MR == 4) {
          _mm_storeu_ps(dst, col[l]);
        } else if (MR >= 2) {
          _mm_storel_pi(reinterpret_cast<__m64*>(dst), col[l]);
          if (MR == 3) _mm_store_ss(dst + 2, _mm_movehl_ps(col[l], col[l]));
        } else {
          _mm_store_ss(dst, col[l]);
        }
      }
    }
  }

  template <int K>
  static void store(const __m256i* cnt, const double* betas, double n, double coef, double add,
                    const LaneDest<kLanes>& d, const Epilogue& ep, std::size_t o, std::size_t ppi, float* y) {
    __m128 beta[K];
    for (int k = 0; k < K; ++k) beta[k] = betas32(betas + k * kLanes);
    put(lane_set_output<K>(cnt, beta, count_bits(n), _mm_set1_ps(static_cast<float>(coef)),
                           _mm_set1_ps(static_cast<float>(add))),
        d, ep, o, ppi, y);
  }

  // A lane set's 4 outputs (before the float32 steps) into y where d says, with the residual, floor and ceiling.
  static void put(__m128 out, const LaneDest<kLanes>& d, const Epilogue& ep, std::size_t o, std::size_t ppi,
                  float* y) {
    float* dst = y + d.base[0] + o * ppi;
    if (d.whole) {  // the common case: 4 consecutive columns of one image, one plain store
      if (ep.residual) out = _mm_add_ps(out, _mm_loadu_ps(ep.residual + (dst - y)));
      if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
      if (ep.ceiling) out = _mm_min_ps(_mm_set1_ps(ep.ceiling[o]), out);  // ceiling < out ? ceiling : out
      _mm_storeu_ps(dst, out);
    } else if (d.contiguous) {  // a lane set's last 1-3 columns: masked (AMD CPUs microcode vmaskmovps stores)
      const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(d.valid)), _mm_setr_epi32(0, 1, 2, 3));
      if (ep.residual) out = _mm_add_ps(out, _mm_maskload_ps(ep.residual + (dst - y), mask));
      if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);
      if (ep.ceiling) out = _mm_min_ps(_mm_set1_ps(ep.ceiling[o]), out);
      _mm_maskstore_ps(dst, mask, out);
    } else {
      alignas(16) float lane[kLanes];
      _mm_store_ps(lane, out);
      for (unsigned l = 0; l < d.valid; ++l) {
        const std::size_t at = d.base[l] + o * ppi;
        y[at] = finish_output(lane[l], ep, at, o);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Table GEMM: counts without the XOR. popcount(w ^ x) over a nibble pair is row w of a 16 x 16 table at column x, so
// with each filter's nibbles turned into table rows, one vpshufb looks up 32 nibble counts of 32 columns at once:
//     cnt8[i][v] += shuffle(row(W[o_i] nibble p), X_v[p])       (X_v[p]: nibble p of 32 columns, one per byte)
// two operations per 128 binary MACs against the split kernel's three (XOR, lookup, add). Per nibble position p,
// MR table rows (a byte offset each, 16 x the nibble, into the 256-byte table, broadcast to both 128-bit halves) go
// against NV vectors of 32 column nibbles. The 9-word rows of benchmarks/count_kernels.cpp: "table 3 x 3" ~660 G
// binary MAC/s against "split 3 x 2" ~500 G on an AMD EPYC Zen 3.
//
// Layout. Nibble position p = 2 b + h of a word: byte b, low (h = 0) or high nibble; a row has P = 16 kw positions.
// Filter rows become P byte offsets each (weight_offsets, once per task); the columns of a block (G groups of 32
// columns x K planes: NV vectors) become a panel [p][v] of 32 bytes, byte c the nibble of column c (transpose32: 32
// columns' words transposed as bytes in registers, then split into nibbles; stored planes first gathered by word,
// rows_by_word). A byte counts at most 4 per position, so byte counts are widened into 16-bit ones every kFlush = 63
// positions (vpunpck*bw: columns 0-7 and 16-23 in the first half, 8-15 and 24-31 in the second); rows of n < 65536
// bits, so 16 bits hold every count. A task builds the panels of a superblock of blocks, then runs each register
// block of filters over all of them (task, kSuperColumns).
//
// Epilogue: the outer kernel's operations in its order on a group's 8 lane sets at once (group_outputs), each group
// of 32 consecutive outputs stored as computed, any other destination through Avx2Outer::put (the outer kernel's);
// same bits. Orders 1 and 2; gemm_task_avx2 below decides which tasks (and which of their columns) take it.
namespace table {

constexpr std::size_t kCols = 32;   // columns per vector
constexpr std::size_t kFlush = 63;  // positions whose byte counts (<= 4 each) fit a byte
// The largest panel of a 2-vector block (the block shapes below) with which a task takes the table kernel: 256ch 14x14
// (36-word rows, 36 KB) gained 6% at order 1 and 9% at order 2 (AMD EPYC Zen 3, profile_conv_core with
// HORQ_AVX2_TABLE), 512ch 7x7 (72-word rows, 72 KB) 10% at order 2 once its 49 columns were one task.
constexpr std::size_t kPanelBytes = 80 * 1024;

// Built at compile time: a constructor run at load would be this file's code (compiled for AVX2) running on every
// CPU that loads the library, AVX2 or not.
struct Tables {
  alignas(64) std::uint8_t t[256] = {};  // row w (16 bytes at 16 w): popcount(w ^ x) for x = 0..15
  constexpr Tables() {
    for (int w = 0; w < 16; ++w)
      for (int x = 0; x < 16; ++x) t[16 * w + x] = static_cast<std::uint8_t>(__builtin_popcount(w ^ x));
  }
};
constexpr Tables kTables;

// The P byte offsets (16 x nibble p) of each of `count` rows of kw words, row after row.
void weight_offsets(const word_t* rows, std::size_t count, std::size_t kw, std::uint8_t* out) {
  const __m128i lo_mask = _mm_set1_epi8(0x0f), hi_mask = _mm_set1_epi8(static_cast<char>(0xf0));
  for (std::size_t i = 0; i < count * kw; ++i) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows + i));
    // Nibbles are below 16: shifting 16-bit lanes by 4 keeps each in its byte.
    const __m128i lo = _mm_slli_epi16(_mm_and_si128(v, lo_mask), 4), hi = _mm_and_si128(v, hi_mask);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * i), _mm_unpacklo_epi8(lo, hi));
  }
}

// Word w of 32 columns (w[c], c = 0..31) as 16 vectors of 32 bytes (byte c: nibble p of column c), vector p at
// out + p * stride. Loads put columns 2k, 2k + 1 in the low half of register k and 16 + 2k, 17 + 2k in the high one,
// so that after three rounds of unpacks (16-, 32-, 64-bit) each byte b's register holds columns 0-15 low, 16-31 high.
void transpose32(const word_t* w, std::uint8_t* out, std::size_t stride) {
  const __m256i pairs = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3,
                                         11, 4, 12, 5, 13, 6, 14, 7, 15);
  __m256i a[8], b[8], c[8];
  for (int k = 0; k < 8; ++k)  // 16-bit unit i of a half: byte i of its two columns
    a[k] = _mm256_shuffle_epi8(_mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(w + 16 + 2 * k),
                                                   reinterpret_cast<const __m128i*>(w + 2 * k)),
                               pairs);
  for (int k = 0; k < 8; k += 2) {  // 32-bit unit: byte i of 4 columns (4 (k / 2) ..), bytes 0-3, then 4-7
    b[k] = _mm256_unpacklo_epi16(a[k], a[k + 1]);
    b[k + 1] = _mm256_unpackhi_epi16(a[k], a[k + 1]);
  }
  for (int k = 0; k < 8; k += 4)  // 64-bit unit: byte i of 8 columns; c[k + j]: bytes 2 j, 2 j + 1
    for (int j = 0; j < 2; ++j) {
      c[k + 2 * j] = _mm256_unpacklo_epi32(b[k + j], b[k + 2 + j]);
      c[k + 2 * j + 1] = _mm256_unpackhi_epi32(b[k + j], b[k + 2 + j]);
    }
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < 4; ++j)
    for (int h = 0; h < 2; ++h) {  // byte 2 j + h of all 32 columns
      const __m256i v = h ? _mm256_unpackhi_epi64(c[j], c[4 + j]) : _mm256_unpacklo_epi64(c[j], c[4 + j]);
      const std::size_t byte = static_cast<std::size_t>(2 * j + h);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * byte * stride), _mm256_and_si256(v, low));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (2 * byte + 1) * stride),
                          _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    }
}

// acc[i][v] += the byte counts of positions [p0, p1) (panel: position p0's vectors). In assembly for the blocks the
// tasks use: GCC kept one of the nine accumulators of the 3 x 3 block on the stack (a store and a reload on every
// position's chain: the loop ran at two thirds of this speed). Registers ymm11-15 hold the column vectors, the table
// row and the lookups; the accumulators take what is left.
#define HORQ_ROW(W, A0, A1, A2)                                    \
  "movzbl (%[" #W "],%[p]), %%eax\n\t"                            \
  "vbroadcasti128 (%[tab],%%rax), %%ymm14\n\t"                    \
  "vpshufb %%ymm11, %%ymm14, %%ymm15\n\t"                         \
  "vpaddb %%ymm15, %[" #A0 "], %[" #A0 "]\n\t"                     \
  "vpshufb %%ymm12, %%ymm14, %%ymm15\n\t"                         \
  "vpaddb %%ymm15, %[" #A1 "], %[" #A1 "]\n\t" A2
#define HORQ_THIRD(A2)                                             \
  "vpshufb %%ymm13, %%ymm14, %%ymm15\n\t"                         \
  "vpaddb %%ymm15, %[" #A2 "], %[" #A2 "]\n\t"

template <int MR, int NV>
void positions(const std::uint8_t* const* woff, const std::uint8_t* panel, std::size_t p0, std::size_t p1,
               __m256i (&acc)[MR][NV]);

template <>
void positions<3, 3>(const std::uint8_t* const* woff, const std::uint8_t* panel, std::size_t p0, std::size_t p1,
                     __m256i (&acc)[3][3]) {
  if (p0 == p1) return;
  __m256i a00 = acc[0][0], a01 = acc[0][1], a02 = acc[0][2], a10 = acc[1][0], a11 = acc[1][1], a12 = acc[1][2];
  __m256i a20 = acc[2][0], a21 = acc[2][1], a22 = acc[2][2];
  // p counts up from -(p1 - p0) to 0 against row pointers at p1 (one register fewer than p and p1).
  std::ptrdiff_t p = static_cast<std::ptrdiff_t>(p0) - static_cast<std::ptrdiff_t>(p1);
  asm("1:\n\t"
      "vmovdqa (%[x]), %%ymm11\n\t"
      "vmovdqa 32(%[x]), %%ymm12\n\t"
      "vmovdqa 64(%[x]), %%ymm13\n\t"
      HORQ_ROW(w0, a00, a01, HORQ_THIRD(a02))
      HORQ_ROW(w1, a10, a11, HORQ_THIRD(a12))
      HORQ_ROW(w2, a20, a21, HORQ_THIRD(a22))
      "add $96, %[x]\n\t"
      "inc %[p]\n\t"
      "jnz 1b\n\t"
      : [a00] "+x"(a00), [a01] "+x"(a01), [a02] "+x"(a02), [a10] "+x"(a10), [a11] "+x"(a11), [a12] "+x"(a12),
        [a20] "+x"(a20), [a21] "+x"(a21), [a22] "+x"(a22), [x] "+r"(panel), [p] "+r"(p)
      : [w0] "r"(woff[0] + p1), [w1] "r"(woff[1] + p1), [w2] "r"(woff[2] + p1), [tab] "r"(kTables.t)
      : "rax", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
  acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12;
  acc[2][0] = a20, acc[2][1] = a21, acc[2][2] = a22;
}

template <>
void positions<5, 2>(const std::uint8_t* const* woff, const std::uint8_t* panel, std::size_t p0, std::size_t p1,
                     __m256i (&acc)[5][2]) {
  if (p0 == p1) return;
  __m256i a00 = acc[0][0], a01 = acc[0][1], a10 = acc[1][0], a11 = acc[1][1], a20 = acc[2][0], a21 = acc[2][1];
  __m256i a30 = acc[3][0], a31 = acc[3][1], a40 = acc[4][0], a41 = acc[4][1];
  std::ptrdiff_t p = static_cast<std::ptrdiff_t>(p0) - static_cast<std::ptrdiff_t>(p1);  // as above
  asm("1:\n\t"
      "vmovdqa (%[x]), %%ymm11\n\t"
      "vmovdqa 32(%[x]), %%ymm12\n\t"
      HORQ_ROW(w0, a00, a01, "") HORQ_ROW(w1, a10, a11, "") HORQ_ROW(w2, a20, a21, "")
      HORQ_ROW(w3, a30, a31, "") HORQ_ROW(w4, a40, a41, "")
      "add $64, %[x]\n\t"
      "inc %[p]\n\t"
      "jnz 1b\n\t"
      : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
        [a30] "+x"(a30), [a31] "+x"(a31), [a40] "+x"(a40), [a41] "+x"(a41), [x] "+r"(panel), [p] "+r"(p)
      : [w0] "r"(woff[0] + p1), [w1] "r"(woff[1] + p1), [w2] "r"(woff[2] + p1), [w3] "r"(woff[3] + p1),
        [w4] "r"(woff[4] + p1), [tab] "r"(kTables.t)
      : "rax", "xmm11", "xmm12", "xmm14", "xmm15", "cc", "memory");
  acc[0][0] = a00, acc[0][1] = a01, acc[1][0] = a10, acc[1][1] = a11, acc[2][0] = a20, acc[2][1] = a21;
  acc[3][0] = a30, acc[3][1] = a31, acc[4][0] = a40, acc[4][1] = a41;
}

template <>
void positions<4, 2>(const std::uint8_t* const* woff, const std::uint8_t* panel, std::size_t p0, std::size_t p1,
                     __m256i (&acc)[4][2]) {
  if (p0 == p1) return;
  __m256i a00 = acc[0][0], a01 = acc[0][1], a10 = acc[1][0], a11 = acc[1][1], a20 = acc[2][0], a21 = acc[2][1];
  __m256i a30 = acc[3][0], a31 = acc[3][1];
  std::ptrdiff_t p = static_cast<std::ptrdiff_t>(p0) - static_cast<std::ptrdiff_t>(p1);  // as above
  asm("1:\n\t"
      "vmovdqa (%[x]), %%ymm11\n\t"
      "vmovdqa 32(%[x]), %%ymm12\n\t"
      HORQ_ROW(w0, a00, a01, "") HORQ_ROW(w1, a10, a11, "") HORQ_ROW(w2, a20, a21, "") HORQ_ROW(w3, a30, a31, "")
      "add $64, %[x]\n\t"
      "inc %[p]\n\t"
      "jnz 1b\n\t"
      : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
        [a30] "+x"(a30), [a31] "+x"(a31), [x] "+r"(panel), [p] "+r"(p)
      : [w0] "r"(woff[0] + p1), [w1] "r"(woff[1] + p1), [w2] "r"(woff[2] + p1), [w3] "r"(woff[3] + p1),
        [tab] "r"(kTables.t)
      : "rax", "xmm11", "xmm12", "xmm14", "xmm15", "cc", "memory");
  acc[0][0] = a00, acc[0][1] = a01, acc[1][0] = a10, acc[1][1] = a11, acc[2][0] = a20, acc[2][1] = a21;
  acc[3][0] = a30, acc[3][1] = a31;
}
#undef HORQ_THIRD
#undef HORQ_ROW

// 16-bit counts of MR rows x NV column vectors over P positions; cnt[i][v][h]: h = 0 columns 0-7 | 16-23, h = 1
// columns 8-15 | 24-31.
template <int MR, int NV>
void counts(const std::uint8_t* const* woff, const std::uint8_t* panel, std::size_t P, __m256i (&cnt)[MR][NV][2]) {
  const __m256i zero = _mm256_setzero_si256();
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) cnt[i][v][0] = cnt[i][v][1] = zero;
  for (std::size_t p0 = 0; p0 < P; p0 += kFlush) {
    const std::size_t p1 = std::min(P, p0 + kFlush);
    __m256i acc[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = zero;
    positions<MR, NV>(woff, panel + p0 * NV * kCols, p0, p1, acc);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        cnt[i][v][0] = _mm256_add_epi16(cnt[i][v][0], _mm256_unpacklo_epi8(acc[i][v], zero));
        cnt[i][v][1] = _mm256_add_epi16(cnt[i][v][1], _mm256_unpackhi_epi8(acc[i][v], zero));
      }
  }
}

// The 32 columns' outputs of one filter (before the float32 steps), sink(b, out) for columns 8 b .. 8 b + 7 (lane sets
// 2 b and 2 b + 1 in out's halves): Avx2Outer::lane_set_output's operations in its order, from the K planes' 16-bit
// counts c[k] (counts' layout: columns 8 b .. 8 b + 7 in half b & 1, 128-bit lane b >> 1). n - 2 pc is formed in
// 32-bit lanes and converted to float32 exactly; bq: the float32 betas of columns 8 b .. 8 b + 7 and plane k at
// (b K + k) 8 (one load each).
//
// NoNegZeroAdd: no filter's add is -0.0, and then s starts from the first product instead of 0.0 + it. They differ
// only when that product is -0.0 (s then -0.0, not +0.0), which changes coef * s to the other zero and nothing else:
// the sum with add (+0.0 or nonzero) is the same either way, and the float32 steps after it see the same value.
template <int K, bool NoNegZeroAdd, class Sink>
inline void group_outputs(const __m256i (*c)[2], const float* bq, __m256i n, __m256 coef, __m256 add, Sink&& sink) {
  for (int b = 0; b < 4; ++b) {  // columns 8 b .. 8 b + 7: lane sets 2 b and 2 b + 1
    __m256 s = _mm256_setzero_ps();
    for (int k = 0; k < K; ++k) {
      const __m256i h = c[k][b & 1];
      const __m128i u = b & 2 ? _mm256_extracti128_si256(h, 1) : _mm256_castsi256_si128(h);
      const __m256i x = _mm256_sub_epi32(n, _mm256_slli_epi32(_mm256_cvtepu16_epi32(u), 1));
      const __m256 beta = _mm256_loadu_ps(bq + (b * K + k) * 8);
      const __m256 p = _mm256_mul_ps(beta, _mm256_cvtepi32_ps(x));
      s = NoNegZeroAdd && k == 0 ? p : _mm256_add_ps(s, p);
    }
    sink(b, _mm256_add_ps(_mm256_mul_ps(coef, s), add));
  }
}

struct Scratch {
  LocalUninitVector<std::uint8_t> woff, panel;
  LocalVector<double> betas;  // per 8 columns b of a block and plane k: 8 lanes at (b K + k) 8 (group_outputs)
  LocalVector<float> betas32;  // the same, rounded to float32 (the epilogue's operand)
  LocalVector<LaneDest<4>> dest;
  LocalVector<std::int64_t> word_at;  // per column of a block: its first word in the pixel image (plane 0)
  LocalVector<unsigned char> run;     // per group of a superblock: 32 consecutive outputs in y
  LocalVector<word_t> words;          // a group's stored rows by word (rows_by_word)
  // by_filters: the task's columns' rows and their table offsets, their betas
  LocalUninitVector<word_t> crows;
  LocalUninitVector<std::uint8_t> coff;
  LocalVector<double> cbetas;
};

[[gnu::noinline]] Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Block shapes (MR filters x G groups of 32 columns, NV = G K vectors; MR x NV + NV + 2 of the 16 registers):
// order 1, 3 x 3, or 5 x 2 where a 3-group panel would pass kSmallPanel (its panel and the weights' offsets then
// left L1: 128ch 28x28 ran slower than the outer kernel); order 2, 5 x (1 group x 2 planes); order 3, 3 x (1 group x
// 3 planes), order 1's register block with the planes in place of the groups.
constexpr std::size_t kSmallPanel = 16 * 1024;

// The columns of a task's main blocks: order 1, 3 groups of 32 where their panel is small (else 2); orders 2-3, one.
std::size_t block_columns(const QuantizedColumns& q) {
  const bool three = q.order == 1 && 16 * q.kw * 3 * kCols <= kSmallPanel;
  return (three ? 3 : q.order == 1 ? 2 : 1) * kCols;
}

// Whether a task takes the table kernel: orders 1-3, rows below 2^16 bits, a 2-vector block's panel within kPanelBytes
// (order 3's 3-vector blocks then up to 1.5 times that: 512ch 3x3's 72-word rows, 110 KB, ran faster than on the
// outer kernel, profile_conv_core 512 7 3 fastest 1.066 -> 0.883 ms, 512 14 3 4.06 -> 2.92, the same with 4 MB
// flushed between calls and 0.519 -> 0.432 at 2 threads), a channel-major output (ppi > 1: the NHWC outputs of
// training stay with store_columns), and enough columns.
bool applies(const QuantizedColumns& q, std::size_t ppi, std::size_t jb) {
  const std::size_t K = static_cast<std::size_t>(q.order);
  if (K < 1 || K > 3 || q.n >= 65536 || ppi == 1) return false;
  if (16 * q.kw * 2 * kCols > kPanelBytes) return false;
  // A block, at order 1 of 64 columns (512ch 7x7 at order 1: its 49 columns in a 64-column block ran as fast as the
  // outer kernel from cache, 10% slower with its 72-word weight rows evicted: their table offsets, twice their size,
  // then went through memory too).
  return jb >= (K >= 2 ? 1 : 2) * kCols;
}

// Column blocks per superblock: the blocks' panels are built first, then each register block of filters runs over all
// of them, so a filter's outputs go out in runs of about kSuperColumns floats (runs of one block's 96 made the
// layer's 64 output planes as many short write streams: 64ch 56x56 lost half its gain when the output was not in
// cache).
constexpr std::size_t kSuperColumns = 384;

// The first n of 32 rows of kw words (row c at rows + c * ld) as kw runs of 32 words (out + w * 32: word w of each
// row; zero for rows n..31): 4 rows x 4 words transposed in registers (Avx2Outer::transpose4x4), a row's last 1-3
// words and a last 1-3 rows word by word.
void rows_by_word(const word_t* rows, std::size_t ld, std::size_t kw, std::size_t n, word_t* out) {
  std::size_t c = 0;
  for (; c + 4 <= n; c += 4) {
    const word_t* r = rows + c * ld;
    std::size_t w = 0;
    for (; w + 4 <= kw; w += 4) {
      __m256i v[4];
      for (std::size_t i = 0; i < 4; ++i) v[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + i * ld + w));
      Avx2Outer::transpose4x4(v);
      for (std::size_t j = 0; j < 4; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (w + j) * kCols + c), v[j]);
    }
    for (; w < kw; ++w)
      for (std::size_t i = 0; i < 4; ++i) out[w * kCols + c + i] = r[i * ld + w];
  }
  for (; c < kCols; ++c)
    for (std::size_t w = 0; w < kw; ++w) out[w * kCols + c] = c < n ? rows[c * ld + w] : word_t{0};
}

// 32 rows of kw words (the first `valid` at rows, ld words apart, a row's words ws apart; zero rows after them) as
// nibble vectors: word w's 16 positions at out + 16 w stride, one every stride bytes (rows_by_word, then transpose32
// word by word; words: scratch of kw x 32 words). Rows word by word (ws > 1: QuantizedColumns::word_major, ld = 1)
// are already runs of 32 words, which transpose32 reads where they lie.
void stored_rows_panel(const word_t* rows, std::size_t ld, std::size_t ws, std::size_t kw, std::size_t valid,
                       word_t* words, std::uint8_t* out, std::size_t stride) {
  if (ws == 1) {
    rows_by_word(rows, ld, kw, valid, words);
  } else if (valid == kCols) {
    for (std::size_t w = 0; w < kw; ++w) transpose32(rows + w * ws, out + 16 * w * stride, stride);
    return;
  } else {
    for (std::size_t w = 0; w < kw; ++w)
      for (std::size_t c = 0; c < kCols; ++c) words[w * kCols + c] = c < valid ? rows[c * ld + w * ws] : word_t{0};
  }
  for (std::size_t w = 0; w < kw; ++w) transpose32(words + w * kCols, out + 16 * w * stride, stride);
}

// A block's panel (vector (g, k) of position p at panel + (p NV + g K + k) 32) from columns [c0, c0 + nc) of the
// task, its betas (bq: columns 8 b .. 8 b + 7 of plane k at (b K + k) 8, group_outputs' layout) and where its columns'
// first words lie in the pixel image (word_at, plane 0 of an image q); words: scratch for rows_by_word.
template <int K, std::size_t G>
void build_block(const QuantizedColumns& q, std::size_t j0, std::size_t c0, std::size_t nc, std::uint8_t* panel,
                 double* bq, std::int64_t* word_at, word_t* words) {
  constexpr std::size_t NV = G * K, L = Avx2Outer::kLanes;
  const std::size_t kw = q.kw, sets = ceil_div(nc, L);
  const double n = static_cast<double>(q.n);
  const PixelImage& im = q.image;
  alignas(32) word_t gather[kCols];
  if (q.implicit_h1) {
    PixelCursor at(im, j0 + c0);
    for (std::size_t c = 0; c < nc; ++c, at.next()) word_at[c] = at.word();
  }
  for (std::size_t g = 0; g < G; ++g)
    for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k) {
      std::uint8_t* out = panel + (g * K + k) * kCols;
      const std::size_t first = g * kCols, valid = nc > first ? std::min(kCols, nc - first) : 0;
      if (!(q.implicit_h1 && k == 0)) {  // stored rows: all kw words of the 32 columns at once
        stored_rows_panel(q.row(j0 + c0 + first, k), q.word_major ? 1 : q.stored_planes() * kw, q.word_stride(), kw,
                          valid, words, out, NV * kCols);
        continue;
      }
      bool run = valid == kCols;  // 32 consecutive words of the image (one row of one image)
      for (std::size_t c = 1; run && c < kCols; ++c)
        run = word_at[first + c] == word_at[first] + static_cast<std::int64_t>(c);
      for (std::size_t w = 0; w < kw; ++w) {
        const word_t* src = gather;
        if (run) {
          src = im.words.data() + word_at[first] + im.word_off[w];
        } else {
          for (std::size_t c = 0; c < valid; ++c)
            gather[c] = im.words[static_cast<std::size_t>(word_at[first + c] + im.word_off[w])];
          std::fill(gather + valid, gather + kCols, word_t{0});
        }
        transpose32(src, out + 16 * w * NV * kCols, NV * kCols);
      }
    }
  // Betas, 8 columns at a time per plane: stored, or at order 1 with the image the box sums (box_betas).
  if (q.implicit_h1 && K == 1) {
    box_betas(im, j0 + c0, nc, n, bq);
    std::fill(bq + nc, bq + sets * L, 0.0);
  } else {
    for (std::size_t c = 0; c < sets * L; ++c)
      for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k)
        bq[(c / 8 * K + k) * 8 + c % 8] = c < nc ? q.betas[(j0 + c0 + c) * K + k] : 0.0;
  }
}

template <int K, int MR, std::size_t G, bool NoNegZeroAdd>
void task(const word_t* wbits, std::size_t m, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi,
          float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  constexpr std::size_t NV = G * K, L = Avx2Outer::kLanes, S = kCols / L;  // S: lane sets per group
  const std::size_t kw = q.kw, P = 16 * kw, bcols = G * kCols;
  const std::size_t blocks = std::max<std::size_t>(1, kSuperColumns / bcols), pbytes = P * NV * kCols;
  Scratch& sc = scratch();
  sc.woff.resize(mb * P);
  weight_offsets(wbits + o0 * kw, mb, kw, sc.woff.data());
  sc.panel.resize(blocks * pbytes + 32);
  std::uint8_t* panels = sc.panel.data() + (32 - reinterpret_cast<std::uintptr_t>(sc.panel.data()) % 32) % 32;
  sc.betas.resize(blocks * bcols * K);
  sc.betas32.resize(blocks * bcols * K);
  sc.word_at.resize(bcols);
  sc.words.resize(kw * kCols);
  sc.run.resize(blocks * G);
  const __m256i nvec = _mm256_set1_epi32(static_cast<int>(q.n));
  for (std::size_t c0 = 0; c0 < jb; c0 += blocks * bcols) {
    const std::size_t snc = std::min(blocks * bcols, jb - c0), nb = ceil_div(snc, bcols);
    for (std::size_t b = 0; b < nb; ++b)
      build_block<K, G>(q, j0, c0 + b * bcols, std::min(bcols, snc - b * bcols), panels + b * pbytes,
                        sc.betas.data() + b * bcols * K, sc.word_at.data(), sc.words.data());
    for (std::size_t i = 0; i < nb * bcols * K; ++i) sc.betas32[i] = static_cast<float>(sc.betas[i]);
    lane_dests(m, ppi, j0 + c0, snc, sc.dest);
    const std::size_t sets = sc.dest.size();
    for (std::size_t g = 0; g < nb * G; ++g) {  // group g's 32 columns whole and consecutive in y: one run of stores
      const std::size_t s0 = g * S;
      bool run = s0 + S <= sets;
      for (std::size_t s = s0; run && s < s0 + S; ++s)
        run = sc.dest[s].whole && sc.dest[s].base[0] == sc.dest[s0].base[0] + (s - s0) * L;
      sc.run[g] = run;
    }
    for (std::size_t i0 = 0; i0 < mb; i0 += MR) {
      const std::uint8_t* woff[MR];
      for (int i = 0; i < MR; ++i) woff[i] = sc.woff.data() + (i0 + i < mb ? i0 + i : i0) * P;
      for (std::size_t b = 0; b < nb; ++b) {
        __m256i cnt[MR][NV][2];
        counts<MR, static_cast<int>(NV)>(woff, panels + b * pbytes, P, cnt);
        const float* bq = sc.betas32.data() + b * bcols * K;
        for (int i = 0; i < MR && i0 + i < mb; ++i) {
          const std::size_t o = o0 + i0 + i;
          const __m256 coef = _mm256_set1_ps(static_cast<float>(ep.coef[o]));
          const __m256 add = _mm256_set1_ps(static_cast<float>(ep.add[o]));
          for (std::size_t g = 0; g < G && (b * G + g) * S < sets; ++g) {
            const float* bg = bq + g * S * K * L;
            const std::size_t s0 = (b * G + g) * S;
            if (sc.run[b * G + g]) {  // 32 consecutive outputs of one image, 8 stored as they come
              float* dst = y + o * ppi + sc.dest[s0].base[0];
              const float* r = ep.residual ? ep.residual + (dst - y) : nullptr;
              const __m256 f = _mm256_set1_ps(ep.floor ? ep.floor[o] : 0.0f);
              const __m256 c = _mm256_set1_ps(ep.ceiling ? ep.ceiling[o] : 0.0f);
              group_outputs<K, NoNegZeroAdd>(cnt[i] + g * K, bg, nvec, coef, add, [&](int b8, __m256 v) {
                if (r) v = _mm256_add_ps(v, _mm256_loadu_ps(r + 8 * b8));
                if (ep.floor) v = _mm256_max_ps(f, v);  // floor > v ? floor : v
                if (ep.ceiling) v = _mm256_min_ps(c, v);  // ceiling < v ? ceiling : v
                _mm256_storeu_ps(dst + 8 * b8, v);
              });
              continue;
            }
            group_outputs<K, NoNegZeroAdd>(cnt[i] + g * K, bg, nvec, coef, add, [&](int b8, __m256 v) {
              for (int h = 0; h < 2; ++h) {
                const std::size_t s = s0 + static_cast<std::size_t>(2 * b8 + h);
                if (s < sets) Avx2Outer::put(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v), sc.dest[s],
                                             ep, o, ppi, y);
              }
            });
          }
        }
      }
    }
  }
}

// Whether a filter of [o0, o0 + mb) has an add of -0.0 (then a task starts its sums from 0.0, group_outputs).
bool any_negative_zero_add(const Epilogue& ep, std::size_t o0, std::size_t mb) {
  for (std::size_t o = o0; o < o0 + mb; ++o)
    if (ep.add[o] == 0.0 && std::signbit(ep.add[o])) return true;
  return false;
}

// task with the first product of each output as its sum's start where no filter's add is -0.0.
template <int K, int MR, std::size_t G>
void run(const word_t* wbits, std::size_t m, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
         std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  if (any_negative_zero_add(ep, o0, mb)) return task<K, MR, G, false>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb);
  task<K, MR, G, true>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb);
}

// ---------------------------------------------------------------------------------------------------------------
// Filters in the lanes: tasks with fewer columns than a block (ResNet-18's 7x7 and 4x4 maps: 49 and 16 columns, which
// order 1's 64-column blocks would compute a quarter and three quarters idle, order 2's 32-column ones 15 of 64 lanes
// idle at 7x7) swap the roles. popcount(w ^ x) is symmetric, so the same table serves with each column's nibbles as
// table rows (its P byte offsets, weight_offsets over the column's gathered words) and 32 filters' nibbles as the
// vpshufb indices (a panel of NV = 2 vectors per position, 64 filters: transpose32 over the filter rows, as
// build_block does for stored column rows). A register block is one lane set's 4 columns against the 64 filters
// (positions<4, 2>; at order 2 two calls, each 2 columns x 2 planes), so a task's columns are computed whole but for
// the last lane set's 1-3. Per filter block (its panel, P x 64 bytes, stays in L2) every lane set of the task runs.
// Order 3: three calls of 4 rows (a lane set's 4 columns x 3 planes), the same panel.
//
// Epilogue: the outer kernel's float32 operations in its order on 8 filters of one column at once (beta broadcast,
// coef and add loaded; n - 2 pc in 32-bit lanes, converted exactly), then 4 x 4 transposes give each filter its lane
// set's 4 columns for Avx2Outer::put (residual, floor, ceiling, whichever store the destinations allow): the same
// bits.
constexpr std::size_t kFilterBlock = 2 * kCols;  // filters per block: NV = 2 vectors of 32

// Whether a task takes the filter-lane kernel: orders 1-3, rows below 2^16 bits, a filter block's panel within
// kPanelBytes, a channel-major output, too few columns for a block of the column-lane kernel but at least kMinColumns,
// and rows of at least kMinWords. Single layers against the outer kernel (a throwaway Python loop over
// kernels.Conv2dLayer, 1 MB written between calls, fastest of 1,500, AMD EPYC Zen 3): 3x3 512ch 7x7 -8%, 256 ->
// 512 stride 2 to 7x7 -8%, 256ch 4x4 -5%, 128ch 4x4 -2%, but 128ch 7x7 (18-word rows) level or slower, 64ch 7x7
// (9 words) +5%, 1x1 layers (4-8 words) +6-15%: on short rows the filter panels and the transposing epilogue cost
// more than the counts save. A task's last few columns (a 14x14 map's 196 = 3 blocks of 64 + 4) stay with the outer
// kernel too, rather than read every filter block's panel for one lane set.
constexpr std::size_t kMinColumns = 16, kMinWords = 32;
bool applies_by_filters(const QuantizedColumns& q, std::size_t ppi, std::size_t jb) {
  if (q.order < 1 || q.order > 3 || q.n >= 65536 || ppi == 1 || q.kw < kMinWords) return false;
  return 16 * q.kw * kFilterBlock <= kPanelBytes && jb >= kMinColumns && jb < 2 * kCols;
}

// Bytes of one filter block's panel: P positions x NV vectors of 32 filters.
std::size_t filter_panel_bytes(std::size_t kw) { return 16 * kw * kFilterBlock; }

// The panel of `count` <= kFilterBlock filter rows (kw words each, from rows): vector v of nibble position p at
// panel + (p NV + v) 32, byte l filter 32 v + l's nibble p (0 past count).
void build_filter_panel(const word_t* rows, std::size_t count, std::size_t kw, std::uint8_t* panel) {
  constexpr std::size_t NV = kFilterBlock / kCols;
  Scratch& sc = scratch();
  sc.words.resize(kw * kCols);
  for (std::size_t v = 0; v < NV; ++v) {
    const std::size_t valid = count > v * kCols ? std::min(kCols, count - v * kCols) : 0;
    stored_rows_panel(valid ? rows + v * kCols * kw : rows, kw, 1, kw, valid, sc.words.data(), panel + v * kCols,
                      NV * kCols);
  }
}

// Every filter block's panel of a layer's m filters (block b at the result + b filter_panel_bytes(kw)), built into
// the cache by the first task that asks (the others wait for it) and read by every later one.
const std::uint8_t* filter_panels(const word_t* wbits, std::size_t m, std::size_t kw, WeightCache& cache) {
  std::call_once(cache.filter_panels_once, [&] {
    const std::size_t blocks = ceil_div(m, kFilterBlock), pbytes = filter_panel_bytes(kw);
    cache.filter_panels.resize(blocks * pbytes + 32);
    cache.filter_panels_at = (32 - reinterpret_cast<std::uintptr_t>(cache.filter_panels.data()) % 32) % 32;
    for (std::size_t b = 0; b < blocks; ++b)
      build_filter_panel(wbits + b * kFilterBlock * kw, std::min(kFilterBlock, m - b * kFilterBlock), kw,
                         cache.filter_panels.data() + cache.filter_panels_at + b * pbytes);
  });
  return cache.filter_panels.data() + cache.filter_panels_at;
}

template <int K, bool NoNegZeroAdd>
void task_by_filters(const word_t* wbits, std::size_t m, const QuantizedColumns& q, const Epilogue& ep,
                     std::size_t ppi, float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb,
                     WeightCache* cache) {
  constexpr std::size_t L = Avx2Outer::kLanes, NV = kFilterBlock / kCols, R = L * K;  // R: rows of a lane set
  constexpr std::size_t MR = 4;  // a kernel call's rows: 4 / K columns' K planes
  const std::size_t kw = q.kw, P = 16 * kw, sets = ceil_div(jb, L), ncol = sets * L;
  const double n = static_cast<double>(q.n);
  Scratch& sc = scratch();
  // The columns' rows (column c's plane k at row c K + k; zero rows past jb: their outputs are never stored) and betas.
  sc.crows.resize(ncol * K * kw);
  sc.cbetas.assign(ncol * K, 0.0);
  word_t* rows = sc.crows.data();
  for (std::size_t k = 0; k < K; ++k)
    if (!(q.implicit_h1 && k == 0))
      for (std::size_t c = 0; c < jb; ++c)
        for (std::size_t w = 0; w < kw; ++w) rows[(c * K + k) * kw + w] = q.word(j0 + c, k, w);
  if (q.implicit_h1) {
    const PixelImage& im = q.image;
    PixelCursor at(im, j0);
    for (std::size_t c = 0; c < jb; ++c, at.next()) {
      const word_t* src = im.words.data() + at.word();
      for (std::size_t w = 0; w < kw; ++w) rows[c * K * kw + w] = src[im.word_off[w]];
    }
    if (K == 1) box_betas(im, j0, jb, n, sc.cbetas.data());
  }
  if (!(q.implicit_h1 && K == 1)) std::copy_n(q.betas.data() + j0 * K, jb * K, sc.cbetas.data());
  std::fill(rows + jb * K * kw, rows + ncol * K * kw, word_t{0});
  sc.coff.resize(ncol * K * P);
  weight_offsets(rows, ncol * K, kw, sc.coff.data());
  lane_dests(m, ppi, j0, jb, sc.dest);
  // The filter blocks' panels: the layer's, kept in its cache, where this task's filters start a block of them;
  // else built here, a block at a time.
  const std::size_t pbytes = filter_panel_bytes(kw);
  const std::uint8_t* cached = cache && o0 % kFilterBlock == 0 ? filter_panels(wbits, m, kw, *cache) : nullptr;
  std::uint8_t* built = nullptr;
  if (!cached) {
    sc.panel.resize(pbytes + 32);
    built = sc.panel.data() + (32 - reinterpret_cast<std::uintptr_t>(sc.panel.data()) % 32) % 32;
  }
  const __m256i nvec = _mm256_set1_epi32(static_cast<int>(q.n));
  const __m256 zero = _mm256_setzero_ps();
  for (std::size_t f0 = 0; f0 < mb; f0 += kFilterBlock) {
    const std::size_t nf = std::min(kFilterBlock, mb - f0), o = o0 + f0;
    const std::uint8_t* panel = cached ? cached + o / kFilterBlock * pbytes : built;
    if (!cached) build_filter_panel(wbits + o * kw, nf, kw, built);
    alignas(32) float coef[kFilterBlock] = {}, add[kFilterBlock] = {};  // rounded to float32: the epilogue's operands
    for (std::size_t i = 0; i < nf; ++i) {
      coef[i] = static_cast<float>(ep.coef[o + i]);
      add[i] = static_cast<float>(ep.add[o + i]);
    }
    for (std::size_t s = 0; s < sets; ++s) {
      __m256i cnt[K][MR][NV][2];  // row r = c K + k (column c of the lane set, plane k) at cnt[r / MR][r % MR]
      for (std::size_t call = 0; call < K; ++call) {
        const std::uint8_t* coff[MR];
        for (std::size_t r = 0; r < MR; ++r) coff[r] = sc.coff.data() + (s * R + call * MR + r) * P;
        counts<static_cast<int>(MR), static_cast<int>(NV)>(coff, panel, P, cnt[call]);
      }
      __m256 beta[R];
      for (std::size_t r = 0; r < R; ++r) beta[r] = _mm256_set1_ps(static_cast<float>(sc.cbetas[s * R + r]));
      // 8 filters at a time (f = 32 v + 8 b: cnt[.][v][b & 1], 128-bit half b >> 1), as two sets of 4.
      for (std::size_t f = 0; f < nf; f += 8) {
        const std::size_t v = f / kCols, b = f % kCols / 8;
        __m128 out[2][L];
        for (std::size_t c = 0; c < L; ++c) {
          __m256 sum = zero;
          for (std::size_t k = 0; k < K; ++k) {
            const __m256i h = cnt[(c * K + k) / MR][(c * K + k) % MR][v][b & 1];
            const __m128i u = b & 2 ? _mm256_extracti128_si256(h, 1) : _mm256_castsi256_si128(h);
            const __m256i x = _mm256_sub_epi32(nvec, _mm256_slli_epi32(_mm256_cvtepu16_epi32(u), 1));
            const __m256 p = _mm256_mul_ps(beta[c * K + k], _mm256_cvtepi32_ps(x));
            sum = NoNegZeroAdd && k == 0 ? p : _mm256_add_ps(sum, p);
          }
          const __m256 o8 = _mm256_add_ps(_mm256_mul_ps(_mm256_load_ps(coef + f), sum), _mm256_load_ps(add + f));
          out[0][c] = _mm256_castps256_ps128(o8);
          out[1][c] = _mm256_extractf128_ps(o8, 1);
        }
        for (std::size_t half = 0; half < 2; ++half) {
          _MM_TRANSPOSE4_PS(out[half][0], out[half][1], out[half][2], out[half][3]);  // [i]: filter i's 4 columns
          for (std::size_t i = 0; i < 4 && f + 4 * half + i < nf; ++i)
            Avx2Outer::put(out[half][i], sc.dest[s], ep, o + f + 4 * half + i, ppi, y);
        }
      }
    }
  }
}

void run_by_filters(const word_t* wbits, std::size_t m, const QuantizedColumns& q, const Epilogue& ep,
                    std::size_t ppi, float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb,
                    WeightCache* cache) {
  const bool neg_zero = any_negative_zero_add(ep, o0, mb);
  if (q.order == 3) {
    if (neg_zero) return task_by_filters<3, false>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
    return task_by_filters<3, true>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
  }
  if (q.order == 2) {
    if (neg_zero) return task_by_filters<2, false>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
    return task_by_filters<2, true>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
  }
  if (neg_zero) return task_by_filters<1, false>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
  task_by_filters<1, true>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
}

}  // namespace table

}  // namespace

// Where the table kernel applies, on one thread all columns in one task: it builds
// its panels a superblock at a time however many columns a task has, and a task's own work (its filters' table
// offsets, the last columns no block takes) is then done once. 1 thread against ~32 KB tasks (profile_conv_core,
// order 1 / 2): 128ch 28x28 0.304 -> 0.290 / 0.680 -> 0.647 ms, 256ch 14x14 0.288 -> 0.257 / 0.607 -> 0.54, 512ch
// 7x7 0.305 / 0.633 -> 0.571 (its 49 columns had been two tasks for the outer kernel), 64ch 56x56 0.411 -> 0.414 /
// 0.955 -> 0.946.
// The outer kernel takes a layer whose quantized columns fit 64 KB in one task too (its split panel then 128 KB):
// 512ch 7x7 order 1, 49 columns of 72 words, 0.305 -> 0.297 ms as one task instead of two; orders 1-3 of 128ch and
// 256ch 14x14 and 512ch 7x7 order 3 unchanged, and at 128 KB 512ch 7x7 order 3 ran 10% slower.
constexpr std::size_t kOneTaskBytes = 64 * 1024;

// On T threads, T tasks of whole blocks where the blocks split evenly (or are many): the driver's default, ~4 T
// tasks of multiples of 16 columns, left each task a partial block for the outer kernel and its own table offsets (2
// threads, 56x56: 400-column tasks, 384 + 16); else the filters in T blocks, each over every column (a 14x14 map's 3
// two-group blocks do not split evenly, and in 32-column tasks had left the table kernel for the outer one). 2
// threads, profile_conv_core, fastest calls, order 1 (AMD EPYC Zen 3, docs/KERNELS.md round 16): 128ch 28x28 0.181
// -> 0.156 ms, 256ch 14x14 0.177 -> 0.139 (filters split), 1x1 256ch 28x28 0.137 -> 0.127, the stride-2 1x1 shortcut
// 64 -> 128 0.066 -> 0.057; order 2, 128ch 28x28 0.370 -> 0.349.
GemmSplit gemm_split_avx2(const QuantizedColumns& q, std::size_t ppi, std::size_t m, std::size_t threads) {
  // The filter-lane kernel: every column in each task, the filters in T blocks (each task gathers and offsets all the
  // columns itself; with the driver's ~4 T tasks of 64 filters that was done 8 times at 2 threads): 2 threads, 512ch
  // 7x7 0.159 -> 0.140 ms, 512ch 4x4 0.054 -> 0.049 (throwaway Python loop over kernels.Conv2dLayer; the outer
  // kernel 0.19 and 0.060).
  if (avx2_table_gemm() && table::applies_by_filters(q, ppi, q.ncols)) return {q.ncols, threads};
  if (avx2_table_gemm() && table::applies(q, ppi, q.ncols)) {
    if (threads <= 1) return {q.ncols, 1};
    const std::size_t block = table::block_columns(q), blocks = q.ncols / block;
    // Blocks that split evenly but leave columns: T equal tasks, each with its share of them (a task of the last
    // columns alone went to whichever thread came first, the other then idle: 64ch 32x32's 1024 columns ran as 480 /
    // 480 / 64, the stride-2 64 -> 128 layer's 256 as 96 / 96 / 64, 128ch 28x28's 784 as 384 / 384 / 16). 2 threads,
    // profile_conv_core, fastest calls of four alternated pairs (AMD EPYC Zen 3, docs/KERNELS.md round 29): 64ch
    // 32x32 0.067-0.069 -> 0.063-0.064 ms, the stride-2 layer 0.045 -> 0.036, 128ch 28x28 0.149-0.151 -> 0.144-0.145,
    // 1x1 256ch 28x28 0.126-0.127 -> 0.123; 1 thread and 64ch 56x56 unchanged.
    if (blocks >= threads && blocks % threads == 0 && q.ncols % block != 0)
      return {ceil_div(ceil_div(q.ncols, threads), Avx2Outer::kLanes) * Avx2Outer::kLanes, 1};
    if (blocks >= threads && (blocks % threads == 0 || blocks >= 4 * threads))
      return {ceil_div(blocks, threads) * block, 1};
    if (m >= 16 * threads) return {q.ncols, threads};
    return {q.ncols, 0};
  }
  return {q.ncols * static_cast<std::size_t>(q.order) * q.kw * sizeof(word_t) <= kOneTaskBytes ? q.ncols : 0, 0};
}

void gemm_task_avx2(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                    float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb, WeightCache* cache,
                    std::uint64_t call) {
  // A task of 16-63 columns on long rows (a 7x7 or 4x4 map's) takes the table kernel with the filters in the lanes.
  // Otherwise the table kernel takes whole blocks (a block computes all its 32-96 columns however few are real); the
  // last columns of a task that fill no block go to the filter-lane form where it applies, else to the outer kernel
  // (gemm_split_avx2 gives tasks whole blocks but for a layer's last columns: a 56x56 map's 3136 are 32 blocks of 96
  // and a 2-group block of 64).
  if (avx2_table_gemm() && !table::applies_by_filters(q, ppi, jb) && table::applies(q, ppi, jb)) {
    // Order 1: 3-group blocks where their panel is small, then 2-group ones (for a task's last 64-95 columns too).
    const bool three = table::block_columns(q) == 3 * table::kCols;
    std::size_t main = three ? jb / (3 * table::kCols) * (3 * table::kCols) : 0;
    // 32-47 columns past the 3-group blocks, which would go to the outer kernel: one 3-group block fewer, so that
    // 2-group blocks take them (a 128-column task: 2 x 64 instead of 96 + 32).
    if (main && jb - main >= table::kCols && jb - main < 3 * table::kCols / 2) main -= 3 * table::kCols;
    if (main) table::run<1, 3, 3>(wbits, m, q, ep, ppi, y, o0, mb, j0, main);
    const std::size_t bcols = (q.order == 1 ? 2 : 1) * table::kCols;
    std::size_t more = (jb - main) / bcols * bcols;
    if (4 * (jb - main - more) >= 3 * bcols) more = jb - main;  // a last block at least 3/4 full as well
    if (more && q.order == 3) table::run<3, 3, 1>(wbits, m, q, ep, ppi, y, o0, mb, j0 + main, more);
    if (more && q.order == 2) table::run<2, 5, 1>(wbits, m, q, ep, ppi, y, o0, mb, j0 + main, more);
    if (more && q.order == 1) table::run<1, 5, 2>(wbits, m, q, ep, ppi, y, o0, mb, j0 + main, more);
    main += more;
    if (main == jb) return;
    j0 += main, jb -= main;
  }
  if (avx2_table_gemm() && table::applies_by_filters(q, ppi, jb))
    return table::run_by_filters(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, cache);
  outer_task<Avx2Outer>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb, call);
}

}  // namespace horq
