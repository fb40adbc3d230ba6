// Runtime ISA dispatch of the fused loops and the softmax kernels (eval/isa_loops.hpp): every level
// this build compiled and this CPU runs evaluates the same expressions (flat and broadcast paths,
// streamed stores, accumulated gradients, reductions, softmax, log_softmax, cross-entropy and its
// gradient) against a float64 reference and against the portable level.

#include <lepton/lepton.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <support/util.hpp>

namespace isa_loops_test {

namespace lp = lepton;
using lp::isa;
using mat = lp::tensor<float, lp::dyn, lp::dyn>;
using vec = lp::tensor<float, lp::dyn>;

std::vector<isa> runnable_levels() {
  std::vector<isa> out;
  for (isa l : {isa::portable, isa::avx2, isa::avx512})
    if (lp::isa_compiled(l) && static_cast<int>(l) <= static_cast<int>(lp::cpu_isa())) out.push_back(l);
  return out;
}

struct level_guard {
  isa saved = lp::active_isa();
  ~level_guard() { lp::set_active_isa(saved); }
};

/// Counts the elements of `got` outside rtol/atol of `want` (reporting the first few).
std::size_t count_bad(float const* got, std::vector<double> const& want, double rtol, double atol,
                      std::string const& what) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (!lepton_test::close(got[i], want[i], rtol, atol) && bad++ < 4)
      UNSCOPED_INFO(what << " element " << i << ": " << got[i] << ", want " << want[i]);
  return bad;
}

/// Runs `f` (which returns every value it computed, flattened) at every runnable level; checks each
/// level against the float64 reference `want`, and every level against the portable one.
void at_every_level(std::string const& what, std::function<std::vector<float>()> const& f,
                    std::vector<double> const& want, double rtol, double atol, double level_rtol = 4e-6,
                    double level_atol = 1e-6) {
  level_guard guard;
  std::vector<std::vector<float>> got;
  for (isa l : runnable_levels()) {
    lp::set_active_isa(l);
    got.push_back(f());
    REQUIRE(got.back().size() == want.size());
    CHECK(count_bad(got.back().data(), want, rtol, atol, what + " at " + lp::to_string(l)) == 0);
  }
  // Levels differ only by rounding: within a few ulp of each other.
  for (std::size_t k = 1; k < got.size(); ++k) {
    std::vector<double> base(got[0].begin(), got[0].end());
    CHECK(count_bad(got[k].data(), base, level_rtol, level_atol,
                    what + " level " + std::to_string(k) + " vs portable") == 0);
  }
}

std::vector<float> flat(mat const& m) { return {m.data(), m.data() + m.size()}; }
std::vector<float> flat(vec const& v) { return {v.data(), v.data() + v.size()}; }
void append(std::vector<float>& a, std::vector<float> const& b) { a.insert(a.end(), b.begin(), b.end()); }

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

} // namespace isa_loops_test

using namespace isa_loops_test;

TEST_CASE("isa: fused elementwise loops of every runnable level match float64 and the portable level",
          "[isa][loops]") {
  // Widths around every vector width (4, 8, 16 floats) and rows that go parallel; 1<<22 elements
  // takes the streamed-store path (16 MiB output).
  std::vector<lp::shape_t<2>> const shapes = {{1, 1}, {3, 17}, {7, 64}, {5, 100}, {33, 301}, {1024, 4096}};
  for (auto s : shapes) {
    INFO("shape " << lp::to_string(s));
    mat x(s), y(s), z(s);
    vec b({s[1]});
    lepton_test::fill_uniform(x, -3, 3, 1 + s[1]);
    lepton_test::fill_uniform(y, -2, 2, 2 + s[1]);
    lepton_test::fill_uniform(z, -4, 4, 3 + s[1]);
    lepton_test::fill_uniform(b, -1, 1, 4 + s[1]);
    std::size_t const n = x.size(), cols = s[1];
    std::vector<double> want;
    want.reserve(3 * n);
    for (std::size_t i = 0; i < n; ++i) { // flat path: transcendental chain
      double xv = x.data()[i], yv = y.data()[i], zv = z.data()[i];
      want.push_back(std::exp(xv) * yv - std::log1p(std::abs(zv)));
    }
    for (std::size_t i = 0; i < n; ++i) { // flat path: tanh, sigmoid, sqrt
      double xv = x.data()[i], yv = y.data()[i], zv = z.data()[i];
      want.push_back(std::tanh(xv) + sigmoid(yv) * std::sqrt(std::abs(zv)));
    }
    for (std::size_t i = 0; i < n; ++i) { // row path: a broadcast row
      double xv = x.data()[i], yv = y.data()[i];
      want.push_back((xv + double(b.data()[i % cols])) * std::exp(-yv * yv) + std::log(1 + xv * xv));
    }
    at_every_level(
        "elementwise",
        [&] {
      mat e1 = lp::exp(x) * y - lp::log1p(lp::abs(z));
      mat e2 = lp::tanh(x) + lp::sigmoid(y) * lp::sqrt(lp::abs(z));
      mat e3 = (x + b) * lp::exp(-lp::square(y)) + lp::log(1.0f + lp::square(x));
      std::vector<float> out = flat(e1);
      append(out, flat(e2));
      append(out, flat(e3));
      return out;
        },
        want, 2e-5, 2e-6);
  }
}

