// Op-list gradient cases of every op without a functor: reductions, linear algebra, softmax, losses,
// shape ops, dropout, convolution, pooling, batch norm (see op_cases.hpp).
#include "op_cases.hpp"

namespace op_list_test {
template <> struct op_case<ops::stop_gradient> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat x(s), wt(s);
      lepton_test::fill_uniform(x, -2, 2, seed);
      lepton_test::fill_uniform(wt, -1, 1, seed + 1);
      mat y = lp::stop_gradient(x);
      auto [g0] = lp::grad(lp::sum(lp::stop_gradient(x) * wt), x);
      auto [g1] = lp::grad(lp::sum(lp::stop_gradient(x) * x), x); // d/dx = stop_gradient(x) = x
      for (std::size_t i = 0; i < x.size(); ++i) {
        REQUIRE(y.data()[i] == x.data()[i]);
        REQUIRE(g0.data()[i] == 0.0);
        REQUIRE(g1.data()[i] == x.data()[i]);
      }
    }
  }
};

// ---------------------------------------------------------------------------- reductions
/// Inputs for the reduction cases: x (rows, cols), a column weight w (rows, 1), a row weight v (cols).
struct reduce_inputs {
  mat x, w;
  vec v;
  explicit reduce_inputs(int seed)
      : x(case_shape(seed)), w({case_shape(seed)[0], 1}), v(case_shape(seed)[1]) {
    lepton_test::fill_uniform(x, -2, 2, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 7);
    lepton_test::fill_uniform(v, -1, 1, seed + 8);
  }
};
template <> struct op_case<ops::sum> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      reduce_inputs in(seed);
      auto& [x, w, v] = in;
      require_gradcheck(
          "sum", seed, [&] { return lp::sum(lp::tanh(x)); }, x);
      require_gradcheck(
          "sum axis1", seed, [&] { return lp::sum(lp::square(lp::sum(x, lp::axis<1>))); }, x);
      require_gradcheck(
          "sum axis0", seed, [&] { return lp::sum(lp::sum(x, lp::axis<0>) * v); }, x, v);
      require_gradcheck(
          "sum axis1 keepdims", seed, [&] { return lp::sum(lp::sum(x, lp::axis<1>, lp::keepdims) * w); }, x,
          w);
    }
  }
};
template <> struct op_case<ops::mean> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      reduce_inputs in(seed);
      auto& [x, w, v] = in;
      require_gradcheck(
          "mean", seed, [&] { return lp::mean(x * x); }, x);
      require_gradcheck(
          "mean axis1 keepdims", seed, [&] { return lp::sum(lp::mean(x, lp::axis<1>, lp::keepdims) * w); }, x,
          w);
      require_gradcheck(
          "mean axis0", seed, [&] { return lp::sum(lp::mean(x, lp::axis<0>) * v); }, x, v);
    }
  }
};
template <> struct op_case<ops::max> {
  static void run() { // uniform random values: no ties
    for (int seed = 0; seed < n_seeds; ++seed) {
      reduce_inputs in(seed);
      auto& [x, w, v] = in;
      require_gradcheck(
          "max", seed, [&] { return lp::max(x) * 3.0; }, x);
      require_gradcheck(
          "max axis1", seed, [&] { return lp::sum(lp::square(lp::max(x, lp::axis<1>))); }, x);
      require_gradcheck(
          "max axis0", seed, [&] { return lp::sum(lp::max(x, lp::axis<0>) * v); }, x, v);
    }
  }
};
template <> struct op_case<ops::logsumexp> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      reduce_inputs in(seed);
      auto& [x, w, v] = in;
      require_gradcheck(
          "logsumexp", seed, [&] { return lp::logsumexp(x); }, x);
      require_gradcheck(
          "logsumexp axis1", seed, [&] { return lp::sum(lp::square(lp::logsumexp(x, lp::axis<1>))); }, x);
      require_gradcheck(
          "logsumexp axis0 keepdims", seed,
          [&] { return lp::sum(lp::logsumexp(x, lp::axis<0>, lp::keepdims) * v); }, x, v);
    }
  }
};
// argmax returns int64 indices, evaluated at once: a plain tensor, so no gradient can flow through
// it. Forward against a reference loop (first maximum on ties); and a loss that uses argmax(x) as
// its labels has exactly the gradient of the same loss with fixed labels.
template <> struct op_case<ops::argmax> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      reduce_inputs in(seed);
      auto& x = in.x;
      auto s = x.shape();
      if (s[1] > 2) x(0, 2) = x(0, 1); // a tie
      auto a1 = lp::argmax(x, lp::axis<1>);
      auto a0 = lp::argmax(x, lp::axis<0>);
      static_assert(std::is_same_v<decltype(a1), lp::tensor<std::int64_t, lp::dyn>>);
      for (std::size_t i = 0; i < s[0]; ++i) {
        std::size_t best = 0;
        for (std::size_t j = 1; j < s[1]; ++j)
          if (x(i, j) > x(i, best)) best = j;
        REQUIRE(a1(i) == std::int64_t(best));
      }
      for (std::size_t j = 0; j < s[1]; ++j) {
        std::size_t best = 0;
        for (std::size_t i = 1; i < s[0]; ++i)
          if (x(i, j) > x(best, j)) best = i;
        REQUIRE(a0(j) == std::int64_t(best));
      }
      auto [g] = lp::grad(lp::loss::cross_entropy(x, lp::argmax(x, lp::axis<1>), lp::loss::sum), x);
      auto [gfixed] = lp::grad(lp::loss::cross_entropy(x, a1, lp::loss::sum), x);
      for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(g.data()[i] == gfixed.data()[i]);
    }
  }
};

