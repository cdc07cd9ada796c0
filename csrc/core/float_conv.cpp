// float_conv2d (float_conv.h): the plan and each image's padded phase copy, then one task per output row on the
// path's row kernel.
#include "core/float_conv.h"

#include <algorithm>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/threadpool.h"

namespace horq {

void float_conv2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                  const float* bias, const float* floor, float* y) {
  const std::size_t C = g.channels, H = g.height, W = g.width, taps = g.kh * g.kw;
  const std::size_t hp = H + 2 * g.ph, wp = W + 2 * g.pw, sw = g.sw;
  // A phase row holds every padded column of its phase and what the widest vector block reads past the last
  // output pixel (the row kernel computes whole vectors; the copy's zeros feed the unused lanes).
  const std::size_t vec_cols = ceil_div(g.out_w, kFloatConvMaxLanes) * kFloatConvMaxLanes;
  const std::size_t u = std::max(ceil_div(wp, sw), (g.kw - 1) * g.dw / sw + vec_cols);
  const std::size_t image = C * hp * sw * u;

  FloatConvPlan p;
  p.k = C * taps, p.m = m;
  p.oh = g.out_h, p.ow = g.out_w, p.row_step = g.sh * sw * u, p.bias = bias, p.floor = floor;
  p.koff.resize(p.k);
  for (std::size_t c = 0; c < C; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        const std::size_t row = c * hp + i * g.dh, col = j * g.dw;
        p.koff[(c * g.kh + i) * g.kw + j] = static_cast<std::int64_t>((row * sw + col % sw) * u + col / sw);
      }
  p.wt.assign(ceil_div(m, kFloatConvRows) * kFloatConvRows * p.k, 0.0f);  // the last block zero-padded
  for (std::size_t o = 0; o < m; ++o)
    for (std::size_t t = 0; t < p.k; ++t)
      p.wt[(o / kFloatConvRows * p.k + t) * kFloatConvRows + o % kFloatConvRows] = w[o * p.k + t];

  // The copies of up to ~32 MB of images at a time (a large batch of large images would otherwise double
  // the input's memory).
  const std::size_t chunk = std::max<std::size_t>(1, (std::size_t{32} << 20) / (image * sizeof(float)));
  std::vector<float> xp(std::min(chunk, g.batch) * image);
  for (std::size_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const std::size_t nb = std::min(chunk, g.batch - n0);
    std::fill(xp.begin(), xp.begin() + static_cast<std::ptrdiff_t>(nb * image), 0.0f);
    parallel_for(nb * C * H, [&](std::size_t t) {  // input row t: image, channel, row
      const std::size_t n = t / (C * H), c = t / H % C, r = t % H;
      const float* src = x + (n0 * C * H + t) * W;
      float* dst = xp.data() + n * image + ((c * hp + r + g.ph) * sw) * u;
      for (std::size_t ph = 0; ph < sw; ++ph) {  // padded column pc = v sw + ph holds src[pc - pw]
        const std::size_t v0 = g.pw > ph ? ceil_div(g.pw - ph, sw) : 0, v1 = ceil_div(g.pw + W - ph, sw);
        float* __restrict out = dst + ph * u;
        for (std::size_t v = v0; v < v1; ++v) out[v] = src[v * sw + ph - g.pw];
      }
    });
    parallel_for(nb * g.out_h, [&](std::size_t t) {
      const std::size_t n = t / g.out_h;
      kt.float_conv_row(p, xp.data() + n * image, t % g.out_h, y + (n0 + n) * m * g.out_h * g.out_w);
    });
  }
}

}  // namespace horq
