// Software prefetch of float rows: `rows` rows of `len` floats, `stride` floats apart, requested into the cache
// line by line. For access patterns the hardware prefetchers do not follow: many short rows of different planes
// (an NCHW map's row across its channels) read a little at a time.
#pragma once
#include <cstddef>

namespace horq {

inline void prefetch_rows(const float* src, std::size_t stride, std::size_t rows, std::size_t len) {
  constexpr std::size_t kLineFloats = 64 / sizeof(float);
  if (len == 0) return;
  for (std::size_t r = 0; r < rows; ++r, src += stride) {
    for (std::size_t i = 0; i < len; i += kLineFloats) __builtin_prefetch(src + i);
    __builtin_prefetch(src + len - 1);
  }
}

}  // namespace horq
