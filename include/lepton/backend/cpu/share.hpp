#pragma once
/// @file share.hpp
/// @brief CPU evaluator of lepton::share (expr/share.hpp): the operand materialised into an arena
///        buffer once per evaluation and published in the evaluation's DAG table (eval/dag.hpp), so
///        that equal occurrences read it; its backward rule runs once with the summed gradient.

#include <algorithm>

#include "../../eval/dag.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/share.hpp"
#include "leaf.hpp"
#include "step.hpp"

namespace lepton::detail {

template <class A> struct evaluator<share_node<A>, cpu_backend>
    : buffered_step<evaluator<share_node<A>, cpu_backend>, typename A::value_type, A::rank> {
  using node = share_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;
  using buffered_step<evaluator, T, rank>::out;

  Ea a;
  shape_t<rank> shp;

  // Out of line, like matmul's: every use of a shared value is a copy of its evaluator.
  LEPTON_NOINLINE explicit evaluator(node const& n) : a(n.a), shp(a.shape()) {}
  shape_t<rank> const& shape() const { return shp; }

  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  /// The operand, fused as one group, materialised into an arena buffer.
  void compute(eval_context& ctx) {
    T* o = ctx.alloc<T>(shape_size(shp));
    materialise_into(ctx, a, o);
    out = view_ev<T, rank>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (may_need_grad)
      return a.needs_grad(ctx);
    else
      return false;
  }
  /// The operand's backward, once, with the sum of every use's gradient.
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) a.backward(ctx, g);
  }
};

} // namespace lepton::detail
