#pragma once
/// @file dropout.hpp
/// @brief CPU evaluator of dropout (expr/dropout.hpp): the mask is recomputed from (seed, index) in
///        the fused loop, forward and backward.

#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/dropout.hpp"
#include "elementwise.hpp"

namespace lepton::detail {

template <class A> struct evaluator<dropout_node<A>, cpu_backend> {
  using node = dropout_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = false;
  static constexpr std::size_t top_gemms = Ea::top_gemms;

  Ea a;
  std::uint64_t seed;
  std::uint32_t threshold;
  T scale;
  shape_t<rank> shp;
  shape_t<rank> st{};
  explicit evaluator(node const& n)
      : a(n.a), seed(n.seed), threshold(threshold_of(n.p)),
        scale(n.p >= 1 ? T(0) : static_cast<T>(1.0 / (1.0 - n.p))), shp(a.shape()) {}

  static std::uint32_t threshold_of(double p) {
    double t = p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : static_cast<std::uint32_t>(t);
  }
  shape_t<rank> const& shape() const { return shp; }
  /// Its identity (eval/dag.hpp): the mask is a function of (seed, p, index), so copies with the same
  /// seed and probability are equal values.
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    id.push(seed);
    id.push(threshold);
    identify(a, id, ctx);
  }
  void forward(eval_context& ctx, void const* defer) { a.forward(ctx, defer); }
  template <class F> void visit_top(F&& f) { a.visit_top(f); }
  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    a.bind(s);
    bool same = RB == rank && shape_size(s) == shape_size(shp);
    if (!same) throw shape_error("dropout: its output cannot be broadcast; apply dropout after broadcasting");
    auto cs = c_strides(shp);
    for (std::size_t d = 0; d < rank; ++d) st[d] = cs[d];
  }
  bool flat_ok() const { return a.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V mask(std::size_t i) const {
    if constexpr (is_scalar_v<V>)
      return dropout_keep(seed, i, threshold) ? scale : T(0);
    else {
      alignas(64) T buf[lanes_v<V>];
      for (std::size_t l = 0; l < lanes_v<V>; ++l)
        buf[l] = dropout_keep(seed, i + l, threshold) ? scale : T(0);
      return V::load_aligned(buf);
    }
  }
  std::size_t index(std::size_t const* idx, std::size_t c) const {
    std::size_t off = c;
    for (std::size_t d = 0; d + 1 < rank; ++d) off += idx[d] * st[d];
    return off;
  }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return a.template load_flat<V>(i) * mask<V>(i);
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return a.template load_row<V, RB>(idx, c) * mask<V>(index(idx, c));
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }

  template <class G> struct grad_t {
    using value_type = T;
    evaluator& self;
    G& g;
    template <std::size_t RB> void bind(shape_t<RB> const& s) {
      g.bind(s);
      self.bind(s);
    }
    bool flat_ok() const { return g.flat_ok(); }
    template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
      return g.template load_flat<V>(i) * self.template mask<V>(i);
    }
    template <class V, std::size_t RB>
    LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
      return g.template load_row<V, RB>(idx, c) * self.template mask<V>(self.index(idx, c));
    }
  };
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      grad_t<G> gg{*this, g};
      a.backward(ctx, gg);
    }
  }
};

} // namespace lepton::detail
