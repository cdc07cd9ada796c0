// CPU probe and function table. __builtin_cpu_supports reads cpuid and, for AVX/AVX-512, also checks
// with xgetbv that the OS saves the wider registers, so a listed path is safe to call.
// The x86 tables exist only when CMakeLists.txt compiled their files (HORQ_HAVE_X86_KERNELS, x86 targets);
// elsewhere (aarch64, ...) the library has the generic path alone and says so when asked for another.
#include "core/dispatch.h"

#include <stdexcept>

namespace horq {
namespace {

const KernelTable kGeneric{"generic",           bgemm_popcount_generic, quantize_column_generic,
                           quantize_taps_generic, quantize_taps2_generic, pack_pixels_generic,
                           to_nhwc_generic,       nullptr,                sign_gemm_generic,
                           fold_rows_generic,     expand_column_generic,  binarize_rows_generic,
                           weight_grad_generic,   float_conv_row_generic, pool_row_generic,
                           pool2x2_plane_generic};

bool always() { return true; }

#if HORQ_HAVE_X86_KERNELS
const KernelTable kAvx2{"avx2",          bgemm_popcount_avx2, quantize_column_avx2, quantize_taps_avx2,
                        quantize_taps2_avx2, pack_pixels_avx2,    to_nhwc_avx2,         gemm_task_avx2,
                        sign_gemm_avx2,      fold_rows_avx2,      expand_column_avx2,   binarize_rows_avx2,
                        weight_grad_avx2,    float_conv_row_avx2,  pool_row_avx2,        pool2x2_plane_avx2};
const KernelTable kAvx512{"avx512",          bgemm_popcount_avx512, quantize_column_avx512, quantize_taps_avx512,
                          quantize_taps2_avx512, pack_pixels_avx512,    to_nhwc_avx512,         gemm_task_avx512,
                          sign_gemm_avx512,      fold_rows_avx512,      expand_column_avx512,   binarize_rows_avx512,
                          weight_grad_avx512,    float_conv_row_avx512,  pool_row_avx512,
                          pool2x2_plane_avx512};

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vpopcntdq");
}
#endif

struct Path {
  const KernelTable* table;
  bool (*cpu_runs)();
};

// The paths built into this library, best first, generic last.
const Path kBuilt[] = {
#if HORQ_HAVE_X86_KERNELS
    {&kAvx512, cpu_has_avx512},
    {&kAvx2, cpu_has_avx2},
#endif
    {&kGeneric, always},
};

// Paths horq has for other targets, left out of this build.
#if HORQ_HAVE_X86_KERNELS
const char* const kNotBuilt[] = {nullptr};
#else
const char* const kNotBuilt[] = {"avx512", "avx2", nullptr};
#endif

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& p : names) s += (s.empty() ? "" : ", ") + p;
  return s;
}

std::vector<std::string> probe() {
  std::vector<std::string> paths;
  for (const Path& p : kBuilt)
    if (p.cpu_runs()) paths.push_back(p.table->name);
  return paths;
}

}  // namespace

const std::vector<std::string>& known_kernels() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Path& p : kBuilt) v.push_back(p.table->name);
    return v;
  }();
  return names;
}

const std::vector<std::string>& available_kernels() {
  static const std::vector<std::string> paths = probe();
  return paths;
}

const KernelTable& kernel_table(const std::string& name) {
  const auto& avail = available_kernels();
  const std::string want = name.empty() ? avail.front() : name;
  const KernelTable* table = nullptr;
  for (const Path& p : kBuilt)
    if (want == p.table->name) table = p.table;
  if (!table) {
    for (const char* const* p = kNotBuilt; *p; ++p)
      if (want == *p)
        throw std::invalid_argument("kernel path '" + want + "' is not built into this library: the x86 kernels " +
                                    "are compiled for x86 targets only (known: " + join(known_kernels()) + ")");
    throw std::invalid_argument("unknown kernel path '" + want + "' (known: " + join(known_kernels()) + ")");
  }
  for (const auto& p : avail)
    if (p == want) return *table;
  throw std::invalid_argument("kernel path '" + want + "' is not supported by this CPU (available: " + join(avail) +
                              ")");
}

}  // namespace horq
