// CPU probe and function table. __builtin_cpu_supports reads cpuid and, for AVX/AVX-512, also checks
// with xgetbv that the OS saves the wider registers, so a listed path is safe to call.
// The x86 tables exist only when CMakeLists.txt compiled their files (HORQ_HAVE_X86_KERNELS, x86 targets);
// elsewhere (aarch64, ...) the library has the generic path alone and says so when asked for another.
#include "core/dispatch.h"

#include <atomic>
#include <stdexcept>

namespace horq {
namespace {

// A path's table, every member set by name from the functions that end in _<isa> (dispatch.h and the headers it
// includes declare them); the GEMM task and its task-size hook are given, as the generic path has neither.
#define HORQ_KERNEL_TABLE(isa, task, split)              \
  [] {                                                   \
    KernelTable t{};                                     \
    t.name = #isa;                                       \
    t.bgemm = bgemm_popcount_##isa;                      \
    t.quantize = quantize_column_##isa;                  \
    t.quantize_taps = quantize_taps_##isa;               \
    t.quantize_taps2 = quantize_taps2_##isa;             \
    t.quantize_taps3 = nullptr;                          \
    t.quantize_image = quantize_image_##isa;             \
    t.pack_pixels = pack_pixels_##isa;                   \
    t.to_nhwc = to_nhwc_##isa;                           \
    t.gemm_task = task;                                  \
    t.gemm_split = split;                                \
    t.sign_gemm = sign_gemm_##isa;                       \
    t.fold_rows = fold_rows_##isa;                       \
    t.expand_column = expand_column_##isa;               \
    t.binarize_rows = binarize_rows_##isa;               \
    t.weight_grad = weight_grad_##isa;                   \
    t.float_conv_row = float_conv_row_##isa;             \
    t.float_conv_tiles = float_conv_tiles_##isa;         \
    t.float_conv_depthwise = float_conv_depthwise_##isa; \
    t.float_dots = float_dots_##isa;                     \
    t.pool_row = pool_row_##isa;                         \
    t.pool2x2_plane = pool2x2_plane_##isa;               \
    t.transpose64 = transpose64_##isa;                   \
    t.band2_pixels = nullptr;                            \
    t.band2_columns = nullptr;                           \
    t.band2_pixels_nchw = nullptr;                       \
    t.band2_thresholds = nullptr;                        \
    return t;                                            \
  }()

static_assert(sizeof(KernelTable) == 27 * sizeof(void*),
              "a member added to KernelTable must be set in HORQ_KERNEL_TABLE (and counted here)");

const KernelTable kGeneric = [] {
  KernelTable t = HORQ_KERNEL_TABLE(generic, nullptr, nullptr);
  t.quantize_taps3 = quantize_taps3_generic;
  return t;
}();

std::atomic<bool> avx2_table{true};

bool always() { return true; }

#if HORQ_HAVE_X86_KERNELS
const KernelTable kAvx2 = [] {
  KernelTable t = HORQ_KERNEL_TABLE(avx2, gemm_task_avx2, gemm_split_avx2);
  t.quantize_taps3 = quantize_taps3_avx2;
  t.band2_pixels = band2_pixels_avx2;  // as avx512
  t.band2_columns = band2_columns_avx2;
  t.band2_pixels_nchw = band2_pixels_nchw_avx2;
  t.band2_thresholds = band2_thresholds_avx2;
  return t;
}();
const KernelTable kAvx512 = [] {
  KernelTable t = HORQ_KERNEL_TABLE(avx512, gemm_task_avx512, nullptr);
  // The per-column route's order 3 (channel counts 64 does not divide) from the avx2 file: 96ch 28x28 0.633 -> 0.493 ms
  // against the double chain (docs/KERNELS.md round 44); the image route has its own (quantize_image_avx512).
  t.quantize_taps3 = quantize_taps3_avx2;
  t.band2_pixels = band2_pixels_avx512;
  t.band2_columns = band2_columns_avx512;
  t.band2_pixels_nchw = band2_pixels_nchw_avx512;
  t.band2_thresholds = band2_thresholds_avx512;
  return t;
}();

// Every instruction set an ISA file is compiled for (CMakeLists.txt: -mavx2 -mfma -mpopcnt -mbmi2, and the AVX-512
// ones), not only the ones its intrinsics name: the compiler may use any of them anywhere in the file. A CPU (or a
// virtual machine's CPU model) with AVX2 but without FMA or BMI2 gets the generic path.
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt") &&
         __builtin_cpu_supports("bmi2");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
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

void set_avx2_table_gemm(bool on) { avx2_table.store(on, std::memory_order_relaxed); }
bool avx2_table_gemm() { return avx2_table.load(std::memory_order_relaxed); }

}  // namespace horq
