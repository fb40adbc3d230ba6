#pragma once
// Naive float64 references of the CNN ops (direct loops over the definitions) and helpers shared
// by the CNN tests.
#include <catch2/catch.hpp>
#include <lepton/expr/batch_norm.hpp>
#include <lepton/expr/conv.hpp>
#include <lepton/expr/pool.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace cnn_test {

namespace lp = lepton;
using t4 = lp::tensor<double, lp::dyn, lp::dyn, lp::dyn, lp::dyn>;
using t2 = lp::tensor<double, lp::dyn, lp::dyn>;
using t1 = lp::tensor<double, lp::dyn>;

inline std::size_t out_extent(std::size_t in, std::size_t k, std::size_t s, std::size_t p, std::size_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/// y[n, o, i, j] = b[o] + sum_{c, u, v} x[n, c, i s - p + u d, j s - p + v d] w[o, c, u, v]
template <class X, class W, class B = double>
t4 ref_conv(X const& x, W const& w, B const* b, std::size_t s, std::size_t p, std::size_t d) {
  auto xs = x.shape();
  auto ws = w.shape();
  std::size_t const oh = out_extent(xs[2], ws[2], s, p, d), ow = out_extent(xs[3], ws[3], s, p, d);
  t4 y({xs[0], ws[0], oh, ow});
  for (std::size_t n = 0; n < xs[0]; ++n)
    for (std::size_t o = 0; o < ws[0]; ++o)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double acc = b ? double(b[o]) : 0.0;
          for (std::size_t c = 0; c < xs[1]; ++c)
            for (std::size_t u = 0; u < ws[2]; ++u)
              for (std::size_t v = 0; v < ws[3]; ++v) {
                long yy = long(i * s + u * d) - long(p), xx = long(j * s + v * d) - long(p);
                if (yy < 0 || xx < 0 || yy >= long(xs[2]) || xx >= long(xs[3])) continue;
                acc += double(x(n, c, std::size_t(yy), std::size_t(xx))) * double(w(o, c, u, v));
              }
          y(n, o, i, j) = acc;
        }
  return y;
}

/// Max (max = true) or average pooling (padded cells ignored by max, counted as 0 by avg).
template <class X> t4 ref_pool(X const& x, bool max, std::size_t k, std::size_t s, std::size_t p) {
  auto xs = x.shape();
  std::size_t const oh = out_extent(xs[2], k, s, p, 1), ow = out_extent(xs[3], k, s, p, 1);
  t4 y({xs[0], xs[1], oh, ow});
  for (std::size_t n = 0; n < xs[0]; ++n)
    for (std::size_t c = 0; c < xs[1]; ++c)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (std::size_t u = 0; u < k; ++u)
            for (std::size_t v = 0; v < k; ++v) {
              long yy = long(i * s + u) - long(p), xx = long(j * s + v) - long(p);
              if (yy < 0 || xx < 0 || yy >= long(xs[2]) || xx >= long(xs[3])) continue;
              double val = double(x(n, c, std::size_t(yy), std::size_t(xx)));
              acc = max ? std::max(acc, val) : acc + val;
            }
          y(n, c, i, j) = max ? acc : acc / double(k * k);
        }
  return y;
}

/// Fills with distinct values (spaced by at least 0.01 * scale) in random order: no ties for max pooling.
template <class X> void fill_distinct(X& t, std::uint64_t seed, double scale = 1.0) {
  std::vector<std::size_t> idx(t.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  double const n = double(t.size());
  for (std::size_t i = 0; i < idx.size(); ++i)
    t.data()[i] = static_cast<typename X::value_type>(scale * (double(idx[i]) - n / 2) * 0.01 * 3.7);
}

/// Both tensors have the same shape and values within tolerance.
template <class A, class B> void require_close(A const& a, B const& b, double rtol, double atol) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double const ea = double(a.data()[i]), eb = double(b.data()[i]);
    double const err = std::abs(ea - eb) - rtol * std::abs(eb);
    if (err > worst) worst = err, at = i;
  }
  INFO("element " << at << ": " << double(a.data()[at]) << " vs reference " << double(b.data()[at]));
  REQUIRE(worst <= atol);
}

template <class F, class... W> void expect_gradcheck(char const* name, int seed, F&& f, W&... w) {
  auto r = lp::gradcheck(f, w...);
  INFO(name << " seed " << seed << ": " << r.message);
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

} // namespace cnn_test
