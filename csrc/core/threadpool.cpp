// Thread pool behind parallel_for: workers watch for the next job, then doze, then sleep on a condition variable;
// a job is a generation number plus the range of tasks not yet taken, which the caller's thread drains from the
// front and the helpers from the back. The caller returns when the tasks are done, without waiting for helpers that
// had not yet woken up.
#include "core/threadpool.h"

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <pthread.h>
#include <vector>

namespace horq {
namespace {

constexpr std::chrono::microseconds kSpin{150};

// After kSpin a worker dozes for kDoze before it sleeps: it checks for a job, then sleeps kDozeStep (a timer, ~50 us on
// a VM even with 1 us of timer slack), and so on. A worker asleep on the condition variable costs the caller that wakes
// it a system call and, on a VM, an interrupt to a halted virtual CPU, before the caller's own first task, so a 50 us
// job after a pause ran slower at 2 threads than at 1 (it still does after a pause longer than the doze:
// `threadpool_scaling 30000 2 20000000`, 66-79 us on the 2-vCPU AMD EPYC Zen 4). A dozing worker needs no wake-up: the
// caller only bumps the generation, and the worker joins at its next check (the caller does not wait for it: a short
// job is done by then). `threadpool_scaling 30000 2 GAP` (1 thread: 49 us) at 2 threads, medians (p10), sleeping ->
// dozing: GAP 200000 (~0.2 ms) 56-59 (51-55) -> 49 (29-30) us, GAP 2000000 60-62 (57) -> 50-51 (36) us; GAP 2000
// (watching) 26-27 us either way. docs/KERNELS.md round 23.
constexpr std::chrono::milliseconds kDoze{10};
constexpr std::chrono::microseconds kDozeStep{20};

int default_threads() {
  if (const char* env = std::getenv("HORQ_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

// Set in a fork()ed child of a process that had built the pool (a pthread_atfork handler, registered when the pool is
// built). The pool asked getpid() on every job before, a system call of ~0.2 us in a VM: ~8 us of a ResNet-18 call's
// ~40 jobs (docs/KERNELS.md round 25); a flag costs a load.
std::atomic<bool> g_forked_child{false};

// A fork()ed child (e.g. a PyTorch DataLoader worker) inherits the pool but none of its threads, and maybe a
// mutex held by another thread of the parent; so in a process other than the one that built the pool,
// jobs run serially on the caller's thread (same results: tasks are independent) and nothing is joined.
// The pool is never destroyed (it lives until process exit), so no exit-time join can hang either.
class Pool {
 public:
  static bool forked() { return g_forked_child.load(std::memory_order_relaxed); }

  int threads() const { return nthreads_; }

  void set_threads(int n) {
    if (forked()) {
      nthreads_ = n;
      return;
    }
    std::lock_guard<std::mutex> job(job_mu_);
    resize(n - 1);
    nthreads_ = n;
  }

  void run(std::size_t ntasks, const std::function<void(std::size_t)>& fn) {
    if (forked()) {
      for (std::size_t t = 0; t < ntasks; ++t) fn(t);
      return;
    }
    std::lock_guard<std::mutex> one_job(job_mu_);
    const std::size_t helpers = workers_.size() < ntasks ? workers_.size() : ntasks - 1;
    if (ntasks <= 1 || helpers == 0) {
      for (std::size_t t = 0; t < ntasks; ++t) fn(t);
      return;
    }
    if (ntasks > kMaxJobTasks) {  // the job's range holds 32-bit task numbers: larger counts in parts
      for (std::size_t t0 = 0; t0 < ntasks; t0 += kMaxJobTasks) {
        const std::size_t n = ntasks - t0 < kMaxJobTasks ? ntasks - t0 : kMaxJobTasks;
        run_locked(n, [&](std::size_t t) { fn(t0 + t); }, helpers);
      }
      return;
    }
    run_locked(ntasks, fn, helpers);
  }

 private:
  static constexpr std::size_t kMaxJobTasks = 0xffffffffu;

  void run_locked(std::size_t ntasks, const std::function<void(std::size_t)>& fn, std::size_t helpers) {
    Job job{&fn, ntasks, helpers};
    job.range.store(static_cast<std::uint64_t>(ntasks));  // [0, ntasks)
    job_.store(&job);
    generation_.fetch_add(1);
    wake_sleepers();
    work(job, true);
    // Wait for the tasks, not for the helpers: a helper still waking up when the last task is done finds
    // no job and goes back to waiting, so a short job costs no thread wake-up latency. Helpers that did take
    // the job are running; the job (on this stack) is released only after they have let go of it. Both waits
    // first watch the counters for kSpin (a helper's last task, or its leaving a job whose tasks were all
    // taken, is usually microseconds away; sleeping on the condition variable and being woken costs tens of
    // microseconds on a VM, more than a small layer's whole job), then sleep.
    settle([&] { return job.done.load() == ntasks; });
    job_.store(nullptr);
    settle([&] { return holders_.load() == 0; });
  }

  struct Job {
    const std::function<void(std::size_t)>* fn;
    std::size_t ntasks;
    std::size_t helpers;  // only the first `helpers` workers join it (few tasks wake few threads)
    // Tasks [front, back) not yet taken, as front << 32 | back. The caller takes from the front and the helpers
    // from the back, so in consecutive jobs over the same data (a layer's pixel pass and its GEMM; the next layer's,
    // which reads that output) each thread mostly keeps the same part: at 2 threads fewer cache lines move between
    // the cores (a 64-channel layer in a loop much faster, round 22; whole networks at 2 threads alternated in one
    // process against a single shared counter: ResNet-18 32x32 and cifar-vgg a few percent faster in most runs,
    // ResNet-18 224x224 level; round 23).
    std::atomic<std::uint64_t> range{0};
    std::atomic<std::size_t> done{0};
  };

  // The next task for the caller (front) or a helper, or ntasks when none is left.
  static std::size_t take(Job& job, bool front) {
    std::uint64_t r = job.range.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t f = r >> 32, b = r & 0xffffffffu;
      if (f >= b) return job.ntasks;
      const std::uint64_t next = front ? ((f + 1) << 32 | b) : (f << 32 | (b - 1));
      if (job.range.compare_exchange_weak(r, next)) return static_cast<std::size_t>(front ? f : b - 1);
    }
  }

  void work(Job& job, bool front) {
    for (std::size_t t = take(job, front); t < job.ntasks; t = take(job, front)) {
      (*job.fn)(t);
      if (job.done.fetch_add(1) + 1 == job.ntasks) wake_caller();
    }
  }

  // Before sleeping, a worker watches for the next job for kSpin: a layer calls parallel_for a few times in a
  // row, and a condition-variable wake-up costs tens of microseconds on a VM -- as much as a small layer's
  // share of work (2 threads on ResNet-18 layers, fastest calls: 1.35-1.56x without, 1.69-1.75x with). 150 us
  // rather than 30: the gap between two calls of a model in a loop (Python around the call, ~30-100 us) had
  // outlasted the watch, so a call's first jobs (the stem) ran before the dozing helper came
  // (`threadpool_scaling 30000 2 50000`, a ~0.1 ms gap: 2-thread median 55.8 -> 29.7 us, as slow as 1 thread
  // before; ResNet-18 32x32, 224x224 and cifar-vgg at 2 threads 1-3% faster, mnist-cnn level: docs/KERNELS.md
  // round 25). A watch of 200 us had made whole networks slower at 2 threads when numpy steps ran between the
  // layers (it took the second core from them); the runtime's chains now run those layers' steps in the core.
  void spin(std::uint64_t seen) const {
    watch([&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed); },
          64);
  }

  // Returns when ready() holds or after kSpin: ready() checked after every pause instruction, the clock after every
  // `pauses` of them. A pause takes ~25 ns on AMD Zen 3 (~40 ns on recent Intel cores), so the helper's watch had
  // checked the generation only every 64 pauses, ~1.6 us, and each job waited ~0.8 us on average for its helper:
  // `threadpool_scaling 2000 2 2000` (two 0.9 us tasks) 3.1 -> 2.2 us per call at 2 threads, `20000 2 2000` 19.7 ->
  // 18.9 us (ideal 1.85, 18.5); ResNet-18 32x32 at 2 threads ~2% faster (docs/KERNELS.md round 30).
  template <class Ready>
  static void watch(Ready&& ready, int pauses) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (!ready()) {
      for (int i = 1; i < pauses && !ready(); ++i) cpu_relax();
      if (std::chrono::steady_clock::now() > until) return;
    }
  }

  // The caller's wait for ready(): watched first, then asleep on done_cv_ with caller_asleep_ set, which tells the
  // helpers to wake it (wake_caller).
  template <class Ready>
  void settle(Ready&& ready) {
    watch(ready, 8);
    if (ready()) return;
    std::unique_lock<std::mutex> lk(mu_);
    caller_asleep_.store(true);
    done_cv_.wait(lk, ready);
    caller_asleep_.store(false);
  }

  // Hand-overs take no lock unless a thread sleeps. The caller publishes a job (job_, then generation_) and a helper
  // joins it (holders_, then job_) with sequentially consistent atomics only; a mutex taken at each hand-over had the
  // helper, which sees a new generation within a pause, find it still held by the caller (and the caller find it
  // held by a helper leaving the last job), and a contended glibc mutex is a futex system call on both sides: ~89 for
  // each repeat of `benchmarks/profile_model.py --model resnet18-32 --threads 2` (a profile pass and 4 calls), none
  // now (`perf stat -e syscalls:sys_enter_futex`, docs/KERNELS.md round 40). Sleepers are woken through mu_: a sleeper
  // sets its flag or count under mu_ and then tests its condition, the waker changes the condition and then reads
  // the flag (both sequentially consistent), so one of them sees the other: either the sleeper does not sleep, or
  // the waker takes mu_ and notifies it.
  void wake_sleepers() {
    if (sleepers_.load() == 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }

  void wake_caller() {
    if (!caller_asleep_.load()) return;
    std::lock_guard<std::mutex> lk(mu_);
    done_cv_.notify_all();
  }

  // kDoze of checks for the next job with kDozeStep sleeps between (see kDoze).
  void doze(std::uint64_t seen) const {
    const auto until = std::chrono::steady_clock::now() + kDoze;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(kDozeStep);
  }

  void worker(std::size_t index) {
#if defined(__linux__)
    prctl(PR_SET_TIMERSLACK, 1000UL);  // 1 us: doze's sleeps as short as the timer allows (default slack 50 us)
#endif
    std::uint64_t seen = 0;
    for (;;) {
      spin(seen);
      doze(seen);
      if (generation_.load() == seen && !stop_.load()) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      seen = generation_.load();
      // Counted as a holder before reading job_: the caller clears job_ before it waits for holders_ to be 0, so a
      // job read here is not released before this helper lets go of it (or job_ was already cleared: nullptr).
      holders_.fetch_add(1);
      if (Job* job = job_.load(); job != nullptr && index < job->helpers) work(*job, false);
      if (holders_.fetch_sub(1) == 1) wake_caller();
    }
  }

  void resize(int helpers) {
    if (helpers < 0) helpers = 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    for (int i = 0; i < helpers; ++i) workers_.emplace_back(&Pool::worker, this, static_cast<std::size_t>(i));
  }

  std::mutex job_mu_;  // one job at a time
  std::mutex mu_;       // only around sleeping and waking (wake_sleepers)
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::atomic<Job*> job_{nullptr};            // the running job, or none
  std::atomic<std::size_t> holders_{0};       // workers that may be inside job_ right now
  std::atomic<std::uint64_t> generation_{0};  // bumped once per job, after job_ is set
  std::atomic<int> sleepers_{0};              // workers asleep (or about to be) on cv_
  std::atomic<bool> caller_asleep_{false};    // the caller asleep (or about to be) on done_cv_
  std::atomic<bool> stop_{false};
  int nthreads_ = 1;

};

Pool& pool() {
  static Pool* p = [] {
    pthread_atfork(nullptr, nullptr, [] { g_forked_child.store(true, std::memory_order_relaxed); });
    Pool* q = new Pool;  // intentionally leaked: see the class comment
    q->set_threads(default_threads());
    return q;
  }();
  return *p;
}

}  // namespace

int get_num_threads() { return pool().threads(); }

void set_num_threads(int n) { pool().set_threads(n < 1 ? 1 : n); }

namespace {
thread_local bool t_serial = false;
}  // namespace

SerialScope::SerialScope(bool serial) : previous_(t_serial) { t_serial = t_serial || serial; }
SerialScope::~SerialScope() { t_serial = previous_; }

void parallel_for(std::size_t ntasks, const std::function<void(std::size_t)>& fn) {
  if (t_serial) {
    for (std::size_t t = 0; t < ntasks; ++t) fn(t);
    return;
  }
  pool().run(ntasks, fn);
}

}  // namespace horq
