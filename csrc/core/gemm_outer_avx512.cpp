// AVX-512 outer-product HORQ GEMM with the epilogue fused: one task of horq_gemm (layer.h), outputs
// [o0, o0 + mb) x columns [j0, j0 + jb), written straight into y.
//
// Why outer product: a row-dot-product kernel reduces each (filter, column) pair horizontally at the end of
// its row, which costs as much as the row itself when rows are short (a 3x3 conv over 64 channels is 9
// words, a 1x1 over 256 channels 4). Here the 64-bit lanes of a vector run over 8 columns instead: per word
// w of the rows, MR filter words are broadcast and XORed against NV vectors of column words,
//     acc[i][v] += popcount(broadcast(W[o_i][w]) ^ B[v][w])            (vpopcntq, 64-bit lanes)
// so no reduction happens in the word loop and a 1-word row costs the same per MAC as a long one.
//
// Column panel (outer_panel.h): the task's columns in groups of G octets of 8 columns, K planes each; with
// an implicit_h1 q, plane 0 is gathered from the pixel image here (fill_h1_from_image).
//
// Epilogue per output o and column j, in double, with the very operations of the scalar epilogue
// (gemm_driver.cpp): s = sum_k beta_{k,j} * (n - 2 * pc_k), y = float(coef_o * s + add_o). Lanes are columns,
// so beta is a vector load and coef/add broadcasts; 8 consecutive columns of one image are one masked store.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/layer.h"
#include "core/outer_panel.h"

namespace horq {
namespace {

constexpr std::size_t kLanes = 8;  // 64-bit lanes per zmm: columns per octet
constexpr int kMaxAcc = 24;        // accumulators that fit the 32 zmm registers beside NV loads

using Panel = OuterPanel<kLanes>;
using OctetDest = LaneDest<kLanes>;

// H_1 of columns [j0, j0 + jb) gathered from the pixel image (layer.h PixelImage) into plane 0 of the
// panel: 8 columns' word w is one masked gather at the columns' offsets plus word_off[w]. At order 1
// beta_1 comes the same way from the pixel sums, added in tap order like the scalar box sum (a padding
// tap adds the border's +0.0, which leaves a non-negative sum unchanged), then divided by n.
void fill_h1_from_image(const QuantizedColumns& q, std::size_t j0, std::size_t jb, Panel& p) {
  const PixelImage& im = q.image;
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G;
  const std::size_t group_words = p.group_words(), stride = p.NV * kLanes;
  const long long* words = reinterpret_cast<const long long*>(im.words.data());
  const __m512i zero = _mm512_setzero_si512();
  const __m512d n = _mm512_set1_pd(static_cast<double>(q.n));
  for (std::size_t c = 0; c < p.sets; ++c) {
    const std::size_t valid = std::min(kLanes, jb - c * kLanes);
    const __mmask8 m = static_cast<__mmask8>((1u << valid) - 1u);
    alignas(64) std::int64_t ow[kLanes] = {}, os[kLanes] = {};
    bool consecutive = true;  // the octet's columns are consecutive pixels of one image row: loads, not gathers
    for (std::size_t l = 0; l < valid; ++l) {
      ow[l] = im.col_word(j0 + c * kLanes + l);
      os[l] = im.col_sum(j0 + c * kLanes + l);
      consecutive = consecutive && ow[l] == ow[0] + static_cast<std::int64_t>(l);
    }
    const __m512i vw = _mm512_load_si512(ow);
    word_t* dst = p.words.data() + (c / G) * group_words + (c % G) * K * kLanes;
    for (std::size_t w = 0; w < kw; ++w) {
      const __m512i h1 = consecutive ? _mm512_maskz_loadu_epi64(m, words + ow[0] + im.word_off[w])
                                     : _mm512_mask_i64gather_epi64(
                                           zero, m, _mm512_add_epi64(vw, _mm512_set1_epi64(im.word_off[w])), words, 8);
      _mm512_storeu_si512(dst + w * stride, h1);
    }
    if (K == 1) {
      const __m512i vs = _mm512_load_si512(os);
      __m512d sum = _mm512_setzero_pd();
      for (const std::int64_t off : im.sum_off) {
        const __m512d s1 = consecutive ? _mm512_maskz_loadu_pd(m, im.sums.data() + os[0] + off)
                                       : _mm512_mask_i64gather_pd(_mm512_setzero_pd(), m,
                                                                  _mm512_add_epi64(vs, _mm512_set1_epi64(off)),
                                                                  im.sums.data(), 8);
        sum = _mm512_add_pd(sum, s1);
      }
      _mm512_storeu_pd(p.betas.data() + c * kLanes, _mm512_div_pd(sum, n));
    }
  }
}

// acc[i][v] = per-lane popcount sums of rows a[i] against the group's vectors v, over kw words; word w's
// vectors start at b + w * step (step = the panel's NV x 8 words; a call may use the first NV of them).
template <int MR, int NV>
inline void outer_kernel(const word_t* const* a, const word_t* b, std::size_t kw, std::size_t step,
                         __m512i (&acc)[MR][NV]) {
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  for (std::size_t w = 0; w < kw; ++w) {
    __m512i bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + w * step + v * kLanes);
    for (int i = 0; i < MR; ++i) {
      const __m512i ai = _mm512_set1_epi64(static_cast<long long>(a[i][w]));
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_add_epi64(acc[i][v], _mm512_popcnt_epi64(_mm512_xor_si512(ai, bv[v])));
    }
  }
}

// Outputs [o0 + i0, o0 + i1) against every group of the panel, MR filters per kernel call (the last call's
// rows past i1 repeat row i0 and are dropped).
template <int MR, int NV>
void run_rows(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
              std::size_t o0, std::size_t i0, std::size_t i1, const Panel& p, const OctetDest* dest) {
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G;
  const __m512d n = _mm512_set1_pd(static_cast<double>(q.n)), two = _mm512_set1_pd(2.0);
  for (; i0 < i1; i0 += MR) {
    const word_t* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = wbits + (o0 + (i0 + i < i1 ? i0 + i : i0)) * kw;
    for (std::size_t g = 0; g < p.groups; ++g) {
      __m512i acc[MR][NV];
      const word_t* b = p.words.data() + g * kw * NV * kLanes;
      if (NV == 2 && G == 2 && g * G + 1 == p.sets) {  // order 1, odd last octet: its vector alone
        __m512i one[MR][1];
        outer_kernel<MR, 1>(a, b, kw, NV * kLanes, one);
        for (int i = 0; i < MR; ++i) acc[i][0] = one[i][0];
      } else {
        outer_kernel<MR, NV>(a, b, kw, NV * kLanes, acc);
      }
      for (int i = 0; i < MR && i0 + i < i1; ++i) {
        const std::size_t o = o0 + i0 + i;
        const __m512d coef = _mm512_set1_pd(ep.coef[o]), add = _mm512_set1_pd(ep.add[o]);
        for (std::size_t cg = 0; cg < G && g * G + cg < p.sets; ++cg) {
          const std::size_t c = g * G + cg;
          __m512d s = _mm512_setzero_pd();
          for (std::size_t k = 0; k < K; ++k) {
            const __m512d pc = _mm512_cvtepi64_pd(acc[i][cg * K + k]);
            const __m512d beta = _mm512_loadu_pd(p.betas.data() + (c * K + k) * kLanes);
            s = _mm512_add_pd(s, _mm512_mul_pd(beta, _mm512_sub_pd(n, _mm512_mul_pd(two, pc))));
          }
          __m256 out = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(coef, s), add));
          const OctetDest& d = dest[c];
          if (d.contiguous) {
            const __mmask8 valid = static_cast<__mmask8>((1u << d.valid) - 1u);
            float* dst = y + d.base[0] + o * ppi;
            if (ep.residual) out = _mm256_add_ps(out, _mm256_maskz_loadu_ps(valid, ep.residual + (dst - y)));
            if (ep.floor) out = _mm256_max_ps(_mm256_set1_ps(ep.floor[o]), out);  // floor > out ? floor : out
            _mm256_mask_storeu_ps(dst, valid, out);
          } else {
            alignas(32) float lane[kLanes];
            _mm256_store_ps(lane, out);
            for (unsigned l = 0; l < d.valid; ++l)
              y[d.base[l] + o * ppi] = finish_output(lane[l], ep, d.base[l] + o * ppi, o);
          }
        }
      }
    }
  }
}

