// sign_gemm (sign_gemm.h) in portable C++: the reference the ISA versions are tested against. Vectors are
// 8-float vector-extension values; the operation order is sign_gemm_walk.h's.
#include <cstring>

#include "core/sign_gemm_walk.h"

namespace horq {
namespace {

// GCC / Clang vector extensions: plain C++ arithmetic on 8 floats that the compiler maps to whatever SIMD
// the target has (two SSE registers on baseline x86-64, NEON on aarch64), element-wise IEEE float32 either way.
struct Portable {
  static constexpr int kLanes = 8;
  typedef float reg __attribute__((vector_size(32)));
  static reg zero() { return reg{}; }
  static reg load(const float* p) {
    reg r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static void store(float* p, reg r) { std::memcpy(p, &r, sizeof r); }
  static reg loadu(const float* p) { return load(p); }
  static void storeu(float* p, reg r) { store(p, r); }
  static reg load_part(const float* p, int n) {
    if (n == kLanes) return load(p);
    reg r{};
    for (int l = 0; l < n; ++l) r[l] = p[l];
    return r;
  }
  static void store_part(float* p, reg r, int n) {
    if (n == kLanes) return store(p, r);
    for (int l = 0; l < n; ++l) p[l] = r[l];
  }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul_scalar(reg a, float s) { return a * s; }
  static reg signed_value(unsigned bits, float b) {
    reg r;
    for (int l = 0; l < kLanes; ++l) r[l] = bits >> l & 1u ? -b : b;
    return r;
  }
  struct lane_mask {
    std::ptrdiff_t lo, hi;
  };
  static lane_mask lanes(std::ptrdiff_t lo, std::ptrdiff_t hi) { return {lo, hi}; }
  static reg add_masked(reg acc, const float* p, lane_mask k) {
    for (std::ptrdiff_t l = k.lo; l < k.hi; ++l) acc[l] += p[l];
    return acc;
  }
};

}  // namespace

void sign_gemm_generic(const SignGemm& p, std::size_t m0, std::size_t m1, std::size_t j0, std::size_t j1) {
  sign_gemm_walk<Portable, 4>(p, m0, m1, j0, j1);
}

void fold_rows_generic(const Fold& f) { fold_rows_walk<Portable>(f); }

void expand_column_generic(const word_t* const* planes, const float* b, int order, std::size_t groups,
                           std::size_t cg, std::size_t gw, float* out) {
  expand_column_walk<Portable>(planes, b, order, groups, cg, gw, out);
}

namespace {

// One word a register: every level pairs whole words (sign_gemm_walk.h transpose64_walk).
struct Words {
  using reg = word_t;
  static constexpr int kWords = 1;
  static reg load(const word_t* p) { return *p; }
  static void store(word_t* p, reg r) { *p = r; }
  static reg set1(word_t v) { return v; }
  template <unsigned J>
  static reg srli(reg r) { return r >> J; }
  template <unsigned J>
  static reg slli(reg r) { return r << J; }
  static reg xor_(reg a, reg b) { return a ^ b; }
  static reg and_(reg a, reg b) { return a & b; }
};

}  // namespace

void transpose64_generic(word_t* a) { transpose64_walk<Words>(a); }

}  // namespace horq
