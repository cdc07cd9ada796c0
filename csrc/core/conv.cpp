// Convolution input side: every output position's receptive field is one column of n = C * kh * kw values,
// residual-binarized as in quantize.h, in the conv layout of layer.h ((i, j, c) order, grouped or compact).
//
// Arithmetic (docs/MATH.md "Inputs: residual binarization", "Padding"): padded zeros are part of the column,
// so they count in n, get sign(0) = +1 (bit 0) and add |0| = 0 to beta_1's sum.
//   * H_1 = sign(x) does not depend on the column, so every input pixel is packed once (pack_pixels: its C
//     sign bits, and sum_c |x_c| in double in channel order); a column's H_1 is then a gather of pixel
//     words (zero words for padding taps) and beta_1 = (sum over taps of the pixel sums, in tap order) / n,
//     a box sum. No float im2col is built.
//   * Orders k >= 2 threshold the residual against the column's own betas (a pixel gets different bits in
//     overlapping columns), so each column's passes k = 2..K read its taps in place from an NHWC float copy
//     of the input and recompute the residual chain per value (quantize_taps; order 2: the exact float32
//     pass quantize_taps2; order 3: quantize_taps2, then quantize_taps3's float32 thresholds, on every path).
//     Padding taps are nullptr: every value of such a tap has the same residual.
//     With the pixel image and whole words per tap (C a multiple of 64: image_columns), the copy has the
//     image's zero border instead, so padding taps are read like any other, H_1 comes from the image, and a
//     task's columns go to quantize_image in one call.
//     On the x86 paths a 3 x 3 window at stride 1 takes order 2 from per-pixel bands instead (band2_columns,
//     quantize.h Band2Row): each pixel compared once with its readers' least and greatest threshold.
//   * Optional input affine x * in_scale[c] + in_shift[c] (a folded BatchNorm), float32 multiply then add,
//     applied on the fly both where pixels are packed and where the NHWC copy is written, so H_1, beta_1
//     and the taps all see the same float values a separate affine step would produce.
// Paths with an outer-product GEMM (and the grouped layout) keep the packed pixels as a zero-bordered image
// the GEMM reads H_1 from (layer.h PixelImage); at order 1 nothing per column is stored at all.
// Every pixel is packed, also those a strided convolution's columns skip (a 1x1 stride-2 shortcut reads a quarter):
// packing checks each for NaN/Inf, so the outcome does not depend on the geometry, and on the AVX paths it costs
// less than copying out the pixels read and checking the rest apart (measured on ResNet-18's shortcuts). Rows that no
// column reads get no NHWC copy (row_read).
// Pixel rows and column blocks are independent tasks, so results do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/isa_local.h"
#include "core/layer.h"
#include "core/prefetch.h"
#include "core/quantize_walk.h"
#include "core/threadpool.h"

