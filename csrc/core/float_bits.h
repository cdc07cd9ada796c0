// Branch-free float selects shared by the training files (train_generic.cpp, train_backward.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace horq {
namespace {

// Branch-free selects on the bits of floats. A conditional expression over float operations compiles to
// branches here (GCC keeps them, as the operations could trap), which mispredict on random signs: the loops
// below ran 40x slower that way. Integer masks keep them straight-line and vectorizable.
inline std::uint32_t bits_of(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline float float_of(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
inline std::uint32_t mask_of(bool b) { return 0u - static_cast<std::uint32_t>(b); }
constexpr std::uint32_t kSignBit = 0x80000000u;
// v with its sign flipped where x < 0 (sign(x) * v with sign(0) = +1, also for x = -0.0).
inline float times_sign(float v, float x) { return float_of(bits_of(v) ^ (mask_of(x < 0.0f) & kSignBit)); }
// v where |x| <= clip, else +0.0.
inline float in_window(float v, float x, float clip) { return float_of(bits_of(v) & mask_of(std::fabs(x) <= clip)); }

}  // namespace
}  // namespace horq
