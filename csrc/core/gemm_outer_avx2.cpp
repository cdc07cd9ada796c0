// AVX2 outer-product HORQ GEMM with the epilogue fused: one task of horq_gemm (layer.h), the AVX-512
// kernel's design (gemm_outer_avx512.cpp) on 4 columns per vector.
//
// AVX2 has no vector popcount, so each 64-bit lane of a XOR is counted with the nibble table:
//     x = broadcast(W[o][w]) ^ B[v][w];   cnt8 += lut[x & 0x0f] + lut[(x >> 4) & 0x0f]     (vpshufb, bytes)
// A byte gains at most 8 per word, so byte counts are summed over up to kFlushWords = 31 words (8 * 31 <=
// 255) before vpsadbw adds the 8 bytes of each 64-bit lane into 64-bit counts. The counts never reach
// 2^52, so they convert to double exactly by the exponent trick (or 2^52 into the bits, subtract 2^52).
//
// Epilogue: the scalar epilogue's operations in order (no FMA: the core is built with -ffp-contract=off),
// 4 columns per vector; 4 consecutive columns of one image are one masked store.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

constexpr std::size_t kLanes = 4;       // 64-bit lanes per ymm: columns per lane set
constexpr std::size_t kFlushWords = 31;  // words whose byte counts fit a byte (8 per word)

using Panel = OuterPanel<kLanes>;
using QuadDest = LaneDest<kLanes>;

// cnt[i][v] = per-lane popcount sums (64-bit) of rows a[i] against the group's vectors v over kw words;
// word w's vectors start at b + w * step.
template <int MR, int NV>
inline void outer_kernel(const word_t* const* a, const word_t* b, std::size_t kw, std::size_t step,
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

// Outputs [o0 + i0, o0 + i1) against every group of the panel, MR filters per call (rows past i1 repeat
// row i0 and are dropped).
template <int MR, int NV>
void run_rows(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
              std::size_t o0, std::size_t i0, std::size_t i1, const Panel& p, const QuadDest* dest) {
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G;
  const __m256d n = _mm256_set1_pd(static_cast<double>(q.n)), two = _mm256_set1_pd(2.0);
  const __m256i magic_i = _mm256_set1_epi64x(0x4330000000000000LL);  // the bits of 2^52
  const __m256d magic = _mm256_set1_pd(4503599627370496.0);
  for (; i0 < i1; i0 += MR) {
    const word_t* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = wbits + (o0 + (i0 + i < i1 ? i0 + i : i0)) * kw;
    for (std::size_t g = 0; g < p.groups; ++g) {
      __m256i cnt[MR][NV];
      outer_kernel<MR, NV>(a, p.words.data() + g * p.group_words(), kw, NV * kLanes, cnt);
      for (int i = 0; i < MR && i0 + i < i1; ++i) {
        const std::size_t o = o0 + i0 + i;
        const __m256d coef = _mm256_set1_pd(ep.coef[o]), add = _mm256_set1_pd(ep.add[o]);
        for (std::size_t cg = 0; cg < G && g * G + cg < p.sets; ++cg) {
          const std::size_t c = g * G + cg;
          __m256d s = _mm256_setzero_pd();
          for (std::size_t k = 0; k < K; ++k) {
            const __m256d pc =
                _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(cnt[i][cg * K + k], magic_i)), magic);
            const __m256d beta = _mm256_loadu_pd(p.betas.data() + (c * K + k) * kLanes);
            s = _mm256_add_pd(s, _mm256_mul_pd(beta, _mm256_sub_pd(n, _mm256_mul_pd(two, pc))));
          }
          __m128 out = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(coef, s), add));
          const QuadDest& d = dest[c];
          if (d.contiguous) {
            const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(d.valid)), _mm_setr_epi32(0, 1, 2, 3));
            float* dst = y + d.base[0] + o * ppi;
            if (ep.residual) out = _mm_add_ps(out, _mm_maskload_ps(ep.residual + (dst - y), mask));
            if (ep.floor) out = _mm_max_ps(_mm_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
            _mm_maskstore_ps(dst, mask, out);
          } else {
            alignas(16) float lane[kLanes];
            _mm_store_ps(lane, out);
            for (unsigned l = 0; l < d.valid; ++l)
              y[d.base[l] + o * ppi] = finish_output(lane[l], ep, d.base[l] + o * ppi, o);
          }
        }
      }
    }
  }
}

// Full MR-row calls, then 2-row calls, then one row, so no computed row is dropped.
template <int MR, int NV>
void run_task(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
              std::size_t o0, std::size_t mb, const Panel& p, const QuadDest* dest) {
  std::size_t done = mb / MR * MR;
  run_rows<MR, NV>(wbits, q, ep, ppi, y, o0, 0, done, p, dest);
  if (MR > 2 && mb - done >= 2) {
    const std::size_t to = done + (mb - done) / 2 * 2;
    run_rows<(MR > 2 ? 2 : MR), NV>(wbits, q, ep, ppi, y, o0, done, to, p, dest);
    done = to;
  }
  if (done < mb) run_rows<1, NV>(wbits, q, ep, ppi, y, o0, done, mb, p, dest);
}

}  // namespace

void gemm_task_avx2(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                    float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  const std::size_t K = static_cast<std::size_t>(q.order);
  // 16 ymm registers: MR x NV byte accumulators, NV column vectors, the broadcast, the table and the mask.
  const std::size_t G = K == 1 ? 2 : 1;
  OuterScratch<kLanes>& scratch = outer_scratch<kLanes>();
  Panel& p = scratch.panel;
  fill_panel_rows(q, j0, jb, G, p);
  if (q.implicit_h1) fill_h1_scalar(q, j0, jb, p);
  lane_dests(m, ppi, j0, jb, scratch.dest);
  const QuadDest* dest = scratch.dest.data();
  switch (K) {
    case 1: run_task<4, 2>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 2: run_task<4, 2>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 3: run_task<3, 3>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 4: run_task<2, 4>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 5: run_task<2, 5>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 6: run_task<1, 6>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    case 7: run_task<1, 7>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
    default: run_task<1, 8>(wbits, q, ep, ppi, y, o0, mb, p, dest); break;
  }
}

}  // namespace horq
