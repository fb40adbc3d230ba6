#pragma once
/// @file elementwise.hpp
/// @brief Elementwise operations. Each op is one functor holding its forward rule
///        (`operator()`) and its backward rule (`grad`, or `grad_lhs`/`grad_rhs`) side by side;
///        the same functor runs on scalars, SIMD batches and (later) device code.
///
/// Elementwise nodes never materialise: a chain of them is one fused loop, forward and backward.

#include <cmath>
#include <limits>

#include "../core/config.hpp"
#include "../core/math.hpp"
#include "node.hpp"

namespace lepton {
namespace op {

using detail::splat;
namespace m = detail::m;

// --------------------------------------------------------------------------- unary functors
// grad(x, y, g) returns g * dy/dx given the input x and the output y = f(x).
#define LEPTON_UNARY_OP(NAME, FWD, GRAD)                                                                     \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = true;                                                             \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V x) const { return FWD; }                \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad(V x, V y, V g) const {                          \
      (void)x;                                                                                               \
      (void)y;                                                                                               \
      return GRAD;                                                                                           \
    }                                                                                                        \
  };

LEPTON_UNARY_OP(neg, -x, -g)
LEPTON_UNARY_OP(abs, m::abs(x), m::select(x > splat<V>(0), g, m::select(x < splat<V>(0), -g, splat<V>(0))))
LEPTON_UNARY_OP(exp, m::exp(x), g* y)
LEPTON_UNARY_OP(log, m::log(x), g / x)
LEPTON_UNARY_OP(log1p, m::log1p(x), g / (splat<V>(1) + x))
LEPTON_UNARY_OP(sqrt, m::sqrt(x), g* splat<V>(0.5) / y)
LEPTON_UNARY_OP(rsqrt, splat<V>(1) / m::sqrt(x), g* splat<V>(-0.5) * y * y * y)
LEPTON_UNARY_OP(square, x* x, g* splat<V>(2) * x)
LEPTON_UNARY_OP(tanh, m::tanh(x), g*(splat<V>(1) - y * y))
LEPTON_UNARY_OP(sigmoid, splat<V>(1) / (splat<V>(1) + m::exp(-x)), g* y*(splat<V>(1) - y))
// relu keeps NaN (x < 0 is false for NaN), like PyTorch: max(x, 0) would turn it into 0 and hide a
// corrupted input from the loss.
LEPTON_UNARY_OP(relu, m::select(x < splat<V>(0), splat<V>(0), x), m::select(x > splat<V>(0), g, splat<V>(0)))
// softplus(x) = log(1 + e^x), computed without overflow; its derivative is sigmoid(x).
LEPTON_UNARY_OP(softplus, m::max(x, splat<V>(0)) + m::log1p(m::exp(-m::abs(x))),
                g / (splat<V>(1) + m::exp(-x)))
// silu(x) = x * sigmoid(x)
LEPTON_UNARY_OP(silu, x / (splat<V>(1) + m::exp(-x)),
                g*(splat<V>(1) / (splat<V>(1) + m::exp(-x))) *
                    (splat<V>(1) + x * (splat<V>(1) - splat<V>(1) / (splat<V>(1) + m::exp(-x)))))
// gelu(x) = x * Phi(x) (exact, erf-based, like PyTorch's default)
LEPTON_UNARY_OP(gelu, splat<V>(0.5) * x * (splat<V>(1) + m::erf(x * splat<V>(0.70710678118654752440))),
                g*(splat<V>(0.5) * (splat<V>(1) + m::erf(x * splat<V>(0.70710678118654752440))) +
                   x * splat<V>(0.39894228040143267794) * m::exp(splat<V>(-0.5) * x * x)))
#undef LEPTON_UNARY_OP

/// leaky_relu(x) = x if x > 0 else alpha * x
template <class T> struct leaky_relu {
  static constexpr char const* name = "leaky_relu";
  static constexpr bool differentiable = true;
  T alpha;
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V x) const {
    return m::select(x > splat<V>(0), x, x * splat<V>(alpha));
  }
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad(V x, V, V g) const {
    return m::select(x > splat<V>(0), g, g * splat<V>(alpha));
  }
};

