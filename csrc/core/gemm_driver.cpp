// The binary GEMM of a layer (horq_gemm, layer.h): blocking, threading, and the epilogue of the paths that
// have no outer-product kernel (generic; AVX2/AVX-512 for a linear layer's small batches).
//
// Arithmetic (docs/MATH.md "Output"): with a . b = n - 2 popcount(a ^ b) (bgemm.h), output o of column j is
//     y = alpha_o * sum_k beta_{k,j} (n - 2 pc_k) * scale_o + (scale_o * bias_o + shift_o) = coef_o * s + add_o,
// coef = alpha * scale and add = scale * bias + shift formed once by the caller (a folded bias and BatchNorm).
// Rounding order, which every path's epilogue repeats (outer_panel.h), in float32: n - 2 pc_k is formed as an
// integer and converted once (exactly below 2^24 bits a row); beta_k, coef and add are rounded to float32 once;
// s starts at 0.0f and adds beta_k * (n - 2 pc_k) for k = 1..K in order, the product and the sum each rounded; then
// coef * s rounded, + add rounded. The core is built with -ffp-contract=off: an FMA would round mul + add once, and
// the bits would then depend on the machine.
// After that the optional residual add, floor and ceiling (finish_output). (In double with one final rounding until
// docs/KERNELS.md round 33; float32 lanes are twice as many per vector and need no conversion back.)
//
// Row-kernel tasks: kMB = 64 outputs x kJB = 16 columns. The B block (16 columns x K planes) stays in L1
// while the 64 filter rows stream from L2, and the block's counts fit a 64 x 16K int32 scratch tile (4 KiB
// per order). Outer-product tasks: column blocks whose packed rows fill about kPanelBytes (L1), outputs
// split only when the columns alone leave threads idle. No two tasks write the same output and each output
// is computed the same way on any thread, so the result does not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>

#include "core/layer.h"
#include "core/threadpool.h"

