#pragma once
/// @file step.hpp
/// @brief `buffered_step`: the common part of CPU evaluators whose node computes a buffer of its
///        own, i.e. a step of the evaluation's schedule (eval/dag.hpp): entry resolution, forward
///        once per value, the loadable interface over the output, and backward into the entry;
///        and `write_child_grad`, which hands a step's gradient for one operand to that operand.
///
/// A step evaluator `Ev` derives from `buffered_step<Ev, T, R>` and provides:
///  - `shape()`, `needs_grad(ctx)`, the constant `may_need_grad`;
///  - `compute(ctx)`: evaluate the operands and write the value into `this->out`;
///  - `backward_rule(ctx, g)`: push the summed gradient `g` (a view shaped like the value) to the
///    operands; it runs once per value, from the schedule, after every use has contributed;
///  - optionally `step_identity(id, ctx)`: the value's identity (the node type, the operands'
///    identities, parameters). Without it the step is opaque: never merged with an equal-looking
///    occurrence (a node with side effects, such as batch norm's running statistics).

#include <cstddef>

#include "../../eval/anomaly.hpp"
#include "../../eval/dag.hpp"
#include "../../eval/loops.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"

namespace lepton::detail {

/// The loadable interface of an evaluator whose value is a buffer it refers to (`out`): a step, a
/// GEMM, a reshaped view.
template <class T, std::size_t R> struct output_view {
  view_ev<T, R> out; ///< the value
  view_ev<T, R> const& buffer() const { return out; }
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
};

template <class Derived, class T, std::size_t R> struct buffered_step : output_view<T, R> {
  using output_view<T, R>::out;       ///< the value (the owner's buffer; for a copy, the owner's)
  std::size_t slot = dag_table::npos; ///< the value's DAG entry, once resolved
  bool done = false;                  ///< forward ran (a node may be forwarded more than once)

  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  /// The value's entry: occurrences with equal identities share one.
  LEPTON_NOINLINE std::size_t resolve(eval_context& ctx) {
    if (slot == dag_table::npos) {
      identity id(ctx.mem);
      if constexpr (requires { self().step_identity(id, ctx); })
        self().step_identity(id, ctx);
      else
        id.make_opaque();
      slot = ctx.dag.resolve(id);
    }
    return slot;
  }
  /// The identity of a node reading this value: this value's entry.
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
      out = view_ev<T, R>(static_cast<T const*>(e.out), self().shape());
      ++dag_stats().reused;
      return;
    }
    self().compute(ctx);
    ++dag_stats().computed;
    ctx.dag.complete(slot, this, out.ptr, &run_rule);
  }

  /// Adds `g` to the value's entry; the rule runs once, with every use's sum, from the schedule.
  template <class G> LEPTON_NOINLINE void backward(eval_context& ctx, G& g) {
    if constexpr (Derived::may_need_grad) {
      if (!self().needs_grad(ctx)) return;
      add_entry_grad<T>(ctx, ctx.dag[slot], g, self().shape());
    }
  }
  /// The entry's gradient buffer, for producers (GEMM, convolution) that write a contribution
  /// directly; null when nothing below needs a gradient.
  grad_sink<T> sink(eval_context& ctx) {
    if constexpr (Derived::may_need_grad) {
      if (self().needs_grad(ctx)) return entry_sink<T>(ctx, ctx.dag[slot], shape_size(self().shape()));
    }
    return {};
  }

private:
  static void run_rule(void* owner, eval_context& ctx, void const* grad) {
    if constexpr (Derived::may_need_grad) {
      auto& me = static_cast<Derived&>(*static_cast<buffered_step*>(owner));
      view_ev<T, R> gv(static_cast<T const*>(grad), me.shape());
      me.backward_rule(ctx, gv);
    }
  }
};

/// A child's gradient buffer: the leaf's own gradient memory when it exposes one (`sink`), else an
/// arena buffer handed to `child.backward` once `fill(beta, dst)` has written it.
template <class T, std::size_t R, class Node, class Child, class Fill>
void write_child_grad(eval_context& ctx, Child& c, shape_t<R> const& s, Fill fill) {
  if constexpr (requires { c.sink(ctx); }) {
    if (auto snk = c.sink(ctx); snk.ptr) {
      fill(snk.add, snk.ptr);
      anomaly_check<Node>(snk.ptr, shape_size(s), "backward");
    }
  } else {
    T* d = ctx.alloc<T>(shape_size(s));
    fill(false, d);
    anomaly_check<Node>(d, shape_size(s), "backward");
    view_ev<T, R> dv(d, s);
    c.backward(ctx, dv);
  }
}

} // namespace lepton::detail
