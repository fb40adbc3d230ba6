// DAG semantics (issue P11): a value used in several places is computed once per evaluation, and its
// gradients from every use are summed before one pass through its backward rule. Checked against
// float64 central differences (gradcheck, 20 dag_seeds) and by counting products (eval/dag.hpp's
// dag_stats): a diamond, a tied-weight model, a residual stack, a reused lvalue expression.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

#include <array>
#include <cmath>
#include <cstdint>

namespace lp = lepton;

namespace {
constexpr int dag_seeds = 20;

using dag_mat = lp::tensor<double, lp::dyn, lp::dyn>;

template <class F, class... W> void expect_dag_gradcheck(char const* name, int seed, F&& f, W&... w) {
  auto r = lp::gradcheck(f, w...);
  INFO(name << " seed " << seed << ": " << r.message);
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

/// Products computed and reused, and deferred backward rules run, by `f` on this thread.
struct dag_delta {
  std::uint64_t computed, reused, backward_runs;
};
template <class F> dag_delta count_dag(F&& f) {
  auto const before = lp::detail::dag_stats();
  f();
  auto const after = lp::detail::dag_stats();
  return {after.computed - before.computed, after.reused - before.reused,
          after.backward_runs - before.backward_runs};
}

template <std::size_t W> struct res_block {
  lp::nn::linear<W, W, double> fc;
  auto operator()(auto const& x) const { return lp::relu(fc(x)) + x; }
};

/// N residual blocks relu(fc_k(x)) + x: the res_block's input is read twice, so the k-th res_block's value
/// appears 2^(N-k) times in the expression.
template <std::size_t N, std::size_t W> struct residual_stack {
  std::array<res_block<W>, N> blocks;
  template <std::size_t I = 0, class X> auto apply(X const& x) const {
    if constexpr (I == N)
      return lp::detail::as_expr(x);
    else
      return apply<I + 1>(blocks[I](x));
  }
  auto operator()(auto const& x) const { return apply(x); }
};

/// One layer called twice: its weight receives the sum of both uses' gradients.
struct tied_model {
  lp::nn::linear<6, 6, double> fc;
  auto operator()(auto const& x) const { return fc(lp::tanh(fc(x))); }
};

template <class Model> void init_dag_model(Model& m, std::uint64_t seed) {
  lp::nn::for_each_parameter(
      m, [&](std::string_view, auto& p) { lepton_test::fill_uniform(p.value, -0.6, 0.6, seed++); });
}
} // namespace

TEST_CASE("dag: a diamond h -> (h, relu(h)) matches finite differences, h computed once", "[autodiff][dag]") {
  for (int seed = 0; seed < dag_seeds; ++seed) {
    std::size_t const rows = 1 + std::size_t(seed % 4), inner = 3 + std::size_t(seed % 5);
    dag_mat x({rows, inner}), w({inner, 5}), wt({rows, 5});
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w, -1, 1, seed + 100);
    lepton_test::fill_uniform(wt, -1, 1, seed + 200);
    auto f = [&] {
      auto h = lp::matmul(x, w);
      return lp::sum((h + lp::relu(h) * h) * wt);
    };
    expect_dag_gradcheck("diamond", seed, f, x, w);
  }
  dag_mat x({4, 3}), w({3, 5});
  lepton_test::fill_uniform(x, -1, 1, 1);
  lepton_test::fill_uniform(w, -1, 1, 2);
  auto d = count_dag([&] {
    auto h = lp::matmul(x, w);
    (void)lp::grad(lp::sum(h + lp::relu(h) * h), x, w);
  });
  // Two steps (eval/dag.hpp): the product and the sum.
  CHECK(d.computed == 2);      // one GEMM for the three uses of h, and the sum
  CHECK(d.reused == 2);        // the other two uses of h read it
  CHECK(d.backward_runs == 2); // one backward rule each, h's with the summed gradient
}

TEST_CASE("dag: a tied-weight model matches finite differences", "[autodiff][dag]") {
  for (int seed = 0; seed < dag_seeds; ++seed) {
    tied_model m;
    init_dag_model(m, std::uint64_t(seed) * 7 + 1);
    lp::tensor<double, lp::dyn, 6> x(1 + std::size_t(seed % 3));
    lepton_test::fill_uniform(x, -1, 1, seed + 300);
    dag_mat wt({x.shape()[0], 6});
    lepton_test::fill_uniform(wt, -1, 1, seed + 400);
    auto f = [&] { return lp::sum(m(x) * wt); };
    expect_dag_gradcheck("tied_model", seed, f, m.fc.weight, m.fc.bias, x);
  }
}

