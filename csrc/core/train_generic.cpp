// Rebuilds quantized columns as floats for the weight gradient (train.h).
//
// Every value is sum_k (bit_k ? -b_k : b_k) with b_k = float(beta_k). Eight values at a time: the byte of
// plane k that holds them indexes kSigns, the eight +-1 of that byte, so a block is K multiply-adds of eight
// floats, which the compiler vectorizes without ISA-specific code; the additions run in the order k = 1..K
// exactly as the torch path's float32 `approx` does (each +-b_k is exact, each partial sum rounds once).
#include <array>
#include <cstring>

#include "core/threadpool.h"
#include "core/train.h"

namespace horq {
namespace {

constexpr std::size_t kColsPerTask = 16;

struct SignTable {
  alignas(32) float v[256][8];
  SignTable() {
    for (int b = 0; b < 256; ++b)
      for (int e = 0; e < 8; ++e) v[b][e] = (b >> e) & 1 ? -1.0f : 1.0f;
  }
};
const SignTable kSigns;

inline unsigned byte_at(const word_t* row, std::size_t bit) {
  return static_cast<unsigned>((row[bit / kWordBits] >> (bit % kWordBits)) & 0xffu);
}

// One group of cg values starting at bit `off` of each plane (off is a multiple of 64 or 0).
void expand_group(const word_t* const* planes, const float* b, int order, std::size_t off, std::size_t cg,
                  float* __restrict out) {
  std::size_t i = 0;
  for (; i + 8 <= cg; i += 8) {
    float acc[8];
    const float* s = kSigns.v[byte_at(planes[0], off + i)];
    for (int e = 0; e < 8; ++e) acc[e] = s[e] * b[0];
    for (int k = 1; k < order; ++k) {
      const float* sk = kSigns.v[byte_at(planes[k], off + i)];
      for (int e = 0; e < 8; ++e) acc[e] = acc[e] + sk[e] * b[k];
    }
    std::memcpy(out + i, acc, sizeof(acc));
  }
  for (; i < cg; ++i) {
    const std::size_t bit = off + i;
    float acc = 0.0f;
    for (int k = 0; k < order; ++k) {
      const float t = (planes[k][bit / kWordBits] >> (bit % kWordBits)) & 1u ? -b[k] : b[k];
      acc = k ? acc + t : t;
    }
    out[i] = acc;
  }
}

}  // namespace

void expand_columns(const word_t* bits, const double* betas, std::size_t ldbits, int order, std::size_t groups,
                    std::size_t cg, std::size_t gw, std::size_t col0, std::size_t col1, float* out) {
  const std::size_t ncols = col1 - col0, n = groups * cg;
  parallel_for(ceil_div(ncols, kColsPerTask), [&](std::size_t t) {
    const std::size_t j0 = col0 + t * kColsPerTask, j1 = j0 + kColsPerTask < col1 ? j0 + kColsPerTask : col1;
    std::array<const word_t*, kMaxOrder> planes{};
    std::array<float, kMaxOrder> b{};
    for (std::size_t j = j0; j < j1; ++j) {
      for (int k = 0; k < order; ++k) {
        planes[k] = bits + (j * order + k) * ldbits;
        b[k] = static_cast<float>(betas[j * order + k]);
      }
      float* dst = out + (j - col0) * n;
      for (std::size_t g = 0; g < groups; ++g) expand_group(planes.data(), b.data(), order, g * gw * kWordBits, cg,
                                                            dst + g * cg);
    }
  });
}

}  // namespace horq
