#pragma once
/// @file pooling.hpp
/// @brief Pooling layers (parameter-free): max_pool2d, avg_pool2d, global_avg_pool2d.

#include "../../backend/cpu/pool.hpp"
#include "../layer.hpp"

namespace lepton::nn {

/// @brief Max pooling layer: (batch, C, H, W) -> (batch, C, OH, OW) over Kernel x Kernel windows.
/// **Example**: `lepton::nn::max_pool2d<2> pool;  auto p = pool(h); // (b, 32, 28, 28) -> (b, 32, 14, 14)`
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Pad = 0> struct max_pool2d {
  static constexpr char const* lepton_kind = "max_pool2d"; ///< its name in nn::summary
  template <operand X> auto operator()(X&& x) const {
    return lepton::max_pool2d<Kernel, Stride, Pad>(std::forward<X>(x));
  }
};

/// @brief Average pooling layer over Kernel x Kernel windows (padded cells count as zeros).
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Pad = 0> struct avg_pool2d {
  static constexpr char const* lepton_kind = "avg_pool2d"; ///< its name in nn::summary
  template <operand X> auto operator()(X&& x) const {
    return lepton::avg_pool2d<Kernel, Stride, Pad>(std::forward<X>(x));
  }
};

/// @brief Global average pooling layer: (batch, C, H, W) -> (batch, C).
struct global_avg_pool2d {
  static constexpr char const* lepton_kind = "global_avg_pool2d"; ///< its name in nn::summary
  template <operand X> auto operator()(X&& x) const { return lepton::global_avg_pool2d(std::forward<X>(x)); }
};

} // namespace lepton::nn
