#pragma once
/// @file elementwise.hpp
/// @brief Elementwise operations. Each op is one functor holding its forward rule
///        (`operator()`) and its backward rule (`grad`, or `grad_lhs`/`grad_rhs`) side by side;
///        the same functor runs on scalars, SIMD batches and (later) device code.
///
/// Elementwise nodes never materialise: a chain of them is one fused loop, forward and backward.

#include <cmath>
#include <limits>

#include "../eval/materialise.hpp"
#include "node.hpp"

namespace lepton {
namespace op {

using detail::splat;
namespace m = detail::m;

// --------------------------------------------------------------------------- unary functors
// grad(x, y, g) returns g * dy/dx given the input x and the output y = f(x).
#define LEPTON_UNARY_OP(NAME, FWD, GRAD)                                                                     \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = true;                                                             \
    template <class V> LEPTON_ALWAYS_INLINE V operator()(V x) const { return FWD; }                          \
    template <class V> LEPTON_ALWAYS_INLINE V grad(V x, V y, V g) const {                                    \
      (void)x;                                                                                               \
      (void)y;                                                                                               \
      return GRAD;                                                                                           \
    }                                                                                                        \
  };

LEPTON_UNARY_OP(neg, -x, -g)
LEPTON_UNARY_OP(abs, m::abs(x), m::select(x > splat<V>(0), g, m::select(x < splat<V>(0), -g, splat<V>(0))))
LEPTON_UNARY_OP(exp, m::exp(x), g* y)
LEPTON_UNARY_OP(log, m::log(x), g / x)
LEPTON_UNARY_OP(log1p, m::log1p(x), g / (splat<V>(1) + x))
LEPTON_UNARY_OP(sqrt, m::sqrt(x), g* splat<V>(0.5) / y)
LEPTON_UNARY_OP(rsqrt, splat<V>(1) / m::sqrt(x), g* splat<V>(-0.5) * y * y * y)
LEPTON_UNARY_OP(square, x* x, g* splat<V>(2) * x)
LEPTON_UNARY_OP(tanh, m::tanh(x), g*(splat<V>(1) - y * y))
LEPTON_UNARY_OP(sigmoid, splat<V>(1) / (splat<V>(1) + m::exp(-x)), g* y*(splat<V>(1) - y))
// relu keeps NaN (x < 0 is false for NaN), like PyTorch: max(x, 0) would turn it into 0 and hide a
// corrupted input from the loss.
LEPTON_UNARY_OP(relu, m::select(x < splat<V>(0), splat<V>(0), x), m::select(x > splat<V>(0), g, splat<V>(0)))
// softplus(x) = log(1 + e^x), computed without overflow; its derivative is sigmoid(x).
LEPTON_UNARY_OP(softplus, m::max(x, splat<V>(0)) + m::log1p(m::exp(-m::abs(x))),
                g / (splat<V>(1) + m::exp(-x)))
// silu(x) = x * sigmoid(x)
LEPTON_UNARY_OP(silu, x / (splat<V>(1) + m::exp(-x)),
                g*(splat<V>(1) / (splat<V>(1) + m::exp(-x))) *
                    (splat<V>(1) + x * (splat<V>(1) - splat<V>(1) / (splat<V>(1) + m::exp(-x)))))
// gelu(x) = x * Phi(x) (exact, erf-based, like PyTorch's default)
LEPTON_UNARY_OP(gelu, splat<V>(0.5) * x * (splat<V>(1) + m::erf(x * splat<V>(0.70710678118654752440))),
                g*(splat<V>(0.5) * (splat<V>(1) + m::erf(x * splat<V>(0.70710678118654752440))) +
                   x * splat<V>(0.39894228040143267794) * m::exp(splat<V>(-0.5) * x * x)))
#undef LEPTON_UNARY_OP

/// leaky_relu(x) = x if x > 0 else alpha * x
template <class T> struct leaky_relu {
  static constexpr char const* name = "leaky_relu";
  static constexpr bool differentiable = true;
  T alpha;
  template <class V> LEPTON_ALWAYS_INLINE V operator()(V x) const {
    return m::select(x > splat<V>(0), x, x * splat<V>(alpha));
  }
  template <class V> LEPTON_ALWAYS_INLINE V grad(V x, V, V g) const {
    return m::select(x > splat<V>(0), g, g * splat<V>(alpha));
  }
};

/// clamp(x, lo, hi); the gradient passes where lo <= x <= hi.
template <class T> struct clamp {
  static constexpr char const* name = "clamp";
  static constexpr bool differentiable = true;
  T lo, hi;
  template <class V> LEPTON_ALWAYS_INLINE V operator()(V x) const {
    return m::min(m::max(x, splat<V>(lo)), splat<V>(hi));
  }
  template <class V> LEPTON_ALWAYS_INLINE V grad(V x, V, V g) const {
    return m::select(x >= splat<V>(lo), m::select(x <= splat<V>(hi), g, splat<V>(0)), splat<V>(0));
  }
};

/// Huber (smooth L1) of a difference d: 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta).
template <class T> struct huber {
  static constexpr char const* name = "huber";
  static constexpr bool differentiable = true;
  T delta;
  template <class V> LEPTON_ALWAYS_INLINE V operator()(V d) const {
    V a = m::abs(d);
    return m::select(a <= splat<V>(delta), splat<V>(0.5) * d * d,
                     splat<V>(delta) * (a - splat<V>(0.5 * delta)));
  }
  template <class V> LEPTON_ALWAYS_INLINE V grad(V d, V, V g) const {
    return g * m::min(m::max(d, splat<V>(-delta)), splat<V>(delta));
  }
};

// --------------------------------------------------------------------------- binary functors
#define LEPTON_BINARY_OP(NAME, FWD, GA, GB)                                                                  \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = true;                                                             \
    template <class V> LEPTON_ALWAYS_INLINE V operator()(V a, V b) const { return FWD; }                     \
    template <class V> LEPTON_ALWAYS_INLINE V grad_lhs(V a, V b, V y, V g) const {                           \
      (void)a;                                                                                               \
      (void)b;                                                                                               \
      (void)y;                                                                                               \
      return GA;                                                                                             \
    }                                                                                                        \
    template <class V> LEPTON_ALWAYS_INLINE V grad_rhs(V a, V b, V y, V g) const {                           \
      (void)a;                                                                                               \
      (void)b;                                                                                               \
      (void)y;                                                                                               \
      return GB;                                                                                             \
    }                                                                                                        \
  };

