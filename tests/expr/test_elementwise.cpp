// Every elementwise op against a float64 reference, on random inputs, including sizes that are not
// multiples of the SIMD width, size-1 and zero-size batches, and broadcasting.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <lepton/lepton.hpp>
#include <limits>
#include <support/util.hpp>

namespace lp = lepton;
using lepton_test::close;
using lepton_test::fill_uniform;
using mat = lp::tensor<float, lp::dyn, lp::dyn>;

namespace {
std::vector<lp::shape_t<2>> const shapes = {{0, 7},  {1, 7},  {1, 1},   {3, 17},
                                            {4, 33}, {7, 64}, {5, 100}, {300, 301}};

template <class Make, class Ref>
void check_unary(char const* name, Make make, Ref ref, double lo, double hi, double rtol = 2e-6) {
  for (auto s : shapes) {
    mat x(s);
    fill_uniform(x, lo, hi, 7 + s[0] * 31 + s[1]);
    mat y = make(x);
    REQUIRE(y.shape() == s);
    for (std::size_t i = 0; i < x.size(); ++i) {
      double r = ref(static_cast<double>(x.data()[i]));
      INFO(name << " at x=" << x.data()[i] << " shape " << lp::to_string(s));
      REQUIRE(close(y.data()[i], r, rtol, 1e-6));
    }
  }
}
} // namespace

TEST_CASE("unary ops match float64 references", "[core][elementwise]") {
  using std::exp;
  check_unary(
      "neg", [](mat const& x) { return -x; }, [](double v) { return -v; }, -3, 3);
  check_unary(
      "abs", [](mat const& x) { return lp::abs(x); }, [](double v) { return std::abs(v); }, -3, 3);
  check_unary(
      "exp", [](mat const& x) { return lp::exp(x); }, [](double v) { return std::exp(v); }, -5, 5);
  check_unary(
      "log", [](mat const& x) { return lp::log(x); }, [](double v) { return std::log(v); }, 0.01, 10);
  check_unary(
      "log1p", [](mat const& x) { return lp::log1p(x); }, [](double v) { return std::log1p(v); }, -0.5, 5);
  check_unary(
      "sqrt", [](mat const& x) { return lp::sqrt(x); }, [](double v) { return std::sqrt(v); }, 0, 9);
  check_unary(
      "rsqrt", [](mat const& x) { return lp::rsqrt(x); }, [](double v) { return 1 / std::sqrt(v); }, 0.1, 9);
  check_unary(
      "square", [](mat const& x) { return lp::square(x); }, [](double v) { return v * v; }, -3, 3);
  check_unary(
      "tanh", [](mat const& x) { return lp::tanh(x); }, [](double v) { return std::tanh(v); }, -4, 4);
  check_unary(
      "sigmoid", [](mat const& x) { return lp::sigmoid(x); }, [](double v) { return 1 / (1 + std::exp(-v)); },
      -8, 8);
  check_unary(
      "relu", [](mat const& x) { return lp::relu(x); }, [](double v) { return v > 0 ? v : 0; }, -3, 3);
  check_unary(
      "leaky_relu", [](mat const& x) { return lp::leaky_relu(x, 0.2); },
      [](double v) { return v > 0 ? v : 0.2 * v; }, -3, 3);
  check_unary(
      "softplus", [](mat const& x) { return lp::softplus(x); },
      [](double v) { return std::log1p(std::exp(v)); }, -20, 20);
  check_unary(
      "silu", [](mat const& x) { return lp::silu(x); }, [](double v) { return v / (1 + std::exp(-v)); }, -6,
      6);
  check_unary(
      "gelu", [](mat const& x) { return lp::gelu(x); },
      [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, -5, 5, 1e-5);
  check_unary(
      "clamp", [](mat const& x) { return lp::clamp(x, -0.5, 0.7); },
      [](double v) { return std::min(std::max(v, -0.5), 0.7); }, -2, 2);
}

TEST_CASE(
    "float tanh: within 4e-7 relative of tanh over a sweep of every 97th float, odd, saturating, NaN kept",
    "[core][elementwise]") {
  // Every 97th float bit pattern in [1e-30, 20), through the SIMD body and the scalar tail alike.
  std::uint32_t lo, hi;
  float const flo = 1e-30f, fhi = 20.0f;
  std::memcpy(&lo, &flo, 4);
  std::memcpy(&hi, &fhi, 4);
  std::size_t const n = (hi - lo) / 97;
  lp::tensor<float, lp::dyn> x(2 * n + 5);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t b = lo + std::uint32_t(i) * 97;
    float v;
    std::memcpy(&v, &b, 4);
    x(2 * i) = v;
    x(2 * i + 1) = -v;
  }
  float const special[5] = {0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                            9.5f};
  for (std::size_t k = 0; k < 5; ++k) x(2 * n + k) = special[k];
  lp::tensor<float, lp::dyn> y = lp::tanh(x);
  double worst = 0;
  for (std::size_t i = 0; i < 2 * n; ++i) {
    double const r = std::tanh(double(x(i)));
    worst = std::max(worst, std::abs(double(y(i)) - r) / std::abs(r));
    REQUIRE(y(i) == -y(i ^ 1)); // odd
  }
  INFO("max relative error " << worst);
  REQUIRE(worst < 4e-7);
  REQUIRE(y(2 * n) == 0.0f);
  REQUIRE(y(2 * n + 1) == 1.0f);
  REQUIRE(y(2 * n + 2) == -1.0f);
  REQUIRE(std::isnan(y(2 * n + 3)));
  REQUIRE(y(2 * n + 4) == 1.0f);
}

