#pragma once
/// @file parallel.hpp
/// @brief The library's thread pool: an explicit, user-controlled number of threads.
///
/// lepton runs large fused loops, reductions and GEMMs on a pool of `num_threads()` threads (the
/// calling thread plus `num_threads() - 1` workers), at most one per hardware thread unless asked
/// otherwise (`set_num_threads`). Workers spin for at most 1 ms after a job to make back-to-back
/// parallel regions cheap (not at all when the pool has more threads than the hardware), then sleep
/// on a condition variable: nothing spins while the library is idle. Several user threads may
/// evaluate expressions at once; when the pool is busy with another caller's job, a parallel region
/// simply runs on the calling thread.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "config.hpp"
#include "error.hpp"
#include "fpenv.hpp"

namespace lepton::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/// The most threads a pool may have (set_num_threads with oversubscribe::yes).
inline constexpr std::size_t max_pool_threads = 4096;

/// The hardware threads this process may run on: its CPU affinity mask on Linux (taskset, cgroup
/// cpusets, mpirun's binding), else std::thread::hardware_concurrency(); at least 1.
inline std::size_t hardware_threads() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int const n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
#endif
  unsigned const hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : hw;
}

/// Number of threads from LEPTON_NUM_THREADS (1 .. hardware_threads()), else the hardware thread
/// count. A larger value is capped and an invalid one ignored, each with one line on stderr.
inline std::size_t default_thread_count() {
  std::size_t const hw = hardware_threads();
  if (char const* env = std::getenv("LEPTON_NUM_THREADS")) {
    char* end = nullptr;
    errno = 0;
    long long const v = std::strtoll(env, &end, 10);
    if (end == env || *end != '\0' || errno == ERANGE || v <= 0) {
      std::fprintf(stderr,
                   "lepton: LEPTON_NUM_THREADS='%s' is not a thread count (a whole number >= 1); using %zu\n",
                   env, hw);
    } else if (static_cast<unsigned long long>(v) > hw) {
      std::fprintf(
          stderr,
          "lepton: LEPTON_NUM_THREADS=%lld: this process can run on %zu hardware threads; using %zu\n", v, hw,
          hw);
    } else {
      return static_cast<std::size_t>(v);
    }
  }
  return hw;
}

class thread_pool {
public:
  explicit thread_pool(std::size_t threads) { start(threads); }
  thread_pool(thread_pool const&) = delete;
  thread_pool& operator=(thread_pool const&) = delete;
  ~thread_pool() { stop(); }

  std::size_t size() const noexcept { return m_workers.size() + 1; }

  void resize(std::size_t threads) {
    std::lock_guard<std::mutex> caller(m_caller);
    stop();
    start(threads);
  }

  /// Runs f(i) for every i in [0, n), spread over the pool. Returns when all calls returned.
  /// The first exception thrown by f is rethrown here (after every task finished).
  template <class F> void run(std::size_t n, F&& f) {
    using fn_t = std::remove_reference_t<F>;
    run_erased(n, &call_task<fn_t>, const_cast<void*>(static_cast<void const*>(std::addressof(f))));
  }

  /// Calls `(*static_cast<Fn*>(ctx))(i)`. Out of line on purpose: the one place a task's body is
  /// compiled (inlined into the serial path, the pool path and the caller's own small-size path it
  /// was compiled three times, and the fused loops are compiled once per ISA level on top).
  template <class Fn> LEPTON_NOINLINE static void call_task(void* ctx, std::size_t i) {
    (*static_cast<Fn*>(ctx))(i);
  }

private:
  using task_fn = void (*)(void*, std::size_t);

  void run_erased(std::size_t n, task_fn fn, void* ctx) {
    if (n == 0) return;
    std::unique_lock<std::mutex> caller(m_caller, std::try_to_lock);
    if (n == 1 || m_workers.empty() || !caller.owns_lock()) {
      for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
      return;
    }
    {
      std::unique_lock<std::mutex> lk(m_mutex);
      // Late workers of the previous job may still be reading its fields.
      m_idle_cv.wait(lk, [&] { return m_active == 0; });
      m_fn = fn;
      m_ctx = ctx;
      m_n = n;
      m_next.store(0, std::memory_order_relaxed);
      m_done.store(0, std::memory_order_relaxed);
      m_error = nullptr;
      m_fp_mode = fp_mode(); // workers compute in the caller's floating-point mode (FTZ/DAZ)
      m_generation.fetch_add(1, std::memory_order_release);
    }
    m_work_cv.notify_all();
    work(m_fn, m_ctx, n);
    // Wait for stragglers: spin briefly, then sleep.
    for (int spin = 0; m_done.load(std::memory_order_acquire) != n; ++spin) {
      if (m_spin && spin < 4000) {
        cpu_relax();
      } else {
        std::unique_lock<std::mutex> lk(m_mutex);
        m_done_cv.wait(lk, [&] { return m_done.load(std::memory_order_acquire) == n; });
      }
    }
    if (m_error) {
      std::exception_ptr e = m_error;
      m_error = nullptr;
      std::rethrow_exception(e);
    }
  }

  void work(task_fn fn, void* ctx, std::size_t n) {
    for (;;) {
      std::size_t i = m_next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      try {
        fn(ctx, i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_mutex);
        if (!m_error) m_error = std::current_exception();
      }
      if (m_done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lk(m_mutex);
        m_done_cv.notify_all();
      }
    }
  }

