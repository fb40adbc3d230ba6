#pragma once
/// @file constraints.hpp
/// @brief Every compile-time check whose failure a user sees. Each one is a class template whose
///        arguments are the dimensions involved, so that the compiler's note names them, e.g.
///        `note: 'lepton::matmul_inner_dims<784, 783>::value' evaluates to false`, right under the
///        `static assertion failed: lepton: ...` line.

#include <cstddef>
#include <type_traits>

#include "shape.hpp"

namespace lepton {

namespace detail {
constexpr bool dim_compatible(std::size_t a, std::size_t b) { return a == b || a == dyn || b == dyn; }
} // namespace detail

/// @brief True when two static shapes broadcast (right-aligned; equal, 1, or dyn per dimension).
template <class Lhs, class Rhs> struct shapes_broadcast;
template <std::size_t... A, std::size_t... B> struct shapes_broadcast<dims<A...>, dims<B...>> {
  static constexpr bool check() {
    constexpr std::size_t ra = sizeof...(A), rb = sizeof...(B), r = ra > rb ? ra : rb;
    constexpr std::size_t a[ra + 1] = {A..., 0}, b[rb + 1] = {B..., 0};
    for (std::size_t i = 0; i < r; ++i) {
      std::size_t x = i < r - ra ? 1 : a[i - (r - ra)], y = i < r - rb ? 1 : b[i - (r - rb)];
      if (!(x == y || x == 1 || y == 1 || x == dyn || y == dyn)) return false;
    }
    return true;
  }
  static constexpr bool value = check();
};

/// @brief matmul: the columns of the left operand must equal the rows of the right one.
template <std::size_t LhsCols, std::size_t RhsRows> struct matmul_inner_dims {
  static constexpr bool value = detail::dim_compatible(LhsCols, RhsRows);
};

/// @brief An evaluated expression's static shape must fit the destination's.
template <class Destination, class Expression> struct assignable_shapes;
template <std::size_t... D, std::size_t... E> struct assignable_shapes<dims<D...>, dims<E...>> {
  static constexpr bool value = sizeof...(D) == sizeof...(E) && (detail::dim_compatible(D, E) && ...);
};

/// @brief A reshape must keep the number of elements.
template <std::size_t From, std::size_t To> struct reshape_sizes {
  static constexpr bool value = From == dyn || To == dyn || From == To;
};

/// @brief An axis argument must be below the rank.
template <std::size_t Axis, std::size_t Rank> struct axis_in_range {
  static constexpr bool value = Axis < Rank;
};

/// @brief Two operands of one operation must have the same element type.
template <class Lhs, class Rhs> struct same_element_type {
  static constexpr bool value = std::is_same_v<Lhs, Rhs>;
};

/// @brief A layer's input feature size must be what the layer expects.
template <std::size_t Expected, std::size_t Actual> struct layer_input_dims {
  static constexpr bool value = detail::dim_compatible(Expected, Actual);
};

/// @brief An input's static shape must fit the one a model declares (`nn::input<...>`, batch dyn).
template <class Declared, class Actual> struct model_input_shapes;
template <std::size_t... D, std::size_t... A> struct model_input_shapes<dims<D...>, dims<A...>> {
  static constexpr bool check() {
    if constexpr (sizeof...(D) != sizeof...(A))
      return false;
    else
      return (detail::dim_compatible(D, A) && ... && true);
  }
  static constexpr bool value = check();
};

/// Types whose only purpose is to appear, with the numbers involved, in the *first* error line of a
/// misuse (a static_assert's message cannot contain computed numbers before C++26; the compiler's
/// note that names them comes after the generic line). Never defined: naming one with sizeof is the
/// error, e.g. `invalid application of 'sizeof' to incomplete type
/// 'lepton::diagnostic::linear_input_features<lepton::diagnostic::layer_expects<256>,
/// lepton::diagnostic::input_has<255> >'`.
namespace diagnostic {
template <std::size_t N> struct layer_expects;
template <std::size_t N> struct input_has;
template <class Expected, class Actual> struct linear_input_features;
template <class Expected, class Actual> struct conv2d_input_channels;
template <class Expected, class Actual> struct batch_norm_input_channels;
/// A static dimension in a diagnostic: `d<N>`, or `dyn` for a dynamic one (whose value, the largest
/// std::size_t, would print as 18446744073709551615).
struct dyn;
template <std::size_t N> struct d;
template <class... D> struct shape;
template <class Dims> struct shape_of;
template <std::size_t... N> struct shape_of<dims<N...>> {
  using type = shape<std::conditional_t<N == lepton::dyn, diagnostic::dyn, d<N>>...>;
};
template <class Lhs, class Rhs> struct operand_shapes_do_not_broadcast;
template <class Destination, class Expression> struct assignment_shapes_differ;
template <class Declared, class Actual> struct model_input_shape_differs;

/// Names `Diagnostic<shape<...> of Lhs, shape<...> of Rhs>` (an error: it is never defined), with
/// `dyn` spelled out, when `Ok` is false; returns true otherwise. A class-scope
/// `static_assert(diagnostic::shapes<ok, D, A, B>());` right before a check's own static_assert
/// makes the first error line name both shapes.
template <bool Ok, template <class, class> class Diagnostic, class Lhs, class Rhs> constexpr bool shapes() {
  if constexpr (!Ok) (void)sizeof(Diagnostic<typename shape_of<Lhs>::type, typename shape_of<Rhs>::type>);
  return true;
}
} // namespace diagnostic

} // namespace lepton