namespace horq {
namespace {

constexpr std::size_t kMB = 64;  // outputs per task
constexpr std::size_t kJB = 16;  // columns per task

std::vector<std::int32_t>& scratch(std::size_t size) {
  thread_local std::vector<std::int32_t> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

// The epilogue of one task's block, y = coef_o * sum_k beta_k (n - 2 pc) + add_o in float32. The order
// is a template argument for the common orders (KT = 1..3; KT = 0 reads it from `order`), so the k loop
// unrolls and the j loop vectorizes; the arithmetic and its order of operations are the same for every KT,
// hence the same result bits.
template <int KT>
void epilogue_block(const std::int32_t* pc, std::size_t mb, std::size_t jb, const double* betas, double n,
                    Epilogue ep, std::size_t o0, const std::size_t* base, std::size_t ppi, bool contiguous,
                    float* y, std::size_t order = 0) {
  const std::size_t K = KT ? static_cast<std::size_t>(KT) : order;
  const std::size_t ldc = jb * K;
  float row[kJB];
  for (std::size_t i = 0; i < mb; ++i) {
    const std::size_t o = o0 + i;
    const std::int32_t* c = pc + i * ldc;
    const float coef = static_cast<float>(ep.coef[o]), add = static_cast<float>(ep.add[o]);
    const std::int64_t ni = static_cast<std::int64_t>(n);
    for (std::size_t j = 0; j < jb; ++j) {
      float s = 0.0f;
      for (std::size_t k = 0; k < K; ++k)  // n - 2 pc as an integer, then one conversion (as the vector paths)
        s += static_cast<float>(betas[j * K + k]) * static_cast<float>(ni - 2 * std::int64_t{c[j * K + k]});
      row[j] = coef * s + add;
    }
    if (ep.residual || ep.floor || ep.ceiling) {
      for (std::size_t j = 0; j < jb; ++j) y[base[j] + o * ppi] = finish_output(row[j], ep, base[j] + o * ppi, o);
    } else if (contiguous) {
      std::copy_n(row, jb, y + base[0] + o * ppi);
    } else {
      for (std::size_t j = 0; j < jb; ++j) y[base[j] + o * ppi] = row[j];
    }
  }
}

// Tasks of a path with an outer-product kernel (gemm_task): column blocks whose packed rows stay in L1
// (about kPanelBytes) unless the path asks for other sizes (gemm_columns), enough of them to keep every thread
// busy, and output blocks only when the columns alone do not give each thread a few tasks (small images, e.g. 7x7
// maps).
constexpr std::size_t kPanelBytes = 32 * 1024;
constexpr std::size_t kOuterMinColumns = 16;
constexpr std::size_t kColAlign = 16;  // columns per kernel call at order 1 (two octets of 64-bit lanes)

void outer_gemm(const KernelTable& kt, const word_t* wbits, std::size_t m, const QuantizedColumns& q, Epilogue ep,
                std::size_t ppi, float* y, WeightCache* cache, GemmPrelude* prelude) {
  const std::size_t K = static_cast<std::size_t>(q.order), threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t row_bytes = K * q.kw * sizeof(word_t);
  std::size_t jb = std::max(kColAlign, kPanelBytes / row_bytes / kColAlign * kColAlign);
  const GemmSplit want = kt.gemm_split ? kt.gemm_split(q, ppi, m, threads) : GemmSplit{};
  if (want.columns) jb = want.columns;
  std::size_t jblocks = ceil_div(q.ncols, jb), mblocks = want.filter_blocks;
  if (!mblocks) {
    if (threads > 1 && jblocks < 4 * threads) jblocks = std::min(4 * threads, ceil_div(q.ncols, kColAlign));
    jb = ceil_div(ceil_div(q.ncols, jblocks), kColAlign) * kColAlign;
    jblocks = ceil_div(q.ncols, jb);
    // A last block of fewer than kColAlign columns joins the one before (a 7x7 map's 49 columns went as 16 / 16 / 16 /
    // 1, three real tasks per filter block: `HORQ_NUM_THREADS=2 profile_conv_core 512 7 1` slower in 7 of 7
    // alternated pairs, docs/KERNELS.md round 24).
    if (jblocks > 1 && q.ncols - (jblocks - 1) * jb < kColAlign) --jblocks;
    mblocks = 1;
    while (threads > 1 && mblocks * jblocks < 4 * threads && m / (2 * mblocks) >= 32) mblocks *= 2;
  }
  const std::size_t mb = ceil_div(m, mblocks);
  // Tasks t of one column block are consecutive, so a thread that takes several (from either end of the range) keeps
  // their panel (dispatch.h gemm_task_fn `call`).
  static std::atomic<std::uint64_t> calls{0};
  const std::uint64_t call = calls.fetch_add(1, std::memory_order_relaxed) + 1;
  // The prelude's units around the GEMM's tasks: its first half (front()) before them, the rest after. The caller,
  // which takes tasks from the front, runs the first half, then the GEMM from its first column block; a helper, from
  // the back, the second half, then the GEMM from its last block: each quantizes the rows it multiplies first.
  const std::size_t units = prelude ? prelude->units() : 0, first = prelude ? prelude->front() : 0;
  const std::size_t gemm = mblocks * jblocks;
  parallel_for(units + gemm, [&](std::size_t task) {
    if (task < first) return prelude->run_unit(task);
    if (task >= first + gemm) return prelude->run_unit(task - gemm);
    const std::size_t t = task - first;
    const std::size_t o0 = (t % mblocks) * mb, j0 = (t / mblocks) * jb;
    const std::size_t n = t / mblocks + 1 == jblocks ? q.ncols - j0 : jb;  // the last block: every column left
    if (prelude) prelude->ready(j0, n);
    kt.gemm_task(wbits, m, q, ep, ppi, y, o0, std::min(mb, m - o0), j0, n, cache, call);
  });
}

}  // namespace

void horq_gemm(const KernelTable& kt, const word_t* wbits, std::size_t m, const QuantizedColumns& q,
               Epilogue ep, std::size_t ppi, float* y, WeightCache* cache, GemmPrelude* prelude) {
  ep.residual_aliases = residual_aliases_output(y, ep.residual, ppi);
  if (prelude) {
    if (!kt.gemm_task || !q.implicit_h1) throw std::logic_error("a GEMM prelude needs the pixel image route");
    return outer_gemm(kt, wbits, m, q, ep, ppi, y, cache, prelude);
  }
  // The outer-product kernels fill vector lanes with columns: a linear layer's few samples would leave most
  // lanes idle, so small batches take the row kernels (a conv's pixel-image columns need the outer path).
  if (kt.gemm_task && (q.implicit_h1 || q.ncols >= kOuterMinColumns))
    return outer_gemm(kt, wbits, m, q, ep, ppi, y, cache, nullptr);
  const std::size_t K = static_cast<std::size_t>(q.order), kw = q.kw;
  const std::size_t mblocks = ceil_div(m, kMB), jblocks = ceil_div(q.ncols, kJB);
  const double n = static_cast<double>(q.n);
  parallel_for(mblocks * jblocks, [&](std::size_t t) {
    const std::size_t o0 = (t % mblocks) * kMB, j0 = (t / mblocks) * kJB;
    const std::size_t mb = std::min(kMB, m - o0), jb = std::min(kJB, q.ncols - j0);
    const std::size_t ldc = jb * K;
    std::int32_t* pc = scratch(mb * ldc).data();
    kt.bgemm(wbits + o0 * kw, mb, q.bits.data() + j0 * K * kw, jb * K, kw, pc, ldc);
    // Output offset of each column without the o * ppi term; stores then run along a row of y.
    std::size_t base[kJB];
    for (std::size_t j = 0; j < jb; ++j) base[j] = ((j0 + j) / ppi) * m * ppi + (j0 + j) % ppi;
    const double* betas = q.betas.data() + j0 * K;
    // One image's columns are contiguous in y: then a row of the block is one contiguous store.
    const bool contiguous = base[jb - 1] == base[0] + jb - 1;
    switch (K) {
      case 1: epilogue_block<1>(pc, mb, jb, betas, n, ep, o0, base, ppi, contiguous, y); break;
      case 2: epilogue_block<2>(pc, mb, jb, betas, n, ep, o0, base, ppi, contiguous, y); break;
      case 3: epilogue_block<3>(pc, mb, jb, betas, n, ep, o0, base, ppi, contiguous, y); break;
      default: epilogue_block<0>(pc, mb, jb, betas, n, ep, o0, base, ppi, contiguous, y, K); break;
    }
  });
}

void bgemm_dot(const KernelTable& kt, const word_t* a, std::size_t m, const word_t* b, std::size_t nb,
               std::size_t kw, std::size_t n, std::int32_t* out) {
  constexpr std::size_t kNB = kJB * 4;
  const std::size_t mblocks = ceil_div(m, kMB), nblocks = ceil_div(nb, kNB);
  parallel_for(mblocks * nblocks, [&](std::size_t t) {
    const std::size_t i0 = (t % mblocks) * kMB, j0 = (t / mblocks) * kNB;
    const std::size_t mb = std::min(kMB, m - i0), jb = std::min(kNB, nb - j0);
    std::int32_t* c = out + i0 * nb + j0;
    kt.bgemm(a + i0 * kw, mb, b + j0 * kw, jb, kw, c, nb);
    for (std::size_t i = 0; i < mb; ++i)
      for (std::size_t j = 0; j < jb; ++j) c[i * nb + j] = static_cast<std::int32_t>(n) - 2 * c[i * nb + j];
  });
}

}  // namespace horq
