// conv2d, pooling, global average pooling and batch norm: forward against naive float64 references,
// and every backward rule by gradcheck (float64, 20 seeds) over stride/padding/dilation variants,
// odd sizes, 1x1 kernels and batches of one.
#include "cnn_test_util.hpp"

using namespace cnn_test;

namespace {
constexpr int seeds = 20;

/// Random conv problem for `seed`: sizes vary with the seed; the kernel fits the padded input.
struct conv_case {
  std::size_t n, c, h, w, o, kh, kw;
};
conv_case conv_case_for(int seed, std::size_t s, std::size_t p, std::size_t d) {
  static constexpr std::size_t ns[] = {1, 2, 3};
  static constexpr std::size_t cs[] = {1, 2, 3};
  static constexpr std::size_t os[] = {1, 3, 4, 2};
  static constexpr std::size_t ks[][2] = {{3, 3}, {1, 1}, {2, 3}, {3, 1}, {2, 2}};
  conv_case k{ns[seed % 3],
              cs[(seed / 3) % 3],
              5 + std::size_t(seed % 4),
              4 + std::size_t((seed * 7) % 5),
              os[seed % 4],
              ks[seed % 5][0],
              ks[seed % 5][1]};
  // keep the dilated kernel inside the padded input
  while (d * (k.kh - 1) + 1 > k.h + 2 * p) ++k.h;
  while (d * (k.kw - 1) + 1 > k.w + 2 * p) ++k.w;
  (void)s;
  return k;
}

/// Forces one conv2d algorithm for a scope (both must give the same results on every shape).
struct algo_scope {
  explicit algo_scope(lp::detail::conv_algo a) { lp::detail::conv_algo_override() = a; }
  ~algo_scope() { lp::detail::conv_algo_override() = lp::detail::conv_algo::automatic; }
  algo_scope(algo_scope const&) = delete;
  algo_scope& operator=(algo_scope const&) = delete;
};
constexpr lp::detail::conv_algo all_algos[] = {lp::detail::conv_algo::automatic,
                                               lp::detail::conv_algo::direct, lp::detail::conv_algo::im2col};

template <std::size_t S, std::size_t P, std::size_t D> void conv_variant(bool bias) {
  for (int seed = 0; seed < seeds; ++seed)
    for (auto algo : all_algos) {
      algo_scope scope(algo);
      auto k = conv_case_for(seed, S, P, D);
      t4 x({k.n, k.c, k.h, k.w}), w({k.o, k.c, k.kh, k.kw});
      t1 b(k.o);
      lepton_test::fill_uniform(x, -1, 1, seed);
      lepton_test::fill_uniform(w, -1, 1, seed + 100);
      lepton_test::fill_uniform(b, -1, 1, seed + 200);
      auto ref = ref_conv(x, w, bias ? b.data() : nullptr, S, P, D);
      t4 wt(ref.shape());
      lepton_test::fill_uniform(wt, -1, 1, seed + 300);
      INFO("S=" << S << " P=" << P << " D=" << D << " bias=" << bias << " algo=" << int(algo) << " x"
                << lp::to_string(x.shape()) << " w" << lp::to_string(w.shape()));
      if (bias) {
        t4 y = lp::conv2d<S, P, D>(x, w, b);
        require_close(y, ref, 1e-12, 1e-12);
        expect_gradcheck(
            "conv2d+bias", seed, [&] { return lp::sum(lp::conv2d<S, P, D>(x, w, b) * wt); }, x, w, b);
      } else {
        t4 y = lp::conv2d<S, P, D>(x, w);
        require_close(y, ref, 1e-12, 1e-12);
        expect_gradcheck(
            "conv2d", seed, [&] { return lp::sum(lp::conv2d<S, P, D>(x, w) * wt); }, x, w);
      }
    }
}
} // namespace

