#pragma once
/// @file batch_norm.hpp
/// @brief `batch_norm(x, gamma, beta, opts)`: per-channel batch normalisation of (N, C) or
///        (N, C, H, W) tensors. The node, its options and compile-time check and the user
///        function; the CPU evaluator is in backend/cpu/batch_norm.hpp.
///
/// batch_norm is a materialisation boundary: its output is an arena buffer, so an elementwise
/// chain that follows is one fused pass over it.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/constraints.hpp"
#include "../core/shape.hpp"
#include "node.hpp"

namespace lepton {

// The check is a class template whose arguments are the dimensions involved, so the compiler's
// note under `static assertion failed: lepton: ...` names them (see core/constraints.hpp).

/// @brief batch_norm<C>: the input's channel dimension (dimension 1) must be C.
template <std::size_t Expected, std::size_t Actual> struct batch_norm_channels {
  static constexpr bool value = Expected == dyn || Actual == dyn || Expected == Actual;
};

/// @brief Options of lepton::batch_norm.
///
/// **Example**: `lepton::batch_norm(x, gamma, beta, {.running_mean = rm.data(), .running_var = rv.data()});`
template <class T> struct batch_norm_options {
  T* running_mean = nullptr; ///< (C) updated in training mode, read in evaluation mode
  T* running_var = nullptr;  ///< (C) unbiased batch variance is blended in, like PyTorch
  double momentum = 0.1;     ///< running = (1 - momentum) running + momentum batch
  double eps = 1e-5;         ///< added to the variance
  bool training = true;      ///< batch statistics (true) or the running statistics (false)
};

/// @brief `batch_norm(x, gamma, beta, opts)`: per-channel normalisation of x (N, C, ...) (channel =
///        dimension 1): `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
template <class A, class G, class B> struct batch_norm_node : expr_base<batch_norm_node<A, G, B>> {
  static_assert(A::rank >= 2, "lepton: batch_norm takes an input (batch, channels, ...) of rank >= 2");
  static_assert(G::rank == 1 && B::rank == 1, "lepton: batch_norm's gamma and beta have shape (channels)");
  static_assert(same_element_type<typename A::value_type, typename G::value_type>::value &&
                    same_element_type<typename A::value_type, typename B::value_type>::value,
                "lepton: batch_norm operands have different element types; convert with lepton::cast<T>");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: batch_norm needs float or double elements");
  static_assert(batch_norm_channels<G::static_dims::values[0], A::static_dims::values[1]>::value,
                "lepton: batch_norm: the input's channel dimension differs from gamma's size");
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  G g;
  B b;
  batch_norm_options<value_type> opt;
  batch_norm_node(A a_, G g_, B b_, batch_norm_options<value_type> o)
      : a(std::move(a_)), g(std::move(g_)), b(std::move(b_)), opt(o) {}
  shape_t<rank> shape() const { return a.shape(); }
};

namespace detail {

template <class A, class G, class B> struct describe<batch_norm_node<A, G, B>> {
  static std::string get() {
    return "batch_norm(" + describe<A>::get() + ", " + describe<G>::get() + ", " + describe<B>::get() + ")";
  }
};

} // namespace detail

/// @brief Batch normalisation over dimension 1 of x (N, C) or (N, C, H, W).
///
/// Training mode normalises with the batch mean and (biased) variance and, when running statistics
/// are given, blends the batch mean and unbiased variance into them with `momentum`; evaluation mode
/// normalises with the running statistics. Usually used through lepton::nn::batch_norm.
/// **Example**: `auto y = lepton::batch_norm(x, gamma, beta, {.training = true}); // no running stats`
template <operand X, operand G, operand B>
auto batch_norm(X&& x, G&& gamma, B&& beta, batch_norm_options<value_type_of<X>> const& opt = {}) {
  return batch_norm_node<detail::expr_of<X>, detail::expr_of<G>, detail::expr_of<B>>(
      detail::as_expr(std::forward<X>(x)), detail::as_expr(std::forward<G>(gamma)),
      detail::as_expr(std::forward<B>(beta)), opt);
}

} // namespace lepton
