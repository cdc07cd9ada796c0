// HORQ layers on packed weights: quantize every input column (quantize.h), binary GEMM against the
// weights (bgemm.h), then the per-output epilogue (docs/MATH.md "Output"; its rounding order: gemm_driver.cpp)
//     y[o, j] = coef[o] * sum_k beta_{k,j} * (n - 2 * popcount(B_o ^ H_{k,j})) + add[o]
// where coef = alpha * scale and add = scale * bias + shift fold the bias and a BatchNorm epilogue.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/dispatch.h"

namespace horq {

// An allocator that default-initializes: resize() leaves the new elements as they are (for buffers every element
// of which is written before it is read); assign(n, v) still writes v.
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// H_1 of convolution columns without materializing them (paths with an outer-product gemm_task, grouped
// conv layout): every pixel's words sit once in a zero-bordered image, and column j's word w is
//     words[word(j) + word_off[w]]        (zero for a padding tap: the border is zero),
// and at order 1 its beta_1 = sum over taps t (in tap order) of sums[sum(j) + sum_off[t]] / n, with word(j)
// and sum(j) the offsets of the column's first tap (PixelCursor below).
// Its border is zeroed where it is made (conv.cpp init_pixel_image); the pixel pass writes the rest.
struct PixelImage {
  std::vector<word_t, UninitAllocator<word_t>> words;  // [image][channel group][hp][wp]
  std::vector<double, UninitAllocator<double>> sums;   // [image][hp][wp]: sum |x| over the channels of each pixel
  std::size_t hp = 0, wp = 0, groups = 0, out_w = 0, ppi = 0, sh = 0, sw = 0;
  std::vector<std::int64_t> word_off;  // per column word (tap, group)
  std::vector<std::int64_t> sum_off;   // per tap
};

// Column j of a convolution's output, image img and pixel r = oy * out_w + ox of it, stepped to column j + 1 by
// next() without a division (64-bit divisions per column were most of the order-1 H_1 gather of a 64-channel
// layer). With out_w = ppi it is just (img, r): a linear layer's or any column-major walk.
struct ColumnCursor {
  std::size_t ppi, out_w, img, r, oy, ox;
  ColumnCursor(std::size_t pixels_per_image, std::size_t width, std::size_t j)
      : ppi(pixels_per_image), out_w(width), img(j / ppi), r(j % ppi), oy(r / out_w), ox(r % out_w) {}
  void next() { skip(1); }
  // Whether the next k columns lie in the current output row (then skip(k) is k calls of next()).
  bool row_holds(std::size_t k) const { return ox + k <= out_w; }
  void skip(std::size_t k) {
    r += k, ox += k;
    if (r == ppi) {
      r = oy = ox = 0, ++img;
    } else if (ox == out_w) {
      ox = 0, ++oy;
    }
  }
};

// word(j) / sum(j) (above) of consecutive columns j, j + 1, ... (next()). The image's geometry is copied in: read
// through a reference, it was reloaded after every store the caller made through a pointer (a loop storing each
// column's offsets spent a quarter of a stage on those loads, docs/KERNELS.md round 31).
struct PixelCursor : ColumnCursor {
  std::size_t plane_rows, hp, wp, sh, sw;  // plane_rows: groups * hp, one image's rows of words
  PixelCursor(const PixelImage& im, std::size_t j)
      : ColumnCursor(im.ppi, im.out_w, j), plane_rows(im.groups * im.hp), hp(im.hp), wp(im.wp), sh(im.sh), sw(im.sw) {}
  std::int64_t word() const { return static_cast<std::int64_t>((img * plane_rows + oy * sh) * wp + ox * sw); }
  std::int64_t sum() const { return static_cast<std::int64_t>((img * hp + oy * sh) * wp + ox * sw); }
};

// beta_1 of an order-1 column whose first tap's pixel sum is at im.sums[at] (PixelCursor::sum): its taps' pixel sums
// added in tap order, then / n (the box sum every path computes, lane by lane where it vectorizes).
inline double box_beta(const PixelImage& im, std::int64_t at, double n) {
  const double* sums = im.sums.data() + at;
  double s = 0.0;
  for (const std::int64_t off : im.sum_off) s += sums[off];
  return s / n;
}

// Columns after quantization: row (j * order + k) holds H_{k+1} of column j, kw words; betas likewise (row(j, k)).
// With `implicit_h1`, H_1 lives in `image` (the GEMM reads it there; row j * order of bits holds a copy at
// order 2 where the per-column route computes H_2 from it) and at order 1 neither bits nor betas are stored: the GEMM
// task reads both from the image. The convolution's image route (conv.cpp image_columns) stores no rows of H_1
// (h1_rows false): column j's H_{k+1} is row j * (order - 1) + k - 1, so its columns take (order - 1) / order of the
// memory, which the route writes and the GEMM reads back (a 64ch 56x56 order-2 layer's 451 KB of rows, half of them
// H_1's unwritten lines, were read for ownership from memory in a cold call; docs/KERNELS.md round 38).
// With `word_major` (the image route's order 2 from per-pixel bands, conv.cpp band2_columns) the stored planes are
// kept word by word instead: word w of plane k's rows of every column, ncols words (ldw with padding), then word w +
// 1's, so that the words of consecutive columns, which the outer-product GEMM puts in consecutive vector lanes, lie
// side by side and are read where they are (the AVX-512 kernel) or copied a vector at a time, without a transpose
// (docs/KERNELS.md round 39). row(j, k)[w * word_stride()] is word w of column j's plane k either way.
struct QuantizedColumns {
  std::size_t ncols = 0, n = 0, kw = 0;
  int order = 0;
  // Zeroed where they are made (assign), except on the convolution's image route (conv.cpp), which writes every
  // beta and every word of the rows of H_2.. (materialize_columns moves them and adds H_1's).
  std::vector<word_t, UninitAllocator<word_t>> bits;
  std::vector<double, UninitAllocator<double>> betas;
  bool implicit_h1 = false;
  bool h1_rows = true;      // whether bits holds rows of H_1 (see above)
  bool word_major = false;  // bits word by word over the columns (see above; with !h1_rows only)
  std::size_t ldw = 0;      // with word_major: from a column's word w to its word w + 1 (word_major_stride)
  PixelImage image;

