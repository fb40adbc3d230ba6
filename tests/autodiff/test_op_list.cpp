// Op-list gradient cases of the elementwise ops (see op_cases.hpp).
#include "op_cases.hpp"

namespace op_list_test {

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

[[maybe_unused]] int const op_cases_registered = register_op_cases<true>(ops::all{});
} // namespace op_list_test
