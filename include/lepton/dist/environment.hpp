#pragma once
/// @file environment.hpp
/// @brief MPI start-up and shut-down (`lepton::dist::environment`), the communicator every
///        distributed call takes, and the rules that keep a failing job from hanging.
///
/// **Failure model.** A job must never hang because one rank failed. lepton::dist guarantees it in
/// three ways:
/// - every collective lepton starts is non-blocking and waited for with a deadline
///   (`communicator::timeout()`, default 300 s or `LEPTON_DIST_TIMEOUT` seconds, rounded up to
///   whole milliseconds; only an explicit 0 or `no_timeout` waits forever): when a peer is
///   stuck or gone the waiting rank prints which operation timed out and calls `MPI_Abort`, which
///   makes `mpirun` kill every rank;
/// - `run_or_abort(body)` and the environment's `std::terminate` handler turn an exception on one
///   rank into a message on stderr (`lepton::dist: rank 1 of 2 failed: ...`) and `MPI_Abort`;
/// - an `environment` destroyed while an exception is in flight aborts the job instead of entering
///   `MPI_Finalize` (which would wait for the other ranks).
/// The communicator's error handler is `MPI_ERRORS_RETURN`: MPI errors become `dist_error`.

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#include <sched.h>

#include "../core/error.hpp"
#include "../core/parallel.hpp"

