// Order-K residual binarization of one column, packed (docs/MATH.md "Inputs: residual binarization"):
//   r_0 = x;  for k = 1..K:  H_k = sign(r_{k-1}),  beta_k = mean |r_{k-1}|,  r_k = r_{k-1} - beta_k H_k.
// Since H_k = sign(r_{k-1}), r_k = r_{k-1} + beta_k where r_{k-1} < 0 and r_{k-1} - beta_k elsewhere, so one
// pass per order packs H_k from a compare mask, updates r and sums |r_k| for beta_{k+1}.
//
// The arithmetic is double precision: the bits are thresholds of the residual against zero, and float32
// rounding of beta and r would flip bits near a threshold (a few per million values), which the float64
// reference (horq.reference) would count as errors. With doubles only exact ties can disagree.
//
// Each operation has a portable version (quantize_generic.cpp, the reference the ISA versions are tested
// against) and AVX2/AVX-512 versions; the loops they share are in quantize_walk.h.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/types.h"

namespace horq {

// 1 when x is NaN or +-Inf (its exponent bits all ones), else 0: the input check of the convolution's
// packing (a branch-free integer test, so the loops around it vectorize).
inline std::uint32_t non_finite(float x) {
  constexpr std::uint32_t kExpMask = 0x7f800000u;
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & kExpMask) == kExpMask ? 1u : 0u;
}

// r: the column, `groups * cg` values, group g at r + g * cg (a conv column is kh*kw pixel groups of C
// channels; a linear column is one group). Overwritten with residuals.
// bits: `order` rows of ldbits words; row k holds H_{k+1}, group g in words [g*gw, (g+1)*gw), gw = words_for(cg),
// with the unused bits of each group's last word zero (the weights are laid out the same way).
// betas: `order` values. A non-finite x gives a non-finite betas[0] (the caller's NaN/Inf check).
using quantize_fn = void (*)(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas);

void quantize_column_generic(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                             std::size_t ldbits, double* betas);
void quantize_column_avx2(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas);
void quantize_column_avx512(double* r, std::size_t groups, std::size_t cg, int order, word_t* bits,
                            std::size_t ldbits, double* betas);

// Orders 2..order of one convolution column read straight from its taps, with H_1 and beta_1 already
// known (the caller packs sign(x) once per pixel and gets beta_1 as a box sum, conv.cpp).
// taps[t]: the `cg` input values of tap t (a pixel's channels, contiguous floats), or nullptr for a
// padding tap (all zeros). Pass k = 2..order recomputes the residual of every value from x,
//     r_{k-1} = (((x - beta_1 H_1) - beta_2 H_2) ... - beta_{k-1} H_{k-1}),  H_j = sign(r_{j-1}),
// in double with the very roundings of the stored-residual loop above (each step is r -+ beta_j), packs
// H_k = sign(r_{k-1}) into row k-1 of bits (same layout as quantize_column) and sums |r_{k-1}| into
// betas[k-1] = beta_k. So no float column is materialized and nothing is written but bits; the cost is
// O(k) per value in pass k, which is cheaper than streaming a stored residual for the orders used (<= 3).
// betas[0] (beta_1) is read, betas[1..order-1] written; row 0 of bits is not touched.
using quantize_taps_fn = void (*)(const float* const* taps, std::size_t ntaps, std::size_t cg, int order,
                                  word_t* bits, std::size_t ldbits, double* betas);

void quantize_taps_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                           std::size_t ldbits, double* betas);
void quantize_taps_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                        std::size_t ldbits, double* betas);
void quantize_taps_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, int order, word_t* bits,
                          std::size_t ldbits, double* betas);