/// clamp(x, lo, hi); the gradient passes where lo <= x <= hi.
template <class T> struct clamp {
  static constexpr char const* name = "clamp";
  static constexpr bool differentiable = true;
  T lo, hi;
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V x) const {
    return m::min(m::max(x, splat<V>(lo)), splat<V>(hi));
  }
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad(V x, V, V g) const {
    return m::select(x >= splat<V>(lo), m::select(x <= splat<V>(hi), g, splat<V>(0)), splat<V>(0));
  }
};

/// Huber (smooth L1) of a difference d: 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta).
template <class T> struct huber {
  static constexpr char const* name = "huber";
  static constexpr bool differentiable = true;
  T delta;
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V d) const {
    V a = m::abs(d);
    return m::select(a <= splat<V>(delta), splat<V>(0.5) * d * d,
                     splat<V>(delta) * (a - splat<V>(0.5 * delta)));
  }
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad(V d, V, V g) const {
    return g * m::min(m::max(d, splat<V>(-delta)), splat<V>(delta));
  }
};

// --------------------------------------------------------------------------- binary functors
#define LEPTON_BINARY_OP(NAME, FWD, GA, GB)                                                                  \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = true;                                                             \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V a, V b) const { return FWD; }           \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad_lhs(V a, V b, V y, V g) const {                 \
      (void)a;                                                                                               \
      (void)b;                                                                                               \
      (void)y;                                                                                               \
      return GA;                                                                                             \
    }                                                                                                        \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad_rhs(V a, V b, V y, V g) const {                 \
      (void)a;                                                                                               \
      (void)b;                                                                                               \
      (void)y;                                                                                               \
      return GB;                                                                                             \
    }                                                                                                        \
  };

LEPTON_BINARY_OP(add, a + b, g, g)
LEPTON_BINARY_OP(sub, a - b, g, -g)
LEPTON_BINARY_OP(mul, a* b, g* b, g* a)
LEPTON_BINARY_OP(div, a / b, g / b, -g* y / b)
// Ties send the whole gradient to the left operand.
LEPTON_BINARY_OP(maximum, m::max(a, b), m::select(a >= b, g, splat<V>(0)), m::select(a >= b, splat<V>(0), g))
LEPTON_BINARY_OP(minimum, m::min(a, b), m::select(a <= b, g, splat<V>(0)), m::select(a <= b, splat<V>(0), g))
LEPTON_BINARY_OP(pow, m::pow(a, b), g* b* m::pow(a, b - splat<V>(1)), g* y* m::log(a))
// Binary cross-entropy of logits a against targets b in [0, 1], in the stable form
// max(a, 0) - a b + log(1 + e^-|a|). d/da = sigmoid(a) - b, d/db = -a.
LEPTON_BINARY_OP(bce_logits, m::max(a, splat<V>(0)) - a * b + m::log1p(m::exp(-m::abs(a))),
                 g*(splat<V>(1) / (splat<V>(1) + m::exp(-a)) - b), -g* a)
#undef LEPTON_BINARY_OP

// Comparisons give 1 or 0 and pass no gradient.
#define LEPTON_COMPARE_OP(NAME, EXPR)                                                                        \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = false;                                                            \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V a, V b) const {                         \
      return m::mask<decltype(EXPR), V>(EXPR);                                                               \
    }                                                                                                        \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad_lhs(V, V, V, V) const { return splat<V>(0); }   \
    template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V grad_rhs(V, V, V, V) const { return splat<V>(0); }   \
  };
LEPTON_COMPARE_OP(equal, a == b)
LEPTON_COMPARE_OP(not_equal, a != b)
LEPTON_COMPARE_OP(less, a < b)
LEPTON_COMPARE_OP(less_equal, a <= b)
LEPTON_COMPARE_OP(greater, a > b)
LEPTON_COMPARE_OP(greater_equal, a >= b)
#undef LEPTON_COMPARE_OP

