#pragma once
/// @file conv2d.hpp
/// @brief `lepton::nn::conv2d<InC, OutC, KH, KW, Stride, Pad, Dilation>`: a 2-D convolution layer;
///        `conv2d<OutC, K>` infers InC inside a sequential.

#include <array>
#include <type_traits>

#include "../../backend/cpu/conv.hpp"
#include "../layer.hpp"
#include "infer.hpp"

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
/// Written `conv2d<OutC, K>` (a square K x K kernel, stride 1, no padding) or
/// `conv2d<infer, OutC, KH, KW, Stride, ...>`, it is a spec: InC is inferred from the input inside
/// `sequential<input<...>, ...>` (like PyTorch's `LazyConv2d`).
/// **Example**: `lepton::nn::conv2d<1, 32, 3, 3, 1, 1> conv;  auto h = lepton::relu(conv(x)); // x: (batch, 1, 28, 28)`
template <std::size_t InC, std::size_t OutC, std::size_t KH = infer, std::size_t KW = infer,
          std::size_t Stride = 1, std::size_t Pad = 0, std::size_t Dilation = 1, bool Bias = true,
          class T = float>
struct conv2d {
  param<T, OutC, InC, KH, KW> weight; ///< (OutC, InC, KH, KW)
  [[no_unique_address]] std::conditional_t<Bias, param<T, OutC>, detail::no_parameter> bias; ///< (OutC)
  static constexpr std::array<char const*, 2> lepton_names{"weight", "bias"};
  static constexpr char const* lepton_kind = "conv2d"; ///< its name in nn::summary
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

namespace detail {
/// The sizes of a conv2d spec: `conv2d<OutC, K>` (KH and KW left to their `infer` defaults) or
/// `conv2d<infer, OutC, KH, KW, ...>`; `valid` is false for any other use of `infer`.
template <std::size_t InC, std::size_t OutC, std::size_t KH, std::size_t KW> struct conv2d_spec_sizes {
  static constexpr bool short_form = KH == infer && KW == infer && InC != infer && OutC != infer;
  static constexpr bool long_form = InC == infer && OutC != infer && KH != infer && KW != infer;
  static constexpr bool valid = short_form || long_form;
  static constexpr std::size_t out = short_form ? InC : OutC;
  static constexpr std::size_t kh = short_form ? OutC : KH;
  static constexpr std::size_t kw = short_form ? OutC : KW;
};
} // namespace detail

/// @brief The spec `conv2d<OutC, K>` or `conv2d<infer, OutC, KH, KW, Stride, Pad, Dilation, Bias, T>`:
///        a convolution whose input channels are inferred; it holds no parameters until a
///        sequential that starts with `nn::input<...>` resolves it to `conv2d<InC, OutC, KH, KW, ...>`,
///        InC being its input's dimension 1.
/// **Example**: `lepton::nn::sequential<lepton::nn::input<1, 28, 28>, lepton::nn::conv2d<32, 3>> c;
///               // conv2d<1, 32, 3, 3>: (b, 1, 28, 28) -> (b, 32, 26, 26)`
template <std::size_t InC, std::size_t OutC, std::size_t KH, std::size_t KW, std::size_t Stride,
          std::size_t Pad, std::size_t Dilation, bool Bias, class T>
  requires(InC == infer || OutC == infer || KH == infer || KW == infer)
struct conv2d<InC, OutC, KH, KW, Stride, Pad, Dilation, Bias, T> {
  using sizes = detail::conv2d_spec_sizes<InC, OutC, KH, KW>;
  static_assert(sizes::valid,
                "lepton: conv2d sizes: write conv2d<InC, OutC, KH, KW, ...>, or conv2d<OutC, K> "
                "or conv2d<infer, OutC, KH, KW, ...> to infer InC");
  static constexpr bool lepton_unresolved = true;
  static constexpr char const* lepton_kind = "conv2d";
  /// The concrete layer for an input of tensor type X (batch, InC, H, W).
  template <class X> using lepton_resolve = conv2d<detail::inferred_dim<X, 1, 4, false, 1>(), sizes::out,
                                                   sizes::kh, sizes::kw, Stride, Pad, Dilation, Bias, T>;

  // auto, not void: the body (and its message) is instantiated at the call, before any use of the result
  template <operand X> auto operator()(X&&) const {
    static_assert(detail::always_false<X>,
                  "lepton: conv2d<OutC, K> infers its input channels and holds no weights: use it in "
                  "nn::sequential<nn::input<...>, ...>, or write conv2d<InC, OutC, KH, KW>");
  }
};

} // namespace lepton::nn
