// The op list drives the gradient tests: one `op_case<Op>` per entry of lepton::ops::all, and the
// walk below instantiates all of them, so an op added to the list without its case does not
// compile ("implicit instantiation of undefined template op_case<lepton::ops::NAME>").
//
// Differentiable ops pass gradcheck in float64 (eps 1e-6, atol 1e-5, rtol 1e-3) on 20 seeds, with
// broadcast operands where the op broadcasts, inputs kept away from kinks and ties. Ops that pass no
// gradient (comparisons, argmax, stop_gradient) are checked against a float64 reference loop forward
// and for an exactly zero gradient contribution. Composite cases (chains, a leaf used twice, layers)
// stay in test_gradcheck.cpp.
#include <catch2/catch.hpp>
#include <lepton/expr/conv.hpp>
#include <lepton/expr/op_list.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

namespace op_list_test {
namespace lp = lepton;
namespace ops = lepton::ops;
using mat = lp::tensor<double, lp::dyn, lp::dyn>;
using vec = lp::tensor<double, lp::dyn>;
using t4 = lp::tensor<double, lp::dyn, lp::dyn, lp::dyn, lp::dyn>;

constexpr int n_seeds = 20;

lp::shape_t<2> case_shape(int seed) {
  static constexpr std::size_t rows[] = {1, 3, 2, 5};
  static constexpr std::size_t cols[] = {1, 5, 17, 3, 8};
  return {rows[seed % 4], cols[seed % 5]};
}

/// Uniform values in [lo, hi], each kept at least `gap` away from every kink.
template <class X> void fill_kinkless(X& t, double lo, double hi, std::uint64_t seed,
                                      std::initializer_list<double> kinks = {}, double gap = 0.05) {
  lepton_test::fill_uniform(t, lo, hi, seed);
  for (std::size_t i = 0; i < t.size(); ++i)
    for (double k : kinks)
      if (std::abs(t.data()[i] - k) < gap) t.data()[i] = k + (t.data()[i] >= k ? gap : -gap);
}

template <class F, class... W> void require_gradcheck(std::string const& what, int seed, F&& f, W&... w) {
  auto r = lp::gradcheck(f, w...);
  INFO(what << ", seed " << seed << ": " << r.message);
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

/// The functor of an elementwise node's top (the op that the case must exercise).
template <class E> using top_functor = std::remove_cvref_t<decltype(std::declval<E>().op)>;

/// gradcheck of sum(make(x) * weights) for a unary elementwise op.
template <class Op, class Make>
void unary_gradcheck(double lo, double hi, std::initializer_list<double> kinks, Make make) {
  for (int seed = 0; seed < n_seeds; ++seed) {
    auto s = case_shape(seed);
    mat x(s), wt(s);
    fill_kinkless(x, lo, hi, seed, kinks);
    lepton_test::fill_uniform(wt, -1, 1, seed + 1000);
    static_assert(std::is_same_v<top_functor<decltype(make(x))>, typename Op::template functor<double>>,
                  "lepton test: an elementwise op's case must build that op's node");
    require_gradcheck(
        std::string(Op::name), seed, [&] { return lp::sum(make(x) * wt); }, x);
  }
}

/// gradcheck of a binary elementwise op on equal shapes, a broadcast row (the last axis) and a
/// broadcast column on either side, operands drawn from [lo_a, hi_a] and [lo_b, hi_b] and kept `apart` from each other.
template <class Op, class Make>
void binary_gradcheck(double lo_a, double hi_a, double lo_b, double hi_b, double apart, Make make) {
  for (int seed = 0; seed < n_seeds; ++seed) {
    auto s = case_shape(seed);
    mat a(s), b(s), wt(s), col({s[0], 1});
    vec row(s[1]);
    lepton_test::fill_uniform(a, lo_a, hi_a, seed);
    lepton_test::fill_uniform(b, lo_b, hi_b, seed + 1);
    lepton_test::fill_uniform(row, lo_b, hi_b, seed + 2);
    lepton_test::fill_uniform(col, lo_a, hi_a, seed + 3);
    lepton_test::fill_uniform(wt, -1, 1, seed + 1000);
    if (apart > 0) // no ties between compared operands: a against b, row and col
      for (std::size_t i = 0; i < s[0]; ++i)
        for (std::size_t j = 0; j < s[1]; ++j) {
          while (std::abs(a(i, j) - row(j)) < apart || std::abs(a(i, j) - col(i, 0)) < apart)
            a(i, j) += apart;
          if (std::abs(a(i, j) - b(i, j)) < apart) b(i, j) = a(i, j) + 2 * apart;
        }
    static_assert(std::is_same_v<top_functor<decltype(make(a, b))>, typename Op::template functor<double>>,
                  "lepton test: an elementwise op's case must build that op's node");
    std::string const name(Op::name);
    require_gradcheck(
        name, seed, [&] { return lp::sum(make(a, b) * wt); }, a, b);
    require_gradcheck(
        name + " (a, row)", seed, [&] { return lp::sum(make(a, row) * wt); }, a, row);
    require_gradcheck(
        name + " (col, a)", seed, [&] { return lp::sum(make(col, a) * wt); }, col, a);
    require_gradcheck(
        name + " (a, col)", seed, [&] { return lp::sum(make(a, col) * wt); }, a, col);
  }
}

/// A comparison: forward 1/0 equal to `ref` (with ties present), and no gradient: the gradient of
/// sum(cmp * w) is exactly 0 and that of sum(cmp * a) is exactly cmp.
template <class Op, class Make, class Ref> void comparison_case(Make make, Ref ref) {
  for (int seed = 0; seed < n_seeds; ++seed) {
    auto s = case_shape(seed);
    mat a(s), b(s), wt(s);
    vec row(s[1]);
    lepton_test::fill_uniform(a, -1, 1, seed);
    lepton_test::fill_uniform(b, -1, 1, seed + 1);
    lepton_test::fill_uniform(row, -1, 1, seed + 2);
    lepton_test::fill_uniform(wt, -1, 1, seed + 3);
    for (std::size_t i = 0; i < a.size(); i += 3) b.data()[i] = a.data()[i]; // ties
    if (s[0] > 1) row(0) = a(1, 0);
    static_assert(std::is_same_v<top_functor<decltype(make(a, b))>, typename Op::template functor<double>>,
                  "lepton test: an elementwise op's case must build that op's node");
    mat y = make(a, b), yr = make(a, row);
    for (std::size_t i = 0; i < s[0]; ++i)
      for (std::size_t j = 0; j < s[1]; ++j) {
        INFO(Op::name << " seed " << seed << " at (" << i << ", " << j << ")");
        REQUIRE(y(i, j) == (ref(a(i, j), b(i, j)) ? 1.0 : 0.0));
        REQUIRE(yr(i, j) == (ref(a(i, j), row(j)) ? 1.0 : 0.0));
      }
    auto [ga, gb] = lp::grad(lp::sum(make(a, b) * wt), a, b);
    auto [ga2, grow] = lp::grad(lp::sum(make(a, row) * a), a, row);
    for (std::size_t i = 0; i < a.size(); ++i) {
      INFO(Op::name << " seed " << seed << " element " << i);
      REQUIRE(ga.data()[i] == 0.0);
      REQUIRE(gb.data()[i] == 0.0);
      REQUIRE(ga2.data()[i] == yr.data()[i]);
    }
    for (std::size_t j = 0; j < row.size(); ++j) REQUIRE(grow(j) == 0.0);
  }
}

template <class Op> struct op_case; // deliberately undefined: every op of ops::all needs a specialisation

// ---------------------------------------------------------------------------- unary elementwise
// Kinks of abs/relu/leaky_relu (0) and of the clamp bounds (-0.5, 0.7) are avoided.
template <> struct op_case<ops::neg> {
  static void run() {
    unary_gradcheck<ops::neg>(-2, 2, {}, [](auto& x) { return -x; });
    unary_gradcheck<ops::neg>(-2, 2, {}, [](auto& x) { return lp::neg(x); });
  }
};
template <> struct op_case<ops::abs> {
  static void run() {
    unary_gradcheck<ops::abs>(-2, 2, {0.0}, [](auto& x) { return lp::abs(x); });
  }
};
template <> struct op_case<ops::exp> {
  static void run() {
    unary_gradcheck<ops::exp>(-2, 2, {}, [](auto& x) { return lp::exp(x); });
  }
};
template <> struct op_case<ops::log> {
  static void run() {
    unary_gradcheck<ops::log>(0.2, 3, {}, [](auto& x) { return lp::log(x); });
  }
};
template <> struct op_case<ops::log1p> {
  static void run() {
    unary_gradcheck<ops::log1p>(-0.7, 3, {}, [](auto& x) { return lp::log1p(x); });
  }
};
template <> struct op_case<ops::sqrt> {
  static void run() {
    unary_gradcheck<ops::sqrt>(0.2, 3, {}, [](auto& x) { return lp::sqrt(x); });
  }
};
template <> struct op_case<ops::rsqrt> {
  static void run() {
    unary_gradcheck<ops::rsqrt>(0.2, 3, {}, [](auto& x) { return lp::rsqrt(x); });
  }
};
template <> struct op_case<ops::square> {
  static void run() {
    unary_gradcheck<ops::square>(-2, 2, {}, [](auto& x) { return lp::square(x); });
  }
};
template <> struct op_case<ops::tanh> {
  static void run() {
    unary_gradcheck<ops::tanh>(-2, 2, {}, [](auto& x) { return lp::tanh(x); });
  }
};
template <> struct op_case<ops::sigmoid> {
  static void run() {
    unary_gradcheck<ops::sigmoid>(-3, 3, {}, [](auto& x) { return lp::sigmoid(x); });
  }
};
template <> struct op_case<ops::relu> {
  static void run() {
    unary_gradcheck<ops::relu>(-2, 2, {0.0}, [](auto& x) { return lp::relu(x); });
  }
};
template <> struct op_case<ops::softplus> {
  static void run() {
    unary_gradcheck<ops::softplus>(-4, 4, {}, [](auto& x) { return lp::softplus(x); });
  }
};
template <> struct op_case<ops::silu> {
  static void run() {
    unary_gradcheck<ops::silu>(-3, 3, {}, [](auto& x) { return lp::silu(x); });
  }
};
template <> struct op_case<ops::gelu> {
  static void run() {
    unary_gradcheck<ops::gelu>(-3, 3, {}, [](auto& x) { return lp::gelu(x); });
  }
};
template <> struct op_case<ops::leaky_relu> {
  static void run() {
    unary_gradcheck<ops::leaky_relu>(-2, 2, {0.0}, [](auto& x) { return lp::leaky_relu(x, 0.1); });
  }
};
template <> struct op_case<ops::clamp> {
  static void run() {
    unary_gradcheck<ops::clamp>(-2, 2, {-0.5, 0.7}, [](auto& x) { return lp::clamp(x, -0.5, 0.7); });
  }
};
// Both regimes of the Huber function; |d| is kept away from delta = 0.3 (the kink of its second derivative
// is harmless, but the first one is continuous only there).
template <> struct op_case<ops::huber> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat a(s), b(s), wt(s);
      vec row(s[1]);
      fill_kinkless(a, -1, 1, seed, {-0.3, 0.3});
      lepton_test::fill_uniform(b, -0.01, 0.01, seed + 1);
      lepton_test::fill_uniform(row, -0.01, 0.01, seed + 2);
      lepton_test::fill_uniform(wt, -1, 1, seed + 3);
      auto e = lp::loss::huber(a, b, 0.3, lp::loss::none);
      static_assert(std::is_same_v<top_functor<decltype(e)>, lp::op::huber<double>>);
      require_gradcheck(
          "op::huber", seed, [&] { return lp::sum(lp::loss::huber(a, b, 0.3, lp::loss::none) * wt); }, a, b);
      require_gradcheck(
          "op::huber (a, row)", seed,
          [&] { return lp::sum(lp::loss::huber(a, row, 0.3, lp::loss::none) * wt); }, a, row);
    }
  }
};