LEPTON_BINARY_OP(add, a + b, g, g)
LEPTON_BINARY_OP(sub, a - b, g, -g)
LEPTON_BINARY_OP(mul, a* b, g* b, g* a)
LEPTON_BINARY_OP(div, a / b, g / b, -g* y / b)
// Ties send the whole gradient to the left operand.
LEPTON_BINARY_OP(maximum, m::max(a, b), m::select(a >= b, g, splat<V>(0)), m::select(a >= b, splat<V>(0), g))
LEPTON_BINARY_OP(minimum, m::min(a, b), m::select(a <= b, g, splat<V>(0)), m::select(a <= b, splat<V>(0), g))
LEPTON_BINARY_OP(pow, m::pow(a, b), g* b* m::pow(a, b - splat<V>(1)), g* y* m::log(a))
// Binary cross-entropy of logits a against targets b in [0, 1], in the stable form
// max(a, 0) - a b + log(1 + e^-|a|). d/da = sigmoid(a) - b, d/db = -a.
LEPTON_BINARY_OP(bce_logits, m::max(a, splat<V>(0)) - a * b + m::log1p(m::exp(-m::abs(a))),
                 g*(splat<V>(1) / (splat<V>(1) + m::exp(-a)) - b), -g* a)
#undef LEPTON_BINARY_OP

