#pragma once
/// @file elementwise.hpp
/// @brief CPU evaluators of the elementwise nodes (expr/elementwise.hpp): loadables that apply the
///        op functor in the fused loop, and the fused gradient of each operand from the functor's
///        backward rule. A chain of them is one loop, forward and backward.

#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/elementwise.hpp"
#include "leaf.hpp"

namespace lepton::detail {

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

template <class Op, class A> struct evaluator<unary_node<Op, A>, cpu_backend> {
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

template <class Op, class A, class B> struct evaluator<binary_node<Op, A, B>, cpu_backend> {
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

template <class C, class A, class B> struct evaluator<where_node<C, A, B>, cpu_backend> {
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

template <class A> struct evaluator<stop_gradient_node<A>, cpu_backend> : evaluator<A> {
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

} // namespace lepton::detail
