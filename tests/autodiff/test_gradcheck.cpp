// Every differentiable op passes gradcheck in float64 (eps 1e-6, atol 1e-5, rtol 1e-3) on 20 seeds,
// with broadcast operands, odd sizes and size-1 batches. Kinks (relu/abs/clamp at their corners, max
// ties) are avoided by keeping inputs away from them.
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

TEST_CASE("gradcheck: unary ops", "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    mat x(s), wt(s), xp(s);
    lepton_test::fill_uniform(wt, -1, 1, seed + 1000);
    fill_away(x, -2, 2, seed, {0.0, -0.5, 0.7});
    lepton_test::fill_uniform(xp, 0.2, 3, seed + 50);
#define CHECK_UNARY(NAME, EXPR, IN)                                                                          \
  expect_gradcheck(                                                                                          \
      NAME, seed, [&] { return lp::sum((EXPR)*wt); }, IN)
    CHECK_UNARY("neg", -x, x);
    CHECK_UNARY("abs", lp::abs(x), x);
    CHECK_UNARY("exp", lp::exp(x), x);
    CHECK_UNARY("log", lp::log(xp), xp);
    CHECK_UNARY("log1p", lp::log1p(xp), xp);
    CHECK_UNARY("sqrt", lp::sqrt(xp), xp);
    CHECK_UNARY("rsqrt", lp::rsqrt(xp), xp);
    CHECK_UNARY("square", lp::square(x), x);
    CHECK_UNARY("tanh", lp::tanh(x), x);
    CHECK_UNARY("sigmoid", lp::sigmoid(x), x);
    CHECK_UNARY("relu", lp::relu(x), x);
    CHECK_UNARY("leaky_relu", lp::leaky_relu(x, 0.1), x);
    CHECK_UNARY("softplus", lp::softplus(x), x);
    CHECK_UNARY("silu", lp::silu(x), x);
    CHECK_UNARY("gelu", lp::gelu(x), x);
    CHECK_UNARY("clamp", lp::clamp(x, -0.5, 0.7), x);
    CHECK_UNARY("chain", lp::tanh(lp::sigmoid(x) * x + 1.0) * lp::exp(-lp::square(x)), x);
#undef CHECK_UNARY
  }
}

TEST_CASE("gradcheck: binary ops with broadcast operands", "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    mat a(s), b(s), wt(s), col({s[0], 1});
    vec row(s[1]);
    lepton_test::fill_uniform(wt, -1, 1, seed + 1000);
    fill_away(a, 0.3, 2, seed);
    fill_away(b, 0.3, 2, seed + 1);
    lepton_test::fill_uniform(row, 0.3, 2, seed + 2);
    lepton_test::fill_uniform(col, 0.3, 2, seed + 3);
    // keep a and b apart so that min/max have no ties
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::abs(a.data()[i] - b.data()[i]) < 0.05) b.data()[i] += 0.1;
#define CHECK_BIN(NAME, EXPR, ...)                                                                           \
  expect_gradcheck(                                                                                          \
      NAME, seed, [&] { return lp::sum((EXPR)*wt); }, __VA_ARGS__)
    CHECK_BIN("add", a + b, a, b);
    CHECK_BIN("add row", a + row, a, row);
    CHECK_BIN("sub col", col - a, a, col);
    CHECK_BIN("mul", a * b, a, b);
    CHECK_BIN("mul row", a * row, a, row);
    CHECK_BIN("div", a / b, a, b);
    CHECK_BIN("div col", a / col, a, col);
    CHECK_BIN("scalar", 2.5 * a - 1.0 / b, a, b);
    CHECK_BIN("maximum", lp::maximum(a, b), a, b);
    CHECK_BIN("minimum", lp::minimum(a, b), a, b);
    CHECK_BIN("pow", lp::pow(a, b), a, b);
    CHECK_BIN("pow row", lp::pow(a, row), a, row);
    CHECK_BIN("where", lp::where(a > b, a * a, b * row), a, b, row);
    CHECK_BIN("same leaf twice", a * a + lp::tanh(a) * b, a, b);
    CHECK_BIN("bce", lp::loss::bce_with_logits(a - 1.0, b * 0.4, lp::loss::none), a, b);
    CHECK_BIN("huber", lp::loss::huber(a, b, 0.3, lp::loss::none), a, b);
    CHECK_BIN("outer", col * row, col, row);
#undef CHECK_BIN
  }
}

