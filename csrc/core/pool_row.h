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

// One output row of max_pool2d in each of `planes` planes: plane p's kernel row i is rows[i] + p * in_stride
// (rows[i] nullptr where it lies outside the input: skipped), its output row out + p * out_stride; scratch holds
// `width` floats; then max(floor, .) where floor is given (nfloor values: one for every plane, or one per plane).
// The general path of max_pool2d; a ResNet stem's fused pool calls it once per output row for all 64 channels (the
// column geometry's setup done once, not per channel). no_nan: the caller knows that no value of the rows is NaN
// (maxima without NaN's blend; the same values).
using pool_row_fn = void (*)(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                             std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                             std::size_t in_stride, std::size_t out_stride);
// One (H x W) plane pooled by 2 x 2 windows at stride 2 into (OH x OW), 2 OH <= H and 2 OW <= W.
using pool2x2_plane_fn = void (*)(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor,
                                  float floor, float* y);

void pool_row_generic(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                      std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                      std::size_t in_stride, std::size_t out_stride);
void pool_row_avx2(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                   std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                   std::size_t in_stride, std::size_t out_stride);
void pool_row_avx512(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                     std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                     std::size_t in_stride, std::size_t out_stride);
void pool2x2_plane_generic(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor,
                           float floor, float* y);
void pool2x2_plane_avx2(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                        float* y);
void pool2x2_plane_avx512(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                          float* y);

}  // namespace horq
