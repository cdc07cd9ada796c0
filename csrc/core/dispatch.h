// Kernel selection: the CPU is probed once; every path it can run is listed best first, generic last.
#pragma once
#include <string>
#include <vector>

#include "core/bgemm.h"
#include "core/quantize.h"

namespace horq {

struct KernelTable {
  const char* name;
  bgemm_fn bgemm;
  quantize_fn quantize;
  quantize_taps_fn quantize_taps;
  quantize_taps2_fn quantize_taps2;  // conv order 2 (float32 pass; the AVX-512 table uses the AVX2 one)
};

// Every path this library knows, whether or not this CPU can run it.
const std::vector<std::string>& known_kernels();
// The paths this CPU (and OS) can run, best first; "generic" is always last.
const std::vector<std::string>& available_kernels();
// The table for `name` (empty = the best available). Throws std::invalid_argument for an unknown name
// or a path this CPU cannot run.
const KernelTable& kernel_table(const std::string& name);

}  // namespace horq
