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
// im2col buffer.
// Columns are independent, so both are split over threads in blocks of kColsPerTask.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "core/layer.h"
#include "core/threadpool.h"

namespace horq {
namespace {

constexpr std::size_t kColsPerTask = 32;

// Pixel index (in NHWC order) of tap (i, j) of output position `pos`, or -1 for a padding tap.
inline long tap_pixel(const ConvGeometry& g, std::size_t img, std::size_t oy, std::size_t ox, std::size_t i,
                      std::size_t j) {
  const long iy = static_cast<long>(oy * g.sh + i * g.dh) - static_cast<long>(g.ph);
  const long ix = static_cast<long>(ox * g.sw + j * g.dw) - static_cast<long>(g.pw);
  if (iy < 0 || ix < 0 || iy >= static_cast<long>(g.height) || ix >= static_cast<long>(g.width)) return -1;
  return static_cast<long>((img * g.height + static_cast<std::size_t>(iy)) * g.width + static_cast<std::size_t>(ix));
}

}  // namespace

QuantizedColumns quantize_conv_columns(const KernelTable& kt, const float* x, const ConvGeometry& g, int order) {
  const std::size_t C = g.channels, H = g.height, W = g.width, taps = g.kh * g.kw;
  const std::size_t ppi = g.out_h * g.out_w, gw = words_for(C), npix = g.batch * H * W;
  QuantizedColumns q;
  q.ncols = g.batch * ppi;
  q.n = C * taps;
  q.kw = taps * gw;
  q.order = order;
  q.bits.assign(q.ncols * order * q.kw, 0);
  q.betas.assign(q.ncols * order, 0.0);

  // Per image row: an NHWC float copy (kept for order >= 2, whose passes read the taps from it), then
  // per pixel its packed signs (H_1) and sum |x| in double. The finiteness check rides along (x * 0 is
  // NaN exactly when x is NaN or Inf).
  std::vector<float> xt(order >= 2 ? npix * C : 0);
  std::vector<double> pix_sum(npix);
  std::vector<word_t> pix_bits(npix * gw);
  std::atomic<bool> finite{true};
  parallel_for(g.batch * H, [&](std::size_t t) {
    const float* src = x + (t / H) * C * H * W + (t % H) * W;
    thread_local std::vector<float> row_buf;
    float* row = xt.data() + t * W * C;
    if (order < 2) {
      if (row_buf.size() < W * C) row_buf.resize(W * C);
      row = row_buf.data();
    }
    float probe = 0.0f;
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t w = 0; w < W; ++w) {
        const float v = src[c * H * W + w];
        probe += v * 0.0f;
        row[w * C + c] = v;
      }
    if (probe != 0.0f) {
      finite.store(false);
      return;
    }
    for (std::size_t w = 0; w < W; ++w) {
      const std::size_t p = t * W + w;
      const float* v = row + w * C;
      word_t* bits = pix_bits.data() + p * gw;
      double sum = 0.0;
      for (std::size_t c0 = 0; c0 < C; c0 += kWordBits) {
        const std::size_t c1 = std::min(C, c0 + kWordBits);
        word_t word = 0;
        for (std::size_t c = c0; c < c1; ++c) {
          word |= sign_bit(v[c]) << (c - c0);
          sum += std::fabs(static_cast<double>(v[c]));
        }
        bits[c0 / kWordBits] = word;
      }
      pix_sum[p] = sum;
    }
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");

  // Per column: H_1 is a gather of pixel words (zero words for padding taps: sign(0) = +1) and beta_1 a
  // box sum of the pixel sums; orders >= 2 read the column's taps in place (quantize_taps).
  parallel_for(ceil_div(q.ncols, kColsPerTask), [&](std::size_t t) {
    thread_local std::vector<const float*> tap_ptrs;
    if (tap_ptrs.size() < taps) tap_ptrs.resize(taps);
    const std::size_t j1 = std::min(q.ncols, (t + 1) * kColsPerTask);
    for (std::size_t col = t * kColsPerTask; col < j1; ++col) {
      const std::size_t img = col / ppi, oy = (col % ppi) / g.out_w, ox = col % g.out_w;
      word_t* bits = q.bits.data() + col * order * q.kw;
      double sum = 0.0;
      for (std::size_t i = 0; i < g.kh; ++i)
        for (std::size_t j = 0; j < g.kw; ++j) {
          const long p = tap_pixel(g, img, oy, ox, i, j);
          const std::size_t tap = i * g.kw + j;
          if (p < 0) {
            tap_ptrs[tap] = nullptr;
            continue;  // padding: H_1 words stay 0, adds 0 to the sum
          }
          const std::size_t up = static_cast<std::size_t>(p);
          std::copy_n(pix_bits.data() + up * gw, gw, bits + tap * gw);
          sum += pix_sum[up];
          if (order >= 2) tap_ptrs[tap] = xt.data() + up * C;
        }
      double* betas = q.betas.data() + col * order;
      betas[0] = sum / static_cast<double>(q.n);
      if (order >= 2) kt.quantize_taps(tap_ptrs.data(), taps, C, order, bits, q.kw, betas);
    }
  });
  return q;
}

void relayout_conv_weights(const word_t* bits, std::size_t m, std::size_t channels, std::size_t kh,
                           std::size_t kw, word_t* out) {
  const std::size_t taps = kh * kw, n = channels * taps, in_words = words_for(n), gw = words_for(channels);
  for (std::size_t o = 0; o < m; ++o) {
    const word_t* src = bits + o * in_words;
    word_t* dst = out + o * taps * gw;
    std::fill(dst, dst + taps * gw, word_t{0});
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t t = 0; t < taps; ++t) {
        const std::size_t i = c * taps + t;
        const word_t bit = (src[i / kWordBits] >> (i % kWordBits)) & 1u;
        dst[t * gw + c / kWordBits] |= bit << (c % kWordBits);
      }
  }
}

}  // namespace horq