TEST_CASE("gradcheck: reductions, all and per axis", "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    mat x(s), w({s[0], 1});
    vec v(s[1]);
    lepton_test::fill_uniform(x, -2, 2, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 7);
    lepton_test::fill_uniform(v, -1, 1, seed + 8);
    expect_gradcheck(
        "sum", seed, [&] { return lp::sum(lp::tanh(x)); }, x);
    expect_gradcheck(
        "mean", seed, [&] { return lp::mean(x * x); }, x);
    expect_gradcheck(
        "max", seed, [&] { return lp::max(x) * 3.0; }, x);
    expect_gradcheck(
        "logsumexp", seed, [&] { return lp::logsumexp(x); }, x);
    expect_gradcheck(
        "sum axis1", seed, [&] { return lp::sum(lp::square(lp::sum(x, lp::axis<1>))); }, x);
    expect_gradcheck(
        "sum axis0", seed, [&] { return lp::sum(lp::sum(x, lp::axis<0>) * v); }, x, v);
    expect_gradcheck(
        "mean axis1 keep", seed, [&] { return lp::sum(lp::mean(x, lp::axis<1>, lp::keepdims) * w); }, x, w);
    expect_gradcheck(
        "max axis1", seed, [&] { return lp::sum(lp::square(lp::max(x, lp::axis<1>))); }, x);
    expect_gradcheck(
        "max axis0", seed, [&] { return lp::sum(lp::max(x, lp::axis<0>) * v); }, x, v);
    expect_gradcheck(
        "lse axis1", seed, [&] { return lp::sum(lp::square(lp::logsumexp(x, lp::axis<1>))); }, x);
    expect_gradcheck(
        "centered", seed, [&] { return lp::sum(lp::square(x - lp::mean(x, lp::axis<1>, lp::keepdims))); }, x);
  }
}

TEST_CASE("gradcheck: matmul, transpose, softmax and losses", "[autodiff]") {
  for (int seed = 0; seed < seeds; ++seed) {
    auto s = shape_for(seed);
    std::size_t B = s[0], K = s[1], N = 1 + seed % 4;
    mat x({B, K}), w({K, N}), w2({N, 3}), t({B, N});
    vec b(N);
    lp::tensor<int, lp::dyn> labels(B);
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 1);
    lepton_test::fill_uniform(w2, -1, 1, seed + 2);
    lepton_test::fill_uniform(b, -1, 1, seed + 3);
    lepton_test::fill_uniform(t, 0, 1, seed + 4);
    for (std::size_t i = 0; i < B; ++i) labels(i) = int((i + seed) % 3);
    mat p = lp::softmax(t); // a target distribution
    expect_gradcheck(
        "matmul", seed, [&] { return lp::sum(lp::tanh(lp::matmul(x, w))); }, x, w);
    expect_gradcheck(
        "matmul+bias", seed, [&] { return lp::sum(lp::sigmoid(lp::matmul(x, w) + b)); }, x, w, b);
    expect_gradcheck(
        "transpose", seed,
        [&] { return lp::sum(lp::matmul(lp::transpose(w), lp::transpose(x)) * lp::transpose(t)); }, x, w);
    expect_gradcheck(
        "two layers", seed,
        [&] { return lp::sum(lp::square(lp::matmul(lp::tanh(lp::matmul(x, w) + b), w2))); }, x, w, b, w2);
    expect_gradcheck(
        "softmax", seed, [&] { return lp::sum(lp::softmax(lp::matmul(x, w)) * t); }, x, w);
    expect_gradcheck(
        "log_softmax", seed, [&] { return lp::sum(lp::log_softmax(x) * x); }, x);
    expect_gradcheck(
        "cross_entropy labels", seed,
        [&] { return lp::loss::cross_entropy(lp::matmul(lp::tanh(lp::matmul(x, w)), w2), labels); }, x, w,
        w2);
    expect_gradcheck(
        "cross_entropy soft", seed,
        [&] { return lp::loss::cross_entropy(lp::matmul(x, w), p, lp::loss::sum); }, x, w, p);
    expect_gradcheck(
        "mse", seed, [&] { return lp::loss::mse(lp::matmul(x, w) + b, t); }, w, b, t);
    expect_gradcheck(
        "l1", seed, [&] { return lp::loss::l1(lp::matmul(x, w) + b, t + 5.0); }, w, b);
    expect_gradcheck(
        "bce mean", seed, [&] { return lp::loss::bce_with_logits(lp::matmul(x, w), t); }, x, w, t);
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
