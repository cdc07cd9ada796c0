// Max pooling's loops (pool_walk.h) vectorized by the compiler for the portable (SSE2 on x86-64) path.
#include "core/pool_walk.h"

namespace horq {

void pool_row_generic(const float* const* rows, std::size_t kh, const PoolColumns& pc, bool has_floor, float floor,
                      bool no_nan, float* scratch, float* out) {
  pool_walk::row(rows, kh, pc, has_floor, floor, no_nan, scratch, out);
}

void pool2x2_plane_generic(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                               float* y) {
  pool_walk::plane2x2(x, W, OH, OW, has_floor, floor, y);
}

}  // namespace horq
