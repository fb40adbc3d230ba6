// The thread pool: thread counts above the hardware's are capped (set_num_threads and
// LEPTON_NUM_THREADS) unless oversubscription is asked for, and idle or oversubscribed workers
// sleep instead of spinning.
#include <catch2/catch.hpp>

#include <lepton/lepton.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <sys/resource.h>
#include <unistd.h>

namespace lp = lepton;

namespace parallel_test {

/// Restores the pool's size when it goes out of scope.
struct thread_count_guard {
  std::size_t saved = lp::num_threads();
  ~thread_count_guard() { lp::set_num_threads(saved, lp::oversubscribe::yes); }
};

/// What `f` writes to stderr (file descriptor 2), through a temporary file.
template <class F> std::string captured_stderr(F&& f) {
  std::fflush(stderr);
  char path[] = "/tmp/lepton-core-test-XXXXXX";
  int const fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  int const saved = ::dup(2);
  ::dup2(fd, 2);
  f();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  std::remove(path);
  return s.str();
}

/// Sets an environment variable for the scope, then restores it.
struct env_var {
  std::string name;
  std::optional<std::string> old;
  env_var(std::string n, char const* value) : name(std::move(n)) {
    if (char const* v = std::getenv(name.c_str())) old = v;
    ::setenv(name.c_str(), value, 1);
  }
  ~env_var() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

/// CPU time (user + system) of the whole process, in seconds.
inline double process_cpu_seconds() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

/// `jobs` parallel jobs of 64 tasks each; each task computes for `task_us` microseconds (0: a few ns).
inline void tiny_jobs(int jobs, int task_us = 0) {
  std::atomic<long> sink{0};
  for (int j = 0; j < jobs; ++j)
    lp::detail::parallel_for(64, [&](std::size_t i) {
      auto const until = std::chrono::steady_clock::now() + std::chrono::microseconds(task_us);
      while (task_us > 0 && std::chrono::steady_clock::now() < until) {}
      sink.fetch_add(long(i), std::memory_order_relaxed);
    });
  REQUIRE(sink.load() == long(jobs) * 63 * 64 / 2);
}

} // namespace parallel_test

TEST_CASE("set_num_threads caps a count above the hardware threads, with one line on stderr",
          "[core][parallel]") {
  using namespace parallel_test;
  thread_count_guard guard;
  std::size_t const hw = lp::hardware_threads();
  REQUIRE(hw >= 1);
  REQUIRE(hw <= std::max(1u, std::thread::hardware_concurrency()));
  // Before: 4096 threads on a 2-core machine, and an epoch hundreds of times slower.
  std::string const err = captured_stderr([] { lp::set_num_threads(4096); });
  CHECK(lp::num_threads() == hw);
  CHECK_THAT(err, Catch::Contains("lepton: set_num_threads(4096): this process can run on " +
                                  std::to_string(hw) + " hardware threads; using " + std::to_string(hw)));
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  // Within the hardware's count: exact and silent.
  CHECK(captured_stderr([] { lp::set_num_threads(1); }).empty());
  CHECK(lp::num_threads() == 1);
  CHECK(captured_stderr([&] { lp::set_num_threads(hw); }).empty());
  CHECK(lp::num_threads() == hw);
  lp::set_num_threads(0);
  CHECK(lp::num_threads() >= 1);
  CHECK(lp::num_threads() <= hw);
}

TEST_CASE("set_num_threads with oversubscribe::yes gives more threads than the hardware, at most 4096",
          "[core][parallel]") {
  using namespace parallel_test;
  thread_count_guard guard;
  std::size_t const hw = lp::hardware_threads();
  CHECK(captured_stderr([&] { lp::set_num_threads(hw + 3, lp::oversubscribe::yes); }).empty());
  CHECK(lp::num_threads() == hw + 3);
  tiny_jobs(20); // and it computes
  CHECK_THROWS_AS(lp::set_num_threads(4097, lp::oversubscribe::yes), lp::value_error);
}

TEST_CASE("LEPTON_NUM_THREADS above the hardware threads is capped, and an invalid one reported",
          "[core][parallel]") {
  using namespace parallel_test;
  std::size_t const hw = lp::hardware_threads();
  {
    env_var v("LEPTON_NUM_THREADS", "4096");
    std::size_t n = 0;
    std::string const err = captured_stderr([&] { n = lp::detail::default_thread_count(); });
    CHECK(n == hw); // before: 4096
    CHECK_THAT(err, Catch::Contains("LEPTON_NUM_THREADS=4096: this process can run on"));
  }
  for (char const* bad : {"abc", "0", "-3", "2x", "", "99999999999999999999999"}) {
    INFO("LEPTON_NUM_THREADS='" << bad << "'");
    env_var v("LEPTON_NUM_THREADS", bad);
    std::size_t n = 0;
    std::string const err = captured_stderr([&] { n = lp::detail::default_thread_count(); });
    CHECK(n == hw);
    CHECK_THAT(err, Catch::Contains("is not a thread count"));
  }
  env_var v("LEPTON_NUM_THREADS", "1");
  CHECK(lp::detail::default_thread_count() == 1);
}

TEST_CASE("idle workers sleep, and oversubscribed ones do not spin", "[core][parallel]") {
  using namespace parallel_test;
  thread_count_guard guard;
  // Oversubscribed: a spinning worker takes the core of one with work. Before, every worker spun
  // about 1 ms (20000 pause instructions on this CPU) after each job: 50 jobs of 64 tasks of 20 us
  // on 64 threads took 0.74 to 0.91 s of CPU on 2 cores; now 0.08 s (the tasks need 0.064 s). The
  // bound leaves room for a loaded CI machine and the sanitizers.
  lp::set_num_threads(64, lp::oversubscribe::yes);
  tiny_jobs(5); // start-up
  double const c0 = process_cpu_seconds();
  tiny_jobs(50, 20);
  double const busy = process_cpu_seconds() - c0;
  INFO("CPU time of 50 jobs (64 x 20 us of work each) on 64 threads: " << busy << " s");
  CHECK(busy < 0.4);

  // Idle (after a short spin at most): over 200 ms the process uses almost no CPU.
  for (std::size_t threads : {lp::hardware_threads(), std::size_t{64}}) {
    lp::set_num_threads(threads, lp::oversubscribe::yes);
    tiny_jobs(50);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    double const i0 = process_cpu_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    double const idle = process_cpu_seconds() - i0;
    INFO(threads << " threads, CPU time over 200 ms idle: " << idle << " s");
    CHECK(idle < 0.04);
  }
}
