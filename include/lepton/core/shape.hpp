#pragma once
/// @file shape.hpp
/// @brief Static and dynamic dimensions: `lepton::dyn`, `dims<...>`, runtime shapes and their text.

#include <array>
#include <cstddef>
#include <limits>
#include <string>

#include "config.hpp"

namespace lepton {

/// @brief A dimension whose size is known only at run time (typically the batch dimension).
///
/// **Example**: `lepton::tensor<float, lepton::dyn, 784> x(64); // (batch=64, 784)`
inline constexpr std::size_t dyn = std::numeric_limits<std::size_t>::max();

/// @brief A list of dimensions known at compile time; `dyn` marks one known only at run time.
template <std::size_t... Dims> struct dims {
  static constexpr std::size_t rank = sizeof...(Dims);
  static constexpr std::array<std::size_t, rank> values{Dims...};
  /// Number of `dyn` entries.
  static constexpr std::size_t dynamic_count = ((Dims == dyn ? 1 : 0) + ... + 0);
  /// Product of the dimensions, or `dyn` if any is dynamic.
  static constexpr std::size_t static_size = dynamic_count ? dyn : (std::size_t{1} * ... * Dims);
};

/// @brief A runtime shape of rank R.
template <std::size_t R> using shape_t = std::array<std::size_t, R>;

/// @brief The number of elements of a shape (1 for rank 0).
template <std::size_t R> constexpr std::size_t shape_size(shape_t<R> const& s) noexcept {
  std::size_t n = 1;
  for (std::size_t d : s) n *= d;
  return n;
}

/// @brief "(64, 784)" for a runtime shape.
template <std::size_t R> std::string to_string(shape_t<R> const& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < R; ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

/// @brief "(dyn, 784)" for a static shape.
template <std::size_t... Dims> std::string to_string(dims<Dims...>) {
  std::string out = "(";
  std::size_t i = 0;
  ((out += (i++ ? ", " : "") + (Dims == dyn ? std::string("dyn") : std::to_string(Dims))), ...);
  return out + ")";
}

namespace detail {

/// Row-major strides (in elements) of a shape.
template <std::size_t R> constexpr shape_t<R> c_strides(shape_t<R> const& s) noexcept {
  shape_t<R> st{};
  std::size_t acc = 1;
  for (std::size_t i = R; i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

/// True if `s` agrees with the static dimensions (dyn matches anything).
template <std::size_t... Dims> constexpr bool matches(dims<Dims...>, shape_t<sizeof...(Dims)> const& s) {
  constexpr std::array<std::size_t, sizeof...(Dims)> d{Dims...};
  for (std::size_t i = 0; i < sizeof...(Dims); ++i)
    if (d[i] != dyn && d[i] != s[i]) return false;
  return true;
}

} // namespace detail
} // namespace lepton