TEST_CASE("relu keeps NaN in the fused loop and in the GEMM epilogue", "[core][elementwise]") {
  float const nan = std::numeric_limits<float>::quiet_NaN();
  lp::tensor<float, lp::dyn, 19> x(3);
  fill_uniform(x, -1, 1, 3);
  x(1, 18) = nan; // the scalar tail of a row
  x(2, 0) = nan;  // a SIMD lane
  lp::tensor<float, lp::dyn, 19> y = lp::relu(x);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::isnan(x.data()[i]))
      REQUIRE(std::isnan(y.data()[i]));
    else
      REQUIRE(y.data()[i] == std::max(x.data()[i], 0.0f));
  lp::tensor<float, 19, 5> w;
  fill_uniform(w, -1, 1, 4);
  lp::tensor<float, lp::dyn, 5> h = lp::relu(lp::matmul(x, w)); // bias-free epilogue
  for (std::size_t j = 0; j < 5; ++j) {
    REQUIRE(std::isnan(h(1, j)));
    REQUIRE(std::isnan(h(2, j)));
    REQUIRE_FALSE(std::isnan(h(0, j)));
  }
}

TEST_CASE("softplus does not overflow for large inputs", "[core][elementwise]") {
  lp::tensor<float, 4> x({4}, {-200.f, -90.f, 90.f, 200.f});
  lp::tensor<float, 4> y = lp::softplus(x);
  REQUIRE(y(0) == Approx(0.0).margin(1e-30));
  REQUIRE(y(2) == Approx(90.0));
  REQUIRE(y(3) == Approx(200.0));
}

namespace {
template <class Op, class Ref>
void check_binary(char const* name, Op op, Ref ref, double lo = -3, double hi = 3) {
  for (auto s : shapes) {
    mat a(s), b(s);
    fill_uniform(a, lo, hi, 100 + s[0]);
    fill_uniform(b, lo, hi, 200 + s[1]);
    // same shape, row-vector broadcast, column broadcast and scalar broadcast
    lp::tensor<float, lp::dyn> row(s[1]);
    fill_uniform(row, lo, hi, 300);
    mat col({s[0], 1});
    fill_uniform(col, lo, hi, 400);
    mat y1 = op(a, b), y2 = op(a, row), y3 = op(col, b), y4 = op(a, 1.5f);
    for (std::size_t i = 0; i < s[0]; ++i)
      for (std::size_t j = 0; j < s[1]; ++j) {
        INFO(name << " shape " << lp::to_string(s) << " at " << i << "," << j);
        REQUIRE(close(y1(i, j), ref(a(i, j), b(i, j)), 2e-6, 1e-6));
        REQUIRE(close(y2(i, j), ref(a(i, j), row(j)), 2e-6, 1e-6));
        REQUIRE(close(y3(i, j), ref(col(i, 0), b(i, j)), 2e-6, 1e-6));
        REQUIRE(close(y4(i, j), ref(a(i, j), 1.5), 2e-6, 1e-6));
      }
  }
}
} // namespace

