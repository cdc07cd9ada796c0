// The column side of the outer-product GEMM tasks (gemm_outer_*.cpp), shared by the ISAs: a task's columns
// copied into vector lanes, and where each lane's outputs go.
//
// Panel: columns in groups of G "lane sets" of L columns (L = 64-bit lanes per vector: 8 for AVX-512, 4 for
// AVX2). A group stores, per row word w, its NV = G * K vectors [(lane set c, plane k) -> L lanes]; plane k
// of column j is q's row j * K + k, or for plane 0 of an implicit_h1 q the pixel image's words (layer.h).
// Lanes past the task's columns hold zero words and zero betas (computed, never stored).
#pragma once
#include <algorithm>
#include <vector>

#include "core/layer.h"

namespace horq {

template <std::size_t L>
struct OuterPanel {
  std::size_t sets = 0, G = 0, NV = 0, groups = 0, kw = 0;
  std::vector<word_t> words;  // groups x kw x NV x L
  std::vector<double> betas;  // sets x K x L
  std::size_t group_words() const { return kw * NV * L; }
};

// Fills the panel for columns [j0, j0 + jb) from q's stored rows and betas. With q.implicit_h1, plane 0 (and
// at order 1 the betas) is left for the caller: fill_h1_scalar or an ISA's gathers.
template <std::size_t L>
void fill_panel_rows(const QuantizedColumns& q, std::size_t j0, std::size_t jb, std::size_t G, OuterPanel<L>& p) {
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw;
  p.sets = ceil_div(jb, L), p.G = G, p.NV = G * K, p.groups = ceil_div(p.sets, G), p.kw = kw;
  const std::size_t gwords = p.group_words(), stride = p.NV * L;
  if (p.words.size() < p.groups * gwords) p.words.resize(p.groups * gwords);
  if (p.betas.size() < p.groups * G * K * L) p.betas.resize(p.groups * G * K * L);
  if (jb < p.groups * G * L) {  // lanes of missing columns: zero words and betas
    std::fill_n(p.words.data() + (p.groups - 1) * gwords, gwords, word_t{0});
    std::fill_n(p.betas.data() + jb / L * K * L, (p.groups * G - jb / L) * K * L, 0.0);
  }
  const std::size_t k0 = q.implicit_h1 ? 1 : 0;  // planes stored as rows in q.bits
  if (k0 < K) {
    for (std::size_t jj = 0; jj < jb; ++jj) {
      const std::size_t c = jj / L, l = jj % L;
      const word_t* src = q.bits.data() + ((j0 + jj) * K + k0) * kw;
      word_t* dst = p.words.data() + (c / G) * gwords + ((c % G) * K + k0) * L + l;
      for (std::size_t k = k0; k < K; ++k, src += kw, dst += L)
        for (std::size_t w = 0; w < kw; ++w) dst[w * stride] = src[w];
    }
  }
  if (!q.betas.empty()) {
    const double* sb = q.betas.data() + j0 * K;
    for (std::size_t jj = 0; jj < jb; ++jj)
      for (std::size_t k = 0; k < K; ++k) p.betas[(jj / L * K + k) * L + jj % L] = *sb++;
  }
}

// Plane 0 from the pixel image, one lane at a time; at order 1 beta_1 is the pixel sums added in tap order
// (the scalar box sum of conv.cpp), divided by n.
template <std::size_t L>
void fill_h1_scalar(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<L>& p) {
  const PixelImage& im = q.image;
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G, gwords = p.group_words();
  const std::size_t stride = p.NV * L;
  for (std::size_t jj = 0; jj < jb; ++jj) {
    const std::size_t c = jj / L, l = jj % L;
    const word_t* src = im.words.data() + im.col_word(j0 + jj);
    word_t* dst = p.words.data() + (c / G) * gwords + (c % G) * K * L + l;
    for (std::size_t w = 0; w < kw; ++w) dst[w * stride] = src[im.word_off[w]];
    if (K == 1) {
      const double* sums = im.sums.data() + im.col_sum(j0 + jj);
      double s = 0.0;
      for (const std::int64_t off : im.sum_off) s += sums[off];
      p.betas[c * L + l] = s / static_cast<double>(q.n);
    }
  }
}

template <std::size_t L>
struct LaneDest;

// A task's panel and lane destinations, one per thread, reached through a call the compiler cannot see into:
// inlined uses of a thread_local object in position-independent code may call __tls_get_addr on every
// access inside the kernel loops (measured: 5% of a 64-channel 56x56 conv).
template <std::size_t L>
struct OuterScratch {
  OuterPanel<L> panel;
  std::vector<LaneDest<L>> dest;
};

template <std::size_t L>
[[gnu::noinline]] OuterScratch<L>& outer_scratch() {
  thread_local OuterScratch<L> s;
  return s;
}

// Where the L columns of a lane set go in y (horq_gemm's layout): each lane's offset without the o * ppi
// term, how many lanes are real columns, and whether they are consecutive in y (one image), so that one
// (masked) store writes them.
template <std::size_t L>
struct LaneDest {
  std::size_t base[L];
  unsigned valid;
  bool contiguous;
};

template <std::size_t L>
void lane_dests(std::size_t m, std::size_t ppi, std::size_t j0, std::size_t jb, std::vector<LaneDest<L>>& out) {
  out.resize(ceil_div(jb, L));
  std::size_t img = j0 / ppi, r = j0 % ppi;  // column j0 + jj is pixel r of image img (no division per lane)
  for (std::size_t c = 0; c < out.size(); ++c) {
    LaneDest<L>& d = out[c];
    d.valid = static_cast<unsigned>(std::min(L, jb - c * L));
    for (unsigned l = 0; l < d.valid; ++l) {
      d.base[l] = img * m * ppi + r;
      if (++r == ppi) r = 0, ++img;
    }
    d.contiguous = d.base[d.valid - 1] == d.base[0] + d.valid - 1;
  }
}

}  // namespace horq
