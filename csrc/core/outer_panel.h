// The ISA-neutral part of the outer-product GEMM tasks (gemm_outer_*.cpp): a task's columns copied into
// vector lanes, where each lane's outputs go, and the task itself (outer_task below), templated on the
// ISA's popcount kernel and epilogue store, so an ISA file holds only those.
//
// One task computes outputs [o0, o0 + mb) x columns [j0, j0 + jb) of horq_gemm (layer.h). Why outer
// product: a row-dot-product kernel reduces each (filter, column) pair horizontally at the end of its row,
// which costs as much as the row itself when rows are short (a 3x3 conv over 64 channels is 9 words, a
// 1x1 over 256 channels 4). Here the 64-bit lanes of a vector run over L columns instead: per word w of
// the rows, MR filter words are broadcast and XORed against NV vectors of column words,
//     cnt[i][v] += popcount(broadcast(W[o_i][w]) ^ B[v][w])            (per 64-bit lane)
// so no reduction happens in the word loop and a 1-word row costs the same per MAC as a long one.
//
// Epilogue per output o and column j, the scalar epilogue's operations in its order (gemm_driver.cpp), in float32
// with beta, coef and add rounded to float32 once:
//     s = 0;  for k = 1..K:  s = s + beta_{k,j} * (n - 2 * pc_k)      (n - 2 pc is an integer below 2^24: exact)
//     y = coef_o * s + add_o
// each * and + rounded on its own (the core is built with -ffp-contract=off, so no FMA merges them), then
// y + residual, max(floor_o, y) and min(ceiling_o, y) where the Epilogue asks for them (finish_output, layer.h).
// Lanes are columns, so beta is a vector load and coef/add broadcasts.
//
// Panel: columns in groups of G "lane sets" of L columns (L = 64-bit lanes per vector: 8 for AVX-512, 4 for
// AVX2). A group stores, per row word w, its NV = G * K vectors [(lane set c, plane k) -> L lanes]; plane k
// of column j is q's row j * K + k, or for plane 0 of an implicit_h1 q the pixel image's words (layer.h).
// Lanes past the task's columns hold zero words and zero betas (computed, never stored). An ISA that counts
// nibbles (Isa::kSplit = 2: AVX2) keeps two copies of each word's NV vectors, the low and the high nibbles of every
// byte, written so by its fill_rows and fill_h1; its weight rows likewise (Isa::prepare_rows, a register block's
// rows at a time).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/isa_local.h"
#include "core/layer.h"