// ---------------------------------------------------------------------------- linalg, nn, losses
/// Inputs for the matmul/softmax/loss cases: x (B, K), w (K, N), w2 (N, 3), b (N), t (B, N) in [0, 1],
/// integer labels (B) in [0, 3), p a target distribution (B, N).
struct dense_inputs {
  std::size_t B, K, N;
  mat x, w, w2, t, p;
  vec b;
  lp::tensor<int, lp::dyn> labels;
  explicit dense_inputs(int seed)
      : B(case_shape(seed)[0]), K(case_shape(seed)[1]), N(1 + std::size_t(seed % 4)), x({B, K}), w({K, N}),
        w2({N, 3}), t({B, N}), p({B, N}), b(N), labels(B) {
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 1);
    lepton_test::fill_uniform(w2, -1, 1, seed + 2);
    lepton_test::fill_uniform(b, -1, 1, seed + 3);
    lepton_test::fill_uniform(t, 0, 1, seed + 4);
    for (std::size_t i = 0; i < B; ++i) labels(i) = int((i + std::size_t(seed)) % 3);
    p = lp::softmax(t);
  }
};
template <> struct op_case<ops::matmul> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "matmul", seed, [&] { return lp::sum(lp::tanh(lp::matmul(d.x, d.w))); }, d.x, d.w);
    }
  }
};
template <> struct op_case<ops::transpose> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "transpose", seed,
          [&] { return lp::sum(lp::matmul(lp::transpose(d.w), lp::transpose(d.x)) * lp::transpose(d.t)); },
          d.x, d.w, d.t);
    }
  }
};
template <> struct op_case<ops::softmax> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "softmax", seed, [&] { return lp::sum(lp::softmax(lp::matmul(d.x, d.w)) * d.t); }, d.x, d.w);
    }
  }
};
template <> struct op_case<ops::log_softmax> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "log_softmax", seed, [&] { return lp::sum(lp::log_softmax(d.x) * d.x); }, d.x);
    }
  }
};
template <> struct op_case<ops::loss_cross_entropy> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "loss::cross_entropy labels", seed,
          [&] { return lp::loss::cross_entropy(lp::matmul(lp::tanh(lp::matmul(d.x, d.w)), d.w2), d.labels); },
          d.x, d.w, d.w2);
      require_gradcheck(
          "loss::cross_entropy soft", seed,
          [&] { return lp::loss::cross_entropy(lp::matmul(d.x, d.w), d.p, lp::loss::sum); }, d.x, d.w, d.p);
    }
  }
};
template <> struct op_case<ops::loss_bce_with_logits> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "loss::bce_with_logits", seed, [&] { return lp::loss::bce_with_logits(lp::matmul(d.x, d.w), d.t); },
          d.x, d.w, d.t);
      require_gradcheck(
          "loss::bce_with_logits sum, broadcast target", seed,
          [&] { return lp::loss::bce_with_logits(lp::matmul(d.x, d.w), lp::sigmoid(d.b), lp::loss::sum); },
          d.w, d.b);
    }
  }
};
template <> struct op_case<ops::loss_mse> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "loss::mse", seed, [&] { return lp::loss::mse(lp::matmul(d.x, d.w) + d.b, d.t); }, d.w, d.b, d.t);
      require_gradcheck(
          "loss::mse sum", seed, [&] { return lp::loss::mse(d.t, d.b, lp::loss::sum); }, d.t, d.b);
    }
  }
};
template <> struct op_case<ops::loss_l1> {
  static void run() { // t + 5 keeps a - b away from the kink at 0
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      require_gradcheck(
          "loss::l1", seed, [&] { return lp::loss::l1(lp::matmul(d.x, d.w) + d.b, d.t + 5.0); }, d.w, d.b);
    }
  }
};
template <> struct op_case<ops::loss_huber> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      dense_inputs d(seed);
      fill_kinkless(d.t, -2, 2, seed + 4, {-1.0, 1.0}); // |t - 0| away from the default delta 1
      mat zero(d.t.shape());
      require_gradcheck(
          "loss::huber", seed, [&] { return lp::loss::huber(d.t, zero); }, d.t);
      require_gradcheck(
          "loss::huber delta 0.3 sum", seed,
          [&] { return lp::loss::huber(lp::matmul(d.x, d.w), d.b, 0.3, lp::loss::sum); }, d.x, d.w, d.b);
    }
  }
};

