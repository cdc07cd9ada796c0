// CPU probe and function table. __builtin_cpu_supports reads cpuid and, for AVX/AVX-512, also checks
// with xgetbv that the OS saves the wider registers, so a listed path is safe to call.
#include "core/dispatch.h"

#include <stdexcept>

namespace horq {
namespace {

const KernelTable kGeneric{"generic", bgemm_popcount_generic, quantize_column_generic, quantize_taps_generic,
                           quantize_taps2_generic};
const KernelTable kAvx2{"avx2", bgemm_popcount_avx2, quantize_column_avx2, quantize_taps_avx2, quantize_taps2_avx2};
const KernelTable kAvx512{"avx512", bgemm_popcount_avx512, quantize_column_avx512, quantize_taps_avx512,
                          quantize_taps2_avx2};

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

std::vector<std::string> probe() {
  std::vector<std::string> paths;
  if (cpu_has_avx512()) paths.push_back(kAvx512.name);
  if (cpu_has_avx2()) paths.push_back(kAvx2.name);
  paths.push_back(kGeneric.name);
  return paths;
}

}  // namespace

const std::vector<std::string>& known_kernels() {
  static const std::vector<std::string> names{kAvx512.name, kAvx2.name, kGeneric.name};
  return names;
}

const std::vector<std::string>& available_kernels() {
  static const std::vector<std::string> paths = probe();
  return paths;
}

const KernelTable& kernel_table(const std::string& name) {
  const auto& avail = available_kernels();
  const std::string want = name.empty() ? avail.front() : name;
  const KernelTable* table = want == kAvx512.name ? &kAvx512
                             : want == kAvx2.name ? &kAvx2
                             : want == kGeneric.name ? &kGeneric
                                                     : nullptr;
  if (!table)
    throw std::invalid_argument("unknown kernel path '" + want + "' (known: avx512, avx2, generic)");
  for (const auto& p : avail)
    if (p == want) return *table;
  std::string have;
  for (const auto& p : avail) have += (have.empty() ? "" : ", ") + p;
  throw std::invalid_argument("kernel path '" + want + "' is not supported by this CPU (available: " + have + ")");
}

}  // namespace horq
