// Max pooling's loops (pool_walk.h) vectorized by the compiler for the portable (SSE2 on x86-64) path.
#include "core/pool_walk.h"

namespace horq {

void pool_row_generic(const float* const* rows, std::size_t kh, const PoolColumns& pc, const float* floor,
                      std::size_t nfloor, bool no_nan, float* scratch, float* out, std::size_t planes,
                      std::size_t in_stride, std::size_t out_stride) {
  pool_walk::row(rows, kh, pc, floor, nfloor, no_nan, scratch, out, planes, in_stride, out_stride);
}

void pool2x2_plane_generic(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                               float* y) {
  pool_walk::plane2x2(x, W, OH, OW, has_floor, floor, y);
}

}  // namespace horq