  // The planes a column stores in bits.
  std::size_t stored_planes() const { return static_cast<std::size_t>(order) - (h1_rows ? 0 : 1); }
  // From a column's word w to its word w + 1 in bits.
  std::size_t word_stride() const { return word_major ? ldw : 1; }
  // Column j's row of plane k (k >= 1 where !h1_rows): kw words word_stride() apart; the next column's row starts
  // stored_planes() kw words on, or with word_major one word on.
  const word_t* row(std::size_t j, std::size_t k) const {
    const std::size_t plane = k - (h1_rows ? 0 : 1);
    return bits.data() + (word_major ? plane * kw * ldw + j : (j * stored_planes() + plane) * kw);
  }
  // Word w of column j's plane k.
  word_t word(std::size_t j, std::size_t k, std::size_t w) const { return row(j, k)[w * word_stride()]; }
};

// QuantizedColumns::ldw for ncols columns: ncols rounded up to whole cache lines, one line more where that would make
// the words' runs a multiple of 4 KB apart: 1024 columns (a 32x32 map) put a column's 9 words in one L1 set, 8 KB
// apart, and each store of them waited on loads of the same low address bits (64ch 32x32 order 2: input quantization
// 0.060 -> 0.070 ms until this; docs/KERNELS.md round 39).
inline std::size_t word_major_stride(std::size_t ncols) {
  constexpr std::size_t kLine = 8, kPageWords = 512;  // words per cache line, per 4 KB
  const std::size_t s = (ncols + kLine - 1) / kLine * kLine;
  return s % kPageWords == 0 ? s + kLine : s;
}

// The epilogue's per-output constants (length m each).
// Optionally, in float32 after that: y += residual (an array of y's layout: the sum of a residual block),
// then y = max(floor[o], y) (a following ReLU, or ReLU + affine), then y = min(ceiling[o], y) (with the floor, a
// following hardtanh or ReLU6), as separate add, maximum and clip steps compute them (numpy's np.add, np.maximum
// and np.clip: same roundings, NaN kept, -0.0 kept against a +0.0 floor).
struct Epilogue {
  const double* coef;
  const double* add;
  const float* residual = nullptr;
  const float* floor = nullptr;
  const float* ceiling = nullptr;
  // Set by horq_gemm (residual_aliases_output): a register block's residual loads share their addresses' low 12 bits
  // with the previous filter's output stores, so a kernel that can loads them all before it stores (avx512).
  bool residual_aliases = false;
};

// Whether, for outputs ppi floats apart per filter, a residual load of filter o's outputs in a register block (16
// columns) can match filter o - 1's output stores in its address's low 12 bits: 4K aliasing, the load then waits for
// those stores though they never overlap. Page-aligned buffers with 32x32 maps (ppi * 4 = 4096 bytes) match every
// time: 64ch 32x32 order 1 with a residual 0.068 -> 0.061 ms loading first (profile_conv_core, whose buffers are;
// docs/KERNELS.md round 38). Filters 4 apart matching (16x16 maps) cost nothing measurable, and loading first there
// was slower (128ch 16x16 0.043 -> 0.045).
inline bool residual_aliases_output(const float* y, const float* residual, std::size_t ppi) {
  if (residual == nullptr) return false;
  constexpr std::int64_t kPage = 4096, kNear = 16 * sizeof(float);
  const std::int64_t base = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(residual) % kPage) -
                            static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(y) % kPage);
  const std::int64_t r = ((base + static_cast<std::int64_t>(ppi * sizeof(float))) % kPage + kPage) % kPage;
  return r < kNear || r > kPage - kNear;
}

