#pragma once
/// @file op_list.hpp
/// @brief `lepton::ops`: one descriptor per public op and `ops::all`, the type list of all of them.
///
/// The list is what the build checks an op against (like ggml's `static_assert(GGML_OP_COUNT == N)`
/// beside each op table): tests/autodiff/test_op_list.cpp walks `ops::all` and needs an `op_case<Op>`
/// for each entry (a missing one is a compile error naming the op), the op table in docs/ops.md is
/// generated from it (and a test fails when it is stale), and scripts/op_list.py fails when a
/// functor, node or public function in include/lepton/expr/ has no entry. A CPU/device parity test
/// (P14) walks the same list. docs/ops.md explains how to add an op.
///
/// A descriptor only describes; it holds no code of the op. Its members:
///  - `name`: the public spelling (`sum`, `operator+`, `loss::mse`; `op::huber` for a functor that
///    is reached only through a loss), and `also`: other spellings of the same op (`unary operator-`);
///  - `family`, `differentiable` (false: the op passes no gradient, by design), `header` (where the
///    op's functor, node or function is defined), `node` (its expression node template, "" when it
///    builds on other ops' nodes), a one-line `summary`;
///  - elementwise ops: `functor<T>`, the functor of lepton::op for element type T.

#include <cstddef>
#include <string_view>

#include "elementwise.hpp"