/// where(c, a, b): a where c != 0, else b. The gradient goes to a where c != 0, to b elsewhere, never
/// to c (the CPU evaluator applies this rule as masks of the incoming gradient).
struct where {
  static constexpr char const* name = "where";
  static constexpr bool differentiable = true;
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V operator()(V c, V a, V b) const {
    return m::select(c != splat<V>(0), a, b);
  }
};

} // namespace op

// ============================================================================ nodes

namespace detail {
/// Static shape, element-type checks and named operand storage of map_node, by arity (1: a;
/// 2: a, b; 3: c, a, b as in where(c, a, b)). Each check is a static_assert on a trait whose
/// arguments are the operands' dimensions, so the compiler's note names them.
template <class... E> struct map_operands {
  static_assert(sizeof...(E) >= 1 && sizeof...(E) <= 3,
                "lepton: an elementwise node takes 1 to 3 operands (the CPU evaluators cover these arities)");
};
template <class A> struct map_operands<A> {
  using static_dims = typename A::static_dims;
  A a;
  template <std::size_t R, class F> shape_t<R> shape_of(F const&) const { return a.shape(); }
};
template <class A, class B> struct map_operands<A, B> {
  static_assert(same_element_type<typename A::value_type, typename B::value_type>::value,
                "lepton: operands have different element types; convert one with lepton::cast<T>");
  static_assert(diagnostic::shapes<shapes_broadcast<typename A::static_dims, typename B::static_dims>::value,
                                   diagnostic::operand_shapes_do_not_broadcast, typename A::static_dims,
                                   typename B::static_dims>()); // the first error line names both shapes
  static_assert(shapes_broadcast<typename A::static_dims, typename B::static_dims>::value,
                "lepton: operand shapes do not broadcast (each dimension must be equal, 1, or dyn)");
  using static_dims = broadcast_t<typename A::static_dims, typename B::static_dims>;
  A a;
  B b;
  template <std::size_t R, class F> shape_t<R> shape_of(F const&) const {
    return broadcast_shapes<R>(a.shape(), b.shape(), F::name);
  }
};
template <class C, class A, class B> struct map_operands<C, A, B> {
  static_assert(same_element_type<typename A::value_type, typename B::value_type>::value &&
                    same_element_type<typename A::value_type, typename C::value_type>::value,
                "lepton: operands have different element types; convert one with lepton::cast<T>");
  static_assert(shapes_broadcast<typename A::static_dims, typename B::static_dims>::value &&
                    shapes_broadcast<typename C::static_dims,
                                     broadcast_t<typename A::static_dims, typename B::static_dims>>::value,
                "lepton: operand shapes do not broadcast (each dimension must be equal, 1, or dyn)");
  using static_dims =
      broadcast_t<typename C::static_dims, broadcast_t<typename A::static_dims, typename B::static_dims>>;
  C c;
  A a;
  B b;
  template <std::size_t R, class F> shape_t<R> shape_of(F const&) const {
    return broadcast_shapes<R>(c.shape(), broadcast_shapes<R>(a.shape(), b.shape(), F::name), F::name);
  }
};
template <class E0, class...> struct first_operand {
  using type = E0;
};
} // namespace detail

/// @brief The elementwise node: functor `F` applied to each element of its broadcast operands `E...`
///        (like xtensor's `xfunction<F, E...>`). `F` holds the forward rule (`operator()`) and the
///        backward rule (`grad` for one operand, `grad_lhs`/`grad_rhs` for two; where's is fixed),
///        so a backend needs one evaluator per arity, not one per op. The operands are the members
///        `a` (one operand), `a, b` (two) or `c, a, b` (three: where).
template <class F, class... E> struct map_node : expr_base<map_node<F, E...>>, detail::map_operands<E...> {
  using operands = detail::map_operands<E...>;
  using value_type = typename detail::first_operand<E...>::type::value_type;
  using static_dims = typename operands::static_dims;
  static constexpr std::size_t rank = static_dims::rank;
  static constexpr std::size_t arity = sizeof...(E);
  F op;
  explicit map_node(F f, E... e) : operands{std::move(e)...}, op(f) {}
  shape_t<rank> shape() const { return this->template shape_of<rank>(op); }
};

