#pragma once
/// @file pool.hpp
/// @brief Pooling of NCHW tensors: `max_pool2d<K, S, P>`, `avg_pool2d<K, S, P>` (windows) and
///        `global_avg_pool2d` (the mean of each channel plane). The nodes, their compile-time
///        checks and the user functions; the CPU evaluators are in backend/cpu/pool.hpp.
///
/// Pooling is a materialisation boundary: its output is an arena buffer, so an elementwise chain
/// that follows is one fused pass over it.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/shape.hpp"
#include "nchw.hpp"
#include "node.hpp"

namespace lepton {

// Each check is a class template whose arguments are the dimensions involved, so the compiler's
// note under `static assertion failed: lepton: ...` names them (see core/constraints.hpp).

/// @brief Pooling: the padded input extent must hold the window.
template <std::size_t PaddedInput, std::size_t Window> struct pool_window_fits {
  static constexpr bool value = PaddedInput == dyn || PaddedInput >= Window;
};

/// @brief Pooling kinds.
enum class pool_kind { max, avg };

/// @brief `max_pool2d<K, S, P>(x)` / `avg_pool2d<K, S, P>(x)`: (N, C, H, W) -> (N, C, OH, OW) over
///        K x K windows with stride S and padding P (padded cells are ignored by max and count as
///        zeros for avg, like PyTorch's default `count_include_pad`).
template <pool_kind Kind, class A, std::size_t K, std::size_t S, std::size_t P> struct pool2d_node
    : expr_base<pool2d_node<Kind, A, K, S, P>> {
  static_assert(nchw_input_rank<A::rank>::value,
                "lepton: pooling takes an NCHW input (batch, channels, height, width)");
  static_assert(K >= 1 && S >= 1, "lepton: pooling kernel and stride must be at least 1");
  static_assert(2 * P <= K, "lepton: pooling padding must be at most half the kernel size");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: pooling needs float or double elements");
  static constexpr auto ad = A::static_dims::values;
  static_assert(pool_window_fits<detail::padded(ad[2], P), K>::value,
                "lepton: pooling: the window is larger than the (padded) input height");
  static_assert(pool_window_fits<detail::padded(ad[3], P), K>::value,
                "lepton: pooling: the window is larger than the (padded) input width");
  using value_type = typename A::value_type;
  using static_dims =
      dims<ad[0], ad[1], detail::window_out(ad[2], K, S, P, 1), detail::window_out(ad[3], K, S, P, 1)>;
  static constexpr std::size_t rank = 4;
  A a;
  explicit pool2d_node(A a_) : a(std::move(a_)) {}
  shape_t<4> shape() const {
    auto s = a.shape();
    char const* op = Kind == pool_kind::max ? "max_pool2d" : "avg_pool2d";
    return {s[0], s[1], detail::window_out_rt(s[2], K, S, P, 1, op, "height"),
            detail::window_out_rt(s[3], K, S, P, 1, op, "width")};
  }
};

/// @brief `global_avg_pool2d(x)`: (N, C, H, W) -> (N, C), the mean of each channel plane.
template <class A> struct global_avg_pool_node : expr_base<global_avg_pool_node<A>> {
  static_assert(nchw_input_rank<A::rank>::value,
                "lepton: global_avg_pool2d takes an NCHW input (batch, channels, height, width)");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: global_avg_pool2d needs float or double elements");
  using value_type = typename A::value_type;
  using static_dims = dims<A::static_dims::values[0], A::static_dims::values[1]>;
  static constexpr std::size_t rank = 2;
  A a;
  explicit global_avg_pool_node(A a_) : a(std::move(a_)) {}
  shape_t<2> shape() const {
    auto s = a.shape();
    return {s[0], s[1]};
  }
};

namespace detail {

template <pool_kind Kind, class A, std::size_t K, std::size_t S, std::size_t P>
struct describe<pool2d_node<Kind, A, K, S, P>> {
  static std::string get() {
    return std::string(Kind == pool_kind::max ? "max_pool2d(" : "avg_pool2d(") + describe<A>::get() + ")";
  }
};
template <class A> struct describe<global_avg_pool_node<A>> {
  static std::string get() { return "global_avg_pool2d(" + describe<A>::get() + ")"; }
};

} // namespace detail

/// @brief Max pooling over Kernel x Kernel windows (stride defaults to the kernel size).
/// **Example**: `auto p = lepton::max_pool2d<2>(h); // (N, C, 28, 28) -> (N, C, 14, 14)`
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Pad = 0, operand X>
auto max_pool2d(X&& x) {
  return pool2d_node<pool_kind::max, detail::expr_of<X>, Kernel, Stride, Pad>(
      detail::as_expr(std::forward<X>(x)));
}
/// @brief Average pooling over Kernel x Kernel windows (stride defaults to the kernel size).
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Pad = 0, operand X>
auto avg_pool2d(X&& x) {
  return pool2d_node<pool_kind::avg, detail::expr_of<X>, Kernel, Stride, Pad>(
      detail::as_expr(std::forward<X>(x)));
}
/// @brief Mean over each channel plane: (N, C, H, W) -> (N, C).
template <operand X> auto global_avg_pool2d(X&& x) {
  return global_avg_pool_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

} // namespace lepton
