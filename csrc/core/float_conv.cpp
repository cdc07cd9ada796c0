// float_conv2d (float_conv.h): the plan and each image's padded phase copy, then one task per output row on the
// path's row kernel; float_conv2d_pool: the same rows through a ring per task, pooled as they come. With Winograd
// tiles (float_conv_winograd.h) the same two drivers run on tile rows, three output rows at a time.
#include "core/float_conv.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/dispatch.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"
#include "core/isa_local.h"
#include "core/layer.h"
#include "core/pool.h"
#include "core/threadpool.h"

namespace horq {

namespace {

constexpr std::size_t kCopyTaskFloats = 8192;  // input floats per task of the padded phase copy
constexpr std::size_t kGroupedChunk = 16;  // output channels of a grouped convolution per pass over a band's rows
constexpr std::size_t kGroupedRows = 8;    // and its output rows per copy of the input rows they read
constexpr std::size_t kDepthwiseCopyFloats = 4096;   // a depthwise task's copy of one channel's rows: 16 KB, in L1
constexpr std::size_t kDepthwiseTaskOutputs = 4096;  // and its outputs at least (a 7x7 map's channel is 49)

// Floats of one column phase of a padded row in the copy: every padded column of the phase and what the widest vector
// block reads past the last output pixel (the kernels compute whole vectors; the copy's zeros feed the unused lanes).
std::size_t phase_row_floats(const ConvGeometry& g) {
  const std::size_t wp = g.width + 2 * g.pw, sw = g.sw;
  const std::size_t vec_cols = ceil_div(g.out_w, kFloatConvMaxLanes) * kFloatConvMaxLanes;
  return std::max(ceil_div(wp, sw), (g.kw - 1) * g.dw / sw + vec_cols);
}

// The plan of a call (float_conv.h) of `groups` groups and the size of one image's padded phase copy.
FloatConvPlan make_plan(const ConvGeometry& g, const float* w, std::size_t m, const float* bias, const float* floor,
                        const float* ceiling, std::size_t groups, std::size_t& image) {
  const std::size_t C = g.channels / groups, taps = g.kh * g.kw;  // C: one group's input channels
  const std::size_t hp = g.height + 2 * g.ph, sw = g.sw, u = phase_row_floats(g);
  image = g.channels * hp * sw * u;

  FloatConvPlan p;
  p.k = C * taps, p.m = m;
  if (groups > 1) {  // a group's channels are C * hp * sw * u floats of the copy
    p.group_out = m / groups;
    p.channel_offset.resize(m);
    for (std::size_t o = 0; o < m; ++o)
      p.channel_offset[o] = static_cast<std::int64_t>(o / p.group_out * C * hp * sw * u);
  }
  p.oh = g.out_h, p.ow = g.out_w, p.y_plane = g.out_h * g.out_w, p.row_step = g.sh * sw * u;
  p.bias = bias, p.floor = floor, p.ceiling = ceiling;
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

// One input row of W floats into its two column phases (stride 2) at dst and dst + u: padded column pc = j + pw
// (src[j]) to phase pc % 2 at pc / 2. Eight floats a step by SSE2 shuffles where available (a per-float loop had been
// most of a stride-2 depthwise layer's call), the rest one by one; the same floats either way.
void copy_row2(const float* src, std::size_t W, std::size_t pw, float* dst, std::size_t u) {
  // src[2 i] and src[2 i + 1] go to phases a and 1 - a, at i + o0 and i + o1.
  const std::size_t a = pw % 2, o0 = pw / 2, o1 = (pw + 1) / 2;
  float* even = dst + a * u + o0;        // src[2 i]
  float* odd = dst + (1 - a) * u + o1;   // src[2 i + 1]
  std::size_t i = 0;
#if defined(__SSE2__)
  for (; 2 * i + 8 <= W; i += 4) {
    const __m128 lo = _mm_loadu_ps(src + 2 * i), hi = _mm_loadu_ps(src + 2 * i + 4);
    _mm_storeu_ps(even + i, _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
    _mm_storeu_ps(odd + i, _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
  }
#endif
  for (; 2 * i < W; ++i) {
    even[i] = src[2 * i];
    if (2 * i + 1 < W) odd[i] = src[2 * i + 1];
  }
}

// Input row src (W floats) into padded row dst of the copy: padded column pc = v sw + ph holds src[pc - pw], phase ph's
// columns at dst + ph * u; the padding columns are left as they are.
[[gnu::always_inline]] inline void copy_row(const float* src, const ConvGeometry& g, std::size_t u, float* dst) {
  const std::size_t W = g.width, sw = g.sw;
  if (sw == 1) {  // one phase: the row as it is (inline: a depthwise layer's rows are a few dozen floats)
    float* out = dst + g.pw;
    std::size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= W; i += 8) {
      _mm_storeu_ps(out + i, _mm_loadu_ps(src + i));
      _mm_storeu_ps(out + i + 4, _mm_loadu_ps(src + i + 4));
    }
#endif
    for (; i < W; ++i) out[i] = src[i];
  } else if (sw == 2) {
    copy_row2(src, W, g.pw, dst, u);
  } else {
    for (std::size_t ph = 0; ph < sw; ++ph) {
      const std::size_t v0 = g.pw > ph ? ceil_div(g.pw - ph, sw) : 0, v1 = ceil_div(g.pw + W - ph, sw);
      float* __restrict out = dst + ph * u;
      for (std::size_t v = v0; v < v1; ++v) out[v] = src[v * sw + ph - g.pw];
    }
  }
}

// For up to ~32 MB of images at a time (a large batch of large images would otherwise double the input's
// memory): their padded phase copies, then run(n0, nb, xp) for images [n0, n0 + nb) with xp their copies.
template <class Run>
void each_chunk(const float* x, const ConvGeometry& g, std::size_t image, Run&& run) {
  const std::size_t C = g.channels, H = g.height, W = g.width, hp = H + 2 * g.ph, sw = g.sw;
  const std::size_t u = image / (C * hp * sw);
  const std::size_t chunk = std::max<std::size_t>(1, (std::size_t{32} << 20) / (image * sizeof(float)));
  std::vector<float, UninitAllocator<float>> xp(std::min(chunk, g.batch) * image);  // zeroed per chunk below
  for (std::size_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const std::size_t nb = std::min(chunk, g.batch - n0);
    std::fill(xp.begin(), xp.begin() + static_cast<std::ptrdiff_t>(nb * image), 0.0f);
    // Input rows t (image, channel, row), several per task: a row is a few dozen floats, less than what
    // handing a task to another thread costs. A task walks its rows with the row's plane (image, channel) and
    // index counted along (a depthwise layer's 14-float rows had cost three divisions each).
    const std::size_t rows = nb * C * H, per_task = std::max<std::size_t>(1, kCopyTaskFloats / W);
    parallel_for(ceil_div(rows, per_task), [&](std::size_t task) {
      const std::size_t t0 = task * per_task, t1 = std::min(rows, t0 + per_task);
      std::size_t q = t0 / H, r = t0 % H;  // plane n * C + c of the copy's images, input row
      for (std::size_t t = t0; t < t1; ++t) {
        copy_row(x + (n0 * C * H + t) * W, g, u, xp.data() + ((q * hp + r + g.ph) * sw) * u);
        if (++r == H) r = 0, ++q;
      }
    });
    run(n0, nb, xp.data());
  }
}

// Padded rows [r0, r1) of input channels [c0, c1) of image x (C x H x W) into dst, laid out as each_chunk's copy of
// one image from channel c0 and row r0 on (channel c's padded row r, phase ph at (((c - c0) hp + r - r0) sw + ph) u),
// each row written whole: its values and the zeros of its padding and slack, so nothing else of dst need be zeroed.
// With `zeroed` (dst's padding columns and slack hold zeros already) a row of input values gets its values only;
// padding rows are still written whole.
void copy_rows(const float* x, const ConvGeometry& g, std::size_t u, std::size_t c0, std::size_t c1, std::size_t r0,
               std::size_t r1, float* dst, bool zeroed = false) {
  const std::size_t H = g.height, W = g.width, hp = H + 2 * g.ph, sw = g.sw;
  for (std::size_t c = c0; c < c1; ++c)
    for (std::size_t r = r0; r < r1; ++r) {
      float* row = dst + ((c - c0) * hp + r - r0) * sw * u;
      const bool values = r >= g.ph && r < g.ph + H;  // else a padding row
      if (!values || !zeroed) std::fill_n(row, sw * u, 0.0f);
      if (values) copy_row(x + (c * H + r - g.ph) * W, g, u, row);
    }
}

// The bands of consecutive rows (output rows, or tile rows) an unpooled call's tasks take per image: one at one thread,
// else 4 per thread. With one row per task, neighbouring rows went to different threads, which then wrote the cache
// lines two rows share in every channel (2 threads ran a 32x32 stem slower than 1).
std::size_t row_bands(std::size_t rows) {
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  return std::min(rows, threads == 1 ? std::size_t{1} : 4 * threads);
}

// The pooled rows (pool geometry pg over a convolution's m x out_h x out_w output) of images [n0, n0 + nb), into
// y. Bands of pooled rows per image: one at one thread (every conv row computed once), else one per thread, split over
// the images (a band recomputes the conv rows it shares with the band before it: with the Winograd tiles, a whole
// tile row, 3 of ResNet-18's 112 conv rows, so 2 bands per thread did ~8% more work at 2 threads than 1 band;
// `HORQ_NUM_THREADS=2 profile_float_conv_core "" 1.5 1`, fastest calls, 0.643-0.651 -> 0.614-0.619 ms, docs/KERNELS.md
// round 24). Each task's conv rows go through a ring of
// ring_rows rows of `width` floats per channel (conv row r in slot r % ring_rows, channel c's rows ring_rows * width
// floats apart): fill(n, first, last, ring, next) puts the conv rows up to `last` that are not there yet into it,
// `next` its own progress within the task (-1 at the start of a band); rows below `first` are not read again. The
// rows are the same whichever task computes them, so the output does not depend on the thread count. no_nan: the
// conv rows hold no NaN (pool_row_fn). The ring starts on a cache line: a std::vector's floats start 16 bytes past
// one, and then every 64-byte load of the pool and store of the Winograd tiles (whose rows are whole lines) touched
// two lines (ResNet-18's 224x224 stem, docs/KERNELS.md round 44).
template <class Fill>
void pool_bands(const KernelTable& kt, const ConvGeometry& g, const ConvGeometry& pg, std::size_t m,
                const float* pool_floor, std::size_t npool_floor, float* y, std::size_t n0, std::size_t nb,
                std::size_t ring_rows, std::size_t width, bool no_nan, Fill&& fill) {
  const std::size_t OH = g.out_h, POH = pg.out_h, POW = pg.out_w, span = (pg.kh - 1) * pg.dh + 1;
  const PoolColumns pc = pool_columns(pg);
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t bands = std::min(POH, ceil_div(threads, nb));
  const std::size_t per_band = ceil_div(POH, bands);
  parallel_for(nb * bands, [&](std::size_t t) {
    const std::size_t n = t / bands, py0 = t % bands * per_band, py1 = std::min(POH, py0 + per_band);
    thread_local std::vector<float> ring_buf, scratch;
    thread_local std::vector<const float*> rows;
    if (ring_buf.size() < m * ring_rows * width + kLineFloats) ring_buf.resize(m * ring_rows * width + kLineFloats);
    float* const ring = line_start(ring_buf.data());
    if (scratch.size() < g.out_w) scratch.resize(g.out_w);
    rows.resize(pg.kh);
    long next = -1;
    for (std::size_t py = py0; py < py1; ++py) {
      const long first = static_cast<long>(py * pg.sh) - static_cast<long>(pg.ph);
      fill(n, first, std::min(first + static_cast<long>(span) - 1, static_cast<long>(OH) - 1), ring, next);
      for (std::size_t i = 0; i < pg.kh; ++i) {  // channel 0's rows; channel c's are c * ring_rows * width further
        const long iy = first + static_cast<long>(i * pg.dh);
        rows[i] = iy < 0 || iy >= static_cast<long>(OH)
                      ? nullptr
                      : ring + static_cast<std::size_t>(iy) % ring_rows * width;
      }
      kt.pool_row(rows.data(), pg.kh, pc, pool_floor, npool_floor, no_nan, scratch.data(),
                  y + ((n0 + n) * m * POH + py) * POW, m, ring_rows * width, POH * POW);
    }
  });
}

// ---- Winograd tiles ----

// Whether any of the n values at v (none when v is nullptr) is NaN.
bool has_nan(const float* v, std::size_t n) {
  return v && std::any_of(v, v + n, [](float a) { return a != a; });
}

// Whether every one of n values is finite with |v| <= winograd::kLimit.
bool within_limit(const float* v, std::size_t n) {
  unsigned char bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= !(std::fabs(v[i]) <= winograd::kLimit);
  return bad == 0;
}

// U = G w' G^T per output and phase channel (float_conv_winograd.h), for weights w of geometry g, without the phase
// channels whose U is zero at an element for every output (WinogradWeights).
WinogradWeights transform_weights(const ConvGeometry& g, const float* w, std::size_t m) {
  using namespace winograd;
  const std::size_t s = g.sh, C = g.channels, cq = C * s * s, R = kFloatConvRows, m4 = ceil_div(m, R);
  std::vector<float> u(kXi * m4 * cq * R, 0.0f);  // every phase channel: 36 x m4 x cq x R
  for (std::size_t o = 0; o < m; ++o)
    for (std::size_t c2 = 0; c2 < cq; ++c2) {
      const std::size_t c = c2 / (s * s), pr = c2 / s % s, pc = c2 % s;
      double sub[kTap][kTap] = {};  // w'[a][b] = w[o][c][a s + pr][b s + pc]
      for (std::size_t a = 0; a < kTap; ++a)
        for (std::size_t b = 0; b < kTap; ++b)
          if (a * s + pr < g.kh && b * s + pc < g.kw)
            sub[a][b] = w[((o * C + c) * g.kh + a * s + pr) * g.kw + b * s + pc];
      double gw[kTile][kTap] = {};  // G w'
      for (std::size_t k = 0; k < kTile; ++k)
        for (std::size_t b = 0; b < kTap; ++b)
          for (std::size_t a = 0; a < kTap; ++a) gw[k][b] += kG[k][a] * sub[a][b];
      for (std::size_t k = 0; k < kTile; ++k)
        for (std::size_t l = 0; l < kTile; ++l) {
          double v = 0.0;
          for (std::size_t b = 0; b < kTap; ++b) v += gw[k][b] * kG[l][b];
          u[(((k * kTile + l) * m4 + o / R) * cq + c2) * R + o % R] = static_cast<float>(v);
        }
    }
  WinogradWeights out;
  const auto full = [&](std::size_t xi, std::size_t b, std::size_t c2) {
    return u.data() + ((xi * m4 + b) * cq + c2) * R;
  };
  for (std::size_t xi = 0; xi < kXi; ++xi) {
    out.offset[xi] = out.u.size();
    for (std::size_t c2 = 0; c2 < cq; ++c2) {
      bool zero = true;
      for (std::size_t b = 0; b < m4; ++b)
        for (std::size_t r = 0; r < R; ++r) zero = zero && full(xi, b, c2)[r] == 0.0f;
      if (!zero) out.channels[xi][out.count[xi]++] = static_cast<std::uint8_t>(c2);
    }
    for (std::size_t b = 0; b < m4; ++b)
      for (std::size_t t = 0; t < out.count[xi]; ++t) {
        const float* src = full(xi, b, out.channels[xi][t]);
        out.u.insert(out.u.end(), src, src + R);
      }
  }
  return out;
}

// transform_weights, kept for the last few weight tensors (a network's layer calls with the same weights every time:
// the transform is ~4% of a ResNet stem's call) and matched by content, so changed weights are transformed again.
std::shared_ptr<const WinogradWeights> transformed_weights(const ConvGeometry& g, const float* w, std::size_t m) {
  struct Entry {
    std::size_t m, channels, kh, kw, stride;
    std::vector<float> w;
    std::shared_ptr<const WinogradWeights> u;
  };
  constexpr std::size_t kKept = 4;
  static std::mutex mu;
  static std::vector<Entry> recent;  // most recently used last
  const std::size_t n = m * g.channels * g.kh * g.kw;
  const auto same = [&](const Entry& e) {
    return e.m == m && e.channels == g.channels && e.kh == g.kh && e.kw == g.kw && e.stride == g.sh &&
           std::memcmp(e.w.data(), w, n * sizeof(float)) == 0;
  };
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto hit = std::find_if(recent.begin(), recent.end(), same);
    if (hit != recent.end()) {
      std::rotate(hit, hit + 1, recent.end());
      return recent.back().u;
    }
  }
  auto u = std::make_shared<const WinogradWeights>(transform_weights(g, w, m));
  const std::lock_guard<std::mutex> lock(mu);
  recent.push_back(Entry{m, g.channels, g.kh, g.kw, g.sh, std::vector<float>(w, w + n), u});
  if (recent.size() > kKept) recent.erase(recent.begin());
  return u;
}

}  // namespace

// The tiles' plan (float_conv_winograd.h): the copy's sizes and the transformed weights.
WinogradPlan make_winograd_plan(const ConvGeometry& g, const float* w, std::size_t m, const float* bias,
                                const float* floor, const float* ceiling) {
  using namespace winograd;
  WinogradPlan p;
  const std::size_t s = g.sh;
  p.stride = s, p.cq = g.channels * s * s, p.m = m;
  p.tile_rows = ceil_div(g.out_h, kOut);
  p.tiles_x = ceil_div(g.out_w, kOut);
  p.tile_cols = ceil_div(p.tiles_x, kFloatConvMaxLanes) * kFloatConvMaxLanes;
  p.q_rows = kOut * p.tile_rows + kTile - kOut;  // tile row ty reads rows kOut ty .. kOut ty + kTile - 1
  p.q_cols = p.tile_cols + 1;
  p.bias = bias, p.floor = floor, p.ceiling = ceiling;
  p.weights = transformed_weights(g, w, m);
  static std::atomic<std::uint64_t> plans{0};
  p.id = ++plans;
  return p;
}

namespace {

// One padded input row (image n's channel c, padded row r = u s + pr) into the copy: its s column phases pc, each as
// kOut runs rho of q_cols floats (float_conv_winograd.h: Q[c'][u][kOut w + rho] = padded column (kOut w + rho) s +
// pc). Padded column step w + j (step = kOut s) goes to phase j % s, run j / s, float w: read in order, STEP at a
// time, each to its own run. Returns whether any value read is NaN, Inf or above winograd::kLimit. On x86-64 (SSE2,
// its baseline) a stride-2 row's inside goes four steps at a time through a 4 x 4 transpose and two shuffles: the copy
// was 7% of the ResNet-18 stem with its pool one float at a time, 5% so (`perf`, profile_float_conv_core, Zen 4).
template <std::size_t STEP>
unsigned char copy_row(const float* src, std::size_t W, std::size_t pw, std::size_t qc, float* const* runs) {
  unsigned char out_of_range = 0;
  const auto put = [&](std::size_t w, std::size_t j, float value) { runs[j][w] = value; };
  // w in [w0, w1): every padded column step w + j inside the input (pw <= step w, step w + step - 1 < W + pw).
  const std::size_t w0 = ceil_div(pw, STEP), w1 = std::max(w0, std::min(qc, (W + pw) / STEP));
  const auto edge = [&](std::size_t w) {
    for (std::size_t j = 0; j < STEP; ++j) {
      const std::size_t pcol = STEP * w + j;
      const float value = pcol >= pw && pcol - pw < W ? src[pcol - pw] : 0.0f;
      out_of_range |= !(std::fabs(value) <= winograd::kLimit);
      put(w, j, value);
    }
  };
  for (std::size_t w = 0; w < std::min(w0, qc); ++w) edge(w);
  std::size_t w = w0;
#if defined(__SSE2__)
  if constexpr (STEP == 6) {  // a stride-2 stem: four steps at a time, as 4 rows of 6 floats transposed into 6 runs
    const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)), limit = _mm_set1_ps(winograd::kLimit);
    __m128 bad = _mm_setzero_ps();  // lanes of |value| > limit or NaN (not <=), as the scalar test below
    const auto check = [&](__m128 v) { bad = _mm_or_ps(bad, _mm_cmpnle_ps(_mm_and_ps(v, magnitude), limit)); };
    const auto pair = [](const float* a) { return _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(a))); };
    for (; w + 4 <= w1; w += 4) {
      const float* at = src + STEP * w - pw;
      __m128 r0 = _mm_loadu_ps(at), r1 = _mm_loadu_ps(at + 6), r2 = _mm_loadu_ps(at + 12), r3 = _mm_loadu_ps(at + 18);
      const __m128 s01 = _mm_movelh_ps(pair(at + 4), pair(at + 10));   // at[4] at[5] at[10] at[11]
      const __m128 s23 = _mm_movelh_ps(pair(at + 16), pair(at + 22));  // at[16] at[17] at[22] at[23]
      check(r0), check(r1), check(r2), check(r3), check(s01), check(s23);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j = at[j], at[6 + j], at[12 + j], at[18 + j]
      _mm_storeu_ps(runs[0] + w, r0);
      _mm_storeu_ps(runs[1] + w, r1);
      _mm_storeu_ps(runs[2] + w, r2);
      _mm_storeu_ps(runs[3] + w, r3);
      _mm_storeu_ps(runs[4] + w, _mm_shuffle_ps(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)));
      _mm_storeu_ps(runs[5] + w, _mm_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    out_of_range |= _mm_movemask_ps(bad) != 0;
  }
#endif
  for (; w < w1; ++w) {
    const float* at = src + STEP * w - pw;
    for (std::size_t j = 0; j < STEP; ++j) {
      out_of_range |= !(std::fabs(at[j]) <= winograd::kLimit);
      put(w, j, at[j]);
    }
  }
  for (w = w1; w < qc; ++w) edge(w);
  return out_of_range;
}