namespace horq {
namespace {

constexpr std::size_t kColsPerTask = 32;

// ORs the first `nbits` bits of src (whose bits beyond nbits are zero) into dst at bit offset `off`.
inline void or_bits(word_t* __restrict dst, std::size_t off, const word_t* __restrict src, std::size_t nbits) {
  for (std::size_t w = 0; w * kWordBits < nbits; ++w) {
    const std::size_t pos = off + w * kWordBits, sh = pos % kWordBits;
    const std::size_t len = nbits - w * kWordBits < kWordBits ? nbits - w * kWordBits : kWordBits;
    dst[pos / kWordBits] |= src[w] << sh;
    if (sh != 0 && sh + len > kWordBits) dst[pos / kWordBits + 1] |= src[w] >> (kWordBits - sh);
  }
}

// A column's grouped rows (per tap gw words holding its C channel bits, bits past C zero) into its compact rows
// (bit t * C + c of kwords words; layer.h), rows 0..order-1. When C divides 64 no tap's bits straddle a word, and
// each word is the OR of 64 / C taps' words, shifted into place (mnist-cnn's 32-channel layer: two taps per word);
// otherwise bit runs are ORed in (or_bits, into rows the caller zeroed).
void compact_column(word_t* out, std::size_t kwords, const word_t* grouped, std::size_t ld, std::size_t taps,
                    std::size_t C, std::size_t gw, std::size_t order) {
  if (gw == 1 && kWordBits % C == 0) {
    const std::size_t per = kWordBits / C;
    for (std::size_t k = 0; k < order; ++k) {
      const word_t* g = grouped + k * ld;
      word_t* o = out + k * kwords;
      for (std::size_t w = 0, t = 0; w < kwords; ++w) {
        word_t v = 0;
        for (std::size_t i = 0; i < per && t < taps; ++i, ++t) v |= g[t] << (i * C);
        o[w] = v;
      }
    }
    return;
  }
  for (std::size_t k = 0; k < order; ++k)
    for (std::size_t t = 0; t < taps; ++t) or_bits(out + k * kwords, t * C, grouped + k * ld + t * gw, C);
}

// The border of `count` planes of hp x wp values around their H x W inside at (ph, pw) set to zero: the part beside
// inside rows [y0, y1), and the rows above (y0 = 0) and below (y1 = H) the inside.
template <class T>
void zero_border(T* planes, std::size_t count, std::size_t hp, std::size_t wp, std::size_t ph, std::size_t pw,
                 std::size_t H, std::size_t W, std::size_t y0, std::size_t y1) {
  for (std::size_t i = 0; i < count; ++i) {
    T* p = planes + i * hp * wp;
    if (y0 == 0) std::fill_n(p, ph * wp, T{0});
    if (y1 == H) std::fill_n(p + (ph + H) * wp, (hp - ph - H) * wp, T{0});
    for (std::size_t y = ph + y0; y < ph + y1 && wp > W; ++y) {
      std::fill_n(p + y * wp, pw, T{0});
      std::fill_n(p + y * wp + pw + W, wp - pw - W, T{0});
    }
  }
}

// The border of images [img0, img1) of a pixel image (its words' planes and its sums) beside inside rows [y0, y1), and
// the rows above and below the inside with y0 = 0 and y1 = H (zero_border).
void zero_image_border(PixelImage& im, const ConvGeometry& g, std::size_t img0, std::size_t img1, std::size_t y0,
                       std::size_t y1) {
  const std::size_t plane = im.hp * im.wp;
  zero_border(im.words.data() + img0 * im.groups * plane, (img1 - img0) * im.groups, im.hp, im.wp, g.ph, g.pw,
              g.height, g.width, y0, y1);
  zero_border(im.sums.data() + img0 * plane, img1 - img0, im.hp, im.wp, g.ph, g.pw, g.height, g.width, y0, y1);
}

// The zero-bordered pixel image's geometry and the offsets of a column's words and sums in it. Only the border is
// zeroed here (with `zero`), on the calling thread; the pixel pass's tasks write the rest. Zeroing the whole image
// (lines the other core last read) was most of the serial time from a binary layer's call to its pixel pass at 2
// threads: 2.8-3.7 -> 1.6-1.8 us (a throwaway timing of ResNet-18 224x224's layers, docs/KERNELS.md round 24). Without
// `zero` the units of DeferredPixels zero the border beside their own rows: the lines stay with the thread that packs
// them instead of being taken over by the caller at every call.
void init_pixel_image(PixelImage& im, const ConvGeometry& g, bool zero) {
  const std::size_t gw = words_for(g.channels);
  im.hp = g.height + 2 * g.ph, im.wp = g.width + 2 * g.pw, im.groups = gw, im.out_w = g.out_w;
  im.ppi = g.out_h * g.out_w, im.sh = g.sh, im.sw = g.sw;
  im.words.resize(g.batch * gw * im.hp * im.wp);
  im.sums.resize(g.batch * im.hp * im.wp);
  if (zero) zero_image_border(im, g, 0, g.batch, 0, g.height);
  im.sum_off.reserve(g.kh * g.kw);
  im.word_off.reserve(g.kh * g.kw * gw);
  for (std::size_t i = 0; i < g.kh; ++i)
    for (std::size_t j = 0; j < g.kw; ++j) {
      const std::size_t tap_off = i * g.dh * im.wp + j * g.dw;
      im.sum_off.push_back(static_cast<std::int64_t>(tap_off));
      for (std::size_t w = 0; w < gw; ++w)
        im.word_off.push_back(static_cast<std::int64_t>(w * im.hp * im.wp + tap_off));
    }
}

// What the routes below ask of a layer's columns: their order and whether H_1 is read from a pixel image
// (QuantizedColumns::implicit_h1). conv_defers_pixels asks before any columns exist; the q overloads ask of q's.
struct ColumnKind {
  int order;
  bool implicit_h1;
};
ColumnKind kind_of(const QuantizedColumns& q) { return {q.order, q.implicit_h1}; }

// Whether orders >= 2 run on whole columns read from zero-bordered images (quantize_image): with the pixel image
// and whole words per tap. The NHWC copy then has the image's border.
bool image_columns(ColumnKind k, const ConvGeometry& g) {
  return k.implicit_h1 && k.order >= 2 && g.channels % kWordBits == 0;
}
bool image_columns(const QuantizedColumns& q, const ConvGeometry& g) { return image_columns(kind_of(q), g); }

// Output positions per image from which band2_route applies (per image, so that an image's columns take the same
// route, and give the same floats, in any batch). Its three stages are three jobs, and on small maps a pixel has
// fewer readers: 512ch 4x4 at 2 threads ran 0.087 -> 0.107 ms that way, 256ch 8x8 0.094 -> 0.097, 128ch 16x16
// level, 64ch 32x32 0.145 -> 0.138 (profile_conv_core C S 2, fastest calls; level at 1 thread below 32x32;
// docs/KERNELS.md round 31).
constexpr std::size_t kBand2MinColumns = 512;

// Whether the columns' order 2 comes from per-pixel bands (quantize.h Band2Row): on the image route, a 3 x 3 window
// at stride 1 and dilation 1 (each pixel read by up to 9 columns), where the path has the kernels.
bool band2_route(const KernelTable& kt, ColumnKind k, const ConvGeometry& g) {
  return kt.band2_pixels && image_columns(k, g) && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 &&
         g.dw == 1 && g.out_h * g.out_w >= kBand2MinColumns;
}
bool band2_route(const KernelTable& kt, const QuantizedColumns& q, const ConvGeometry& g) {
  return band2_route(kt, kind_of(q), g);
}

// Whether a layer's columns read H_1 from a pixel image (below).
bool pixel_image_route(const KernelTable& kt, const ConvGeometry& g) {
  return kt.gemm_task != nullptr && !conv_compact(g.channels, g.kh * g.kw);
}

// q's sizes and storage. Paths with an outer-product GEMM read H_1 (and at order 1 beta_1) from the pixel
// image instead of a gathered copy per column; the compact layout keeps the gather.
QuantizedColumns empty_columns(const KernelTable& kt, const ConvGeometry& g, int order, bool zero_border = true) {
  const std::size_t taps = g.kh * g.kw;
  QuantizedColumns q;
  q.ncols = g.batch * g.out_h * g.out_w;
  q.n = g.channels * taps;
  q.kw = conv_words(g.channels, taps);
  q.order = order;
  q.implicit_h1 = pixel_image_route(kt, g);
  if (image_columns(q, g)) {  // every beta and every word of the rows H_2.. written there; no rows of H_1
    q.h1_rows = false;
    q.word_major = order == 2 && band2_route(kt, q, g);
    q.ldw = q.word_major ? word_major_stride(q.ncols) : 0;
    q.bits.resize((q.word_major ? q.ldw : q.ncols) * (order - 1) * q.kw);
    q.betas.resize(q.ncols * order);
  } else if (!(q.implicit_h1 && order == 1)) {
    q.bits.assign(q.ncols * order * q.kw, 0);
    q.betas.assign(q.ncols * order, 0.0);
  }
  if (q.implicit_h1) init_pixel_image(q.image, g, zero_border);
  return q;
}

// What the pixel pass writes besides the image: the NHWC float copy (order >= 2) and, without an image,
// every pixel's gw words and sum.
struct PixelPlanes {
  bool copy = false;                // the pixel pass writes the NHWC copy (copies_nhwc, unless band2_from_input)
  std::unique_ptr<float[]> xt_buf;  // every value a column reads written by the pixel pass: not zeroed first
  // The copy's first float, on a cache line in xt_buf: with 64 channels or a multiple every pixel's values are whole
  // lines, which the passes' 64-byte loads then read one line each (64ch 56x56 order 3: 0.789 -> 0.780 ms, round 44).
  float* xt = nullptr;
  std::size_t img0 = 0;             // the image whose copy starts xt (the copy holds a chunk of the batch)
  std::vector<double> sums;
  std::vector<word_t> bits;
};

// Whether the column pass reads its taps from an NHWC float copy of the input (orders >= 2) rather than from
// the input itself (NHWC, no affine: already the copy, unless the copy needs the border).
bool copies_nhwc(ColumnKind k, const ConvGeometry& g, const float* in_scale) {
  return k.order >= 2 && (!(g.nhwc && in_scale == nullptr) || image_columns(k, g));
}
bool copies_nhwc(const QuantizedColumns& q, const ConvGeometry& g, const float* in_scale) {
  return copies_nhwc(kind_of(q), g, in_scale);
}

// Whether some column reads input row y: a strided convolution's taps may skip rows (a 1x1 stride-2 shortcut reads
// every other one), whose NHWC copy the pixel pass then leaves unwritten (the 64 -> 128 shortcut at 56x56, order 2:
// 0.128 -> 0.115 ms, 128 -> 256 at 28x28 0.066 -> 0.060; profile_conv_core on a Zen 4, docs/KERNELS.md round 35).
// Every row is still packed.
bool row_read(const ConvGeometry& g, std::size_t y) {
  for (std::size_t i = 0; i < g.kh; ++i) {
    const long t = static_cast<long>(y + g.ph) - static_cast<long>(i * g.dh);
    if (t >= 0 && t % static_cast<long>(g.sh) == 0 && t / static_cast<long>(g.sh) < static_cast<long>(g.out_h))
      return true;
  }
  return false;
}

// Row y of image img in the NHWC float copy: inside the image's zero border (image_columns) or packed.
float* nhwc_row(const QuantizedColumns& q, const ConvGeometry& g, PixelPlanes& pp, std::size_t img, std::size_t y) {
  const PixelImage& im = q.image;
  img -= pp.img0;
  return image_columns(q, g) ? pp.xt + ((img * im.hp + y + g.ph) * im.wp + g.pw) * g.channels
                             : pp.xt + (img * g.height + y) * g.width * g.channels;
}

// The border of `count` images of an NHWC copy with the pixel image's border (image_columns; C floats a pixel) from
// image img of the copy on, beside inside rows [y0, y1) (zero_border).
void zero_copy_border(float* xt, std::size_t count, const PixelImage& im, const ConvGeometry& g, std::size_t img,
                      std::size_t y0, std::size_t y1) {
  const std::size_t C = g.channels;
  zero_border(xt + img * im.hp * im.wp * C, count, im.hp, im.wp * C, g.ph, g.pw * C, g.height, g.width * C, y0, y1);
}

// Image row t (image t / H, row t % H) at src, its channels cstride floats apart (an NCHW image, or an NHWC one
// transposed to channel planes): its pixels' H_1 words and sums, 64 channels per pack_pixels call, into the
// pixel image or the planes, and its NHWC copy for order >= 2. Returns nonzero on NaN or Inf.
std::uint32_t pack_input_row(const KernelTable& kt, const float* src, std::size_t cstride, const ConvGeometry& g,
                             const float* in_scale, const float* in_shift, std::size_t t, QuantizedColumns& q,
                             PixelPlanes& pp) {
  const std::size_t C = g.channels, H = g.height, W = g.width, gw = words_for(C);
  const std::size_t img = t / H, y = t % H;
  PixelImage& im = q.image;
  const bool implicit = q.implicit_h1, copy = pp.copy;
  float* xrow = copy ? nhwc_row(q, g, pp, img, y) : nullptr;
  double* psum = implicit ? im.sums.data() + (img * im.hp + y + g.ph) * im.wp + g.pw : pp.sums.data() + t * W;
  std::fill_n(psum, W, 0.0);  // pack_pixels adds each channel group's share
  std::uint32_t bad = 0;
  for (std::size_t c0 = 0; c0 < C; c0 += kWordBits) {
    const std::size_t c1 = std::min(C, c0 + kWordBits), gi = c0 / kWordBits;
    const float* scale = in_scale ? in_scale + c0 : nullptr;
    const float* shift = in_scale ? in_shift + c0 : nullptr;
    const float* rows = src + c0 * cstride;
    if (implicit) {
      word_t* words = im.words.data() + ((img * gw + gi) * im.hp + y + g.ph) * im.wp + g.pw;
      bad |= kt.pack_pixels(rows, cstride, c1 - c0, W, words, 1, psum, scale, shift);
    } else {
      bad |= kt.pack_pixels(rows, cstride, c1 - c0, W, pp.bits.data() + t * W * gw + gi, gw, psum, scale, shift);
    }
    if (copy && row_read(g, y)) kt.to_nhwc(rows, cstride, c1 - c0, W, scale, shift, xrow + c0, C);
  }
  return bad;
}

// Rows [y0, y1) of image img as channel planes at src (NCHW, or an NHWC image transposed to planes), plane by
// plane: its pixels' H_1 words and sums as pack_input_row gives them row by row, but each 64-channel group in one
// pack_pixels call over the band (W' = (y1 - y0) * W pixels, contiguous in each plane: the kernels read a long
// stretch channel by channel, one sequential stream each), into the per-pixel words and sums, or into a buffer
// whose rows then go into the zero-bordered pixel image, and each group's part of the NHWC copy (order >= 2) row
// by row from the planes just read. The same words, sums and copy.
std::uint32_t pack_input_band(const KernelTable& kt, const float* src, const ConvGeometry& g, const float* in_scale,
                              const float* in_shift, std::size_t img, std::size_t y0, std::size_t y1,
                              QuantizedColumns& q, PixelPlanes& pp) {
  const std::size_t C = g.channels, H = g.height, W = g.width, P = H * W, gw = words_for(C);
  const std::size_t B = (y1 - y0) * W, p0 = img * P + y0 * W;  // the band's pixels, its first one in the batch
  PixelImage& im = q.image;
  const bool implicit = q.implicit_h1, copy = pp.copy;
  thread_local std::vector<word_t> words;
  thread_local std::vector<double> sums;
  if (implicit) {
    words.resize(B);
    sums.assign(B, 0.0);
  } else {
    std::fill_n(pp.sums.data() + p0, B, 0.0);
  }
  double* psum = implicit ? sums.data() : pp.sums.data() + p0;
  std::uint32_t bad = 0;
  for (std::size_t c0 = 0; c0 < C; c0 += kWordBits) {
    const std::size_t c1 = std::min(C, c0 + kWordBits), gi = c0 / kWordBits;
    const float* scale = in_scale ? in_scale + c0 : nullptr;
    const float* shift = in_scale ? in_shift + c0 : nullptr;
    const float* band = src + c0 * P + y0 * W;
    if (implicit) {
      bad |= kt.pack_pixels(band, P, c1 - c0, B, words.data(), 1, psum, scale, shift);
      for (std::size_t y = y0; y < y1; ++y)
        std::copy_n(words.data() + (y - y0) * W, W,
                    im.words.data() + ((img * gw + gi) * im.hp + y + g.ph) * im.wp + g.pw);
    } else {
      bad |= kt.pack_pixels(band, P, c1 - c0, B, pp.bits.data() + p0 * gw + gi, gw, psum, scale, shift);
    }
    if (copy)  // the group's planes, just read
      for (std::size_t y = y0; y < y1; ++y)
        if (row_read(g, y))
          kt.to_nhwc(src + c0 * P + y * W, P, c1 - c0, W, scale, shift, nhwc_row(q, g, pp, img, y) + c0, C);
  }
  if (implicit)
    for (std::size_t y = y0; y < y1; ++y)
      std::copy_n(sums.data() + (y - y0) * W, W, im.sums.data() + (img * im.hp + y + g.ph) * im.wp + g.pw);
  return bad;
}

// Images per thread from which an NCHW input is packed image by image (pack_input_band) rather than row by row
// (each thread then still has several tasks).
constexpr std::size_t kImagesPerThread = 4;

// Fewer images with rows at least this wide are packed plane by plane too (one sequential stream per channel instead of
// a row's C short ones): whole images on one thread, else bands of rows, kBandsPerThread per thread. Narrower maps stay
// row by row, as fast or faster there (AVX2 path, AMD EPYC Zen 3, docs/KERNELS.md round 13; 1 thread: 64ch 56x56 0.497
// -> 0.475 ms, 64ch 32x32 0.164 -> 0.153, 1x1 256ch 28x28 0.333 -> 0.311, and with rows of 7-16 pixels slower (a build
// not kept): 512ch 7x7, 256ch 14x14, 128ch 16x16; 2 threads, bands: 64ch 56x56 0.258 -> 0.252, 64ch 32x32 0.092 ->
// 0.088, 128ch 28x28 0.206 -> 0.198).
constexpr std::size_t kPlaneRowsMinWidth = 24;
constexpr std::size_t kBandsPerThread = 2;

// Maps of at most this many pixels (8x8, 7x7, 4x4) are packed plane by plane too, whatever their width: a whole plane
// is one block of the pixel pass (up to 64 pixels in registers), so each channel is one load and the C double adds of
// a pixel's sum run as one chain per vector instead of one per image row, which the row-by-row pass waited on (1
// thread, avx512, AMD EPYC Zen 4, profile_conv_core: 512ch 4x4 0.038 -> 0.034 ms, 256ch 8x8 0.039 -> 0.036, the 1x1
// stride-2 shortcut of 256ch 8x8 0.009 -> 0.006, 512ch 7x7 0.125 -> 0.121; the avx2 path on the same CPU likewise;
// docs/KERNELS.md round 38). Wider maps with rows under kPlaneRowsMinWidth (14x14, 16x16) stay row by row: plane by
// plane they were level when cached and slower after a cache flush there.
constexpr std::size_t kPlanePixels = 64;

// A small map's bands (with fewer images than threads): one per thread, each at least this many pixels. Narrower bands
// leave each channel's load a few pixels wide: 512ch 4x4's input quantization took 0.0045 ms at 2 threads in 4 bands of
// a row, 0.0018 at 1 thread in one, 0.0030 in 2 bands against 0.0027 on one thread of two (docs/KERNELS.md rounds 39
// and 40); 2 bands against one: 256ch 8x8 0.0039 -> 0.0030 ms, 512ch 7x7 0.0069 -> 0.0049 (profile_conv_core, 2
// threads, order 1, avx512, AMD EPYC Zen 4).
constexpr std::size_t kSmallBand = 16;

// Whether a map is small enough to be one block of the pixel pass (see above).
bool small_map(const ConvGeometry& g) { return g.height * g.width <= kPlanePixels; }

// True where pack_input packs an NCHW image plane by plane even when there are few images (see above).
bool packs_planes(const ConvGeometry& g) { return g.width >= kPlaneRowsMinWidth || small_map(g); }

// An NCHW image row's C channel segments (W floats each, cstride apart) requested into the cache ahead of its pack, on
// the row-by-row path (batches too small for pack_input_band's images, rows too narrow for its bands): one row of a
// channel is one or two cache lines of a different plane per channel, a pattern the hardware prefetchers do not follow
// when rows are short. Measured when every NCHW batch went row by row (64 x 32 x 14 x 14 on an AMD EPYC Zen 3,
// profile_conv_core 32 14 1 2 64: the pixel pass waited on its loads, 33% -> 10% of the layer's samples, its fastest
// call 2.07-2.45 -> 1.95-1.97 ms); such a batch now goes plane by plane.
constexpr std::size_t kPackAhead = 2;

// Every pixel of x packed (and copied): one task per image of an NHWC input, which is first transposed to channel
// planes (in cache for the maps binary layers see; a row alone is often narrower than the transpose's 16-pixel
// blocks), then packed plane by plane (pack_input_band over all its rows); the same per image of an NCHW input with
// at least kImagesPerThread images per thread, or where packs_planes on one thread; else, where packs_planes, bands
// of rows plane by plane, kBandsPerThread per thread (a small_map's one per thread, of kSmallBand pixels or more);
// else one task per image row
// (pack_input_row). Every way gives the same words, sums and copy. Throws on NaN or Inf.
PixelPlanes pixel_planes(const ConvGeometry& g, const QuantizedColumns& q, std::size_t chunk, bool copy) {
  const std::size_t C = g.channels, npix = g.batch * g.height * g.width;
  PixelPlanes pp;
  pp.copy = copy;
  if (copy) {  // an image's copy: zero-bordered (image_columns) or its pixels alone
    const std::size_t n = chunk * (image_columns(q, g) ? q.image.hp * q.image.wp : g.height * g.width) * C;
    pp.xt_buf.reset(new float[n + kLineFloats]);
    pp.xt = line_start(pp.xt_buf.get());
  }
  pp.sums.resize(q.implicit_h1 ? 0 : npix);
  pp.bits.resize(q.implicit_h1 ? 0 : npix * words_for(C));
  return pp;
}

// How pack_input cuts an NCHW batch into tasks: per image `bands` bands of `rows` rows, plane by plane
// (pack_input_band), or with by_row one task per image row (pack_input_row). See pixel_planes.
struct PixelUnits {
  std::size_t rows, bands;
  bool by_row;
};

PixelUnits pixel_units(const ConvGeometry& g, std::size_t batch, std::size_t threads) {
  const std::size_t H = g.height;
  if (batch >= kImagesPerThread * threads || packs_planes(g)) {
    // Whole images (enough of them, or one thread), else bands of rows: about kBandsPerThread per thread, a small map's
    // one per thread of at least kSmallBand pixels.
    const bool whole = batch >= kImagesPerThread * threads || threads == 1, small = small_map(g);
    std::size_t per = whole ? 1 : std::min(H, ceil_div((small ? 1 : kBandsPerThread) * threads, batch));  // per image
    if (small) per = std::max<std::size_t>(1, std::min(per, g.height * g.width / kSmallBand));
    const std::size_t rows = ceil_div(H, per);  // rows per band
    return {rows, ceil_div(H, rows), false};
  }
  return {1, H, true};
}

// Task t of pixel_units' cut of images [i0, i1) of an NCHW x: band t % bands of image i0 + t / bands (a row ahead
// requested into the cache on the row-by-row path). Returns nonzero on NaN or Inf.
std::uint32_t pack_unit(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* in_scale,
                        const float* in_shift, QuantizedColumns& q, PixelPlanes& pp, const PixelUnits& u,
                        std::size_t i0, std::size_t i1, std::size_t t) {
  const std::size_t C = g.channels, H = g.height, W = g.width, plane = H * W;
  if (u.by_row) {
    const std::size_t r = i0 * H + t, r1 = i1 * H;
    const auto row_at = [&](std::size_t i) { return x + (i / H) * C * plane + (i % H) * W; };
    if (r + kPackAhead < r1) prefetch_rows(row_at(r + kPackAhead), plane, C, W);
    return pack_input_row(kt, row_at(r), plane, g, in_scale, in_shift, r, q, pp);
  }
  const std::size_t img = i0 + t / u.bands, y0 = t % u.bands * u.rows;
  return pack_input_band(kt, x + img * C * plane, g, in_scale, in_shift, img, y0, std::min(H, y0 + u.rows), q, pp);
}

void pack_input(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* in_scale,
                const float* in_shift, QuantizedColumns& q, PixelPlanes& pp, std::size_t i0, std::size_t i1) {
  const std::size_t C = g.channels, H = g.height, W = g.width, plane = H * W, batch = i1 - i0;
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  // Zero-bordered: the border zeroed here, the rest written by the pixel pass (the chunk's images, from the copy's
  // start).
  if (pp.copy && image_columns(q, g)) zero_copy_border(pp.xt, batch, q.image, g, 0, 0, H);
  std::atomic<bool> finite{true};
  if (g.nhwc) {
    parallel_for(batch, [&](std::size_t t) {
      const std::size_t img = i0 + t;
      thread_local std::vector<float> planes;
      if (planes.size() < C * plane) planes.resize(C * plane);
      kt.to_nhwc(x + img * plane * C, C, plane, C, nullptr, nullptr, planes.data(), plane);  // (HW x C) -> (C x HW)
      if (pack_input_band(kt, planes.data(), g, in_scale, in_shift, img, 0, H, q, pp)) finite.store(false);
    });
  } else {
    const PixelUnits units = pixel_units(g, batch, threads);
    parallel_for(batch * units.bands, [&](std::size_t t) {
      if (pack_unit(kt, x, g, in_scale, in_shift, q, pp, units, i0, i1, t)) finite.store(false);
    });
  }
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");
}

// What the column pass reads, fixed for the call. Each task works on a local copy: word_t and size_t are
// both unsigned long, so the stores of bits could otherwise alias any size read through a pointer, and the
// compiler would reload them per tap.
struct ColumnSource {
  ConvGeometry g;
  std::size_t taps, gw, kwords, ppi, imhp, imwp;
  int order;
  bool compact, implicit;
  bool taps3;  // order 3 by quantize_taps2 + quantize_taps3 (the path has it)
  double n;
  const word_t* pix_bits;   // per pixel gw words (no image)
  const word_t* img_words;  // the image's words (with an image)
  const double* sums;       // pixel sums: the image's, or per pixel
  const float* xt;          // the NHWC copy (order >= 2): of images img0.. (a chunk of the batch), or the input;
                            // nullptr where band2_from_input (no copy, and no reader)
  std::size_t img0;
  const std::int64_t* x_off;  // with image_columns: per tap, its offset in that copy (floats)
};

// The column pass's source for q's columns: H_1 and the pixel sums from q's image or the per-pixel planes pp, the taps
// from xt (from image 0 on). On the image route x_off gets the taps' offsets in the bordered NHWC copy, which the
// source points at (x_off must outlive it and stay as it is).
ColumnSource column_source(const KernelTable& kt, const ConvGeometry& g, const QuantizedColumns& q,
                           const PixelPlanes& pp, const float* xt, std::vector<std::int64_t>& x_off) {
  x_off.clear();
  if (image_columns(q, g))
    for (const std::int64_t off : q.image.sum_off) x_off.push_back(off * static_cast<std::int64_t>(g.channels));
  const std::size_t taps = g.kh * g.kw;
  return ColumnSource{g, taps, words_for(g.channels), q.kw, g.out_h * g.out_w, q.image.hp, q.image.wp, q.order,
                      conv_compact(g.channels, taps), q.implicit_h1, q.order == 3 && kt.quantize_taps3,
                      static_cast<double>(q.n), pp.bits.data(), q.image.words.data(),
                      q.implicit_h1 ? q.image.sums.data() : pp.sums.data(), xt, 0, x_off.data()};
}

// Column (img, oy, ox): tap t's pointer into the NHWC copy in tp[t] (nullptr for a padding tap, or at order
// 1), H_1's words gathered into `bits` (from the image only at order 2, whose pass reads them; padding taps stay
// zero), and the sum of the taps' pixel sums in tap order (beta_1 * n) returned.
[[gnu::always_inline]] inline double gather_column(const ColumnSource& s, std::size_t img, std::size_t oy,
                                                   std::size_t ox, word_t* bits, const float** tp) {
  const ConvGeometry& g = s.g;
  const long H = static_cast<long>(g.height), W = static_cast<long>(g.width);
  const long iy0 = static_cast<long>(oy * g.sh) - static_cast<long>(g.ph);
  const long ix0 = static_cast<long>(ox * g.sw) - static_cast<long>(g.pw);
  double sum = 0.0;
  std::size_t tap = 0;
  for (std::size_t i = 0; i < g.kh; ++i) {
    const long iy = iy0 + static_cast<long>(i * g.dh);
    const bool row_in = iy >= 0 && iy < H;
    const std::size_t row = (img * g.height + static_cast<std::size_t>(row_in ? iy : 0)) * g.width;
    for (std::size_t j = 0; j < g.kw; ++j, ++tap) {
      const long ix = ix0 + static_cast<long>(j * g.dw);
      if (!row_in || ix < 0 || ix >= W) {
        tp[tap] = nullptr;
        continue;  // padding: H_1 words stay 0, adds 0 to the sum
      }
      const std::size_t up = row + static_cast<std::size_t>(ix);
      if (s.implicit) {
        const std::size_t py = static_cast<std::size_t>(iy) + g.ph, px = static_cast<std::size_t>(ix) + g.pw;
        sum += s.sums[(img * s.imhp + py) * s.imwp + px];
        // The GEMM reads H_1 from the image; order 2's pass reads it here (quantize_taps2: H_2 = H_1 ^ L), also
        // where order 3 starts with it (quantize_column_block).
        if (s.order == 2 || s.taps3)
          for (std::size_t w = 0; w < s.gw; ++w)
            bits[tap * s.gw + w] = s.img_words[((img * s.gw + w) * s.imhp + py) * s.imwp + px];
      } else {
        if (s.gw == 1) {
          bits[tap] = s.pix_bits[up];
        } else {
          for (std::size_t w = 0; w < s.gw; ++w) bits[tap * s.gw + w] = s.pix_bits[up * s.gw + w];
        }
        sum += s.sums[up];
      }
      tp[tap] = s.order >= 2 ? s.xt + (up - s.img0 * g.height * g.width) * g.channels : nullptr;
    }
  }
  return sum;
}

// Order 1 in the compact layout with C dividing 64 (mnist-cnn's 32-channel layer): tap t's C bits go straight to
// bits t * C of the column's row, each word the OR of 64 / C taps' pixel words shifted into place, and beta_1 is
// the taps' pixel sums added in tap order, padding taps skipped: what gather_column and compact_column give,
// without the grouped copy. A column whose taps all lie inside the image (most of them) takes no bounds test.
void compact_order1_columns(const ColumnSource& s, QuantizedColumns& q, std::size_t col0, std::size_t col1) {
  const ConvGeometry& g = s.g;
  const std::size_t C = g.channels, per = kWordBits / C, kwords = s.kwords;
  const long H = static_cast<long>(g.height), W = static_cast<long>(g.width);
  const long ylast = static_cast<long>((g.kh - 1) * g.dh), xlast = static_cast<long>((g.kw - 1) * g.dw);
  ColumnCursor at(s.ppi, g.out_w, col0);
  for (std::size_t col = col0; col < col1; ++col, at.next()) {
    const long iy0 = static_cast<long>(at.oy * g.sh) - static_cast<long>(g.ph);
    const long ix0 = static_cast<long>(at.ox * g.sw) - static_cast<long>(g.pw);
    const bool inside = iy0 >= 0 && iy0 + ylast < H && ix0 >= 0 && ix0 + xlast < W;
    word_t* out = q.bits.data() + col * kwords;
    const std::size_t img0 = at.img * g.height;
    double sum = 0.0;
    word_t v = 0;
    std::size_t tap = 0, w = 0;
    for (std::size_t i = 0; i < g.kh; ++i) {
      const long iy = iy0 + static_cast<long>(i * g.dh);
      for (std::size_t j = 0; j < g.kw; ++j, ++tap) {
        const long ix = ix0 + static_cast<long>(j * g.dw);
        if (inside || (iy >= 0 && iy < H && ix >= 0 && ix < W)) {
          const std::size_t up = (img0 + static_cast<std::size_t>(iy)) * g.width + static_cast<std::size_t>(ix);
          v |= s.pix_bits[up] << (tap % per * C);
          sum += s.sums[up];
        }
        if (tap % per == per - 1) out[w++] = v, v = 0;
      }
    }
    if (w < kwords) out[w] = v;  // the last, partly filled word
    q.betas[col] = sum / s.n;
  }
}

// The image as the columns of the chunk whose copy starts s.xt read it (quantize_image, band2_columns): pixel and word
// indices count from the chunk's first image, s.img0, as the copy's do.
ImageColumns chunk_image(const ColumnSource& s, const PixelImage& im) {
  const std::size_t pix0 = s.img0 * s.imhp * s.imwp;
  return {s.xt,    im.words.data() + pix0 * s.gw, im.sums.data() + pix0, im.sum_off.data(),
          s.x_off, im.word_off.data(),            s.taps,                s.g.channels,
          s.n};
}

// Columns [col0, col1)'s first pixel sum and word in chunk_image's indices: along an output row both step by the
// stride, so a cursor is placed once per row (through next() per column, with its products: 64ch 56x56 order 2's input
// quantization 0.1725 -> 0.167 ms, profile_conv_core on a Zen 4, docs/KERNELS.md round 35).
void chunk_cursors(const ColumnSource& s, const PixelImage& im, std::size_t col0, std::size_t col1, std::int64_t* pix,
                   std::int64_t* word) {
  const std::int64_t step = static_cast<std::int64_t>(im.sw);
  for (std::size_t col = col0; col < col1;) {
    const PixelCursor at(im, col - s.img0 * s.ppi);
    const std::size_t run = std::min(col1 - col, at.out_w - at.ox);
    const std::int64_t p = at.sum(), w = at.word();
    for (std::size_t i = 0; i < run; ++i) {
      pix[col - col0 + i] = p + static_cast<std::int64_t>(i) * step;
      word[col - col0 + i] = w + static_cast<std::int64_t>(i) * step;
    }
    col += run;
  }
}

// Columns [col0, col1): per column beta_1 and H_1 (gather_column), orders >= 2 from the taps, and in the
// compact layout the grouped planes (built in a scratch buffer) shifted into the column's rows.
void quantize_column_block(const KernelTable& kt, const ColumnSource& source, QuantizedColumns& q, std::size_t col0,
                           std::size_t col1) {
  const ColumnSource s = source;
  thread_local std::vector<const float*> tap_ptrs;
  if (tap_ptrs.size() < s.taps) tap_ptrs.resize(s.taps);
  const float** tp = tap_ptrs.data();
  thread_local std::vector<word_t> grouped;
  const std::size_t glen = s.taps * s.gw, order = static_cast<std::size_t>(s.order);
  if (s.compact && grouped.size() < order * glen) grouped.resize(order * glen);
  if (image_columns(q, s.g)) {  // orders >= 2 from the zero-bordered images, the block's columns in one call
    std::int64_t pix[kColsPerTask], word[kColsPerTask];
    chunk_cursors(s, q.image, col0, col1, pix, word);
    kt.quantize_image(chunk_image(s, q.image), pix, word, col1 - col0, s.order,
                      q.bits.data() + col0 * (order - 1) * s.kwords, (order - 1) * s.kwords,
                      q.betas.data() + col0 * order);
    return;
  }
  if (s.compact && s.order == 1 && s.gw == 1 && kWordBits % s.g.channels == 0) {
    compact_order1_columns(s, q, col0, col1);
    return;
  }
  ColumnCursor at(s.ppi, s.g.out_w, col0);
  for (std::size_t col = col0; col < col1; ++col, at.next()) {
    word_t* const out_bits = q.bits.data() + col * order * s.kwords;
    word_t* bits = s.compact ? grouped.data() : out_bits;
    const std::size_t ld = s.compact ? glen : s.kwords;
    if (s.compact) std::fill_n(bits, glen, word_t{0});  // row 0 (H_1): padding taps stay zero
    double* betas = q.betas.data() + col * order;
    betas[0] = gather_column(s, at.img, at.oy, at.ox, bits, tp) / s.n;
    if (s.order == 2) {
      kt.quantize_taps2(tp, s.taps, s.g.channels, bits, ld, betas);
    } else if (s.taps3) {  // order 3: the float32 passes, or the chain where the thresholds do not apply
      kt.quantize_taps2(tp, s.taps, s.g.channels, bits, ld, betas);
      if (!kt.quantize_taps3(tp, s.taps, s.g.channels, bits, ld, betas))
        kt.quantize_taps(tp, s.taps, s.g.channels, s.order, bits, ld, betas);
    } else if (s.order > 2) {
      kt.quantize_taps(tp, s.taps, s.g.channels, s.order, bits, ld, betas);
    }
    if (s.compact) compact_column(out_bits, s.kwords, bits, ld, s.taps, s.g.channels, s.gw, order);
  }
}

// Columns per band2_columns call of band2_columns' last stage (the cursors on the stack).
constexpr std::size_t kBand2ColsPerTask = 128;

// Whether band2_columns reads its pixel rows from the input (NCHW) rather than from the NHWC copy: at order 2 the
// copy has no other reader (band2_columns_fn reads the copy from order 3 on), so the pixel pass writes none, and
// band2_pixels_nchw reads each padded row's channel rows where they lie, 16 (avx512) or 8 (avx2) pixels in its lanes,
// the same slots bit for bit (the 64ch 56x56 copy was 0.86 MB written and read back). Round 35 of docs/KERNELS.md
// transposed each row into a buffer of the task's thread instead: alone level (64ch 56x56 0.470 ms, 128ch 28x28 0.319,
// profile_conv_core on a Zen 4); inside ResNet-18 224x224 at order 2 its four 64ch layers 2.21 -> 2.12 ms
// (Model.profile, medians of 6 runs alternating the two builds, a throwaway script), where the maps around them no
// longer get evicted. Without the transposes (rounds 36 and 46): avx512 64ch 56x56 order 2's input quantization 0.162
// -> 0.152 ms, 128ch 28x28 0.075 -> 0.069 (profile_conv_core on a Zen 4); avx2 see round 46.
bool band2_from_input(const KernelTable& kt, const QuantizedColumns& q, const ConvGeometry& g) {
  return band2_route(kt, q, g) && q.order == 2 && !g.nhwc && kt.band2_pixels_nchw != nullptr;
}

// Output rows whose columns band2_columns takes from one buffer of their pixels' slots (kBand2Rows + 2 pixel rows).
constexpr std::size_t kBand2Rows = 8;

// Every column's beta_1 (the box sum, as image_walk computes it) and thresholds into the grids of quantize.h, then per
// task a band of an image's output rows, kBand2Rows at a time: the slots of the padded pixel rows they read
// (band2_pixels, or band2_pixels_nchw from x) into a buffer of the task's thread, then their columns from it
// (band2_columns). The next rows' first two pixel rows are the last two of the buffer, moved to its front; a band's
// first two are computed by its own task (the rows above belong to another band). The slots of 58 x 58 pixels of 64
// channels were 0.65 MB written and read back through memory; the buffer stays in cache. A pixel row's slots are the
// same whichever task computes them, and each stage of a band reads only what the one before wrote, so no result
// depends on the tasks or threads. Bands per image: one where the images share out evenly among the threads, else
// two (3 images at 2 threads: 6 tasks), or with fewer images than threads that many.
// x: the input, where the rows come from it (band2_from_input), else nullptr (from the NHWC copy).
void band2_columns(const KernelTable& kt, const ColumnSource& s, QuantizedColumns& q, std::size_t i0, std::size_t i1,
                   const float* x, const float* in_scale, const float* in_shift) {
  const ConvGeometry& g = s.g;
  const PixelImage& im = q.image;
  const std::size_t C = g.channels, gw = C / kWordBits, order = static_cast<std::size_t>(s.order);
  const std::size_t oh = g.out_h, ow = g.out_w, hp = im.hp, wp = im.wp, gs = ow + 5, grid = (oh + 4) * gs;
  const std::size_t batch = i1 - i0;
  thread_local std::vector<float, UninitAllocator<float>> pos_buf, neg_buf;
  pos_buf.assign(batch * grid, std::numeric_limits<float>::infinity());
  neg_buf.assign(batch * grid, -std::numeric_limits<float>::infinity());
  float* const pos = pos_buf.data();
  float* const neg = neg_buf.data();
  std::atomic<bool> exact{false};
  std::int64_t off[9];
  std::copy_n(im.sum_off.data(), 9, off);
  parallel_for(batch * oh, [&](std::size_t t) {
    const std::size_t img = t / oh, oy = t % oh;  // img: in the chunk
    const std::int64_t at = static_cast<std::int64_t>(((i0 + img) * hp + oy) * wp);
    const std::size_t cell = img * grid + (oy + 2) * gs + 2;
    double* betas = q.betas.data() + ((i0 * oh + t) * ow) * order;
    const bool any = kt.band2_thresholds(im.sums.data() + at, off, ow, s.n, order, betas, pos + cell, neg + cell);
    if (any) exact.store(true, std::memory_order_relaxed);
  });
  const bool any_exact = exact.load();
  const std::vector<float> zero_pixel(x ? C : 0, 0.0f);  // band2_from_input: the border's pixels
  const std::size_t row_words = wp * gw * kBand2Slots, row_sums = wp * kBand2Slots;
  // padded pixel row py of image img (in the chunk): its slots at l, sb
  const auto pixel_row = [&](std::size_t img, std::size_t py, word_t* l, double* sb) {
    Band2Row r{};
    r.C = C, r.wp = wp;
    for (std::size_t k = 0; k < 3; ++k) {
      r.pos[k] = pos + img * grid + (py + 2 - k) * gs;
      r.neg[k] = neg + img * grid + (py + 2 - k) * gs;
    }
    r.exact = any_exact;
    r.l = l, r.sb = sb;
    if (x) {  // the row's channels read where they lie (a border row: its zero pixels alone)
      const bool inside = py >= g.ph && py < g.ph + g.height;
      r.x = zero_pixel.data();
      r.src = inside ? x + ((i0 + img) * C * g.height + py - g.ph) * g.width : nullptr;
      r.cstride = g.height * g.width, r.x0 = g.pw, r.n = inside ? g.width : 0;
      r.scale = in_scale, r.shift = in_shift;
      kt.band2_pixels_nchw(r);
      return;
    }
    r.x = s.xt + (img * hp + py) * wp * C;
    kt.band2_pixels(r);
  };
  const ImageColumns ic = chunk_image(s, im);  // pixel indices from the chunk's first image (s.img0 is i0 here)
  // From a column's H_2 to the next column's: the image route's rows of H_2 on, or at order 2 one word (word_major)
  const std::size_t ldcol = q.word_major ? 1 : (order - 1) * s.kwords;
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t bands = batch < threads ? ceil_div(threads, batch) : batch % threads == 0 ? 1 : 2;
  const std::size_t band_rows = ceil_div(oh, bands);
  parallel_for(batch * bands, [&](std::size_t t) {
    const std::size_t img = t / bands, y0 = t % bands * band_rows, y1 = std::min(oh, y0 + band_rows);
    thread_local std::vector<word_t, UninitAllocator<word_t>> l_buf;
    thread_local std::vector<double, UninitAllocator<double>> sb_buf;
    l_buf.resize((kBand2Rows + 2) * row_words);
    sb_buf.resize((kBand2Rows + 2) * row_sums);
    word_t* const l = l_buf.data();
    double* const sb = sb_buf.data();
    for (std::size_t oy = y0; oy < y1; oy += kBand2Rows) {
      const std::size_t rows = std::min(kBand2Rows, y1 - oy);  // output rows oy .. oy + rows - 1: pixel rows + 2
      std::size_t have = 0;
      if (oy > y0) {  // pixel rows oy, oy + 1: the buffer's last two
        std::copy_n(l + kBand2Rows * row_words, 2 * row_words, l);
        std::copy_n(sb + kBand2Rows * row_sums, 2 * row_sums, sb);
        have = 2;
      }
      for (std::size_t r = have; r < rows + 2; ++r) pixel_row(img, oy + r, l + r * row_words, sb + r * row_sums);
      const std::int64_t lbase = static_cast<std::int64_t>((img * hp + oy) * wp);
      const std::size_t c0 = (i0 + img) * im.ppi + oy * ow, c1 = c0 + rows * ow;
      for (std::size_t col0 = c0; col0 < c1; col0 += kBand2ColsPerTask) {
        const std::size_t col1 = std::min(c1, col0 + kBand2ColsPerTask);
        std::int64_t pix[kBand2ColsPerTask], word[kBand2ColsPerTask];
        chunk_cursors(s, im, col0, col1, pix, word);
        kt.band2_columns(ic, l, sb, lbase, pix, word, col1 - col0, s.order, q.bits.data() + col0 * ldcol, ldcol,
                         q.word_stride(), q.betas.data() + col0 * order);
      }
    }
  });
}

// A layer's input quantization run inside its GEMM's job (conv_layer): at order 1 the pixel pass (pixel_units' tasks),
// at orders >= 2 on the image route (image_columns, not band2_route) also the column blocks (kColsPerTask columns,
// quantize_column_block, which read the pixel rows of their windows: the image and the NHWC copy). These are tasks
// around the GEMM's (outer_gemm: the first half before them, the rest after), and a GEMM task first makes sure of what
// its columns read (`ready`): a unit or block nobody has claimed it runs itself, one another thread is running it waits
// for; a column block likewise makes sure of its pixel units first. Pixel units wait for nothing, column blocks only
// for pixel units, GEMM tasks for both, so nothing waits in a circle. At 2 threads the caller packs and quantizes the
// first half of the map and multiplies from the first column block, a helper (from the back) the second half from the
// last, so neither waits at the end of a pixel or column job nor for the hand-over of the next. Every unit and block
// runs exactly once, as quantize_conv_columns runs it, so the words, sums, columns and outputs are the same.
class DeferredPixels final : public GemmPrelude {
 public:
  DeferredPixels(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* in_scale,
                 const float* in_shift, QuantizedColumns& q)
      : kt_(kt), x_(x), g_(g), in_scale_(in_scale), in_shift_(in_shift), q_(q),
        units_(pixel_units(g, g.batch, static_cast<std::size_t>(get_num_threads()))),
        pixels_(g.batch * units_.bands), blocks_(q.order >= 2 ? ceil_div(q.ncols, kColsPerTask) : 0),
        state_(new State[pixels_ + blocks_]) {
    for (std::size_t u = 0; u < pixels_ + blocks_; ++u) state_[u].store(kFree, std::memory_order_relaxed);
    if (blocks_ == 0) return;
    pp_ = pixel_planes(g, q, g.batch, true);  // the NHWC copy with the image's border, which the units zero
    source_ = column_source(kt, g, q, pp_, pp_.xt, x_off_);
  }
  // Tasks: the first half of the pixel units, then the first half of the column blocks; the second half of the
  // blocks, then the second half of the units (outer_gemm puts the GEMM's tasks between the two halves).
  std::size_t units() const override { return pixels_ + blocks_; }
  std::size_t front() const override { return (pixels_ + 1) / 2 + (blocks_ + 1) / 2; }
  void run_unit(std::size_t t) override {
    const std::size_t p1 = (pixels_ + 1) / 2;  // task t: pixel unit t, column block t - p1, or pixel unit t - blocks_
    const std::size_t u = t < p1 ? t : t < p1 + blocks_ ? pixels_ + t - p1 : t - blocks_;
    int s = kFree;
    if (state_[u].compare_exchange_strong(s, kClaimed, std::memory_order_acq_rel)) run(u);
  }
  void ready(std::size_t j0, std::size_t n) override {
    ready_pixels(j0, n);
    if (blocks_ == 0) return;
    for (std::size_t b = j0 / kColsPerTask; b <= (j0 + n - 1) / kColsPerTask; ++b) take(pixels_ + b);
  }
  // Throws on NaN or Inf, once the job is done.
  void check() const {
    if (bad_.load()) throw std::invalid_argument("input contains NaN or Inf");
  }

