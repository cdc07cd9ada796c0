// float_conv.h's row kernel, portable: four-float "registers" as plain arrays (the compiler vectorizes what it
// can), multiply then add.
#include "core/float_conv.h"

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
};

}  // namespace

void float_conv_row_generic(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y) {
  float_conv::row<Vec4, 1, 2>(p, xp, oy, y);
}

}  // namespace horq