TEST_CASE("conv2d: forward matches the float64 reference, gradcheck passes (stride/pad/dilation)",
          "[cnn][conv]") {
  conv_variant<1, 0, 1>(true);
  conv_variant<1, 1, 1>(false);
  conv_variant<2, 1, 1>(true);
  conv_variant<1, 2, 2>(true);
  conv_variant<3, 1, 1>(false);
  conv_variant<2, 0, 2>(true);
  conv_variant<1, 2, 1>(true); // padding > (k - 1) d for small kernels: dX falls back to GEMM
}

TEST_CASE("conv2d: float32 on larger shapes (direct and GEMM paths), static output shapes", "[cnn][conv]") {
  for (auto algo : all_algos) {
    algo_scope scope(algo);
    INFO("algo " << int(algo));
    // 3x3 "same" convolution: the static spatial size is kept, the batch stays dyn.
    lp::tensor<float, lp::dyn, 7, 13, 11> x(5);
    lp::tensor<float, 33, 7, 3, 3> w;
    lp::tensor<float, 33> b;
    lepton_test::fill_uniform(x, -1, 1, 1);
    lepton_test::fill_uniform(w, -0.5, 0.5, 2);
    lepton_test::fill_uniform(b, -1, 1, 3);
    using same = decltype(lp::conv2d<1, 1>(x, w, b));
    static_assert(std::is_same_v<same::static_dims, lp::dims<lp::dyn, 33, 13, 11>>);
    lp::tensor<float, lp::dyn, 33, 13, 11> y = lp::conv2d<1, 1>(x, w, b);
    require_close(y, ref_conv(x, w, b.data(), 1, 1, 1), 1e-5, 1e-5);
    // strided and dilated
    using strided = decltype(lp::conv2d<2, 0, 2>(x, w));
    static_assert(std::is_same_v<strided::static_dims, lp::dims<lp::dyn, 33, 5, 4>>);
    lp::tensor<float, lp::dyn, 33, 5, 4> ys = lp::conv2d<2, 0, 2>(x, w);
    require_close(ys, ref_conv(x, w, static_cast<float const*>(nullptr), 2, 0, 2), 1e-5, 1e-5);
    // 1x1: x is read directly as the GEMM operand
    lp::tensor<float, 4, 7, 1, 1> w1;
    lepton_test::fill_uniform(w1, -1, 1, 4);
    lp::tensor<float, lp::dyn, 4, 13, 11> y1 = lp::conv2d(x, w1);
    require_close(y1, ref_conv(x, w1, static_cast<float const*>(nullptr), 1, 0, 1), 1e-5, 1e-5);
    // gradients of both paths against float64 gradients (wide rows: two vectors and a masked tail)
    lp::tensor<float, lp::dyn, 3, 9, 37> xs(3);
    lp::param<float, 7, 3, 3, 5> wp;
    lp::param<float, 7> bp;
    lepton_test::fill_uniform(xs, -1, 1, 8);
    lepton_test::fill_uniform(wp.value, -1, 1, 9);
    lepton_test::fill_uniform(bp.value, -1, 1, 10);
    t4 xd(xs.shape()), wd(wp.value.shape());
    t1 bd(7);
    std::copy_n(xs.data(), xs.size(), xd.data());
    std::copy_n(wp.value.data(), wp.value.size(), wd.data());
    std::copy_n(bp.value.data(), 7, bd.data());
    auto [gx, gw, gb] = lp::grad(lp::sum(lp::square(lp::conv2d<1, 2>(xd, wd, bd))), xd, wd, bd);
    auto [fx, fw, fb] = lp::grad(lp::sum(lp::square(lp::conv2d<1, 2>(xs, wp, bp))), xs, wp, bp);
    require_close(fx, gx, 1e-4, 1e-3);
    require_close(fw, gw, 1e-4, 1e-3);
    require_close(fb, gb, 1e-4, 1e-3);
  }
}