 private:
  static constexpr int kFree = 0, kClaimed = 1, kDone = 2;
  // Task u (a pixel unit below pixels_, else a column block) run here, or waited for where another thread claimed it. A
  // helper leaves the caller's half (the tasks before the GEMM's) to the caller, which runs them first in any case: a
  // helper that packed a small map's one unit made the caller quantize its columns from the other core's cache (512ch
  // 4x4 at order 2, 2 threads: calls of 0.044 and of 0.055 ms, profile_conv_core).
  void take(std::size_t u) {
    int s = state_[u].load(std::memory_order_acquire);
    const bool front = u < pixels_ ? u < (pixels_ + 1) / 2 : u - pixels_ < (blocks_ + 1) / 2;
    if (s == kFree && (!front || std::this_thread::get_id() == caller_) &&
        state_[u].compare_exchange_strong(s, kClaimed, std::memory_order_acq_rel))
      return run(u);
    while (state_[u].load(std::memory_order_acquire) != kDone) cpu_relax();
  }
  // Every pixel unit that columns [j0, j0 + n) read.
  void ready_pixels(std::size_t j0, std::size_t n) {
    const std::size_t ppi = g_.out_h * g_.out_w;
    const std::size_t lo = unit_of(j0 / ppi, j0 % ppi / g_.out_w, false);
    const std::size_t hi = unit_of((j0 + n - 1) / ppi, (j0 + n - 1) % ppi / g_.out_w, true);
    for (std::size_t u = lo; u <= hi; ++u) take(u);
  }
  // The unit holding the first (last: `last`) input row that output row oy of image img reads, clamped to the image.
  std::size_t unit_of(std::size_t img, std::size_t oy, bool last) const {
    const long H = static_cast<long>(g_.height);
    long y = static_cast<long>(oy * g_.sh) - static_cast<long>(g_.ph);
    if (last) y += static_cast<long>((g_.kh - 1) * g_.dh);
    y = std::min(H - 1, std::max(0L, y));
    return img * units_.bands + static_cast<std::size_t>(y) / units_.rows;
  }
  void run(std::size_t u) {
    if (u >= pixels_) {  // a column block, after its pixel units
      const std::size_t c0 = (u - pixels_) * kColsPerTask, c1 = std::min(q_.ncols, c0 + kColsPerTask);
      ready_pixels(c0, c1 - c0);
      quantize_column_block(kt_, source_, q_, c0, c1);
      state_[u].store(kDone, std::memory_order_release);
      return;
    }
    const std::size_t img = u / units_.bands, y0 = u % units_.bands * units_.rows;
    const std::size_t y1 = std::min(g_.height, y0 + units_.rows);
    zero_image_border(q_.image, g_, img, img + 1, y0, y1);
    if (blocks_) zero_copy_border(pp_.xt, 1, q_.image, g_, img, y0, y1);
    if (pack_unit(kt_, x_, g_, in_scale_, in_shift_, q_, pp_, units_, 0, g_.batch, u)) bad_.store(true);
    state_[u].store(kDone, std::memory_order_release);
  }