namespace lepton::ops {

/// @brief A list of types; `ops::all` is one. `size` is the number of types.
template <class... Ts> struct type_list {
  static constexpr std::size_t size = sizeof...(Ts);
};

/// @brief Calls `f.template operator()<T>()` for each T of a type_list, in order.
/// **Example**: `ops::for_each(ops::all{}, []<class Op>() { std::puts(Op::name.data()); });`
template <class... Ts, class F> constexpr void for_each(type_list<Ts...>, F&& f) {
  (f.template operator()<Ts>(), ...);
}

/// @brief The families of the op table (docs/ops.md groups by them).
enum class op_family { elementwise, reduction, linalg, nn, loss, shape, random, conv, graph };

/// @brief The family's name as the op table prints it.
constexpr std::string_view family_name(op_family f) {
  switch (f) {
  case op_family::elementwise: return "elementwise";
  case op_family::reduction: return "reduction";
  case op_family::linalg: return "linalg";
  case op_family::nn: return "nn";
  case op_family::loss: return "loss";
  case op_family::shape: return "shape";
  case op_family::random: return "random";
  case op_family::conv: return "conv";
  case op_family::graph: return "graph";
  }
  return "?";
}

namespace detail {
/// Members shared by the descriptors of one header and family.
template <op_family F, bool Differentiable> struct desc_base {
  static constexpr op_family family = F;
  static constexpr bool differentiable = Differentiable;
  static constexpr std::string_view also = "";
};
template <bool D> struct elementwise_desc : desc_base<op_family::elementwise, D> {
  static constexpr std::string_view header = "lepton/expr/elementwise.hpp";
};
template <bool D> struct unary_desc : elementwise_desc<D> {
  static constexpr std::string_view node = "map_node";
};
template <bool D> struct binary_desc : elementwise_desc<D> {
  static constexpr std::string_view node = "map_node";
};
struct reduction_desc : desc_base<op_family::reduction, true> {
  static constexpr std::string_view header = "lepton/expr/reduce.hpp";
  static constexpr std::string_view node = "reduce_node";
};
template <op_family F, bool D> struct nn_desc : desc_base<F, D> {
  static constexpr std::string_view header = "lepton/expr/nn_ops.hpp";
};
struct conv_desc : desc_base<op_family::conv, true> {
  static constexpr std::string_view header = "lepton/expr/conv.hpp";
};
struct pool_desc : desc_base<op_family::conv, true> {
  static constexpr std::string_view header = "lepton/expr/pool.hpp";
};
struct batch_norm_desc : desc_base<op_family::conv, true> {
  static constexpr std::string_view header = "lepton/expr/batch_norm.hpp";
};
} // namespace detail

// ---------------------------------------------------------------------------- elementwise, unary

/// @brief `-x`, `neg(x)`.
struct neg : detail::unary_desc<true> {
  static constexpr std::string_view name = "neg";
  static constexpr std::string_view also = "unary operator-";
  static constexpr std::string_view summary = "negation";
  template <class T> using functor = op::neg;
};
/// @brief `abs(x)`.
struct abs : detail::unary_desc<true> {
  static constexpr std::string_view name = "abs";
  static constexpr std::string_view summary = "absolute value; gradient 0 at 0";
  template <class T> using functor = op::abs;
};
/// @brief `exp(x)`.
struct exp : detail::unary_desc<true> {
  static constexpr std::string_view name = "exp";
  static constexpr std::string_view summary = "exponential";
  template <class T> using functor = op::exp;
};
/// @brief `log(x)`.
struct log : detail::unary_desc<true> {
  static constexpr std::string_view name = "log";
  static constexpr std::string_view summary = "natural logarithm";
  template <class T> using functor = op::log;
};
/// @brief `log1p(x)`.
struct log1p : detail::unary_desc<true> {
  static constexpr std::string_view name = "log1p";
  static constexpr std::string_view summary = "log(1 + x), accurate near 0";
  template <class T> using functor = op::log1p;
};
/// @brief `sqrt(x)`.
struct sqrt : detail::unary_desc<true> {
  static constexpr std::string_view name = "sqrt";
  static constexpr std::string_view summary = "square root";
  template <class T> using functor = op::sqrt;
};
/// @brief `rsqrt(x)`.
struct rsqrt : detail::unary_desc<true> {
  static constexpr std::string_view name = "rsqrt";
  static constexpr std::string_view summary = "reciprocal square root 1 / sqrt(x)";
  template <class T> using functor = op::rsqrt;
};
/// @brief `square(x)`.
struct square : detail::unary_desc<true> {
  static constexpr std::string_view name = "square";
  static constexpr std::string_view summary = "x * x";
  template <class T> using functor = op::square;
};
/// @brief `tanh(x)`.
struct tanh : detail::unary_desc<true> {
  static constexpr std::string_view name = "tanh";
  static constexpr std::string_view summary = "hyperbolic tangent";
  template <class T> using functor = op::tanh;
};
/// @brief `sigmoid(x)`.
struct sigmoid : detail::unary_desc<true> {
  static constexpr std::string_view name = "sigmoid";
  static constexpr std::string_view summary = "logistic function 1 / (1 + e^-x)";
  template <class T> using functor = op::sigmoid;
};
/// @brief `relu(x)`.
struct relu : detail::unary_desc<true> {
  static constexpr std::string_view name = "relu";
  static constexpr std::string_view summary = "max(x, 0), NaN kept; gradient 0 at 0";
  template <class T> using functor = op::relu;
};
/// @brief `softplus(x)`.
struct softplus : detail::unary_desc<true> {
  static constexpr std::string_view name = "softplus";
  static constexpr std::string_view summary = "log(1 + e^x) without overflow";
  template <class T> using functor = op::softplus;
};
/// @brief `silu(x)`.
struct silu : detail::unary_desc<true> {
  static constexpr std::string_view name = "silu";
  static constexpr std::string_view summary = "x * sigmoid(x)";
  template <class T> using functor = op::silu;
};
/// @brief `gelu(x)`.
struct gelu : detail::unary_desc<true> {
  static constexpr std::string_view name = "gelu";
  static constexpr std::string_view summary = "x * Phi(x), exact erf form";
  template <class T> using functor = op::gelu;
};
/// @brief `leaky_relu(x, alpha)`.
struct leaky_relu : detail::unary_desc<true> {
  static constexpr std::string_view name = "leaky_relu";
  static constexpr std::string_view summary = "x for x > 0, alpha * x otherwise";
  template <class T> using functor = op::leaky_relu<T>;
};
/// @brief `clamp(x, lo, hi)`.
struct clamp : detail::unary_desc<true> {
  static constexpr std::string_view name = "clamp";
  static constexpr std::string_view summary = "clamps to [lo, hi]; gradient passes inside";
  template <class T> using functor = op::clamp<T>;
};
/// @brief The Huber functor (of a difference), the elementwise part of `loss::huber`.
struct huber : detail::unary_desc<true> {
  static constexpr std::string_view name = "op::huber";
  static constexpr std::string_view summary = "Huber of a difference: 0.5 d^2 inside delta, linear outside";
  template <class T> using functor = op::huber<T>;
};

// ---------------------------------------------------------------------------- elementwise, binary

/// @brief `a + b` (broadcasting).
struct add : detail::binary_desc<true> {
  static constexpr std::string_view name = "operator+";
  static constexpr std::string_view summary = "sum, broadcasting";
  template <class T> using functor = op::add;
};
/// @brief `a - b` (broadcasting).
struct sub : detail::binary_desc<true> {
  static constexpr std::string_view name = "operator-";
  static constexpr std::string_view summary = "difference, broadcasting";
  template <class T> using functor = op::sub;
};
/// @brief `a * b` (broadcasting).
struct mul : detail::binary_desc<true> {
  static constexpr std::string_view name = "operator*";
  static constexpr std::string_view summary = "product, broadcasting";
  template <class T> using functor = op::mul;
};
/// @brief `a / b` (broadcasting).
struct div : detail::binary_desc<true> {
  static constexpr std::string_view name = "operator/";
  static constexpr std::string_view summary = "quotient, broadcasting";
  template <class T> using functor = op::div;
};
/// @brief `maximum(a, b)`.
struct maximum : detail::binary_desc<true> {
  static constexpr std::string_view name = "maximum";
  static constexpr std::string_view summary = "elementwise maximum; ties send the gradient to a";
  template <class T> using functor = op::maximum;
};
/// @brief `minimum(a, b)`.
struct minimum : detail::binary_desc<true> {
  static constexpr std::string_view name = "minimum";
  static constexpr std::string_view summary = "elementwise minimum; ties send the gradient to a";
  template <class T> using functor = op::minimum;
};
/// @brief `pow(a, b)`.
struct pow : detail::binary_desc<true> {
  static constexpr std::string_view name = "pow";
  static constexpr std::string_view summary = "a^b; d/db needs a > 0";
  template <class T> using functor = op::pow;
};
/// @brief The stable binary cross-entropy functor, the elementwise part of `loss::bce_with_logits`.
struct bce_logits : detail::binary_desc<true> {
  static constexpr std::string_view name = "op::bce_logits";
  static constexpr std::string_view summary = "max(a, 0) - a b + log(1 + e^-|a|) of logits a, targets b";
  template <class T> using functor = op::bce_logits;
};

// ---------------------------------------------------------------------------- comparisons

/// @brief `a == b`: 1 or 0, no gradient.
struct equal : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator==";
  static constexpr std::string_view summary = "1 where a == b, else 0";
  template <class T> using functor = op::equal;
};
/// @brief `a != b`: 1 or 0, no gradient.
struct not_equal : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator!=";
  static constexpr std::string_view summary = "1 where a != b, else 0";
  template <class T> using functor = op::not_equal;
};
/// @brief `a < b`: 1 or 0, no gradient.
struct less : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator<";
  static constexpr std::string_view summary = "1 where a < b, else 0";
  template <class T> using functor = op::less;
};
/// @brief `a <= b`: 1 or 0, no gradient.
struct less_equal : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator<=";
  static constexpr std::string_view summary = "1 where a <= b, else 0";
  template <class T> using functor = op::less_equal;
};
/// @brief `a > b`: 1 or 0, no gradient.
struct greater : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator>";
  static constexpr std::string_view summary = "1 where a > b, else 0";
  template <class T> using functor = op::greater;
};
/// @brief `a >= b`: 1 or 0, no gradient.
struct greater_equal : detail::binary_desc<false> {
  static constexpr std::string_view name = "operator>=";
  static constexpr std::string_view summary = "1 where a >= b, else 0";
  template <class T> using functor = op::greater_equal;
};