namespace horq {

// Each including file's own copy (core/isa_local.h).
namespace {

template <std::size_t L>
struct OuterPanel {
  std::size_t sets = 0, G = 0, NV = 0, groups = 0, kw = 0, split = 1;
  LocalVector<word_t> words;  // groups x kw x split x NV x L
  LocalVector<double> betas;  // sets x K x L
  // An ISA with counts_direct may read a lane set's plane 0 in place, from the pixel image (its L columns consecutive
  // pixels: word w of all L at h1[c] + h1_off[w]); h1[c] is nullptr where words holds it.
  // step_off[w] = w * word_step().
  LocalVector<const word_t*> h1;
  const std::int64_t* h1_off = nullptr;
  // Likewise a lane set's stored plane k >= 1 of word by word columns (QuantizedColumns::word_major), its word w at
  // stored[c * K + k] + stored_off[w] (nullptr: in words); set by such an ISA's fill_rows.
  LocalVector<const word_t*> stored;
  LocalVector<std::int64_t> stored_off;
  LocalVector<std::int64_t> step_off;
  std::size_t word_step() const { return split * NV * L; }  // from word w's vectors to word w + 1's
  std::size_t group_words() const { return kw * word_step(); }
};

// Sets the panel up for columns [j0, j0 + jb): its shape, zero words and betas in the lanes past the columns, and
// q's betas. The ISA's fill_rows writes q's stored rows (each_stored_row_set), and with q.implicit_h1 its fill_h1
// plane 0 (and at order 1 the betas).
template <std::size_t L>
void prepare_panel(const QuantizedColumns& q, std::size_t j0, std::size_t jb, std::size_t G, std::size_t split,
                   OuterPanel<L>& p) {
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw;
  p.sets = ceil_div(jb, L), p.G = G, p.NV = G * K, p.groups = ceil_div(p.sets, G), p.kw = kw, p.split = split;
  const std::size_t gwords = p.group_words(), stride = p.word_step();
  if (p.words.size() < p.groups * gwords) p.words.resize(p.groups * gwords);
  p.h1.assign(p.sets, nullptr);
  p.stored.assign(p.sets * K, nullptr);
  p.step_off.resize(kw);
  for (std::size_t w = 0; w < kw; ++w) p.step_off[w] = static_cast<std::int64_t>(w * stride);
  if (p.betas.size() < p.groups * G * K * L) p.betas.resize(p.groups * G * K * L);
  if (jb < p.groups * G * L) {  // lanes of missing columns: zero words and betas
    std::fill_n(p.words.data() + (p.groups - 1) * gwords, gwords, word_t{0});
    std::fill_n(p.betas.data() + jb / L * K * L, (p.groups * G - jb / L) * K * L, 0.0);
  }
  if (!q.betas.empty()) {  // lane set by lane set, plane by plane: loops of constant strides (no division per beta)
    const double* sb = q.betas.data() + j0 * K;
    double* db = p.betas.data();
    const std::size_t whole = jb / L;
    for (std::size_t c = 0; c < whole; ++c, sb += L * K, db += K * L)
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t l = 0; l < L; ++l) db[k * L + l] = sb[l * K + k];
    for (std::size_t l = 0; l < jb - whole * L; ++l)
      for (std::size_t k = 0; k < K; ++k) db[k * L + l] = sb[l * K + k];
  }
}

// For each lane set c of the panel and each plane k that q stores as rows (from plane 1 with an implicit_h1 q):
// fn(dst, src, valid), dst the panel's vector of plane k, word 0 (word w at dst + w * word_step(); lane l at + l),
// src[l] row j0 + c L + l of q.bits for the set's `valid` columns. The loop of the ISAs' fill_rows.
template <std::size_t L, class Fn>
void each_stored_row_set(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<L>& p, Fn&& fn) {
  const std::size_t K = static_cast<std::size_t>(q.order), G = p.G, gwords = p.group_words();
  for (std::size_t c = 0; c < p.sets; ++c) {
    const std::size_t valid = std::min(L, jb - c * L);
    for (std::size_t k = q.implicit_h1 ? 1 : 0; k < K; ++k) {
      const word_t* src[L];
      for (std::size_t l = 0; l < valid; ++l) src[l] = q.row(j0 + c * L + l, k);
      fn(p.words.data() + (c / G) * gwords + ((c % G) * K + k) * L, src, valid);
    }
  }
}

// Plane 0 from the pixel image, one lane at a time; at order 1 beta_1 is the pixel sums added in tap order
// (the scalar box sum of conv.cpp), divided by n.
template <std::size_t L>
void fill_h1_scalar(const QuantizedColumns& q, std::size_t j0, std::size_t jb, OuterPanel<L>& p) {
  const PixelImage& im = q.image;
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw, G = p.G, gwords = p.group_words();
  const std::size_t stride = p.word_step();
  PixelCursor at(im, j0);
  for (std::size_t jj = 0; jj < jb; ++jj, at.next()) {
    const std::size_t c = jj / L, l = jj % L;
    const word_t* src = im.words.data() + at.word();
    word_t* dst = p.words.data() + (c / G) * gwords + (c % G) * K * L + l;
    for (std::size_t w = 0; w < kw; ++w) dst[w * stride] = src[im.word_off[w]];
    if (K == 1) p.betas[c * L + l] = box_beta(im, at.sum(), static_cast<double>(q.n));
  }
}

template <std::size_t L>
struct LaneDest;

// A task's panel and lane destinations, one per thread, reached through a call the compiler cannot see into:
// inlined uses of a thread_local object in position-independent code may call __tls_get_addr on every
// access inside the kernel loops (measured: 5% of a 64-channel 56x56 conv).
// `panel` and `dest` hold the columns [j0, j0 + jb) of GEMM call `call` (gemm_task_fn) as ISA `isa` filled them
// (call 0: nothing kept).
template <std::size_t L>
struct OuterScratch {
  OuterPanel<L> panel;
  LocalVector<LaneDest<L>> dest;
  LocalVector<word_t> rows;  // a register block's weight rows as Isa::prepare_rows rewrites them
  LocalVector<const word_t*> src;        // direct_sources' (counts_direct ISAs)
  LocalVector<const std::int64_t*> off;
  std::uint64_t call = 0;
  const void* isa = nullptr;
  std::size_t j0 = 0, jb = 0;
};

// One object per ISA, whose address names it in OuterScratch::isa.
template <class Isa>
inline const char kIsaTag = 0;

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
  bool contiguous, whole;  // whole: contiguous and all L lanes valid (one plain vector store)
  bool columns;            // all L lanes valid, each its own column of an NHWC output (ppi = 1: m floats apart)
};