// Comparisons give 1 or 0 and pass no gradient.
#define LEPTON_COMPARE_OP(NAME, EXPR)                                                                        \
  struct NAME {                                                                                              \
    static constexpr char const* name = #NAME;                                                               \
    static constexpr bool differentiable = false;                                                            \
    template <class V> LEPTON_ALWAYS_INLINE V operator()(V a, V b) const {                                   \
      return m::mask<decltype(EXPR), V>(EXPR);                                                               \
    }                                                                                                        \
    template <class V> LEPTON_ALWAYS_INLINE V grad_lhs(V, V, V, V) const { return splat<V>(0); }             \
    template <class V> LEPTON_ALWAYS_INLINE V grad_rhs(V, V, V, V) const { return splat<V>(0); }             \
  };
LEPTON_COMPARE_OP(equal, a == b)
LEPTON_COMPARE_OP(not_equal, a != b)
LEPTON_COMPARE_OP(less, a < b)
LEPTON_COMPARE_OP(less_equal, a <= b)
LEPTON_COMPARE_OP(greater, a > b)
LEPTON_COMPARE_OP(greater_equal, a >= b)
#undef LEPTON_COMPARE_OP

} // namespace op

// ============================================================================ nodes

/// @brief Elementwise unary node: `Op` applied to each element of `A`.
template <class Op, class A> struct unary_node : expr_base<unary_node<Op, A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  Op op;
  unary_node(A a_, Op op_) : a(std::move(a_)), op(op_) {}
  shape_t<rank> shape() const { return a.shape(); }
};

/// @brief Elementwise binary node with broadcasting.
template <class Op, class A, class B> struct binary_node : expr_base<binary_node<Op, A, B>> {
  static_assert(same_element_type<typename A::value_type, typename B::value_type>::value,
                "lepton: operands have different element types; convert one with lepton::cast<T>");
  static_assert(shapes_broadcast<typename A::static_dims, typename B::static_dims>::value,
                "lepton: operand shapes do not broadcast (each dimension must be equal, 1, or dyn)");
  using value_type = typename A::value_type;
  using static_dims = broadcast_t<typename A::static_dims, typename B::static_dims>;
  static constexpr std::size_t rank = static_dims::rank;
  A a;
  B b;
  Op op;
  binary_node(A a_, B b_, Op op_) : a(std::move(a_)), b(std::move(b_)), op(op_) {}
  shape_t<rank> shape() const { return detail::broadcast_shapes<rank>(a.shape(), b.shape(), Op::name); }
};

/// @brief `where(c, a, b)`: a where c != 0, else b (all three broadcast).
template <class C, class A, class B> struct where_node : expr_base<where_node<C, A, B>> {
  static_assert(same_element_type<typename A::value_type, typename B::value_type>::value &&
                    same_element_type<typename A::value_type, typename C::value_type>::value,
                "lepton: where(c, a, b) needs one element type; convert with lepton::cast<T>");
  using value_type = typename A::value_type;
  using static_dims =
      broadcast_t<typename C::static_dims, broadcast_t<typename A::static_dims, typename B::static_dims>>;
  static constexpr std::size_t rank = static_dims::rank;
  C c;
  A a;
  B b;
  where_node(C c_, A a_, B b_) : c(std::move(c_)), a(std::move(a_)), b(std::move(b_)) {}
  shape_t<rank> shape() const {
    return detail::broadcast_shapes<rank>(
        c.shape(), detail::broadcast_shapes<rank>(a.shape(), b.shape(), "where"), "where");
  }
};

/// @brief Blocks gradients: forward is the identity, backward is zero.
template <class A> struct stop_gradient_node : expr_base<stop_gradient_node<A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  explicit stop_gradient_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return a.shape(); }
};