// For up to ~32 MB of images at a time: their copies (float_conv_winograd.h's layout), then run(n0, nb, q) for
// images [n0, n0 + nb) with q their copies; where a copied value is NaN, Inf or above winograd::kLimit,
// direct(n0, nb) for those images instead (the tiles would spread it, or overflow).
template <class Run, class Direct>
void each_winograd_chunk(const float* x, const ConvGeometry& g, const WinogradPlan& p, Run&& run, Direct&& direct) {
  constexpr std::size_t kOut = winograd::kOut;
  const std::size_t C = g.channels, H = g.height, W = g.width, s = p.stride, qc = p.q_cols, step = kOut * s;
  const std::size_t image = p.image(), prows = p.q_rows * s;  // padded rows per channel in the copy
  const std::size_t chunk = std::max<std::size_t>(1, (std::size_t{32} << 20) / (image * sizeof(float)));
  // Not zeroed first: the copy writes every float of it (zeros outside the input included).
  const std::unique_ptr<float[]> q(new float[std::min(chunk, g.batch) * image]);
  const std::size_t per_task = std::max<std::size_t>(1, kCopyTaskFloats / (step * qc));
  std::vector<unsigned char> bad;
  for (std::size_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const std::size_t nb = std::min(chunk, g.batch - n0), rows = nb * C * prows;
    bad.assign(ceil_div(rows, per_task), 0);
    // Padded rows t = (image, c, u s + pr), per_task per task: s phases x kOut runs of q_cols floats each.
    parallel_for(bad.size(), [&](std::size_t task) {
      unsigned char out_of_range = 0;
      float* runs[kOut * 2];  // run j: phase j % s, rho j / s (s <= 2)
      for (std::size_t t = task * per_task; t < std::min(rows, (task + 1) * per_task); ++t) {
        const std::size_t n = t / (C * prows), c = t / prows % C, prow = t % prows, u = prow / s, pr = prow % s;
        for (std::size_t j = 0; j < step; ++j) {
          const std::size_t c2 = (c * s + pr) * s + j % s;
          runs[j] = q.get() + n * image + ((c2 * p.q_rows + u) * kOut + j / s) * qc;
        }
        const long r = static_cast<long>(prow) - static_cast<long>(g.ph);
        if (r < 0 || r >= static_cast<long>(H)) {
          for (std::size_t j = 0; j < step; ++j) std::fill(runs[j], runs[j] + qc, 0.0f);
          continue;
        }
        const float* src = x + ((n0 + n) * C + c) * H * W + static_cast<std::size_t>(r) * W;
        out_of_range |= step == 2 * kOut ? copy_row<2 * kOut>(src, W, g.pw, qc, runs)
                                         : copy_row<kOut>(src, W, g.pw, qc, runs);
      }
      bad[task] = out_of_range;
    });
    if (std::none_of(bad.begin(), bad.end(), [](unsigned char b) { return b != 0; })) {
      run(n0, nb, q.get());
    } else {
      direct(n0, nb);
    }
  }
}

