#pragma once
/// @file optimizer.hpp
/// @brief The optimizer contract and what every optimizer shares: the list of a model's
///        parameters, global-norm gradient clipping, and state for checkpoints.
///
/// **What an optimizer is.** It is built from a model (`lepton::optim::adam opt{model, {.lr = 1e-3}}`)
/// and keeps references to every parameter found by reflection; the model must outlive it.
/// `step()` updates every non-frozen parameter from its `grad` (written by `lepton::backward`) in
/// one pass that reads value, gradient and state once and writes them once (clipping, weight decay
/// and the update are fused: each optimizer's arithmetic is one rule of optim/rules.hpp). The pass
/// runs over fixed blocks of every parameter on lepton's thread pool (`set_num_threads`), and its
/// result does not depend on the number of threads (bit-identical at 1 and N threads; the gradient
/// norm of clipping is summed per block, then over the blocks in a fixed order). No allocation
/// happens in `step()`.
/// **What it requires.** Every parameter has the optimizer's element type (float by default).

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/fpenv.hpp"
#include "../core/memory.hpp"
#include "../core/parallel.hpp"
#include "../eval/loops.hpp"
#include "../eval/simd.hpp"
#include "../nn/model_view.hpp"
#include "rules.hpp"

namespace lepton::optim {

/// @brief Satisfied by lepton's optimizers.
template <class O>
concept optimizer = requires(O& o, double lr) {
  o.step();
  { o.lr() } -> std::convertible_to<double>;
  o.set_lr(lr);
};

namespace detail {
/// What a for_each_state visitor must accept (for the stateful_optimizer concept only).
template <class T> struct state_visitor_archetype {
  void operator()(std::string_view state, std::string_view param, T* data, std::size_t size) const;
};
} // namespace detail

/// @brief Satisfied by optimizers whose whole state can be saved and restored (checkpoints): the
///        learning rate (`lr()`/`set_lr()`), the step count (`steps()`/`set_steps()`) and every state
///        buffer, visited per parameter by `for_each_state(f)` as
///        `f(std::string_view state, std::string_view parameter, T* data, std::size_t size)` in
///        parameter (reflection) order. lepton's sgd, adam, adamw and rmsprop satisfy it.
/// **Example**: `static_assert(lepton::optim::stateful_optimizer<lepton::optim::adam<float>>);`
template <class O>
concept stateful_optimizer = optimizer<O> && requires(O& o, std::uint64_t n) {
  typename O::value_type;
  { o.steps() } -> std::convertible_to<std::uint64_t>;
  o.set_steps(n);
  o.for_each_state(detail::state_visitor_archetype<typename O::value_type>{});
};

namespace detail {

/// One parameter seen by an optimizer.
template <class T> struct slot {
  T* value;
  T* grad;
  std::size_t size;
  bool const* frozen;
  std::size_t offset; ///< into the optimizer's flat state buffers
  std::string name;
};

/// A flat, aligned, zero-initialised buffer of optimizer state.
template <class T> class state_buffer {
public:
  state_buffer() = default;
  explicit state_buffer(std::size_t n)
      : m_n(n), m_p(static_cast<T*>(lepton::detail::aligned_alloc_bytes(n * sizeof(T)))) {
    std::fill_n(m_p, n, T(0));
  }
  state_buffer(state_buffer&& o) noexcept : m_n(o.m_n), m_p(o.m_p) {
    o.m_p = nullptr;
    o.m_n = 0;
  }
  state_buffer& operator=(state_buffer&& o) noexcept {
    std::swap(m_n, o.m_n);
    std::swap(m_p, o.m_p);
    return *this;
  }
  ~state_buffer() {
    if (m_p) lepton::detail::aligned_free_bytes(m_p);
  }
  T* data() noexcept { return m_p; }
  T const* data() const noexcept { return m_p; }
  std::size_t size() const noexcept { return m_n; }

private:
  std::size_t m_n = 0;
  T* m_p = nullptr;
};

/// Collects the parameters of a model (nn::model_view); allocates their gradients so their
/// addresses stay put.
template <class T, class Model> std::vector<slot<T>> collect(Model& model, std::size_t& total) {
  nn::model_view const view(model, nn::gradients::allocate, nn::element<T>);
  std::vector<slot<T>> slots;
  slots.reserve(view.parameters().size());
  for (auto const& p : view.parameters())
    slots.push_back({p.values<T>(), p.grads<T>(), p.size, p.frozen, p.offset, p.name});
  total = view.parameter_scalars();
  if (slots.empty()) throw value_error("optimizer: the model has no parameters");
  return slots;
}

/// A fixed piece of one parameter that one thread updates: elements [begin, end) of slot `slot`.
/// Blocks start at multiples of update_block (a multiple of every SIMD width), so the split, and
/// therefore every result, is the same whatever the number of threads.
struct block {
  std::size_t slot, begin, end;
};
/// Elements per block: 64 KiB of float, large enough to amortise the scheduling, small enough
/// to balance 10^5-parameter models over a few threads.
inline constexpr std::size_t update_block = 16384;
/// Total elements below which a step stays on the calling thread (waking the pool costs more).
inline constexpr std::size_t update_parallel_min = 65536;

template <class T> void check_positive(double v, char const* what, bool allow_zero = false) {
  if (!(allow_zero ? v >= 0 : v > 0) || !std::isfinite(v))
    throw value_error(std::string(what) + " must be " + (allow_zero ? ">= 0" : "> 0") + ", got " +
                      std::to_string(v));
}

} // namespace detail

/// @brief Base of the optimizers: parameters, learning rate, clipping and step count.
template <class T> class optimizer_base {
public:
  using value_type = T;

  double lr() const noexcept { return m_lr; }
  /// Sets the learning rate (schedulers call this); throws value_error when not finite or < 0.
  void set_lr(double lr) {
    detail::check_positive<T>(lr, "learning rate", true);
    m_lr = lr;
  }
  /// Number of step() calls so far.
  std::uint64_t steps() const noexcept { return m_step; }
  /// Sets the step count (restoring a checkpoint): the next step() is step `n + 1`. Adam's bias
  /// correction and SGD's first-step rule depend on it.
  /// **Example**: `opt.set_steps(1200);`
  void set_steps(std::uint64_t n) noexcept { m_step = n; }
  /// Global gradient norm measured by the last step() (before clipping); 0 if clipping is off.
  double last_grad_norm() const noexcept { return m_last_norm; }
  /// Number of parameter tensors and scalars.
  std::size_t parameter_tensors() const noexcept { return m_slots.size(); }
  std::size_t parameter_scalars() const noexcept { return m_total; }

  /// Sets every gradient to zero (only needed with `backward(loss, {.accumulate = true})`).
  void zero_grad() {
    for (auto& s : m_slots) std::fill_n(s.grad, s.size, T(0));
  }

  /// Whether step() refuses non-finite gradients (the options' `check_finite`, default true).
  bool checks_finite() const noexcept { return m_check_finite; }
  /// Turns the finiteness check of step() on or off.
  void set_check_finite(bool on) noexcept { m_check_finite = on; }

protected:
  template <class Model> optimizer_base(Model& model, double lr, double clip_norm, bool check_finite = true)
      : m_lr(lr), m_clip(clip_norm), m_check_finite(check_finite) {
    detail::check_positive<T>(lr, "learning rate", true);
    if (clip_norm < 0 || !std::isfinite(clip_norm))
      throw value_error("clip_grad_norm must be >= 0 (0 = off)");
    m_slots = detail::collect<T>(model, m_total);
    for (std::size_t k = 0; k < m_slots.size(); ++k)
      for (std::size_t b = 0; b < m_slots[k].size; b += detail::update_block)
        m_blocks.push_back({k, b, std::min(m_slots[k].size, b + detail::update_block)});
    m_block_sq.assign(m_blocks.size(), 0.0);
  }

  /// Runs `f(slot, begin, end)` over every block of every non-frozen parameter: on the pool when the
  /// model is large enough and lepton has several threads, inline otherwise. Blocks are independent.
  template <class F> void for_each_block(F&& f) {
    auto run = [&](std::size_t k) {
      detail::block const& b = m_blocks[k];
      detail::slot<T>& s = m_slots[b.slot];
      if (!*s.frozen) f(s, b.begin, b.end, k);
    };
    std::size_t const n = m_blocks.size();
    if (m_total < detail::update_parallel_min || lepton::detail::pool().size() < 2) {
      for (std::size_t k = 0; k < n; ++k) run(k);
      return;
    }
    lepton::detail::parallel_range(n, 1, [&](std::size_t kb, std::size_t ke) {
      for (std::size_t k = kb; k < ke; ++k) run(k);
    });
  }

  /// One pass of an update rule (optim/rules.hpp) over every non-frozen parameter: for each element,
  /// `rule(p, scale * g, state...)` with the value, the gradient times `scale` (clipping) and the
  /// element of each state buffer (flat, in slot-offset order), then p and the state are stored.
  template <class Rule, class... S> void apply(Rule const& rule, T scale, S*... state) {
    static_assert(sizeof...(S) <= 2, "lepton: internal: an update rule has at most two state buffers");
    for_each_block([&](detail::slot<T>& s, std::size_t b, std::size_t e, std::size_t) {
      T* const st[sizeof...(S) + 1] = {(state + s.offset)..., nullptr};
      // the loop compiled for lepton::active_isa() (eval/isa/loops-inl.hpp)
      lepton::detail::optimizer_update<T, sizeof...(S)>(rule, scale, s.value, s.grad, st, b, e);
    });
  }

  /// Checks the gradients (unless check_finite is off), then counts the step and returns the factor
  /// by which gradients are scaled this step (global-norm clipping). Throws lepton::numeric_error,
  /// before anything is written, when a non-frozen parameter's gradient holds a NaN or an infinity:
  /// a step never writes a non-finite value into a parameter because of its gradient. The check is
  /// one read of the gradients (fused with the norm when clipping is on): about 1 MB for a 270k
  /// parameter MLP, a few percent of its batch-64 step.
  T begin_step() {
    // (the fp_scope lives in each optimizer's step(): it must cover the update loop)
    if (m_clip <= 0) {
      if (m_check_finite) {
        // per block: 0 when finite (g - g is 0 for a finite g), NaN otherwise
        for_each_block([&](detail::slot<T> const& s, std::size_t b, std::size_t e, std::size_t k) {
          m_block_sq[k] = finite_range(s, b, e) ? 0.0 : 1.0;
        });
        for (std::size_t k = 0; k < m_blocks.size(); ++k)
          if (m_block_sq[k] != 0 && !*m_slots[m_blocks[k].slot].frozen)
            throw_non_finite(m_slots[m_blocks[k].slot]);
      }
      ++m_step;
      return T(1);
    }
    for_each_block([&](detail::slot<T> const& s, std::size_t b, std::size_t e, std::size_t k) {
      double const part = lepton::detail::sum_squares(s.grad, b, e);
      m_block_sq[k] = part;
    });
    // Summed over the blocks in their fixed order: the same norm at any number of threads.
    double sq = 0;
    for (std::size_t k = 0; k < m_blocks.size(); ++k) {
      detail::slot<T> const& s = m_slots[m_blocks[k].slot];
      if (*s.frozen) continue;
      // A non-finite sum of squares is either a non-finite gradient or squares that overflowed T.
      if (!std::isfinite(m_block_sq[k]) && m_check_finite && !finite_range(s, 0, s.size)) throw_non_finite(s);
      sq += m_block_sq[k];
    }
    ++m_step;
    m_last_norm = std::sqrt(sq);
    return m_last_norm > m_clip ? static_cast<T>(m_clip / (m_last_norm + 1e-6)) : T(1);
  }

  /// Whether every gradient element of a slot in [b, e) is finite: g - g is 0 for a finite g, NaN
  /// otherwise.
  static bool finite_range(detail::slot<T> const& s, std::size_t b, std::size_t e) noexcept {
    return lepton::detail::all_finite(s.grad, b, e);
  }

  [[noreturn]] void throw_non_finite(detail::slot<T> const& s) const {
    std::size_t i = 0;
    while (i < s.size && std::isfinite(s.grad[i])) ++i;
    throw numeric_error("optimizer step " + std::to_string(m_step + 1) + ": the gradient of parameter '" +
                        s.name + "' holds " +
                        (i < s.size ? std::to_string(double(s.grad[i])) : "a non-finite value") +
                        " at element " + std::to_string(i) + " of " + std::to_string(s.size) +
                        "; no parameter was updated (lower the learning rate, clip gradients with "
                        "clip_grad_norm or check the data; check_finite = false skips this check)");
  }

  /// Calls `f(state, parameter name, data, size)` for each parameter's slice of a state buffer
  /// (nothing for an empty buffer, e.g. sgd without momentum). Derived classes' for_each_state use it.
  template <class F> void visit_state(std::string_view state, detail::state_buffer<T>& buf, F& f) {
    if (buf.size() == 0) return;
    for (auto& s : m_slots) f(state, std::string_view(s.name), buf.data() + s.offset, s.size);
  }

  std::vector<detail::slot<T>> m_slots;
  std::vector<detail::block> m_blocks;
  std::vector<double> m_block_sq; ///< per block: sum of squares (clipping) or non-finite flag
  std::size_t m_total = 0;
  double m_lr;
  double m_clip;
  bool m_check_finite = true;
  double m_last_norm = 0;
  std::uint64_t m_step = 0;
};

} // namespace lepton::optim
