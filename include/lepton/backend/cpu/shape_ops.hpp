#pragma once
/// @file shape_ops.hpp
/// @brief CPU evaluator of reshape/flatten (expr/shape_ops.hpp): a view of the operand's buffer
///        when it is materialised, a re-indexing loadable otherwise.

#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/shape_ops.hpp"
#include "elementwise.hpp"
#include "step.hpp"

namespace lepton::detail {

template <class A, std::size_t... Dims> struct evaluator<reshape_node<A, Dims...>, cpu_backend>
    : output_view<typename A::value_type, reshape_node<A, Dims...>::rank> {
  using node = reshape_node<A, Dims...>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;
  Ea a;
  shape_t<rank> shp;
  using output_view<T, rank>::out;
  explicit evaluator(node const& n) : a(n.a), shp(reshaped<Dims...>(a.shape())) {}
  shape_t<rank> const& shape() const { return shp; }
  /// Its identity (eval/dag.hpp): a pure function of its type and operands. reshape is a view, not
  /// a step: it is part of the group that reads it, and a value reading it is shared between equal copies.
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void forward(eval_context& ctx, void const*) { out = view_ev<T, rank>(value_of(ctx, a).ptr, shp); }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      view_ev<T, A::rank> dv(gv.ptr, a.shape());
      a.backward(ctx, dv);
    }
  }
};

} // namespace lepton::detail
