#pragma once
/// @file rmsprop.hpp
/// @brief RMSprop (PyTorch's form, optional momentum and weight decay).

#include "optimizer.hpp"

namespace lepton::optim {

/// @brief Options of rmsprop.
struct rmsprop_options {
  double lr = 1e-2;
  double alpha = 0.99; ///< smoothing of the squared-gradient average
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  double clip_grad_norm = 0.0;
  /// Refuse a step whose gradients hold a NaN or an infinity: lepton::numeric_error naming the
  /// parameter, nothing updated (see optimizer_base::begin_step).
  bool check_finite = true;
};

/// @brief RMSprop: s = alpha s + (1 - alpha) g^2;  p -= lr g / (sqrt(s) + eps) (with momentum: via a buffer).
template <class T = float> class rmsprop : public optimizer_base<T> {
public:
  template <class Model> rmsprop(Model& model, rmsprop_options o = {})
      : optimizer_base<T>(model, o.lr, o.clip_grad_norm, o.check_finite), m_o(o) {
    if (!(o.alpha >= 0 && o.alpha < 1))
      throw value_error("rmsprop: alpha must be in [0, 1), got " + std::to_string(o.alpha));
    detail::check_positive<T>(o.eps, "rmsprop eps");
    detail::check_positive<T>(o.weight_decay, "rmsprop weight_decay", true);
    detail::check_positive<T>(o.momentum, "rmsprop momentum", true);
    m_s = detail::state_buffer<T>(this->m_total);
    if (o.momentum > 0) m_b = detail::state_buffer<T>(this->m_total);
  }

  void step() {
    lepton::detail::fp_scope fp;
    T const scale = this->begin_step();
    T const lr = static_cast<T>(this->m_lr), a = static_cast<T>(m_o.alpha), eps = static_cast<T>(m_o.eps);
    T const wd = static_cast<T>(m_o.weight_decay), mu = static_cast<T>(m_o.momentum);
    detail::rmsprop_rule<T> const rule{lr, a, eps, wd, mu};
    if (m_b.size())
      this->apply(rule, scale, m_s.data(), m_b.data());
    else
      this->apply(rule, scale, m_s.data());
  }

  detail::state_buffer<T>& square_avg() noexcept { return m_s; }
  detail::state_buffer<T>& momentum_buffer() noexcept { return m_b; }
  /// Visits the state for checkpoints (see stateful_optimizer): `square_avg`, and `momentum_buffer`
  /// with momentum, per parameter.
  template <class F> void for_each_state(F&& f) {
    this->visit_state("square_avg", m_s, f);
    this->visit_state("momentum_buffer", m_b, f);
  }

private:
  rmsprop_options m_o;
  detail::state_buffer<T> m_s, m_b;
};
template <class Model> rmsprop(Model&, rmsprop_options) -> rmsprop<float>;
template <class Model> rmsprop(Model&) -> rmsprop<float>;

} // namespace lepton::optim