template <std::size_t L>
void lane_dests(std::size_t m, std::size_t ppi, std::size_t j0, std::size_t jb, LocalVector<LaneDest<L>>& out) {
  out.resize(ceil_div(jb, L));
  ColumnCursor at(ppi, ppi, j0);  // column j0 + jj is pixel at.r of image at.img
  for (std::size_t c = 0; c < out.size(); ++c) {
    LaneDest<L>& d = out[c];
    d.valid = static_cast<unsigned>(std::min(L, jb - c * L));
    if (d.valid == L && at.row_holds(L)) {  // one image's L pixels in a row: no lane by lane cursor
      const std::size_t base = at.img * m * ppi + at.r;
      for (unsigned l = 0; l < L; ++l) d.base[l] = base + l;
      at.skip(L);
    } else {
      for (unsigned l = 0; l < d.valid; ++l, at.next()) d.base[l] = at.img * m * ppi + at.r;
    }
    d.contiguous = d.base[d.valid - 1] == d.base[0] + d.valid - 1;
    d.whole = d.contiguous && d.valid == L;
    d.columns = ppi == 1 && d.valid == L;
  }
}

// An ISA's half of a task: `Isa` provides
//   kLanes                         64-bit lanes per vector: the columns of a lane set
//   kRows[K]                       filters per kernel call at order K (its register budget), K = 1..kMaxOrder
//   kMidRows, kLastRows            the calls that finish a task's last mb % kRows[K] filters (outer_run_task)
//   Count                          a vector of per-lane 64-bit counts
//   kSplit                         copies of each panel vector (1, or 2 for an ISA that counts nibbles)
//   fill_rows(q, j0, jb, panel)    q's stored planes into the panel (each_stored_row_set; split at kSplit = 2)
//   prepare_rows<MR>(a, kw, buf)   points a[i] at its row rewritten for counts in buf (2 * MR * kw words), or
//                                  leaves it
//   counts<MR, NV>(a, b, kw, step, copy, cnt)   cnt[i][v] = per-lane popcounts of rows a[i] against the
//                                  vectors v of a panel group (word w's vectors at b + w * step; the first NV of
//                                  them; a second copy of each `copy` words further at kSplit = 2); or, with
//                                  kCountsDirect = true, counts_direct (HasCountsDirect below)
//   fill_h1(q, j0, jb, panel)      plane 0 (and at order 1 the betas) of an implicit_h1 q (split at kSplit = 2)
//   store<K>(cnt, betas, n, coef, add, dest, ep, o, ppi, y)   the epilogue above for one output o and one
//                                  lane set: K counts, K x kLanes betas, written where dest says
//   store_block<MR, G, K>(cnt, betas, n, coef, add, dest, ep, o, ppi, y)   the same for a whole register block
//                                  (filters o.. o + MR - 1, coef and add from there; the group's G lane sets,
//                                  each LaneDest::whole), computing what store would for each output
//   store_columns<MR, G, K>(...)   the same arguments, for a block whose lane sets are each LaneDest::columns and
//                                  an epilogue without residual or floor (an NHWC output: a column's MR filters
//                                  are MR consecutive floats)
//   kWordStride, row_at(w, r, kw)  optional: the weights the task gets are in a layout of the ISA's own (filter_row)
//
// The panel holds G lane sets per group: two at order 1, so a kernel call reads 2 vectors per broadcast
// filter word (on AVX-512, 12 filters x 2 vectors measured 15-20% faster than 24 x 1: fewer broadcasts per
// XOR), one at higher orders, whose K planes already give NV = K vectors.
template <int K>
constexpr int kPanelSets = K == 1 ? 2 : 1;

