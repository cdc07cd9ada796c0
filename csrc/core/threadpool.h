// A small persistent thread pool. parallel_for hands out task indices from one atomic range (the caller's thread
// from the front, the helpers from the back); every task writes a disjoint part of the output and computes it the
// same way whatever thread runs it, so results are bitwise identical for any thread count.
#pragma once
#include <cstddef>
#include <functional>

namespace horq {

// Threads used by parallel_for (the caller's thread included). Default: HORQ_NUM_THREADS if set, else
// std::thread::hardware_concurrency().
int get_num_threads();
void set_num_threads(int n);  // n >= 1

// Runs fn(t) for t in [0, ntasks) on up to get_num_threads() threads and returns when all are done.
// fn must not throw. Calls from several caller threads are serialized.
void parallel_for(std::size_t ntasks, const std::function<void(std::size_t)>& fn);

// fn(i) for items i in [0, n), in tasks of per_task consecutive items (at least one), for items too small to be
// a task each; a task's items run in order on one thread.
template <class Fn>
void parallel_for_items(std::size_t n, std::size_t per_task, Fn&& fn) {
  per_task = per_task ? per_task : 1;
  parallel_for((n + per_task - 1) / per_task, [&](std::size_t task) {
    const std::size_t end = (task + 1) * per_task < n ? (task + 1) * per_task : n;
    for (std::size_t i = task * per_task; i < end; ++i) fn(i);
  });
}

// A spin-wait loop's pause between checks (x86 PAUSE: the other hardware thread of the core keeps its resources, and
// the loop's exit is not a memory-order mis-speculation).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// While one is alive on a thread, parallel_for calls from that thread run every task on it when `serial`: for
// jobs smaller than what waking a helper thread costs (the same results: tasks are independent).
class SerialScope {
 public:
  explicit SerialScope(bool serial);
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool previous_;
};

}  // namespace horq
