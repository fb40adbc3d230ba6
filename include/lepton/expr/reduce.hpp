#pragma once
/// @file reduce.hpp
/// @brief Reductions: sum, mean, max, logsumexp (over everything or one axis), argmax.
///
/// A reduction is a materialisation boundary for its output, but its input is read fused: the
/// elementwise chain below it is computed on the fly, never stored.

#include <cstdint>

#include "elementwise.hpp"
#include "evaluate.hpp"

namespace lepton {

/// @brief Selects one axis of a reduction at compile time: `lepton::sum(x, lepton::axis<1>)`.
template <std::size_t I> struct axis_t {
  static constexpr std::size_t value = I;
};
template <std::size_t I> inline constexpr axis_t<I> axis{};
/// @brief Keeps the reduced axis with size 1 (so the result broadcasts against the input).
struct keepdims_t {};
inline constexpr keepdims_t keepdims{};

namespace reduce_kind {
struct sum {
  static constexpr char const* name = "sum";
};
struct mean {
  static constexpr char const* name = "mean";
};
struct max {
  static constexpr char const* name = "max";
};
struct logsumexp {
  static constexpr char const* name = "logsumexp";
};
} // namespace reduce_kind

namespace detail {
inline constexpr std::size_t all_axes = static_cast<std::size_t>(-1);

template <class D, std::size_t Axis, bool Keep> struct reduced_dims;
template <std::size_t... D, std::size_t Axis, bool Keep> struct reduced_dims<dims<D...>, Axis, Keep> {
  static constexpr std::size_t r = sizeof...(D);
  static constexpr std::array<std::size_t, r + 1> in{D..., 0};
  static constexpr std::size_t out_rank = Axis == all_axes ? (Keep ? r : 0) : (Keep ? r : r - 1);
  static constexpr std::size_t at(std::size_t i) {
    if (Axis == all_axes) return 1;
    if (Keep) return i == Axis ? 1 : in[i];
    return in[i < Axis ? i : i + 1];
  }
  template <std::size_t... I> static auto make(std::index_sequence<I...>) -> dims<at(I)...>;
  using type = decltype(make(std::make_index_sequence<out_rank>{}));
};
template <std::size_t RO, std::size_t Axis, bool Keep, std::size_t R>
shape_t<RO> reduced_shape(shape_t<R> const& s) {
  shape_t<RO> o{};
  for (std::size_t i = 0; i < RO; ++i) {
    if constexpr (Axis == all_axes)
      o[i] = 1;
    else if constexpr (Keep)
      o[i] = i == Axis ? 1 : s[i];
    else
      o[i] = s[i < Axis ? i : i + 1];
  }
  return o;
}

} // namespace detail

/// @brief A reduction node. `Axis` is an axis index or detail::all_axes; `Keep` keeps it as size 1.
template <class Kind, std::size_t Axis, bool Keep, class A> struct reduce_node
    : expr_base<reduce_node<Kind, Axis, Keep, A>> {
  static_assert(Axis == detail::all_axes || axis_in_range<Axis, A::rank>::value,
                "lepton: reduction axis is out of range for the operand's rank");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: reductions need float or double elements");
  using value_type = typename A::value_type;
  using static_dims = typename detail::reduced_dims<typename A::static_dims, Axis, Keep>::type;
  static constexpr std::size_t rank = static_dims::rank;
  A a;
  explicit reduce_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return detail::reduced_shape<rank, Axis, Keep>(a.shape()); }
};

namespace detail {

template <class O> constexpr std::size_t axis_of() {
  if constexpr (requires { O::value; })
    return O::value;
  else
    return all_axes;
}

template <class Kind, std::size_t Axis, bool Keep, class A>
struct describe<reduce_node<Kind, Axis, Keep, A>> {
  static std::string get() {
    return std::string(Kind::name) + "(" + describe<A>::get() +
           (Axis == all_axes ? "" : ", axis " + std::to_string(Axis)) + ")";
  }
};

template <class Kind, class X, class... Opt> auto make_reduce(X&& x, Opt...) {
  using E = expr_of<X>;
  constexpr bool keep = (std::is_same_v<Opt, keepdims_t> || ...);
  constexpr std::size_t ax = std::min({all_axes, axis_of<Opt>()...});
  return reduce_node<Kind, ax, keep, E>(as_expr(std::forward<X>(x)));
}

template <class O>
concept reduce_option = std::is_same_v<O, keepdims_t> || requires { O::value; };

} // namespace detail

/// @brief Sum of all elements (rank-0 result), or over one axis: `sum(x, axis<1>)`, `sum(x, axis<1>, keepdims)`.
/// **Example**: `float total = lepton::value(lepton::sum(x));`
template <operand X, detail::reduce_option... Opt> auto sum(X&& x, Opt... o) {
  return detail::make_reduce<reduce_kind::sum>(std::forward<X>(x), o...);
}
/// @brief Mean of all elements or over one axis (same options as sum). The mean of nothing is NaN.
template <operand X, detail::reduce_option... Opt> auto mean(X&& x, Opt... o) {
  return detail::make_reduce<reduce_kind::mean>(std::forward<X>(x), o...);
}
/// @brief Maximum of all elements or over one axis. Ties share the gradient (each tied element gets it).
template <operand X, detail::reduce_option... Opt> auto max(X&& x, Opt... o) {
  return detail::make_reduce<reduce_kind::max>(std::forward<X>(x), o...);
}
/// @brief log(sum(exp(x))) computed stably (shifted by the maximum), over all or one axis.
template <operand X, detail::reduce_option... Opt> auto logsumexp(X&& x, Opt... o) {
  return detail::make_reduce<reduce_kind::logsumexp>(std::forward<X>(x), o...);
}

/// @brief Index of the maximum along axis I (the first one on ties); not differentiable, evaluated now.
/// **Example**: `auto pred = lepton::argmax(logits, lepton::axis<1>); // (batch) int64 class ids`
template <operand X, std::size_t I> auto argmax(X&& x, axis_t<I>) {
  using E = detail::expr_of<X>;
  using T = typename E::value_type;
  constexpr std::size_t R = E::rank;
  static_assert(axis_in_range<I, R>::value, "lepton: argmax axis is out of range for the operand's rank");
  using out_dims = typename detail::reduced_dims<typename E::static_dims, I, false>::type;
  using result_t = typename detail::tensor_of<std::int64_t, out_dims>::type;
  auto const v = lepton::eval(std::forward<X>(x)); // with the backend of x's memory space
  auto const s = v.shape();
  result_t out(detail::reduced_shape<out_dims::rank, I, false>(s));
  std::size_t outer = 1, inner = 1, len = s[I];
  for (std::size_t d = 0; d < I; ++d) outer *= s[d];
  for (std::size_t d = I + 1; d < R; ++d) inner *= s[d];
  if (len == 0 && outer * inner > 0)
    throw shape_error("argmax: the reduced axis has size 0 in shape " + to_string(s));
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < inner; ++j) {
      T const* p = v.data() + o * len * inner + j;
      std::size_t best = 0;
      for (std::size_t k = 1; k < len; ++k)
        if (p[k * inner] > p[best * inner]) best = k;
      out.data()[o * inner + j] = static_cast<std::int64_t>(best);
    }
  return out;
}

} // namespace lepton