// Full MR-row calls, then 8- and 4-row calls for the rest, so at most 3 computed rows are dropped.
template <int MR, int NV>
void run_task(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
              std::size_t o0, std::size_t mb, const Panel& p, const OctetDest* dest) {
  static_assert(MR * NV <= kMaxAcc, "accumulators beyond the register file");
  std::size_t done = mb / MR * MR;
  run_rows<MR, NV>(wbits, q, ep, ppi, y, o0, 0, done, p, dest);
  if (MR > 8 && mb - done >= 8) {
    const std::size_t to = done + (mb - done) / 8 * 8;
    run_rows<(MR > 8 ? 8 : MR), NV>(wbits, q, ep, ppi, y, o0, done, to, p, dest);
    done = to;
  }
  if (done < mb) run_rows<(MR < 4 ? MR : 4), NV>(wbits, q, ep, ppi, y, o0, done, mb, p, dest);
}

}  // namespace

void gemm_task_avx512(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                      float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb) {
  const std::size_t K = static_cast<std::size_t>(q.order);
  // Octets per kernel call (NV = G * K vectors). Order 1 takes two: 12 filters x 2 vectors measured 15-20%
  // faster than 24 x 1 (fewer broadcasts per XOR), although a short last octet then idles up to 15 lanes.
  const std::size_t G = K == 1 ? 2 : 1;
  OuterScratch<kLanes>& scratch = outer_scratch<kLanes>();
  Panel& p = scratch.panel;
  std::vector<OctetDest>& dest = scratch.dest;
  fill_panel_rows(q, j0, jb, G, p);
  if (q.implicit_h1) fill_h1_from_image(q, j0, jb, p);
  lane_dests(m, ppi, j0, jb, dest);
  // MR filters per call: as many accumulators (MR x NV) as the registers hold.
  switch (K) {
    case 1: run_task<12, 2>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 2: run_task<12, 2>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 3: run_task<8, 3>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 4: run_task<6, 4>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 5: run_task<4, 5>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 6: run_task<4, 6>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    case 7: run_task<3, 7>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
    default: run_task<3, 8>(wbits, q, ep, ppi, y, o0, mb, p, dest.data()); break;
  }
}

}  // namespace horq
