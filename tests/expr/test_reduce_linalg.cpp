// Reductions, matmul (with fused epilogues), transpose, softmax against float64 references.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lp = lepton;
using lepton_test::close;
using lepton_test::fill_uniform;
using mat = lp::tensor<float, lp::dyn, lp::dyn>;

TEST_CASE("sum, mean, max, logsumexp over all elements and each axis", "[core][reduce]") {
  for (auto s : std::vector<lp::shape_t<2>>{{1, 1}, {3, 17}, {4, 33}, {64, 100}, {513, 257}}) {
    mat x(s);
    fill_uniform(x, -3, 3, s[0] * 7 + s[1]);
    double sum = 0, mx = -1e300;
    std::vector<double> rs(s[0], 0), cs(s[1], 0), rm(s[0], -1e300), cm(s[1], -1e300);
    for (std::size_t i = 0; i < s[0]; ++i)
      for (std::size_t j = 0; j < s[1]; ++j) {
        double v = x(i, j);
        sum += v;
        mx = std::max(mx, v);
        rs[i] += v;
        cs[j] += v;
        rm[i] = std::max(rm[i], v);
        cm[j] = std::max(cm[j], v);
      }
    double n = double(s[0] * s[1]);
    REQUIRE(close(lp::value(lp::sum(x)), sum, 1e-4, 1e-3));
    REQUIRE(close(lp::value(lp::mean(x)), sum / n, 1e-4, 1e-4));
    REQUIRE(lp::value(lp::max(x)) == float(mx));
    double lse = 0;
    for (std::size_t i = 0; i < x.size(); ++i) lse += std::exp(x.data()[i] - mx);
    REQUIRE(close(lp::value(lp::logsumexp(x)), mx + std::log(lse), 1e-5, 1e-5));

    lp::tensor<float, lp::dyn> r1 = lp::sum(x, lp::axis<1>);
    lp::tensor<float, lp::dyn> c1 = lp::sum(x, lp::axis<0>);
    mat r1k = lp::mean(x, lp::axis<1>, lp::keepdims);
    lp::tensor<float, lp::dyn> rmax = lp::max(x, lp::axis<1>);
    lp::tensor<float, lp::dyn> cmax = lp::max(x, lp::axis<0>);
    lp::tensor<float, lp::dyn> rlse = lp::logsumexp(x, lp::axis<1>);
    REQUIRE(r1k.shape() == lp::shape_t<2>{s[0], 1});
    for (std::size_t i = 0; i < s[0]; ++i) {
      REQUIRE(close(r1(i), rs[i], 1e-4, 1e-4));
      REQUIRE(close(r1k(i, 0), rs[i] / s[1], 1e-4, 1e-4));
      REQUIRE(rmax(i) == float(rm[i]));
      double l = 0;
      for (std::size_t j = 0; j < s[1]; ++j) l += std::exp(x(i, j) - rm[i]);
      REQUIRE(close(rlse(i), rm[i] + std::log(l), 1e-5, 1e-5));
    }
    for (std::size_t j = 0; j < s[1]; ++j) {
      REQUIRE(close(c1(j), cs[j], 1e-4, 1e-4));
      REQUIRE(cmax(j) == float(cm[j]));
    }
    auto am = lp::argmax(x, lp::axis<1>);
    for (std::size_t i = 0; i < s[0]; ++i) REQUIRE(x(i, std::size_t(am(i))) == float(rm[i]));
  }
}

TEST_CASE("reductions of fused expressions and of empty tensors", "[core][reduce]") {
  mat x({5, 9});
  fill_uniform(x, -1, 1, 11);
  double r = 0;
  for (std::size_t i = 0; i < x.size(); ++i) r += std::tanh(x.data()[i]) * x.data()[i];
  REQUIRE(close(lp::value(lp::sum(lp::tanh(x) * x)), r, 1e-5, 1e-6));
  mat e({0, 4});
  REQUIRE(lp::value(lp::sum(e)) == 0.0f);
  REQUIRE(std::isnan(lp::value(lp::mean(e))));
  lp::tensor<float, lp::dyn> c = lp::sum(e, lp::axis<0>);
  REQUIRE(c.size() == 4);
  REQUIRE(c(2) == 0.0f);
}

