// Convolution input side. HORQ.md: a column is one receptive field, zero padding included (padded zeros
// are part of the column, get sign(0) = +1 and count in n); the kernels lay a column out channel-major
// per pixel, (i, j, c), each pixel's C channels in words_for(C) words, matching relayout_conv_weights.
//
// Order 1: H_1 = sign(x) does not depend on the column and beta_1 = sum |x| / n is a box sum, so each
// pixel is packed once (bits + sum |x|) and a column is a gather of pixel words (zero words and a zero
// sum for padding taps) -- no float im2col at all.
// Order >= 2: H_k (k >= 2) thresholds the residual against the column's own betas, so every column is
// gathered (from an NHWC double copy: one memcpy per tap) and quantized by the ISA kernel (quantize.h).
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

std::vector<double>& column_buffer(std::size_t n) {
  thread_local std::vector<double> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

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

  // Per image row: NHWC double copy (order >= 2) or packed pixel signs + sum |x| (order 1). The
  // finiteness check rides along (x * 0 is NaN exactly when x is NaN or Inf).
  std::vector<double> xt(order >= 2 ? npix * C : 0), pix_sum(order == 1 ? npix : 0);
  std::vector<word_t> pix_bits(order == 1 ? npix * gw : 0);
  std::atomic<bool> finite{true};
  parallel_for(g.batch * H, [&](std::size_t t) {
    const float* src = x + (t / H) * C * H * W + (t % H) * W;
    float probe = 0.0f;
    for (std::size_t w = 0; w < W; ++w) {
      const std::size_t p = t * W + w;
      if (order == 1) {
        double sum = 0.0;
        word_t* bits = pix_bits.data() + p * gw;
        for (std::size_t c = 0; c < C; ++c) {
          const float v = src[c * H * W + w];
          probe += v * 0.0f;
          sum += std::fabs(static_cast<double>(v));
          bits[c / kWordBits] |= sign_bit(v) << (c % kWordBits);
        }
        pix_sum[p] = sum;
      } else {
        double* dst = xt.data() + p * C;
        for (std::size_t c = 0; c < C; ++c) {
          const float v = src[c * H * W + w];
          probe += v * 0.0f;
          dst[c] = v;
        }
      }
    }
    if (probe != 0.0f) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");

  parallel_for(ceil_div(q.ncols, kColsPerTask), [&](std::size_t t) {
    double* r = order >= 2 ? column_buffer(q.n).data() : nullptr;
    const std::size_t j1 = std::min(q.ncols, (t + 1) * kColsPerTask);
    for (std::size_t col = t * kColsPerTask; col < j1; ++col) {
      const std::size_t img = col / ppi, oy = (col % ppi) / g.out_w, ox = col % g.out_w;
      word_t* bits = q.bits.data() + col * order * q.kw;
      double sum = 0.0;
      for (std::size_t i = 0; i < g.kh; ++i)
        for (std::size_t j = 0; j < g.kw; ++j) {
          const long p = tap_pixel(g, img, oy, ox, i, j);
          const std::size_t tap = i * g.kw + j;
          if (order == 1) {
            if (p < 0) continue;  // padding: bits stay 0 (sign(0) = +1), adds 0 to the sum
            std::copy_n(pix_bits.data() + static_cast<std::size_t>(p) * gw, gw, bits + tap * gw);
            sum += pix_sum[static_cast<std::size_t>(p)];
          } else if (p < 0) {
            std::fill_n(r + tap * C, C, 0.0);
          } else {
            std::copy_n(xt.data() + static_cast<std::size_t>(p) * C, C, r + tap * C);
          }
        }
      if (order == 1)
        q.betas[col] = sum / static_cast<double>(q.n);
      else
        kt.quantize(r, taps, C, order, bits, q.kw, q.betas.data() + col * order);
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