// ---------------------------------------------------------------------------- shape, random
template <> struct op_case<ops::reshape> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat x(s);
      vec v(x.size());
      lepton_test::fill_uniform(x, -2, 2, seed);
      lepton_test::fill_uniform(v, -1, 1, seed + 1);
      require_gradcheck(
          "reshape", seed, [&] { return lp::sum(lp::reshape<lp::dyn>(lp::tanh(x)) * v); }, x, v);
    }
  }
};
template <> struct op_case<ops::share> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat x(s), w(s), wt(s);
      lepton_test::fill_uniform(x, -2, 2, seed);
      lepton_test::fill_uniform(w, -1, 1, seed + 1);
      lepton_test::fill_uniform(wt, -1, 1, seed + 2);
      // One shared value read three times (and through a second, equal share): all gradients summed.
      require_gradcheck(
          "share", seed,
          [&] {
        auto h = lp::share(lp::tanh(x) * w);
        return lp::sum((h * h + lp::sigmoid(h) + lp::share(lp::tanh(x) * w)) * wt);
          },
          x, w);
    }
  }
};
template <> struct op_case<ops::flatten> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      lp::tensor<double, lp::dyn, 2, 3> x(1 + std::size_t(seed % 3));
      lp::tensor<double, 6> v;
      lepton_test::fill_uniform(x, -2, 2, seed);
      lepton_test::fill_uniform(v, -1, 1, seed + 1);
      static_assert(std::is_same_v<decltype(lp::flatten(x))::static_dims, lp::dims<lp::dyn, 6>>);
      require_gradcheck(
          "flatten", seed, [&] { return lp::sum(lp::square(lp::flatten(x)) * v); }, x, v);
    }
  }
};
template <> struct op_case<ops::dropout> {
  static void run() { // a fixed mask seed: the mask is the same in every call
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat x(s);
      lepton_test::fill_uniform(x, -2, 2, seed);
      require_gradcheck(
          "dropout", seed, [&] { return lp::sum(lp::square(lp::dropout(lp::tanh(x), 0.4, 123 + seed))); }, x);
    }
  }
};