// Order 2 exactly, from the taps, in float32: the same H_2 bits as quantize_taps (exact, see below) and
// beta_2 summed from float32 terms, each word's partial sum added into double (relative error ~1e-6,
// against float32 outputs). Only beta_1 is a threshold at order 2: with x a float32 value and a = |x|,
//     r_1 = x - beta_1 sign(x) < 0   <=>   a < ceil32(beta_1)   if x >= 0 (sign(0) = +1),
//                                   <=>   a > floor32(beta_1)  if x < 0,
// where ceil32/floor32 round beta_1 up/down to float32 (Threshold32, quantize_walk.h), so the float compare gives the
// bit the double chain gives, with no rounding case left over. |r_1| = |a - beta_1| for either sign.
// betas[0] is read, betas[1] written; row 0 of bits is read, not written: it must hold H_1 of the taps (the caller
// gathers it; zero words for padding taps), which a pass may use for the signs of x (H_2 = H_1 XOR L);
// row 1 of bits is written.
using quantize_taps2_fn = void (*)(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                                   std::size_t ldbits, double* betas);

void quantize_taps2_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                            std::size_t ldbits, double* betas);
void quantize_taps2_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                         std::size_t ldbits, double* betas);
void quantize_taps2_avx512(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                           std::size_t ldbits, double* betas);

// Order 3 of one convolution column from float32 thresholds (quantize_walk.h Threshold3), after order 2: rows 1 and 2
// of bits hold H_2 (read) and H_3 (written), betas[0..1] are read and betas[2] written (beta_3, float32 terms of
// |r_2| summed per word into double). Returns false, writing nothing, where the thresholds do not apply (a band edge
// ties, beta_2 = 0): the caller then runs quantize_taps. Taps as for quantize_taps (nullptr: a padding tap). The avx2
// and generic paths give the same bits and betas (the generic one adds the avx2 lanes' terms in their order).
using quantize_taps3_fn = bool (*)(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                                   std::size_t ldbits, double* betas);

bool quantize_taps3_generic(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                            std::size_t ldbits, double* betas);

bool quantize_taps3_avx2(const float* const* taps, std::size_t ntaps, std::size_t cg, word_t* bits,
                         std::size_t ldbits, double* betas);

// Orders 2..order of a run of convolution columns whose taps are all read from zero-bordered images (conv.cpp, on
// paths whose GEMM reads H_1 from the pixel image, layer.h PixelImage), C a multiple of 64 (whole words per tap):
//   * x: the input's NHWC float copy with the same zero border as the pixel image (padded pixel p's C values at
//     x + p * C), so a padding tap reads C zeros, which give the padding's bits and sums with no special case;
//   * words / sums: the pixel image (H_1 words and per-pixel sums of |x|).
// Column i's first tap is padded pixel pix[i] and its words start at word[i]; tap t adds pix_off[t] pixels
// (x_off[t] = pix_off[t] * C floats; word group g of it word_off[t * C / 64 + g]). Per column: beta_1 = (the taps'
// pixel sums added in tap order) / n, the box sum of the order-1 GEMM and of the per-column route, bit for bit;
// then order 2 as quantize_taps2 computes it from beta_1 (H_2 bits exactly, beta_2 to float32 summation rounding)
// and orders 3..order as quantize_taps does (each value's residual chain recomputed in double). Writes
// betas[order * i + k] = beta_{k+1} (k = 0..order-1) and H_2..H_order, kw = taps * C / 64 words each, into the rows
// at bits + i * ldbits (H_k at + (k - 2) * kw); H_1 is not written (the GEMM reads it from the image). One call per
// run of columns keeps the per-column set-up (the box sum, the thresholds, the passes' registers) in one loop.
struct ImageColumns {
  const float* x;
  const word_t* words;
  const double* sums;
  const std::int64_t* pix_off;   // per tap
  const std::int64_t* x_off;     // per tap
  const std::int64_t* word_off;  // per tap and word group
  std::size_t taps, C;
  double n;  // taps * C
};

using quantize_image_fn = void (*)(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                                   std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas);

void quantize_image_generic(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                             std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas);
void quantize_image_avx2(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                          std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas);
void quantize_image_avx512(const ImageColumns& im, const std::int64_t* pix, const std::int64_t* word,
                            std::size_t count, int order, word_t* bits, std::size_t ldbits, double* betas);

