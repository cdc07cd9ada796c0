// How fast one core reads an NCHW float image from memory when it walks G channel planes side by side (G streams,
// 64 pixels of each channel in turn, then the next 64 pixels), for G = C, C / 2, ... 1: the access pattern of the
// pixel pass (a 64-channel group read 64 pixels at a time is C streams; quantize_avx512.cpp kChannelRun reads 16
// channels at a time over long runs). Before every read the core writes `flush` MB of another buffer, so the image
// comes from memory. Plain SSE2 loads (every x86-64 has them), XORed into four accumulators.
//
//   g++ -O2 -std=c++17 benchmarks/read_streams.cpp -o /tmp/read_streams
//   /tmp/read_streams [channels 64] [pixels 3136] [flush MB 64] [rounds 30]
//
// Prints, per stream count, the median time of a whole read and its rate.
#include <emmintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

volatile long long g_sink;

double read_once(const float* x, std::size_t C, std::size_t P, std::size_t G, std::vector<char>& flush) {
  for (std::size_t i = 0; i < flush.size(); i += 64) ++flush[i];
  const auto t0 = std::chrono::steady_clock::now();
  __m128i acc[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
  constexpr std::size_t kBlock = 64;  // pixels of one channel read in a row
  for (std::size_t c0 = 0; c0 < C; c0 += G)
    for (std::size_t p0 = 0; p0 < P; p0 += kBlock)
      for (std::size_t c = c0; c < std::min(C, c0 + G); ++c) {
        const float* row = x + c * P;
        const std::size_t end = std::min(P, p0 + kBlock);
        std::size_t p = p0;
        for (; p + 16 <= end; p += 16)
          for (int k = 0; k < 4; ++k)
            acc[k] = _mm_xor_si128(acc[k], _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + p + 4 * k)));
        for (; p < end; ++p) acc[0] = _mm_xor_si128(acc[0], _mm_cvtsi32_si128(static_cast<int>(row[p])));
      }
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  const __m128i a = _mm_xor_si128(_mm_xor_si128(acc[0], acc[1]), _mm_xor_si128(acc[2], acc[3]));
  g_sink = g_sink + _mm_cvtsi128_si64(a);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t C = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  const std::size_t P = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 3136;
  const std::size_t flush_mb = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 64;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 30;
  if (C == 0 || P == 0 || rounds <= 0) {
    std::fprintf(stderr, "channels, pixels and rounds must be positive\n");
    return 2;
  }
  std::vector<float> x(C * P, 1.0f);
  std::vector<char> flush(flush_mb << 20);
  std::printf("%zu channels x %zu pixels (%.0f KB), %zu MB written before each read, median of %d reads:\n", C, P,
              static_cast<double>(C * P * sizeof(float)) / 1024.0, flush_mb, rounds);
  for (std::size_t G = C;; G = (G + 1) / 2) {
    std::vector<double> t;
    for (int r = 0; r < rounds; ++r) t.push_back(read_once(x.data(), C, P, G, flush));
    std::sort(t.begin(), t.end());
    const double us = t[t.size() / 2];
    std::printf("  %3zu streams: %7.1f us (%.1f GB/s)\n", G, us, static_cast<double>(C * P * sizeof(float)) / us / 1e3);
    if (G == 1) break;
  }
  return 0;
}
