#pragma once
/// @file context.hpp
/// @brief State shared by one evaluation (forward, or forward + backward): the arena holding every
///        materialised value, and the gradient targets of a backward pass.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/memory.hpp"
#include "dag.hpp"

namespace lepton::detail {

/// A tensor whose gradient an explicit `lepton::grad(expr, wrt...)` asked for.
struct grad_target {
  void const* data = nullptr; ///< the tensor's values (identifies the leaf)
  void* grad = nullptr;       ///< where its gradient goes (same shape, zero-initialised)
};

struct eval_context {
  explicit eval_context(arena& a, buffer_pool& p = thread_buffer_pool()) : mem(a), pool(p), dag(a) {}
  eval_context(eval_context const&) = delete;
  eval_context& operator=(eval_context const&) = delete;
  /// Hands back the summed gradients still held by DAG entries (a pass that threw midway).
  ~eval_context() { dag.release_grads(pool); }

  arena& mem;
  /// The summed gradients of DAG entries, released when their rule has run (dag.hpp).
  buffer_pool& pool;
  /// The distinct materialised values of this evaluation and their summed gradients (dag.hpp).
  dag_table dag;
  /// Values will be read again by a backward pass: GEMM outputs are not overwritten in place by
  /// their epilogue (the pre-activation is needed by the activation's derivative).
  bool keep_values = false;
  /// Parameters (lepton::param leaves) receive gradients. Off for `lepton::grad(expr, wrt...)`,
  /// where only the listed tensors do.
  bool params_get_grads = false;
  /// Parameters add into their existing gradient instead of overwriting it.
  bool accumulate = false;
  /// Identifies this backward pass: the first contribution to a parameter in a pass overwrites.
  std::uint64_t pass = 0;

  /// When set, cross_entropy with integer labels adds the number of samples whose largest logit
  /// is at their label (ties count as correct) — accuracy without a second forward pass.
  std::size_t* correct = nullptr;

  static constexpr std::size_t max_targets = 32;
  std::array<grad_target, max_targets> targets{};
  std::size_t n_targets = 0;

  grad_target const* find_target(void const* data) const noexcept {
    for (std::size_t i = 0; i < n_targets; ++i)
      if (targets[i].data == data) return &targets[i];
    return nullptr;
  }
  void add_target(void const* data, void* grad) {
    if (n_targets == max_targets) throw value_error("grad: at most 32 tensors per call");
    targets[n_targets++] = {data, grad};
  }

  template <class T> T* alloc(std::size_t n) { return mem.allocate_n<T>(n); }
};

/// Each rule runs once with its summed gradient, which then returns to the pool; what the rule
/// allocated in the arena is released when it returns (see dag.hpp, Workspace).
inline void dag_table::run_backward(eval_context& ctx) {
  for (std::size_t k = m_n_order; k-- > 0;) {
    dag_entry& e = m_entries[m_order[k]];
    if (!e.grad) continue;
    void const* g = e.grad;
    if (!e.run) { // a value nothing below needs a gradient for
      e.grad = nullptr;
      ctx.pool.release(g);
      continue;
    }
    ++dag_stats().backward_runs;
    arena::mark const m = ctx.mem.get_mark();
    e.run(e.owner, ctx, g);
    e.grad = nullptr; // a rule runs once, and nothing may add to it afterwards
    ctx.pool.release(g);
    ctx.mem.release(m);
  }
}

inline std::uint64_t next_pass_id() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

} // namespace lepton::detail
