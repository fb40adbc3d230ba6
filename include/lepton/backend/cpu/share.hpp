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

namespace lepton::detail {

template <class A> struct evaluator<share_node<A>, cpu_backend> {
  using node = share_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<rank> shp;
  view_ev<T, rank> out;
  std::size_t slot = dag_table::npos; ///< the value's DAG entry, once resolved
  bool done = false;                  ///< forward ran (a node may be forwarded more than once)

  // Out of line, like matmul's: every use of a shared value is a copy of its evaluator.
  LEPTON_NOINLINE explicit evaluator(node const& n) : a(n.a), shp(a.shape()) {}
  shape_t<rank> const& shape() const { return shp; }

  LEPTON_NOINLINE std::size_t resolve(eval_context& ctx) {
    if (slot == dag_table::npos) {
      identity id(ctx.mem);
      id.push(type_word<node>());
      identify(a, id, ctx);
      slot = ctx.dag.resolve(id);
    }
    return slot;
  }
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<dag_entry>());
    id.push(resolve(ctx));
  }

  /// Reads the value if an equal occurrence computed it already, else computes and publishes it.
  LEPTON_NOINLINE void forward(eval_context& ctx, void const*) {
    if (done) return;
    done = true;
    dag_entry& e = ctx.dag[resolve(ctx)];
    if (e.computed && e.owner != this) {
      out = view_ev<T, rank>(static_cast<T const*>(e.out), shp);
      ++dag_stats().reused;
      return;
    }
    T* o = ctx.alloc<T>(shape_size(shp));
    materialise_into(ctx, a, o);
    ++dag_stats().computed;
    out = view_ev<T, rank>(o, shp);
    ctx.dag.complete(slot, this, o, &deferred_backward);
  }
  view_ev<T, rank> const& buffer() const { return out; }
  template <class F> void visit_top(F&&) {}
  template <std::size_t RB> void bind(shape_t<RB> const& s) { out.bind(s); }
  bool flat_ok() const { return out.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return out.template load_flat<V>(i);
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return out.template load_row<V, RB>(idx, c);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (may_need_grad)
      return a.needs_grad(ctx);
    else
      return false;
  }

  /// Adds `g` to the value's entry; the operand's backward runs once, with the sum of every use's
  /// gradient, when dag_table::run_backward reaches the entry.
  template <class G> LEPTON_NOINLINE void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      add_entry_grad<T>(ctx, ctx.dag[slot], g, shp);
    }
  }

private:
  static void deferred_backward(void* self, eval_context& ctx, void const* grad) {
    if constexpr (may_need_grad) {
      auto& me = *static_cast<evaluator*>(self);
      view_ev<T, rank> gv(static_cast<T const*>(grad), me.shp);
      me.a.backward(ctx, gv);
    }
  }
};

} // namespace lepton::detail
