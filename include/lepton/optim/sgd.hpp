#pragma once
/// @file sgd.hpp
/// @brief Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

#include "optimizer.hpp"

namespace lepton::optim {

/// @brief Options of sgd (PyTorch's semantics).
struct sgd_options {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0; ///< L2 penalty added to the gradient
  bool nesterov = false;
  double clip_grad_norm = 0.0; ///< clip the global gradient norm to this (0 = off)
  /// Refuse a step whose gradients hold a NaN or an infinity: lepton::numeric_error naming the
  /// parameter, nothing updated (see optimizer_base::begin_step).
  bool check_finite = true;
};

/// @brief SGD: v = momentum v + (1 - dampening) g;  p -= lr (nesterov ? g + momentum v : v).
/// **Example**: `lepton::optim::sgd opt{model, {.lr = 0.1, .momentum = 0.9, .nesterov = true}};`
template <class T = float> class sgd : public optimizer_base<T> {
public:
  template <class Model> sgd(Model& model, sgd_options o = {})
      : optimizer_base<T>(model, o.lr, o.clip_grad_norm, o.check_finite), m_o(o) {
    detail::check_positive<T>(o.momentum, "sgd momentum", true);
    detail::check_positive<T>(o.weight_decay, "sgd weight_decay", true);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      throw value_error("sgd: nesterov needs momentum > 0 and dampening = 0");
    if (o.momentum > 0) m_v = detail::state_buffer<T>(this->m_total);
  }

  void step() {
    lepton::detail::fp_scope fp;
    T const scale = this->begin_step();
    T const lr = static_cast<T>(this->m_lr), mu = static_cast<T>(m_o.momentum),
            wd = static_cast<T>(m_o.weight_decay);
    T const damp = static_cast<T>(1 - m_o.dampening);
    detail::sgd_rule<T> const rule{lr, wd, mu, damp, this->m_step == 1, m_o.nesterov};
    if (m_v.size())
      this->apply(rule, scale, m_v.data());
    else
      this->apply(rule, scale);
  }

  /// Momentum buffer (empty without momentum), for checkpoints.
  detail::state_buffer<T>& velocity() noexcept { return m_v; }
  /// Visits the state for checkpoints (see stateful_optimizer): `velocity` per parameter (none
  /// without momentum).
  template <class F> void for_each_state(F&& f) { this->visit_state("velocity", m_v, f); }

private:
  sgd_options m_o;
  detail::state_buffer<T> m_v;
};
template <class Model> sgd(Model&, sgd_options) -> sgd<float>;
template <class Model> sgd(Model&) -> sgd<float>;

} // namespace lepton::optim
