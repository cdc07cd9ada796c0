// float_conv.h's row kernel on AVX2 + FMA: 8 pixels per register, blocks of 4 channels x up to 3 registers
// (12 accumulators, the 3 input vectors and a broadcast weight within the 16 registers; 8 channels x 1 register
// measured slower on the ResNet-18 stem, 2.90 -> 3.56 ms).
#include <immintrin.h>

#include "core/float_conv.h"
#include "core/float_conv_avx2_reg.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"

namespace horq {

void float_conv_row_avx2(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                         std::size_t o_end) {
  float_conv::row<float_conv_avx2::Avx2, 1, 3>(p, xp, oy, y, o_begin, o_end);
}

// Depthwise: blocks of 4 rows x 1 vector, a 3x3 kernel's 9 weights in registers (4 accumulators, 9 weights and the
// input vector within the 16 registers). On a 16-channel 56x56 map 0.024-0.026 ms, against 0.027-0.030 with 4 rows
// x 2 vectors (weights read at each use: 0.028-0.030), 3 x 1 0.026-0.027, 6 x 1 0.028-0.029 (docs/KERNELS.md round 50).
void float_conv_depthwise_avx2(const DepthwisePlan& p, const float* xp, std::size_t o, std::size_t rows, float* y,
                               const float* y_end) {
  float_conv::depthwise<float_conv_avx2::Avx2, 4, 1, 4, 2>(p, xp, o, rows, y, y_end);
}

void float_conv_tiles_avx2(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                           std::size_t ch_stride) {
  winograd::tiles<float_conv_avx2::Avx2, 1, 3>(p, q, ty, rows, ch_stride, 0, p.tiles_x);
}

}  // namespace horq
