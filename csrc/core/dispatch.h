// Kernel selection: the CPU is probed once; every path it can run is listed best first, generic last.
#pragma once
#include <string>
#include <vector>

#include "core/bgemm.h"
#include "core/float_conv.h"
#include "core/float_conv_depthwise.h"
#include "core/float_conv_winograd.h"
#include "core/float_linear.h"
#include "core/pool_row.h"
#include "core/quantize.h"
#include "core/sign_gemm.h"
#include "core/weight_rows.h"

namespace horq {

struct QuantizedColumns;
struct Epilogue;
struct WeightCache;

// One task of horq_gemm (layer.h) with the epilogue fused: outputs [o0, o0 + mb) x columns [j0, j0 + jb)
// written into y; `cache` (may be null) what the path keeps of these weights between calls (layer.h WeightCache).
// `call`: a number of this GEMM call that no other call has (outer_gemm's count), so that a thread's next task of
// the same call and columns may keep what the last one prepared of them (outer_panel.h outer_task); 0: keep nothing.
// Paths without one run the row kernel `bgemm` and the driver's epilogue instead.
using gemm_task_fn = void (*)(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep,
                              std::size_t ppi, float* y, std::size_t o0, std::size_t mb, std::size_t j0,
                              std::size_t jb, WeightCache* cache, std::uint64_t call);

void gemm_task_avx2(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                    float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb, WeightCache* cache,
                    std::uint64_t call = 0);

// How a path's gemm_task wants the m filters x q's columns cut into tasks on `threads` threads (gemm_driver.cpp):
// `columns` per task (0: the driver's own choice, a column panel of about 32 KB) and `filter_blocks`, the filters cut
// into that many blocks, with 0 letting the driver cut columns and filters further until every thread has a few tasks.
struct GemmSplit {
  std::size_t columns = 0, filter_blocks = 0;
};
using gemm_split_fn = GemmSplit (*)(const QuantizedColumns& q, std::size_t ppi, std::size_t m, std::size_t threads);
GemmSplit gemm_split_avx2(const QuantizedColumns& q, std::size_t ppi, std::size_t m, std::size_t threads);
void gemm_task_avx512(const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep, std::size_t ppi,
                      float* y, std::size_t o0, std::size_t mb, std::size_t j0, std::size_t jb, WeightCache* cache,
                      std::uint64_t call = 0);

struct KernelTable {
  const char* name;
  bgemm_fn bgemm;
  quantize_fn quantize;
  quantize_taps_fn quantize_taps;
  quantize_taps2_fn quantize_taps2;  // conv order 2 (exact float32 pass)
  quantize_taps3_fn quantize_taps3;  // conv order 3 from float32 thresholds (avx2, generic; else nullptr)
  quantize_image_fn quantize_image;  // conv orders >= 2, runs of columns read from zero-bordered images
  pack_pixels_fn pack_pixels;        // conv input: per-pixel sign words and sum |x|
  to_nhwc_fn to_nhwc;                // conv input at order >= 2: the NHWC float copy
  gemm_task_fn gemm_task;            // outer-product GEMM + epilogue, or nullptr
  gemm_split_fn gemm_split;          // its preferred tasks, or nullptr
  sign_gemm_fn sign_gemm;            // float-by-sign product of the backward pass
  fold_rows_fn fold_rows;            // its blocks folded into a convolution's input grid
  expand_column_fn expand_column;    // kept planes rebuilt as floats (weight gradient, GEMM route)
  binarize_rows_fn binarize_rows;    // training: the latent weights binarized
  weight_grad_fn weight_grad;        // training: their straight-through gradient
  float_conv_row_fn float_conv_row;  // a full-precision convolution's output row (float_conv.h)
  float_conv_tiles_fn float_conv_tiles;  // its Winograd tile row (float_conv_winograd.h)
  float_conv_depthwise_fn float_conv_depthwise;  // a depthwise convolution's rows (float_conv_depthwise.h)
  float_dots_fn float_dots;          // a float linear layer's dot products (float_linear.h)
  pool_row_fn pool_row;              // one output row of max pooling (pool.h)
  pool2x2_plane_fn pool2x2_plane;    // one plane of a 2 x 2 stride-2 max pool
  transpose64_fn transpose64;        // a 64 x 64 bit transpose (the weight gradient's planes)
  band2_pixels_fn band2_pixels;      // conv order 2, 3 x 3 stride 1: per-pixel bands (x86 paths; generic: nullptr)
  band2_columns_fn band2_columns;    // and the columns from them
  band2_pixels_fn band2_pixels_nchw;  // the bands from NCHW rows (x86 paths; generic: nullptr)
  band2_thresholds_fn band2_thresholds;  // the bands' thresholds, an output row at a time (with band2_pixels)
};

// Whether the AVX2 path's GEMM tasks take its table kernel where it applies (gemm_outer_avx2.cpp; on by default) or
// its outer-product kernel everywhere. Both give the same bits: the switch is there to compare them (tests, A/B
// timing).
void set_avx2_table_gemm(bool on);
bool avx2_table_gemm();

// Every path this library knows, whether or not this CPU can run it.
const std::vector<std::string>& known_kernels();
// The paths this CPU (and OS) can run, best first; "generic" is always last.
const std::vector<std::string>& available_kernels();
// The table for `name` (empty = the best available). Throws std::invalid_argument for an unknown name
// or a path this CPU cannot run.
const KernelTable& kernel_table(const std::string& name);

}  // namespace horq