TEST_CASE("dag: a residual stack matches finite differences, and each block's product is computed once",
          "[autodiff][dag]") {
  for (int seed = 0; seed < dag_seeds; ++seed) {
    residual_stack<3, 4> m;
    init_dag_model(m, std::uint64_t(seed) * 11 + 3);
    lp::tensor<double, lp::dyn, 4> x(1 + std::size_t(seed % 3));
    lepton_test::fill_uniform(x, -1, 1, seed + 500);
    dag_mat wt({x.shape()[0], 4});
    lepton_test::fill_uniform(wt, -1, 1, seed + 600);
    auto f = [&] { return lp::sum(m(x) * wt); };
    expect_dag_gradcheck("residual", seed, f, m.blocks[0].fc.weight, m.blocks[1].fc.bias,
                         m.blocks[2].fc.weight, x);
  }
  // A training step of 5 blocks: res_block k's product occurs 2^(5-k) times in the tree (31 in all);
  // exactly 5 GEMMs and the sum run forward, and 6 backward rules run. (Occurrences inside a reused
  // product's operands are never visited by forward, so fewer than 26 occurrences count as reused.)
  residual_stack<5, 8> m;
  init_dag_model(m, 9);
  lp::tensor<double, lp::dyn, 8> x(3);
  lepton_test::fill_uniform(x, -1, 1, 10);
  auto d = count_dag([&] { (void)lp::backward(lp::sum(m(x))); });
  CHECK(d.computed == 5 + 1);
  CHECK(d.reused > 0);
  CHECK(d.reused < 31 - 5);
  CHECK(d.backward_runs == 5 + 1);
}

TEST_CASE("dag: a reused lvalue expression (h = relu(fc1(x)), then fc2(h) + h) is evaluated once",
          "[autodiff][dag]") {
  lp::nn::linear<5, 5, double> fc1, fc2;
  init_dag_model(fc1, 1);
  init_dag_model(fc2, 2);
  lp::tensor<double, lp::dyn, 5> x(4);
  lepton_test::fill_uniform(x, -1, 1, 3);
  auto f = [&] {
    auto h = lp::relu(fc1(x));
    auto y = fc2(h) + h;
    return lp::sum(y * y);
  };
  for (int seed = 0; seed < dag_seeds; ++seed) {
    lepton_test::fill_uniform(x, -1, 1, std::uint64_t(seed) + 20);
    expect_dag_gradcheck("reused lvalue", seed, f, fc1.weight, fc1.bias, fc2.weight, x);
  }
  // y * y reads y twice: fc1's product has 4 uses, fc2's 2. A training step computes each once,
  // and the sum.
  auto d = count_dag([&] { (void)lp::backward(f()); });
  CHECK(d.computed == 2 + 1);
  CHECK(d.reused == 3); // (forward visits 5 of the 6 uses: the rest lie inside a reused product)
  CHECK(d.backward_runs == 2 + 1);
  // Inference writes relu(x w1 + b1) over fc1's product in place (no buffer is kept for a
  // backward), so the residual's use computes that product once more: 3 GEMMs for 2 products.
  auto di = count_dag([&] { (void)lp::value(f()); });
  CHECK(di.computed == 3 + 1);

  SECTION("equal-looking products of different tensors are not shared") {
    lp::tensor<double, lp::dyn, 5> x2(4);
    lepton_test::fill_uniform(x2, -1, 1, 99);
    auto g = [&] { return lp::sum(fc1(x) + fc1(x2)); };
    auto d2 = count_dag([&] { (void)lp::value(g()); });
    CHECK(d2.computed == 2 + 1); // two products and the sum
    CHECK(d2.reused == 0);
    double const want = lp::value(lp::sum(fc1(x))) + lp::value(lp::sum(fc1(x2)));
    CHECK(lp::value(g()) == Approx(want).epsilon(1e-12));
  }
  SECTION("stop_gradient of a shared value does not res_block the other use's gradient") {
    lp::param<double, 5, 5> w;
    lepton_test::fill_uniform(w.value, -1, 1, 7);
    auto h = [&] { return lp::sum(lp::matmul(x, w) + lp::stop_gradient(lp::matmul(x, w))); };
    auto [gw] = lp::grad(h(), w);
    auto [gw1] = lp::grad(lp::sum(lp::matmul(x, w)), w);
    for (std::size_t i = 0; i < gw.size(); ++i) CHECK(gw.data()[i] == Approx(gw1.data()[i]).epsilon(1e-12));
  }
}