TEST_CASE("conv2d: gradients are bitwise the same for 1 and 2 threads", "[cnn][conv]") {
  lp::tensor<float, lp::dyn, 3, 12, 12> x(37);
  lp::param<float, 8, 3, 3, 3> w;
  lp::param<float, 8> b;
  lepton_test::fill_uniform(x, -1, 1, 5);
  lepton_test::fill_uniform(w.value, -1, 1, 6);
  lepton_test::fill_uniform(b.value, -1, 1, 7);
  auto run = [&](std::size_t threads) {
    lp::set_num_threads(threads);
    lp::backward(lp::sum(lp::square(lp::conv2d<1, 1>(x, w, b))));
    return std::make_pair(w.grad, b.grad);
  };
  auto one = run(1);
  auto two = run(2);
  lp::set_num_threads(0);
  for (std::size_t i = 0; i < one.first.size(); ++i) REQUIRE(one.first.data()[i] == two.first.data()[i]);
  for (std::size_t i = 0; i < one.second.size(); ++i) REQUIRE(one.second.data()[i] == two.second.data()[i]);
}

TEST_CASE("conv2d: runtime shape mismatches throw shape_error naming the shapes", "[cnn][conv]") {
  t4 x({2, 3, 5, 5}), w({4, 2, 3, 3}), big({4, 3, 9, 9});
  REQUIRE_THROWS_AS(lp::eval(lp::conv2d(x, w)), lp::shape_error);
  REQUIRE_THROWS_WITH(lp::eval(lp::conv2d(x, w)),
                      Catch::Contains("(2, 3, 5, 5)") && Catch::Contains("(4, 2, 3, 3)"));
  REQUIRE_THROWS_WITH(lp::eval(lp::conv2d(x, big)), Catch::Contains("conv2d") && Catch::Contains("height"));
}

namespace {
template <bool Max, std::size_t K, std::size_t S, std::size_t P> void pool_variant() {
  for (int seed = 0; seed < seeds; ++seed) {
    std::size_t const n = 1 + std::size_t(seed % 3), c = 1 + std::size_t(seed % 2);
    std::size_t const h = K + std::size_t(seed % 5), w = K + 1 + std::size_t((seed * 3) % 4);
    t4 x({n, c, h, w});
    fill_distinct(x, std::uint64_t(seed));
    auto ref = ref_pool(x, Max, K, S, P);
    t4 wt(ref.shape());
    lepton_test::fill_uniform(wt, -1, 1, seed + 300);
    INFO((Max ? "max" : "avg") << " K=" << K << " S=" << S << " P=" << P << " x" << lp::to_string(x.shape()));
    if constexpr (Max) {
      t4 y = lp::max_pool2d<K, S, P>(x);
      require_close(y, ref, 0, 0);
      expect_gradcheck(
          "max_pool2d", seed, [&] { return lp::sum(lp::max_pool2d<K, S, P>(x) * wt); }, x);
      // through a fused producer: the pool reads a relu group
      expect_gradcheck(
          "max_pool2d(tanh)", seed, [&] { return lp::sum(lp::max_pool2d<K, S, P>(lp::tanh(x)) * wt); }, x);
    } else {
      t4 y = lp::avg_pool2d<K, S, P>(x);
      require_close(y, ref, 1e-12, 1e-12);
      expect_gradcheck(
          "avg_pool2d", seed, [&] { return lp::sum(lp::avg_pool2d<K, S, P>(x) * wt); }, x);
    }
  }
}
} // namespace

TEST_CASE("pooling: forward matches the reference, gradcheck passes", "[cnn][pool]") {
  pool_variant<true, 2, 2, 0>();
  pool_variant<true, 3, 2, 1>();
  pool_variant<true, 2, 1, 0>();
  pool_variant<false, 2, 2, 0>();
  pool_variant<false, 3, 2, 1>();
  pool_variant<false, 3, 1, 1>();
  static_assert(std::is_same_v<decltype(lp::max_pool2d<2>(
                                   std::declval<lp::tensor<float, lp::dyn, 32, 28, 28>&>()))::static_dims,
                               lp::dims<lp::dyn, 32, 14, 14>>);
  static_assert(std::is_same_v<decltype(lp::avg_pool2d<3, 2, 1>(
                                   std::declval<lp::tensor<float, lp::dyn, 8, 7, 7>&>()))::static_dims,
                               lp::dims<lp::dyn, 8, 4, 4>>);
}