// ---------------------------------------------------------------------------- convolution
template <> struct op_case<ops::conv2d> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      std::size_t const n = 1 + std::size_t(seed % 2), c = 1 + std::size_t(seed % 3),
                        o = 1 + std::size_t(seed % 2);
      t4 x({n, c, 4 + std::size_t(seed % 3), 5}), w({o, c, 3, 2});
      vec b(o);
      lepton_test::fill_uniform(x, -1, 1, seed);
      lepton_test::fill_uniform(w, -1, 1, seed + 1);
      lepton_test::fill_uniform(b, -1, 1, seed + 2);
      require_gradcheck(
          "conv2d<1, 1> + bias", seed, [&] { return lp::sum(lp::square(lp::conv2d<1, 1>(x, w, b))); }, x, w,
          b);
      require_gradcheck(
          "conv2d<2, 0, 1>", seed, [&] { return lp::sum(lp::tanh(lp::conv2d<2, 0, 1>(x, w))); }, x, w);
    }
  }
};
template <> struct op_case<ops::max_pool2d> {
  static void run() { // uniform random values: no ties within a window
    for (int seed = 0; seed < n_seeds; ++seed) {
      t4 x({1 + std::size_t(seed % 2), 2, 4 + std::size_t(seed % 3), 5});
      lepton_test::fill_uniform(x, -1, 1, seed);
      require_gradcheck(
          "max_pool2d<2>", seed, [&] { return lp::sum(lp::square(lp::max_pool2d<2>(x))); }, x);
      require_gradcheck(
          "max_pool2d<3, 2, 1>", seed, [&] { return lp::sum(lp::square(lp::max_pool2d<3, 2, 1>(x))); }, x);
    }
  }
};
template <> struct op_case<ops::avg_pool2d> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      t4 x({1 + std::size_t(seed % 2), 2, 4 + std::size_t(seed % 3), 5});
      lepton_test::fill_uniform(x, -1, 1, seed);
      require_gradcheck(
          "avg_pool2d<2>", seed, [&] { return lp::sum(lp::square(lp::avg_pool2d<2>(x))); }, x);
      require_gradcheck(
          "avg_pool2d<3, 2, 1>", seed, [&] { return lp::sum(lp::square(lp::avg_pool2d<3, 2, 1>(x))); }, x);
    }
  }
};
template <> struct op_case<ops::global_avg_pool2d> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      t4 x({1 + std::size_t(seed % 3), 1 + std::size_t(seed % 4), 1 + std::size_t(seed % 5), 2});
      lepton_test::fill_uniform(x, -1, 1, seed);
      require_gradcheck(
          "global_avg_pool2d", seed, [&] { return lp::sum(lp::square(lp::global_avg_pool2d(x))); }, x);
    }
  }
};
template <> struct op_case<ops::batch_norm> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      std::size_t const n = 2 + std::size_t(seed % 3), c = 1 + std::size_t(seed % 3);
      t4 x({n, c, 2, 1 + std::size_t(seed % 2)}), wt({n, c, 2, 1 + std::size_t(seed % 2)});
      vec g(c), b(c), rm(c), rv(c);
      lepton_test::fill_uniform(x, -2, 3, seed);
      lepton_test::fill_uniform(wt, -1, 1, seed + 1);
      lepton_test::fill_uniform(g, 0.5, 1.5, seed + 2);
      lepton_test::fill_uniform(b, -1, 1, seed + 3);
      lepton_test::fill_uniform(rm, -0.5, 0.5, seed + 4);
      lepton_test::fill_uniform(rv, 0.5, 2, seed + 5);
      require_gradcheck(
          "batch_norm train", seed, [&] { return lp::sum(lp::square(lp::batch_norm(x, g, b) + wt)); }, x, g,
          b);
      require_gradcheck(
          "batch_norm eval", seed,
          [&] {
        return lp::sum(
            lp::batch_norm(x, g, b,
                           {.running_mean = rm.data(), .running_var = rv.data(), .training = false}) *
            wt);
          },
          x, g, b);
    }
  }
};

[[maybe_unused]] int const op_cases_registered = register_op_cases<false>(ops::all{});
} // namespace op_list_test