namespace lepton::dist {

/// @brief An MPI call failed, or the ranks disagree (a checkpoint rank 0 could not write, a model
///        that differs between ranks).
class dist_error : public error {
public:
  using error::error;
};

namespace detail {

/// Throws dist_error naming `what` when `rc` is not MPI_SUCCESS.
inline void check(int rc, char const* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  throw dist_error(std::string("dist: ") + what + " failed: " +
                   (len ? std::string(msg, std::size_t(len)) : "MPI error " + std::to_string(rc)));
}

/// True between MPI_Init and MPI_Finalize.
inline bool mpi_active() noexcept {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

inline int world_rank() noexcept {
  int r = 0;
  if (mpi_active()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() noexcept {
  int s = 1;
  if (mpi_active()) MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

/// Prints `msg` on stderr and ends the whole job (every rank) with `code`.
[[noreturn]] inline void abort_job(std::string const& msg, int code = 1) noexcept {
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

inline std::string rank_tag() {
  return "lepton::dist: rank " + std::to_string(world_rank()) + " of " + std::to_string(world_size());
}

/// Milliseconds for a deadline of `seconds` (finite, > 0, at most 1e9): rounded up, so never 0
/// (which means no deadline); 0.0005 s gives 1 ms. A value within 1e-9 of whole milliseconds is
/// not rounded up (0.007 s is 7 ms although 0.007 * 1000 is 7.000000000000001).
/// Throws value_error naming `what` otherwise.
inline std::chrono::milliseconds timeout_ms(double seconds, std::string const& what) {
  if (!std::isfinite(seconds) || !(seconds > 0) || seconds > 1e9) {
    char text[64];
    std::snprintf(text, sizeof text, "%g", seconds);
    throw value_error(what + ": " + text +
                      " s is not a timeout: give a finite number of seconds > 0 (at most 1e9)");
  }
  double const ms = seconds * 1000.0, whole = std::round(ms);
  double const up = std::abs(ms - whole) <= 1e-9 * std::max(1.0, whole) ? whole : std::ceil(ms);
  return std::chrono::milliseconds(std::max(1LL, static_cast<long long>(up)));
}

/// LEPTON_DIST_TIMEOUT's value: seconds > 0 (rounded up to whole milliseconds, as timeout_ms), or
/// exactly 0 for no deadline (written as a zero: "0", "0.0"; a positive value never becomes 0).
/// Throws value_error for anything else (empty, "abc", "12s", negative, NaN, inf, > 1e9).
inline std::chrono::milliseconds parse_timeout(std::string_view text) {
  double s = 0;
  auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s);
  std::string const what = "LEPTON_DIST_TIMEOUT='" + std::string(text) + "'";
  if (ec != std::errc() || end != text.data() + text.size())
    throw value_error(what + " is not a number of seconds (0: no deadline)");
  if (s == 0) return std::chrono::milliseconds(0);
  return timeout_ms(s, what);
}

/// The collective timeout from LEPTON_DIST_TIMEOUT (seconds, 0 = none), else 300 s. An invalid value
/// is reported once on stderr and replaced by 300 s (never by "no deadline").
inline std::chrono::milliseconds default_timeout() {
  if (char const* env = std::getenv("LEPTON_DIST_TIMEOUT")) {
    try {
      return parse_timeout(env);
    } catch (value_error const& e) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) std::fprintf(stderr, "%s; using 300 s\n", e.what());
    }
  }
  return std::chrono::seconds(300);
}

template <class T> MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, int>)
    return MPI_INT;
  else if constexpr (std::is_same_v<T, char>)
    return MPI_CHAR;
  else
    static_assert(sizeof(T) == 0, "lepton::dist: no MPI datatype for this element type");
}

/// Element counts are `int` in MPI 3: larger buffers must be split by the caller.
inline int mpi_count(std::size_t n, char const* what) {
  if (n > std::size_t(std::numeric_limits<int>::max()))
    throw dist_error(std::string("dist: ") + what + ": " + std::to_string(n) +
                     " elements exceed MPI's int count");
  return static_cast<int>(n);
}

} // namespace detail

/// @brief The timeout that makes a communicator wait forever: only when asked for explicitly
///        (`comm.set_timeout(no_timeout)`, `LEPTON_DIST_TIMEOUT=0`); not recommended.
inline constexpr std::chrono::milliseconds no_timeout{0};

/// @brief A timeout given in seconds (a command-line flag) as the communicator's milliseconds,
///        rounded up: 0.0005 s gives 1 ms, never 0 (`no_timeout`).
///
/// Throws lepton::value_error unless `seconds` is finite, > 0 and at most 1e9.
/// **Example**: `comm.set_timeout(lepton::dist::timeout_from_seconds(0.0005)); // 1 ms`
inline std::chrono::milliseconds timeout_from_seconds(double seconds) {
  return detail::timeout_ms(seconds, "dist::timeout_from_seconds");
}

/// @brief A duplicate of an MPI communicator (so that lepton's messages never mix with the
///        application's) with `MPI_ERRORS_RETURN` and a deadline for every collective lepton runs.
///
/// Move-only; frees its duplicate on destruction (destroy it before `MPI_Finalize`: the
/// environment's own `world()` is freed by the environment).
/// **Example**: `lepton::dist::communicator comm(MPI_COMM_WORLD, std::chrono::seconds(30));`
class communicator {
public:
  /// A null communicator (rank 0 of 1: every operation is local).
  communicator() = default;
  /// Duplicates `parent`. `timeout` bounds every wait (`no_timeout` = wait forever; not
  /// recommended). Throws value_error for a negative timeout.
  explicit communicator(MPI_Comm parent, std::chrono::milliseconds timeout = detail::default_timeout())
      : m_timeout(checked(timeout)) {
    if (!detail::mpi_active())
      throw dist_error("dist::communicator: MPI is not initialised (make a dist::environment first)");
    detail::check(MPI_Comm_dup(parent, &m_comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m_comm, &m_rank);
    MPI_Comm_size(m_comm, &m_size);
  }
  communicator(communicator&& o) noexcept
      : m_comm(std::exchange(o.m_comm, MPI_COMM_NULL)), m_rank(o.m_rank), m_size(o.m_size),
        m_timeout(o.m_timeout) {}
  communicator& operator=(communicator&& o) noexcept {
    std::swap(m_comm, o.m_comm);
    std::swap(m_rank, o.m_rank);
    std::swap(m_size, o.m_size);
    std::swap(m_timeout, o.m_timeout);
    return *this;
  }
  communicator(communicator const&) = delete;
  communicator& operator=(communicator const&) = delete;
  ~communicator() { free(); }

  /// The MPI handle (MPI_COMM_NULL for a null communicator).
  MPI_Comm get() const noexcept { return m_comm; }
  int rank() const noexcept { return m_rank; }
  int size() const noexcept { return m_size; }
  bool is_root() const noexcept { return m_rank == 0; }
  /// True when there is someone to talk to (size() > 1).
  bool distributed() const noexcept { return m_size > 1 && m_comm != MPI_COMM_NULL; }
  /// How long a rank waits for a collective before aborting the job (`no_timeout`, 0: forever).
  std::chrono::milliseconds timeout() const noexcept { return m_timeout; }
  /// @brief Sets the deadline of every wait. Give seconds through dist::timeout_from_seconds (which
  ///        rounds up, never to 0); `no_timeout` waits forever. Throws value_error for a negative one.
  /// **Example**: `comm.set_timeout(lepton::dist::timeout_from_seconds(2.5));`
  void set_timeout(std::chrono::milliseconds t) { m_timeout = checked(t); }

  /// Frees the duplicate now (also done by the destructor).
  void free() noexcept {
    if (m_comm != MPI_COMM_NULL && detail::mpi_active()) MPI_Comm_free(&m_comm);
    m_comm = MPI_COMM_NULL;
  }

private:
  static std::chrono::milliseconds checked(std::chrono::milliseconds t) {
    if (t.count() < 0)
      throw value_error("dist::communicator: timeout " + std::to_string(t.count()) +
                        " ms is negative (no_timeout waits forever)");
    return t;
  }

  MPI_Comm m_comm = MPI_COMM_NULL;
  int m_rank = 0;
  int m_size = 1;
  std::chrono::milliseconds m_timeout = std::chrono::seconds(300);
};

namespace detail {

/// Polls `ready()` until it returns true, so that a deadline can be enforced: spins for the first
/// `spin_polls` polls (a collective on a fast link completes in microseconds), then yields the CPU
/// between polls (a co-located rank or another process may need it: under oversubscription this is
/// several times faster than spinning), and after 10 ms of waiting (a slow peer: evaluation, a
/// checkpoint) sleeps 100 us between polls. When `c.timeout()` passes it prints what it was
/// waiting for and aborts the job.
template <class Ready>
void wait_until(communicator const& c, Ready&& ready, char const* what, std::size_t spin_polls = 200) {
  using clock = std::chrono::steady_clock;
  auto const t0 = clock::now();
  bool slow = false;
  for (std::size_t polls = 0;; ++polls) {
    if (ready()) return;
    if (polls < spin_polls) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    if (slow)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    else
      sched_yield();
    if ((polls & 15) == 0) {
      auto const waited = clock::now() - t0;
      slow = waited > std::chrono::milliseconds(10);
      if (c.timeout().count() > 0 && waited > c.timeout()) {
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", double(c.timeout().count()) / 1000.0);
        abort_job(rank_tag() + ": " + what + " did not complete within " + secs +
                      " s: another rank failed, exited early or is stuck; aborting the job",
                  3);
      }
    }
  }
}

/// Waits for `reqs` to complete with wait_until's policy (MPI progresses non-blocking collectives
/// inside the test calls).
inline void wait_all(communicator const& c, std::span<MPI_Request> reqs, char const* what) {
  if (reqs.empty()) return;
  wait_until(
      c,
      [&] {
    int done = 0;
    int const rc = MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) check(rc, what);
    return done != 0;
      },
      what);
}
inline void wait_one(communicator const& c, MPI_Request& req, char const* what) {
  wait_all(c, std::span<MPI_Request>(&req, 1), what);
}

} // namespace detail

/// @brief Options of environment.
struct environment_options {
  /// Thread support requested from MPI. lepton calls MPI from the thread that calls lepton::dist
  /// only, so FUNNELED suffices (its pool threads never touch MPI).
  int thread_level = MPI_THREAD_FUNNELED;
  /// When LEPTON_NUM_THREADS is not set, give each rank (hardware threads / ranks on this node)
  /// lepton threads, so that N ranks on one node do not oversubscribe it.
  bool split_threads = true;
  /// Install a std::terminate handler that prints the uncaught exception and aborts the job.
  bool abort_on_terminate = true;
};

namespace detail {
inline communicator*& world_ptr() noexcept {
  static communicator* p = nullptr;
  return p;
}
} // namespace detail

/// @brief Initialises MPI (or attaches to an MPI the application already initialised) and finalises
///        it on destruction if it initialised it. Make exactly one, first thing in main.
///
/// Gives the world communicator (`world()`), sets lepton's thread count per rank (see
/// environment_options::split_threads), and installs the abort-on-failure behaviour described at
/// the top of this file.
/// **Example**:
/// ```
/// int main(int argc, char** argv) {
///   lepton::dist::environment env(argc, argv);
///   return lepton::dist::run_or_abort([&] { /* train */ return 0; });
/// }
/// ```
class environment {
public:
  environment() : environment(nullptr, nullptr, {}) {}
  environment(int& argc, char**& argv, environment_options const& o = {}) : environment(&argc, &argv, o) {}
  explicit environment(environment_options const& o) : environment(nullptr, nullptr, o) {}
  environment(environment const&) = delete;
  environment& operator=(environment const&) = delete;

