#pragma once
/// @file share.hpp
/// @brief `lepton::share(e)`: marks a subexpression whose value is computed once per evaluation and
///        read by every use, like a matmul's product (the DAG rule of docs/guide.md §2).
///
/// Elementwise subexpressions are normally fused into each loop that reads them and recomputed
/// there, which is the fastest choice for a value read once or twice. A value that feeds many
/// others, or a chain that feeds itself step after step (the residual stream of a deep residual
/// stack, an LSTM's cell state through time), is cheaper materialised once: `share(e)` writes e
/// into a buffer the first time it is needed, every copy of the same `share(e)` (equal leaves,
/// constants and parameters) reads that buffer, and in a backward pass the gradients of all its
/// uses are summed before e's backward rule runs once. Omitting `share` never changes a result,
/// only the amount of work.

#include <string>

#include "describe.hpp"
#include "node.hpp"

namespace lepton {

/// @brief The node of lepton::share: the value of `A`, materialised once per evaluation.
template <class A> struct share_node : expr_base<share_node<A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  explicit share_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return a.shape(); }
};

namespace detail {
template <class A> struct describe<share_node<A>> {
  static std::string get() { return "share(" + describe<A>::get() + ")"; }
};
} // namespace detail

/// @brief The value of `x`, computed once per evaluation however often the expression reads it;
///        its gradient is summed over all uses before flowing into x. Forward and backward are the
///        identity. Use it for an elementwise value read many times (see the file comment).
/// **Example**: `auto h = lepton::share(lepton::relu(fc1(x)) + x); auto y = fc2(h) + h;`
template <operand X> auto share(X&& x) {
  return share_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

} // namespace lepton