// Whether this call tries the tiles (FloatConvAlgorithm, float_conv.h; the inputs are checked as they are copied).
bool use_winograd(const KernelTable& kt, const ConvGeometry& g, const float* w, std::size_t m,
                  FloatConvAlgorithm algorithm) {
  if (algorithm == FloatConvAlgorithm::direct) return false;
  if (algorithm == FloatConvAlgorithm::winograd && !float_conv_winograd_geometry(g))
    throw std::invalid_argument(
        "float_conv2d: the Winograd tiles take dilation 1, one stride of 1 or 2, kernels of at most 4 x stride and at "
        "most 16 channels x stride^2; got " + std::to_string(g.channels) + " channels, kernel " +
        std::to_string(g.kh) + "x" + std::to_string(g.kw) + ", stride (" + std::to_string(g.sh) + ", " +
        std::to_string(g.sw) + "), dilation (" + std::to_string(g.dh) + ", " + std::to_string(g.dw) + ")");
  if (algorithm == FloatConvAlgorithm::automatic &&
      (std::strcmp(kt.name, "generic") == 0 || !float_conv_winograd_geometry(g) || !float_conv_winograd_pays(g)))
    return false;
  return within_limit(w, m * g.channels * g.kh * g.kw);
}

// Images [n0, n0 + nb) of x's batch as a call of their own (their input and output offsets, batch nb).
ConvGeometry sub_batch(const ConvGeometry& g, std::size_t nb) {
  ConvGeometry sub = g;
  sub.batch = nb;
  return sub;
}

