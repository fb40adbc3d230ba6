#pragma once
/// @file leaf.hpp
/// @brief CPU evaluators of the leaves (tensors and views, parameters, scalar constants): they read
///        memory in place and write gradients into the leaf's gradient buffer (or a grad() target).

#include "../../eval/anomaly.hpp"
#include "../../eval/loops.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/node.hpp"

namespace lepton::detail {

// ---------------------------------------------------------------------------- leaf evaluators

template <class Holder, bool NoGrad> struct evaluator<dense_leaf<Holder, NoGrad>, cpu_backend>
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

template <class P> struct evaluator<param_leaf<P>, cpu_backend> : view_ev<typename P::value_type, P::rank> {
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

template <class T> struct evaluator<scalar_leaf<T>, cpu_backend> : scalar_ev<T> {
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

} // namespace lepton::detail