// ============================================================================ evaluators
namespace detail {

/// Loadable gradient of a unary op's input: op.grad(x, f(x), g), recomputing x (fused).
template <class Op, class Ea, class G> struct unary_grad {
  using value_type = typename Ea::value_type;
  Op op;
  Ea& a;
  G& g;
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    a.bind(s);
    g.bind(s);
  }
  bool flat_ok() const { return a.flat_ok() && g.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    V x = a.template load_flat<V>(i);
    return op.grad(x, op(x), g.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    V x = a.template load_row<V, RB>(idx, c);
    return op.grad(x, op(x), g.template load_row<V, RB>(idx, c));
  }
};

/// Loadable gradient of a binary op's operand `Side` (0 = lhs, 1 = rhs), over the output shape.
template <int Side, class Op, class Ea, class Eb, class G> struct binary_grad {
  using value_type = typename Ea::value_type;
  Op op;
  Ea& a;
  Eb& b;
  G& g;
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    a.bind(s);
    b.bind(s);
    g.bind(s);
  }
  bool flat_ok() const { return a.flat_ok() && b.flat_ok() && g.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V apply(V x, V y, V gv) const {
    if constexpr (Side == 0)
      return op.grad_lhs(x, y, op(x, y), gv);
    else
      return op.grad_rhs(x, y, op(x, y), gv);
  }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return apply(a.template load_flat<V>(i), b.template load_flat<V>(i), g.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return apply(a.template load_row<V, RB>(idx, c), b.template load_row<V, RB>(idx, c),
                 g.template load_row<V, RB>(idx, c));
  }
};

/// Loadable gradient of where(c, a, b) for branch `Side`: g where (c != 0) == (Side == 0).
template <int Side, class Ec, class G> struct where_grad {
  using value_type = typename Ec::value_type;
  Ec& c;
  G& g;
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    c.bind(s);
    g.bind(s);
  }
  bool flat_ok() const { return c.flat_ok() && g.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V pick(V cv, V gv) const {
    if constexpr (Side == 0)
      return m::select(cv != splat<V>(0), gv, splat<V>(0));
    else
      return m::select(cv != splat<V>(0), splat<V>(0), gv);
  }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return pick(c.template load_flat<V>(i), g.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t k) const {
    return pick(c.template load_row<V, RB>(idx, k), g.template load_row<V, RB>(idx, k));
  }
};

template <class Op, class A> struct evaluator<unary_node<Op, A>> {
  using node = unary_node<Op, A>;
  using value_type = typename node::value_type;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad && Op::differentiable;
  static constexpr bool has_buffer = false;
  static constexpr std::size_t top_gemms = Ea::top_gemms;

  Ea a;
  Op op;
  explicit evaluator(node const& n) : a(n.a), op(n.op) {}
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    id.push_bytes(op);
    identify(a, id, ctx);
  }

  shape_t<rank> shape() const { return a.shape(); }
  void forward(eval_context& ctx, void const* defer) { a.forward(ctx, defer); }
  template <class F> void visit_top(F&& f) { a.visit_top(f); }
  template <std::size_t RB> void bind(shape_t<RB> const& s) { a.bind(s); }
  bool flat_ok() const { return a.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return op(a.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return op(a.template load_row<V, RB>(idx, c));
  }
  bool reads(void const* b, void const* e) const { return a.reads(b, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (may_need_grad)
      return a.needs_grad(ctx);
    else
      return false;
  }
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      unary_grad<Op, Ea, G> ga{op, a, g};
      a.backward(ctx, ga);
    }
  }
};