// The float32 part of the epilogue for one output: what a residual add, a maximum and a minimum step would give.
inline float finish_output(float v, const Epilogue& ep, std::size_t index, std::size_t o) {
  if (ep.residual) v += ep.residual[index];
  if (ep.floor && ep.floor[o] > v) v = ep.floor[o];
  if (ep.ceiling && ep.ceiling[o] < v) v = ep.ceiling[o];
  return v;
}

// Binary layers with less work than this (output channels x columns x order x row words, plus the input's values,
// which the pixel pass reads) run on the calling thread alone (SerialScope): waking a helper would cost more than it
// saves. Round 8 set 200K words of GEMM work alone (mnist-cnn's 28K-63K-word layers then ran slower at 2 threads);
// with today's kernels and pool, the rules alternated in one process (whole models at 2 threads, AMD EPYC Zen 3,
// docs/KERNELS.md round 16) ran every model faster the lower the bound, down to none, mnist-cnn included, and a
// stride-2 1x1 shortcut (100K words, 50K-200K input values) no longer runs on one thread. Kept: a bound for the
// tiniest jobs.
constexpr std::size_t kParallelMinWork = 10000;
inline bool small_binary_job(std::size_t m, std::size_t ncols, int order, std::size_t kw, std::size_t inputs) {
  return m * ncols * static_cast<std::size_t>(order) * kw + inputs < kParallelMinWork;
}

// What a path derives from a layer's weights once and keeps for the calls after: a prepared layer (bindings.cpp
// PreparedConv), whose weights never change, owns one and hands it to every call. Today the AVX2 path's filter-lane
// panels (gemm_outer_avx2.cpp) and the AVX-512 path's filter quads (gemm_outer_avx512.cpp), each built by the first
// call that takes that kernel; calls without a cache build what they need per task or read the rows as they are.
struct WeightCache {
  std::once_flag filter_panels_once;
  std::vector<std::uint8_t, UninitAllocator<std::uint8_t>> filter_panels;  // from filter_panels_at: 32-byte aligned
  std::size_t filter_panels_at = 0;
  std::once_flag filter_quads_once;
  std::vector<word_t> filter_quads;
};

// Work that horq_gemm's job does besides the GEMM (conv.cpp's input quantization, DeferredPixels; a q with
// implicit_h1): its units are tasks of the job, the first front() before the GEMM's own and the rest after them, and
// each GEMM task first calls ready() for its columns.
struct GemmPrelude {
  virtual std::size_t units() const = 0;
  virtual std::size_t front() const = 0;  // units before the GEMM's tasks; the rest come after them
  virtual void run_unit(std::size_t u) = 0;  // unless a thread has claimed it
  // Every unit that columns [j0, j0 + n) read: run here, or waited for where another thread claimed it.
  virtual void ready(std::size_t j0, std::size_t n) = 0;

