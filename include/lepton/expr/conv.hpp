#pragma once
/// @file conv.hpp
/// @brief Convolutional-network ops on NCHW tensors: conv2d, max/avg pooling, global average
///        pooling and batch normalisation. Each op's forward kernel and backward rule live together
///        in its evaluator, like matmul's in linalg.hpp.
///
/// All of them are materialisation boundaries: their output is an arena buffer, so an elementwise
/// chain that follows (bias, ReLU, residual adds) is one fused pass over it.
///
/// **conv2d** runs as im2col + lepton's packed GEMM, one image at a time: for image n,
/// `col = im2col(x[n])` is (C*KH*KW, OH*OW) and `y[n] (O, OH*OW) = W (O, C*KH*KW) x col`, which is
/// already NCHW; the bias is added in the GEMM's epilogue while each block is in cache. A 1x1,
/// stride-1, unpadded convolution reads x[n] directly as `col`. Images are spread over the thread
/// pool; each thread owns one col buffer from the arena. The backward pass computes, per image,
/// `dcol = W^T dy[n]` followed by col2im (dx) and `dW += dy[n] col^T` (col is recomputed, which costs
/// less than storing it for the whole batch). Partial dW/db sums are kept per fixed chunk of images
/// and added in chunk order, so results do not depend on the number of threads.
///
/// Shapes: spatial sizes are static when the input's are (the batch may be `dyn`), and every
/// mismatch that is visible at compile time (channels, a kernel larger than the padded input) is a
/// `static_assert` naming both dimensions; the rest throws lepton::shape_error at evaluation.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "elementwise.hpp"

namespace lepton {

// ============================================================================ compile-time checks
// Each check is a class template whose arguments are the dimensions involved, so the compiler's
// note under `static assertion failed: lepton: ...` names them (see core/constraints.hpp).

/// @brief conv2d / batch_norm: the input's channel dimension must be what the layer expects.
template <std::size_t Expected, std::size_t Actual> struct conv_input_channels {
  static constexpr bool value = Expected == dyn || Actual == dyn || Expected == Actual;
};

/// @brief conv2d: the padded input extent must hold the dilated kernel extent.
template <std::size_t PaddedInput, std::size_t KernelExtent> struct conv_kernel_fits {
  static constexpr bool value = PaddedInput == dyn || KernelExtent == dyn || PaddedInput >= KernelExtent;
};

/// @brief Pooling: the padded input extent must hold the window.
template <std::size_t PaddedInput, std::size_t Window> struct pool_window_fits {
  static constexpr bool value = PaddedInput == dyn || PaddedInput >= Window;
};

/// @brief batch_norm<C>: the input's channel dimension (dimension 1) must be C.
template <std::size_t Expected, std::size_t Actual> struct batch_norm_channels {
  static constexpr bool value = Expected == dyn || Actual == dyn || Expected == Actual;
};

/// @brief A 4-D (batch, channels, height, width) input is required; the argument is the rank given.
template <std::size_t Rank> struct nchw_input_rank {
  static constexpr bool value = Rank == 4;
};

namespace detail {

/// Output extent of a convolution or pooling window along one axis (dyn stays dyn).
constexpr std::size_t window_out(std::size_t in, std::size_t k, std::size_t s, std::size_t p, std::size_t d) {
  if (in == dyn || k == dyn) return dyn;
  std::size_t const ext = d * (k - 1) + 1;
  if (in + 2 * p < ext) return 0; // reported by a static_assert
  return (in + 2 * p - ext) / s + 1;
}
constexpr std::size_t kernel_extent(std::size_t k, std::size_t d) { return k == dyn ? dyn : d * (k - 1) + 1; }
constexpr std::size_t padded(std::size_t in, std::size_t p) { return in == dyn ? dyn : in + 2 * p; }

inline std::size_t window_out_rt(std::size_t in, std::size_t k, std::size_t s, std::size_t p, std::size_t d,
                                 char const* op, char const* axis) {
  std::size_t const ext = d * (k - 1) + 1;
  if (k == 0 || in + 2 * p < ext)
    throw shape_error(std::string(op) + ": the " + axis + " extent " + std::to_string(in) +
                      " (+ 2 x padding " + std::to_string(p) + ") is smaller than the window extent " +
                      std::to_string(ext));
  return (in + 2 * p - ext) / s + 1;
}

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

} // namespace detail

// ============================================================================ nodes

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
template <pool_kind Kind, class A, std::size_t K, std::size_t S, std::size_t P>
struct describe<pool2d_node<Kind, A, K, S, P>> {
  static std::string get() {
    return std::string(Kind == pool_kind::max ? "max_pool2d(" : "avg_pool2d(") + describe<A>::get() + ")";
  }
};
template <class A> struct describe<global_avg_pool_node<A>> {
  static std::string get() { return "global_avg_pool2d(" + describe<A>::get() + ")"; }
};
template <class A, class G, class B> struct describe<batch_norm_node<A, G, B>> {
  static std::string get() {
    return "batch_norm(" + describe<A>::get() + ", " + describe<G>::get() + ", " + describe<B>::get() + ")";
  }
};

} // namespace detail

// ============================================================================ functions

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

#undef LEPTON_CONV_INLINE