template <class Op, class A, class B> struct evaluator<binary_node<Op, A, B>> {
  using node = binary_node<Op, A, B>;
  using value_type = typename node::value_type;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  using Eb = evaluator<B>;
  static constexpr bool may_need_grad = (Ea::may_need_grad || Eb::may_need_grad) && Op::differentiable;
  static constexpr bool has_buffer = false;
  static constexpr std::size_t top_gemms = Ea::top_gemms + Eb::top_gemms;

  Ea a;
  Eb b;
  Op op;
  shape_t<rank> shp;
  explicit evaluator(node const& n)
      : a(n.a), b(n.b), op(n.op), shp(broadcast_shapes<rank>(a.shape(), b.shape(), Op::name)) {}
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    id.push_bytes(op);
    identify(a, id, ctx);
    identify(b, id, ctx);
  }

  shape_t<rank> const& shape() const { return shp; }
  void forward(eval_context& ctx, void const* defer) {
    a.forward(ctx, defer);
    b.forward(ctx, defer);
  }
  template <class F> void visit_top(F&& f) {
    a.visit_top(f);
    b.visit_top(f);
  }
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    a.bind(s);
    b.bind(s);
  }
  bool flat_ok() const { return a.flat_ok() && b.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return op(a.template load_flat<V>(i), b.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return op(a.template load_row<V, RB>(idx, c), b.template load_row<V, RB>(idx, c));
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || b.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (may_need_grad)
      return a.needs_grad(ctx) || b.needs_grad(ctx);
    else
      return false;
  }
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      bool const ga = Ea::may_need_grad && a.needs_grad(ctx), gb = Eb::may_need_grad && b.needs_grad(ctx);
      if constexpr (!is_view_v<G>) {
        // Both operands need the gradient and one of them is broadcast: compute it once, then
        // hand the same buffer to both (the reduction and e.g. a GEMM read it; no recomputation).
        if (ga && gb && (!same_shape(a.shape()) || !same_shape(b.shape()))) {
          auto gv = grad_value<value_type>(ctx, g, shp);
          backward(ctx, gv);
          return;
        }
      }
      if constexpr (Ea::may_need_grad) {
        if (ga) {
          if constexpr (std::is_same_v<Op, op::add> || std::is_same_v<Op, op::sub>) {
            push_grad(ctx, a, g, shp); // d(a +- b)/da = 1: pass the gradient through unchanged
          } else {
            binary_grad<0, Op, Ea, Eb, G> gr{op, a, b, g};
            push_grad(ctx, a, gr, shp);
          }
        }
      }
      if constexpr (Eb::may_need_grad) {
        if (gb) {
          if constexpr (std::is_same_v<Op, op::add>) {
            push_grad(ctx, b, g, shp);
          } else {
            binary_grad<1, Op, Ea, Eb, G> gr{op, a, b, g};
            push_grad(ctx, b, gr, shp);
          }
        }
      }
    }
  }

private:
  template <std::size_t RC> bool same_shape(shape_t<RC> const& cs) const {
    if constexpr (RC == rank)
      return cs == shp;
    else
      return false;
  }
};

template <class C, class A, class B> struct evaluator<where_node<C, A, B>> {
  using node = where_node<C, A, B>;
  using value_type = typename node::value_type;
  static constexpr std::size_t rank = node::rank;
  using Ec = evaluator<C>;
  using Ea = evaluator<A>;
  using Eb = evaluator<B>;
  static constexpr bool may_need_grad = Ea::may_need_grad || Eb::may_need_grad;
  static constexpr bool has_buffer = false;
  static constexpr std::size_t top_gemms = Ec::top_gemms + Ea::top_gemms + Eb::top_gemms;

  Ec c;
  Ea a;
  Eb b;
  shape_t<rank> shp;
  explicit evaluator(node const& n)
      : c(n.c), a(n.a), b(n.b),
        shp(broadcast_shapes<rank>(c.shape(), broadcast_shapes<rank>(a.shape(), b.shape(), "where"),
                                   "where")) {}
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(c, id, ctx);
    identify(a, id, ctx);
    identify(b, id, ctx);
  }
  shape_t<rank> const& shape() const { return shp; }
  void forward(eval_context& ctx, void const* defer) {
    c.forward(ctx, defer);
    a.forward(ctx, defer);
    b.forward(ctx, defer);
  }
  template <class F> void visit_top(F&& f) {
    c.visit_top(f);
    a.visit_top(f);
    b.visit_top(f);
  }
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    c.bind(s);
    a.bind(s);
    b.bind(s);
  }
  bool flat_ok() const { return c.flat_ok() && a.flat_ok() && b.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return m::select(c.template load_flat<V>(i) != splat<V>(0), a.template load_flat<V>(i),
                     b.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t k) const {
    return m::select(c.template load_row<V, RB>(idx, k) != splat<V>(0), a.template load_row<V, RB>(idx, k),
                     b.template load_row<V, RB>(idx, k));
  }
  bool reads(void const* p, void const* e) const { return c.reads(p, e) || a.reads(p, e) || b.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx) || b.needs_grad(ctx); }
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (Ea::may_need_grad) {
      if (a.needs_grad(ctx)) {
        where_grad<0, Ec, G> ga{c, g};
        push_grad(ctx, a, ga, shp);
      }
    }
    if constexpr (Eb::may_need_grad) {
      if (b.needs_grad(ctx)) {
        where_grad<1, Ec, G> gb{c, g};
        push_grad(ctx, b, gb, shp);
      }
    }
  }
};

