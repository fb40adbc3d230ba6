#pragma once
/// @file dropout.hpp
/// @brief Inverted dropout as a fused elementwise op. The mask is never stored: it is a hash of
///        (seed, element index), recomputed identically by the backward pass, so dropout costs no
///        memory traffic beyond the values themselves and is deterministic for a given seed.

#include <cstdint>

#include "elementwise.hpp"

namespace lepton {

/// @brief Zeroes each element with probability p and scales the others by 1 / (1 - p).
template <class A> struct dropout_node : expr_base<dropout_node<A>> {
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  double p;
  std::uint64_t seed;
  dropout_node(A a_, double p_, std::uint64_t s) : a(std::move(a_)), p(p_), seed(s) {}
  shape_t<rank> shape() const { return a.shape(); }
};

namespace detail {

/// Keep/drop decision of element `i` (a counter-based generator: splitmix64 of seed and index).
LEPTON_ALWAYS_INLINE bool dropout_keep(std::uint64_t seed, std::uint64_t i, std::uint32_t threshold) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<std::uint32_t>(z >> 32) >= threshold;
}

template <class A> struct evaluator<dropout_node<A>> {
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
    template <class V> V load_flat(std::size_t i) const {
      return g.template load_flat<V>(i) * self.template mask<V>(i);
    }
    template <class V, std::size_t RB> V load_row(std::size_t const* idx, std::size_t c) const {
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
template <class A> struct describe<dropout_node<A>> {
  static std::string get() { return "dropout(" + describe<A>::get() + ")"; }
};
} // namespace detail

/// @brief Inverted dropout with drop probability p in [0, 1] and a mask seed.
/// Usually used through lepton::nn::dropout, which draws a fresh seed for every call in training.
template <operand X> auto dropout(X&& x, double p, std::uint64_t seed) {
  if (!(p >= 0.0 && p <= 1.0)) throw value_error("dropout: p must be in [0, 1], got " + std::to_string(p));
  return dropout_node<detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)), p, seed);
}

} // namespace lepton
