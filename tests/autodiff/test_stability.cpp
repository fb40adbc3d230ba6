// Numerical stability of the fused losses (log-sum-exp everywhere).
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lp = lepton;

TEST_CASE("cross-entropy of equal logits scaled by 1e8 is log 2", "[autodiff][stability]") {
  lp::tensor<float, lp::dyn, 2> logits({1, 2}, {1e8f, 1e8f});
  lp::tensor<int, lp::dyn> y({1}, {1});
  float l = lp::value(lp::loss::cross_entropy(logits, y));
  REQUIRE(l == Approx(0.693147f).epsilon(1e-6));
  lp::tensor<double, lp::dyn, 2> ld({1, 2}, {1e8, 1e8});
  REQUIRE(lp::value(lp::loss::cross_entropy(ld, y)) == Approx(0.6931471805599453).epsilon(1e-12));
  auto [g] = lp::grad(lp::loss::cross_entropy(logits, y), logits);
  REQUIRE(g(0, 0) == Approx(0.5f));
  REQUIRE(g(0, 1) == Approx(-0.5f));
}

TEST_CASE("log_softmax of logits spanning [-800, 900] is finite with 0 at the max", "[autodiff][stability]") {
  lp::tensor<float, lp::dyn, 5> x({1, 5}, {-800.f, -10.f, 0.f, 450.f, 900.f});
  lp::tensor<float, lp::dyn, 5> y = lp::log_softmax(x);
  for (std::size_t i = 0; i < 5; ++i) REQUIRE(std::isfinite(y(0, i)));
  REQUIRE(y(0, 4) == 0.0f);
  REQUIRE(y(0, 3) == Approx(-450.f));
  REQUIRE(y(0, 0) == Approx(-1700.f));
  lp::tensor<float, lp::dyn, 5> p = lp::softmax(x);
  REQUIRE(p(0, 4) == 1.0f);
  REQUIRE(p(0, 0) == 0.0f);
}

TEST_CASE("no NaN or Inf for finite float32 logits up to 1e8 in magnitude", "[autodiff][stability]") {
  lp::tensor<float, lp::dyn, 4> x(64);
  lepton_test::fill_uniform(x, -1e8, 1e8, 3);
  x(0, 0) = 1e8f;
  x(1, 1) = -1e8f;
  x(2, 0) = x(2, 1) = x(2, 2) = x(2, 3) = -1e8f;
  lp::tensor<int, lp::dyn> y(64);
  for (std::size_t i = 0; i < 64; ++i) y(i) = int(i % 4);
  auto loss = lp::loss::cross_entropy(x, y);
  float l = lp::value(loss);
  REQUIRE(std::isfinite(l));
  auto [g] = lp::grad(loss, x);
  for (std::size_t i = 0; i < g.size(); ++i) REQUIRE(std::isfinite(g.data()[i]));
  lp::tensor<float, lp::dyn, 4> ls = lp::log_softmax(x);
  for (std::size_t i = 0; i < ls.size(); ++i) REQUIRE(std::isfinite(ls.data()[i]));
  // binary cross-entropy with logits: stable as well
  lp::tensor<float, lp::dyn, 4> t(64);
  lepton_test::fill_uniform(t, 0, 1, 4);
  float b = lp::value(lp::loss::bce_with_logits(x, t));
  REQUIRE(std::isfinite(b));
  auto [gb] = lp::grad(lp::loss::bce_with_logits(x, t), x);
  for (std::size_t i = 0; i < gb.size(); ++i) REQUIRE(std::isfinite(gb.data()[i]));
}

TEST_CASE("cross-entropy rejects labels outside 0 to classes - 1", "[autodiff][stability]") {
  lp::tensor<float, lp::dyn, 3> x(2);
  lp::tensor<int, lp::dyn> y({2}, {0, 3});
  REQUIRE_THROWS_WITH(lp::value(lp::loss::cross_entropy(x, y)), Catch::Contains("label 3 of sample 1"));
}

TEST_CASE("anomaly mode names the first op producing a non-finite value, forward and backward",
          "[autodiff][anomaly]") {
  lp::tensor<float, lp::dyn, 3> x({2, 3}, {1, 2, 3, -5, 0, 4});
  lp::param<float, 3, 2> w;
  w.value.fill(0.5f);
  lp::param<float, 2> b;
  REQUIRE_FALSE(lp::anomaly_detection());
  {
    lp::anomaly_guard guard;
    REQUIRE_THROWS_WITH(
        lp::backward(lp::sum(lp::tanh(lp::log(lp::matmul(x, w) + b)))),
        Catch::StartsWith(
            "lepton: anomaly detected in the forward pass: log(add(matmul(tensor, param), param))"));
    // forward finite (sqrt(0) = 0), backward infinite (d sqrt / dx at 0)
    lp::tensor<float, lp::dyn, 3> z({1, 3}, {0, 0, 0});
    REQUIRE_THROWS_WITH(lp::backward(lp::sum(lp::sqrt(lp::matmul(z, w) + b))),
                        Catch::Contains("anomaly detected in the backward pass"));
  }
  REQUIRE_FALSE(lp::anomaly_detection());
  // off: no check, the NaN propagates
  REQUIRE(std::isnan(lp::backward(lp::sum(lp::tanh(lp::log(lp::matmul(x, w) + b))))));
}
