// AVX2 half of the outer-product HORQ GEMM task (outer_panel.h: the task, its panel and its epilogue's
// arithmetic); 4 columns per ymm (64-bit lanes). Compiled with -mavx2; selected only on CPUs with AVX2.
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
// exponent trick (signed_count below). Then the epilogue's operations in order (outer_panel.h) on 4 columns at
// once; 4 consecutive columns of one image are one store (masked only for a lane set's last 1-3 columns: AMD CPUs
// microcode masked stores, ~10x the time of a plain one). A register block whose lane sets are all such whole
// stores takes store_block, the rest store.
//
// Register blocks (kRows): the 16 ymm registers hold MR x NV byte accumulators, 2 NV column vectors, two
// broadcasts and the table: 3 x 2 at orders 1-2, 2 x 3 at order 3, one filter from order 4 (the same tool: 3 x 2
// ~500 G, 2 x 3 ~515 G, 1 x 4 ~525 G, 4 x 2 ~415 G: more than the 16 registers hold).
#include <immintrin.h>

#include <algorithm>

#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

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
  static void fill_rows(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G, gwords = p.group_words();
    const std::size_t stride = p.word_step(), copy = p.NV * kLanes, k0 = q.implicit_h1 ? 1 : 0;
    if (k0 >= K) return;
    const auto put = [&](word_t* dst, __m256i v) { store_split(dst, dst + copy, v); };
    for (std::size_t c = 0; c < p.sets; ++c) {
      const std::size_t valid = std::min(kLanes, jb - c * kLanes);
      for (std::size_t k = k0; k < K; ++k) {
        word_t* dst = p.words.data() + (c / G) * gwords + ((c % G) * K + k) * kLanes;
        const word_t* src[kLanes];
        for (std::size_t l = 0; l < valid; ++l) src[l] = q.bits.data() + ((j0 + c * kLanes + l) * K + k) * kw;
        std::size_t w = 0;
        if (valid == kLanes) {
          for (; w + 4 <= kw; w += 4) {
            __m256i r[kLanes];
            for (std::size_t l = 0; l < kLanes; ++l)
              r[l] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[l] + w));
            const __m256i t0 = _mm256_unpacklo_epi64(r[0], r[1]), t1 = _mm256_unpackhi_epi64(r[0], r[1]);
            const __m256i t2 = _mm256_unpacklo_epi64(r[2], r[3]), t3 = _mm256_unpackhi_epi64(r[2], r[3]);
            put(dst + w * stride, _mm256_permute2x128_si256(t0, t2, 0x20));
            put(dst + (w + 1) * stride, _mm256_permute2x128_si256(t1, t3, 0x20));
            put(dst + (w + 2) * stride, _mm256_permute2x128_si256(t0, t2, 0x31));
            put(dst + (w + 3) * stride, _mm256_permute2x128_si256(t1, t3, 0x31));
          }
        }
        for (; w < kw; ++w)
          for (std::size_t l = 0; l < valid; ++l)
            split_words(src[l] + w, 1, dst + w * stride + l, dst + w * stride + copy + l);
      }
    }
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
      for (std::size_t l = 0; l < valid; ++l, at.next()) {
        ow[l] = at.word(), os[l] = at.sum();
        consecutive = consecutive && ow[l] == ow[0] + static_cast<std::int64_t>(l) &&
                      os[l] == os[0] + static_cast<std::int64_t>(l);
      }
      word_t* dst = p.words.data() + (c / G) * gwords + (c % G) * K * kLanes;
      if (consecutive) {
        const word_t* src = im.words.data() + ow[0];
        for (std::size_t w = 0; w < kw; ++w)
          store_split(dst + w * stride, dst + w * stride + copy,
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + im.word_off[w])));
        if (K == 1) {
          const double* sums = im.sums.data() + os[0];
          __m256d sum = _mm256_setzero_pd();
          for (const std::int64_t off : im.sum_off) sum = _mm256_add_pd(sum, _mm256_loadu_pd(sums + off));
          _mm256_storeu_pd(p.betas.data() + c * kLanes, _mm256_div_pd(sum, n));
        }
        continue;
      }
      for (std::size_t l = 0; l < valid; ++l) {
        const word_t* src = im.words.data() + ow[l];
        for (std::size_t w = 0; w < kw; ++w)
          split_words(src + im.word_off[w], 1, dst + w * stride + l, dst + w * stride + copy + l);
        if (K == 1) {
          double s = 0.0;
          for (const std::int64_t off : im.sum_off) s += im.sums[static_cast<std::size_t>(os[l] + off)];
          p.betas[c * kLanes + l] = s / static_cast<double>(q.n);
        }
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

  // The epilogue's double-precision part for one filter and one lane set (outer_panel.h's order): K counts, their
  // betas, the filter's coef and add broadcast; the 4 outputs before the float32 steps.
  template <int K>
  static __m128 lane_set_output(const __m256i* cnt, const __m256d* beta, __m256i nbits, __m256d coef, __m256d add) {
    __m256d s = _mm256_setzero_pd();
    for (int k = 0; k < K; ++k) s = _mm256_add_pd(s, _mm256_mul_pd(beta[k], signed_count(cnt[k], nbits)));
    return _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(coef, s), add));
  }

  // A register block's outputs (MR filters x G lane sets of 4 columns) before the float32 steps, the betas loaded
  // and the count constants made once per block, coef/add broadcast once per filter.
  template <int MR, int G, int K>
  static void block_outputs(const __m256i (*cnt)[G * K], const double* betas, double n, const double* coef,
                            const double* add, __m128 (&out)[MR][G]) {
    const __m256i nbits = count_bits(n);
    __m256d beta[G * K];
    for (int v = 0; v < G * K; ++v) beta[v] = _mm256_loadu_pd(betas + v * kLanes);
    for (int i = 0; i < MR; ++i) {
      const __m256d c = _mm256_set1_pd(coef[i]), a = _mm256_set1_pd(add[i]);
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
    for (int i = 0; i < MR; ++i)
      for (int cg = 0; cg < G; ++cg) _mm_storeu_ps(dst[cg] + i * ppi, out[i][cg]);
  }

  // A register block of an NHWC output (each lane set LaneDest::columns; no residual, no floor): the block's
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
    __m256d beta[K];
    for (int k = 0; k < K; ++k) beta[k] = _mm256_loadu_pd(betas + k * kLanes);
    __m128 out = lane_set_output<K>(cnt, beta, count_bits(n), _mm256_set1_pd(coef), _mm256_set1_pd(add));
    float* dst = y + d.base[0] + o * ppi;
    if (d.whole) {  // the common case: 4 consecutive columns of one image, one plain store
      if (ep.residual) out = _mm_add_ps(out, _mm_loadu_ps(ep.residual + (dst - y)));
      if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
      _mm_storeu_ps(dst, out);
    } else if (d.contiguous) {  // a lane set's last 1-3 columns: masked (AMD CPUs microcode vmaskmovps stores)
      const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(d.valid)), _mm_setr_epi32(0, 1, 2, 3));
      if (ep.residual) out = _mm_add_ps(out, _mm_maskload_ps(ep.residual + (dst - y), mask));
      if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);
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

}  // namespace

void gemm_task_avx2(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                    float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  outer_task<Avx2Outer>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb);
}

}  // namespace horq
