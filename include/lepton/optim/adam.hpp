#pragma once
/// @file adam.hpp
/// @brief Adam (L2 weight decay in the gradient) and AdamW (decoupled weight decay).

#include "optimizer.hpp"

namespace lepton::optim {

/// @brief Options of adam / adamw.
struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;   ///< adam: L2 added to the gradient; adamw: decoupled decay
  double clip_grad_norm = 0.0; ///< clip the global gradient norm to this (0 = off)
  /// Refuse a step whose gradients hold a NaN or an infinity: lepton::numeric_error naming the
  /// parameter, nothing updated (see optimizer_base::begin_step).
  bool check_finite = true;
};

namespace detail {
template <class T, bool Decoupled> class adam_impl : public optimizer_base<T> {
public:
  template <class Model> adam_impl(Model& model, adam_options o)
      : optimizer_base<T>(model, o.lr, o.clip_grad_norm, o.check_finite), m_o(o) {
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
      throw value_error("adam: betas must be in [0, 1), got " + std::to_string(o.beta1) + ", " +
                        std::to_string(o.beta2));
    check_positive<T>(o.eps, "adam eps");
    check_positive<T>(o.weight_decay, "adam weight_decay", true);
    m_m = state_buffer<T>(this->m_total);
    m_v = state_buffer<T>(this->m_total);
  }

  void step() {
    lepton::detail::fp_scope fp;
    T const scale = this->begin_step();
    double const t = static_cast<double>(this->m_step);
    T const b1 = static_cast<T>(m_o.beta1), b2 = static_cast<T>(m_o.beta2);
    T const step_size = static_cast<T>(this->m_lr / (1 - std::pow(m_o.beta1, t)));
    T const inv_bc2 = static_cast<T>(1 / std::sqrt(1 - std::pow(m_o.beta2, t)));
    T const eps = static_cast<T>(m_o.eps), wd = static_cast<T>(m_o.weight_decay);
    T const decay = static_cast<T>(1 - this->m_lr * m_o.weight_decay);
    this->apply(adam_rule<T, Decoupled>{b1, b2, step_size, inv_bc2, eps, wd, decay}, scale, m_m.data(),
                m_v.data());
  }

  /// First and second moment buffers (flat, parameters in reflection order), for checkpoints.
  state_buffer<T>& first_moment() noexcept { return m_m; }
  state_buffer<T>& second_moment() noexcept { return m_v; }
  /// Visits the state for checkpoints (see stateful_optimizer): `m` and `v`, per parameter.
  template <class F> void for_each_state(F&& f) {
    this->visit_state("m", m_m, f);
    this->visit_state("v", m_v, f);
  }

private:
  adam_options m_o;
  state_buffer<T> m_m, m_v;
};
} // namespace detail

/// @brief Adam (Kingma & Ba) with bias correction; weight decay is an L2 term in the gradient.
/// **Example**: `lepton::optim::adam opt{model, {.lr = 1e-3}};  ... lepton::backward(loss); opt.step();`
template <class T = float> class adam : public detail::adam_impl<T, false> {
public:
  template <class Model> adam(Model& model, adam_options o = {}) : detail::adam_impl<T, false>(model, o) {}
};
template <class Model> adam(Model&, adam_options) -> adam<float>;
template <class Model> adam(Model&) -> adam<float>;

/// @brief AdamW (Loshchilov & Hutter): Adam with decoupled weight decay p -= lr * wd * p.
template <class T = float> class adamw : public detail::adam_impl<T, true> {
public:
  template <class Model> adamw(Model& model, adam_options o = {.weight_decay = 0.01})
      : detail::adam_impl<T, true>(model, o) {}
};
template <class Model> adamw(Model&, adam_options) -> adamw<float>;
template <class Model> adamw(Model&) -> adamw<float>;

} // namespace lepton::optim
