// A full-precision fully connected layer for a few samples (the runtime's float classifier at inference batch
// sizes): y[r][o] = min(max(dot(w[o], x[r]) + bias[o], floor[o]), ceiling[o]), each term optional.
//
// Why not BLAS: at one to a few samples the product is a matrix-vector one, bound by streaming the weights, and a
// network's other layers have pushed them out of the caches by then. A plain pass over the rows in order reads
// them at the memory's streaming rate, while OpenBLAS's sgemv took about twice as long on a ResNet-18's 1000 x 512
// classifier (docs/KERNELS.md round 19); and the rows split over the kernels' own threads, where the runtime keeps
// BLAS at one thread (runtime/threads.py).
//
// Sum order, the same on every path and thread count (so the same bits): 32 partial sums, lane l taking the
// products w[i] x[i] of i = l (mod 32) in order of i by fused multiply-add from +0.0, the row zero-padded to a
// multiple of 32 (so every lane runs the same count); then halves folded: lane l += lane l + 16, then l + 8, 4, 2,
// 1; then + bias (rounded), the maximum with floor and the minimum with ceiling (a NaN sum stays NaN).
#pragma once
#include <cstddef>

namespace horq {

struct KernelTable;

constexpr std::size_t kFloatDotLanes = 32;

// y[r * ldy + o] = the folded dot product of row o of w (m rows of n floats) with row r of x (n floats, ldx apart),
// o < m, r < rows.
using float_dots_fn = void (*)(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows,
                               std::size_t ldx, float* y, std::size_t ldy);

void float_dots_generic(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows,
                        std::size_t ldx, float* y, std::size_t ldy);
void float_dots_avx2(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows, std::size_t ldx,
                     float* y, std::size_t ldy);
// The AVX2 kernel (float_linear_avx2.cpp): the product is bound by reading the weights, not by the vector width.
void float_dots_avx512(const float* w, std::size_t m, std::size_t n, const float* x, std::size_t rows,
                       std::size_t ldx, float* y, std::size_t ldy);

// x: rows x n, w: m x n (row o is output o's weights), y: rows x m; bias, floor, ceiling: m values or nullptr.
// Blocks of outputs go to the kernels' threads (each output computed whole by one thread).
void float_linear(const KernelTable& kt, const float* x, std::size_t rows, std::size_t n, const float* w,
                  std::size_t m, const float* bias, const float* floor, const float* ceiling, float* y);

}  // namespace horq
