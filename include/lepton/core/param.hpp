#pragma once
/// @file param.hpp
/// @brief `lepton::param<T, Dims...>`: a trainable tensor that owns its gradient buffer.

#include <cstdint>

#include "tensor.hpp"

namespace lepton {

/// @brief A trainable parameter: a value tensor, its gradient of the same shape, and a frozen flag.
///
/// Used inside expressions it is a leaf whose gradient `lepton::backward` writes into `grad`.
/// A frozen parameter takes part in the forward pass but gets no gradient work at all.
/// Parameters have only static dimensions (their shape is part of the model's type).
/// @tparam T     float or double
/// @tparam Dims  static dimensions, e.g. `param<float, 784, 256>` for a weight (in, out)
///
/// **Example**: `lepton::param<float, 10> bias;  bias.value.fill(0.1f);  bias.frozen = true;`
template <class T, std::size_t... Dims> class param {
public:
  static_assert(std::is_floating_point_v<T>, "lepton: parameters hold float or double");
  static_assert(dims<Dims...>::dynamic_count == 0,
                "lepton: parameter dimensions must be static (no lepton::dyn)");

  using value_type = T;
  using static_dims = dims<Dims...>;
  using tensor_type = tensor<T, Dims...>;
  static constexpr std::size_t rank = sizeof...(Dims);
  static constexpr std::size_t size = static_dims::static_size;

  tensor_type value;   ///< the parameter's values
  tensor_type grad;    ///< d(loss)/d(value) after lepton::backward
  bool frozen = false; ///< when true, no gradient is computed or applied

  /// Gradient bookkeeping for lepton::backward: the pass that last wrote `grad` (0 = none).
  std::uint64_t grad_pass = 0;

  param() = default;
  explicit param(tensor_type v) : value(std::move(v)) {}

  auto shape() const noexcept { return value.shape(); }
  T* data() noexcept { return value.data(); }
  T const* data() const noexcept { return value.data(); }
};

namespace detail {
template <class P> struct is_param : std::false_type {};
template <class T, std::size_t... D> struct is_param<param<T, D...>> : std::true_type {};
} // namespace detail

/// @brief Satisfied by `lepton::param` types.
template <class P>
concept parameter = detail::is_param<std::remove_cvref_t<P>>::value;

} // namespace lepton
