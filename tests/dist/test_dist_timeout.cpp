// Timeouts given in seconds (LEPTON_DIST_TIMEOUT, command-line flags) become the communicator's
// milliseconds rounded up: a positive timeout never turns into 0, which means "no deadline".
// Before, 0.0005 s became 0 ms and a stopped peer hung the job forever. Run with mpirun -np 1.
#include <lepton/dist/environment.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace lp = lepton;
using ms = std::chrono::milliseconds;

static int failures = 0;
#define TIMEOUT_CHECK(cond)                                                                                  \
  do {                                                                                                       \
    if (!(cond)) {                                                                                           \
      ++failures;                                                                                            \
      std::fprintf(stderr, "CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                           \
    }                                                                                                        \
  } while (0)

template <class F> static bool throws_value_error(F&& f) {
  try {
    f();
  } catch (lp::value_error const&) {
    return true;
  }
  return false;
}

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  using lp::dist::timeout_from_seconds;
  namespace d = lp::dist::detail;

  // Seconds -> milliseconds, rounded up, never 0.
  TIMEOUT_CHECK(timeout_from_seconds(0.0005) == ms(1));
  TIMEOUT_CHECK(timeout_from_seconds(1e-9) == ms(1));
  TIMEOUT_CHECK(timeout_from_seconds(0.001) == ms(1));
  TIMEOUT_CHECK(timeout_from_seconds(0.0011) == ms(2));
  TIMEOUT_CHECK(timeout_from_seconds(0.007) == ms(7)); // 0.007 * 1000 == 7.000000000000001
  TIMEOUT_CHECK(timeout_from_seconds(2.5) == ms(2500));
  TIMEOUT_CHECK(timeout_from_seconds(300) == ms(300000));
  double const nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (double bad : {0.0, -0.0, -1.0, nan, inf, -inf, 2e9})
    TIMEOUT_CHECK(throws_value_error([&] { (void)timeout_from_seconds(bad); }));

  // LEPTON_DIST_TIMEOUT: positive seconds rounded up; an explicit 0 is "no deadline".
  TIMEOUT_CHECK(d::parse_timeout("0.0005") == ms(1));
  TIMEOUT_CHECK(d::parse_timeout("3") == ms(3000));
  TIMEOUT_CHECK(d::parse_timeout("1e-4") == ms(1));
  TIMEOUT_CHECK(d::parse_timeout("0") == lp::dist::no_timeout);
  TIMEOUT_CHECK(d::parse_timeout("0.0") == lp::dist::no_timeout);
  for (char const* bad : {"", "abc", "12s", " 5", "-1", "nan", "inf", "1e10", "0x10"})
    TIMEOUT_CHECK(throws_value_error([&] { (void)d::parse_timeout(bad); }));

  // The default timeout read from the environment (before: 0.0005 -> 0 ms -> forever).
  ::setenv("LEPTON_DIST_TIMEOUT", "0.0005", 1);
  TIMEOUT_CHECK(d::default_timeout() == ms(1));
  ::setenv("LEPTON_DIST_TIMEOUT", "0", 1);
  TIMEOUT_CHECK(d::default_timeout() == lp::dist::no_timeout);
  ::setenv("LEPTON_DIST_TIMEOUT", "soon", 1); // reported on stderr, replaced by 300 s
  TIMEOUT_CHECK(d::default_timeout() == std::chrono::seconds(300));
  ::unsetenv("LEPTON_DIST_TIMEOUT");
  TIMEOUT_CHECK(d::default_timeout() == std::chrono::seconds(300));

  // The communicator takes no negative timeout; no_timeout only when asked for.
  auto& c = env.world();
  TIMEOUT_CHECK(throws_value_error([&] { c.set_timeout(ms(-1)); }));
  c.set_timeout(timeout_from_seconds(0.0005));
  TIMEOUT_CHECK(c.timeout() == ms(1));
  c.set_timeout(lp::dist::no_timeout);
  TIMEOUT_CHECK(c.timeout().count() == 0);
  TIMEOUT_CHECK(throws_value_error([&] { lp::dist::communicator bad(MPI_COMM_WORLD, ms(-5)); }));

  if (failures == 0) std::printf("test_dist_timeout: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
