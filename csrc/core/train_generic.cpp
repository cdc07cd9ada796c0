// The training side of the binary layers (train.h): quantized columns made explicit and rebuilt as floats for
// the weight gradient, and the clip window. Portable code; the per-value loops are branch-free (float_bits.h)
// and left to the compiler's vectorizer. (The weight binarizer and its gradient are per ISA: weight_rows.h.)
//
// Rebuilding a column: every value is sum_k (bit_k ? -b_k : b_k) with b_k = float(beta_k), a column at a time by
// the path's expand_column (sign_gemm.h), in the order k = 1..K exactly as the torch path's float32 `approx` does.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/float_bits.h"
#include "core/threadpool.h"
#include "core/train.h"

namespace horq {
namespace {

constexpr std::size_t kColsPerTask = 16;

}  // namespace

void expand_columns(const KernelTable& kt, const word_t* bits, const double* betas, std::size_t ldbits, int order,
                    std::size_t groups, std::size_t cg, std::size_t gw, std::size_t col0, std::size_t col1,
                    float* out) {
  const std::size_t ncols = col1 - col0, n = groups * cg;
  parallel_for(ceil_div(ncols, kColsPerTask), [&](std::size_t t) {
    const std::size_t j0 = col0 + t * kColsPerTask, j1 = j0 + kColsPerTask < col1 ? j0 + kColsPerTask : col1;
    std::array<const word_t*, kMaxOrder> planes{};
    std::array<float, kMaxOrder> b{};
    for (std::size_t j = j0; j < j1; ++j) {
      for (int k = 0; k < order; ++k) {
        planes[k] = bits + (j * order + k) * ldbits;
        b[k] = static_cast<float>(betas[j * order + k]);
      }
      float* dst = out + (j - col0) * n;
      kt.expand_column(planes.data(), b.data(), order, groups, cg, gw, dst);
    }
  });
}

void materialize_columns(QuantizedColumns& q) {
  if (!q.implicit_h1) return;
  const std::size_t order = static_cast<std::size_t>(q.order), kw = q.kw;
  const PixelImage& im = q.image;
  if (im.word_off.size() != kw) throw std::logic_error("materialize_columns: pixel image does not match the columns");
  if (q.bits.empty()) q.bits.assign(q.ncols * order * kw, 0);
  // The image route's rows of H_2.. (no rows of H_1, layer.h) go to their places beside H_1's in a new array.
  std::vector<word_t, UninitAllocator<word_t>> all(q.h1_rows ? 0 : q.ncols * order * kw);
  word_t* const rows = q.h1_rows ? q.bits.data() : all.data();
  const bool sum_betas = q.betas.empty();
  if (sum_betas) q.betas.assign(q.ncols * order, 0.0);
  const double n = static_cast<double>(q.n);
  parallel_for(ceil_div(q.ncols, kColsPerTask), [&](std::size_t t) {
    const std::size_t j1 = (t + 1) * kColsPerTask < q.ncols ? (t + 1) * kColsPerTask : q.ncols;
    PixelCursor at(im, t * kColsPerTask);
    for (std::size_t j = t * kColsPerTask; j < j1; ++j, at.next()) {
      const word_t* src = im.words.data() + at.word();
      word_t* dst = rows + j * order * kw;
      for (std::size_t w = 0; w < kw; ++w) dst[w] = src[im.word_off[w]];
      if (!q.h1_rows)  // rows or word by word (layer.h QuantizedColumns::word)
        for (std::size_t k = 1; k < order; ++k)
          for (std::size_t w = 0; w < kw; ++w) dst[k * kw + w] = q.word(j, k, w);
      if (sum_betas) q.betas[j * order] = box_beta(im, at.sum(), n);
    }
  });
  if (!q.h1_rows) {
    q.bits.swap(all);
    q.h1_rows = true;
    q.word_major = false;
  }
  q.implicit_h1 = false;
  q.image = PixelImage{};
}

void clip_window(float* g, const float* x, std::size_t size, float clip) {
  constexpr std::size_t kBlock = 1 << 14;
  parallel_for(ceil_div(size, kBlock), [&](std::size_t t) {
    const std::size_t i1 = (t + 1) * kBlock < size ? (t + 1) * kBlock : size;
    float* __restrict gg = g;
    const float* __restrict xx = x;
    for (std::size_t i = t * kBlock; i < i1; ++i) gg[i] = in_window(gg[i], xx[i], clip);
  });
}

void plane_sums(const float* x, std::size_t planes, std::size_t P, double* out) {
  constexpr std::size_t kRunning = 16;  // independent sums: the adds overlap instead of waiting on each other
  for (std::size_t i = 0; i < planes; ++i, x += P) {
    double acc[kRunning] = {};
    std::size_t p = 0;
    for (; p + kRunning <= P; p += kRunning)
      for (std::size_t l = 0; l < kRunning; ++l) acc[l] += static_cast<double>(x[p + l]);
    for (std::size_t l = 0; p + l < P; ++l) acc[l] += static_cast<double>(x[p + l]);
    double s = 0.0;
    for (const double a : acc) s += a;
    out[i] = s;
  }
}

}  // namespace horq
