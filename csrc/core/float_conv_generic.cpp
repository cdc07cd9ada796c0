// float_conv.h's row kernel, portable: four-float "registers" as plain arrays (the compiler vectorizes what it
// can), multiply then add. The Winograd tile row (float_conv_winograd.h) on one-float "registers" with std::fma:
// per lane the x86 paths' operations, so their reference bit for bit (slow; float_conv.cpp does not pick it on
// its own).
#include <cmath>

#include "core/float_conv.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"

namespace horq {
namespace {

struct Vec4 {
  static constexpr std::size_t kLanes = 4;
  struct reg {
    float v[4];
  };
  static reg zero() { return {{0.0f, 0.0f, 0.0f, 0.0f}}; }
  static reg load(const float* p) { return {{p[0], p[1], p[2], p[3]}}; }
  static reg set1(float a) { return {{a, a, a, a}}; }
  static reg madd(const reg& a, const reg& b, const reg& c) {
    reg r;
    for (int l = 0; l < 4; ++l) r.v[l] = c.v[l] + a.v[l] * b.v[l];
    return r;
  }
  static void store(float* p, const reg& r) {
    for (int l = 0; l < 4; ++l) p[l] = r.v[l];
  }
  static reg add(const reg& a, const reg& b) {
    reg r;
    for (int l = 0; l < 4; ++l) r.v[l] = a.v[l] + b.v[l];
    return r;
  }
  static reg max(const reg& a, const reg& b) {  // a > b ? a : b, else b: NaN in b kept
    reg r;
    for (int l = 0; l < 4; ++l) r.v[l] = a.v[l] > b.v[l] ? a.v[l] : b.v[l];
    return r;
  }
  static reg min(const reg& a, const reg& b) {
    reg r;
    for (int l = 0; l < 4; ++l) r.v[l] = a.v[l] < b.v[l] ? a.v[l] : b.v[l];
    return r;
  }
};

struct Fma1 {
  static constexpr std::size_t kLanes = 1;
  using reg = float;
  static reg zero() { return 0.0f; }
  static reg load(const float* p) { return *p; }
  static reg set1(float a) { return a; }
  static reg madd(reg a, reg b, reg c) { return std::fma(a, b, c); }
  static void store(float* p, reg r) { *p = r; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  static void store3(float* p, reg a, reg b, reg c) { p[0] = a, p[1] = b, p[2] = c; }
};

}  // namespace

void float_conv_row_generic(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                            std::size_t o_end) {
  float_conv::row<Vec4, 1, 2>(p, xp, oy, y, o_begin, o_end);
}

void float_conv_depthwise_generic(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                                  const float* y_end) {
  float_conv::depthwise<Vec4, 4, 2, 4, 2>(p, xp, o, rows, y, y_end);
}

void float_conv_tiles_generic(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                              std::size_t ch_stride) {
  winograd::tiles<Fma1, 1, 2>(p, q, ty, rows, ch_stride, 0, p.tiles_x);
}

}  // namespace horq