void winograd_conv2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                     const float* bias, const float* floor, const float* ceiling, float* y) {
  const WinogradPlan p = make_winograd_plan(g, w, m, bias, floor, ceiling);
  const std::size_t OH = g.out_h, OW = g.out_w, plane = OH * OW, wd = p.width(), image = p.image();
  const std::size_t bands = row_bands(p.tile_rows), per_band = ceil_div(p.tile_rows, bands);
  each_winograd_chunk(x, g, p, [&](std::size_t n0, std::size_t nb, const float* q) {
    parallel_for(nb * bands, [&](std::size_t t) {
      const std::size_t n = t / bands, ty0 = t % bands * per_band;
      constexpr std::size_t kOut = winograd::kOut;
      thread_local std::vector<float> buf;  // kOut rows x m channels x width
      if (buf.size() < kOut * m * wd) buf.resize(kOut * m * wd);
      float* rows[kOut];
      for (std::size_t i = 0; i < kOut; ++i) rows[i] = buf.data() + i * wd;
      for (std::size_t ty = ty0; ty < std::min(p.tile_rows, ty0 + per_band); ++ty) {
        kt.float_conv_tiles(p, q + n * image, ty, rows, kOut * wd);
        for (std::size_t i = 0; i < kOut && kOut * ty + i < OH; ++i)
          for (std::size_t o = 0; o < m; ++o)
            std::copy_n(rows[i] + o * kOut * wd, OW, y + ((n0 + n) * m + o) * plane + (kOut * ty + i) * OW);
      }
    });
  }, [&](std::size_t n0, std::size_t nb) {
    float_conv2d(kt, x + n0 * g.channels * g.height * g.width, sub_batch(g, nb), w, m, bias, floor, ceiling,
                 y + n0 * m * plane, FloatConvAlgorithm::direct);
  });
}

