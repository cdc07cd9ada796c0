// Float-by-sign products, the backward pass of a binary layer (core/train.h, src/horq/nn/native_train.py).
//
// Both gradients of a binary layer multiply a float matrix by a +-1 matrix: the input gradient by the
// binarized weights sign(W) (alpha folded into the floats), the weight gradient by the input's planes H_k
// (beta_k folded in). A float GEMM spends one multiply-add per term; here the +-1 operand stays packed and
// four reduction terms cost one table lookup. For rows r0..r0+3 of the float operand, a table of the 16
// signed sums
//     T[b][m] = sum_{i<4} (bit i of b ? -1 : +1) * scale_{r0+i} * a_{r0+i}[m]
// is built once (16 vector adds) and then serves every sign row j: the nibble of row j's bits at r0 picks
// T[b], one vector add for four terms, against four multiply-adds. With hundreds of sign rows per table the
// build is a few percent and the product runs at up to 4x a float GEMM's arithmetic on the same vectors.
//
// The sum runs over r in order, a nibble (four terms, combined in the table's order) at a time, and in
// float32 throughout: a different rounding order from a float GEMM, the same mathematics (the tests allow
// float tolerance). An output is computed by one task whatever the thread count, so results are bitwise
// identical at every thread count; the ISA versions differ in their float roundings only by the order in
// which the 16 nibble sums of one 64-bit word are added (generic: the AVX2 order).
#pragma once
#include <cstddef>

#include "core/types.h"

namespace horq {

// out[j * ldo + m] = (accumulate ? out[j * ldo + m] : 0) + sum_{r < R} scale_r * a_r[m] * s_j(r)
// for m in [m0, m1) and j in [j0, j1), where
//   a_r = arows[r], R pointers each valid for the m range read (floats; r's beyond R count as zero),
//   scale_r = rscale ? rscale[r] : 1,
//   s_j(r) = -1 if bit r of sign row j is set, else +1 (types.h: bit 1 is -1), sign rows stored
//            word-block-major: word w (bits 64w..64w+63) of row j at s[w * J + j], words_for(R) words per row;
//            bits past R are ignored.
struct SignGemm {
  const float* const* arows;
  const float* rscale;  // nullptr: every scale 1
  std::size_t R, M;
  const word_t* s;
  std::size_t J;
  float* out;
  std::size_t ldo;
  bool accumulate;
};

// One task: outputs [m0, m1) x [j0, j1), single-threaded.
using sign_gemm_fn = void (*)(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1);

void sign_gemm_generic(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1);
void sign_gemm_avx2(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1);
void sign_gemm_avx512(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1);

// The input gradient's fold (train_backward.cpp conv_input_grad). A block of the product holds, for each sign
// row (c, t) of `channels` channels and T = kh * kw taps t = (i, j) (row c * T + t of buf, ldb floats), the
// gradient of a block of output positions. The positions form runs along output rows: run r's lanes
// [lane, lane + len) are the outputs at grid offset `at` (image, oy * sh, ox0 * sw) and the next len - 1 along
// the row, and tap (i, j) of output u lands on the padded input grid at
//     grid[c * Pz + i * dh * Wg + j * dw + r.at + u * sw]  +=  buf[(c * T + i * kw + j) * ldb + r.lane + u].
// Every grid value gets its terms in tap order (t = i * kw + j), on every path: the same bits. With unit strides
// along the row (sw = dw = 1) the walk loads a stretch of a grid row once per tap row i and adds its kw taps as
// shifted, masked loads of buf (one load/store of the grid per three taps at kw = 3), and visits the channels
// innermost, so a stretch is stored long before any load overlaps it (a vector load that overlaps a recent
// masked store waits for it: updating per tap made the fold as slow as the product). Other strides add one
// value at a time.
struct FoldRun {
  std::size_t lane, len, at;
};
struct Fold {
  const float* buf;  // readable from 16 floats before to 16 floats after each row's lanes (masked loads)
  std::size_t ldb, channels, kh, kw, dh, dw, sw, Wg, Pz;
  const FoldRun* runs;
  std::size_t nruns;
  float* grid;  // the plane of the block's first channel in image 0 (r.at adds the image and position)
  // One past the last float the fold may touch (the caller's planes): a stretch shorter than a vector (the end of
  // a narrow row) whose whole vector lies before it is loaded and stored whole, its other lanes written back as
  // they were read, instead of masked (AMD CPUs microcode masked stores, and a masked load waits on them).
  const float* end;
};
using fold_rows_fn = void (*)(const Fold& f);

void fold_rows_generic(const Fold& f);
void fold_rows_avx2(const Fold& f);
void fold_rows_avx512(const Fold& f);

// One kept column rebuilt as floats (train.h expand_columns, the GEMM route of the weight gradient): `groups`
// groups of cg values, group g's bits starting at bit g * gw * 64 of each plane,
//     out[g * cg + i] = float(sum_{k < order} (bit g * gw * 64 + i of planes[k] ? -b[k] : b[k]))   for i < cg,
// summed in float32 in the order k = 0, 1, ... (each +-b[k] is exact; the torch path's order), so every path
// gives the same bits.
using expand_column_fn = void (*)(const word_t* const* planes, const float* b, int order, std::size_t groups,
                                  std::size_t cg, std::size_t gw, float* out);

void expand_column_generic(const word_t* const* planes, const float* b, int order, std::size_t groups,
                           std::size_t cg, std::size_t gw, float* out);
void expand_column_avx2(const word_t* const* planes, const float* b, int order, std::size_t groups, std::size_t cg,
                        std::size_t gw, float* out);
void expand_column_avx512(const word_t* const* planes, const float* b, int order, std::size_t groups,
                          std::size_t cg, std::size_t gw, float* out);

// A 64 x 64 bit matrix transposed in place (the weight gradient's plane transposes, train_backward.cpp
// transpose_planes): bit c of word r becomes bit r of word c (bit i of a word = column i). Every path does the
// same six block-swap levels (swap the top-right j x j block of each 2j x 2j block with the bottom-left one,
// j = 32, 16, ..., 1); the vector paths do a level's word pairs a register at a time (pairs j words apart in
// different registers while j >= the register's words, else within one register through a lane permute).
using transpose64_fn = void (*)(word_t* a);

void transpose64_generic(word_t* a);
void transpose64_avx2(word_t* a);
void transpose64_avx512(word_t* a);

// Output columns (m) one task covers: every path's register block.
constexpr std::size_t kSignGemmMB = 32;

}  // namespace horq
