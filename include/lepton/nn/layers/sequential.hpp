#pragma once
/// @file sequential.hpp
/// @brief `lepton::nn::sequential<L...>`: layers applied in order; parameters named `0.weight`, ...

#include <string>
#include <tuple>
#include <utility>

#include "../layer.hpp"

namespace lepton::nn {

/// @brief A chain of layers: `sequential<linear<784, 128>, relu, linear<128, 10>>`.
/// Parameters are named by position like PyTorch's `Sequential` (`0.weight`, `2.bias`).
template <class... L> struct sequential {
  std::tuple<L...> layers;

  template <std::size_t I> auto& get() noexcept { return std::get<I>(layers); }
  template <std::size_t I> auto const& get() const noexcept { return std::get<I>(layers); }

  template <operand X> auto operator()(X&& x) const { return apply<0>(std::forward<X>(x)); }

  template <class F> void lepton_for_each_parameter(F&& f) {
    std::size_t i = 0;
    std::apply([&](auto&... l) { ((f(std::to_string(i++), l)), ...); }, layers);
  }
  template <class F> void lepton_for_each_layer(F&& f) {
    std::apply([&](auto&... l) { (f(l), ...); }, layers);
  }
  static constexpr std::size_t lepton_parameter_count = (std::size_t{0} + ... + parameter_count<L>);

private:
  template <std::size_t I, class X> auto apply(X&& x) const {
    if constexpr (I == sizeof...(L)) return lepton::detail::as_expr(std::forward<X>(x));
    else return apply<I + 1>(std::get<I>(layers)(std::forward<X>(x)));
  }
};

} // namespace lepton::nn
