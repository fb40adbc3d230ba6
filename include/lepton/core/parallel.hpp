#pragma once
/// @file parallel.hpp
/// @brief The library's thread pool: an explicit, user-controlled number of threads.
///
/// lepton runs large fused loops, reductions and GEMMs on a pool of `num_threads()` threads (the
/// calling thread plus `num_threads() - 1` workers). Workers spin for a few microseconds after a job
/// to make back-to-back parallel regions cheap, then sleep on a condition variable: nothing spins
/// while the library is idle. Several user threads may evaluate expressions at once; when the pool is
/// busy with another caller's job, a parallel region simply runs on the calling thread.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "error.hpp"
#include "fpenv.hpp"

namespace lepton::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/// Number of threads from LEPTON_NUM_THREADS, or the hardware thread count.
inline std::size_t default_thread_count() {
  if (char const* env = std::getenv("LEPTON_NUM_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v <= 4096) return static_cast<std::size_t>(v);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : hw;
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
    if (n == 0) return;
    std::unique_lock<std::mutex> caller(m_caller, std::try_to_lock);
    if (n == 1 || m_workers.empty() || !caller.owns_lock()) {
      for (std::size_t i = 0; i < n; ++i) f(i);
      return;
    }
    using fn_t = std::remove_reference_t<F>;
    {
      std::unique_lock<std::mutex> lk(m_mutex);
      // Late workers of the previous job may still be reading its fields.
      m_idle_cv.wait(lk, [&] { return m_active == 0; });
      m_fn = [](void* ctx, std::size_t i) { (*static_cast<fn_t*>(ctx))(i); };
      m_ctx = const_cast<void*>(static_cast<void const*>(std::addressof(f)));
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
      if (spin < 4000) {
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

private:
  using task_fn = void (*)(void*, std::size_t);

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
      // Spin a little (about 50 us) for the next job before sleeping.
      for (int spin = 0; spin < 20000 && m_generation.load(std::memory_order_acquire) == seen &&
                         !m_stop.load(std::memory_order_relaxed);
           ++spin)
        cpu_relax();
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
  if (parts <= 1) {
    f(std::size_t{0}, total);
    return;
  }
  pool().run(parts, [&](std::size_t p) {
    std::size_t b = total * p / parts, e = total * (p + 1) / parts;
    f(b, e);
  });
}

} // namespace lepton::detail

namespace lepton {

/// @brief Sets the number of threads lepton uses for its parallel loops (0 = hardware threads).
///
/// The default is the `LEPTON_NUM_THREADS` environment variable, else the hardware thread count.
/// Call it while no lepton computation is running (it joins and restarts the workers).
/// **Example**: `lepton::set_num_threads(1); // deterministic single-threaded timing`
inline void set_num_threads(std::size_t n) {
  if (n > 4096) throw value_error("set_num_threads(" + std::to_string(n) + "): at most 4096 threads");
  detail::pool().resize(n);
}

/// @brief The number of threads lepton's parallel loops use (including the calling thread).
inline std::size_t num_threads() { return detail::pool().size(); }

} // namespace lepton