TEST_CASE("dag: share(e) computes an elementwise value once and sums its gradients once", "[autodiff][dag]") {
  for (int seed = 0; seed < dag_seeds; ++seed) {
    std::size_t const rows = 1 + std::size_t(seed % 4), cols = 2 + std::size_t(seed % 5);
    dag_mat x({rows, cols}), wt({rows, cols});
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(wt, -1, 1, seed + 300);
    // A chain where each step reads the previous shared value twice: 2^8 copies of the first
    // value in the expression tree; shared, each of the 8 values is computed once.
    auto chain = [&] {
      auto h1 = lp::share(lp::tanh(x));
      auto h2 = lp::share(h1 * 0.5 + lp::sigmoid(h1));
      auto h3 = lp::share(h2 * 0.5 + lp::sigmoid(h2));
      auto h4 = lp::share(h3 * 0.5 + lp::sigmoid(h3));
      auto h5 = lp::share(h4 * 0.5 + lp::sigmoid(h4));
      auto h6 = lp::share(h5 * 0.5 + lp::sigmoid(h5));
      auto h7 = lp::share(h6 * 0.5 + lp::sigmoid(h6));
      auto h8 = lp::share(h7 * 0.5 + lp::sigmoid(h7));
      return lp::sum(h8 * wt);
    };
    expect_dag_gradcheck("share chain", seed, chain, x);
    // float64 reference of the forward value, computed independently
    double ref = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      double h = std::tanh(x.data()[i]);
      for (int k = 0; k < 7; ++k) h = h * 0.5 + 1 / (1 + std::exp(-h));
      ref += h * wt.data()[i];
    }
    REQUIRE(lp::value(chain()) == Approx(ref).epsilon(1e-12));
    auto const d = count_dag([&] { (void)lp::grad(chain(), x); });
    CHECK(d.computed == 8 + 1);      // each shared value once, and the sum
    CHECK(d.reused == 7);            // the second read of each of h1..h7
    CHECK(d.backward_runs == 8 + 1); // each step's rule once, with its summed gradient
  }
}

TEST_CASE("dag: share of a softmax, a reduction, a transpose or a convolution is computed once",
          "[autodiff][dag]") {
  for (int seed = 0; seed < dag_seeds; ++seed) {
    std::size_t const rows = 1 + std::size_t(seed % 4), cols = 2 + std::size_t(seed % 5);
    dag_mat x({rows, cols}), wt({rows, cols}), wc({cols, rows});
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(wt, -1, 1, seed + 400);
    lepton_test::fill_uniform(wc, -1, 1, seed + 500);
    // Two copies of each marked value (built twice: equal leaves, so equal identities).
    auto f = [&] {
      auto s1 = lp::share(lp::softmax(x * 2.0));
      auto s2 = lp::share(lp::softmax(x * 2.0));
      auto m1 = lp::share(lp::sum(lp::square(x), lp::axis<1>, lp::keepdims));
      auto m2 = lp::share(lp::sum(lp::square(x), lp::axis<1>, lp::keepdims));
      auto t1 = lp::share(lp::transpose(lp::tanh(x)));
      auto t2 = lp::share(lp::transpose(lp::tanh(x)));
      return lp::sum((s1 * s2 + m1 * x - m2) * wt) + lp::sum(t1 * t2 * wc);
    };
    expect_dag_gradcheck("shared softmax, sum, transpose", seed, f, x);
    // Steps: each share and the softmax, reduction or transpose inside it (the second copy of a
    // pair is one reused share: its operand is never forwarded), and the two outer sums.
    auto const d = count_dag([&] { (void)lp::grad(f(), x); });
    CHECK(d.computed == 3 * 2 + 2);
    CHECK(d.reused == 3);
    CHECK(d.backward_runs == 3 * 2 + 2);
  }
  // conv2d and pooling (NCHW): share(max_pool(conv(x, w))) read twice.
  for (int seed = 0; seed < 5; ++seed) {
    lp::tensor<double, 2, 2, 6, 6> x;
    lp::tensor<double, 3, 2, 3, 3> w;
    lp::tensor<double, 2, 3, 2, 2> wt;
    lepton_test::fill_uniform(x, -1, 1, seed);
    lepton_test::fill_uniform(w, -0.5, 0.5, seed + 1);
    lepton_test::fill_uniform(wt, -1, 1, seed + 2);
    auto f = [&] {
      auto p = lp::share(lp::avg_pool2d<2>(lp::conv2d<1, 0>(x, w)));
      auto q = lp::share(lp::avg_pool2d<2>(lp::conv2d<1, 0>(x, w)));
      return lp::sum(lp::tanh(p) * q * wt);
    };
    expect_dag_gradcheck("shared conv + pool", seed, f, x, w);
    // Steps: the convolution, the pooling, the share (q reuses it) and the sum.
    auto const d = count_dag([&] { (void)lp::grad(f(), x, w); });
    CHECK(d.computed == 4);
    CHECK(d.reused == 1);
    CHECK(d.backward_runs == 4);
  }
}

