// float_conv.h's row kernel on AVX2 + FMA: 8 pixels per register, blocks of 4 channels x up to 3 registers
// (12 accumulators, the 3 input vectors and a broadcast weight within the 16 registers; 8 channels x 1 register
// measured slower on the ResNet-18 stem, 2.90 -> 3.56 ms).
#include <immintrin.h>

#include "core/float_conv.h"
#include "core/float_conv_avx2_reg.h"
#include "core/float_conv_winograd.h"

namespace horq {

void float_conv_row_avx2(const FloatConvPlan& p, const float* xp, std::size_t oy, float* y, std::size_t o_begin,
                         std::size_t o_end) {
  float_conv::row<float_conv_avx2::Avx2, 1, 3>(p, xp, oy, y, o_begin, o_end);
}

void float_conv_tiles_avx2(const WinogradPlan& p, const float* q, std::size_t ty, float* const rows[kWinogradOut],
                           std::size_t ch_stride) {
  winograd::tiles<float_conv_avx2::Avx2, 1, 3>(p, q, ty, rows, ch_stride, 0, p.tiles_x);
}

}  // namespace horq
