// float_conv.h's row kernel on AVX-512: 16 pixels per register, blocks of 8 channels (two weight blocks) x up to 3
// registers (24 accumulators; a 112-pixel row is blocks of 3, 2 and 2 registers). Per tap 3 pixel loads serve 24
// multiply-adds (with 4 channels x 6 registers: 6 loads, often split across cache lines, for 24); measured on
// ResNet-18's 7x7 stem 2.10 -> 1.84 ms, a 64 -> 64 3x3 at 56x56 2.54 -> 2.24 ms (benchmarks/bench_float_conv.py
// shapes, 1 thread; 12 channels x 2 registers: 1.94 and 2.11 ms). The Winograd tiles: blocks of 8 channels x up to
// 3 registers of 16 tiles, and a row's last 1-8 tiles after whole registers with the next tile row's in one
// register (lanes 0-7 and 8-15; float_conv_tiles_avx512 keeps the next row's for its call), or on an 8-lane
// register (float_conv_avx2_reg.h) for a last tile row: the ResNet-18 stem's 38 tiles a row take 32 + 8 lanes of
// work instead of 48 (round 18: 1.77-1.88 -> 1.56-1.63 ms fastest for the stem with its pool on an AMD EPYC Zen 4,
// benchmarks/profile_float_conv_core.cpp, three alternated runs), and two rows' tails one 16-lane register instead of
// two 8-lane ones (round 20: 1.30-1.34 -> 1.27-1.29 ms fastest, six alternated pairs; docs/KERNELS.md).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/float_conv.h"
#include "core/float_conv_avx2_reg.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"
#include "core/isa_local.h"