/// @brief An elementwise node of one operand: `Op` applied to each element of `A`.
template <class Op, class A> using unary_node = map_node<Op, A>;
/// @brief An elementwise node of two broadcast operands.
template <class Op, class A, class B> using binary_node = map_node<Op, A, B>;
/// @brief `where(c, a, b)`: a where c != 0, else b (all three broadcast).
template <class C, class A, class B> using where_node = map_node<op::where, C, A, B>;

/// @brief Blocks gradients: forward is the identity, backward is zero.
template <class A> struct stop_gradient_node : expr_base<stop_gradient_node<A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  explicit stop_gradient_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return a.shape(); }
};

// ============================================================================ evaluators
namespace detail {

template <class Op, class A> struct describe<unary_node<Op, A>> {
  static std::string get() { return std::string(Op::name) + "(" + describe<A>::get() + ")"; }
};
template <class Op, class A, class B> struct describe<binary_node<Op, A, B>> {
  static std::string get() {
    return std::string(Op::name) + "(" + describe<A>::get() + ", " + describe<B>::get() + ")";
  }
};
template <class C, class A, class B> struct describe<where_node<C, A, B>> {
  static std::string get() {
    return "where(" + describe<C>::get() + ", " + describe<A>::get() + ", " + describe<B>::get() + ")";
  }
};
template <class A> struct describe<stop_gradient_node<A>> {
  static std::string get() { return "stop_gradient(" + describe<A>::get() + ")"; }
};

} // namespace detail

// ============================================================================ user-facing functions

namespace detail {
template <class Op, class X> auto make_unary(X&& x, Op op = {}) {
  using E = expr_of<X>;
  static_assert(std::is_floating_point_v<typename E::value_type>,
                "lepton: elementwise math needs float or double elements; convert with lepton::cast<T>");
  return unary_node<Op, E>(op, as_expr(std::forward<X>(x)));
}
/// Binary op between operands; arithmetic scalars become constants of the other side's type.
template <class Op, class X, class Y> auto make_binary(X&& x, Y&& y, Op op = {}) {
  if constexpr (std::is_arithmetic_v<std::remove_cvref_t<X>>) {
    using T = value_type_of<Y>;
    return binary_node<Op, scalar_leaf<T>, expr_of<Y>>(op, scalar_leaf<T>(static_cast<T>(x)),
                                                       as_expr(std::forward<Y>(y)));
  } else if constexpr (std::is_arithmetic_v<std::remove_cvref_t<Y>>) {
    using T = value_type_of<X>;
    return binary_node<Op, expr_of<X>, scalar_leaf<T>>(op, as_expr(std::forward<X>(x)),
                                                       scalar_leaf<T>(static_cast<T>(y)));
  } else {
    return binary_node<Op, expr_of<X>, expr_of<Y>>(op, as_expr(std::forward<X>(x)),
                                                   as_expr(std::forward<Y>(y)));
  }
}
template <class X, class Y>
concept binary_operands =
    (operand<X> && operand<Y>) || (operand<X> && std::is_arithmetic_v<std::remove_cvref_t<Y>>) ||
    (std::is_arithmetic_v<std::remove_cvref_t<X>> && operand<Y>);
} // namespace detail

#define LEPTON_UNARY_FN(NAME, DOC)                                                                           \
  /** @brief DOC (elementwise; fused). */                                                                    \
  template <operand X> auto NAME(X&& x) { return detail::make_unary<op::NAME>(std::forward<X>(x)); }
LEPTON_UNARY_FN(neg, Negation)
LEPTON_UNARY_FN(abs, Absolute value; gradient 0 at 0)
LEPTON_UNARY_FN(exp, Exponential)
LEPTON_UNARY_FN(log, Natural logarithm)
LEPTON_UNARY_FN(log1p, log(1 + x) accurate near 0)
LEPTON_UNARY_FN(sqrt, Square root)
LEPTON_UNARY_FN(rsqrt, Reciprocal square root 1 / sqrt(x))
LEPTON_UNARY_FN(square, x* x)
LEPTON_UNARY_FN(tanh, Hyperbolic tangent)
LEPTON_UNARY_FN(sigmoid, Logistic function 1 / (1 + e ^ -x))
LEPTON_UNARY_FN(relu, max(x, 0) with NaN kept as NaN; gradient 0 at 0)
LEPTON_UNARY_FN(softplus, log(1 + e ^ x) without overflow)
LEPTON_UNARY_FN(silu, x* sigmoid(x))
LEPTON_UNARY_FN(gelu, Gaussian error linear unit x* Phi(x)(exact erf form))
#undef LEPTON_UNARY_FN

