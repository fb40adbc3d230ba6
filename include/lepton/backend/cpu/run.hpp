#pragma once
/// @file run.hpp
/// @brief The CPU backend's evaluation entry points (`detail::runner<cpu_backend, E>`, declared in
///        core/backend.hpp): assignment to host memory, `value`, `backward` and `grad` all build the
///        CPU evaluator tree of the expression and run it in the thread's arena.

#include <algorithm>
#include <cstddef>
#include <tuple>

#include "../../autodiff/grad.hpp"
#include "../../core/fpenv.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "leaf.hpp"

namespace lepton::detail {

template <class D, std::size_t R> void check_shape_of(shape_t<R> const& s) {
  if (!matches(typename D::static_dims{}, s))
    throw shape_error("assignment: the expression's shape " + to_string(s) +
                      " does not fit the destination's " + to_string(typename D::static_dims{}));
}

template <class W> auto target_data(W const& w) {
  if constexpr (parameter<W>)
    return w.value.data();
  else
    return w.data();
}

template <class E> struct runner<cpu_backend, E> {
  using ev_type = evaluator<E, cpu_backend>;
  static_assert(cpu_evaluator<ev_type>, "lepton: internal: an evaluator does not implement the CPU protocol");

  template <class Dst> static void assign(Dst& dst, E const& e) {
    using D = std::remove_cvref_t<Dst>;
    static_assert(
        diagnostic::shapes<assignable_shapes<typename D::static_dims, typename E::static_dims>::value,
                           diagnostic::assignment_shapes_differ, typename D::static_dims,
                           typename E::static_dims>()); // the first error line names both shapes
    static_assert(assignable_shapes<typename D::static_dims, typename E::static_dims>::value,
                  "lepton: the expression's static shape does not fit the destination's");
    using T = typename D::value_type;
    static_assert(
        std::is_same_v<T, typename E::value_type>,
        "lepton: the expression's element type differs from the destination's; use lepton::cast<T>");
    fp_scope fp;
    arena& mem = thread_arena();
    arena_scope scope(mem);
    eval_context ctx(mem);
    ev_type ev(e);
    auto const s = ev.shape();
    check_shape_of<D>(s);
    std::size_t const n = shape_size(s);
    bool same_shape = true;
    if constexpr (requires { dst.resize(s); })
      same_shape = dst.shape() == s;
    else if (dst.shape() != s)
      throw shape_error("assignment to a view: the view has shape " + to_string(dst.shape()) +
                        ", the expression has shape " + to_string(s));
    T* out = dst.data();
    void const* b = out;
    void const* end = out + dst.size();
    if (!same_shape || ev.reads(b, end)) {
      // The destination is read by the expression (or will be reallocated): compute aside first.
      T* tmp = ctx.alloc<T>(n);
      materialise_into(ctx, ev, tmp);
      if constexpr (requires { dst.resize(s); }) dst.resize(s);
      std::copy_n(tmp, n, dst.data());
      return;
    }
    materialise_into(ctx, ev, out);
  }

  static auto value(E const& x, std::size_t* correct) {
    using T = typename E::value_type;
    fp_scope fp;
    arena& mem = thread_arena();
    arena_scope scope(mem);
    eval_context ctx(mem);
    ctx.correct = correct;
    ev_type ev(x);
    T* out = ctx.alloc<T>(1);
    materialise_into(ctx, ev, out);
    return *out;
  }

  /// Forward with saved values, then backward from the root seeded with 1, then each shared value's
  /// rule once with its summed gradient (eval/dag.hpp). Returns the loss value.
  static auto run_backward(eval_context& ctx, E const& f) {
    using T = typename E::value_type;
    ev_type ev(f);
    T* out = ctx.alloc<T>(1);
    materialise_into(ctx, ev, out);
    T const value = *out;
    if (ev.needs_grad(ctx)) {
      scalar_ev<T> seed{T(1)};
      ev.backward(ctx, seed);
      ctx.dag.run_backward(ctx);
    }
    return value;
  }

  static auto backward(E const& loss, backward_options const& opt) {
    fp_scope fp;
    arena& mem = thread_arena();
    arena_scope scope(mem);
    eval_context ctx(mem);
    ctx.keep_values = true;
    ctx.params_get_grads = true;
    ctx.accumulate = opt.accumulate;
    ctx.pass = next_pass_id();
    ctx.correct = opt.correct;
    return run_backward(ctx, loss);
  }

  template <class... W, class... R> static void grad(E const& f, std::tuple<R...>& result, W const&... wrt) {
    fp_scope fp;
    arena& mem = thread_arena();
    arena_scope scope(mem);
    eval_context ctx(mem);
    ctx.keep_values = true;
    ctx.params_get_grads = false;
    std::apply([&](auto&... r) { (ctx.add_target(target_data(wrt), r.data()), ...); }, result);
    run_backward(ctx, f);
  }
};

} // namespace lepton::detail
