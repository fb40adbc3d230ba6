#pragma once
/// @file dropout.hpp
/// @brief `lepton::nn::dropout`: inverted dropout in training mode, identity in evaluation mode.

#include <cstdint>

#include "../../backend/cpu/dropout.hpp"
#include "../layer.hpp"

namespace lepton::nn {

/// @brief Dropout layer. In training mode every call draws a fresh mask: the mask seed is
///        `seed` combined with a per-layer call counter, so a run is reproducible from `seed`.
/// In evaluation mode (`lepton::nn::set_training(model, false)`) it passes values through.
/// **Example**: `lepton::nn::dropout drop{.p = 0.2};  auto h = drop(lepton::relu(fc(x)));`
struct dropout {
  double p = 0.5;         ///< drop probability
  std::uint64_t seed = 0; ///< base seed of the masks
  bool training = true;   ///< set by lepton::nn::set_training
  /// Training-mode calls so far (the mask counter). Evaluation mode neither reads nor writes it, so
  /// a const model in evaluation mode can run inference from many threads at once; training-mode
  /// calls must come from one thread.
  mutable std::uint64_t calls = 0;
  static constexpr char const* lepton_kind = "dropout"; ///< its name in nn::summary

  template <operand X> auto operator()(X&& x) const {
    if (!training) return lepton::dropout(std::forward<X>(x), 0.0, 0);
    return lepton::dropout(std::forward<X>(x), p, seed * 0x9E3779B97F4A7C15ull + (++calls));
  }
};

} // namespace lepton::nn
