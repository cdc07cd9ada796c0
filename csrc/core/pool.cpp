// Max pooling (pool.h): per output row, the maximum over the kernel's rows (contiguous, vectorized by the
// compiler) into a row buffer, then over its columns, then the floor.
#include "core/pool.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "core/threadpool.h"

namespace horq {
namespace {

// numpy.maximum's rule: NaN if either is NaN, else the larger (b when they compare equal). Written as a select the
// compiler maps to maxps (a > b ? a : b; b when unordered) and a NaN blend, so the loops below vectorize without
// branches (a branch per compare of random data mispredicts half the time).
inline float nan_max(float a, float b) {
  const float m = a > b ? a : b;
  return a != a ? a : m;
}

// out[ox] = nan_max(out[ox], r[ox * stride + off]) for ox in [lo, hi); S = the stride when it is a compile-time
// constant (1 and 2: contiguous and pairwise loads the compiler vectorizes), 0 for any other.
template <std::size_t S>
void column_tap(float* __restrict out, const float* __restrict r, std::size_t lo, std::size_t hi, long off,
                std::size_t stride) {
  const std::size_t s = S ? S : stride;
  const float* at = r + off;
  for (std::size_t ox = lo; ox < hi; ++ox) out[ox] = nan_max(out[ox], at[ox * s]);
}

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
  // Tasks of whole planes, enough of them together to outweigh a task's overhead on small maps (512 planes of 8 x 8);
  // each plane with its floor (-inf: none, which leaves every value as it is).
  constexpr std::size_t kTaskValues = 16384;
  const std::size_t planes = g.batch * C;
  const std::size_t per_task = std::max<std::size_t>(1, kTaskValues / std::max<std::size_t>(1, H * W));
  const auto each_plane = [&](auto&& fn) {
    parallel_for(ceil_div(planes, per_task), [&](std::size_t task) {
      for (std::size_t plane = task * per_task; plane < std::min(planes, (task + 1) * per_task); ++plane)
        fn(plane, floor ? floor[nfloor == 1 ? 0 : plane % C] : kNegInf);
    });
  };
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1 &&
      2 * OH <= H && 2 * OW <= W) {
    // 2 x 2 windows at stride 2 (VGG's and most CNNs' pools): every window inside x, one pass, the operations of
    // the general path below in its order (rows first, then columns, then the floor), so the same bits.
    each_plane([&](std::size_t plane, float fl) {
      for (std::size_t oy = 0; oy < OH; ++oy) {
        const float* __restrict a = x + (plane * H + 2 * oy) * W;
        const float* __restrict b = a + W;
        float* __restrict out = y + (plane * OH + oy) * OW;
        for (std::size_t ox = 0; ox < OW; ++ox) {
          const float m = nan_max(nan_max(a[2 * ox], b[2 * ox]), nan_max(a[2 * ox + 1], b[2 * ox + 1]));
          out[ox] = floor ? nan_max(m, fl) : m;
        }
      }
    });
    return;
  }
  each_plane([&](std::size_t plane, float fl) {
    thread_local std::vector<float> row;
    if (row.size() < W) row.resize(W);
    const float* src = x + plane * H * W;
    float* dst = y + plane * OH * OW;
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
        for (std::size_t j = 0; j < g.kw; ++j) {  // the input column is inside x for ox in [jlo, jhi)
          if (g.sw == 2) {
            column_tap<2>(out, row.data(), jlo[j], jhi[j], joff[j], 2);
          } else if (g.sw == 1) {
            column_tap<1>(out, row.data(), jlo[j], jhi[j], joff[j], 1);
          } else {
            column_tap<0>(out, row.data(), jlo[j], jhi[j], joff[j], g.sw);
          }
        }
      }
      if (floor)
        for (std::size_t ox = 0; ox < OW; ++ox) out[ox] = nan_max(out[ox], fl);
    }
  });
}

}  // namespace horq