void winograd_conv2d_pool(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w,
                          std::size_t m, const float* bias, const float* floor, const float* ceiling,
                          const ConvGeometry& pg, const float* pool_floor, std::size_t npool_floor, float* y) {
  constexpr std::size_t kOut = winograd::kOut;
  const WinogradPlan p = make_winograd_plan(g, w, m, bias, floor, ceiling);
  const std::size_t POH = pg.out_h, POW = pg.out_w, wd = p.width(), image = p.image();
  // A pooled row reads `span` conv rows; a tile row writes kOut more. After the tile rows up to conv row e, the rows
  // still to be read are > e - span, and the next tile row writes e + 1 .. e + kOut, whose slots held rows <= e +
  // kOut - ring = e - span: none still needed.
  const std::size_t ring_rows = (pg.kh - 1) * pg.dh + 1 + kOut;
  // The tiles' outputs are never NaN where bias, floor and ceiling hold none (their inputs and weights are finite and
  // far from overflow, float_conv_winograd.h): the pool then skips NaN's blend (on an AMD EPYC Zen 4 the pool's share
  // of the stem in `perf` of profile_float_conv_core, 16.8% -> 13.3%; docs/KERNELS.md round 18).
  const bool no_nan = !has_nan(bias, m) && !has_nan(floor, m) && !has_nan(ceiling, m);
  each_winograd_chunk(x, g, p, [&](std::size_t n0, std::size_t nb, const float* q) {
    // next: the first tile row not yet computed.
    pool_bands(kt, g, pg, m, pool_floor, npool_floor, y, n0, nb, ring_rows, wd, no_nan,
               [&](std::size_t n, long first, long last, float* ring, long& next) {
                 if (next < 0) next = std::max(first, 0L) / static_cast<long>(kOut);
                 for (; next * static_cast<long>(kOut) <= last; ++next) {
                   const std::size_t ty = static_cast<std::size_t>(next);
                   float* out[kOut];
                   for (std::size_t i = 0; i < kOut; ++i) out[i] = ring + (kOut * ty + i) % ring_rows * wd;
                   kt.float_conv_tiles(p, q + n * image, ty, out, ring_rows * wd);
                 }
               });
  }, [&](std::size_t n0, std::size_t nb) {
    float_conv2d_pool(kt, x + n0 * g.channels * g.height * g.width, sub_batch(g, nb), w, m, bias, floor, ceiling,
                      sub_batch(pg, nb), pool_floor, npool_floor, y + n0 * m * POH * POW, FloatConvAlgorithm::direct);
  });
}

}  // namespace

