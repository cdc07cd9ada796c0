// float_conv2d (float_conv.h): the plan and each image's padded phase copy, then one task per output row on the
// path's row kernel; float_conv2d_pool: the same rows through a ring per task, pooled as they come.
#include "core/float_conv.h"

#include <algorithm>

#include "core/dispatch.h"
#include "core/layer.h"
#include "core/pool.h"
#include "core/threadpool.h"

namespace horq {

namespace {

constexpr std::size_t kCopyTaskFloats = 8192;  // input floats per task of the padded phase copy

// The plan of a call (float_conv.h) and the size of one image's padded phase copy.
FloatConvPlan make_plan(const ConvGeometry& g, const float* w, std::size_t m, const float* bias, const float* floor,
                        std::size_t& image) {
  const std::size_t C = g.channels, taps = g.kh * g.kw;
  const std::size_t hp = g.height + 2 * g.ph, wp = g.width + 2 * g.pw, sw = g.sw;
  // A phase row holds every padded column of its phase and what the widest vector block reads past the last
  // output pixel (the row kernel computes whole vectors; the copy's zeros feed the unused lanes).
  const std::size_t vec_cols = ceil_div(g.out_w, kFloatConvMaxLanes) * kFloatConvMaxLanes;
  const std::size_t u = std::max(ceil_div(wp, sw), (g.kw - 1) * g.dw / sw + vec_cols);
  image = C * hp * sw * u;

  FloatConvPlan p;
  p.k = C * taps, p.m = m;
  p.oh = g.out_h, p.ow = g.out_w, p.y_plane = g.out_h * g.out_w, p.row_step = g.sh * sw * u;
  p.bias = bias, p.floor = floor;
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
  return p;
}

// For up to ~32 MB of images at a time (a large batch of large images would otherwise double the input's
// memory): their padded phase copies, then run(n0, nb, xp) for images [n0, n0 + nb) with xp their copies.
template <class Run>
void each_chunk(const float* x, const ConvGeometry& g, std::size_t image, Run&& run) {
  const std::size_t C = g.channels, H = g.height, W = g.width, hp = H + 2 * g.ph, sw = g.sw;
  const std::size_t u = image / (C * hp * sw);
  const std::size_t chunk = std::max<std::size_t>(1, (std::size_t{32} << 20) / (image * sizeof(float)));
  std::vector<float> xp(std::min(chunk, g.batch) * image);
  for (std::size_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const std::size_t nb = std::min(chunk, g.batch - n0);
    std::fill(xp.begin(), xp.begin() + static_cast<std::ptrdiff_t>(nb * image), 0.0f);
    // Input rows t (image, channel, row), several per task: a row is a few dozen floats, less than what
    // handing a task to another thread costs.
    parallel_for_items(nb * C * H, kCopyTaskFloats / W, [&](std::size_t t) {
      const std::size_t n = t / (C * H), c = t / H % C, r = t % H;
      const float* src = x + (n0 * C * H + t) * W;
      float* dst = xp.data() + n * image + ((c * hp + r + g.ph) * sw) * u;
      for (std::size_t ph = 0; ph < sw; ++ph) {  // padded column pc = v sw + ph holds src[pc - pw]
        const std::size_t v0 = g.pw > ph ? ceil_div(g.pw - ph, sw) : 0, v1 = ceil_div(g.pw + W - ph, sw);
        float* __restrict out = dst + ph * u;
        for (std::size_t v = v0; v < v1; ++v) out[v] = src[v * sw + ph - g.pw];
      }
    });
    run(n0, nb, xp.data());
  }
}

}  // namespace

void float_conv2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                  const float* bias, const float* floor, float* y) {
  std::size_t image = 0;
  const FloatConvPlan p = make_plan(g, w, m, bias, floor, image);
  const std::size_t plane = g.out_h * g.out_w;
  // Tasks of consecutive output rows: with one row per task, neighbouring rows went to different threads, which
  // then wrote the cache lines two rows share in every channel (2 threads ran a 32x32 stem slower than 1).
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t bands = std::min(g.out_h, threads == 1 ? std::size_t{1} : 4 * threads);
  const std::size_t per_band = ceil_div(g.out_h, bands);
  each_chunk(x, g, image, [&](std::size_t n0, std::size_t nb, const float* xp) {
    parallel_for(nb * bands, [&](std::size_t t) {
      const std::size_t n = t / bands, oy0 = t % bands * per_band;
      for (std::size_t oy = oy0; oy < std::min(g.out_h, oy0 + per_band); ++oy)
        kt.float_conv_row(p, xp + n * image, oy, y + (n0 + n) * m * plane + oy * g.out_w);
    });
  });
}

void float_conv2d_pool(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                       const float* bias, const float* floor, const ConvGeometry& pg, const float* pool_floor,
                       std::size_t npool_floor, float* y) {
  std::size_t image = 0;
  FloatConvPlan p = make_plan(g, w, m, bias, floor, image);
  const std::size_t OH = g.out_h, OW = g.out_w, POH = pg.out_h, POW = pg.out_w;
  // The conv rows one pooled row reads span `span` rows: conv row r lives in slot r % span of a task's ring.
  const std::size_t span = (pg.kh - 1) * pg.dh + 1;
  p.y_plane = span * OW;
  const PoolColumns pc = pool_columns(pg);
  // Bands of pooled rows per image: one at one thread (every conv row computed once), else enough for the
  // threads (a band recomputes the conv rows it shares with the band before it). The rows are the same either
  // way, so the output does not depend on the thread count.
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  each_chunk(x, g, image, [&](std::size_t n0, std::size_t nb, const float* xp) {
    const std::size_t bands = threads == 1 ? 1 : std::min(POH, ceil_div(2 * threads, nb));
    const std::size_t per_band = ceil_div(POH, bands);
    parallel_for(nb * bands, [&](std::size_t t) {
      const std::size_t n = t / bands, py0 = t % bands * per_band, py1 = std::min(POH, py0 + per_band);
      thread_local std::vector<float> ring, scratch;
      thread_local std::vector<const float*> rows;
      if (ring.size() < m * span * OW) ring.resize(m * span * OW);
      if (scratch.size() < OW) scratch.resize(OW);
      rows.resize(pg.kh);
      long next = 0;  // the first conv row not yet in the ring
      for (std::size_t py = py0; py < py1; ++py) {
        const long first = static_cast<long>(py * pg.sh) - static_cast<long>(pg.ph);
        for (long r = std::max(next, first); r <= first + static_cast<long>(span) - 1; ++r) {
          if (r < 0 || r >= static_cast<long>(OH)) continue;
          const std::size_t ur = static_cast<std::size_t>(r);
          kt.float_conv_row(p, xp + n * image, ur, ring.data() + ur % span * OW);
          next = r + 1;
        }
        for (std::size_t c = 0; c < m; ++c) {
          for (std::size_t i = 0; i < pg.kh; ++i) {
            const long iy = first + static_cast<long>(i * pg.dh);
            rows[i] = iy < 0 || iy >= static_cast<long>(OH)
                          ? nullptr
                          : ring.data() + (c * span + static_cast<std::size_t>(iy) % span) * OW;
          }
          const float fl = pool_floor ? pool_floor[npool_floor == 1 ? 0 : c] : 0.0f;
          kt.pool_row(rows.data(), pg.kh, pc, pool_floor != nullptr, fl, scratch.data(),
                   y + (((n0 + n) * m + c) * POH + py) * POW);
        }
      }
    });
  });
}

}  // namespace horq