TEST_CASE("binary ops with broadcasting match float64 references", "[core][elementwise]") {
  check_binary(
      "add", [](auto const& a, auto const& b) { return a + b; }, [](double a, double b) { return a + b; });
  check_binary(
      "sub", [](auto const& a, auto const& b) { return a - b; }, [](double a, double b) { return a - b; });
  check_binary(
      "mul", [](auto const& a, auto const& b) { return a * b; }, [](double a, double b) { return a * b; });
  check_binary(
      "div", [](auto const& a, auto const& b) { return a / b; }, [](double a, double b) { return a / b; },
      0.5, 3);
  check_binary(
      "maximum", [](auto const& a, auto const& b) { return lp::maximum(a, b); },
      [](double a, double b) { return std::max(a, b); });
  check_binary(
      "minimum", [](auto const& a, auto const& b) { return lp::minimum(a, b); },
      [](double a, double b) { return std::min(a, b); });
  check_binary(
      "pow", [](auto const& a, auto const& b) { return lp::pow(a, b); },
      [](double a, double b) { return std::pow(a, b); }, 0.2, 2);
  check_binary(
      "less", [](auto const& a, auto const& b) { return a < b; },
      [](double a, double b) { return a < b ? 1.0 : 0.0; });
  check_binary(
      "greater_equal", [](auto const& a, auto const& b) { return a >= b; },
      [](double a, double b) { return a >= b ? 1.0 : 0.0; });
  check_binary(
      "bce_logits",
      [](auto const& a, auto const& b) { return lp::loss::bce_with_logits(a, b, lp::loss::none); },
      [](double a, double b) { return std::max(a, 0.0) - a * b + std::log1p(std::exp(-std::abs(a))); });
}

TEST_CASE("scalar on the left and where()", "[core][elementwise]") {
  mat a({3, 5});
  fill_uniform(a, -2, 2, 5);
  mat y = 2.0f - a;
  mat w = lp::where(a > 0.0f, a, 0.1f * a);
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(y.data()[i] == Approx(2.0f - a.data()[i]));
    double r = a.data()[i] > 0 ? a.data()[i] : 0.1 * a.data()[i];
    REQUIRE(close(w.data()[i], r, 1e-6));
  }
}

TEST_CASE("broadcasting across ranks and size-1 dims", "[core][elementwise]") {
  lp::tensor<float, lp::dyn, 1, 4> a({3, 1, 4});
  lp::tensor<float, 5, 1> b({5, 1});
  fill_uniform(a, -1, 1, 1);
  fill_uniform(b, -1, 1, 2);
  lp::tensor<float, lp::dyn, 5, 4> y = a * b;
  REQUIRE(y.shape() == lp::shape_t<3>{3, 5, 4});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 5; ++j)
      for (std::size_t k = 0; k < 4; ++k) REQUIRE(y(i, j, k) == Approx(a(i, 0, k) * b(j, 0)));
}

TEST_CASE("runtime shape mismatches throw shape_error naming both shapes", "[core][elementwise]") {
  mat a({3, 4}), b({2, 4});
  try {
    mat y = a + b;
    FAIL("no exception");
  } catch (lp::shape_error const& e) {
    std::string w = e.what();
    REQUIRE(w.find("lepton: add") == 0);
    REQUIRE(w.find("(3, 4)") != std::string::npos);
    REQUIRE(w.find("(2, 4)") != std::string::npos);
  }
  lp::tensor<float, lp::dyn, 4> x(3);
  lp::tensor<float, lp::dyn, 4> z(5);
  REQUIRE_THROWS_AS(z.view() = x * 2.0f, lp::shape_error); // a view cannot be resized
  z = x * 2.0f;                                            // a tensor is
  REQUIRE(z.shape(0) == 3);
}

TEST_CASE("aliasing: the destination may appear in the expression", "[core][elementwise]") {
  lp::tensor<float, 4, 4> a;
  fill_uniform(a, -1, 1, 3);
  lp::tensor<float, 4, 4> ref = a;
  a = lp::transpose(a) + a;
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) REQUIRE(a(i, j) == Approx(ref(j, i) + ref(i, j)));
  lp::tensor<float, lp::dyn, 4> h(3);
  fill_uniform(h, -1, 1, 4);
  lp::tensor<float, 4, 4> w;
  fill_uniform(w, -1, 1, 5);
  lp::tensor<float, lp::dyn, 4> h0 = h;
  h = lp::relu(lp::matmul(h, w)); // GEMM reads h while the result goes to h
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      double r = 0;
      for (std::size_t k = 0; k < 4; ++k) r += double(h0(i, k)) * w(k, j);
      REQUIRE(close(h(i, j), std::max(r, 0.0), 1e-5, 1e-6));
    }
}

TEST_CASE("float64 path", "[core][elementwise]") {
  lp::tensor<double, lp::dyn, 9> x(5);
  fill_uniform(x, -2, 2, 9);
  lp::tensor<double, lp::dyn, 9> y = lp::tanh(x) * x + 1.0;
  for (std::size_t i = 0; i < x.size(); ++i)
    REQUIRE(close(y.data()[i], std::tanh(x.data()[i]) * x.data()[i] + 1.0, 1e-14, 1e-15));
}
