#pragma once
/// @file nn_ops.hpp
/// @brief softmax, log_softmax and the loss functions, each with its fused, numerically stable
///        gradient. All work over the last axis; every value is shifted by the row maximum, so
///        logits of any finite magnitude give finite results.

#include <cstdint>
#include <string>

#include "reduce.hpp"

namespace lepton {

/// @brief softmax (Log = false) or log_softmax (Log = true) over the last axis.
template <bool Log, class A> struct softmax_node : expr_base<softmax_node<Log, A>> {
  static_assert(A::rank >= 1, "lepton: softmax needs an operand of rank >= 1 (it works over the last axis)");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: softmax needs float or double elements");
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  explicit softmax_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return a.shape(); }
};

/// @brief Per-sample softmax cross-entropy of logits (batch, classes) against integer labels
///        (batch) -> (batch), or against target distributions (batch, classes) -> (batch).
template <class A, class L> struct softmax_xent_node : expr_base<softmax_xent_node<A, L>> {
  static_assert(A::rank == 2, "lepton: cross_entropy takes logits of shape (batch, classes)");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: cross_entropy logits must be float or double");
  static constexpr bool hard = std::is_integral_v<typename L::value_type>;
  static_assert(hard ? L::rank == 1 : L::rank == 2,
                "lepton: cross_entropy targets are integer labels (batch) or probabilities (batch, classes)");
  static_assert(hard || std::is_same_v<typename L::value_type, typename A::value_type>,
                "lepton: cross_entropy probabilities must have the logits' element type");
  using value_type = typename A::value_type;
  using static_dims = dims<A::static_dims::values[0]>;
  static constexpr std::size_t rank = 1;
  A a;
  L l;
  softmax_xent_node(A a_, L l_) : a(std::move(a_)), l(std::move(l_)) {}
  shape_t<1> shape() const { return {a.shape()[0]}; }
};

namespace detail {

template <bool Log, class A> struct describe<softmax_node<Log, A>> {
  static std::string get() {
    return std::string(Log ? "log_softmax(" : "softmax(") + describe<A>::get() + ")";
  }
};
template <class A, class L> struct describe<softmax_xent_node<A, L>> {
  static std::string get() { return "cross_entropy(" + describe<A>::get() + ", " + describe<L>::get() + ")"; }
};

} // namespace detail

/// @brief softmax over the last axis: exp(x - max) / sum(exp(x - max)).
template <operand X> auto softmax(X&& x) {
  return softmax_node<false, detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}
/// @brief log_softmax over the last axis: (x - max) - log(sum(exp(x - max))); finite for any finite x.
template <operand X> auto log_softmax(X&& x) {
  return softmax_node<true, detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

/// @brief Loss functions. Each is a function object (so it can be passed to lepton::train::fit)
///        taking (prediction, target[, reduction]); the reduction defaults to the mean.
namespace loss {

/// @brief Reduction tags: `lepton::loss::mean` (default), `lepton::loss::sum`, `lepton::loss::none`.
struct mean_t {};
struct sum_t {};
struct none_t {};
inline constexpr mean_t mean{};
inline constexpr sum_t sum{};
inline constexpr none_t none{};

namespace detail {
template <class E, class R> auto reduce(E&& e, R) {
  if constexpr (std::is_same_v<R, mean_t>)
    return lepton::mean(std::forward<E>(e));
  else if constexpr (std::is_same_v<R, sum_t>)
    return lepton::sum(std::forward<E>(e));
  else
    return std::forward<E>(e);
}
template <class R>
concept reduction = std::is_same_v<R, mean_t> || std::is_same_v<R, sum_t> || std::is_same_v<R, none_t>;
} // namespace detail

/// @brief Softmax cross-entropy of logits (batch, classes) against integer labels (batch) or target
///        probabilities (batch, classes). Stable for any finite logits; fused gradient softmax - target.
/// **Example**: `auto l = lepton::loss::cross_entropy(model(x), labels); float v = lepton::backward(l);`
struct cross_entropy_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& logits, Y&& target, R r = {}) const {
    using Ex = lepton::detail::expr_of<X>;
    using Ey = lepton::detail::expr_of<Y>;
    return detail::reduce(softmax_xent_node<Ex, Ey>(lepton::detail::as_expr(std::forward<X>(logits)),
                                                    lepton::detail::as_expr(std::forward<Y>(target))),
                          r);
  }
};
inline constexpr cross_entropy_fn cross_entropy{};

/// @brief Binary cross-entropy of logits against targets in [0, 1] (sigmoid fused, stable).
struct bce_with_logits_fn {
  template <class X, class Y, detail::reduction R = mean_t>
    requires lepton::detail::binary_operands<X, Y>
  auto operator()(X&& logits, Y&& target, R r = {}) const {
    return detail::reduce(
        lepton::detail::make_binary<op::bce_logits>(std::forward<X>(logits), std::forward<Y>(target)), r);
  }
};
inline constexpr bce_with_logits_fn bce_with_logits{};

/// @brief Mean squared error (a - b)^2.
struct mse_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, R r = {}) const {
    return detail::reduce(lepton::square(std::forward<X>(a) - std::forward<Y>(b)), r);
  }
};
inline constexpr mse_fn mse{};

/// @brief Mean absolute error |a - b| (gradient 0 where a == b).
struct l1_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, R r = {}) const {
    return detail::reduce(lepton::abs(std::forward<X>(a) - std::forward<Y>(b)), r);
  }
};
inline constexpr l1_fn l1{};

/// @brief Huber loss of a - b with threshold delta (quadratic inside, linear outside).
struct huber_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, double delta = 1.0, R r = {}) const {
    if (!(delta > 0)) throw value_error("loss::huber: delta must be > 0, got " + std::to_string(delta));
    using T = value_type_of<X>;
    return detail::reduce(lepton::detail::make_unary(std::forward<X>(a) - std::forward<Y>(b),
                                                     op::huber<T>{static_cast<T>(delta)}),
                          r);
  }
};
inline constexpr huber_fn huber{};

} // namespace loss
} // namespace lepton
