#pragma once
/// @file conv2d.hpp
/// @brief `lepton::nn::conv2d<InC, OutC, KH, KW, Stride, Pad, Dilation>`: a 2-D convolution layer.

#include <array>
#include <type_traits>

#include "../../backend/cpu/conv.hpp"
#include "../layer.hpp"

namespace lepton::nn {

namespace detail {
/// The member a layer holds in place of an absent parameter (conv2d without bias): no parameters.
struct no_parameter {};
} // namespace detail

/// @brief 2-D convolution layer on NCHW inputs: (batch, InC, H, W) -> (batch, OutC, OH, OW) with
///        OH = (H + 2 Pad - Dilation (KH - 1) - 1) / Stride + 1 (likewise OW).
///
/// The weight is stored (OutC, InC, KH, KW) like PyTorch's `nn.Conv2d`, so weights move between the
/// two without transposes; `lepton::nn::init` treats it as fan_in = InC KH KW. The bias (OutC) is
/// added inside the convolution's GEMM; an activation applied to the result is one fused pass.
/// The input's channel count is checked at compile time (the error names InC and the actual
/// channels), and so is a kernel that does not fit a static spatial size.
/// @tparam InC, OutC  input and output channels   @tparam KH, KW  kernel size
/// @tparam Stride, Pad, Dilation  the same on both axes   @tparam Bias  whether to add a bias
/// @tparam T  float or double
/// **Example**: `lepton::nn::conv2d<1, 32, 3, 3, 1, 1> conv;  auto h = lepton::relu(conv(x)); // x: (batch, 1, 28, 28)`
template <std::size_t InC, std::size_t OutC, std::size_t KH, std::size_t KW, std::size_t Stride = 1,
          std::size_t Pad = 0, std::size_t Dilation = 1, bool Bias = true, class T = float>
struct conv2d {
  param<T, OutC, InC, KH, KW> weight; ///< (OutC, InC, KH, KW)
  [[no_unique_address]] std::conditional_t<Bias, param<T, OutC>, detail::no_parameter> bias; ///< (OutC)
  static constexpr std::array<char const*, 2> lepton_names{"weight", "bias"};
  /// The init schemes' fan-in and fan-out of the weight (nn::init): InC and OutC times the kernel area.
  template <class F> void lepton_fans(F&& declare) {
    declare(weight, double(InC * KH * KW), double(OutC * KH * KW));
  }

  template <operand X> auto operator()(X&& x) const {
    using E = lepton::detail::expr_of<X>;
    static_assert(
        nchw_input_rank<E::rank>::value,
        "lepton: conv2d<InC, OutC, KH, KW, ...> takes an NCHW input (batch, channels, height, width)");
    if constexpr (E::rank == 4) {
      constexpr std::size_t channels = E::static_dims::values[1];
      if constexpr (!conv_input_channels<InC, channels>::value) // the first error line names both numbers
        (void)sizeof(diagnostic::conv2d_input_channels<diagnostic::layer_expects<InC>,
                                                       diagnostic::input_has<channels>>);
      static_assert(conv_input_channels<InC, E::static_dims::values[1]>::value,
                    "lepton: conv2d<InC, OutC, KH, KW, ...>: the input's channel dimension is not InC");
      if constexpr (conv_input_channels<InC,
                                        E::static_dims::values[1]>::value) { // one error message, not two
        if constexpr (Bias)
          return lepton::conv2d<Stride, Pad, Dilation>(std::forward<X>(x), weight, bias);
        else
          return lepton::conv2d<Stride, Pad, Dilation>(std::forward<X>(x), weight);
      }
    }
  }
};

} // namespace lepton::nn