  ~environment() {
    if (std::uncaught_exceptions() > m_uncaught)
      detail::abort_job(detail::rank_tag() +
                            ": leaving with an exception in flight (wrap the body in dist::run_or_abort "
                            "to see its message); aborting the job",
                        1);
    m_world.free();
    detail::world_ptr() = nullptr;
    if (m_owns && detail::mpi_active()) MPI_Finalize();
  }

  /// The world communicator (a duplicate of MPI_COMM_WORLD).
  communicator& world() noexcept { return m_world; }
  communicator const& world() const noexcept { return m_world; }
  int rank() const noexcept { return m_world.rank(); }
  int size() const noexcept { return m_world.size(); }
  /// The thread level MPI provides.
  int thread_level() const noexcept { return m_provided; }
  /// True when this environment called MPI_Init (and will call MPI_Finalize).
  bool owns_mpi() const noexcept { return m_owns; }
  /// Ranks on this node (MPI_COMM_TYPE_SHARED).
  int local_size() const noexcept { return m_local_size; }

private:
  environment(int* argc, char*** argv, environment_options const& o)
      : m_uncaught(std::uncaught_exceptions()) {
    if (detail::world_ptr()) throw dist_error("dist::environment: there is already one");
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) throw dist_error("dist::environment: MPI was already finalised");
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      detail::check(MPI_Init_thread(argc, argv, o.thread_level, &m_provided), "MPI_Init_thread");
      m_owns = true;
    } else {
      MPI_Query_thread(&m_provided);
    }
    if (m_owns)
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN); // an attached application keeps its own
    m_world = communicator(MPI_COMM_WORLD);
    detail::world_ptr() = &m_world;
    MPI_Comm local = MPI_COMM_NULL;
    if (MPI_Comm_split_type(m_world.get(), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
      MPI_Comm_size(local, &m_local_size);
      MPI_Comm_free(&local);
    }
    if (o.split_threads && !std::getenv("LEPTON_NUM_THREADS") && m_local_size > 1) {
      // The node's threads shared out, and no more than this rank may run on (mpirun binds each
      // rank to one core by default when there are at most 2).
      unsigned hw = std::thread::hardware_concurrency();
      std::size_t per = std::max<std::size_t>(1, (hw ? hw : 1) / std::size_t(m_local_size));
      set_num_threads(std::min(per, lepton::hardware_threads()));
    }
    if (o.abort_on_terminate) std::set_terminate(&environment::on_terminate);
  }

  [[noreturn]] static void on_terminate() noexcept {
    std::string what = "std::terminate called";
    if (auto ep = std::current_exception()) {
      try {
        std::rethrow_exception(ep);
      } catch (std::exception const& e) {
        what = std::string("uncaught exception: ") + e.what();
      } catch (...) {
        what = "uncaught exception of unknown type";
      }
    }
    detail::abort_job(detail::rank_tag() + " failed: " + what + "; aborting the job", 1);
  }

  int m_uncaught = 0;
  bool m_owns = false;
  int m_provided = MPI_THREAD_SINGLE;
  int m_local_size = 1;
  communicator m_world;
};