template <class Op, class A> struct describe<unary_node<Op, A>> {
  static std::string get() { return std::string(Op::name) + "(" + describe<A>::get() + ")"; }
};
template <class Op, class A, class B> struct describe<binary_node<Op, A, B>> {
  static std::string get() {
    return std::string(Op::name) + "(" + describe<A>::get() + ", " + describe<B>::get() + ")";
  }
};
template <class C, class A, class B> struct describe<where_node<C, A, B>> {
  static std::string get() {
    return "where(" + describe<C>::get() + ", " + describe<A>::get() + ", " + describe<B>::get() + ")";
  }
};
template <class A> struct describe<stop_gradient_node<A>> {
  static std::string get() { return "stop_gradient(" + describe<A>::get() + ")"; }
};

template <class A> struct evaluator<stop_gradient_node<A>> : evaluator<A> {
  using base = evaluator<A>;
  static constexpr bool may_need_grad = false;
  explicit evaluator(stop_gradient_node<A> const& n) : base(n.a) {}
  /// Its own tag: a product of stop_gradient(x) must not share (and so block) the gradient of x's.
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<stop_gradient_node<A>>());
    identify(static_cast<base&>(*this), id, ctx);
  }
  bool needs_grad(eval_context const&) const { return false; }
  template <class G> void backward(eval_context&, G&) {}
};

} // namespace detail

// ============================================================================ user-facing functions

namespace detail {
template <class Op, class X> auto make_unary(X&& x, Op op = {}) {
  using E = expr_of<X>;
  static_assert(std::is_floating_point_v<typename E::value_type>,
                "lepton: elementwise math needs float or double elements; convert with lepton::cast<T>");
  return unary_node<Op, E>(as_expr(std::forward<X>(x)), op);
}
/// Binary op between operands; arithmetic scalars become constants of the other side's type.
template <class Op, class X, class Y> auto make_binary(X&& x, Y&& y, Op op = {}) {
  if constexpr (std::is_arithmetic_v<std::remove_cvref_t<X>>) {
    using T = value_type_of<Y>;
    return binary_node<Op, scalar_leaf<T>, expr_of<Y>>(scalar_leaf<T>(static_cast<T>(x)),
                                                       as_expr(std::forward<Y>(y)), op);
  } else if constexpr (std::is_arithmetic_v<std::remove_cvref_t<Y>>) {
    using T = value_type_of<X>;
    return binary_node<Op, expr_of<X>, scalar_leaf<T>>(as_expr(std::forward<X>(x)),
                                                       scalar_leaf<T>(static_cast<T>(y)), op);
  } else {
    return binary_node<Op, expr_of<X>, expr_of<Y>>(as_expr(std::forward<X>(x)), as_expr(std::forward<Y>(y)),
                                                   op);
  }
}
template <class X, class Y>
concept binary_operands =
    (operand<X> && operand<Y>) || (operand<X> && std::is_arithmetic_v<std::remove_cvref_t<Y>>) ||
    (std::is_arithmetic_v<std::remove_cvref_t<X>> && operand<Y>);
} // namespace detail

#define LEPTON_UNARY_FN(NAME, DOC)                                                                           \
  /** @brief DOC (elementwise; fused). */                                                                    \
  template <operand X> auto NAME(X&& x) { return detail::make_unary<op::NAME>(std::forward<X>(x)); }