// ---------------------------------------------------------------------------- binary elementwise
template <> struct op_case<ops::add> {
  static void run() {
    binary_gradcheck<ops::add>(-2, 2, -2, 2, 0, [](auto& a, auto& b) { return a + b; });
  }
};
template <> struct op_case<ops::sub> {
  static void run() {
    binary_gradcheck<ops::sub>(-2, 2, -2, 2, 0, [](auto& a, auto& b) { return a - b; });
  }
};
template <> struct op_case<ops::mul> {
  static void run() {
    binary_gradcheck<ops::mul>(-2, 2, -2, 2, 0, [](auto& a, auto& b) { return a * b; });
  }
};
template <> struct op_case<ops::div> {
  static void run() {
    binary_gradcheck<ops::div>(0.3, 2, 0.3, 2, 0, [](auto& a, auto& b) { return a / b; });
  }
};
template <> struct op_case<ops::maximum> {
  static void run() {
    binary_gradcheck<ops::maximum>(0.3, 2, 0.3, 2, 0.05, [](auto& a, auto& b) { return lp::maximum(a, b); });
  }
};
template <> struct op_case<ops::minimum> {
  static void run() {
    binary_gradcheck<ops::minimum>(0.3, 2, 0.3, 2, 0.05, [](auto& a, auto& b) { return lp::minimum(a, b); });
  }
};
template <> struct op_case<ops::pow> {
  static void run() {
    binary_gradcheck<ops::pow>(0.3, 2, 0.3, 2, 0, [](auto& a, auto& b) { return lp::pow(a, b); });
  }
};
template <> struct op_case<ops::bce_logits> {
  static void run() {
    binary_gradcheck<ops::bce_logits>(
        -3, 3, 0, 1, 0, [](auto& a, auto& b) { return lp::loss::bce_with_logits(a, b, lp::loss::none); });
  }
};