// Order 2 of a 3 x 3, stride-1, dilation-1 convolution on the image route from per-pixel bands (conv.cpp
// band2_columns; the avx2 and avx512 paths, KernelTable::band2_pixels and band2_columns nullptr on generic). A pixel is
// read by up to 9 columns, and H_2 = H_1 XOR (|x| < up_j) for column j's threshold up_j (Threshold32's
// ceil32(beta_1), quantize_taps2): values below every reader's threshold (|x| < L, L the least of them) have the same
// bit in all its columns, as have values at or above the greatest (U); only values in the band L <= |x| < U (a few
// of 64 where neighbouring columns' beta_1 differ by a few percent) are compared with each reader's threshold. So
// each pixel is read once (band2_pixels), not once per column that reads it, and each column gathers its taps' words
// and sums (band2_columns). The bits are quantize_taps2's exactly; beta_2 = 2 (n_l beta_1 - S_l) / n, with S_l the
// sum of the |x| whose bit L is set: per tap the values below L summed in float32 lanes (rounded to double once per
// pixel) plus the band's values below up_j (float32, in channel order), so its rounding (float32 terms, as
// quantize_taps2's) depends on the pixel's readers as well as on the column, but not on threads or tasks (L and U
// come from every reader of the pixel). A column whose beta_1 is a float32 value b (rare; beta_1 = 0 included) has
// pos = b, neg = the float above b: the tie |x| = b takes bit (x < 0), as quantize_taps2's exact pass gives it.
//
// Thresholds come as a grid per image of (out_h + 4) rows x gs >= out_w + 5 floats, column (oy, ox) at row oy + 2 and
// index ox + 2, the border +inf in `pos` and -inf in `neg` (no column): padded pixel (py, px)'s readers in window row
// q (q = 0..2; column row py - q) are grid row py - q + 2 at px + j, j = 0..2, and the column reading it through tap
// (q, s) is j = 2 - s. Slot 4 q + j of a pixel's 12 (slot 4 q + 3 unused) holds that reader's word of L-bits and sum.
struct Band2Row {
  const float* x;       // the padded row's NHWC copy: wp pixels of C values
  std::size_t C, wp;
  const float* pos[3];  // grid rows py - q + 2 (q = 0..2)
  const float* neg[3];
  bool exact;           // some column of the layer has exact thresholds (neg differs from pos)
  word_t* l;            // per pixel, word w of 64 channels, slot: l[(px * C / 64 + w) * 12 + slot]
  double* sb;           // per pixel and slot: sb[px * 12 + slot]
  // band2_pixels_nchw only: pixels x0 .. x0 + n - 1 (the row inside the border; n = 0 for a border row) from the
  // input's channel rows, channel c's at src + c * cstride, through the affine x * scale[c] + shift[c] (float32
  // multiply, then add) where scale is given; every other pixel is zero, its C values at x.
  const float* src;
  std::size_t cstride, x0, n;
  const float* scale;
  const float* shift;
};
using band2_pixels_fn = void (*)(const Band2Row& row);
void band2_pixels_avx2(const Band2Row& row);
void band2_pixels_avx512(const Band2Row& row);
// The same words and sums bit for bit, the pixels inside read from NCHW rows (band2_pixels_nchw: 8 pixels in the lanes
// on the avx2 path, 16 on avx512; no NHWC copy of the row first).
void band2_pixels_nchw_avx2(const Band2Row& row);
void band2_pixels_nchw_avx512(const Band2Row& row);

// quantize_image's work for such columns from band2_pixels' words and sums (l, sb: padded pixels in the layout above,
// pixel p of the chunk's pixel image (pix, its sums index) at index p - lbase of l and sb: rows of pixels from some
// row on): betas[order * i] (beta_1) is read, every other beta and the rows H_2.. written as quantize_image writes them
// (orders 3.. as it computes them), except that word w of column i's H_2 goes to bits[i * ldbits + w * ldword]:
// ldword = 1 for rows, or at order 2 ldbits = 1 and ldword = QuantizedColumns::ldw (word_major).
using band2_columns_fn = void (*)(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                                  const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order,
                                  word_t* bits, std::size_t ldbits, std::size_t ldword, double* betas);
