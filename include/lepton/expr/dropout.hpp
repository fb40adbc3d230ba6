#pragma once
/// @file dropout.hpp
/// @brief Inverted dropout as a fused elementwise op. The mask is never stored: it is a hash of
///        (seed, element index), recomputed identically by the backward pass, so dropout costs no
///        memory traffic beyond the values themselves and is deterministic for a given seed.

#include <cstdint>

#include "elementwise.hpp"

namespace lepton {

/// @brief Zeroes each element with probability p and scales the others by 1 / (1 - p).
template <class A> struct dropout_node : expr_base<dropout_node<A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  double p;
  std::uint64_t seed;
  dropout_node(A a_, double p_, std::uint64_t s) : a(std::move(a_)), p(p_), seed(s) {}
  shape_t<rank> shape() const { return a.shape(); }
};

namespace detail {

/// Keep/drop decision of element `i` (a counter-based generator: splitmix64 of seed and index).
LEPTON_ALWAYS_INLINE LEPTON_HD bool dropout_keep(std::uint64_t seed, std::uint64_t i,
                                                 std::uint32_t threshold) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<std::uint32_t>(z >> 32) >= threshold;
}

template <class A> struct describe<dropout_node<A>> {
  static std::string get() { return "dropout(" + describe<A>::get() + ")"; }
};
} // namespace detail

/// @brief Inverted dropout with drop probability p in [0, 1] and a mask seed.
/// Usually used through lepton::nn::dropout, which draws a fresh seed for every call in training.
template <operand X> auto dropout(X&& x, double p, std::uint64_t seed) {
  if (!(p >= 0.0 && p <= 1.0)) throw value_error("dropout: p must be in [0, 1], got " + std::to_string(p));
  return dropout_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)), p, seed);
}

} // namespace lepton
