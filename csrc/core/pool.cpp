// Max pooling (pool.h): tasks of planes; per output row, the path's pool_row (pool_walk.h: the maximum over the
// kernel's rows into a row buffer, then over its columns, then the floor), or a 2 x 2 pool's whole plane.
#include "core/pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "core/quantize.h"
#include "core/threadpool.h"

namespace horq {
namespace {

// Planes per task: enough of them together to outweigh a task's overhead on small maps (512 planes of 8 x 8).
std::size_t planes_per_task(std::size_t plane_values) {
  constexpr std::size_t kTaskValues = 16384;
  return std::max<std::size_t>(1, kTaskValues / std::max<std::size_t>(1, plane_values));
}

// The output indices o in [lo, hi) whose tap at offset `off` (input index o * stride + off) lies in [0, size).
void tap_range(long off, std::size_t stride, std::size_t size, std::size_t out_len, std::size_t& lo,
               std::size_t& hi) {
  const long s = static_cast<long>(stride), top = static_cast<long>(size) - 1 - off;
  lo = off >= 0 ? 0 : static_cast<std::size_t>((-off + s - 1) / s);
  hi = top < 0 ? 0 : std::min(out_len, static_cast<std::size_t>(top / s + 1));
  if (hi < lo) hi = lo;
}

// numpy's pairwise summation of n floats in double (its DOUBLE_pairwise_sum on a float32 row cast to double).
double pairwise_sum(const float* a, std::size_t n) {
  if (n < 8) {
    double r = 0.0;
    for (std::size_t i = 0; i < n; ++i) r += static_cast<double>(a[i]);
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = static_cast<double>(a[j]);
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (std::size_t j = 0; j < 8; ++j) r[j] += static_cast<double>(a[i + j]);
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += static_cast<double>(a[i]);
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

void global_avg_pool(const float* x, std::size_t planes, std::size_t hw, float* y) {
  parallel_for_items(planes, planes_per_task(hw), [&](std::size_t p) {
    y[p] = static_cast<float>(pairwise_sum(x + p * hw, hw) / static_cast<double>(hw));
  });
}

namespace {

// 1 when some value of x[0, n) is NaN or +-Inf, else 0 (quantize.h non_finite on each).
std::uint32_t any_non_finite(const float* x, std::size_t n) {
  constexpr std::size_t kLanes = 16;  // independent ORs: no chain through one accumulator
  std::uint32_t bad[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) bad[l] |= non_finite(x[i + l]);
  std::uint32_t any = 0;
  for (; i < n; ++i) any |= non_finite(x[i]);
  for (const std::uint32_t b : bad) any |= b;
  return any;
}

constexpr std::size_t kFiniteBlock = std::size_t{1} << 15;  // values per task

}  // namespace

bool all_finite(const float* x, std::size_t n) {
  std::atomic<std::uint32_t> bad{0};
  parallel_for(ceil_div(n, kFiniteBlock), [&](std::size_t t) {
    const std::size_t i0 = t * kFiniteBlock;
    if (any_non_finite(x + i0, std::min(kFiniteBlock, n - i0))) bad.store(1, std::memory_order_relaxed);
  });
  return bad.load() == 0;
}

PoolColumns pool_columns(const ConvGeometry& g) {
  PoolColumns pc;
  pc.lo.resize(g.kw), pc.hi.resize(g.kw), pc.off.resize(g.kw);
  pc.sw = g.sw, pc.width = g.width, pc.out_w = g.out_w;
  for (std::size_t j = 0; j < g.kw; ++j) {
    pc.off[j] = static_cast<long>(j * g.dw) - static_cast<long>(g.pw);
    tap_range(pc.off[j], g.sw, g.width, g.out_w, pc.lo[j], pc.hi[j]);
  }
  return pc;
}

void max_pool2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* floor, std::size_t nfloor,
                float* y) {
  const std::size_t H = g.height, W = g.width, OH = g.out_h, OW = g.out_w, C = g.channels;
  // Tasks of whole planes, each plane with its floor.
  const auto each_plane = [&](auto&& fn) {
    parallel_for_items(g.batch * C, planes_per_task(H * W), [&](std::size_t plane) {
      fn(plane, floor ? floor[nfloor == 1 ? 0 : plane % C] : 0.0f);
    });
  };
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1 &&
      2 * OH <= H && 2 * OW <= W) {
    // 2 x 2 windows at stride 2 (VGG's and most CNNs' pools): every window inside x, one pass.
    each_plane([&](std::size_t plane, float fl) {
      kt.pool2x2_plane(x + plane * H * W, W, OH, OW, floor != nullptr, fl, y + plane * OH * OW);
    });
    return;
  }
  const PoolColumns pc = pool_columns(g);
  each_plane([&](std::size_t plane, float fl) {
    thread_local std::vector<float> row;
    thread_local std::vector<const float*> rows;
    if (row.size() < W) row.resize(W);
    rows.resize(g.kh);
    const float* src = x + plane * H * W;
    for (std::size_t oy = 0; oy < OH; ++oy) {
      for (std::size_t i = 0; i < g.kh; ++i) {
        const long iy = static_cast<long>(oy * g.sh + i * g.dh) - static_cast<long>(g.ph);
        rows[i] = iy < 0 || iy >= static_cast<long>(H) ? nullptr : src + static_cast<std::size_t>(iy) * W;
      }
      kt.pool_row(rows.data(), g.kh, pc, floor ? &fl : nullptr, 1, false, row.data(), y + (plane * OH + oy) * OW, 1,
                  0, 0);
    }
  });
}

}  // namespace horq
