// Max pooling (pool.h): per output row, the maximum over the kernel's rows (contiguous, vectorized by the
// compiler) into a row buffer, then over its columns, then the floor.
#include "core/pool.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "core/threadpool.h"

namespace horq {
namespace {

// numpy.maximum's rule: NaN if either is NaN, else the larger.
inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

// The output indices o in [lo, hi) whose tap at offset `off` (input index o * stride + off) lies in [0, size).
void tap_range(long off, std::size_t stride, std::size_t size, std::size_t out_len, std::size_t& lo,
               std::size_t& hi) {
  const long s = static_cast<long>(stride), top = static_cast<long>(size) - 1 - off;
  lo = off >= 0 ? 0 : static_cast<std::size_t>((-off + s - 1) / s);
  hi = top < 0 ? 0 : std::min(out_len, static_cast<std::size_t>(top / s + 1));
  if (hi < lo) hi = lo;
}

}  // namespace

void max_pool2d(const float* x, const ConvGeometry& g, const float* floor, std::size_t nfloor, float* y) {
  const std::size_t H = g.height, W = g.width, OH = g.out_h, OW = g.out_w, C = g.channels;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Per column tap j: the output range it reaches and its input offset.
  std::vector<std::size_t> jlo(g.kw), jhi(g.kw);
  std::vector<long> joff(g.kw);
  for (std::size_t j = 0; j < g.kw; ++j) {
    joff[j] = static_cast<long>(j * g.dw) - static_cast<long>(g.pw);
    tap_range(joff[j], g.sw, W, OW, jlo[j], jhi[j]);
  }
  parallel_for(g.batch * C, [&](std::size_t plane) {
    const float* src = x + plane * H * W;
    float* dst = y + plane * OH * OW;
    const float fl = floor ? floor[nfloor == 1 ? 0 : plane % C] : kNegInf;
    std::vector<float> row(W);
    for (std::size_t oy = 0; oy < OH; ++oy) {
      // The kernel's rows inside x, maxed into `row`.
      bool any = false;
      for (std::size_t i = 0; i < g.kh; ++i) {
        const long iy = static_cast<long>(oy * g.sh + i * g.dh) - static_cast<long>(g.ph);
        if (iy < 0 || iy >= static_cast<long>(H)) continue;
        const float* __restrict in = src + static_cast<std::size_t>(iy) * W;
        float* __restrict r = row.data();
        if (!any) {
          std::copy_n(in, W, r);
          any = true;
        } else {
          for (std::size_t w = 0; w < W; ++w) r[w] = nan_max(r[w], in[w]);
        }
      }
      float* __restrict out = dst + oy * OW;
      std::fill_n(out, OW, kNegInf);
      if (any) {
        for (std::size_t j = 0; j < g.kw; ++j) {
          const float* __restrict r = row.data();
          for (std::size_t ox = jlo[j]; ox < jhi[j]; ++ox)  // the input column is inside x for these ox
            out[ox] = nan_max(out[ox], r[static_cast<std::size_t>(static_cast<long>(ox * g.sw) + joff[j])]);
        }
      }
      if (floor)
        for (std::size_t ox = 0; ox < OW; ++ox) out[ox] = nan_max(out[ox], fl);
    }
  });
}

}  // namespace horq