 protected:
  ~GemmPrelude() = default;
};

// y[(j / ppi) * m * ppi + o * ppi + j % ppi] for every column j and output o (ppi = columns per image:
// NCHW output for a convolution, (N, m) for a linear layer with ppi = 1), with a prelude's work first where given.
void horq_gemm(const KernelTable& kt, const word_t* wbits, std::size_t m, const QuantizedColumns& q,
               Epilogue ep, std::size_t ppi, float* y, WeightCache* cache = nullptr, GemmPrelude* prelude = nullptr);

// out[i * nb + j] = n - 2 * popcount(a_i ^ b_j) (rows of kw words), threaded.
void bgemm_dot(const KernelTable& kt, const word_t* a, std::size_t m, const word_t* b, std::size_t nb,
               std::size_t kw, std::size_t n, std::int32_t* out);

// Rows of `rows` x `n` floats quantized to `order` planes, one group per row (a linear layer's input).
// Throws std::invalid_argument if x holds NaN or Inf.
QuantizedColumns quantize_rows(const KernelTable& kt, const float* x, std::size_t rows, std::size_t n, int order,
                               const float* in_scale = nullptr, const float* in_shift = nullptr);

struct ConvGeometry {
  std::size_t batch, channels, height, width, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w;
  // The input (and a training step's input gradient) stored NHWC, (batch, height, width, channels), instead of
  // NCHW: PyTorch's channels_last. The columns and everything computed from them are the same either way.
  bool nhwc = false;
};

// The conv layout of a column (and of a weight row): its n = C*kh*kw bits in (i, j, c) order, either
//   grouped:  per tap a group of words_for(C) words holding the C channel bits (the pixel's packed word(s)
//             copied whole: cheap to build, exact when C is a multiple of 64), or
//   compact:  bit t*C + c of one contiguous run of words_for(n) words, used when grouping would waste
//             words (C = 3 over a 3x3 kernel: 1 word instead of 9; C = 32: 5 instead of 9).
// Unused bits are zero in both operands either way, so the popcounts are the same.
inline bool conv_compact(std::size_t channels, std::size_t taps) {
  return channels % kWordBits != 0 && words_for(channels * taps) < taps * words_for(channels);
}
inline std::size_t conv_words(std::size_t channels, std::size_t taps) {
  return conv_compact(channels, taps) ? words_for(channels * taps) : taps * words_for(channels);
}

// Unfolds x (NCHW, or NHWC with g.nhwc) into receptive fields in the conv layout (zero padding included),
// quantized as in quantize.h. With in_scale/in_shift (C values each, or both nullptr) the input is first mapped
// per channel, x * in_scale[c] + in_shift[c] in float32 (multiply, then add, each rounded: what a separate affine
// step computes), on the fly. Throws std::invalid_argument on NaN/Inf (after the affine) anywhere in x.
QuantizedColumns quantize_conv_columns(const KernelTable& kt, const float* x, const ConvGeometry& g, int order,
                                       const float* in_scale = nullptr, const float* in_shift = nullptr);

// A convolution layer: quantize_conv_columns, then horq_gemm into y (NCHW, g.out_h * g.out_w per filter). Where
// conv_defers_pixels (more than one thread, an NCHW input, the pixel image route; at orders >= 2 whole words per tap,
// no per-pixel bands and the batch in one chunk), the input quantization runs inside the GEMM's job instead (conv.cpp
// DeferredPixels): the same outputs. Throws std::invalid_argument on NaN/Inf in x (y then holds no result).
bool conv_defers_pixels(const KernelTable& kt, const ConvGeometry& g, int order);
void conv_layer(const KernelTable& kt, const float* x, const ConvGeometry& g, int order, const float* in_scale,
                const float* in_shift, const word_t* wbits, std::size_t m, const Epilogue& ep, float* y,
                WeightCache* cache = nullptr);

// PackedWeights bits in (c, i, j) order -> the conv layout above (conv_words(C, kh*kw) words per row).
void relayout_conv_weights(const word_t* bits, std::size_t m, std::size_t channels, std::size_t kh,
                           std::size_t kw, word_t* out);

}  // namespace horq
