// Linear layer input side (docs/MATH.md "Notation"): one sample's whole input vector is one column of
// n = in_features values, quantized as a single group so its bits line up with the PackedWeights rows
// unchanged (no re-layout, unlike a convolution's).
//
// Arithmetic: the stored-residual kernel (quantize_column, quantize.h): the row is copied to double, r_0 = x,
// then per order k: H_k = sign(r_{k-1}) packed, beta_k = mean |r_{k-1}|, r_k = r_{k-1} -+ beta_k in place.
// The column is the row itself, so there is nothing to gather and one pass per order streams it. beta_1 =
// mean |x| in double cannot overflow for finite float32 values (n * 3.4e38 << 1.8e308), so a non-finite
// beta_1 means the row held NaN or Inf: that is the finiteness check, at no extra pass. With an input affine
// (in_scale, in_shift: a BatchNorm before the layer), the row is x * in_scale + in_shift in float32, computed as it is
// copied; a value the affine takes to Inf then fails the same check.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "core/layer.h"
#include "core/threadpool.h"

namespace horq {

QuantizedColumns quantize_rows(const KernelTable& kt, const float* x, std::size_t rows, std::size_t n, int order,
                               const float* in_scale, const float* in_shift) {
  QuantizedColumns q;
  q.ncols = rows;
  q.n = n;
  q.kw = words_for(n);
  q.order = order;
  q.bits.assign(rows * order * q.kw, 0);
  q.betas.assign(rows * order, 0.0);
  std::atomic<bool> finite{true};
  parallel_for(rows, [&](std::size_t j) {
    thread_local std::vector<double> buf;
    if (buf.size() < n) buf.resize(n);
    const float* row = x + j * n;
    if (in_scale) {  // float32 multiply, then add (no contraction: -ffp-contract=off), as an affine step computes it
      for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<double>(row[i] * in_scale[i] + in_shift[i]);
    } else {
      std::copy(row, row + n, buf.begin());
    }
    double* beta = q.betas.data() + j * order;
    kt.quantize(buf.data(), 1, n, order, q.bits.data() + j * order * q.kw, q.kw, beta);
    if (!std::isfinite(beta[0])) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");
  return q;
}

}  // namespace horq