// ---------------------------------------------------------------------------- elementwise, other

/// @brief `where(c, a, b)`.
struct where : detail::elementwise_desc<true> {
  static constexpr std::string_view name = "where";
  static constexpr std::string_view node = "map_node";
  template <class T> using functor = op::where;
  static constexpr std::string_view summary = "a where c != 0, else b (broadcasting); no gradient into c";
};
/// @brief `stop_gradient(x)`.
struct stop_gradient : detail::elementwise_desc<false> {
  static constexpr std::string_view name = "stop_gradient";
  static constexpr std::string_view node = "stop_gradient_node";
  static constexpr std::string_view summary = "identity forward, zero gradient (detach)";
};

// ---------------------------------------------------------------------------- reductions

/// @brief `sum(x[, axis<I>][, keepdims])`.
struct sum : detail::reduction_desc {
  static constexpr std::string_view name = "sum";
  static constexpr std::string_view summary = "sum over everything or one axis";
};
/// @brief `mean(x[, axis<I>][, keepdims])`.
struct mean : detail::reduction_desc {
  static constexpr std::string_view name = "mean";
  static constexpr std::string_view summary = "mean over everything or one axis";
};
/// @brief `max(x[, axis<I>][, keepdims])`.
struct max : detail::reduction_desc {
  static constexpr std::string_view name = "max";
  static constexpr std::string_view summary = "maximum over everything or one axis; ties share the gradient";
};
/// @brief `logsumexp(x[, axis<I>][, keepdims])`.
struct logsumexp : detail::reduction_desc {
  static constexpr std::string_view name = "logsumexp";
  static constexpr std::string_view summary = "log(sum(exp(x))), shifted by the maximum";
};
/// @brief `argmax(x, axis<I>)`: evaluated at once, int64 indices, no gradient.
struct argmax : detail::desc_base<op_family::reduction, false> {
  static constexpr std::string_view name = "argmax";
  static constexpr std::string_view header = "lepton/expr/reduce.hpp";
  static constexpr std::string_view node = "";
  static constexpr std::string_view summary = "index of the first maximum along an axis (evaluated now)";
};