// ---------------------------------------------------------------------------- comparisons
template <> struct op_case<ops::equal> {
  static void run() {
    comparison_case<ops::equal>([](auto& a, auto& b) { return a == b; },
                                [](double a, double b) { return a == b; });
  }
};
template <> struct op_case<ops::not_equal> {
  static void run() {
    comparison_case<ops::not_equal>([](auto& a, auto& b) { return a != b; },
                                    [](double a, double b) { return a != b; });
  }
};
template <> struct op_case<ops::less> {
  static void run() {
    comparison_case<ops::less>([](auto& a, auto& b) { return a < b; },
                               [](double a, double b) { return a < b; });
  }
};
template <> struct op_case<ops::less_equal> {
  static void run() {
    comparison_case<ops::less_equal>([](auto& a, auto& b) { return a <= b; },
                                     [](double a, double b) { return a <= b; });
  }
};
template <> struct op_case<ops::greater> {
  static void run() {
    comparison_case<ops::greater>([](auto& a, auto& b) { return a > b; },
                                  [](double a, double b) { return a > b; });
  }
};
template <> struct op_case<ops::greater_equal> {
  static void run() {
    comparison_case<ops::greater_equal>([](auto& a, auto& b) { return a >= b; },
                                        [](double a, double b) { return a >= b; });
  }
};

