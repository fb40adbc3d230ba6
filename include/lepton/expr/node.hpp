#pragma once
/// @file node.hpp
/// @brief Leaves of expressions (tensors, views, parameters, constants), operand conversion,
///        compile-time broadcasting of static shapes, and the evaluator protocol.
///
/// Every node type N has `value_type`, `static_dims` (a `lepton::dims<...>`), `rank`, `shape()`,
/// and a CPU evaluator `lepton::detail::evaluator<N>` that implements the loadable protocol of
/// eval/loops.hpp plus:
///  - `forward(ctx, defer)`: compute every value this node reads that must be materialised;
///  - `needs_grad(ctx)`: whether any leaf below wants a gradient (checked once per pass);
///  - `backward(ctx, g)`: push the loadable gradient `g` (shaped like this node) to the children;
///  - `top_gemms`: the number of matmuls whose output this node's fusion group reads directly.

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/constraints.hpp"
#include "../core/expr_base.hpp"
#include "../core/param.hpp"
#include "../core/tensor.hpp"
#include "../eval/anomaly.hpp"
#include "../eval/loops.hpp"

namespace lepton {
namespace detail {

template <class Node> struct evaluator; // specialised next to each node type

/// Where a leaf's gradient goes, for producers (GEMM) that can write it directly.
template <class T> struct grad_sink {
  T* ptr = nullptr;
  bool add = false;
};

// ---------------------------------------------------------------------------- broadcasting

template <class A, class B> struct broadcast_dims;
template <std::size_t... A, std::size_t... B> struct broadcast_dims<dims<A...>, dims<B...>> {
  static constexpr std::size_t ra = sizeof...(A), rb = sizeof...(B), r = ra > rb ? ra : rb;
  static constexpr std::array<std::size_t, ra> a{A...};
  static constexpr std::array<std::size_t, rb> b{B...};
  static constexpr std::size_t at_a(std::size_t i) { return i < r - ra ? 1 : a[i - (r - ra)]; }
  static constexpr std::size_t at_b(std::size_t i) { return i < r - rb ? 1 : b[i - (r - rb)]; }
  static constexpr std::size_t combine(std::size_t x, std::size_t y) {
    if (x == y) return x;
    if (x == 1) return y;
    if (y == 1) return x;
    if (x == dyn) return y;
    if (y == dyn) return x;
    return 0; // mismatch
  }
  static constexpr bool ok() {
    for (std::size_t i = 0; i < r; ++i)
      if (combine(at_a(i), at_b(i)) == 0 && at_a(i) != 0 && at_b(i) != 0) return false;
    return true;
  }
  template <std::size_t... I> static auto make(std::index_sequence<I...>)
      -> dims<combine(at_a(I), at_b(I))...>;
  using type = decltype(make(std::make_index_sequence<r>{}));
};

template <std::size_t R, std::size_t RA, std::size_t RB>
shape_t<R> broadcast_shapes(shape_t<RA> const& a, shape_t<RB> const& b, char const* op) {
  shape_t<R> out{};
  for (std::size_t i = 0; i < R; ++i) {
    std::size_t x = i < R - RA ? 1 : a[i - (R - RA)];
    std::size_t y = i < R - RB ? 1 : b[i - (R - RB)];
    if (x == y || y == 1)
      out[i] = x;
    else if (x == 1)
      out[i] = y;
    else
      throw shape_error(std::string(op) + ": shapes " + to_string(a) + " and " + to_string(b) +
                        " do not broadcast (dimension " + std::to_string(i) + ": " + std::to_string(x) +
                        " vs " + std::to_string(y) + ")");
  }
  return out;
}

} // namespace detail

/// @brief Broadcast of two static shapes (right-aligned; 1 stretches; dyn is checked at run time).
template <class A, class B> using broadcast_t = typename detail::broadcast_dims<A, B>::type;

// ---------------------------------------------------------------------------- leaves

/// @brief Leaf referring to a tensor, tensor_view or parameter's value.
/// @tparam Holder how the leaf holds it: `D const*` (lvalue tensor), `D` (an owned rvalue tensor, a view)
/// @tparam NoGrad true for `lepton::constant(t)`: never receives a gradient
template <class Holder, bool NoGrad = false> struct dense_leaf : expr_base<dense_leaf<Holder, NoGrad>> {
  using dense_type = std::remove_cvref_t<std::remove_pointer_t<Holder>>;
  using value_type = typename dense_type::value_type;
  using static_dims = typename dense_type::static_dims;
  static constexpr std::size_t rank = static_dims::rank;
  static constexpr bool no_grad = NoGrad;

  Holder held;
  explicit dense_leaf(Holder h) : held(std::move(h)) {}

  dense_type const& get() const noexcept {
    if constexpr (std::is_pointer_v<Holder>)
      return *held;
    else
      return held;
  }
  value_type const* data() const noexcept { return get().data(); }
  shape_t<rank> shape() const { return get().shape(); }
};

/// @brief Leaf referring to a trainable parameter (its gradient goes to `param.grad`).
template <class P> struct param_leaf : expr_base<param_leaf<P>> {
  using value_type = typename P::value_type;
  using static_dims = typename P::static_dims;
  static constexpr std::size_t rank = P::rank;
  P const* p;
  explicit param_leaf(P const& x) : p(&x) {}
  shape_t<rank> shape() const { return p->shape(); }
};

/// @brief A scalar constant (broadcast everywhere; no gradient).
template <class T> struct scalar_leaf : expr_base<scalar_leaf<T>> {
  using value_type = T;
  using static_dims = dims<>;
  static constexpr std::size_t rank = 0;
  T value;
  explicit scalar_leaf(T v) : value(v) {}
  shape_t<0> shape() const { return {}; }
};

namespace detail {

template <class X> struct is_tensor_like : std::bool_constant<dense<X>> {};

/// Converts an operand to an expression node. Tensors given as lvalues are referenced (they must
/// outlive the expression); rvalue tensors are moved into the expression; views are copied.
template <class X> auto as_expr(X&& x) {
  using D = std::remove_cvref_t<X>;
  if constexpr (expression<D>)
    return D(std::forward<X>(x));
  else if constexpr (parameter<D>) {
    static_assert(std::is_lvalue_reference_v<X>, "lepton: a parameter in an expression must be an lvalue");
    return param_leaf<D>(x);
  } else if constexpr (dense<D>) {
    if constexpr (std::is_lvalue_reference_v<X> && requires { typename D::view_type; })
      return dense_leaf<D const*>(&x);
    else
      return dense_leaf<D>(std::forward<X>(x));
  } else
    static_assert(sizeof(D) == 0, "lepton: not an expression, tensor or parameter");
}

template <class X> using expr_of = decltype(as_expr(std::declval<X>()));

// ---------------------------------------------------------------------------- leaf evaluators

template <class Holder, bool NoGrad> struct evaluator<dense_leaf<Holder, NoGrad>>
    : view_ev<typename dense_leaf<Holder, NoGrad>::value_type, dense_leaf<Holder, NoGrad>::rank> {
  using node = dense_leaf<Holder, NoGrad>;
  using T = typename node::value_type;
  using base = view_ev<T, node::rank>;
  static constexpr bool may_need_grad = !NoGrad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  explicit evaluator(node const& n) : base(n.data(), n.shape()) {}
  void lepton_identify(identity& id, eval_context&) const { identify_leaf<node>(id, this->ptr, this->shp); }
  void forward(eval_context&, void const*) {}
  base const& buffer() const noexcept { return *this; }
  template <class F> void visit_top(F&&) {}

  bool needs_grad(eval_context const& ctx) const {
    if constexpr (NoGrad)
      return false;
    else
      return ctx.find_target(this->ptr) != nullptr;
  }
  grad_sink<T> sink(eval_context& ctx) const {
    auto* t = ctx.find_target(this->ptr);
    return {t ? static_cast<T*>(t->grad) : nullptr, true};
  }
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (!NoGrad) {
      if (auto s = sink(ctx); s.ptr) {
        g.bind(this->shp);
        run_assign(s.ptr, g, this->shp, s.add);
        anomaly_check<node>(s.ptr, this->size(), "backward");
      }
    }
  }
};

template <class P> struct evaluator<param_leaf<P>> : view_ev<typename P::value_type, P::rank> {
  using node = param_leaf<P>;
  using T = typename P::value_type;
  using base = view_ev<T, P::rank>;
  static constexpr bool may_need_grad = true;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  P* p;
  explicit evaluator(node const& n) : base(n.p->data(), n.p->shape()), p(const_cast<P*>(n.p)) {}
  void lepton_identify(identity& id, eval_context&) const { identify_leaf<node>(id, this->ptr, this->shp); }
  void forward(eval_context&, void const*) {}
  base const& buffer() const noexcept { return *this; }
  template <class F> void visit_top(F&&) {}

  bool needs_grad(eval_context const& ctx) const {
    return ctx.params_get_grads ? !p->frozen : ctx.find_target(this->ptr) != nullptr;
  }
  /// The first contribution of a pass overwrites `grad` (unless accumulating), later ones add.
  grad_sink<T> sink(eval_context& ctx) const {
    if (!ctx.params_get_grads) {
      auto* t = ctx.find_target(this->ptr);
      return {t ? static_cast<T*>(t->grad) : nullptr, true};
    }
    if (p->frozen) return {};
    if (p->grad.shape() != p->value.shape()) p->grad = typename P::tensor_type(p->value.shape());
    bool add = ctx.accumulate || p->grad_pass == ctx.pass;
    p->grad_pass = ctx.pass;
    return {p->grad.data(), add};
  }
  template <class G> void backward(eval_context& ctx, G& g) {
    if (auto s = sink(ctx); s.ptr) {
      g.bind(this->shp);
      run_assign(s.ptr, g, this->shp, s.add);
      anomaly_check<node>(s.ptr, this->size(), "backward");
    }
  }
};

template <class T> struct evaluator<scalar_leaf<T>> : scalar_ev<T> {
  static constexpr bool may_need_grad = false;
  static constexpr bool has_buffer = false;
  static constexpr std::size_t top_gemms = 0;
  explicit evaluator(scalar_leaf<T> const& n) { this->value = n.value; }
  void lepton_identify(identity& id, eval_context&) const {
    id.push(type_word<scalar_leaf<T>>());
    id.push_bytes(this->value);
  }
  shape_t<0> shape() const { return {}; }
  void forward(eval_context&, void const*) {}
  template <class F> void visit_top(F&&) {}
  bool needs_grad(eval_context const&) const { return false; }
  template <class G> void backward(eval_context&, G&) {}
  bool reads(void const*, void const*) const { return false; }
};

template <class H, bool N> struct describe<dense_leaf<H, N>> {
  static std::string get() { return N ? "constant" : "tensor"; }
};
template <class P> struct describe<param_leaf<P>> {
  static std::string get() { return "param"; }
};
template <class T> struct describe<scalar_leaf<T>> {
  static std::string get() { return "scalar"; }
};

} // namespace detail

/// @brief Satisfied by anything usable as an operand: expressions, tensors, views, parameters.
template <class X>
concept operand = expression<X> || dense<std::remove_cvref_t<X>> || parameter<X>;

/// @brief The element type of an operand.
template <operand X> using value_type_of = typename detail::expr_of<X>::value_type;

/// @brief Wraps a tensor so that it never receives a gradient (a constant input).
/// **Example**: `auto loss = lepton::sum(lepton::constant(target) * w);`
template <class D>
  requires dense<std::remove_cvref_t<D>>
auto constant(D&& t) {
  using X = std::remove_cvref_t<D>;
  if constexpr (std::is_lvalue_reference_v<D> && requires { typename X::view_type; })
    return dense_leaf<X const*, true>(&t);
  else
    return dense_leaf<X, true>(std::forward<D>(t));
}

} // namespace lepton
