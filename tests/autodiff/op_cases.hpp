#pragma once
// The op list drives the gradient tests: one `op_case<Op>` per entry of lepton::ops::all. The cases
// live in two translation units that compile in parallel: test_op_list.cpp (the elementwise ops,
// those with a functor) and test_op_list_nn.cpp (every other op). Each one's register_op_cases walk
// instantiates the cases of its half of the list, so an op added to the list without its case does
// not compile ("implicit instantiation of undefined template op_case<lepton::ops::NAME>").
//
// Differentiable ops pass gradcheck in float64 (eps 1e-6, atol 1e-5, rtol 1e-3) on 20 seeds, with
// broadcast operands where the op broadcasts, inputs kept away from kinks and ties. Ops that pass no
// gradient (comparisons, argmax, stop_gradient) are checked against a float64 reference loop forward
// and for an exactly zero gradient contribution. Composite cases (chains, a leaf used twice, layers)
// stay in test_gradcheck.cpp.
#include <catch2/catch.hpp>
#include <lepton/expr/batch_norm.hpp>
#include <lepton/expr/conv.hpp>
#include <lepton/expr/op_list.hpp>
#include <lepton/expr/pool.hpp>
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

inline lp::shape_t<2> case_shape(int seed) {
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
/// The test's name: the functor's name for elementwise ops (`mul`, not `operator*`, whose `*` a Catch
/// test spec would read as a wildcard), the public name otherwise (`sum`, `loss::mse`).
template <class Op> std::string case_name() {
  if constexpr (ops::has_functor<Op>)
    return std::string("op list: ") + Op::template functor<double>::name;
  else
    return "op list: " + std::string(Op::name);
}
template <class Op> void run_op_case() { op_case<Op>::run(); }

/// Registers one Catch2 test for each op of the list whose `has_functor` equals `Elementwise`.
/// Instantiating run_op_case<Op> for each of them is what makes a missing case a compile error (in
/// the translation unit that owns that half of the list).
template <bool Elementwise, class Op> void register_op_case() {
  if constexpr (ops::has_functor<Op> == Elementwise)
    Catch::AutoReg(Catch::makeTestInvoker(&run_op_case<Op>), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{Catch::StringRef(case_name<Op>()), "[autodiff][op_list]"});
}
template <bool Elementwise, class... Ops> int register_op_cases(ops::type_list<Ops...>) {
  (register_op_case<Elementwise, Ops>(), ...);
  return int(sizeof...(Ops));
}
} // namespace op_list_test