// ---------------------------------------------------------------------------- where, stop_gradient
template <> struct op_case<ops::where> {
  static void run() {
    for (int seed = 0; seed < n_seeds; ++seed) {
      auto s = case_shape(seed);
      mat a(s), b(s), wt(s), col({s[0], 1});
      vec row(s[1]);
      lepton_test::fill_uniform(a, 0.3, 2, seed);
      lepton_test::fill_uniform(b, 0.3, 2, seed + 1);
      lepton_test::fill_uniform(row, 0.3, 2, seed + 2);
      lepton_test::fill_uniform(col, 0, 1, seed + 3);
      lepton_test::fill_uniform(wt, -1, 1, seed + 4);
      for (std::size_t i = 0; i < a.size(); ++i) // the condition must not flip under perturbation
        if (std::abs(a.data()[i] - b.data()[i]) < 0.05) b.data()[i] += 0.1;
      require_gradcheck(
          "where", seed, [&] { return lp::sum(lp::where(a > b, a * a, b * row) * wt); }, a, b, row);
      // a broadcast condition (a column) choosing between a matrix and a broadcast row
      require_gradcheck(
          "where (col cond)", seed, [&] { return lp::sum(lp::where(col > 0.5, a, row) * wt); }, a, row);
    }
  }
};
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

/// The test's name: the functor's name for elementwise ops (`mul`, not `operator*`, whose `*` a Catch
/// test spec would read as a wildcard), the public name otherwise (`sum`, `loss::mse`).
template <class Op> std::string case_name() {
  if constexpr (ops::has_functor<Op>)
    return std::string("op list: ") + Op::template functor<double>::name;
  else
    return "op list: " + std::string(Op::name);
}
template <class Op> void run_op_case() { op_case<Op>::run(); }

/// Registers one Catch2 test per op of the list. Instantiating run_op_case<Op> for every Op is
/// what makes a missing case a compile error.
template <class... Ops> int register_op_cases(ops::type_list<Ops...>) {
  (Catch::AutoReg(Catch::makeTestInvoker(&run_op_case<Ops>), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                  Catch::NameAndTags{Catch::StringRef(case_name<Ops>()), "[autodiff][op_list]"}),
   ...);
  return int(sizeof...(Ops));
}
[[maybe_unused]] int const op_cases_registered = register_op_cases(ops::all{});
} // namespace op_list_test
