#pragma once
/// @file scheduler.hpp
/// @brief Learning-rate schedulers: step, exponential, cosine annealing, reduce-on-plateau.
///
/// A scheduler holds a reference to an optimizer and sets its learning rate; call `step()` once
/// per epoch (`reduce_on_plateau::step(metric)` with the monitored value).
///
/// **State** (for checkpoints): every scheduler has `for_each_state(f)`, which calls
/// `f(std::string_view name, double& value)` or `f(std::string_view name, std::size_t& value)` for
/// each member that changes during training or that it captured from the optimizer at construction
/// (`lr0`, `epoch`; `best`, `bad_epochs`), so that a scheduler built anew after a restart can be put
/// back in the same state (lepton::io::save_checkpoint / load_checkpoint do this).

#include <cmath>
#include <cstddef>
#include <limits>
#include <string_view>

#include "optimizer.hpp"

namespace lepton::optim {

namespace detail {
/// What a scheduler's for_each_state visitor must accept (for the stateful_scheduler concept only).
struct scheduler_state_archetype {
  void operator()(std::string_view name, double& value) const;
  void operator()(std::string_view name, std::size_t& value) const;
};
} // namespace detail

/// @brief Satisfied by schedulers whose state can be saved and restored: `for_each_state(f)` visits
///        (name, double&) and (name, std::size_t&) pairs (see the file comment).
/// **Example**: `static_assert(lepton::optim::stateful_scheduler<lepton::optim::cosine_lr<lepton::optim::adam<>>>);`
template <class S>
concept stateful_scheduler = requires(S& s) { s.for_each_state(detail::scheduler_state_archetype{}); };

/// @brief lr = lr0 * gamma^(epoch / step_size).
template <optimizer O> class step_lr {
public:
  step_lr(O& opt, std::size_t step_size, double gamma = 0.1)
      : m_opt(opt), m_lr0(opt.lr()), m_size(step_size), m_gamma(gamma) {
    if (step_size == 0) throw value_error("step_lr: step_size must be > 0");
  }
  void step() { m_opt.set_lr(m_lr0 * std::pow(m_gamma, double(++m_epoch / m_size))); }
  /// Visits `lr0` and `epoch` (checkpoints).
  template <class F> void for_each_state(F&& f) {
    f(std::string_view("lr0"), m_lr0);
    f(std::string_view("epoch"), m_epoch);
  }

private:
  O& m_opt;
  double m_lr0;
  std::size_t m_size, m_epoch = 0;
  double m_gamma;
};

/// @brief lr = lr0 * gamma^epoch.
template <optimizer O> class exponential_lr {
public:
  exponential_lr(O& opt, double gamma) : m_opt(opt), m_lr0(opt.lr()), m_gamma(gamma) {}
  void step() { m_opt.set_lr(m_lr0 * std::pow(m_gamma, double(++m_epoch))); }
  /// Visits `lr0` and `epoch` (checkpoints).
  template <class F> void for_each_state(F&& f) {
    f(std::string_view("lr0"), m_lr0);
    f(std::string_view("epoch"), m_epoch);
  }

private:
  O& m_opt;
  double m_lr0;
  double m_gamma;
  std::size_t m_epoch = 0;
};

/// @brief Cosine annealing from lr0 to eta_min over t_max epochs.
template <optimizer O> class cosine_lr {
public:
  cosine_lr(O& opt, std::size_t t_max, double eta_min = 0)
      : m_opt(opt), m_lr0(opt.lr()), m_tmax(t_max), m_min(eta_min) {
    if (t_max == 0) throw value_error("cosine_lr: t_max must be > 0");
  }
  void step() {
    double e = double(std::min(++m_epoch, m_tmax));
    m_opt.set_lr(m_min + (m_lr0 - m_min) * 0.5 * (1 + std::cos(3.141592653589793 * e / double(m_tmax))));
  }
  /// Visits `lr0` and `epoch` (checkpoints).
  template <class F> void for_each_state(F&& f) {
    f(std::string_view("lr0"), m_lr0);
    f(std::string_view("epoch"), m_epoch);
  }

private:
  O& m_opt;
  double m_lr0;
  std::size_t m_tmax, m_epoch = 0;
  double m_min;
};

/// @brief Multiplies the lr by `factor` when the monitored value (lower is better) has not
///        improved by more than `threshold` (relative) for `patience` epochs.
template <optimizer O> class reduce_on_plateau {
public:
  reduce_on_plateau(O& opt, double factor = 0.1, std::size_t patience = 10, double threshold = 1e-4,
                    double min_lr = 0)
      : m_opt(opt), m_factor(factor), m_patience(patience), m_threshold(threshold), m_min(min_lr) {
    if (!(factor > 0 && factor < 1)) throw value_error("reduce_on_plateau: factor must be in (0, 1)");
  }
  void step(double metric) {
    if (metric < m_best * (1 - m_threshold)) {
      m_best = metric;
      m_bad = 0;
    } else if (++m_bad > m_patience) {
      m_opt.set_lr(std::max(m_min, m_opt.lr() * m_factor));
      m_bad = 0;
    }
  }
  /// Visits `best` and `bad_epochs` (checkpoints).
  template <class F> void for_each_state(F&& f) {
    f(std::string_view("best"), m_best);
    f(std::string_view("bad_epochs"), m_bad);
  }

private:
  O& m_opt;
  double m_factor;
  std::size_t m_patience;
  double m_threshold, m_min;
  double m_best = std::numeric_limits<double>::infinity();
  std::size_t m_bad = 0;
};

} // namespace lepton::optim
