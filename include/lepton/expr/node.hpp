#pragma once
/// @file node.hpp
/// @brief Leaves of expressions (tensors, views, parameters, constants), operand conversion and
///        compile-time broadcasting of static shapes.
///
/// Every node type N has `value_type`, `static_dims` (a `lepton::dims<...>`), `rank` and `shape()`.
/// Nodes are backend-neutral: they hold their children and their op, nothing about how a backend
/// computes them. Each backend evaluates N with its `detail::evaluator<N, Backend>` (the CPU's are
/// in backend/cpu/; the protocol they implement is eval/protocol.hpp).

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/constraints.hpp"
#include "../core/expr_base.hpp"
#include "../core/param.hpp"
#include "../core/tensor.hpp"
#include "describe.hpp"

namespace lepton {
namespace detail {

// ---------------------------------------------------------------------------- broadcasting

template <class A, class B> struct broadcast_dims;
template <std::size_t... A, std::size_t... B> struct broadcast_dims<dims<A...>, dims<B...>> {
  static constexpr std::size_t ra = sizeof...(A), rb = sizeof...(B), r = ra > rb ? ra : rb;
  static constexpr std::array<std::size_t, ra> a{A...};
  static constexpr std::array<std::size_t, rb> b{B...};
  static constexpr std::size_t at_a(std::size_t i) { return i < r - ra ? 1 : a[i - (r - ra)]; }
  static constexpr std::size_t at_b(std::size_t i) { return i < r - rb ? 1 : b[i - (r - rb)]; }
  static constexpr std::size_t combine(std::size_t x, std::size_t y) {
    if (x == y) return x;
    if (x == 1) return y;
    if (y == 1) return x;
    if (x == dyn) return y;
    if (y == dyn) return x;
    return 0; // mismatch
  }
  static constexpr bool ok() {
    for (std::size_t i = 0; i < r; ++i)
      if (combine(at_a(i), at_b(i)) == 0 && at_a(i) != 0 && at_b(i) != 0) return false;
    return true;
  }
  template <std::size_t... I> static auto make(std::index_sequence<I...>)
      -> dims<combine(at_a(I), at_b(I))...>;
  using type = decltype(make(std::make_index_sequence<r>{}));
};

template <std::size_t R, std::size_t RA, std::size_t RB>
shape_t<R> broadcast_shapes(shape_t<RA> const& a, shape_t<RB> const& b, char const* op) {
  shape_t<R> out{};
  for (std::size_t i = 0; i < R; ++i) {
    std::size_t x = i < R - RA ? 1 : a[i - (R - RA)];
    std::size_t y = i < R - RB ? 1 : b[i - (R - RB)];
    if (x == y || y == 1)
      out[i] = x;
    else if (x == 1)
      out[i] = y;
    else
      throw shape_error(std::string(op) + ": shapes " + to_string(a) + " and " + to_string(b) +
                        " do not broadcast (dimension " + std::to_string(i) + ": " + std::to_string(x) +
                        " vs " + std::to_string(y) + ")");
  }
  return out;
}

} // namespace detail

/// @brief Broadcast of two static shapes (right-aligned; 1 stretches; dyn is checked at run time).
template <class A, class B> using broadcast_t = typename detail::broadcast_dims<A, B>::type;

// ---------------------------------------------------------------------------- leaves

/// @brief Leaf referring to a tensor, tensor_view or parameter's value.
/// @tparam Holder how the leaf holds it: `D const*` (lvalue tensor), `D` (an owned rvalue tensor, a view)
/// @tparam NoGrad true for `lepton::constant(t)`: never receives a gradient
template <class Holder, bool NoGrad = false> struct dense_leaf : expr_base<dense_leaf<Holder, NoGrad>> {
  using dense_type = std::remove_cvref_t<std::remove_pointer_t<Holder>>;
  using value_type = typename dense_type::value_type;
  using static_dims = typename dense_type::static_dims;
  static constexpr std::size_t rank = static_dims::rank;
  static constexpr bool no_grad = NoGrad;

  Holder held;
  explicit dense_leaf(Holder h) : held(std::move(h)) {}

  dense_type const& get() const noexcept {
    if constexpr (std::is_pointer_v<Holder>)
      return *held;
    else
      return held;
  }
  value_type const* data() const noexcept { return get().data(); }
  shape_t<rank> shape() const { return get().shape(); }
};

/// @brief Leaf referring to a trainable parameter (its gradient goes to `param.grad`).
template <class P> struct param_leaf : expr_base<param_leaf<P>> {
  using value_type = typename P::value_type;
  using static_dims = typename P::static_dims;
  static constexpr std::size_t rank = P::rank;
  P const* p;
  explicit param_leaf(P const& x) : p(&x) {}
  shape_t<rank> shape() const { return p->shape(); }
};

/// @brief A scalar constant (broadcast everywhere; no gradient).
template <class T> struct scalar_leaf : expr_base<scalar_leaf<T>> {
  using value_type = T;
  using static_dims = dims<>;
  static constexpr std::size_t rank = 0;
  T value;
  explicit scalar_leaf(T v) : value(v) {}
  shape_t<0> shape() const { return {}; }
};

namespace detail {

template <class X> struct is_tensor_like : std::bool_constant<dense<X>> {};

/// Converts an operand to an expression node. Tensors given as lvalues are referenced (they must
/// outlive the expression); rvalue tensors are moved into the expression; views are copied.
template <class X> auto as_expr(X&& x) {
  using D = std::remove_cvref_t<X>;
  if constexpr (expression<D>)
    return D(std::forward<X>(x));
  else if constexpr (parameter<D>) {
    static_assert(std::is_lvalue_reference_v<X>, "lepton: a parameter in an expression must be an lvalue");
    return param_leaf<D>(x);
  } else if constexpr (dense<D>) {
    if constexpr (std::is_lvalue_reference_v<X> && requires { typename D::view_type; })
      return dense_leaf<D const*>(&x);
    else
      return dense_leaf<D>(std::forward<X>(x));
  } else
    static_assert(sizeof(D) == 0, "lepton: not an expression, tensor or parameter");
}

template <class X> using expr_of = decltype(as_expr(std::declval<X>()));

template <class H, bool N> struct describe<dense_leaf<H, N>> {
  static std::string get() { return N ? "constant" : "tensor"; }
};
template <class P> struct describe<param_leaf<P>> {
  static std::string get() { return "param"; }
};
template <class T> struct describe<scalar_leaf<T>> {
  static std::string get() { return "scalar"; }
};

} // namespace detail

/// @brief Satisfied by anything usable as an operand: expressions, tensors, views, parameters.
template <class X>
concept operand = expression<X> || dense<std::remove_cvref_t<X>> || parameter<X>;

/// @brief The element type of an operand.
template <operand X> using value_type_of = typename detail::expr_of<X>::value_type;

/// @brief Wraps a tensor so that it never receives a gradient (a constant input).
/// **Example**: `auto loss = lepton::sum(lepton::constant(target) * w);`
template <class D>
  requires dense<std::remove_cvref_t<D>>
auto constant(D&& t) {
  using X = std::remove_cvref_t<D>;
  if constexpr (std::is_lvalue_reference_v<D> && requires { typename X::view_type; })
    return dense_leaf<X const*, true>(&t);
  else
    return dense_leaf<X, true>(std::forward<D>(t));
}

} // namespace lepton
