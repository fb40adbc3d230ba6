#pragma once
/// @file assign.hpp
/// @brief Evaluation entry points: assigning an expression to a tensor or view, and `value(expr)`.

#include "../core/fpenv.hpp"
#include "../expr/node.hpp"
#include "materialise.hpp"

namespace lepton {
namespace detail {

template <class D, std::size_t R> void check_shape_of(shape_t<R> const& s) {
  if (!matches(typename D::static_dims{}, s))
    throw shape_error("assignment: the expression's shape " + to_string(s) +
                      " does not fit the destination's " + to_string(typename D::static_dims{}));
}

template <class Dst, class E> void assign_expression(Dst& dst, E const& e) {
  using D = std::remove_cvref_t<Dst>;
  static_assert(assignable_shapes<typename D::static_dims, typename E::static_dims>::value,
                "lepton: the expression's static shape does not fit the destination's");
  using T = typename D::value_type;
  static_assert(std::is_same_v<T, typename E::value_type>,
                "lepton: the expression's element type differs from the destination's; use lepton::cast<T>");
  fp_scope fp;
  arena& mem = thread_arena();
  arena_scope scope(mem);
  eval_context ctx(mem);
  evaluator<E> ev(e);
  auto const s = ev.shape();
  check_shape_of<D>(s);
  std::size_t const n = shape_size(s);
  bool same_shape = true;
  if constexpr (requires { dst.resize(s); })
    same_shape = dst.shape() == s;
  else if (dst.shape() != s)
    throw shape_error("assignment to a view: the view has shape " + to_string(dst.shape()) +
                      ", the expression has shape " + to_string(s));
  T* out = dst.data();
  void const* b = out;
  void const* end = out + dst.size();
  if (!same_shape || ev.reads(b, end)) {
    // The destination is read by the expression (or will be reallocated): compute aside first.
    T* tmp = ctx.alloc<T>(n);
    materialise_into(ctx, ev, tmp);
    if constexpr (requires { dst.resize(s); }) dst.resize(s);
    std::copy_n(tmp, n, dst.data());
    return;
  }
  materialise_into(ctx, ev, out);
}

} // namespace detail

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
  using T = typename X::value_type;
  detail::fp_scope fp;
  detail::arena& mem = detail::thread_arena();
  detail::arena_scope scope(mem);
  detail::eval_context ctx(mem);
  ctx.correct = correct;
  X x = detail::as_expr(std::forward<E>(e));
  detail::evaluator<X> ev(x);
  T* out = ctx.alloc<T>(1);
  detail::materialise_into(ctx, ev, out);
  return *out;
}

} // namespace lepton
