// Max pooling's per-path loops (pool_generic.cpp, pool_avx2.cpp, pool_avx512.cpp; KernelTable::pool_row and
// pool2x2_plane): their types, apart from pool.h so that dispatch.h can name them.
#pragma once
#include <cstddef>
#include <vector>

namespace horq {

// The column taps of a pooling geometry: for tap j, the output columns [lo[j], hi[j]) whose input column
// ox * sw + off[j] lies inside the row.
struct PoolColumns {
  std::vector<std::size_t> lo, hi;
  std::vector<long> off;
  std::size_t sw = 1, width = 0, out_w = 0;
};

// One output row of max_pool2d: rows[i] the input row of kernel row i, nullptr where it lies outside the input
// (skipped); scratch holds `width` floats; then max(floor, .) when has_floor. The general path of max_pool2d.
// no_nan: the caller knows that no value of the rows is NaN (maxima without NaN's blend; the same values).
using pool_row_fn = void (*)(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor,
                             float floor, bool no_nan, float* scratch, float* out);
// One (H x W) plane pooled by 2 x 2 windows at stride 2 into (OH x OW), 2 OH <= H and 2 OW <= W.
using pool2x2_plane_fn = void (*)(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor,
                                  float floor, float* y);

void pool_row_generic(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor, float floor,
                      bool no_nan, float* scratch, float* out);
void pool_row_avx2(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor, float floor,
                   bool no_nan, float* scratch, float* out);
void pool_row_avx512(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor, float floor,
                     bool no_nan, float* scratch, float* out);
void pool2x2_plane_generic(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor,
                           float floor, float* y);
void pool2x2_plane_avx2(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                        float* y);
void pool2x2_plane_avx512(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                          float* y);

}  // namespace horq
