#pragma once
/// @file activation.hpp
/// @brief Activation layers (parameter-free), for use in `sequential` and model structs.

#include "../../backend/cpu/elementwise.hpp"
#include "../../backend/cpu/nn_ops.hpp"
#include "../../backend/cpu/shape_ops.hpp"

namespace lepton::nn {

#define LEPTON_ACTIVATION_LAYER(NAME, FN, DOC)                                                               \
  /** @brief DOC layer: `y = FN(x)` (fused into the producing GEMM's epilogue when possible). */             \
  struct NAME {                                                                                              \
    static constexpr char const* lepton_kind = #NAME;                                                        \
    template <operand X> auto operator()(X&& x) const { return lepton::FN(std::forward<X>(x)); }             \
  };
LEPTON_ACTIVATION_LAYER(relu, relu, ReLU)
LEPTON_ACTIVATION_LAYER(tanh, tanh, Tanh)
LEPTON_ACTIVATION_LAYER(sigmoid, sigmoid, Sigmoid)
LEPTON_ACTIVATION_LAYER(gelu, gelu, GELU)
LEPTON_ACTIVATION_LAYER(silu, silu, SiLU)
LEPTON_ACTIVATION_LAYER(softplus, softplus, Softplus)
LEPTON_ACTIVATION_LAYER(log_softmax, log_softmax, LogSoftmax(last axis))
LEPTON_ACTIVATION_LAYER(softmax, softmax, Softmax(last axis))
LEPTON_ACTIVATION_LAYER(flatten, flatten, Flatten(keeps the batch dimension))
#undef LEPTON_ACTIVATION_LAYER

/// @brief LeakyReLU layer with slope `alpha` for negative inputs.
struct leaky_relu {
  static constexpr char const* lepton_kind = "leaky_relu"; ///< its name in nn::summary
  double alpha = 0.01;
  template <operand X> auto operator()(X&& x) const { return lepton::leaky_relu(std::forward<X>(x), alpha); }
};

} // namespace lepton::nn
