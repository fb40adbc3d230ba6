#pragma once
/// @file expr_base.hpp
/// @brief The CRTP base of every expression node and the `lepton::expression` concept.

#include <concepts>
#include <type_traits>

namespace lepton {

/// @brief Base of every expression node type. A node holds its children and computes its static
///        and runtime shape; evaluation lives in backend evaluators (see eval/).
template <class Derived> struct expr_base {
  constexpr Derived const& derived() const noexcept { return static_cast<Derived const&>(*this); }

protected:
  expr_base() = default;
};

/// @brief Satisfied by lepton expression nodes (lazy values whose type is the computation graph).
template <class E>
concept expression = std::derived_from<std::remove_cvref_t<E>, expr_base<std::remove_cvref_t<E>>>;

} // namespace lepton
