// The layer headers used on their own, as a consumer of one part of lepton would: the backend-neutral
// expression headers plus the CPU backend, without <lepton/lepton.hpp>. This executable must compile,
// link and compute the right values (the old core/tensor.hpp forward-declared an evaluation function,
// so a program including only expr/ headers compiled and then failed to link).
#include <catch2/catch.hpp>
#include <lepton/autodiff/grad.hpp>
#include <lepton/backend/cpu.hpp>
#include <lepton/core/param.hpp>
#include <lepton/core/tensor.hpp>
#include <lepton/expr/elementwise.hpp>
#include <lepton/expr/linalg.hpp>
#include <lepton/expr/reduce.hpp>

#include <cmath>

namespace lp = lepton;

TEST_CASE("headers: expr + backend/cpu evaluate, differentiate and link without the umbrella", "[core]") {
  lp::tensor<double, 2, 3> x({2, 3}, {1.0, -2.0, 3.0, 0.5, 0.25, -1.0});
  lp::tensor<double, 3, 2> w({3, 2}, {0.1, 0.2, -0.3, 0.4, 0.5, -0.6});
  lp::tensor<double, 2, 2> y = lp::relu(lp::matmul(x, w));
  // float64 reference
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      double acc = 0;
      for (int k = 0; k < 3; ++k) acc += x(i, k) * w(k, j);
      REQUIRE(y(i, j) == Approx(acc > 0 ? acc : 0.0).epsilon(1e-12));
    }
  // d/dx sum(x * x) = 2 x
  auto [gx] = lp::grad(lp::sum(x * x), x);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(gx.data()[i] == Approx(2 * x.data()[i]));
  REQUIRE(lp::value(lp::sum(x)) == Approx(1.75));
}