// ---------------------------------------------------------------------------- linear algebra

/// @brief `matmul(a, b)`.
struct matmul : detail::desc_base<op_family::linalg, true> {
  static constexpr std::string_view name = "matmul";
  static constexpr std::string_view header = "lepton/expr/linalg.hpp";
  static constexpr std::string_view node = "matmul_node";
  static constexpr std::string_view summary = "(m, k) x (k, n) -> (m, n); backward is two GEMMs";
};
/// @brief `transpose(a)`.
struct transpose : detail::desc_base<op_family::linalg, true> {
  static constexpr std::string_view name = "transpose";
  static constexpr std::string_view header = "lepton/expr/linalg.hpp";
  static constexpr std::string_view node = "transpose_node";
  static constexpr std::string_view summary = "(m, n) -> (n, m)";
};

// ---------------------------------------------------------------------------- nn ops and losses

/// @brief `softmax(x)` over the last axis.
struct softmax : detail::nn_desc<op_family::nn, true> {
  static constexpr std::string_view name = "softmax";
  static constexpr std::string_view node = "softmax_node";
  static constexpr std::string_view summary = "softmax over the last axis";
};
/// @brief `log_softmax(x)` over the last axis.
struct log_softmax : detail::nn_desc<op_family::nn, true> {
  static constexpr std::string_view name = "log_softmax";
  static constexpr std::string_view node = "softmax_node";
  static constexpr std::string_view summary = "log of softmax over the last axis, finite for finite x";
};
/// @brief `loss::cross_entropy(logits, labels or probabilities[, reduction])`.
struct loss_cross_entropy : detail::nn_desc<op_family::loss, true> {
  static constexpr std::string_view name = "loss::cross_entropy";
  static constexpr std::string_view node = "softmax_xent_node";
  static constexpr std::string_view summary = "softmax cross-entropy against labels or distributions";
};
/// @brief `loss::bce_with_logits(logits, targets[, reduction])`.
struct loss_bce_with_logits : detail::nn_desc<op_family::loss, true> {
  static constexpr std::string_view name = "loss::bce_with_logits";
  static constexpr std::string_view node = "";
  static constexpr std::string_view summary = "binary cross-entropy of logits (op::bce_logits, reduced)";
};
/// @brief `loss::mse(a, b[, reduction])`.
struct loss_mse : detail::nn_desc<op_family::loss, true> {
  static constexpr std::string_view name = "loss::mse";
  static constexpr std::string_view node = "";
  static constexpr std::string_view summary = "squared error (a - b)^2, reduced";
};
/// @brief `loss::l1(a, b[, reduction])`.
struct loss_l1 : detail::nn_desc<op_family::loss, true> {
  static constexpr std::string_view name = "loss::l1";
  static constexpr std::string_view node = "";
  static constexpr std::string_view summary = "absolute error |a - b|, reduced";
};
/// @brief `loss::huber(a, b[, delta][, reduction])`.
struct loss_huber : detail::nn_desc<op_family::loss, true> {
  static constexpr std::string_view name = "loss::huber";
  static constexpr std::string_view node = "";
  static constexpr std::string_view summary = "Huber loss of a - b (op::huber, reduced)";
};

// ---------------------------------------------------------------------------- shape

/// @brief `share(x)`.
struct share : detail::desc_base<op_family::graph, true> {
  static constexpr std::string_view name = "share";
  static constexpr std::string_view header = "lepton/expr/share.hpp";
  static constexpr std::string_view node = "share_node";
  static constexpr std::string_view summary = "x computed once per evaluation, gradients of all uses summed";
};

/// @brief `reshape<Dims...>(x)`.
struct reshape : detail::desc_base<op_family::shape, true> {
  static constexpr std::string_view name = "reshape";
  static constexpr std::string_view header = "lepton/expr/shape_ops.hpp";
  static constexpr std::string_view node = "reshape_node";
  static constexpr std::string_view summary = "same elements, new static shape (one dyn inferred)";
};
/// @brief `flatten(x)`.
struct flatten : detail::desc_base<op_family::shape, true> {
  static constexpr std::string_view name = "flatten";
  static constexpr std::string_view header = "lepton/expr/shape_ops.hpp";
  static constexpr std::string_view node = "reshape_node";
  static constexpr std::string_view summary = "(d0, d1, ..., dn) -> (d0, d1 * ... * dn)";
};