// An ISA with kCountsDirect = true has counts_direct<MR, NV>(a, src, off, kw, cnt), whose vector v of word w is at
// src[v] + off[v][w]: outer_rows then reads the lane sets' planes that the panel left in place (OuterPanel::h1 and
// stored) from there, and every other vector from the panel.
template <class Isa, class = void>
struct HasCountsDirect : std::false_type {};
template <class Isa>
struct HasCountsDirect<Isa, std::enable_if_t<Isa::kCountsDirect>> : std::true_type {};

// Where a kernel call finds a group's vectors: the panel's (b, step, copy: Isa::counts), or with counts_direct
// vector v of word w at src[v] + off[v][w] (direct_sources).
template <int NV>
struct GroupSource {
  const word_t* b;
  std::size_t step, copy;
  const word_t* const* src;
  const std::int64_t* const* off;
};

// For counts_direct: every group's NV vectors' sources (group g's vector v at src[g NV + v], off[g NV + v]), each where
// it lies (OuterPanel::h1, stored) or in the panel. Once per outer_rows call, not again for each register block of
// filters (order 3 at 64ch 56x56, blocks of 4 filters: 0.832 -> 0.825 ms, docs/KERNELS.md round 39).
template <std::size_t L, std::size_t G, int K>
void direct_sources(const OuterPanel<L>& p, const word_t** src, const std::int64_t** off) {
  constexpr int NV = static_cast<int>(G) * K;
  for (std::size_t g = 0; g < p.groups; ++g) {
    const word_t* b = p.words.data() + g * p.group_words();
    for (int v = 0; v < NV; ++v) {
      const std::size_t c = g * G + static_cast<std::size_t>(v) / K, k = static_cast<std::size_t>(v % K);
      const word_t* at = c >= p.sets ? nullptr : k == 0 ? p.h1[c] : p.stored[c * K + k];
      src[g * NV + v] = at ? at : b + static_cast<std::size_t>(v) * L;
      off[g * NV + v] = !at ? p.step_off.data() : k == 0 ? p.h1_off : p.stored_off.data();
    }
  }
}

// cnt = the counts of rows a against the first N vectors of a group (Isa::counts or counts_direct).
template <class Isa, int MR, int N, int NV>
void group_counts(const word_t* const* a, const GroupSource<NV>& from, std::size_t kw,
                  typename Isa::Count (&cnt)[MR][N]) {
  if constexpr (HasCountsDirect<Isa>::value) {
    Isa::template counts_direct<MR, N>(a, from.src, from.off, kw, cnt);
  } else {
    Isa::template counts<MR, N>(a, from.b, kw, from.step, from.copy, cnt);
  }
}

// Filter r's row: Isa::row_at(wbits, r, kw) where the ISA keeps the weights in a layout of its own (with
// kWordStride, its words that far apart: AVX-512's filter quads), else kw consecutive words at wbits + r kw.
template <class Isa, class = void>
struct HasRowLayout : std::false_type {};
template <class Isa>
struct HasRowLayout<Isa, std::void_t<decltype(Isa::kWordStride)>> : std::true_type {};

template <class Isa>
inline const word_t* filter_row(const word_t* wbits, std::size_t r, std::size_t kw) {
  if constexpr (HasRowLayout<Isa>::value) {
    return Isa::row_at(wbits, r, kw);
  } else {
    return wbits + r * kw;
  }
}