  void worker_loop() {
    std::size_t seen = m_generation.load(std::memory_order_acquire);
    for (;;) {
      // Spin a little (at most 1 ms, by the clock: a pause instruction takes 1 to 140 cycles
      // depending on the CPU) for the next job before sleeping; not at all when there are more
      // threads than hardware threads, where a spinning worker takes the core of one with work.
      // (50 us made the 2-thread MLP example ~15% slower: its regions are often further apart.)
      if (m_spin) {
        auto const until = std::chrono::steady_clock::now() + std::chrono::microseconds(1000);
        for (int spin = 1;
             m_generation.load(std::memory_order_acquire) == seen && !m_stop.load(std::memory_order_relaxed);
             ++spin) {
          cpu_relax();
          if (spin % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
        }
      }
      task_fn fn;
      void* ctx;
      std::size_t n;
      {
        std::unique_lock<std::mutex> lk(m_mutex);
        m_work_cv.wait(lk, [&] {
          return m_stop.load(std::memory_order_relaxed) ||
                 m_generation.load(std::memory_order_acquire) != seen;
        });
        if (m_stop.load(std::memory_order_relaxed)) return;
        seen = m_generation.load(std::memory_order_acquire);
        fn = m_fn;
        ctx = m_ctx;
        n = m_n;
        set_fp_mode(m_fp_mode);
        ++m_active;
      }
      work(fn, ctx, n);
      {
        std::lock_guard<std::mutex> lk(m_mutex);
        if (--m_active == 0) m_idle_cv.notify_all();
      }
    }
  }

  void start(std::size_t threads) {
    if (threads == 0) threads = default_thread_count();
    m_spin = threads <= hardware_threads();
    m_stop.store(false);
    m_workers.reserve(threads - 1);
    for (std::size_t t = 1; t < threads; ++t) m_workers.emplace_back([this] { worker_loop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_mutex);
      m_stop.store(true);
    }
    m_work_cv.notify_all();
    for (auto& w : m_workers) w.join();
    m_workers.clear();
  }

  std::vector<std::thread> m_workers;
  std::mutex m_caller; // one parallel job at a time
  std::mutex m_mutex;
  std::condition_variable m_work_cv, m_done_cv, m_idle_cv;
  std::atomic<std::size_t> m_generation{0}, m_next{0}, m_done{0};
  std::atomic<bool> m_stop{false};
  bool m_spin = true; // false when oversubscribed (more threads than hardware threads)
  task_fn m_fn = nullptr;
  void* m_ctx = nullptr;
  std::size_t m_n = 0;
  unsigned m_fp_mode = 0;
  std::size_t m_active = 0;
  std::exception_ptr m_error;
};

inline thread_pool& pool() {
  static thread_pool p(default_thread_count());
  return p;
}

/// Runs f(i) for i in [0, n) on the pool.
template <class F> void parallel_for(std::size_t n, F&& f) { pool().run(n, std::forward<F>(f)); }

/// Splits [0, total) into at most `num_threads()` contiguous ranges of at least `grain` items and
/// runs f(begin, end) on each. Runs inline when total < 2 * grain.
template <class F> void parallel_range(std::size_t total, std::size_t grain, F&& f) {
  if (total == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::size_t parts = std::min(pool().size(), total / grain);
  auto task = [&](std::size_t p) {
    std::size_t b = total * p / parts, e = total * (p + 1) / parts;
    f(b, e);
  };
  if (parts <= 1) {
    // Through the same out-of-line call as the pool's tasks: one compiled copy of f's body.
    parts = 1;
    thread_pool::call_task<decltype(task)>(&task, 0);
    return;
  }
  pool().run(parts, task);
}

} // namespace lepton::detail

namespace lepton {

/// @brief Whether set_num_threads may start more threads than the hardware threads this process
///        can run on (`no`: it caps the count, with a warning).
///
/// **Example**: `lepton::set_num_threads(8, lepton::oversubscribe::yes); // 8 even on 2 cores`
enum class oversubscribe : bool { no, yes };

/// @brief Sets the number of threads lepton uses for its parallel loops (0 = the default:
///        `LEPTON_NUM_THREADS`, else every hardware thread this process may run on).
///
/// More threads than hardware threads only slow lepton down (with 4096 threads on 2 cores an epoch
/// took hundreds of times longer), so `n` above lepton::hardware_threads() is capped to it with one
/// line on stderr, unless `allow` is oversubscribe::yes (e.g. to test how work splits over more
/// threads than the machine has, or to match the thread count of a run made elsewhere); even then
/// at most 4096 threads (value_error above). `LEPTON_NUM_THREADS` is capped the same way. Call it
/// while no lepton computation is running (it joins and restarts the workers).
///
/// **Example**: `lepton::set_num_threads(1); // deterministic single-threaded timing`
inline void set_num_threads(std::size_t n, oversubscribe allow = oversubscribe::no) {
  std::size_t const hw = detail::hardware_threads();
  if (allow == oversubscribe::yes) {
    if (n > detail::max_pool_threads)
      throw value_error("set_num_threads(" + std::to_string(n) + "): at most " +
                        std::to_string(detail::max_pool_threads) + " threads");
  } else if (n > hw) {
    std::fprintf(stderr,
                 "lepton: set_num_threads(%zu): this process can run on %zu hardware threads; using %zu "
                 "(more would only be slower)\n",
                 n, hw, hw);
    n = hw;
  }
  detail::pool().resize(n);
}

/// @brief The hardware threads this process may run on (its CPU affinity on Linux): the most
///        threads set_num_threads gives without oversubscribe::yes.
///
/// **Example**: `lepton::set_num_threads(lepton::hardware_threads());`
inline std::size_t hardware_threads() noexcept { return detail::hardware_threads(); }

/// @brief The number of threads lepton's parallel loops use (including the calling thread).
inline std::size_t num_threads() { return detail::pool().size(); }

} // namespace lepton
