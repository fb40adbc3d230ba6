#pragma once
/// @file evaluate.hpp
/// @brief `lepton::eval(e)` and `lepton::value(e)`: evaluate an expression into a new tensor or a
///        scalar, with the backend of the expression's memory space (core/backend.hpp).

#include <cstddef>

#include "../core/backend.hpp"
#include "node.hpp"

namespace lepton {

/// @brief Evaluates an expression into a new tensor with the expression's static shape.
/// **Example**: `auto h = lepton::eval(lepton::relu(lepton::matmul(x, w) + b));`
template <operand E> auto eval(E&& e) {
  using X = detail::expr_of<E>;
  using result = typename detail::tensor_of<typename X::value_type, typename X::static_dims>::type;
  return result(detail::as_expr(std::forward<E>(e)));
}

/// @brief The value of a rank-0 expression (a reduction to a scalar). If `correct` is given,
///        cross_entropy with integer labels adds its number of correct predictions to it.
/// **Example**: `double total = lepton::value(lepton::sum(x * x));`
template <operand E> auto value(E&& e, std::size_t* correct = nullptr) {
  using X = detail::expr_of<E>;
  static_assert(X::rank == 0,
                "lepton: value() needs a rank-0 (scalar) expression; reduce it with sum or mean");
  X x = detail::as_expr(std::forward<E>(e));
  return detail::runner<backend_for_t<memory_space_of_t<X>>, X>::value(x, correct);
}

} // namespace lepton
