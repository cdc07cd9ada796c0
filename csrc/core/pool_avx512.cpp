// 2 x 2 max pooling (pool_walk.h) vectorized by the compiler for the AVX-512 path (compiled with the AVX-512 flags);
// pool_row_avx512 is in pool_rows_avx512.cpp.
#include "core/pool_walk.h"

namespace horq {

void pool2x2_plane_avx512(const float* x, std::size_t W, std::size_t OH, std::size_t OW, bool has_floor, float floor,
                              float* y) {
  // Rows of fewer than 16 outputs (mnist-cnn's 7, cifar-vgg's last 4) ran slower in 512-bit code than in the
  // AVX2 path's (benchmarks/bench_glue.py): those take the AVX2 loop, which this CPU runs too.
  if (OW < 16) return pool2x2_plane_avx2(x, W, OH, OW, has_floor, floor, y);
  pool_walk::plane2x2(x, W, OH, OW, has_floor, floor, y);
}

}  // namespace horq
