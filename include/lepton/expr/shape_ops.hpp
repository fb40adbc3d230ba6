#pragma once
/// @file shape_ops.hpp
/// @brief reshape and flatten: views of the same row-major data with another shape (no copy when
///        the operand is already materialised).

#include "elementwise.hpp"

namespace lepton {

namespace detail {
template <std::size_t... Dims, std::size_t R> shape_t<sizeof...(Dims)> reshaped(shape_t<R> const& from) {
  constexpr std::array<std::size_t, sizeof...(Dims)> d{Dims...};
  shape_t<sizeof...(Dims)> s{};
  std::size_t known = 1, n = shape_size(from);
  for (std::size_t i = 0; i < d.size(); ++i)
    if (d[i] != dyn) known *= d[i];
  for (std::size_t i = 0; i < d.size(); ++i) s[i] = d[i] != dyn ? d[i] : (known ? n / known : 0);
  if (shape_size(s) != n)
    throw shape_error("reshape: " + to_string(from) + " (" + std::to_string(n) + " elements) cannot become " +
                      to_string(dims<Dims...>{}));
  return s;
}

} // namespace detail

/// @brief `reshape<Dims...>(a)`: same elements, new shape. At most one `dyn`, inferred at run time.
template <class A, std::size_t... Dims> struct reshape_node : expr_base<reshape_node<A, Dims...>> {
  using value_type = typename A::value_type;
  using static_dims = dims<Dims...>;
  static constexpr std::size_t rank = sizeof...(Dims);
  static_assert(static_dims::dynamic_count <= 1, "lepton: reshape takes at most one dyn dimension");
  static_assert(reshape_sizes<A::static_dims::static_size,
                              (static_dims::dynamic_count ? dyn : static_dims::static_size)>::value,
                "lepton: reshape must keep the number of elements");
  A a;
  explicit reshape_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return detail::reshaped<Dims...>(a.shape()); }
};

namespace detail {

template <class A, std::size_t... Dims> struct describe<reshape_node<A, Dims...>> {
  static std::string get() { return "reshape(" + describe<A>::get() + ")"; }
};

template <class D> struct flat_dims;
template <std::size_t D0, std::size_t... Rest> struct flat_dims<dims<D0, Rest...>> {
  static constexpr std::size_t rest = dims<Rest...>::static_size;
};
} // namespace detail

/// @brief Reshapes to static dimensions (one may be `dyn`, e.g. `reshape<lepton::dyn, 784>(x)`).
template <std::size_t... Dims, operand X> auto reshape(X&& x) {
  return reshape_node<detail::expr_of<X>, Dims...>(detail::as_expr(std::forward<X>(x)));
}

/// @brief (d0, d1, ..., dn) -> (d0, d1 * ... * dn): keeps the batch dimension, flattens the rest.
/// **Example**: `auto v = lepton::flatten(images); // (batch, 1, 28, 28) -> (batch, 784)`
template <operand X> auto flatten(X&& x) {
  using E = detail::expr_of<X>;
  static_assert(E::rank >= 1, "lepton: flatten needs an operand of rank >= 1");
  constexpr std::size_t d0 = E::static_dims::values[0];
  constexpr std::size_t rest = detail::flat_dims<typename E::static_dims>::rest;
  static_assert(d0 == dyn ? rest != dyn : true,
                "lepton: flatten needs static trailing dimensions when the first one is dyn");
  return reshape_node<E, d0, rest>(detail::as_expr(std::forward<X>(x)));
}

} // namespace lepton