bool float_conv_winograd_geometry(const ConvGeometry& g) {
  const std::size_t s = g.sh;
  return g.dh == 1 && g.dw == 1 && g.sw == s && (s == 1 || s == 2) && g.kh <= winograd::kTap * s &&
         g.kw <= winograd::kTap * s && g.channels * s * s <= winograd::kMaxPhaseChannels;
}

bool float_conv_winograd_pays(const ConvGeometry& g) {
  // The tiles' 4 C s^2 multiply-adds per output and their transforms against the direct C kh kw: a ResNet stem
  // (7x7, stride 2: 147 -> 48) gains from 224x224 down to 64x64 inputs; a 3x3 stride-1 stem (27 -> 12) ran 1.7x slower
  // at 32x32, and so did the 7x7 stride-2 one on a 32x32 input (16 outputs a row: 6 tiles in a vector of 8)
  // (docs/KERNELS.md round 15).
  return 2 * g.kh * g.kw >= 5 * winograd::kTap * g.sh * g.sw && g.out_w >= 8 * winograd::kOut;
}

namespace {

// A grouped convolution's direct path (depthwise ones: depthwise_direct). Its channels read input channels of their
// own, so each task (an image's band of output rows) runs chunk by chunk of kGroupedChunk output channels and, within a
// chunk, kGroupedRows output rows at a time: it copies the padded input rows those read of the chunk's input channels
// into its own buffer (copy_rows, the layout of the plan's offsets from the chunk's first channel and the rows' first
// input row on, only those rows written, the same part of the buffer for every chunk and rows) and computes the rows
// from there. The copy stays in cache between its writing and its reading, where a whole image's padded copy
// (each_chunk: a depthwise layer's 96 x 112 x 112 input is 4.8 MB) went out to memory and back; the rows' input rows
// stay in L1 from one output row to the next. The same operations per output as each_chunk's copy gives.
void grouped_direct(const KernelTable& kt, const float* x, const ConvGeometry& g, const FloatConvPlan& p,
                    std::size_t image, std::size_t groups, std::size_t bands, std::size_t per_band, float* y) {
  const std::size_t m = p.m, C = g.channels, cg = C / groups, hp = g.height + 2 * g.ph;
  const std::size_t u = image / (C * hp * g.sw), plane = g.out_h * g.out_w;
  parallel_for(g.batch * bands, [&](std::size_t t) {
    const std::size_t n = t / bands, oy0 = t % bands * per_band, oy1 = std::min(g.out_h, oy0 + per_band);
    thread_local std::vector<float, UninitAllocator<float>> buf;
    const float* xn = x + n * C * g.height * g.width;
    float* yn = y + n * m * plane;
    for (std::size_t o0 = 0; o0 < m; o0 += kGroupedChunk) {
      const std::size_t o1 = std::min(m, o0 + kGroupedChunk);
      const std::size_t c0 = o0 / p.group_out * cg, c1 = ((o1 - 1) / p.group_out + 1) * cg;
      if (buf.size() < (c1 - c0) * hp * g.sw * u) buf.resize((c1 - c0) * hp * g.sw * u);
      // Bands of up to twice kGroupedRows rows in one go: fewer input rows copied twice (kh - sh a split).
      const std::size_t step = oy1 - oy0 <= 2 * kGroupedRows ? oy1 - oy0 : kGroupedRows;
      for (std::size_t a = oy0; a < oy1; a += step) {
        const std::size_t b = std::min(oy1, a + step);
        copy_rows(xn, g, u, c0, c1, a * g.sh, (b - 1) * g.sh + (g.kh - 1) * g.dh + 1, buf.data());
        for (std::size_t oy = a; oy < b; ++oy) kt.float_conv_row(p, buf.data(), oy - a, yn + oy * g.out_w, o0, o1);
      }
    }
  });
}

// A depthwise convolution (one input channel a group) on the path's depthwise kernel. Its items are (image, input
// channel, band of output rows), the rows in one band unless images x channels give fewer than 4 items a thread; a
// task takes a run of items of at least kDepthwiseTaskOutputs outputs. Per item, chunks of output rows (whole blocks of
// the kernels' 4 rows) whose padded input rows fit kDepthwiseCopyFloats are copied (copy_rows, values only; each input
// row once per chunk: a 112-wide stride-1 map's chunks of 32 rows copy 2 rows in 34 twice) and computed for each
// output channel of the input channel. An item's chunks go in order, so a kernel call may store whole vectors into the
// rows after its own up to the band's end.
void depthwise_direct(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                      const float* bias, const float* floor, const float* ceiling, float* y) {
  constexpr std::size_t R = 4;  // the kernels' rows a block: chunks of whole blocks
  const std::size_t C = g.channels, mult = m / C, s = g.sh, OH = g.out_h, OW = g.out_w, plane = OH * OW;
  const std::size_t span = (g.kh - 1) * g.dh + 1;  // padded rows an output row reads
  DepthwisePlan p;
  p.kh = g.kh, p.kw = g.kw, p.sh = s, p.ow = OW, p.u = phase_row_floats(g), p.row_floats = g.sw * p.u;
  p.w = w, p.bias = bias, p.floor = floor, p.ceiling = ceiling;
  p.shared3 = g.kh == 3 && g.kw == 3 && g.dh == 1 && g.dw == 1 && s == g.sw && (s == 1 || s == 2);
  for (std::size_t i = 0; i < g.kh; ++i)
    for (std::size_t j = 0; j < g.kw; ++j) {
      const std::size_t col = j * g.dw;
      p.koff.push_back(static_cast<std::int64_t>(i * g.dh * p.row_floats + col % g.sw * p.u + col / g.sw));
    }
  const std::size_t fit = kDepthwiseCopyFloats / p.row_floats;  // padded rows within the copy's size
  const std::size_t chunk = fit >= span ? std::max(R, ((fit - span) / s + 1) / R * R) : R;
  const std::size_t threads = static_cast<std::size_t>(get_num_threads()), planes = g.batch * C;
  const std::size_t want_bands = planes >= 4 * threads ? 1 : std::min(ceil_div(OH, R), ceil_div(4 * threads, planes));
  const std::size_t per_band = ceil_div(OH, want_bands), bands = ceil_div(OH, per_band), items = planes * bands;
  const std::size_t per_task = std::max<std::size_t>(1, kDepthwiseTaskOutputs / (per_band * OW * mult));
  const std::size_t copy = ((std::min(chunk, per_band) - 1) * s + span) * p.row_floats;
  static std::atomic<std::uint64_t> calls{0};
  const std::uint64_t call = ++calls;  // a thread's buffer is zeroed once per call
  parallel_for(ceil_div(items, per_task), [&](std::size_t task) {
    thread_local std::vector<float, UninitAllocator<float>> buf;
    if (buf.size() < copy) buf.resize(copy);
    // Zeros where no input value goes (the padding columns and slack of every row), the same floats for every chunk of
    // the call: then each chunk writes its rows' values only, and padding rows whole.
    thread_local std::uint64_t zeroed_for = 0;
    if (zeroed_for != call) std::fill_n(buf.data(), copy, 0.0f), zeroed_for = call;
    for (std::size_t item = task * per_task; item < std::min(items, (task + 1) * per_task); ++item) {
      const std::size_t n = item / bands / C, c = item / bands % C, oy0 = item % bands * per_band;
      const std::size_t oy1 = std::min(OH, oy0 + per_band);
      for (std::size_t a = oy0; a < oy1; a += chunk) {
        const std::size_t b = std::min(oy1, a + chunk);
        copy_rows(x + n * C * g.height * g.width, g, p.u, c, c + 1, a * s, (b - 1) * s + span, buf.data(), true);
        for (std::size_t o = c * mult; o < (c + 1) * mult; ++o) {
          float* yo = y + (n * m + o) * plane;
          kt.float_conv_depthwise(p, buf.data(), o, b - a, yo + a * OW, yo + oy1 * OW);
        }
      }
    }
  });
}

// Whether the call takes the Winograd tiles, after checking `groups` (which the tiles do not take).
bool tiles_for(const KernelTable& kt, const ConvGeometry& g, const float* w, std::size_t m, std::size_t groups,
               FloatConvAlgorithm algorithm) {
  if (groups == 0 || g.channels % groups != 0 || m % groups != 0)
    throw std::invalid_argument("float_conv2d: groups (" + std::to_string(groups) +
                                ") must divide the input channels (" + std::to_string(g.channels) +
                                ") and the output channels (" + std::to_string(m) + ")");
  if (groups > 1 && algorithm == FloatConvAlgorithm::winograd)
    throw std::invalid_argument("float_conv2d: the Winograd tiles take groups = 1 only, got " + std::to_string(groups));
  return groups == 1 && use_winograd(kt, g, w, m, algorithm);
}

}  // namespace