LEPTON_UNARY_FN(neg, Negation)
LEPTON_UNARY_FN(abs, Absolute value; gradient 0 at 0)
LEPTON_UNARY_FN(exp, Exponential)
LEPTON_UNARY_FN(log, Natural logarithm)
LEPTON_UNARY_FN(log1p, log(1 + x) accurate near 0)
LEPTON_UNARY_FN(sqrt, Square root)
LEPTON_UNARY_FN(rsqrt, Reciprocal square root 1 / sqrt(x))
LEPTON_UNARY_FN(square, x* x)
LEPTON_UNARY_FN(tanh, Hyperbolic tangent)
LEPTON_UNARY_FN(sigmoid, Logistic function 1 / (1 + e ^ -x))
LEPTON_UNARY_FN(relu, max(x, 0) with NaN kept as NaN; gradient 0 at 0)
LEPTON_UNARY_FN(softplus, log(1 + e ^ x) without overflow)
LEPTON_UNARY_FN(silu, x* sigmoid(x))
LEPTON_UNARY_FN(gelu, Gaussian error linear unit x* Phi(x)(exact erf form))
#undef LEPTON_UNARY_FN

/// @brief leaky_relu(x) = x for x > 0, alpha * x otherwise.
template <operand X> auto leaky_relu(X&& x, double alpha = 0.01) {
  using T = value_type_of<X>;
  return detail::make_unary(std::forward<X>(x), op::leaky_relu<T>{static_cast<T>(alpha)});
}
/// @brief Clamps to [lo, hi]; the gradient flows where lo <= x <= hi.
template <operand X> auto clamp(X&& x, double lo, double hi) {
  if (!(lo <= hi))
    throw value_error("clamp: lo (" + std::to_string(lo) + ") > hi (" + std::to_string(hi) + ")");
  using T = value_type_of<X>;
  return detail::make_unary(std::forward<X>(x), op::clamp<T>{static_cast<T>(lo), static_cast<T>(hi)});
}

/// @brief Elementwise maximum (broadcasting); ties send the gradient to `x`.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto maximum(X&& x, Y&& y) {
  return detail::make_binary<op::maximum>(std::forward<X>(x), std::forward<Y>(y));
}
/// @brief Elementwise minimum (broadcasting); ties send the gradient to `x`.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto minimum(X&& x, Y&& y) {
  return detail::make_binary<op::minimum>(std::forward<X>(x), std::forward<Y>(y));
}
/// @brief x^y elementwise (broadcasting). d/dy uses log(x): keep x > 0 where y needs a gradient.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto pow(X&& x, Y&& y) {
  return detail::make_binary<op::pow>(std::forward<X>(x), std::forward<Y>(y));
}

/// @brief a where c != 0, else b (broadcasting). No gradient flows into c.
/// **Example**: `auto y = lepton::where(x > 0.0f, x, 0.1f * x);`
template <operand C, operand A, operand B> auto where(C&& c, A&& a, B&& b) {
  using Ec = detail::expr_of<C>;
  using Ea = detail::expr_of<A>;
  using Eb = detail::expr_of<B>;
  return where_node<Ec, Ea, Eb>(detail::as_expr(std::forward<C>(c)), detail::as_expr(std::forward<A>(a)),
                                detail::as_expr(std::forward<B>(b)));
}

/// @brief Identity in the forward pass; no gradient flows through (detach).
template <operand X> auto stop_gradient(X&& x) {
  return stop_gradient_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

#define LEPTON_BINARY_OPERATOR(SYM, OPTYPE)                                                                  \
  template <class X, class Y>                                                                                \
    requires detail::binary_operands<X, Y>                                                                   \
  auto operator SYM(X&& x, Y&& y) {                                                                          \
    return detail::make_binary<op::OPTYPE>(std::forward<X>(x), std::forward<Y>(y));                          \
  }
LEPTON_BINARY_OPERATOR(+, add)
LEPTON_BINARY_OPERATOR(-, sub)
LEPTON_BINARY_OPERATOR(*, mul)
LEPTON_BINARY_OPERATOR(/, div)
LEPTON_BINARY_OPERATOR(==, equal)
LEPTON_BINARY_OPERATOR(!=, not_equal)
LEPTON_BINARY_OPERATOR(<, less)
LEPTON_BINARY_OPERATOR(<=, less_equal)
LEPTON_BINARY_OPERATOR(>, greater)
LEPTON_BINARY_OPERATOR(>=, greater_equal)
#undef LEPTON_BINARY_OPERATOR

/// @brief Unary minus.
template <operand X> auto operator-(X&& x) { return neg(std::forward<X>(x)); }

} // namespace lepton