// Outputs [o0 + i0, o0 + i1) against every group of the panel, MR filters per kernel call; src, off: room for
// direct_sources (p.groups x G K each).
template <class Isa, int MR, int K>
void outer_rows(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
                std::size_t o0, std::size_t i0, std::size_t i1, const OuterPanel<Isa::kLanes>& p,
                const LaneDest<Isa::kLanes>* dest, word_t* rows, const word_t** src, const std::int64_t** off) {
  constexpr std::size_t L = Isa::kLanes, G = kPanelSets<K>;
  constexpr int NV = static_cast<int>(G) * K;
  const std::size_t kw = q.kw, step = p.word_step();
  const double n = static_cast<double>(q.n);
  if constexpr (HasCountsDirect<Isa>::value) direct_sources<L, G, K>(p, src, off);
  for (; i0 < i1; i0 += MR) {
    const word_t* a[MR];  // rows past i1 repeat row i0: computed, not stored
    for (int i = 0; i < MR; ++i) a[i] = filter_row<Isa>(wbits, o0 + (i0 + i < i1 ? i0 + i : i0), kw);
    Isa::template prepare_rows<MR>(a, kw, rows);
    for (std::size_t g = 0; g < p.groups; ++g) {
      typename Isa::Count cnt[MR][NV];
      const word_t* b = p.words.data() + g * p.group_words();
      // The group's vectors: the panel's, or with counts_direct where direct_sources found them.
      constexpr bool kDirect = HasCountsDirect<Isa>::value;
      const GroupSource<NV> from{b, step, NV * L, kDirect ? src + g * NV : nullptr, kDirect ? off + g * NV : nullptr};
      if (G == 2 && g * G + 1 == p.sets) {  // order 1, odd last lane set: its vector alone
        typename Isa::Count one[MR][1];
        group_counts<Isa, MR, 1>(a, from, kw, one);
        for (int i = 0; i < MR; ++i) cnt[i][0] = one[i][0];
      } else {
        group_counts<Isa, MR, NV>(a, from, kw, cnt);
      }
      // Every filter real and every lane set whole in y: store_block; or every lane set an NHWC output's columns,
      // with no residual, floor or ceiling: store_columns; else output by output.
      bool whole = i0 + MR <= i1 && (g + 1) * G <= p.sets;
      bool columns = whole && !ep.residual && !ep.floor && !ep.ceiling;
      for (std::size_t cg = 0; cg < G; ++cg) {
        whole = whole && dest[g * G + cg].whole;
        columns = columns && dest[g * G + cg].columns;
      }
      const double* betas = p.betas.data() + g * G * K * L;
      const double *coef = ep.coef + o0 + i0, *add = ep.add + o0 + i0;
      constexpr int kG = static_cast<int>(G);
      if (whole) {
        Isa::template store_block<MR, kG, K>(cnt, betas, n, coef, add, dest + g * G, ep, o0 + i0, ppi, y);
        continue;
      }
      if (columns) {
        Isa::template store_columns<MR, kG, K>(cnt, betas, n, coef, add, dest + g * G, ep, o0 + i0, ppi, y);
        continue;
      }
      for (int i = 0; i < MR && i0 + i < i1; ++i) {
        const std::size_t o = o0 + i0 + i;
        for (std::size_t cg = 0; cg < G && g * G + cg < p.sets; ++cg) {
          const std::size_t c = g * G + cg;
          Isa::template store<K>(cnt[i] + cg * K, p.betas.data() + c * K * L, n, ep.coef[o], ep.add[o], dest[c], ep,
                                 o, ppi, y);
        }
      }
    }
  }
}