// ---------------------------------------------------------------------------- random

/// @brief `dropout(x, p, seed)`.
struct dropout : detail::desc_base<op_family::random, true> {
  static constexpr std::string_view name = "dropout";
  static constexpr std::string_view header = "lepton/expr/dropout.hpp";
  static constexpr std::string_view node = "dropout_node";
  static constexpr std::string_view summary = "inverted dropout; the mask is a hash of (seed, index)";
};

// ---------------------------------------------------------------------------- convolution

/// @brief `conv2d<S, P, D>(x, w[, b])`.
struct conv2d : detail::conv_desc {
  static constexpr std::string_view name = "conv2d";
  static constexpr std::string_view node = "conv2d_node";
  static constexpr std::string_view summary = "2-D cross-correlation of NCHW x with (O, C, KH, KW) w, bias";
};
/// @brief `max_pool2d<K, S, P>(x)`.
struct max_pool2d : detail::pool_desc {
  static constexpr std::string_view name = "max_pool2d";
  static constexpr std::string_view node = "pool2d_node";
  static constexpr std::string_view summary = "max over K x K windows of NCHW x";
};
/// @brief `avg_pool2d<K, S, P>(x)`.
struct avg_pool2d : detail::pool_desc {
  static constexpr std::string_view name = "avg_pool2d";
  static constexpr std::string_view node = "pool2d_node";
  static constexpr std::string_view summary = "mean over K x K windows of NCHW x (padding counts as 0)";
};
/// @brief `global_avg_pool2d(x)`.
struct global_avg_pool2d : detail::pool_desc {
  static constexpr std::string_view name = "global_avg_pool2d";
  static constexpr std::string_view node = "global_avg_pool_node";
  static constexpr std::string_view summary = "(N, C, H, W) -> (N, C), the mean of each plane";
};
/// @brief `batch_norm(x, gamma, beta[, options])`.
struct batch_norm : detail::batch_norm_desc {
  static constexpr std::string_view name = "batch_norm";
  static constexpr std::string_view node = "batch_norm_node";
  static constexpr std::string_view summary =
      "per-channel normalisation over dimension 1 (batch or running stats)";
};

// ---------------------------------------------------------------------------- the list

/// @brief Every public op, in the order of the op table. Adding an op means adding it here (and
///        its op_case, and regenerating docs/ops.md): see docs/ops.md, "How to add an op".
using all = type_list<neg, abs, exp, log, log1p, sqrt, rsqrt, square, tanh, sigmoid, relu, softplus, silu,
                      gelu, leaky_relu, clamp, huber, add, sub, mul, div, maximum, minimum, pow, bce_logits,
                      equal, not_equal, less, less_equal, greater, greater_equal, where, stop_gradient, sum,
                      mean, max, logsumexp, argmax, matmul, transpose, softmax, log_softmax,
                      loss_cross_entropy, loss_bce_with_logits, loss_mse, loss_l1, loss_huber, reshape,
                      flatten, share, dropout, conv2d, max_pool2d, avg_pool2d, global_avg_pool2d, batch_norm>;

/// @brief The number of ops in `all`.
inline constexpr std::size_t count = all::size;

/// @brief Satisfied by the descriptors of elementwise ops that name their functor.
template <class Op>
concept has_functor = requires { typename Op::template functor<double>; };

namespace detail {
template <class Op> constexpr bool consistent() {
  if constexpr (has_functor<Op>)
    return Op::differentiable == Op::template functor<double>::differentiable &&
           Op::family == op_family::elementwise;
  else
    return true;
}
template <class... Ops> constexpr bool unique_names(type_list<Ops...>) {
  std::string_view const names[] = {Ops::name...};
  for (std::size_t i = 0; i < sizeof...(Ops); ++i)
    for (std::size_t j = i + 1; j < sizeof...(Ops); ++j)
      if (names[i] == names[j]) return false;
  return true;
}
template <class... Ops> constexpr bool all_consistent(type_list<Ops...>) {
  return (consistent<Ops>() && ...);
}
} // namespace detail

static_assert(detail::unique_names(all{}), "lepton: two entries of ops::all have the same name");
static_assert(detail::all_consistent(all{}),
              "lepton: an elementwise entry of ops::all disagrees with its functor's `differentiable`");

} // namespace lepton::ops
