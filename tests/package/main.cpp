// A consumer of lepton, built three ways by tests/package (find_package, add_subdirectory,
// FetchContent) with -Wall -Wextra -Werror. Computes something real and checks it; exit 0 = pass.
#include <lepton/lepton.hpp>

#include <cstdio>
#include <numeric>
#include <string>

#include <xtensor/xmath.hpp>

namespace lp = lepton;

int main() {
  int failures = 0;
  auto expect = [&](bool ok, char const* what) {
    if (!ok) {
      std::fprintf(stderr, "consumer: FAILED: %s\n", what);
      ++failures;
    }
  };

  lp::tensor<float, lp::dyn, 4> x(3); // (batch=3, 4)
  expect(x.shape() == lp::tensor<float, lp::dyn, 4>::shape_type{3, 4}, "shape of tensor<float, dyn, 4>(3)");
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) x(i, j) = static_cast<float>(i * 4 + j);

  // 0 + 1 + ... + 11 = 66, through lepton's flat view and through the xtensor container.
  float flat_sum = std::accumulate(x.flat().begin(), x.flat().end(), 0.0f);
  expect(flat_sum == 66.0f, "sum over flat()");
  float xt_sum = xt::sum(x.xt())();
  expect(xt_sum == 66.0f, "xt::sum over xt()");
  expect(x.at(2, 3) == 11.0f, "at(2, 3)");

  // A fused elementwise expression, evaluated on assignment, and reductions over expressions.
  lp::tensor<float, lp::dyn, 4> y = 2.0f * x + x; // (3, 4)
  expect(y.at(1, 2) == 18.0f, "y = 2x + x");
  expect(lp::value(lp::sum(y)) == 198.0f, "sum(y) == 3 * 66");
  expect(lp::value(lp::sum(x * x)) == 506.0f, "sum(x * x) == 0^2 + ... + 11^2");

  // A run-time shape that contradicts a static dimension throws lepton::shape_error.
  bool threw = false;
  try {
    lp::tensor<float, 2, 3> bad(lp::tensor<float, 2, 3>::shape_type{2, 4});
  } catch (lp::shape_error const& e) {
    threw = std::string(e.what()).rfind("lepton: ", 0) == 0;
  }
  expect(threw, "shape_error with a 'lepton: ' message for shape (2, 4) vs tensor<float, 2, 3>");

  std::printf("consumer (%s): %s\n", LEPTON_CONSUMER_KIND, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
