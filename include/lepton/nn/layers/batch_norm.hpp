#pragma once
/// @file batch_norm.hpp
/// @brief `lepton::nn::batch_norm<C>`: batch normalisation over the channels of (batch, C) or
///        (batch, C, H, W) inputs, with running statistics for evaluation.

#include <array>

#include "../../backend/cpu/batch_norm.hpp"
#include "../layer.hpp"
#include "infer.hpp"

namespace lepton::nn {

/// @brief Batch normalisation layer (PyTorch's `BatchNorm1d`/`BatchNorm2d`).
///
/// In training mode (the default; see lepton::nn::set_training) it normalises each channel with
/// the batch's mean and variance and blends them into `running_mean`/`running_var` (unbiased
/// variance, weight `momentum`) every time the expression is evaluated; in evaluation mode it uses
/// the running statistics. `weight` (gamma) starts at 1 and `bias` (beta) at 0.
///
/// `lepton::nn::init` leaves batch_norm layers in this initial state (gamma = 1, beta = 0, fresh
/// running statistics), whatever the scheme; lepton::nn::reset_batch_norm(model) restores it later.
/// The running statistics are plain tensors, not parameters: optimizers do not see them.
/// @tparam C  channels (dimension 1 of the input)   @tparam T  float or double
/// `batch_norm<>` (= `batch_norm<infer>`) is a spec: C is inferred from the input inside
/// `sequential<input<...>, ...>` (like PyTorch's `LazyBatchNorm2d`).
/// **Example**: `lepton::nn::batch_norm<32> bn;  auto h = lepton::relu(bn(conv(x)));`
template <std::size_t C = infer, class T = float> struct batch_norm {
  param<T, C> weight{tensor<T, C>(shape_t<1>{C}, T(1))}; ///< gamma (C)
  param<T, C> bias{};                                    ///< beta (C)
  mutable tensor<T, C> running_mean{};                   ///< (C) updated in training mode
  mutable tensor<T, C> running_var{shape_t<1>{C}, T(1)}; ///< (C) updated in training mode
  double momentum = 0.1;
  double eps = 1e-5;
  bool training = true;
  static constexpr std::array<char const*, 7> lepton_names{"weight",   "bias", "running_mean", "running_var",
                                                           "momentum", "eps",  "training"};
  static constexpr char const* lepton_kind = "batch_norm"; ///< its name in nn::summary

  template <operand X> auto operator()(X&& x) const {
    using E = lepton::detail::expr_of<X>;
    static_assert(E::rank >= 2, "lepton: batch_norm<C> takes an input (batch, C) or (batch, C, H, W)");
    constexpr std::size_t channels = [] {
      if constexpr (E::rank >= 2)
        return E::static_dims::values[1];
      else
        return C; // the rank error above is the one to read
    }();
    if constexpr (!batch_norm_channels<C, channels>::value) // the first error line names both numbers
      (void)sizeof(diagnostic::batch_norm_input_channels<diagnostic::layer_expects<C>,
                                                         diagnostic::input_has<channels>>);
    static_assert(batch_norm_channels<C, channels>::value,
                  "lepton: batch_norm<C>: the input's channel dimension is not C");
    if constexpr (E::rank >= 2 && batch_norm_channels<C, channels>::value) // one error, not two
      return lepton::batch_norm(std::forward<X>(x), weight, bias,
                                {.running_mean = running_mean.data(),
                                 .running_var = running_var.data(),
                                 .momentum = momentum,
                                 .eps = eps,
                                 .training = training});
  }

  /// gamma = 1, beta = 0, running mean 0 and variance 1.
  void lepton_reset_parameters() {
    weight.value.fill(T(1));
    bias.value.fill(T(0));
    running_mean.fill(T(0));
    running_var.fill(T(1));
  }
};

/// @brief The spec `batch_norm<>` (`batch_norm<infer, T>`): a batch normalisation whose channel count
///        is inferred; it holds no parameters until a sequential that starts with `nn::input<...>`
///        resolves it to `batch_norm<C, T>`, C being its input's dimension 1.
/// **Example**: `lepton::nn::sequential<lepton::nn::input<3, 32, 32>, lepton::nn::conv2d<16, 3>,
///               lepton::nn::batch_norm<>> block; // batch_norm<16>`
template <class T> struct batch_norm<infer, T> {
  static constexpr bool lepton_unresolved = true;
  static constexpr char const* lepton_kind = "batch_norm";
  /// The concrete layer for an input of tensor type X (batch, C) or (batch, C, H, W).
  template <class X> using lepton_resolve = batch_norm<detail::inferred_dim<X, 1, 2, true, 1>(), T>;

  // auto, not void: the body (and its message) is instantiated at the call, before any use of the result
  template <operand X> auto operator()(X&&) const {
    static_assert(detail::always_false<X>,
                  "lepton: batch_norm<> infers its channels and holds no parameters: use it in "
                  "nn::sequential<nn::input<...>, ...>, or write batch_norm<C>");
  }
};

/// @brief Restores every batch_norm layer of `model` to its initial state (gamma 1, beta 0, running
///        statistics 0 and 1), e.g. to retrain a model from its current convolution weights.
/// **Example**: `lepton::nn::reset_batch_norm(model);`
template <class Model> void reset_batch_norm(Model& model) {
  for_each_object(model, [](auto& obj) {
    if constexpr (requires { obj.lepton_reset_parameters(); }) obj.lepton_reset_parameters();
  });
}

} // namespace lepton::nn