TEST_CASE("max_pool2d<2>: ties, NaN and a fused relu input follow the first-maximum rule", "[cnn][pool]") {
  // The 2x2 stride-2 path reads row pairs with vector loads (widths around the lane counts, odd
  // widths, a row wider than its buffer takes the general loop) and reduces each window in scan
  // order with a strict >: the first maximum gets the gradient, a NaN only when it comes first.
  using f4 = lp::tensor<float, lp::dyn, lp::dyn, lp::dyn, lp::dyn>;
  for (std::size_t w : {std::size_t(3), std::size_t(9), std::size_t(14), std::size_t(17), std::size_t(28),
                        std::size_t(600)}) {
    std::size_t const n = 2, c = 3, h = 7, oh = h / 2, ow = w / 2;
    f4 x({n, c, h, w});
    std::uint64_t st = 12345 + w;
    for (std::size_t i = 0; i < x.size(); ++i) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      x.data()[i] = float(int((st >> 33) % 5) - 2); // -2 .. 2: many ties, relu makes zeros
    }
    x.data()[1] = std::nanf("");         // window (0, 0) of plane 0: a NaN second
    x.data()[w + 2] = std::nanf("");     // window (0, 1): a NaN third ...
    x.data()[2] = -5.f;                  // ... after a smaller first
    x.data()[h * w + 0] = std::nanf(""); // plane 1, window (0, 0): a NaN first
    f4 wt({n, c, oh, ow});
    for (std::size_t i = 0; i < wt.size(); ++i) wt.data()[i] = float(1 + i % 7);
    for (bool use_relu : {false, true}) {
      INFO("w=" << w << (use_relu ? " relu" : ""));
      auto in = [&](std::size_t i) -> double {
        double v = x.data()[i];
        return use_relu ? (v < 0 ? 0.0 : v) : v; // relu keeps NaN
      };
      std::vector<double> ref_y(n * c * oh * ow), ref_g(x.size(), 0.0);
      for (std::size_t pl = 0; pl < n * c; ++pl)
        for (std::size_t r = 0; r < oh; ++r)
          for (std::size_t q = 0; q < ow; ++q) {
            std::size_t const base = pl * h * w, o = (pl * oh + r) * ow + q;
            std::size_t best = base + 2 * r * w + 2 * q;
            double m = in(best);
            for (std::size_t k : {base + 2 * r * w + 2 * q + 1, base + (2 * r + 1) * w + 2 * q,
                                  base + (2 * r + 1) * w + 2 * q + 1})
              if (in(k) > m) m = in(k), best = k;
            ref_y[o] = m;
            double const slope = use_relu ? (x.data()[best] > 0 ? 1.0 : 0.0) : 1.0;
            ref_g[best] += double(wt.data()[o]) * slope;
          }
      f4 y = use_relu ? f4(lp::max_pool2d<2>(lp::relu(x))) : f4(lp::max_pool2d<2>(x));
      for (std::size_t i = 0; i < y.size(); ++i) {
        INFO("output " << i);
        if (std::isnan(ref_y[i]))
          CHECK(std::isnan(y.data()[i]));
        else
          CHECK(double(y.data()[i]) == ref_y[i]);
      }
      auto [g] = use_relu ? lp::grad(lp::sum(lp::max_pool2d<2>(lp::relu(x)) * wt), x)
                          : lp::grad(lp::sum(lp::max_pool2d<2>(x) * wt), x);
      for (std::size_t i = 0; i < g.size(); ++i) {
        INFO("input " << i);
        if (std::isnan(ref_g[i]))
          CHECK(std::isnan(g.data()[i]));
        else
          CHECK(double(g.data()[i]) == ref_g[i]);
      }
    }
  }
}

