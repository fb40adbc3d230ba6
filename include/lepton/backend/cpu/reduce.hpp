#pragma once
/// @file reduce.hpp
/// @brief CPU evaluator of the reductions (expr/reduce.hpp): sum, mean, max and logsumexp over all
///        elements or one axis, each with its fused backward rule.

#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/reduce.hpp"
#include "elementwise.hpp"
#include "step.hpp"

namespace lepton::detail {

/// exp(x - m) with m broadcast (the second pass of logsumexp).
template <class Ea, class M> struct exp_shifted {
  using value_type = typename Ea::value_type;
  Ea& a;
  M& mx;
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    a.bind(s);
    mx.bind(s);
  }
  bool flat_ok() const { return a.flat_ok() && mx.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V f(V x, V mv) const {
    // A row of -inf has m = -inf: shift by 0 instead to avoid inf - inf.
    V safe = m::select(mv == splat<V>(-std::numeric_limits<value_type>::infinity()), splat<V>(0), mv);
    return m::exp(x - safe);
  }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return f(a.template load_flat<V>(i), mx.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return f(a.template load_row<V, RB>(idx, c), mx.template load_row<V, RB>(idx, c));
  }
};

/// Loadable gradient of a reduction's input, over the input's shape.
template <class Kind, class Ea, class T, std::size_t R> struct reduce_grad {
  using value_type = T;
  Ea& a;
  view_ev<T, R> out, g; // both in keepdims form
  T scale;
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    if constexpr (!std::is_same_v<Kind, reduce_kind::sum> && !std::is_same_v<Kind, reduce_kind::mean>)
      a.bind(s);
    out.bind(s);
    g.bind(s);
  }
  bool flat_ok() const {
    if constexpr (std::is_same_v<Kind, reduce_kind::sum> || std::is_same_v<Kind, reduce_kind::mean>)
      return g.flat_ok();
    else
      return g.flat_ok() && out.flat_ok() && a.flat_ok();
  }
  template <class V> LEPTON_ALWAYS_INLINE V f(V x, V o, V gv) const {
    if constexpr (std::is_same_v<Kind, reduce_kind::max>)
      return m::select(x == o, gv, splat<V>(0));
    else if constexpr (std::is_same_v<Kind, reduce_kind::logsumexp>)
      return gv * m::exp(x - o);
    else
      return gv * splat<V>(scale);
  }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    if constexpr (std::is_same_v<Kind, reduce_kind::sum> || std::is_same_v<Kind, reduce_kind::mean>)
      return g.template load_flat<V>(i) * splat<V>(scale);
    else
      return f(a.template load_flat<V>(i), out.template load_flat<V>(i), g.template load_flat<V>(i));
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    if constexpr (std::is_same_v<Kind, reduce_kind::sum> || std::is_same_v<Kind, reduce_kind::mean>)
      return g.template load_row<V, RB>(idx, c) * splat<V>(scale);
    else
      return f(a.template load_row<V, RB>(idx, c), out.template load_row<V, RB>(idx, c),
               g.template load_row<V, RB>(idx, c));
  }
};

template <class Kind, std::size_t Axis, bool Keep, class A>
struct evaluator<reduce_node<Kind, Axis, Keep, A>, cpu_backend>
    : buffered_step<evaluator<reduce_node<Kind, Axis, Keep, A>, cpu_backend>, typename A::value_type,
                    reduce_node<Kind, Axis, Keep, A>::rank> {
  using node = reduce_node<Kind, Axis, Keep, A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  static constexpr std::size_t RC = A::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<RC> cs;
  shape_t<rank> shp;
  using buffered_step<evaluator, T, rank>::out;
  explicit evaluator(node const& n) : a(n.a), cs(a.shape()), shp(reduced_shape<rank, Axis, Keep>(cs)) {}

  shape_t<rank> const& shape() const { return shp; }
  shape_t<RC> keep_shape() const {
    shape_t<RC> k = cs;
    for (std::size_t d = 0; d < RC; ++d)
      if (Axis == all_axes || d == Axis) k[d] = 1;
    return k;
  }
  std::size_t count() const { return shape_size(cs) / std::max<std::size_t>(1, shape_size(shp)); }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    a.forward(ctx, nullptr);
    a.bind(cs);
    T* o = ctx.alloc<T>(shape_size(shp));
    constexpr bool is_max =
        std::is_same_v<Kind, reduce_kind::max> || std::is_same_v<Kind, reduce_kind::logsumexp>;
    using Red = std::conditional_t<is_max, max_reducer, sum_reducer>;
    if constexpr (Axis == all_axes)
      o[0] = reduce_all<T, Red>(ctx, a, cs);
    else
      reduce_axis<T, Red>(a, cs, Axis, o);
    if constexpr (std::is_same_v<Kind, reduce_kind::mean>) {
      T inv = T(1) / static_cast<T>(count());
      for (std::size_t i = 0; i < shape_size(shp); ++i) o[i] *= inv;
    }
    if constexpr (std::is_same_v<Kind, reduce_kind::logsumexp>) {
      // second pass: sum exp(x - max), then out = max + log(sum)
      view_ev<T, RC> mx(o, keep_shape());
      exp_shifted<Ea, view_ev<T, RC>> e{a, mx};
      e.bind(cs);
      T* s = ctx.alloc<T>(shape_size(shp));
      if constexpr (Axis == all_axes)
        s[0] = reduce_all<T, sum_reducer>(ctx, e, cs);
      else
        reduce_axis<T, sum_reducer>(e, cs, Axis, s);
      for (std::size_t i = 0; i < shape_size(shp); ++i) {
        T mv = o[i] == -std::numeric_limits<T>::infinity() ? T(0) : o[i];
        o[i] = mv + std::log(s[i]);
        if (s[i] == T(0)) o[i] = -std::numeric_limits<T>::infinity();
      }
    }
    out = view_ev<T, rank>(o, shp);
  }
  bool reads(void const* b, void const* e) const { return a.reads(b, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T scale = std::is_same_v<Kind, reduce_kind::mean>
                    ? T(1) / static_cast<T>(std::max<std::size_t>(1, count()))
                    : T(1);
      reduce_grad<Kind, Ea, T, RC> ga{a, view_ev<T, RC>(out.ptr, keep_shape()),
                                      view_ev<T, RC>(gv.ptr, keep_shape()), scale};
      a.backward(ctx, ga);
    }
  }
};

} // namespace lepton::detail