void band2_columns_avx2(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                        const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order, word_t* bits,
                        std::size_t ldbits, std::size_t ldword, double* betas);
void band2_columns_avx512(const ImageColumns& im, const word_t* l, const double* sb, std::int64_t lbase,
                          const std::int64_t* pix, const std::int64_t* word, std::size_t count, int order,
                          word_t* bits, std::size_t ldbits, std::size_t ldword, double* betas);

// The thresholds of one output row of such columns (conv.cpp band2_columns' first stage): column ox's beta_1 = its box
// sum (the pixel sums at sums + off[t] + ox added in tap order t = 0..8, from 0.0) / n, into betas[ox * ord], and its
// thresholds into the grid row: pos[ox] = Threshold32's up (ceil32(beta_1)), neg[ox] = the same, or where beta_1 is a
// float32 value the float above it. Returns whether some column's beta_1 is a float32 value. The same floats on every
// path (AVX-512: 8 columns a step).
using band2_thresholds_fn = bool (*)(const double* sums, const std::int64_t* off, std::size_t ow, double n,
                                     std::size_t ord, double* betas, float* pos, float* neg);
bool band2_thresholds_avx2(const double* sums, const std::int64_t* off, std::size_t ow, double n, std::size_t ord,
                           double* betas, float* pos, float* neg);
bool band2_thresholds_avx512(const double* sums, const std::int64_t* off, std::size_t ow, double n, std::size_t ord,
                             double* betas, float* pos, float* neg);

// Slots per pixel in Band2Row's l and sb.
constexpr std::size_t kBand2Slots = 12;

// Pixel packing of a convolution's input (conv.cpp), for one image row and up to 64 channels:
//     words[w * wstride] = sum_c (x_c[w] < 0) << c,   sums[w] += |x_0[w]| + |x_1[w]| + ... (double, in channel order)
// for w < W, where x_c = src + c * cstride (NCHW: cstride = H * W), or, with `scale`/`shift` (both given or
// both nullptr), x_c = src[...] * scale[c] + shift[c] in float32 (a per-channel affine, e.g. the BatchNorm
// before a binary layer, applied here instead of in a pass of its own; multiply then add, each rounded, as
// a separate affine step computes it). Returns 1 if a value (after the affine) is NaN or Inf, else 0. The
// channel order of the sums is fixed, so every path gives the same sums bit for bit.
using pack_pixels_fn = std::uint32_t (*)(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                         word_t* words, std::size_t wstride, double* sums, const float* scale,
                                         const float* shift);

std::uint32_t pack_pixels_generic(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                  word_t* words, std::size_t wstride, double* sums, const float* scale,
                                  const float* shift);
std::uint32_t pack_pixels_avx2(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                               word_t* words, std::size_t wstride, double* sums, const float* scale,
                               const float* shift);
std::uint32_t pack_pixels_avx512(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W,
                                 word_t* words, std::size_t wstride, double* sums, const float* scale,
                                 const float* shift);

// The NHWC float copy of a convolution's input at order >= 2 (the taps quantize_taps2 / quantize_taps read), for
// one image row and `nchan` channels:
//     dst[w * ldd + c] = x_c[w]   for w < W, c < nchan,
// x_c as for pack_pixels (src + c * cstride, through the affine when scale/shift are given, multiply then add).
// The same floats on every path; AVX-512 / AVX2 transpose 16 x 16 / 8 x 8 blocks in registers.
using to_nhwc_fn = void (*)(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                            const float* shift, float* dst, std::size_t ldd);

void to_nhwc_generic(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                     const float* shift, float* dst, std::size_t ldd);
void to_nhwc_avx2(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                  const float* shift, float* dst, std::size_t ldd);
void to_nhwc_avx512(const float* src, std::size_t cstride, std::size_t nchan, std::size_t W, const float* scale,
                    const float* shift, float* dst, std::size_t ldd);

}  // namespace horq
