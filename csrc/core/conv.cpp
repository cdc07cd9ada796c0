// Convolution input side: NCHW -> NHWC (so a pixel's C channels are contiguous), then one receptive
// field at a time is gathered into a double buffer in (i, j, c) order, zero padding included
// (HORQ.md "Padding": padded zeros are part of the column and count in n), and quantized. Columns are
// independent, so they are split over threads in blocks of kColsPerTask.
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

}  // namespace

QuantizedColumns quantize_conv_columns(const KernelTable& kt, const float* x, const ConvGeometry& g, int order) {
  const std::size_t C = g.channels, H = g.height, W = g.width, taps = g.kh * g.kw;
  const std::size_t ppi = g.out_h * g.out_w, gw = words_for(C);
  QuantizedColumns q;
  q.ncols = g.batch * ppi;
  q.n = C * taps;
  q.kw = taps * gw;
  q.order = order;
  q.bits.assign(q.ncols * order * q.kw, 0);
  q.betas.assign(q.ncols * order, 0.0);

  // NHWC copy; the finiteness check rides along (x * 0 is NaN exactly when x is NaN or Inf).
  std::vector<float> xt(g.batch * H * W * C);
  std::atomic<bool> finite{true};
  parallel_for(g.batch * H, [&](std::size_t t) {
    const float* src = x + (t / H) * C * H * W + (t % H) * W;
    float* dst = xt.data() + t * W * C;
    float probe = 0.0f;
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t w = 0; w < W; ++w) {
        const float v = src[c * H * W + w];
        probe += v * 0.0f;
        dst[w * C + c] = v;
      }
    if (probe != 0.0f) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");

  parallel_for(ceil_div(q.ncols, kColsPerTask), [&](std::size_t t) {
    double* r = column_buffer(q.n).data();
    const std::size_t j1 = std::min(q.ncols, (t + 1) * kColsPerTask);
    for (std::size_t j = t * kColsPerTask; j < j1; ++j) {
      const std::size_t img = j / ppi, oy = (j % ppi) / g.out_w, ox = j % g.out_w;
      const float* xi = xt.data() + img * H * W * C;
      for (std::size_t i = 0; i < g.kh; ++i) {
        const long iy = static_cast<long>(oy * g.sh + i * g.dh) - static_cast<long>(g.ph);
        for (std::size_t jj = 0; jj < g.kw; ++jj) {
          const long ix = static_cast<long>(ox * g.sw + jj * g.dw) - static_cast<long>(g.pw);
          double* dst = r + (i * g.kw + jj) * C;
          if (iy < 0 || ix < 0 || iy >= static_cast<long>(H) || ix >= static_cast<long>(W)) {
            std::fill(dst, dst + C, 0.0);
          } else {
            const float* src = xi + (static_cast<std::size_t>(iy) * W + static_cast<std::size_t>(ix)) * C;
            for (std::size_t c = 0; c < C; ++c) dst[c] = src[c];
          }
        }
      }
      kt.quantize(r, taps, C, order, q.bits.data() + j * order * q.kw, q.kw, q.betas.data() + j * order);
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
