// Does a second thread help on this machine right now? horq's thread pool (parallel_for) running two equal
// tasks of pure arithmetic (no memory traffic), with a short serial gap between calls as between a network's
// layers, timed per call at 1 and 2 threads: percentiles of the call time. On an idle two-core machine the
// 2-thread median is about half the 1-thread one; where another job holds a core part of the time, the calls
// that find it busy wait for the task the second thread took.
//
//   g++ -O2 -std=c++17 -Icsrc benchmarks/threadpool_scaling.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
//       -pthread -o /tmp/threadpool_scaling     (one line; the static core that `make install` leaves in build/)
//   /tmp/threadpool_scaling [work per call, default 100000 multiply-adds] [tasks per call, default 2]
//                           [serial multiply-adds between calls, default 2000: ~2 us; 200000, ~200 us, lets the
//                            idle helper stop watching for the next call (it dozes: threadpool.cpp kDoze);
//                            20000000, ~20 ms, lets it fall asleep]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/threadpool.h"

namespace {

volatile double sink;

void burn(long n) {
  double x = 1.0;
  for (long i = 0; i < n; ++i) x = x * 1.0000001 + 1e-9;
  sink = x;
}

}  // namespace

int main(int argc, char** argv) {
  const long work = argc > 1 ? std::atol(argv[1]) : 100000;
  const long tasks = argc > 2 ? std::atol(argv[2]) : 2;
  const long gap = argc > 3 ? std::atol(argv[3]) : 2000;  // serial multiply-adds between calls
  constexpr int kCalls = 3000;
  for (int threads = 1; threads <= 2; ++threads) {
    horq::set_num_threads(threads);
    std::vector<double> us;
    for (int call = 0; call < kCalls; ++call) {
      const auto t0 = std::chrono::steady_clock::now();
      horq::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t) { burn(work / tasks); });
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      burn(gap);  // the serial step between two layers
    }
    std::sort(us.begin(), us.end());
    std::printf("%d thread(s): p10 %.1f  median %.1f  p90 %.1f us per call\n", threads, us[kCalls / 10],
                us[kCalls / 2], us[9 * kCalls / 10]);
  }
  return 0;
}