TEST_CASE("a large reduction does not depend on the thread count", "[core][reduce]") {
  lp::tensor<float, lp::dyn> x(1000003);
  fill_uniform(x, -1, 1, 12);
  lp::set_num_threads(1);
  float a = lp::value(lp::sum(x * x));
  lp::set_num_threads(2);
  float b = lp::value(lp::sum(x * x));
  lp::set_num_threads(0);
  REQUIRE(a == b);
}

namespace {
double ref_mm(mat const& a, mat const& b, std::size_t i, std::size_t j) {
  double r = 0;
  for (std::size_t k = 0; k < a.shape(1); ++k) r += double(a(i, k)) * b(k, j);
  return r;
}
} // namespace

TEST_CASE("matmul, transposes and fused bias+activation epilogues", "[core][linalg]") {
  for (auto [m, k, n] : std::vector<std::array<std::size_t, 3>>{
           {1, 1, 1}, {0, 3, 4}, {3, 0, 4}, {7, 13, 5}, {64, 784, 256}, {33, 65, 17}}) {
    mat a({m, k}), b({k, n});
    lp::tensor<float, lp::dyn> bias(n);
    fill_uniform(a, -1, 1, m + k);
    fill_uniform(b, -1, 1, k + n);
    fill_uniform(bias, -1, 1, n);
    mat c = lp::matmul(a, b);
    mat d = lp::relu(lp::matmul(a, b) + bias);
    mat e = lp::tanh(lp::matmul(a, b) * 0.5f + bias) - 1.0f;
    mat at = lp::transpose(a);
    mat f = lp::matmul(lp::transpose(at), b + 0.0f);
    REQUIRE(c.shape() == lp::shape_t<2>{m, n});
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double r = ref_mm(a, b, i, j);
        double tol = 1e-5 * std::sqrt(double(k) + 1);
        REQUIRE(close(c(i, j), r, 1e-4, tol));
        REQUIRE(close(d(i, j), std::max(r + bias(j), 0.0), 1e-4, tol));
        REQUIRE(close(e(i, j), std::tanh(r * 0.5 + bias(j)) - 1.0, 1e-4, tol));
        REQUIRE(close(f(i, j), r, 1e-4, tol));
      }
  }
  mat a({3, 4}), b({5, 6});
  REQUIRE_THROWS_AS(lp::eval(lp::matmul(a, b)), lp::shape_error);
}

TEST_CASE("softmax and log_softmax over the last axis", "[core][nn_ops]") {
  mat x({6, 10});
  fill_uniform(x, -5, 5, 21);
  mat p = lp::softmax(x), lp_ = lp::log_softmax(x);
  for (std::size_t i = 0; i < 6; ++i) {
    double m = -1e300, s = 0;
    for (std::size_t j = 0; j < 10; ++j) m = std::max(m, double(x(i, j)));
    for (std::size_t j = 0; j < 10; ++j) s += std::exp(x(i, j) - m);
    for (std::size_t j = 0; j < 10; ++j) {
      REQUIRE(close(p(i, j), std::exp(x(i, j) - m) / s, 1e-5, 1e-7));
      REQUIRE(close(lp_(i, j), x(i, j) - m - std::log(s), 1e-5, 1e-6));
    }
  }
}

