#pragma once
/// @file linalg.hpp
/// @brief Matrix multiplication and transposition. matmul is a materialisation boundary computed
///        by the packed GEMM of backend/cpu/gemm.hpp; an elementwise group reading its output
///        (bias + activation) runs as the GEMM's epilogue. Its backward rule is two GEMMs.

#include "elementwise.hpp"

namespace lepton {

namespace detail {
inline shape_t<2> matmul_shape(shape_t<2> const& a, shape_t<2> const& b) {
  if (a[1] != b[0])
    throw shape_error("matmul: shapes " + to_string(a) + " and " + to_string(b) + " do not chain (" +
                      std::to_string(a[1]) + " columns vs " + std::to_string(b[0]) + " rows)");
  return {a[0], b[1]};
}

} // namespace detail

/// @brief `matmul(a, b)`: (m, k) x (k, n) -> (m, n).
template <class A, class B> struct matmul_node : expr_base<matmul_node<A, B>> {
  static_assert(A::rank == 2 && B::rank == 2, "lepton: matmul takes two rank-2 operands (m, k) and (k, n)");
  static_assert(same_element_type<typename A::value_type, typename B::value_type>::value,
                "lepton: matmul operands have different element types; convert one with lepton::cast<T>");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: matmul needs float or double elements");
  static constexpr std::size_t M = A::static_dims::values[0], K1 = A::static_dims::values[1];
  static constexpr std::size_t K2 = B::static_dims::values[0], N = B::static_dims::values[1];
  static_assert(matmul_inner_dims<K1, K2>::value,
                "lepton: matmul inner dimensions differ: lhs (m, k) columns must equal rhs (k, n) rows");
  using value_type = typename A::value_type;
  using static_dims = dims<M, N>;
  static constexpr std::size_t rank = 2;
  A a;
  B b;
  matmul_node(A a_, B b_) : a(std::move(a_)), b(std::move(b_)) {}
  shape_t<2> shape() const { return detail::matmul_shape(a.shape(), b.shape()); }
};

/// @brief `transpose(a)` of a rank-2 operand: (m, n) -> (n, m). Materialised when evaluated.
template <class A> struct transpose_node : expr_base<transpose_node<A>> {
  static_assert(A::rank == 2, "lepton: transpose takes a rank-2 operand");
  using value_type = typename A::value_type;
  using static_dims = dims<A::static_dims::values[1], A::static_dims::values[0]>;
  static constexpr std::size_t rank = 2;
  A a;
  explicit transpose_node(A a_) : a(std::move(a_)) {}
  shape_t<2> shape() const {
    auto s = a.shape();
    return {s[1], s[0]};
  }
};

namespace detail {

template <class A, class B> struct describe<matmul_node<A, B>> {
  static std::string get() { return "matmul(" + describe<A>::get() + ", " + describe<B>::get() + ")"; }
};
template <class A> struct describe<transpose_node<A>> {
  static std::string get() { return "transpose(" + describe<A>::get() + ")"; }
};

} // namespace detail

/// @brief Matrix product of two rank-2 operands, (m, k) x (k, n) -> (m, n).
///
/// A static inner-dimension mismatch is a compile error naming both sizes; a dynamic one throws
/// lepton::shape_error. **Example**: `lepton::tensor<float, lepton::dyn, 10> y = lepton::matmul(x, w);`
template <operand X, operand Y> auto matmul(X&& x, Y&& y) {
  return matmul_node<detail::expr_of<X>, detail::expr_of<Y>>(detail::as_expr(std::forward<X>(x)),
                                                             detail::as_expr(std::forward<Y>(y)));
}

/// @brief Transpose of a rank-2 operand, (m, n) -> (n, m).
template <operand X> auto transpose(X&& x) {
  return transpose_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

} // namespace lepton
