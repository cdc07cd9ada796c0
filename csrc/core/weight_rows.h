// The weight side of a binary layer's training step, per ISA (declared in train.h's terms; dispatched through
// the KernelTable): the fused binarizer of the latent float weights and its straight-through gradient.
//
// Weights (docs/MATH.md "Weights", "Gradients"): alpha_o = mean_i |w_oi|, summed in 8 double lanes added in
// lane order and rounded to float32 once; bits = the signs packed as pack_signs does (types.h: bit 1 where
// w < 0); w_eff = alpha * sign(w) is alpha with w's sign bit where w < 0 (exact: no multiply). The
// straight-through gradient of w_eff = alpha(w) sign(w),
//     dw_oi = alpha_o 1{|w_oi| <= clip} g_oi + sign(w_oi) / n * sum_l g_ol sign(w_ol),
// takes the first term through sign (clipped STE) and the second through alpha = mean |w| (d|w_l|/dw_i =
// sign(w_i) when l = i); the dot product is summed in double lanes like alpha, then rounded to float32.
//
// The loops below are written once, as plain C++ over explicit lanes (each lane's sum in its own order, the
// lanes added in lane order), and compiled per ISA (weight_rows_{generic,avx2,avx512}.cpp): the compiler
// vectorizes them to the ISA's width without reordering any float operation (no -ffast-math; -ffp-contract=off),
// so every path gives the same bits. Only the sign packing, which compilers do not vectorize, is per ISA.
#pragma once
#include <cmath>
#include <cstddef>

#include "core/float_bits.h"
#include "core/threadpool.h"
#include "core/types.h"

namespace horq {

// m rows of n floats -> alpha (m), bits (m rows of words_for(n) words), w_eff (m x n, or nullptr: not written).
using binarize_rows_fn = void (*)(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits,
                                  float* w_eff);
// The gradient above for the upstream gradient g of w_eff (clip < 0: no window).
using weight_grad_fn = void (*)(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                                double clip, float* dw);

void binarize_rows_generic(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff);
void binarize_rows_avx2(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff);
void binarize_rows_avx512(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits, float* w_eff);
void weight_grad_generic(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                         double clip, float* dw);
void weight_grad_avx2(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n, double clip,
                      float* dw);
void weight_grad_avx512(const float* w, const float* alpha, const float* g, std::size_t m, std::size_t n,
                        double clip, float* dw);

namespace weight_rows {

constexpr std::size_t kLanes = 8;  // double lanes of the row sums

// PackRow(src, n, dst): the signs of n floats into words_for(n) words (pack_signs' bits).
template <class PackRow>
[[gnu::always_inline]] inline void binarize(const float* w, std::size_t m, std::size_t n, float* alpha, word_t* bits,
                                            float* w_eff) {
  const std::size_t nw = words_for(n);
  parallel_for(m, [&](std::size_t o) {
    const float* __restrict src = w + o * n;
    double acc[kLanes] = {};
    std::size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (std::size_t e = 0; e < kLanes; ++e) acc[e] += static_cast<double>(std::fabs(src[i + e]));
    for (; i < n; ++i) acc[0] += static_cast<double>(std::fabs(src[i]));
    double sum = 0.0;
    for (std::size_t e = 0; e < kLanes; ++e) sum += acc[e];
    const float a = static_cast<float>(sum / static_cast<double>(n));
    alpha[o] = a;
    PackRow::run(src, n, bits + o * nw);
    if (w_eff) {
      float* __restrict eff = w_eff + o * n;
      for (std::size_t j = 0; j < n; ++j) eff[j] = times_sign(a, src[j]);
    }
  });
}

// Isa: the calling file's own type (an unnamed namespace's), so that each file's instantiation, its lambda and the
// std::function handler of that lambda are the file's own. A plain inline function's lambda is one weak symbol in
// every file that compiles it, and the linker keeps one copy for all: before this, every path ran the generic file's
// (SSE2) loop, and a link that kept an ISA file's would have run AVX2 or AVX-512 code on the generic path.
template <class Isa>
[[gnu::always_inline]] inline void weight_grad(const float* w, const float* alpha, const float* g, std::size_t m,
                                               std::size_t n, double clip, float* dw) {
  const bool window = clip >= 0.0;
  const float c = window ? static_cast<float>(clip) : 0.0f;  // as torch compares a float32 tensor with a float
  parallel_for(m, [&](std::size_t o) {
    const float* __restrict src = w + o * n;
    const float* __restrict go = g + o * n;
    float* __restrict out = dw + o * n;
    double acc[kLanes] = {};
    std::size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (std::size_t e = 0; e < kLanes; ++e) acc[e] += static_cast<double>(times_sign(go[i + e], src[i + e]));
    for (; i < n; ++i) acc[0] += static_cast<double>(times_sign(go[i], src[i]));
    double dot = 0.0;
    for (std::size_t e = 0; e < kLanes; ++e) dot += acc[e];
    const float via = static_cast<float>(dot / static_cast<double>(n)), a = alpha[o];
    if (window) {
      for (std::size_t j = 0; j < n; ++j) out[j] = in_window(a * go[j], src[j], c) + times_sign(via, src[j]);
    } else {
      for (std::size_t j = 0; j < n; ++j) out[j] = a * go[j] + times_sign(via, src[j]);
    }
  });
}

// The portable packing, also every ISA's tail of fewer than its vector's values.
inline void pack_tail(const float* src, std::size_t i0, std::size_t n, word_t* dst) {
  for (std::size_t i = i0; i < n; ++i) dst[i / kWordBits] |= sign_bit(src[i]) << (i % kWordBits);
}

}  // namespace weight_rows
}  // namespace horq