void float_conv2d(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                  const float* bias, const float* floor, const float* ceiling, float* y, FloatConvAlgorithm algorithm,
                  std::size_t groups) {
  if (tiles_for(kt, g, w, m, groups, algorithm)) {
    winograd_conv2d(kt, x, g, w, m, bias, floor, ceiling, y);
    return;
  }
  if (groups > 1 && groups == g.channels) {
    depthwise_direct(kt, x, g, w, m, bias, floor, ceiling, y);
    return;
  }
  std::size_t image = 0;
  const FloatConvPlan p = make_plan(g, w, m, bias, floor, ceiling, groups, image);
  const std::size_t plane = g.out_h * g.out_w;
  const std::size_t bands = row_bands(g.out_h), per_band = ceil_div(g.out_h, bands);
  if (groups > 1) {
    grouped_direct(kt, x, g, p, image, groups, bands, per_band, y);
    return;
  }
  each_chunk(x, g, image, [&](std::size_t n0, std::size_t nb, const float* xp) {
    parallel_for(nb * bands, [&](std::size_t t) {
      const std::size_t n = t / bands, oy0 = t % bands * per_band;
      for (std::size_t oy = oy0; oy < std::min(g.out_h, oy0 + per_band); ++oy)
        kt.float_conv_row(p, xp + n * image, oy, y + (n0 + n) * m * plane + oy * g.out_w, 0, m);
    });
  });
}

