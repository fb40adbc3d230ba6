#pragma once
/// @file rules.hpp
/// @brief The optimizers' update rules as backend-neutral functors over one element (or one SIMD
///        register of elements).
///
/// A rule is the whole arithmetic of one optimizer step for one parameter element: it receives the
/// element's value `p` and its (already clipped) gradient `g` by value, its state by reference,
/// and updates `p` and the state in place. It is written once over a generic lane type `U` (a
/// scalar `T`, a SIMD register of the active ISA level (eval/isa_loops.hpp), or a device thread's scalar) using
/// only `+ - * /`, `splat<U>` and `m::sqrt`, and is marked `LEPTON_HD`, so the same rule runs in
/// the CPU's threaded block loop (optimizer_base::apply) and in a device kernel. The step's scalars
/// (learning rate with bias correction, betas, ...) are members computed once per step.
///
/// Because a rule is elementwise, the result of a step does not depend on how the parameters are
/// split between threads: every element goes through the same operations whichever thread runs it
/// (the blocks start at multiples of the SIMD width, so an element is never moved between the
/// vector body and the scalar tail either).

#include "../core/config.hpp"
#include "../eval/simd.hpp"

namespace lepton::optim::detail {

namespace ld = lepton::detail;

/// @brief SGD: `g += wd p`; with momentum `vel = first ? g : mu vel + damp g`, then
///        `g = nesterov ? g + mu vel : vel`; `p -= lr g`.
template <class T> struct sgd_rule {
  T lr, wd, mu, damp;
  bool first, nesterov;
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD void operator()(U& p, U g) const {
    p = p - ld::splat<U>(lr) * (g + ld::splat<U>(wd) * p);
  }
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD void operator()(U& p, U g, U& vel) const {
    g = g + ld::splat<U>(wd) * p;
    vel = first ? g : ld::splat<U>(mu) * vel + ld::splat<U>(damp) * g;
    g = nesterov ? g + ld::splat<U>(mu) * vel : vel;
    p = p - ld::splat<U>(lr) * g;
  }
};

/// @brief Adam / AdamW: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
///        `p -= step_size m / (sqrt(v) inv_bc2 + eps)` with `step_size = lr / (1 - b1^t)` and
///        `inv_bc2 = 1 / sqrt(1 - b2^t)`. Adam adds `wd p` to the gradient; AdamW (Decoupled)
///        multiplies p by `decay = 1 - lr wd` first.
template <class T, bool Decoupled> struct adam_rule {
  T b1, b2, step_size, inv_bc2, eps, wd, decay;
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD void operator()(U& p, U g, U& m, U& v) const {
    if constexpr (Decoupled)
      p = p * ld::splat<U>(decay);
    else
      g = g + ld::splat<U>(wd) * p;
    m = ld::splat<U>(b1) * m + ld::splat<U>(1 - b1) * g;
    v = ld::splat<U>(b2) * v + ld::splat<U>(1 - b2) * g * g;
    U const denom = ld::m::sqrt(v) * ld::splat<U>(inv_bc2) + ld::splat<U>(eps);
    p = p - ld::splat<U>(step_size) * m / denom;
  }
};

/// @brief RMSprop: `g += wd p`, `s = a s + (1 - a) g^2`, `u = g / (sqrt(s) + eps)`; with momentum
///        `buf = mu buf + u`, `u = buf`; `p -= lr u`.
template <class T> struct rmsprop_rule {
  T lr, a, eps, wd, mu;
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD U direction(U& p, U g, U& s) const {
    g = g + ld::splat<U>(wd) * p;
    s = ld::splat<U>(a) * s + ld::splat<U>(1 - a) * g * g;
    return g / (ld::m::sqrt(s) + ld::splat<U>(eps));
  }
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD void operator()(U& p, U g, U& s) const {
    p = p - ld::splat<U>(lr) * direction(p, g, s);
  }
  template <class U> LEPTON_ALWAYS_INLINE LEPTON_HD void operator()(U& p, U g, U& s, U& buf) const {
    U const u = direction(p, g, s);
    buf = ld::splat<U>(mu) * buf + u;
    p = p - ld::splat<U>(lr) * buf;
  }
};

} // namespace lepton::optim::detail
