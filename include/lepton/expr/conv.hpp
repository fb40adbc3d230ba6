#pragma once
/// @file conv.hpp
/// @brief `conv2d<Stride, Pad, Dilation>(x, w[, b])`: 2-D convolution of NCHW tensors. The node,
///        its compile-time checks, its run-time geometry (conv_geometry, shared with the CPU
///        kernels) and the user functions; the CPU evaluator is in backend/cpu/conv.hpp.
///
/// conv2d is a materialisation boundary: its output is an arena buffer, so an elementwise chain
/// that follows (bias, ReLU, residual adds) is one fused pass over it.
///
/// Shapes: spatial sizes are static when the input's are (the batch may be `dyn`), and every
/// mismatch that is visible at compile time (channels, a kernel larger than the padded input) is a
/// `static_assert` naming both dimensions; the rest throws lepton::shape_error at evaluation.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/constraints.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "nchw.hpp"
#include "node.hpp"

namespace lepton {

// Each check is a class template whose arguments are the dimensions involved, so the compiler's
// note under `static assertion failed: lepton: ...` names them (see core/constraints.hpp).

/// @brief conv2d: the input's channel dimension must be what the layer expects.
template <std::size_t Expected, std::size_t Actual> struct conv_input_channels {
  static constexpr bool value = Expected == dyn || Actual == dyn || Expected == Actual;
};

/// @brief conv2d: the padded input extent must hold the dilated kernel extent.
template <std::size_t PaddedInput, std::size_t KernelExtent> struct conv_kernel_fits {
  static constexpr bool value = PaddedInput == dyn || KernelExtent == dyn || PaddedInput >= KernelExtent;
};

namespace detail {

/// Runtime geometry of a 2-D window op on one image.
struct conv_geometry {
  std::size_t c = 0, h = 0, w = 0; // input channels and extent
  std::size_t kh = 0, kw = 0;      // window
  std::size_t oh = 0, ow = 0;      // output extent
  std::size_t s = 1, p = 0, d = 1; // stride, padding, dilation
  std::size_t in_plane() const { return h * w; }
  std::size_t out_plane() const { return oh * ow; }
  std::size_t col_rows() const { return c * kh * kw; }
  std::size_t col_size() const { return col_rows() * out_plane(); }
  bool pointwise() const { return kh == 1 && kw == 1 && s == 1 && p == 0; }
};

/// Placeholder for an absent operand (conv2d without bias).
struct no_operand {};

/// The geometry of conv2d<S, P, D> on input x and weight w; throws lepton::shape_error when their
/// channels differ or the kernel does not fit.
template <std::size_t S, std::size_t P, std::size_t D>
conv_geometry conv_geometry_of(shape_t<4> const& xs, shape_t<4> const& ws) {
  if (xs[1] != ws[1])
    throw shape_error("conv2d: input " + to_string(xs) + " has " + std::to_string(xs[1]) +
                      " channels, the weight " + to_string(ws) + " expects " + std::to_string(ws[1]));
  conv_geometry g;
  g.c = xs[1];
  g.h = xs[2];
  g.w = xs[3];
  g.kh = ws[2];
  g.kw = ws[3];
  g.s = S;
  g.p = P;
  g.d = D;
  g.oh = window_out_rt(xs[2], ws[2], S, P, D, "conv2d", "height");
  g.ow = window_out_rt(xs[3], ws[3], S, P, D, "conv2d", "width");
  return g;
}

} // namespace detail

/// @brief `conv2d<S, P, D>(x, w[, b])`: 2-D cross-correlation of x (N, C, H, W) with w (O, C, KH, KW)
///        plus b (O), stride S, zero padding P and dilation D on both axes -> (N, O, OH, OW).
template <class X, class W, class B, std::size_t Stride, std::size_t Pad, std::size_t Dilation>
struct conv2d_node : expr_base<conv2d_node<X, W, B, Stride, Pad, Dilation>> {
  static constexpr bool has_bias = !std::is_same_v<B, detail::no_operand>;
  static_assert(nchw_input_rank<X::rank>::value,
                "lepton: conv2d takes an NCHW input (batch, channels, height, width)");
  static_assert(W::rank == 4, "lepton: conv2d takes a weight of shape (out_channels, in_channels, kh, kw)");
  static_assert(Stride >= 1 && Dilation >= 1, "lepton: conv2d stride and dilation must be at least 1");
  static_assert(
      same_element_type<typename X::value_type, typename W::value_type>::value,
      "lepton: conv2d input and weight have different element types; convert one with lepton::cast<T>");
  static_assert(std::is_floating_point_v<typename X::value_type>,
                "lepton: conv2d needs float or double elements");
  static constexpr auto xd = X::static_dims::values;
  static constexpr auto wd = W::static_dims::values;
  static_assert(conv_input_channels<wd[1], xd[1]>::value,
                "lepton: conv2d: the input's channel dimension differs from the weight's in_channels");
  static_assert(conv_kernel_fits<detail::padded(xd[2], Pad), detail::kernel_extent(wd[2], Dilation)>::value,
                "lepton: conv2d: the (dilated) kernel height is larger than the padded input height");
  static_assert(conv_kernel_fits<detail::padded(xd[3], Pad), detail::kernel_extent(wd[3], Dilation)>::value,
                "lepton: conv2d: the (dilated) kernel width is larger than the padded input width");
  using value_type = typename X::value_type;
  using static_dims = dims<xd[0], wd[0], detail::window_out(xd[2], wd[2], Stride, Pad, Dilation),
                           detail::window_out(xd[3], wd[3], Stride, Pad, Dilation)>;
  static constexpr std::size_t rank = 4;
  X x;
  W w;
  [[no_unique_address]] B b;
  conv2d_node(X x_, W w_, B b_) : x(std::move(x_)), w(std::move(w_)), b(std::move(b_)) {}
  shape_t<4> shape() const;
};

template <class X, class W, class B, std::size_t S, std::size_t P, std::size_t D>
shape_t<4> conv2d_node<X, W, B, S, P, D>::shape() const {
  auto xs = x.shape();
  auto ws = w.shape();
  auto g = detail::conv_geometry_of<S, P, D>(xs, ws);
  if constexpr (has_bias) {
    if (b.shape()[0] != ws[0])
      throw shape_error("conv2d: bias " + to_string(b.shape()) + " does not match the weight's " +
                        std::to_string(ws[0]) + " output channels");
  }
  return {xs[0], ws[0], g.oh, g.ow};
}

namespace detail {

template <class X, class W, class B, std::size_t S, std::size_t P, std::size_t D>
struct describe<conv2d_node<X, W, B, S, P, D>> {
  static std::string get() {
    std::string s = "conv2d(" + describe<X>::get() + ", " + describe<W>::get();
    if constexpr (!std::is_same_v<B, no_operand>) s += ", " + describe<B>::get();
    return s + ")";
  }
};

} // namespace detail

/// @brief 2-D convolution (cross-correlation, like PyTorch's `conv2d`) of x (N, C, H, W) with
///        w (O, C, KH, KW): (N, O, OH, OW), OH = (H + 2 Pad - Dilation (KH - 1) - 1) / Stride + 1.
/// @tparam Stride, Pad, Dilation  the same on both spatial axes
/// **Example**: `auto y = lepton::relu(lepton::conv2d<1, 1>(x, w, b)); // 3x3 "same" convolution`
template <std::size_t Stride = 1, std::size_t Pad = 0, std::size_t Dilation = 1, operand X, operand W>
auto conv2d(X&& x, W&& w) {
  return conv2d_node<detail::expr_of<X>, detail::expr_of<W>, detail::no_operand, Stride, Pad, Dilation>(
      detail::as_expr(std::forward<X>(x)), detail::as_expr(std::forward<W>(w)), detail::no_operand{});
}
/// @brief 2-D convolution with a bias b (O) added to every output position of each channel.
template <std::size_t Stride = 1, std::size_t Pad = 0, std::size_t Dilation = 1, operand X, operand W,
          operand B>
auto conv2d(X&& x, W&& w, B&& b) {
  using Eb = detail::expr_of<B>;
  static_assert(Eb::rank == 1, "lepton: conv2d's bias has shape (out_channels)");
  static_assert(
      conv_input_channels<detail::expr_of<W>::static_dims::values[0], Eb::static_dims::values[0]>::value,
      "lepton: conv2d: the bias size differs from the weight's out_channels");
  return conv2d_node<detail::expr_of<X>, detail::expr_of<W>, Eb, Stride, Pad, Dilation>(
      detail::as_expr(std::forward<X>(x)), detail::as_expr(std::forward<W>(w)),
      detail::as_expr(std::forward<B>(b)));
}

} // namespace lepton
