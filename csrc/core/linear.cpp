// Linear layer input side: each sample's vector is one column (HORQ.md "Notation"), quantized as one
// group so its bits line up with the PackedWeights rows unchanged.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "core/layer.h"
#include "core/threadpool.h"

namespace horq {

QuantizedColumns quantize_rows(const KernelTable& kt, const float* x, std::size_t rows, std::size_t n, int order) {
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
    std::copy(x + j * n, x + (j + 1) * n, buf.begin());
    double* beta = q.betas.data() + j * order;
    kt.quantize(buf.data(), 1, n, order, q.bits.data() + j * order * q.kw, q.kw, beta);
    // beta_1 = mean |x| in double cannot overflow for float inputs, so it is finite iff x is.
    if (!std::isfinite(beta[0])) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument("input contains NaN or Inf");
  return q;
}

}  // namespace horq