  const KernelTable& kt_;
  const float* x_;
  const ConvGeometry& g_;
  const float *in_scale_, *in_shift_;
  QuantizedColumns& q_;
  const std::thread::id caller_ = std::this_thread::get_id();
  PixelPlanes pp_;  // at order 1 no copy and no per-pixel planes (everything goes into q's image); else the NHWC copy
  std::vector<std::int64_t> x_off_;
  ColumnSource source_{};
  const PixelUnits units_;
  const std::size_t pixels_, blocks_;
  struct alignas(64) State : std::atomic<int> {};  // a line each: waiting threads read them over and over
  std::unique_ptr<State[]> state_;
  std::atomic<bool> bad_{false};
};

}  // namespace

// A batch whose NHWC copy takes more than 2 kChunkBytes is quantized about kChunkBytes of it at a time.
constexpr std::size_t kChunkBytes = std::size_t{2} << 20;

// Images per chunk of quantize_conv_columns: the whole batch, or at orders >= 2 with an NHWC copy of more than 2
// kChunkBytes, about kChunkBytes of the copy at a time (at least kImagesPerThread per thread for maps packs_planes
// leaves row by row, which pack_input packs plane by plane only in such numbers; band2_columns' slots are a few rows a
// thread, whatever the chunk). The copy is then rewritten in cache rather than written to fresh memory and read back:
// 32 images of 64ch 32x32 at order 2 took 10.4-10.6 -> 9.6-10.0 ms a call, their input quantization 4.3 -> 3.5-3.7 ms
// (AMD EPYC Zen 3, avx2, 1 thread; docs/KERNELS.md round 32). Each image's columns are computed as in any other chunk
// or batch.
std::size_t images_per_chunk(ColumnKind k, const ConvGeometry& g, const float* in_scale) {
  if (!copies_nhwc(k, g, in_scale)) return g.batch;
  const bool image = image_columns(k, g);  // the copy with the pixel image's border (init_pixel_image's hp x wp)
  const std::size_t pixels = image ? (g.height + 2 * g.ph) * (g.width + 2 * g.pw) : g.height * g.width;
  const std::size_t bytes = pixels * g.channels * sizeof(float);
  if (g.batch * bytes <= 2 * kChunkBytes) return g.batch;
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t least = packs_planes(g) ? 1 : kImagesPerThread * threads;
  return std::min(g.batch, std::max(least, kChunkBytes / bytes));
}
std::size_t images_per_chunk(const QuantizedColumns& q, const ConvGeometry& g, const float* in_scale) {
  return images_per_chunk(kind_of(q), g, in_scale);
}

QuantizedColumns quantize_conv_columns(const KernelTable& kt, const float* x, const ConvGeometry& g, int order,
                                       const float* in_scale, const float* in_shift) {
  QuantizedColumns q = empty_columns(kt, g, order);
  const std::size_t chunk = images_per_chunk(q, g, in_scale);
  const bool from_input = band2_from_input(kt, q, g);
  const bool copy = copies_nhwc(q, g, in_scale) && !from_input;
  PixelPlanes pp = pixel_planes(g, q, chunk, copy);
  if (q.implicit_h1 && order == 1) {  // the GEMM task reads H_1 and beta_1 from the image
    pack_input(kt, x, g, in_scale, in_shift, q, pp, 0, g.batch);
    return q;
  }
  std::vector<std::int64_t> x_off;
  ColumnSource source = column_source(kt, g, q, pp, from_input ? nullptr : copy ? pp.xt : x, x_off);
  const bool band2 = band2_route(kt, q, g);
  const std::size_t ppi = g.out_h * g.out_w;
  for (std::size_t i0 = 0; i0 < g.batch; i0 += chunk) {
    const std::size_t i1 = std::min(g.batch, i0 + chunk);
    pp.img0 = i0;
    source.img0 = copy || from_input ? i0 : 0;
    pack_input(kt, x, g, in_scale, in_shift, q, pp, i0, i1);
    if (band2) {
      band2_columns(kt, source, q, i0, i1, from_input ? x : nullptr, in_scale, in_shift);
      continue;
    }
    const std::size_t c0 = i0 * ppi, c1 = i1 * ppi;
    parallel_for(ceil_div(c1 - c0, kColsPerTask), [&](std::size_t t) {
      quantize_column_block(kt, source, q, c0 + t * kColsPerTask, std::min(c1, c0 + (t + 1) * kColsPerTask));
    });
  }
  return q;
}

void relayout_conv_weights(const word_t* bits, std::size_t m, std::size_t channels, std::size_t kh,
                           std::size_t kw, word_t* out) {
  const std::size_t taps = kh * kw, n = channels * taps, in_words = words_for(n), gw = words_for(channels);
  const bool compact = conv_compact(channels, taps);
  const std::size_t row_words = conv_words(channels, taps);
  for (std::size_t o = 0; o < m; ++o) {
    const word_t* src = bits + o * in_words;
    word_t* dst = out + o * row_words;
    std::fill(dst, dst + row_words, word_t{0});
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t t = 0; t < taps; ++t) {
        const std::size_t i = c * taps + t, j = compact ? t * channels + c : t * gw * kWordBits + c;
        const word_t bit = (src[i / kWordBits] >> (i % kWordBits)) & 1u;
        dst[j / kWordBits] |= bit << (j % kWordBits);
      }
  }
}