TEST_CASE("global_avg_pool2d: forward and gradcheck", "[cnn][pool]") {
  for (int seed = 0; seed < seeds; ++seed) {
    std::size_t const n = 1 + std::size_t(seed % 3), c = 1 + std::size_t(seed % 4),
                      h = 1 + std::size_t(seed % 5);
    t4 x({n, c, h, 2 + std::size_t(seed % 3)});
    lepton_test::fill_uniform(x, -1, 1, seed);
    t2 wt({n, c});
    lepton_test::fill_uniform(wt, -1, 1, seed + 1);
    t2 y = lp::global_avg_pool2d(x);
    auto s = x.shape();
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < c; ++k) {
        double acc = 0;
        for (std::size_t u = 0; u < s[2]; ++u)
          for (std::size_t v = 0; v < s[3]; ++v) acc += x(i, k, u, v);
        REQUIRE(lepton_test::close(y(i, k), acc / double(s[2] * s[3]), 1e-12, 1e-12));
      }
    expect_gradcheck(
        "global_avg_pool2d", seed, [&] { return lp::sum(lp::global_avg_pool2d(x) * wt); }, x);
  }
}

namespace {
/// Reference batch norm over dimension 1 with the given statistics per channel.
template <class X> X ref_bn(X const& x, std::vector<double> const& mean, std::vector<double> const& var,
                            t1 const& g, t1 const& b, double eps) {
  X y(x.shape());
  auto s = x.shape();
  std::size_t sp = x.size() / (s[0] * s[1]);
  for (std::size_t i = 0; i < s[0]; ++i)
    for (std::size_t c = 0; c < s[1]; ++c)
      for (std::size_t q = 0; q < sp; ++q) {
        std::size_t at = (i * s[1] + c) * sp + q;
        y.data()[at] = (x.data()[at] - mean[c]) / std::sqrt(var[c] + eps) * g(c) + b(c);
      }
  return y;
}
template <class X> void batch_stats(X const& x, std::vector<double>& mean, std::vector<double>& var) {
  auto s = x.shape();
  std::size_t sp = x.size() / (s[0] * s[1]), m = s[0] * sp;
  mean.assign(s[1], 0);
  var.assign(s[1], 0);
  for (std::size_t i = 0; i < s[0]; ++i)
    for (std::size_t c = 0; c < s[1]; ++c)
      for (std::size_t q = 0; q < sp; ++q) mean[c] += x.data()[(i * s[1] + c) * sp + q] / double(m);
  for (std::size_t i = 0; i < s[0]; ++i)
    for (std::size_t c = 0; c < s[1]; ++c)
      for (std::size_t q = 0; q < sp; ++q) {
        double dlt = x.data()[(i * s[1] + c) * sp + q] - mean[c];
        var[c] += dlt * dlt / double(m);
      }
}
} // namespace

