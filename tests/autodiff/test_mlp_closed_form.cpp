// A 3-layer MLP with softmax cross-entropy: lepton's gradients equal a hand derivation (explicit
// loops in float64) to 1e-6 relative.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>
#include <vector>

namespace lp = lepton;

namespace {
constexpr std::size_t B = 5, I = 7, H1 = 6, H2 = 4, C = 3;
using vecd = std::vector<double>;

// y = x W + b for row-major x (B, in), W (in, out)
vecd affine(vecd const& x, double const* w, double const* b, std::size_t in, std::size_t out) {
  vecd y(B * out);
  for (std::size_t n = 0; n < B; ++n)
    for (std::size_t j = 0; j < out; ++j) {
      double s = b[j];
      for (std::size_t k = 0; k < in; ++k) s += x[n * in + k] * w[k * out + j];
      y[n * out + j] = s;
    }
  return y;
}
} // namespace

TEST_CASE("3-layer MLP gradients equal the closed-form derivation", "[autodiff]") {
  lp::param<double, I, H1> w1;
  lp::param<double, H1> b1;
  lp::param<double, H1, H2> w2;
  lp::param<double, H2> b2;
  lp::param<double, H2, C> w3;
  lp::param<double, C> b3;
  lp::tensor<double, lp::dyn, I> x(B);
  lp::tensor<int, lp::dyn> y({B}, {0, 2, 1, 1, 0});
  std::uint64_t seed = 1;
  for (auto* t : {&w1.value.xt(), &w2.value.xt(), &w3.value.xt()}) (void)t;
  lepton_test::fill_uniform(w1.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(b1.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(w2.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(b2.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(w3.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(b3.value, -0.5, 0.5, seed++);
  lepton_test::fill_uniform(x, -1, 1, seed++);

  auto logits = lp::matmul(lp::relu(lp::matmul(lp::tanh(lp::matmul(x, w1) + b1), w2) + b2), w3) + b3;
  double loss = lp::backward(lp::loss::cross_entropy(logits, y));

  // ---- hand derivation
  vecd xv(x.data(), x.data() + x.size());
  vecd z1 = affine(xv, w1.data(), b1.data(), I, H1), a1(z1.size());
  for (std::size_t i = 0; i < z1.size(); ++i) a1[i] = std::tanh(z1[i]);
  vecd z2 = affine(a1, w2.data(), b2.data(), H1, H2), a2(z2.size());
  for (std::size_t i = 0; i < z2.size(); ++i) a2[i] = z2[i] > 0 ? z2[i] : 0;
  vecd z3 = affine(a2, w3.data(), b3.data(), H2, C);
  double ref_loss = 0;
  vecd d3(B * C);
  for (std::size_t n = 0; n < B; ++n) {
    double m = -1e300, s = 0;
    for (std::size_t c = 0; c < C; ++c) m = std::max(m, z3[n * C + c]);
    for (std::size_t c = 0; c < C; ++c) s += std::exp(z3[n * C + c] - m);
    ref_loss += (m + std::log(s) - z3[n * C + std::size_t(y(n))]) / B;
    for (std::size_t c = 0; c < C; ++c)
      d3[n * C + c] = (std::exp(z3[n * C + c] - m) / s - (c == std::size_t(y(n)) ? 1.0 : 0.0)) / B;
  }
  auto back = [](vecd const& d, vecd const& a, double const* w, std::size_t in, std::size_t out, vecd& gw,
                 vecd& gb, vecd& da) {
    gw.assign(in * out, 0);
    gb.assign(out, 0);
    da.assign(B * in, 0);
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t j = 0; j < out; ++j) {
        gb[j] += d[n * out + j];
        for (std::size_t k = 0; k < in; ++k) {
          gw[k * out + j] += a[n * in + k] * d[n * out + j];
          da[n * in + k] += w[k * out + j] * d[n * out + j];
        }
      }
  };
  vecd gw3, gb3, da2, gw2, gb2, da1, gw1, gb1, dx;
  back(d3, a2, w3.data(), H2, C, gw3, gb3, da2);
  for (std::size_t i = 0; i < da2.size(); ++i) da2[i] *= z2[i] > 0 ? 1 : 0;
  back(da2, a1, w2.data(), H1, H2, gw2, gb2, da1);
  for (std::size_t i = 0; i < da1.size(); ++i) da1[i] *= 1 - a1[i] * a1[i];
  back(da1, xv, w1.data(), I, H1, gw1, gb1, dx);

  REQUIRE(loss == Approx(ref_loss).epsilon(1e-12));
  auto same = [](auto const& p, vecd const& ref) {
    REQUIRE(p.grad.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      INFO("element " << i << ": " << p.grad.data()[i] << " vs " << ref[i]);
      REQUIRE(lepton_test::close(p.grad.data()[i], ref[i], 1e-6, 1e-12));
    }
  };
  same(w3, gw3);
  same(b3, gb3);
  same(w2, gw2);
  same(b2, gb2);
  same(w1, gw1);
  same(b1, gb1);
}
