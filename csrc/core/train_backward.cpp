// The backward products of a binary layer on packed signs (train.h; the product: sign_gemm.h).
//
// Weight gradient: dW~ = G^T A with A = sum_k beta_k H_k (docs/MATH.md "Gradients"), i.e. one float-by-sign
// product per plane, reduction over the columns j: the planes the forward pass kept (bits along a column's
// values) are transposed 64x64 bits at a time into sign rows along the columns, and beta_{k,j} becomes the
// row scale of G's row j. Input gradient: the binarized weight is alpha_o * sign(W), so the product is
// sign(W) against G with alpha as the row scale. For a convolution the reduction runs over the output
// channels o, the lanes over the output positions and the sign rows over (c, tap), so one table of four
// channels serves all C * kh * kw rows; each block of 64 positions is folded into the padded input grid
// (position (oy, ox) of row (c, tap (i, j)) adds at (oy sh + i dh, ox sw + j dw)) while it is in cache, so no
// column matrix is ever whole.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/float_bits.h"
#include "core/threadpool.h"
#include "core/train.h"

namespace horq {
namespace {

// The sign rows of an input gradient: the weight rows' packed signs (m rows of words_for(n) words, as
// KernelTable::binarize_rows packs them) transposed, so that row j (one per value of a weight row) holds bit o =
// sign(w[o, j]). Word-block-major with row stride words_for(n) * 64 (transpose_planes with one plane).
std::vector<word_t> weight_sign_rows(const KernelTable& kt, const word_t* wbits, std::size_t m, std::size_t n) {
  const std::size_t ld = words_for(n);
  std::vector<word_t> s(words_for(m) * ld * kWordBits);
  transpose_planes(kt, wbits, m, 1, ld, 0, s.data());
  return s;
}

// Crops image n's gradient from the padded grid gz (C planes of Hg x Wg) into gx, NCHW or NHWC as geo says (NHWC:
// each row's channel runs transposed in registers, to_nhwc), with the clip window of x (same layout as gx; clip
// < 0: none). Rows and columns no tap reaches get 0.
void crop_input_grad(const KernelTable& kt, const ConvGeometry& geo, std::size_t Hg, std::size_t Wg, const float* gz,
                     std::size_t n, const float* x, float clip, float* gx) {
  const std::size_t C = geo.channels, H = geo.height, W = geo.width, Pz = Hg * Wg;
  const std::size_t inside = geo.pw < Wg ? std::min(W, Wg - geo.pw) : 0;  // columns a tap reaches
  if (geo.nhwc) {
    for (std::size_t y = 0; y < H; ++y) {
      const std::size_t Y = y + geo.ph, at = (n * H + y) * W * C, len = Y < Hg ? inside * C : 0;
      float* __restrict dst = gx + at;
      const float* __restrict xin = x + at;
      if (len) kt.to_nhwc(gz + n * C * Pz + Y * Wg + geo.pw, Pz, C, inside, nullptr, nullptr, dst, C);
      if (clip >= 0.0f)
        for (std::size_t k = 0; k < len; ++k) dst[k] = in_window(dst[k], xin[k], clip);
      std::fill_n(dst + len, W * C - len, 0.0f);
    }
    return;
  }
  // NCHW: plane by plane, so x, gz and gx are each read or written in one forward run per channel (row by row
  // across the channels, each row a few cache lines of another plane, the loads of x waited on memory: 18% of
  // mnist-cnn's 32-channel 14x14 input gradient on an AMD EPYC Zen 3).
  for (std::size_t c = 0; c < C; ++c) {
    for (std::size_t y = 0; y < H; ++y) {
      const std::size_t Y = y + geo.ph;
      const bool reached = Y < Hg;
      const std::size_t at = ((n * C + c) * H + y) * W;
      float* __restrict dst = gx + at;
      const float* __restrict xin = x + at;
      if (!reached) {
        std::fill_n(dst, W, 0.0f);
        continue;
      }
      const float* __restrict src = gz + (n * C + c) * Pz + Y * Wg + geo.pw;
      if (clip >= 0.0f) {
        for (std::size_t k = 0; k < inside; ++k) dst[k] = in_window(src[k], xin[k], clip);
      } else {
        std::copy_n(src, inside, dst);
      }
      std::fill_n(dst + inside, W - inside, 0.0f);
    }
  }
}

}  // namespace

void sign_gemm(const KernelTable& kt, const SignGemm& p, std::size_t rows) {
  // Tasks of 64 lanes by a share of the sign rows: every task reads its lanes of the float operand once
  // (all R rows) and builds their tables, so rows are split only as far as the threads need work (one task
  // each: a second task per thread repeats the tables, which cost mnist-cnn's 64-lane weight gradients 10-20%)
  // and the outputs of one task stay in L2 (<= 1024 rows x 64 lanes). No output is shared between tasks: the
  // split does not change any result.
  constexpr std::size_t kMTask = 64, kMaxJTask = 1024, kMinJTask = 64;
  rows = std::min(rows, p.J);
  if (p.M == 0 || rows == 0) return;
  const std::size_t mt = ceil_div(p.M, kMTask), want = static_cast<std::size_t>(get_num_threads());
  const std::size_t jt = std::min(ceil_div(rows, kMinJTask), std::max(ceil_div(rows, kMaxJTask), ceil_div(want, mt)));
  const std::size_t jstep = ceil_div(rows, jt);
  parallel_for(mt * jt, [&](std::size_t t) {
    const std::size_t m0 = (t / jt) * kMTask, j0 = (t % jt) * jstep;
    if (j0 < rows) kt.sign_gemm(p, m0, std::min(p.M, m0 + kMTask), j0, std::min(rows, j0 + jstep));
  });
}

void transpose_planes(const KernelTable& kt, const word_t* bits, std::size_t ncols, int order, std::size_t ldbits,
                      int k, word_t* s) {
  const std::size_t J = ldbits * kWordBits, blocks = words_for(ncols);
  parallel_for(blocks, [&](std::size_t w) {
    alignas(64) word_t a[64];
    const std::size_t c0 = w * kWordBits, nc = std::min<std::size_t>(kWordBits, ncols - c0);
    const std::size_t K = static_cast<std::size_t>(order), kk = static_cast<std::size_t>(k);
    for (std::size_t u = 0; u < ldbits; ++u) {
      for (std::size_t i = 0; i < 64; ++i) a[i] = i < nc ? bits[((c0 + i) * K + kk) * ldbits + u] : 0;
      kt.transpose64(a);
      std::memcpy(s + w * J + u * kWordBits, a, sizeof a);
    }
  });
}

void planes_weight_grad(const KernelTable& kt, const float* g, std::size_t M, const word_t* bits,
                        const double* betas, std::size_t ncols, int order, std::size_t ldbits, std::size_t rows,
                        float* out) {
  const std::size_t J = ldbits * kWordBits;
  std::vector<word_t> s(words_for(ncols) * J);
  std::vector<const float*> arows(ncols);
  std::vector<float> scale(ncols);
  for (std::size_t j = 0; j < ncols; ++j) arows[j] = g + j * M;
  for (int k = 0; k < order; ++k) {
    transpose_planes(kt, bits, ncols, order, ldbits, k, s.data());
    for (std::size_t j = 0; j < ncols; ++j) scale[j] = static_cast<float>(betas[j * order + k]);
    sign_gemm(kt, SignGemm{arows.data(), scale.data(), ncols, M, s.data(), J, out, weight_grad_stride(M), k > 0},
              rows);
  }
}

void planes_weight_grad_rows(const KernelTable& kt, const float* g, std::size_t M, const word_t* bits,
                             const double* betas, std::size_t ncols, int order, std::size_t ldbits, std::size_t n,
                             float* dw, const LatentWeights* latent) {
  // Tasks of kOut outputs m, each over all n bit positions kRows at a time: a block of every plane's product in a
  // local buffer (kRows x kOut floats, in L1/L2), transposed into the task's rows of dW~ while it is there, so no
  // (n x M) matrix goes through memory and back (mnist-cnn's 3136 x 256 layer: 3.4 MB each way). With `latent`,
  // the task's rows of dW~ stay in a local buffer (kOut x n floats, L2) and go through KernelTable::weight_grad
  // from there. Per output the same operations as planes_weight_grad's (one sign_gemm per plane, in plane order,
  // each over all columns; a lane's sums do not depend on which lanes share its block): the same bits.
  constexpr std::size_t kOut = 32, kRows = 512;
  const std::size_t K = static_cast<std::size_t>(order), J = ldbits * kWordBits, wc = words_for(ncols);
  std::vector<word_t> s(K * wc * J);
  std::vector<float> scale(K * ncols);
  for (std::size_t k = 0; k < K; ++k) {
    transpose_planes(kt, bits, ncols, order, ldbits, static_cast<int>(k), s.data() + k * wc * J);
    for (std::size_t j = 0; j < ncols; ++j) scale[k * ncols + j] = static_cast<float>(betas[j * K + k]);
  }
  parallel_for(ceil_div(M, kOut), [&](std::size_t t) {
    const std::size_t m0 = t * kOut, lanes = std::min(kOut, M - m0);
    std::vector<const float*> arows(ncols);
    for (std::size_t j = 0; j < ncols; ++j) arows[j] = g + j * M + m0;
    std::unique_ptr<float[]> block(new float[kRows * kOut]);  // row b - j0, lane m - m0; every lane written
    std::unique_ptr<float[]> own(latent ? new float[lanes * n] : nullptr);
    float* const rows = latent ? own.get() : dw + m0 * n;  // the task's rows of dW~, n floats each
    for (std::size_t j0 = 0; j0 < n; j0 += kRows) {
      const std::size_t nj = std::min(kRows, n - j0);
      for (std::size_t k = 0; k < K; ++k)
        kt.sign_gemm(SignGemm{arows.data(), scale.data() + k * ncols, ncols, lanes, s.data() + k * wc * J + j0, J,
                              block.get(), kOut, k > 0},
                     0, lanes, 0, nj);
      kt.to_nhwc(block.get(), kOut, nj, lanes, nullptr, nullptr, rows + j0, n);
    }
    if (latent) {
      SerialScope serial(true);  // inside a task: weight_grad's own parallel_for runs here
      kt.weight_grad(latent->w + m0 * n, latent->alpha + m0, rows, lanes, n, latent->clip, dw + m0 * n);
    }
  });
}

void gather_weight_grad(const float* out, std::size_t M, std::size_t groups, std::size_t cg, std::size_t gw,
                        std::size_t taps, float* dw) {
  const std::size_t n = groups * cg, C = n / taps, ldo = weight_grad_stride(M);
  // 16 x 16 tiles: a tile's 16 source rows are read 16 outputs at a time and its rows of dw written a cache
  // line at a time.
  constexpr std::size_t kTile = 16;
  parallel_for(ceil_div(n, kTile), [&](std::size_t t) {
    const std::size_t col0 = t * kTile, cols = std::min(kTile, n - col0);
    const float* src[kTile];
    for (std::size_t k = 0; k < cols; ++k) {
      const std::size_t col = col0 + k, v = (col % taps) * C + col / taps;  // dw column (c, tap): value tap * C + c
      src[k] = out + ((v / cg) * gw * kWordBits + v % cg) * ldo;
    }
    for (std::size_t m = 0; m < M; ++m)
      for (std::size_t k = 0; k < cols; ++k) dw[m * n + col0 + k] = src[k][m];
  });
}

void conv_input_grad(const KernelTable& kt, const float* g, const float* alpha, const word_t* wbits,
                     const ConvGeometry& geo, std::size_t m, const float* x, float clip, float* gx) {
  const std::size_t T = geo.kh * geo.kw, C = geo.channels, N = geo.batch;
  const std::size_t OW = geo.out_w, P = geo.out_h * OW, J = C * T;
  // The product: reduction over o, lanes over output positions, one sign row per (c, tap).
  const std::vector<word_t> s = weight_sign_rows(kt, wbits, m, J);
  const std::size_t lds = words_for(J) * kWordBits;  // the sign rows' stride
  // Lanes: an image's positions, straight from an NCHW g; images smaller than a lane block, or whose last block
  // would be less than half full, are first copied side by side (below) and a task takes up to 16 blocks' worth
  // of them, its blocks running across image boundaries (7x7 maps: 4% of lanes idle, against 23% with one image per
  // block; 14x14 maps: 196 positions, whose fourth block had 4 lanes: the product's full cost for 4 lanes;
  // mnist-cnn's 14x14 input gradient at batch 64, `profile_sign_gemm igrad 64 32 14 64` on an AMD EPYC Zen 3: 5.22
  // -> 4.58 ms, first quartiles of 24 alternated runs, the copy included). An NHWC g (position-major, as
  // if side by side already) is transposed a block of lanes at a time. The split depends on the shapes only (an
  // output's fold order follows the blocks), so results are the same at any thread count and in either layout.
  constexpr std::size_t kLanes = 64, kMargin = 16, kBlocksPerTask = 16;
  const bool grouped = P < kLanes || (P % kLanes != 0 && P % kLanes * 2 < kLanes);
  // Grouped images go in tasks of equal size, a multiple of four of them where the batch allows: mnist-cnn's 7x7
  // maps at batch 64 were 20 + 20 + 20 + 4 images, which kept one of two threads on 40 of them; now 4 x 16
  // (`HORQ_NUM_THREADS=2 profile_sign_gemm igrad 64 64 7 64`, AMD EPYC Zen 3: 1.07 -> 0.90 ms, first quartiles of 10
  // alternated runs; 1 thread and the 14x14 layer unchanged).
  const std::size_t most = std::max<std::size_t>(1, kBlocksPerTask * kLanes / P);  // images a grouped task may take
  const std::size_t even = std::min(N, ceil_div(ceil_div(N, most), 4) * 4);          // grouped tasks, rounded up
  const std::size_t per_task = grouped ? ceil_div(N, even) : 1;
  const std::size_t tasks = ceil_div(N, per_task);
  // The gradient lands on the padded input grid first (Hg x Wg per image and channel: every tap of every
  // output is inside it, so the fold needs no bounds), then the padding is cropped away.
  const std::size_t Hg = (geo.out_h - 1) * geo.sh + (geo.kh - 1) * geo.dh + 1;
  const std::size_t Wg = (OW - 1) * geo.sw + (geo.kw - 1) * geo.dw + 1, Pz = Hg * Wg;
  const std::size_t rows_per_chunk = T * std::max<std::size_t>(1, 576 / T);  // a chunk's outputs stay in L2
  std::unique_ptr<float[]> gz(new float[N * C * Pz]);  // each task zeroes its images' planes
  // Tasks own whole images (all writes of an image's lanes land in its planes); the split depends on the
  // shapes only, so every sum runs in one order at any thread count.
  parallel_for(tasks, [&](std::size_t task) {
    const std::size_t n_begin = task * per_task, n_end = std::min(N, n_begin + per_task);
    std::fill_n(gz.get() + n_begin * C * Pz, (n_end - n_begin) * C * Pz, 0.0f);
    // buf: the product's rows of a chunk, with a vector's margin before and after (the fold's masked loads).
    std::vector<float> bufmem(std::min(J, rows_per_chunk) * kLanes + 2 * kMargin);
    float* const buf = bufmem.data() + kMargin;
    std::vector<float> lanes_t(geo.nhwc ? m * kLanes : 0);  // an NHWC block of lanes as rows (o, lane)
    std::vector<const float*> rows(m);
    std::vector<FoldRun> runs;  // the block's lanes along output rows (sign_gemm.h, Fold)
    const std::size_t q_begin = grouped ? n_begin * P : 0, q_end = grouped ? n_end * P : P;
    // Side by side from an NCHW g: the task's images copied block by block, (block, o, lane), reading their part of
    // g (one contiguous stretch) in order; each block's rows are then one contiguous stretch too. (Read in place,
    // a block's rows are m short stretches of m different planes, and the product's table build waited on them.)
    std::unique_ptr<float[]> blocks;  // not zeroed: the product reads only the lanes copied
    if (grouped && !geo.nhwc) {
      blocks.reset(new float[ceil_div(q_end - q_begin, kLanes) * m * kLanes]);
      for (std::size_t n = n_begin; n < n_end; ++n)
        for (std::size_t o = 0; o < m; ++o) {
          const float* src = g + (n * m + o) * P;
          for (std::size_t p = 0, q = (n - n_begin) * P; p < P;) {  // q: the lane in the task
            const std::size_t len = std::min(P - p, kLanes - q % kLanes);
            std::copy_n(src + p, len, blocks.get() + (q / kLanes * m + o) * kLanes + q % kLanes);
            p += len, q += len;
          }
        }
    }
    for (std::size_t q0 = q_begin; q0 < q_end; q0 += kLanes) {
      const std::size_t lanes = std::min(kLanes, q_end - q0);
      if (geo.nhwc) {
        const float* gl = g + ((grouped ? 0 : n_begin * P) + q0) * m;  // lane l's m gradients at gl + l * m
        kt.to_nhwc(gl, m, lanes, m, nullptr, nullptr, lanes_t.data(), kLanes);  // (lanes x m) -> (m x lanes)
        for (std::size_t o = 0; o < m; ++o) rows[o] = lanes_t.data() + o * kLanes;
      } else {
        for (std::size_t o = 0; o < m; ++o)
          rows[o] = grouped ? blocks.get() + ((q0 - q_begin) / kLanes * m + o) * kLanes
                            : g + (n_begin * m + o) * P + q0;
      }
      runs.clear();  // the block's lanes as runs along ox: lane (image, oy, ox) lands at (oy sh, ox sw) + tap
      for (std::size_t q = 0; q < lanes;) {
        const std::size_t at = q0 + q, n = grouped ? at / P : n_begin, oy = at % P / OW, ox = at % OW;
        const std::size_t len = std::min(OW - ox, lanes - q);
        runs.push_back({q, len, n * C * Pz + oy * geo.sh * Wg + ox * geo.sw});
        q += len;
      }
      for (std::size_t j0 = 0; j0 < J; j0 += rows_per_chunk) {  // J = C * T: no padding rows here
        const std::size_t nj = std::min(rows_per_chunk, J - j0);
        kt.sign_gemm(SignGemm{rows.data(), alpha, m, lanes, s.data() + j0, lds, buf, kLanes, false}, 0, lanes, 0,
                     nj);
        kt.fold_rows(Fold{buf, kLanes, nj / T, geo.kh, geo.kw, geo.dh, geo.dw, geo.sw, Wg, Pz, runs.data(), runs.size(),
                          gz.get() + j0 / T * Pz, gz.get() + n_end * C * Pz});
      }
    }
    for (std::size_t n = n_begin; n < n_end; ++n) crop_input_grad(kt, geo, Hg, Wg, gz.get(), n, x, clip, gx);
  });
}

void linear_input_grad(const KernelTable& kt, const float* g, const float* alpha, const word_t* wbits, std::size_t N,
                       std::size_t O, std::size_t n, const float* x, float clip, float* gx) {
  std::vector<float> gt(O * N);
  for (std::size_t r = 0; r < N; ++r)
    for (std::size_t o = 0; o < O; ++o) gt[o * N + r] = g[r * O + o];
  const std::vector<word_t> s = weight_sign_rows(kt, wbits, O, n);
  std::vector<const float*> rows(O);
  for (std::size_t o = 0; o < O; ++o) rows[o] = gt.data() + o * N;
  // One output row per value (the sign rows past n, padding of the last word, are not computed).
  const std::size_t J = words_for(n) * kWordBits;
  std::unique_ptr<float[]> out(new float[n * N]);  // every value written by the product
  sign_gemm(kt, SignGemm{rows.data(), alpha, O, N, s.data(), J, out.get(), N, false}, n);
  // gx = out^T (out is (n, N)), 64 values of every row at a time, 8 x 8 or 16 x 16 blocks transposed in registers,
  // then the clip window over the rows just written.
  constexpr std::size_t kCols = 64;
  parallel_for(ceil_div(n, kCols), [&](std::size_t t) {
    const std::size_t i0 = t * kCols, ni = std::min(kCols, n - i0);
    kt.to_nhwc(out.get() + i0 * N, N, ni, N, nullptr, nullptr, gx + i0, n);
    if (clip >= 0.0f)
      for (std::size_t r = 0; r < N; ++r) {
        float* __restrict dst = gx + r * n + i0;
        const float* __restrict xr = x + r * n + i0;
        for (std::size_t i = 0; i < ni; ++i) dst[i] = in_window(dst[i], xr[i], clip);
      }
  });
}

}  // namespace horq
