// Training side of the HORQ layers (src/horq/nn/native_train.py): what the backward pass needs from the
// columns the forward pass quantized.
//
// The straight-through weight gradient of a binary layer is dW~ = G^T A, where G holds the output gradients
// (one row per column j) and A the quantized input, A[j, :] = sum_k beta_{k,j} H_{k,j} (docs/MATH.md "Inputs:
// residual binarization", "Gradients"; the betas are constants in the backward pass). The forward pass keeps
// K bits and K doubles per column instead of a float copy of the unfolded input. From them, either A is
// rebuilt a block of columns at a time for the caller's float GEMM (expand_columns), or G^T A is computed as
// one float-by-sign product per plane (planes_weight_grad, below; the product: sign_gemm.h); the input
// gradient is such a product too (conv_input_grad, linear_input_grad).
#pragma once
#include <cstddef>

#include "core/layer.h"
#include "core/types.h"

namespace horq {

// Makes every column of q explicit (rows j * order + k of bits for every k, and betas): a path that reads H_1
// (and at order 1 beta_1) from the pixel image (layer.h, implicit_h1) leaves them out, the backward pass needs
// them. The words and sums are copied from the image, beta_1 summed in the GEMM task's order (taps in order,
// then / n), so the planes and betas are those the forward pass used. The image is released.
void materialize_columns(QuantizedColumns& q);

// Columns [col0, col1) of a QuantizedColumns (layer.h) as floats: out[(j - col0) * n + i] =
// float(sum_k beta_{k,j} * (1 - 2 bit_{k,j}(i))), the sum taken in float32 in the order k = 1..K (the
// arithmetic of the torch path, horq.nn.quant). `i` runs over the column's n = groups * cg values in the
// order the bits store them: `groups` groups of `cg` bits, group g starting at word g * gw (the conv layout
// of layer.h: groups = kh*kw taps of C channels, gw = words_for(C); or one group of n bits, compact/linear).
// bits: row (j * order + k) of `ldbits` words holds H_{k+1} of column j; betas: (j * order + k).
void expand_columns(const KernelTable& kt, const word_t* bits, const double* betas, std::size_t ldbits, int order,
                    std::size_t groups, std::size_t cg, std::size_t gw, std::size_t col0, std::size_t col1,
                    float* out);

// The weight binarizer of the torch path (horq.nn.quant.binary_weight) and its straight-through gradient are
// per ISA: KernelTable::binarize_rows and ::weight_grad (weight_rows.h).

// The straight-through clip window applied in place: g[i] = 0 where |x[i]| > clip.
void clip_window(float* g, const float* x, std::size_t size, float clip);

// The sum of each of `planes` planes of P floats (out[i] = sum of x[i * P .. i * P + P)), in double and in one fixed
// order on every path and thread count: 16 running sums over the values p = l mod 16, added in order l = 0..15
// at the end (a bias gradient's per-image partial sums, bindings.cpp nchw_rows). Single-threaded.
void plane_sums(const float* x, std::size_t planes, std::size_t P, double* out);

// ---- backward products on packed signs (train_backward.cpp; the product itself: sign_gemm.h) ----------

// sign_gemm over p's outputs of rows j < rows (rows <= p.J; the rest are not written), threaded: tasks of 64
// lanes by a share of the sign rows.
void sign_gemm(const KernelTable& kt, const SignGemm& p, std::size_t rows);

// Bit transpose of plane k of `ncols` columns (row (j * order + k) of `ldbits` words holds column j's plane
// k, as QuantizedColumns stores them): s becomes the sign rows of sign_gemm, one row per bit position b of a
// column (J = ldbits * 64 rows), row b's bit j = bit b of column j, word-block-major (s[w * J + b] holds
// columns 64w .. 64w+63; bits past ncols are zero). s has words_for(ncols) * J words.
void transpose_planes(const KernelTable& kt, const word_t* bits, std::size_t ncols, int order, std::size_t ldbits,
                      int k, word_t* s);

// The row stride of planes_weight_grad's output for M values a row: M, or past it where M floats are a multiple
// of 512 bytes or more, since rows a power of two of kilobytes apart share a few L1 sets and the product's
// 64-lane slices of them evict each other (R=4096 M=512 J=1024 sign_gemm 24 -> 13 ms with a 64-byte pad;
// benchmarks/profile_sign_gemm.cpp, round 9 of docs/KERNELS.md).
inline std::size_t weight_grad_stride(std::size_t M) { return M >= 128 && M % 128 == 0 ? M + 16 : M; }

// The weight gradient of a binary layer from the planes its forward pass kept (docs/MATH.md "Gradients"):
//     out[b * ldo + m] = sum_k sum_j g[j * M + m] * float(beta_{k,j}) * (bit b of H_{k,j} ? -1 : +1),
// ldo = weight_grad_stride(M),
// for the bit positions b < rows of a column (rows <= ldbits * 64: the caller passes one past the last position
// that holds a value, so a compact or linear layout's trailing padding bits are not computed; positions
// between groups are, and the caller picks the rows of real values out of the column layout) and m < M (the
// output gradient of column j is row j of g, M floats).
void planes_weight_grad(const KernelTable& kt, const float* g, std::size_t M, const word_t* bits,
                        const double* betas, std::size_t ncols, int order, std::size_t ldbits, std::size_t rows,
                        float* out);

// The latent float weights behind a binary layer's weight (w: M rows of n floats, alpha: M), and the clip of
// KernelTable::weight_grad (< 0: none), for planes_weight_grad_rows.
struct LatentWeights {
  const float* w;
  const float* alpha;
  double clip;
};

// planes_weight_grad for a column of one group of n values and one tap (a linear layer, a 1 x 1 convolution),
// written straight into the weight gradient dw (M, n): dw[m, b] = out[b, m] of planes_weight_grad, the same bits.
// With `latent`, dw is instead the gradient of the latent weights, KernelTable::weight_grad of that (the same
// bits as calling it after).
void planes_weight_grad_rows(const KernelTable& kt, const float* g, std::size_t M, const word_t* bits,
                             const double* betas, std::size_t ncols, int order, std::size_t ldbits, std::size_t n,
                             float* dw, const LatentWeights* latent = nullptr);

// The rows of planes_weight_grad's output (bit positions b, M values each, weight_grad_stride(M) apart) that hold
// a column's values, as the weight gradient (M, C * taps) in PyTorch's weight order: dw[m, c * taps + t] =
// out[b(t * C + c), m],
// where value v of a column sits at bit b(v) = (v / cg) * gw * 64 + v % cg (layer.h's conv layout: groups of
// cg values, gw words each; a linear layer is one group of cg = n values, taps = 1).
void gather_weight_grad(const float* out, std::size_t M, std::size_t groups, std::size_t cg, std::size_t gw,
                        std::size_t taps, float* dw);

// Input gradient of a binary convolution (any stride, padding, dilation), clip window fused (clip < 0: none):
//     gx[n, c, y, x] = 1{|x_in| <= clip} * sum over (o, i, j, oy, ox) with oy sh + i dh = y + ph and
//                      ox sw + j dw = x + pw of g[n, o, oy, ox] * alpha[o] * sign(w[o, c, i, j])
// (sign(0) = +1). g is (N, O, OH, OW); wbits the packed signs of the weight rows (O rows in PyTorch's
// (c, i, j) order, words_for(C * KH * KW) words each: KernelTable::binarize_rows' bits); x and gx (N, C, H, W).
// With geo.nhwc, g, x and gx are NHWC instead ((N, OH, OW, O), (N, H, W, C)): the same values.
void conv_input_grad(const KernelTable& kt, const float* g, const float* alpha, const word_t* wbits,
                     const ConvGeometry& geo, std::size_t m, const float* x, float clip, float* gx);

// Input gradient of a linear layer (g (N, O), wbits the packed signs of the weight rows (O, words_for(n)),
// x and gx (N, n)), clip fused:
//     gx[r, i] = 1{|x[r, i]| <= clip} * sum_o g[r, o] * alpha[o] * sign(w[o, i]).
void linear_input_grad(const KernelTable& kt, const float* g, const float* alpha, const word_t* wbits, std::size_t N,
                       std::size_t O, std::size_t n, const float* x, float clip, float* gx);

}  // namespace horq