/// @brief leaky_relu(x) = x for x > 0, alpha * x otherwise.
template <operand X> auto leaky_relu(X&& x, double alpha = 0.01) {
  using T = value_type_of<X>;
  return detail::make_unary(std::forward<X>(x), op::leaky_relu<T>{static_cast<T>(alpha)});
}
/// @brief Clamps to [lo, hi]; the gradient flows where lo <= x <= hi.
template <operand X> auto clamp(X&& x, double lo, double hi) {
  if (!(lo <= hi))
    throw value_error("clamp: lo (" + std::to_string(lo) + ") > hi (" + std::to_string(hi) + ")");
  using T = value_type_of<X>;
  return detail::make_unary(std::forward<X>(x), op::clamp<T>{static_cast<T>(lo), static_cast<T>(hi)});
}

/// @brief Elementwise maximum (broadcasting); ties send the gradient to `x`.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto maximum(X&& x, Y&& y) {
  return detail::make_binary<op::maximum>(std::forward<X>(x), std::forward<Y>(y));
}
/// @brief Elementwise minimum (broadcasting); ties send the gradient to `x`.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto minimum(X&& x, Y&& y) {
  return detail::make_binary<op::minimum>(std::forward<X>(x), std::forward<Y>(y));
}
/// @brief x^y elementwise (broadcasting). d/dy uses log(x): keep x > 0 where y needs a gradient.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto pow(X&& x, Y&& y) {
  return detail::make_binary<op::pow>(std::forward<X>(x), std::forward<Y>(y));
}

/// @brief a where c != 0, else b (broadcasting). No gradient flows into c.
/// **Example**: `auto y = lepton::where(x > 0.0f, x, 0.1f * x);`
template <operand C, operand A, operand B> auto where(C&& c, A&& a, B&& b) {
  using Ec = detail::expr_of<C>;
  using Ea = detail::expr_of<A>;
  using Eb = detail::expr_of<B>;
  return where_node<Ec, Ea, Eb>(op::where{}, detail::as_expr(std::forward<C>(c)),
                                detail::as_expr(std::forward<A>(a)), detail::as_expr(std::forward<B>(b)));
}

/// @brief Identity in the forward pass; no gradient flows through (detach).
template <operand X> auto stop_gradient(X&& x) {
  return stop_gradient_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

#define LEPTON_BINARY_OPERATOR(SYM, OPTYPE)                                                                  \
  template <class X, class Y>                                                                                \
    requires detail::binary_operands<X, Y>                                                                   \
  auto operator SYM(X&& x, Y&& y) {                                                                          \
    return detail::make_binary<op::OPTYPE>(std::forward<X>(x), std::forward<Y>(y));                          \
  }
LEPTON_BINARY_OPERATOR(+, add)
LEPTON_BINARY_OPERATOR(-, sub)
LEPTON_BINARY_OPERATOR(*, mul)
LEPTON_BINARY_OPERATOR(/, div)
LEPTON_BINARY_OPERATOR(==, equal)
LEPTON_BINARY_OPERATOR(!=, not_equal)
LEPTON_BINARY_OPERATOR(<, less)
LEPTON_BINARY_OPERATOR(<=, less_equal)
LEPTON_BINARY_OPERATOR(>, greater)
LEPTON_BINARY_OPERATOR(>=, greater_equal)
#undef LEPTON_BINARY_OPERATOR

/// @brief Unary minus.
template <operand X> auto operator-(X&& x) { return neg(std::forward<X>(x)); }

} // namespace lepton