// Outputs [o0, o0 + mb): full MR-row calls, then kMidRows-row calls, then kLastRows-row calls for the rest
// (rows a call computes past mb are dropped: at most kLastRows - 1 of them).
template <class Isa, int K>
void outer_run_task(const word_t* wbits, const QuantizedColumns& q, const Epilogue& ep, std::size_t ppi, float* y,
                    std::size_t o0, std::size_t mb, const OuterPanel<Isa::kLanes>& p,
                    const LaneDest<Isa::kLanes>* dest, word_t* rows, const word_t** src,
                    const std::int64_t** off) {
  constexpr int MR = Isa::kRows[K], kMid = Isa::kMidRows, kLast = Isa::kLastRows;
  std::size_t done = mb / MR * MR;
  outer_rows<Isa, MR, K>(wbits, q, ep, ppi, y, o0, 0, done, p, dest, rows, src, off);
  if (MR > kMid && mb - done >= kMid) {
    const std::size_t to = done + (mb - done) / kMid * kMid;
    outer_rows<Isa, (MR > kMid ? kMid : MR), K>(wbits, q, ep, ppi, y, o0, done, to, p, dest, rows, src, off);
    done = to;
  }
  if (done < mb)
    outer_rows<Isa, (MR < kLast ? MR : kLast), K>(wbits, q, ep, ppi, y, o0, done, mb, p, dest, rows, src, off);
}

// The most filters of any kernel call (Isa::kRows).
template <class Isa>
constexpr std::size_t max_rows() {
  int r = 0;
  for (int k = 1; k <= kMaxOrder; ++k) r = Isa::kRows[k] > r ? Isa::kRows[k] : r;
  return static_cast<std::size_t>(r);
}

// One task (dispatch.h gemm_task_fn), specialized on the order so that the epilogue's k loop unrolls. A thread's
// task of the same call (nonzero `call`), ISA and columns as its last one (another block of filters) keeps that one's
// panel and lane destinations instead of filling them again: the driver hands a thread consecutive filter blocks of
// a column block, and a small map's columns are one block cut only by filters (512ch 4x4 at 2 threads: 8 tasks, which
// filled the same 16 columns' panel 8 times, fill_h1 8% of the call's samples against 2% at 1 thread).
template <class Isa>
void outer_task(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb, std::uint64_t call) {
  constexpr std::size_t L = Isa::kLanes;
  const int K = q.order;
  OuterScratch<L>& scratch = outer_scratch<L>();
  OuterPanel<L>& p = scratch.panel;
  const void* const isa = &kIsaTag<Isa>;
  if (call == 0 || scratch.call != call || scratch.isa != isa || scratch.j0 != j0 || scratch.jb != jb) {
    scratch.call = 0;  // a panel half filled (an exception) is kept by no call
    prepare_panel(q, j0, jb, K == 1 ? kPanelSets<1> : kPanelSets<2>, Isa::kSplit, p);
    Isa::fill_rows(q, j0, jb, p);
    if (q.implicit_h1) Isa::fill_h1(q, j0, jb, p);
    lane_dests(m, ppi, j0, jb, scratch.dest);
    scratch.call = call, scratch.isa = isa, scratch.j0 = j0, scratch.jb = jb;
  }
  const LaneDest<L>* dest = scratch.dest.data();
  if (Isa::kSplit > 1 && scratch.rows.size() < Isa::kSplit * max_rows<Isa>() * q.kw)
    scratch.rows.resize(Isa::kSplit * max_rows<Isa>() * q.kw);
  word_t* rows = scratch.rows.data();
  const std::size_t sources = HasCountsDirect<Isa>::value ? p.groups * p.NV : 0;
  if (scratch.src.size() < sources) scratch.src.resize(sources), scratch.off.resize(sources);
  const word_t** src = scratch.src.data();
  const std::int64_t** off = scratch.off.data();
  static_assert(kMaxOrder == 8, "one case per order below");
  switch (K) {
    case 1: outer_run_task<Isa, 1>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 2: outer_run_task<Isa, 2>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 3: outer_run_task<Isa, 3>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 4: outer_run_task<Isa, 4>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 5: outer_run_task<Isa, 5>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 6: outer_run_task<Isa, 6>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    case 7: outer_run_task<Isa, 7>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
    default: outer_run_task<Isa, 8>(wbits, q, ep, ppi, y, o0, mb, p, dest, rows, src, off); break;
  }
}

}  // namespace
}  // namespace horq