namespace {
/// D layers tanh(fc_k(h)) without reuse: a plain chain, to measure workspace against depth.
template <std::size_t D, std::size_t W> struct tanh_chain {
  std::array<lp::nn::linear<W, W, double>, D> layers;
  template <std::size_t I = 0, class X> auto apply(X const& x) const {
    if constexpr (I == D)
      return lp::detail::as_expr(x);
    else
      return apply<I + 1>(lp::tanh(layers[I](x)));
  }
  auto operator()(auto const& x) const { return apply(x); }
};

struct workspace {
  std::size_t arena_peak, pool_peak;
};
/// Peak arena bytes above the level at the call, and peak pooled bytes, of one training step.
template <std::size_t D> workspace step_workspace(std::size_t batch) {
  constexpr std::size_t W = 32;
  tanh_chain<D, W> m;
  init_dag_model(m, 5);
  lp::tensor<double, lp::dyn, W> x(batch);
  lepton_test::fill_uniform(x, -1, 1, 6);
  auto& mem = lp::detail::thread_arena();
  auto& pool = lp::detail::thread_buffer_pool();
  (void)lp::backward(lp::sum(m(x))); // warm-up: the arena and the pool reach their sizes
  std::size_t const base = mem.used();
  mem.reset_high_water();
  pool.reset_peak();
  std::size_t const pool_base = pool.in_use();
  (void)lp::backward(lp::sum(m(x)));
  return {mem.high_water() - base, pool.peak() - pool_base};
}
} // namespace

TEST_CASE("dag: backward workspace grows with depth only by the saved values", "[autodiff][dag]") {
  // Per layer, forward saves the product x w (batch x 32) and the tanh group materialised as the
  // next product's operand: 2 buffers of batch x 32 doubles. Backward needs, beyond them, the
  // gradients alive at one time (a step's summed gradient and the one its rule produces) and one
  // rule's temporaries, whatever the depth: dead gradient buffers are reused (eval/dag.hpp,
  // Workspace). Without that, each layer added its summed gradient and its rule's temporaries too.
  std::size_t const batch = 64;
  std::size_t const value = batch * 32 * sizeof(double);
  auto const w4 = step_workspace<4>(batch);
  auto const w16 = step_workspace<16>(batch);
  double const per_layer = double(w16.arena_peak - w4.arena_peak) / 12.0;
  INFO("arena peak 4 layers " << w4.arena_peak << " B, 16 layers " << w16.arena_peak << " B; per layer "
                              << per_layer << " B (one value " << value << " B); pool peaks " << w4.pool_peak
                              << " / " << w16.pool_peak << " B");
  CHECK(per_layer >= 2.0 * value);        // the saved values are kept
  CHECK(per_layer <= 2.0 * value + 2048); // and nothing else grows (identities, entry tables)
  CHECK(w16.pool_peak == w4.pool_peak);   // live gradients do not depend on depth
  CHECK(w4.pool_peak <= 3 * value);       // two gradients of a layer, and the loss's
}
