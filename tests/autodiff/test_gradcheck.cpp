// Composite expressions pass gradcheck in float64 (eps 1e-6, atol 1e-5, rtol 1e-3) on 20 seeds, with
// broadcast operands, odd sizes and size-1 batches; kinks are avoided by keeping inputs away from them.
// Each op on its own is checked by test_op_list.cpp, which walks lepton::ops::all.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lp = lepton;
using mat = lp::tensor<double, lp::dyn, lp::dyn>;
using vec = lp::tensor<double, lp::dyn>;

namespace {
constexpr int seeds = 20;
lp::shape_t<2> shape_for(int seed) {
  static constexpr std::size_t rows[] = {1, 3, 2, 5};
  static constexpr std::size_t cols[] = {1, 5, 17, 3, 8};
  return {rows[seed % 4], cols[seed % 5]};
}
/// Random values in [lo, hi] kept at least `gap` away from each kink.
void fill_away(mat& t, double lo, double hi, std::uint64_t seed, std::initializer_list<double> kinks = {},
               double gap = 0.05) {
  lepton_test::fill_uniform(t, lo, hi, seed);
  for (std::size_t i = 0; i < t.size(); ++i)
    for (double k : kinks)
      if (std::abs(t.data()[i] - k) < gap) t.data()[i] = k + (t.data()[i] >= k ? gap : -gap);
}
template <class F, class... W> void expect_gradcheck(char const* name, int seed, F&& f, W&... w) {
  auto r = lp::gradcheck(f, w...);
  INFO(name << " seed " << seed << ": " << r.message);
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}
} // namespace

TEST_CASE("gradcheck: composite expressions (a chain, a leaf used twice, scalars, outer, centering)",
          "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    mat x(s), a(s), b(s), wt(s), col({s[0], 1});
    vec row(s[1]);
    lepton_test::fill_uniform(wt, -1, 1, seed + 1000);
    fill_away(x, -2, 2, seed, {0.0, -0.5, 0.7});
    fill_away(a, 0.3, 2, seed);
    fill_away(b, 0.3, 2, seed + 1);
    lepton_test::fill_uniform(row, 0.3, 2, seed + 2);
    lepton_test::fill_uniform(col, 0.3, 2, seed + 3);
#define CHECK_COMPOSITE(NAME, EXPR, ...)                                                                     \
  expect_gradcheck(                                                                                          \
      NAME, seed, [&] { return lp::sum((EXPR)*wt); }, __VA_ARGS__)
    CHECK_COMPOSITE("chain", lp::tanh(lp::sigmoid(x) * x + 1.0) * lp::exp(-lp::square(x)), x);
    CHECK_COMPOSITE("scalar", 2.5 * a - 1.0 / b, a, b);
    CHECK_COMPOSITE("same leaf twice", a * a + lp::tanh(a) * b, a, b);
    CHECK_COMPOSITE("outer", col * row, col, row);
#undef CHECK_COMPOSITE
    expect_gradcheck(
        "centered", seed, [&] { return lp::sum(lp::square(x - lp::mean(x, lp::axis<1>, lp::keepdims))); }, x);
  }
}

TEST_CASE("gradcheck: layers (matmul + bias, two layers)", "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    std::size_t B = s[0], K = s[1], N = 1 + seed % 4;
    mat x({B, K}), w({K, N}), w2({N, 3});
    vec b(N);
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 1);
    lepton_test::fill_uniform(w2, -1, 1, seed + 2);
    lepton_test::fill_uniform(b, -1, 1, seed + 3);
    expect_gradcheck(
        "matmul+bias", seed, [&] { return lp::sum(lp::sigmoid(lp::matmul(x, w) + b)); }, x, w, b);
    expect_gradcheck(
        "two layers", seed,
        [&] { return lp::sum(lp::square(lp::matmul(lp::tanh(lp::matmul(x, w) + b), w2))); }, x, w, b, w2);
  }
}

TEST_CASE("stop_gradient and constant block gradients, params work as leaves", "[autodiff]") {
  mat x({3, 4}), y({3, 4});
  lepton_test::fill_uniform(x, -1, 1, 1);
  lepton_test::fill_uniform(y, -1, 1, 2);
  auto [gx, gy] = lp::grad(lp::sum(x * lp::stop_gradient(y) + lp::constant(y) * x), x, y);
  for (std::size_t i = 0; i < x.size(); ++i) {
    REQUIRE(gx.data()[i] == Approx(2 * y.data()[i]));
    REQUIRE(gy.data()[i] == 0.0);
  }
  lp::param<double, 4, 2> w;
  lp::param<double, 2> b;
  lepton_test::fill_uniform(w.value, -1, 1, 3);
  lepton_test::fill_uniform(b.value, -1, 1, 4);
  auto r = lp::gradcheck([&] { return lp::sum(lp::tanh(lp::matmul(x, w) + b)); }, w, b);
  INFO(r.message);
  REQUIRE(r.ok);
  // backward() writes param.grad and leaves frozen parameters alone
  b.frozen = true;
  b.grad = lp::tensor<double, 2>({2}, {42.0, 42.0});
  double l = lp::backward(lp::sum(lp::tanh(lp::matmul(x, w) + b)));
  REQUIRE(l == Approx(lp::value(lp::sum(lp::tanh(lp::matmul(x, w) + b)))));
  auto [gw] = lp::grad(lp::sum(lp::tanh(lp::matmul(x, w) + b)), w);
  for (std::size_t i = 0; i < gw.size(); ++i) REQUIRE(w.grad.data()[i] == Approx(gw.data()[i]));
  REQUIRE(b.grad(0) == 42.0);
  // a second backward overwrites, accumulate adds
  lp::backward(lp::sum(lp::tanh(lp::matmul(x, w) + b)));
  REQUIRE(w.grad(0, 0) == Approx(gw(0, 0)));
  lp::backward(lp::sum(lp::tanh(lp::matmul(x, w) + b)), {.accumulate = true});
  REQUIRE(w.grad(0, 0) == Approx(2 * gw(0, 0)));
}