/// @brief The world communicator of the live environment; throws dist_error if there is none.
inline communicator& world() {
  if (!detail::world_ptr()) throw dist_error("dist::world(): no dist::environment exists");
  return *detail::world_ptr();
}
/// @brief This process's rank in MPI_COMM_WORLD (0 without MPI).
inline int rank() noexcept { return detail::world_rank(); }
/// @brief The number of processes in MPI_COMM_WORLD (1 without MPI).
inline int size() noexcept { return detail::world_size(); }

/// @brief Runs `body()` (returning int or void) and returns its result (0 for void); if it throws,
///        prints `lepton::dist: rank R of N failed: <what>; aborting the job` on stderr and calls
///        MPI_Abort, so that the other ranks are killed instead of waiting for this one forever.
/// **Example**: `return lepton::dist::run_or_abort([&] { return train(env.world()); });`
template <class F> int run_or_abort(F&& body) noexcept {
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
      body();
      return 0;
    } else {
      return static_cast<int>(body());
    }
  } catch (std::exception const& e) {
    detail::abort_job(detail::rank_tag() + " failed: " + e.what() + "; aborting the job", 1);
  } catch (...) {
    detail::abort_job(detail::rank_tag() + " failed: an exception of unknown type; aborting the job", 1);
  }
}

/// @brief Ends the whole job now with a message (from any rank).
[[noreturn]] inline void abort(std::string const& message, int code = 1) noexcept {
  detail::abort_job(detail::rank_tag() + ": " + message, code);
}

} // namespace lepton::dist