TEST_CASE("isa: reductions and accumulated gradients of every runnable level match float64", "[isa][loops]") {
  for (lp::shape_t<2> s :
       {lp::shape_t<2>{1, 3}, lp::shape_t<2>{9, 37}, lp::shape_t<2>{64, 130}, lp::shape_t<2>{300, 301}}) {
    INFO("shape " << lp::to_string(s));
    mat x(s), y(s);
    vec b({s[1]});
    lepton_test::fill_uniform(x, -2, 2, 11 + s[0]);
    lepton_test::fill_uniform(y, -2, 2, 12 + s[0]);
    lepton_test::fill_uniform(b, -1, 1, 13 + s[0]);
    std::size_t const r = s[0], c = s[1], n = r * c;
    // total = sum(exp(x) * y); rows = sum over axis 1 of x * y + x; cols = max over axis 0 of x - y;
    // gx = d/dx sum(exp(x) * x + tanh(x) * b) (x read twice: the gradient pieces accumulate).
    std::vector<double> want;
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += std::exp(double(x.data()[i])) * y.data()[i];
    want.push_back(total);
    for (std::size_t i = 0; i < r; ++i) {
      double acc = 0;
      for (std::size_t j = 0; j < c; ++j) acc += double(x(i, j)) * y(i, j) + x(i, j);
      want.push_back(acc);
    }
    for (std::size_t j = 0; j < c; ++j) {
      double m = -INFINITY;
      for (std::size_t i = 0; i < r; ++i) m = std::max(m, double(x(i, j)) - y(i, j));
      want.push_back(m);
    }
    for (std::size_t i = 0; i < n; ++i) {
      double xv = x.data()[i], t = std::tanh(xv);
      want.push_back(std::exp(xv) * (1 + xv) + (1 - t * t) * b.data()[i % c]);
    }
    // Sums of n terms: float accumulation error grows with n (relative to the sum of |terms|).
    at_every_level(
        "reductions",
        [&] {
      std::vector<float> out{lp::value(lp::sum(lp::exp(x) * y))};
      vec rows = lp::sum(x * y + x, lp::axis<1>);
      vec cols = lp::max(x - y, lp::axis<0>);
      append(out, flat(rows));
      append(out, flat(cols));
      auto [gx] = lp::grad(lp::sum(lp::exp(x) * x + lp::tanh(x) * b), x);
      append(out, flat(gx));
      return out;
        },
        want, 2e-4, 2e-4, 2e-4, 2e-4);
  }
}

TEST_CASE("isa: softmax, log_softmax and cross-entropy of every runnable level match float64",
          "[isa][softmax]") {
  // 10 classes (one padded vector), a vector multiple, long rows, many rows (parallel).
  for (lp::shape_t<2> s : {lp::shape_t<2>{1, 1}, lp::shape_t<2>{6, 10}, lp::shape_t<2>{5, 32},
                           lp::shape_t<2>{3, 1000}, lp::shape_t<2>{4096, 37}}) {
    INFO("shape " << lp::to_string(s));
    std::size_t const r = s[0], c = s[1];
    mat x(s);
    lepton_test::fill_uniform(x, -8, 8, 31 + c);
    lp::tensor<int, lp::dyn> labels({r});
    for (std::size_t i = 0; i < r; ++i) labels(i) = int((i * 7 + 3) % c);
    std::vector<double> want, lsm(r * c);
    double loss = 0;
    for (std::size_t i = 0; i < r; ++i) {
      double m = -INFINITY, sum = 0;
      for (std::size_t j = 0; j < c; ++j) m = std::max(m, double(x(i, j)));
      for (std::size_t j = 0; j < c; ++j) sum += std::exp(x(i, j) - m);
      for (std::size_t j = 0; j < c; ++j) lsm[i * c + j] = x(i, j) - m - std::log(sum);
      loss -= lsm[i * c + std::size_t(labels(i))];
    }
    for (double v : lsm) want.push_back(std::exp(v));
    for (double v : lsm) want.push_back(v);
    want.push_back(loss / double(r));
    for (std::size_t i = 0; i < r; ++i) // d mean cross-entropy / d x = (softmax - onehot) / rows
      for (std::size_t j = 0; j < c; ++j)
        want.push_back((std::exp(lsm[i * c + j]) - (j == std::size_t(labels(i)) ? 1.0 : 0.0)) / double(r));
    at_every_level(
        "softmax",
        [&] {
      mat p = lp::softmax(x), l = lp::log_softmax(x);
      std::vector<float> out = flat(p);
      append(out, flat(l));
      out.push_back(lp::value(lp::loss::cross_entropy(x, labels)));
      auto [g] = lp::grad(lp::loss::cross_entropy(x, labels), x);
      append(out, flat(g));
      return out;
        },
        want, 2e-5, 1e-6);
  }
}
