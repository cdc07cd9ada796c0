// Convolution input side. HORQ.md: a column is one receptive field, zero padding included (padded zeros
// are part of the column, get sign(0) = +1 and count in n); the kernels lay a column out channel-major
// per pixel, (i, j, c), each pixel's C channels in words_for(C) words, matching relayout_conv_weights.
//
// Order 1: H_1 = sign(x) does not depend on the column and beta_1 = sum |x| / n is a box sum, so each
// pixel is packed once (bits + sum |x|) and a column is a gather of pixel words (zero words and a zero
// sum for padding taps) -- no float im2col at all.
// Order >= 2: H_1 and beta_1 come the same way; H_k (k >= 2) thresholds the residual against the
// column's own betas, so each column's passes k = 2..K read its taps in place from an NHWC float copy
// and recompute the residual chain in double per value (quantize_taps in quantize.h) -- still no
// im2col buffer. Order 2 has one threshold, beta_1, and runs an exact float32 pass (quantize_taps2).
// Columns are independent, so both are split over threads in blocks of kColsPerTask.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/layer.h"
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
}  // namespace

QuantizedColumns quantize_conv_columns(const KernelTable& kt, const float* x, const ConvGeometry& g, int order,
                                       const float* in_scale, const float* in_shift) {
  const std::size_t C = g.channels, H = g.height, W = g.width, taps = g.kh * g.kw;
  const std::size_t ppi = g.out_h * g.out_w, gw = words_for(C), npix = g.batch * H * W;
  QuantizedColumns q;
  q.ncols = g.batch * ppi;
  q.n = C * taps;
  const bool compact = conv_compact(C, taps);
  q.kw = conv_words(C, taps);
  q.order = order;
  // Paths with an outer-product GEMM read H_1 (and at order 1 beta_1) from a pixel image instead of a
  // gathered copy per column (layer.h PixelImage); the compact layout keeps the gather.
  const bool implicit = kt.gemm_task != nullptr && !compact;
  q.implicit_h1 = implicit;
  if (!(implicit && order == 1)) {
    q.bits.assign(q.ncols * order * q.kw, 0);
    q.betas.assign(q.ncols * order, 0.0);
  }
  PixelImage& im = q.image;
  if (implicit) {
    im.hp = H + 2 * g.ph, im.wp = W + 2 * g.pw, im.groups = gw, im.out_w = g.out_w, im.ppi = ppi;
    im.sh = g.sh, im.sw = g.sw;
    im.words.assign(g.batch * gw * im.hp * im.wp, 0);
    im.sums.assign(g.batch * im.hp * im.wp, 0.0);
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        const std::size_t tap_off = i * g.dh * im.wp + j * g.dw;
        im.sum_off.push_back(static_cast<std::int64_t>(tap_off));
        for (std::size_t w = 0; w < gw; ++w)
          im.word_off.push_back(static_cast<std::int64_t>(w * im.hp * im.wp + tap_off));
      }
  }

  // Per image row: an NHWC float copy (kept for order >= 2, whose passes read the taps from it), and per
  // pixel its packed signs (H_1) and sum |x| in double (pack_pixels: each pixel's sum adds its channels in
  // order), into the pixel image or into per-pixel arrays. The finiteness check is an exponent test.
  std::vector<float> xt(order >= 2 ? npix * C : 0);
  std::vector<double> pix_sum(implicit ? 0 : npix);
  std::vector<word_t> pix_bits(implicit ? 0 : npix * gw);
  std::atomic<bool> finite{true};
  parallel_for(g.batch * H, [&](std::size_t t) {
    const std::size_t img = t / H, y = t % H;
    const float* src = x + img * C * H * W + y * W;
    double* psum = implicit ? im.sums.data() + (img * im.hp + y + g.ph) * im.wp + g.pw : pix_sum.data() + t * W;
    if (!implicit) std::fill_n(psum, W, 0.0);
    std::uint32_t bad = 0;
    for (std::size_t c0 = 0; c0 < C; c0 += kWordBits) {
      const std::size_t c1 = std::min(C, c0 + kWordBits), gi = c0 / kWordBits;
      const float* scale = in_scale ? in_scale + c0 : nullptr;
      const float* shift = in_scale ? in_shift + c0 : nullptr;
      if (implicit) {
        word_t* row = im.words.data() + ((img * gw + gi) * im.hp + y + g.ph) * im.wp + g.pw;
        bad |= kt.pack_pixels(src + c0 * H * W, H * W, c1 - c0, W, row, 1, psum, scale, shift);
      } else {
        bad |= kt.pack_pixels(src + c0 * H * W, H * W, c1 - c0, W, pix_bits.data() + t * W * gw + gi, gw, psum,
                              scale, shift);
      }
      if (order >= 2) {
        for (std::size_t c = c0; c < c1; ++c) {
          const float* __restrict v = src + c * H * W;
          float* __restrict dst = xt.data() + t * W * C + c;
          if (in_scale) {
            const float a = in_scale[c], b = in_shift[c];
            for (std::size_t w = 0; w < W; ++w) dst[w * C] = v[w] * a + b;
          } else {
            for (std::size_t w = 0; w < W; ++w) dst[w * C] = v[w];
          }
        }
      }
    }
    if (bad) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");
  if (implicit && order == 1) return q;  // the GEMM task reads H_1 and beta_1 from the image

  // Per column: H_1 is a gather of pixel words (zero words for padding taps: sign(0) = +1) and beta_1 a
  // box sum of the pixel sums; orders >= 2 read the column's taps in place (quantize_taps).
  parallel_for(ceil_div(q.ncols, kColsPerTask), [&](std::size_t t) {
    thread_local std::vector<const float*> tap_ptrs;
    if (tap_ptrs.size() < taps) tap_ptrs.resize(taps);
    const float** tp = tap_ptrs.data();
    // Compact layout: the grouped planes of one column are built here, then packed bit by bit.
    thread_local std::vector<word_t> grouped;
    const std::size_t glen = taps * gw;
    if (compact && grouped.size() < static_cast<std::size_t>(order) * glen) grouped.resize(order * glen);
    // Locals, so the loops below keep them in registers (the vectors' storage could alias otherwise).
    const word_t* pb = pix_bits.data();
    const double* ps = implicit ? im.sums.data() : pix_sum.data();
    const float* px = xt.data();
    const long Hl = static_cast<long>(H), Wl = static_cast<long>(W);
    const std::size_t gwl = gw, Cl = C, Hs = H, Ws = W;  // word_t and size_t are both unsigned long: only locals are safe from aliasing the bit stores
    const std::size_t kwords = q.kw, col0 = t * kColsPerTask, j1 = std::min(q.ncols, col0 + kColsPerTask);
    const double n = static_cast<double>(q.n);
    const ConvGeometry gl = g;  // a local copy, for the same reason
    const std::size_t imhp = im.hp, imwp = im.wp;
    std::size_t img = col0 / ppi, oy = (col0 % ppi) / gl.out_w, ox = col0 % gl.out_w;
    for (std::size_t col = col0; col < j1; ++col) {
      word_t* const out_bits = q.bits.data() + col * order * kwords;
      word_t* bits = out_bits;
      std::size_t ld = kwords;
      if (compact) {
        bits = grouped.data(), ld = glen;
        std::fill_n(bits, glen, word_t{0});  // row 0 (H_1): padding taps stay zero
      }
      const long iy0 = static_cast<long>(oy * gl.sh) - static_cast<long>(gl.ph);
      const long ix0 = static_cast<long>(ox * gl.sw) - static_cast<long>(gl.pw);
      double sum = 0.0;
      std::size_t tap = 0;
      for (std::size_t i = 0; i < gl.kh; ++i) {
        const long iy = iy0 + static_cast<long>(i * gl.dh);
        const bool row_in = iy >= 0 && iy < Hl;
        const std::size_t row = (img * Hs + static_cast<std::size_t>(row_in ? iy : 0)) * Ws;
        for (std::size_t j = 0; j < gl.kw; ++j, ++tap) {
          const long ix = ix0 + static_cast<long>(j * gl.dw);
          if (!row_in || ix < 0 || ix >= Wl) {
            tp[tap] = nullptr;
            continue;  // padding: H_1 words stay 0, adds 0 to the sum
          }
          const std::size_t up = row + static_cast<std::size_t>(ix);
          if (implicit) {
            const std::size_t py = static_cast<std::size_t>(iy) + gl.ph, px = static_cast<std::size_t>(ix) + gl.pw;
            sum += ps[(img * imhp + py) * imwp + px];
          } else {
            if (gwl == 1) {
              bits[tap] = pb[up];
            } else {
              for (std::size_t w = 0; w < gwl; ++w) bits[tap * gwl + w] = pb[up * gwl + w];
            }
            sum += ps[up];
          }
          tp[tap] = order >= 2 ? px + up * Cl : nullptr;
        }
      }
      double* betas = q.betas.data() + col * order;
      betas[0] = sum / n;
      if (order == 2) {
        kt.quantize_taps2(tp, taps, C, bits, ld, betas);
      } else if (order > 2) {
        kt.quantize_taps(tp, taps, C, order, bits, ld, betas);
      }
      if (compact) {
        for (int k = 0; k < order; ++k)
          for (std::size_t tap_i = 0; tap_i < taps; ++tap_i)
            or_bits(out_bits + k * kwords, tap_i * Cl, bits + k * ld + tap_i * gwl, Cl);
      }
      if (++ox == gl.out_w) {
        ox = 0;
        if (++oy == gl.out_h) oy = 0, ++img;
      }
    }
  });
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

}  // namespace horq
