#pragma once
/// @file sequential.hpp
/// @brief `lepton::nn::sequential<L...>`: layers applied in order; parameters named `0.weight`, ...

#include <string>
#include <utility>

#include "../../expr/node.hpp"
#include "../layer.hpp"

namespace lepton::nn {

namespace detail {
// A plain aggregate chain instead of std::tuple: Boost.PFR's field counting of a model holding a
// std::tuple makes GCC 12 crash (an ICE in check_noexcept_r), and an aggregate compiles faster.
template <class... L> struct chain {};
template <class L, class... Rest> struct chain<L, Rest...> {
  L head;
  chain<Rest...> tail;
};
template <std::size_t I, class C> constexpr auto& chain_get(C& c) noexcept {
  if constexpr (I == 0)
    return c.head;
  else
    return chain_get<I - 1>(c.tail);
}
template <class C, class F> void chain_each(C& c, F& f) {
  if constexpr (requires { c.head; }) {
    f(c.head);
    chain_each(c.tail, f);
  }
}
} // namespace detail

/// @brief A chain of layers: `sequential<linear<784, 128>, relu, linear<128, 10>>`.
/// Parameters are named by position like PyTorch's `Sequential` (`0.weight`, `2.bias`).
template <class... L> struct sequential {
  detail::chain<L...> layers;

  template <std::size_t I> auto& get() noexcept { return detail::chain_get<I>(layers); }
  template <std::size_t I> auto const& get() const noexcept { return detail::chain_get<I>(layers); }

  template <operand X> auto operator()(X&& x) const { return apply<0>(std::forward<X>(x)); }

  template <class F> void lepton_for_each_parameter(F&& f) {
    std::size_t i = 0;
    auto each = [&](auto& l) { f(std::to_string(i++), l); };
    detail::chain_each(layers, each);
  }
  template <class F> void lepton_for_each_layer(F&& f) { detail::chain_each(layers, f); }
  static constexpr std::size_t lepton_parameter_count = (std::size_t{0} + ... + parameter_count<L>);

private:
  template <std::size_t I, class X> auto apply(X&& x) const {
    if constexpr (I == sizeof...(L))
      return lepton::detail::as_expr(std::forward<X>(x));
    else
      return apply<I + 1>(get<I>()(std::forward<X>(x)));
  }
};

} // namespace lepton::nn