namespace horq {
namespace {

struct Avx512 {
  static constexpr std::size_t kLanes = 16;
  using reg = __m512;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg set1(float a) { return _mm512_set1_ps(a); }
  static reg madd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, reg r) { _mm512_storeu_ps(p, r); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  // a0 b0 c0 a1 b1 c1 ... a15 b15 c15: output vector k holds floats 16 k .. 16 k + 15 of the run, float f from
  // source f % 3 at lane f / 3; one lane permute of each source per output vector, then two masked blends.
  static void store3(float* p, reg a, reg b, reg c) {
    alignas(64) static constexpr std::int32_t kIndex[3][16] = {
        {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5},
        {5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10},
        {10, 11, 11, 11, 12, 12, 12, 13, 13, 13, 14, 14, 14, 15, 15, 15}};
    // Lanes whose float comes from b (f % 3 == 1) and from c (f % 3 == 2), per output vector.
    static constexpr __mmask16 kFromB[3] = {0x2492, 0x9249, 0x4924}, kFromC[3] = {0x4924, 0x2492, 0x9249};
    for (int k = 0; k < 3; ++k) {
      const __m512i idx = _mm512_loadu_si512(kIndex[k]);
      const reg ab = _mm512_mask_blend_ps(kFromB[k], _mm512_permutexvar_ps(idx, a), _mm512_permutexvar_ps(idx, b));
      _mm512_storeu_ps(p + 16 * k, _mm512_mask_blend_ps(kFromC[k], ab, _mm512_permutexvar_ps(idx, c)));
    }
  }
  // A pair of tile rows (winograd::TilePair): lanes 0-7 from p, lanes 8-15 from p2 (masked loads: no float outside
  // the two halves is read).
  static reg load_pair(const float* p, const float* p2) {
    return _mm512_mask_blend_ps(0xff00, _mm512_maskz_loadu_ps(0x00ff, p), _mm512_maskz_loadu_ps(0xff00, p2 - 8));
  }
  // store3's 48 floats: the first 24 (lanes 0-7) at p, the last 24 at p2.
  static void store3_pair(float* p, float* p2, reg a, reg b, reg c) {
    alignas(64) float all[48];
    store3(all, a, b, c);
    const reg mid = _mm512_load_ps(all + 16);
    _mm512_storeu_ps(p, _mm512_load_ps(all));
    _mm512_mask_storeu_ps(p + 16, 0x00ff, mid);
    _mm512_mask_storeu_ps(p2 - 8, 0xff00, mid);
    _mm512_storeu_ps(p2 + 8, _mm512_load_ps(all + 32));
  }
};

// The tails' register blocks: 16 output channels x 1 vector (16 accumulators of the 32 registers; the AVX2 path's 16
// registers take 4 x 3). Against 8 channels, on 8-lane tails, the stem with its pool (`profile_float_conv_core avx512
// 1.5 1`, eight alternated pairs, docs/KERNELS.md round 20): the fastest call 0.5-6% faster in every pair.
constexpr int kHalfBlocks = 4;

}  // namespace

void float_conv_row_avx512(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                           std::size_t o_end) {
  float_conv::row<Avx512, 2, 3>(p, xp, oy, y, o_begin, o_end);
}

// Depthwise: blocks of 4 rows x 1 vector, as the AVX2 path measured best (not timed on AVX-512 hardware).
void float_conv_depthwise_avx512(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                                 const float* y_end) {
  float_conv::depthwise<Avx512, 4, 1, 4, 2>(p, xp, o, rows, y, y_end);
}

namespace {

// The 8-lane tail's outputs of the next tile row, computed with this one's (tiles on a pair of rows), kept per
// thread for the call that asks for that row: the plan (unique per call), the image's copy and the row.
struct TailRow {
  std::uint64_t plan = 0;
  const float* q = nullptr;
  std::size_t ty = 0;
  bool valid = false;
  LocalVector<float> out;  // kWinogradOut x m x kTailFloats
};

constexpr std::size_t kTailFloats = kWinogradOut * Avx512::kLanes / 2;  // what half a register's store3 writes

[[gnu::noinline]] TailRow& tail_row() {
  thread_local TailRow t;
  return t;
}

}  // namespace

void float_conv_tiles_avx512(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                             std::size_t ch_stride) {
  // A row's last tiles that fill at most half a register: with the next tile row's last tiles in one zmm (12 of 16
  // lanes for a 112-pixel row's last 6 tiles: 32 + 6 per row, not 32 + 8 on an 8-lane register), or on an 8-lane
  // register for a last tile row.
  const std::size_t whole = p.tiles_x / Avx512::kLanes * Avx512::kLanes, rest = p.tiles_x - whole;
  if (rest == 0 || rest > float_conv_avx2::Avx2::kLanes || whole == 0) {
    winograd::tiles<Avx512, 2, 3>(p, q, ty, rows, ch_stride, 0, p.tiles_x);
    return;
  }
  winograd::tiles<Avx512, 2, 3>(p, q, ty, rows, ch_stride, 0, whole);
  TailRow& t = tail_row();
  const std::size_t x0 = kWinogradOut * whole;
  if (t.valid && t.plan == p.id && t.q == q && t.ty == ty) {
    for (std::size_t i = 0; i < kWinogradOut; ++i)
      for (std::size_t o = 0; o < p.m; ++o)
        std::copy_n(t.out.data() + (i * p.m + o) * kTailFloats, kTailFloats, rows[i] + o * ch_stride + x0);
    t.valid = false;
    return;
  }
  if (ty + 1 < p.tile_rows) {
    if (t.out.size() < kWinogradOut * p.m * kTailFloats) t.out.resize(kWinogradOut * p.m * kTailFloats);
    winograd::TilePair pair;
    pair.in_off = static_cast<std::ptrdiff_t>(kWinogradOut * kWinogradOut * p.q_cols);  // kOut rows u further
    for (std::size_t i = 0; i < kWinogradOut; ++i) pair.rows[i] = t.out.data() + i * p.m * kTailFloats;
    pair.ch_stride = kTailFloats;
    winograd::tiles<Avx512, kHalfBlocks, 1, true>(p, q, ty, rows, ch_stride, whole, p.tiles_x, &pair);
    t.plan = p.id, t.q = q, t.ty = ty + 1, t.valid = true;
    return;
  }
  winograd::tiles<float_conv_avx2::Avx2, kHalfBlocks, 1>(p, q, ty, rows, ch_stride, whole, p.tiles_x);
}

}  // namespace horq