bool conv_defers_pixels(const KernelTable& kt, const ConvGeometry& g, int order) {
  if (g.nhwc || get_num_threads() < 2 || !pixel_image_route(kt, g)) return false;
  if (order == 1) return true;
  const ColumnKind k{order, true};  // empty_columns' q on the pixel image route
  return image_columns(k, g) && !band2_route(kt, k, g) && images_per_chunk(k, g, nullptr) == g.batch;
}

void conv_layer(const KernelTable& kt, const float* x, const ConvGeometry& g, int order, const float* in_scale,
                const float* in_shift, const word_t* wbits, std::size_t m, const Epilogue& ep, float* y,
                WeightCache* cache) {
  const std::size_t ppi = g.out_h * g.out_w;
  if (conv_defers_pixels(kt, g, order)) {
    // The GEMM task reads H_1 (and at order 1 beta_1) from the image, whose border each unit zeroes beside its rows.
    QuantizedColumns q = empty_columns(kt, g, order, false);
    DeferredPixels pixels(kt, x, g, in_scale, in_shift, q);
    horq_gemm(kt, wbits, m, q, ep, ppi, y, cache, &pixels);
    pixels.check();
    return;
  }
  const QuantizedColumns q = quantize_conv_columns(kt, x, g, order, in_scale, in_shift);
  horq_gemm(kt, wbits, m, q, ep, ppi, y, cache);
}

}  // namespace horq