void float_conv2d_pool(const KernelTable& kt, const float* x, const ConvGeometry& g, const float* w, std::size_t m,
                       const float* bias, const float* floor, const float* ceiling, const ConvGeometry& pg,
                       const float* pool_floor, std::size_t npool_floor, float* y, FloatConvAlgorithm algorithm,
                       std::size_t groups) {
  if (tiles_for(kt, g, w, m, groups, algorithm)) {
    winograd_conv2d_pool(kt, x, g, w, m, bias, floor, ceiling, pg, pool_floor, npool_floor, y);
    return;
  }
  std::size_t image = 0;
  FloatConvPlan p = make_plan(g, w, m, bias, floor, ceiling, groups, image);
  const std::size_t OW = g.out_w;
  // The conv rows one pooled row reads span `span` rows: conv row r lives in slot r % span of a task's ring.
  const std::size_t span = (pg.kh - 1) * pg.dh + 1;
  p.y_plane = span * OW;
  each_chunk(x, g, image, [&](std::size_t n0, std::size_t nb, const float* xp) {
    // next: the first conv row not yet in the ring.
    pool_bands(kt, g, pg, m, pool_floor, npool_floor, y, n0, nb, span, OW, false,
               [&](std::size_t n, long first, long last, float* ring, long& next) {
                 for (long r = std::max({next, first, 0L}); r <= last; ++r) {
                   const std::size_t ur = static_cast<std::size_t>(r);
                   kt.float_conv_row(p, xp + n * image, ur, ring + ur % span * OW, 0, m);
                   next = r + 1;
                 }
               });
  });
}

}  // namespace horq
