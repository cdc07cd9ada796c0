// AVX2 half of the outer-product HORQ GEMM task (outer_panel.h: the task, its panel and its epilogue's
// arithmetic); 4 columns per ymm (64-bit lanes). Compiled with -mavx2; selected only on CPUs with AVX2.
//
// Counts: AVX2 has no vector popcount, so each 64-bit lane of a XOR is counted with the nibble table,
//     x = broadcast(W[o][w]) ^ B[v][w];   cnt8 += lut[x & 0x0f] + lut[(x >> 4) & 0x0f]     (vpshufb, bytes)
// A byte gains at most 8 per word, so byte counts are summed over up to kFlushWords = 31 words (8 * 31 =
// 248 <= 255) before vpsadbw adds the 8 bytes of each 64-bit lane into 64-bit counts.
//
// Epilogue: the counts never reach 2^52, so a count converts to double exactly by the exponent trick: OR
// the bits of 2^52 into it (a double 2^52 + count, exact) and subtract 2^52. Then the epilogue's operations
// in order (outer_panel.h) on 4 columns at once; 4 consecutive columns of one image are one store (masked only
// for a lane set's last 1-3 columns: AMD CPUs microcode masked stores, ~10x the time of a plain one).
//
// Register blocks (kRows): the 16 ymm registers hold MR x NV byte accumulators, NV column vectors, the
// broadcast, the table and the nibble mask, so MR x NV stays near 8 (4 x 2 at orders 1-2).
#include <immintrin.h>

#include <algorithm>

#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

struct Avx2Outer {
  static constexpr std::size_t kLanes = 4;  // 64-bit lanes per ymm: columns per lane set
  static constexpr int kRows[kMaxOrder + 1] = {0, 4, 4, 3, 2, 2, 1, 1, 1};
  static constexpr int kMidRows = 2, kLastRows = 1;  // a task's last rows: pairs, then one: none dropped
  static constexpr std::size_t kFlushWords = 31;    // words whose byte counts fit a byte (8 per word)
  using Count = __m256i;

  template <int MR, int NV>
  static void counts(const word_t* const* a, const word_t* b, std::size_t kw, std::size_t step,
                     __m256i (&cnt)[MR][NV]) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) cnt[i][v] = zero;
    for (std::size_t w0 = 0; w0 < kw; w0 += kFlushWords) {
      const std::size_t w1 = std::min(kw, w0 + kFlushWords);
      __m256i acc[MR][NV];
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = zero;
      for (std::size_t w = w0; w < w1; ++w) {
        __m256i bv[NV];
        for (int v = 0; v < NV; ++v)
          bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w * step + v * kLanes));
        for (int i = 0; i < MR; ++i) {
          const __m256i ai = _mm256_set1_epi64x(static_cast<long long>(a[i][w]));
          for (int v = 0; v < NV; ++v) {
            const __m256i x = _mm256_xor_si256(ai, bv[v]);
            const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
            const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
            acc[i][v] = _mm256_add_epi8(acc[i][v], _mm256_add_epi8(lo, hi));
          }
        }
      }
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) cnt[i][v] = _mm256_add_epi64(cnt[i][v], _mm256_sad_epu8(acc[i][v], zero));
    }
  }

  static void fill_h1(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<kLanes>& p) {
    fill_h1_scalar(q, j0, jb, p);
  }

  template <int K>
  static void store(const __m256i* cnt, const double* betas, double n, double coef, double add,
                    const LaneDest<kLanes>& d, const Epilogue& ep, std::size_t o, std::size_t ppi, float* y) {
    const __m256i magic_i = _mm256_set1_epi64x(0x4330000000000000LL);  // the bits of 2^52
    const __m256d magic = _mm256_set1_pd(4503599627370496.0);
    const __m256d vn = _mm256_set1_pd(n), two = _mm256_set1_pd(2.0);
    __m256d s = _mm256_setzero_pd();
    for (int k = 0; k < K; ++k) {
      const __m256d pc = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(cnt[k], magic_i)), magic);
      const __m256d beta = _mm256_loadu_pd(betas + k * kLanes);
      s = _mm256_add_pd(s, _mm256_mul_pd(beta, _mm256_sub_pd(vn, _mm256_mul_pd(two, pc))));
    }
    __m128 out = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(coef), s), _mm256_set1_pd(add)));
    if (d.contiguous) {
      // Masked only for a lane set's last columns: AMD CPUs microcode vmaskmovps stores.
      const bool whole = d.valid == kLanes;
      const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(d.valid)), _mm_setr_epi32(0, 1, 2, 3));
      float* dst = y + d.base[0] + o * ppi;
      if (ep.residual) {
        const float* r = ep.residual + (dst - y);
        out = _mm_add_ps(out, whole ? _mm_loadu_ps(r) : _mm_maskload_ps(r, mask));
      }
      if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
      if (whole) _mm_storeu_ps(dst, out);
      else _mm_maskstore_ps(dst, mask, out);
    } else {
      alignas(16) float lane[kLanes];
      _mm_store_ps(lane, out);
      for (unsigned l = 0; l < d.valid; ++l) y[d.base[l] + o * ppi] = finish_output(lane[l], ep, d.base[l] + o * ppi, o);
    }
  }
};

}  // namespace

void gemm_task_avx2(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                    float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  outer_task<Avx2Outer>(wbits, m, q, ep, ppi, y, o0, mb, j0, jb);
}

}  // namespace horq