TEST_CASE("batch_norm: training and evaluation forward, running statistics, gradcheck", "[cnn][bn]") {
  for (int seed = 0; seed < seeds; ++seed) {
    std::size_t const n = 2 + std::size_t(seed % 3), c = 1 + std::size_t(seed % 4);
    t4 x({n, c, 1 + std::size_t(seed % 3), 2 + std::size_t(seed % 2)});
    t2 x2({n + 1, c});
    t1 g(c), b(c), rm(c), rv(c);
    lepton_test::fill_uniform(x, -2, 3, seed);
    lepton_test::fill_uniform(x2, -1, 2, seed + 7);
    lepton_test::fill_uniform(g, 0.5, 1.5, seed + 1);
    lepton_test::fill_uniform(b, -1, 1, seed + 2);
    lepton_test::fill_uniform(rm, -0.5, 0.5, seed + 3);
    lepton_test::fill_uniform(rv, 0.5, 2, seed + 4);
    t4 wt(x.shape());
    t2 wt2(x2.shape());
    lepton_test::fill_uniform(wt, -1, 1, seed + 5);
    lepton_test::fill_uniform(wt2, -1, 1, seed + 6);
    double const eps = 1e-5, mom = 0.1;

    // training forward: batch statistics; running statistics blended with the unbiased variance
    std::vector<double> mean, var;
    batch_stats(x, mean, var);
    t1 rm0 = rm, rv0 = rv;
    t4 y = lp::batch_norm(x, g, b,
                          {.running_mean = rm.data(), .running_var = rv.data(), .momentum = mom, .eps = eps});
    require_close(y, ref_bn(x, mean, var, g, b, eps), 1e-10, 1e-10);
    double const m = double(x.size() / c);
    for (std::size_t k = 0; k < c; ++k) {
      REQUIRE(lepton_test::close(rm(k), (1 - mom) * rm0(k) + mom * mean[k], 1e-12, 1e-12));
      REQUIRE(lepton_test::close(rv(k), (1 - mom) * rv0(k) + mom * var[k] * m / (m - 1), 1e-12, 1e-12));
    }
    // evaluation forward: running statistics, which stay unchanged
    std::vector<double> rmv(rm.data(), rm.data() + c), rvv(rv.data(), rv.data() + c);
    t4 ye = lp::batch_norm(
        x, g, b, {.running_mean = rm.data(), .running_var = rv.data(), .eps = eps, .training = false});
    require_close(ye, ref_bn(x, rmv, rvv, g, b, eps), 1e-10, 1e-10);
    REQUIRE(rm(0) == rmv[0]);

    expect_gradcheck(
        "batch_norm train (N,C,H,W)", seed,
        [&] { return lp::sum(lp::batch_norm(x, g, b, {.eps = eps}) * wt); }, x, g, b);
    expect_gradcheck(
        "batch_norm train (N,C)", seed, [&] { return lp::sum(lp::batch_norm(x2, g, b, {.eps = eps}) * wt2); },
        x2, g, b);
    expect_gradcheck(
        "batch_norm eval", seed,
        [&] {
      return lp::sum(
          lp::batch_norm(x, g, b, {.running_mean = rm.data(), .running_var = rv.data(), .training = false}) *
          wt);
        },
        x, g, b);
    // a squared loss makes the gradient reaching batch_norm depend on its output (no cancellation)
    expect_gradcheck(
        "batch_norm train, squared", seed, [&] { return lp::sum(lp::square(lp::batch_norm(x, g, b) + wt)); },
        x, g, b);
  }
}

TEST_CASE("batch_norm: invalid use throws", "[cnn][bn]") {
  t4 x({1, 2, 1, 1});
  t1 g(2), b(2), g3(3);
  REQUIRE_THROWS_AS(lp::eval(lp::batch_norm(x, g, b)), lp::value_error); // one value per channel
  t4 x2({2, 2, 1, 1});
  REQUIRE_THROWS_AS(lp::eval(lp::batch_norm(x2, g, b, {.training = false})), lp::value_error);
  REQUIRE_THROWS_AS(lp::eval(lp::batch_norm(x2, g3, b)), lp::shape_error);
}

TEST_CASE("a small CNN pipeline passes gradcheck end to end", "[cnn]") {
  for (int seed = 0; seed < 4; ++seed) {
    t4 x({2, 2, 8, 8}), w1({3, 2, 3, 3}), w2({4, 3, 3, 3});
    t1 b1(3), g(3), beta(3), b2(4);
    t2 fc({4, 3});
    lp::tensor<int, lp::dyn> y(2);
    y(0) = 1;
    y(1) = 2;
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w1, -0.5, 0.5, seed + 1);
    lepton_test::fill_uniform(w2, -0.5, 0.5, seed + 2);
    lepton_test::fill_uniform(b1, -0.1, 0.1, seed + 3);
    lepton_test::fill_uniform(g, 0.5, 1.5, seed + 4);
    lepton_test::fill_uniform(beta, -0.2, 0.2, seed + 5);
    lepton_test::fill_uniform(b2, -0.1, 0.1, seed + 6);
    lepton_test::fill_uniform(fc, -1, 1, seed + 7);
    auto f = [&] {
      auto h1 = lp::max_pool2d<2>(lp::tanh(lp::batch_norm(lp::conv2d<1, 1>(x, w1, b1), g, beta)));
      auto h2 = lp::global_avg_pool2d(lp::tanh(lp::conv2d<2, 1>(h1, w2, b2)));
      return lp::loss::cross_entropy(lp::matmul(h2, fc), y);
    };
    expect_gradcheck("pipeline", seed, f, x, w1, b1, g, beta, w2, b2, fc);
  }
}