namespace {
/// Float64 reference of y = h V with h = act(x w + b): the loss sum(y) and its gradients.
struct bias_act_reference {
  std::vector<double> z, h, gx, gw, gb, gv;
  double loss = 0;
  bias_act_reference(mat const& x, mat const& w, lp::tensor<float, lp::dyn> const& b, mat const& v,
                     bool relu) {
    std::size_t const m = x.shape(0), k = x.shape(1), n = w.shape(1), p = v.shape(1);
    z.assign(m * n, 0), h.assign(m * n, 0), gx.assign(m * k, 0), gw.assign(k * n, 0), gb.assign(n, 0),
        gv.assign(n * p, 0);
    std::vector<double> dz(m * n);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double s = b(j);
        for (std::size_t q = 0; q < k; ++q) s += double(x(i, q)) * w(q, j);
        z[i * n + j] = s;
        h[i * n + j] = relu ? std::max(s, 0.0) : s;
        double vrow = 0; // d loss / d h(i, j) = sum over the columns of v's row j
        for (std::size_t c = 0; c < p; ++c) vrow += v(j, c), loss += h[i * n + j] * v(j, c);
        dz[i * n + j] = relu && s <= 0 ? 0.0 : vrow;
      }
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        gb[j] += dz[i * n + j];
        for (std::size_t q = 0; q < k; ++q) {
          gw[q * n + j] += double(x(i, q)) * dz[i * n + j];
          gx[i * k + q] += dz[i * n + j] * w(q, j);
        }
        for (std::size_t c = 0; c < p; ++c) gv[j * p + c] += h[i * n + j];
      }
  }
};

template <class Tensor> void check_against(Tensor const& got, std::vector<double> const& want, double tol) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (!close(got.data()[i], want[i], 1e-4, tol) && bad++ < 5)
      UNSCOPED_INFO("element " << i << ": " << got.data()[i] << ", want " << want[i]);
  CHECK(bad == 0);
}
} // namespace

TEST_CASE("relu(x w + b) and x w + b as the GEMM's register epilogue: values and gradients",
          "[core][linalg]") {
  // k = 300 spans two k blocks; 17 and 70 columns leave partial register tiles.
  for (auto [m, k, n] : std::vector<std::array<std::size_t, 3>>{{5, 40, 17}, {64, 300, 70}, {1, 1, 1}}) {
    INFO("m=" << m << " k=" << k << " n=" << n);
    mat x({m, k}), w({k, n}), v({n, 3});
    lp::tensor<float, lp::dyn> b(n), b1(1);
    fill_uniform(x, -1, 1, m + 3 * k);
    fill_uniform(w, -1, 1, k + 5 * n);
    fill_uniform(b, -1, 1, n + 7);
    fill_uniform(v, -1, 1, n + 11);
    b1(0) = 0.25f;
    double const tol = 1e-5 * std::sqrt(double(k) + 1);
    for (bool relu : {false, true}) {
      INFO("relu=" << relu);
      bias_act_reference const ref(x, w, b, v, relu);
      // Inference: both operand orders, written straight into the result.
      mat h1 = relu ? mat(lp::relu(lp::matmul(x, w) + b)) : mat(lp::matmul(x, w) + b);
      mat h2 = relu ? mat(lp::relu(b + lp::matmul(x, w))) : mat(b + lp::matmul(x, w));
      check_against(h1, ref.h, tol);
      check_against(h2, ref.h, tol);
      // Training: the group is materialised for the next matmul and differentiated through.
      float const loss = relu ? lp::value(lp::sum(lp::matmul(lp::relu(lp::matmul(x, w) + b), v)))
                              : lp::value(lp::sum(lp::matmul(lp::matmul(x, w) + b, v)));
      REQUIRE(close(loss, ref.loss, 1e-4, tol * double(n)));
      auto check_grads = [&](auto const& f) {
        auto [gx, gw, gb, gv] = lp::grad(f, x, w, b, v);
        check_against(gx, ref.gx, tol * double(n));
        check_against(gw, ref.gw, tol * double(m));
        check_against(gb, ref.gb, tol * double(m));
        check_against(gv, ref.gv, tol * double(m));
      };
      if (relu) {
        check_grads(lp::sum(lp::matmul(lp::relu(lp::matmul(x, w) + b), v)));
        check_grads(lp::sum(lp::matmul(lp::relu(b + lp::matmul(x, w)), v)));
      } else {
        check_grads(lp::sum(lp::matmul(lp::matmul(x, w) + b, v)));
        check_grads(lp::sum(lp::matmul(b + lp::matmul(x, w), v)));
      }
    }
    // A bias of one element is broadcast along the columns too: the generic epilogue handles it.
    mat hb = lp::relu(lp::matmul(x, w) + b1);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j)
        REQUIRE(close(hb(i, j), std::max(ref_mm(x, w, i, j) + 0.25, 0.0), 1e-4, tol));
  }
}
