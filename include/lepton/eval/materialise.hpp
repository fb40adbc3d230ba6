#pragma once
/// @file materialise.hpp
/// @brief The planner's run-time half: turning a fusion group into a buffer (with the GEMM
///        epilogue when the group directly consumes one matmul), and moving gradients across
///        materialisation boundaries and broadcasts.

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "../core/shape.hpp"
#include "anomaly.hpp"
#include "context.hpp"
#include "loops.hpp"
#include "protocol.hpp"

namespace lepton::detail {

template <class Ev> constexpr bool is_gemm_ev = evaluator_traits<Ev>::writes_in_place;

template <class Ev> struct node_of {
  using type = void;
};
template <class Ev>
  requires requires { typename Ev::node; }
struct node_of<Ev> {
  using type = typename Ev::node;
};

/// Recognises the groups `act(matmul(x, w) + b)` (act = identity or relu, b a rank-1 buffer) that
/// run as the GEMM's register epilogue; specialised in backend/cpu/linalg.hpp; the planner's epilogue trait, where `run(ctx, ev, dst)`
/// evaluates such a group into dst and returns false (having done nothing) when the shapes do not
/// fit that form (a bias that is itself broadcast).
template <class Ev> struct bias_act_group {
  static constexpr bool value = false;
};

/// Evaluates `ev` (not yet forwarded) into contiguous memory `dst` shaped like `ev.shape()`.
/// `act(matmul + bias)` applies bias and activation to the GEMM's accumulators before they are
/// stored (bias_act_group). Any other 2-D group reading exactly one matmul of its own shape runs as
/// that GEMM's block epilogue: each C block is transformed right after the GEMM finishes it, while
/// it is still in cache.
template <class T, class Ev> void materialise_into_impl(eval_context& ctx, Ev& ev, T* dst) {
  auto const s = ev.shape();
  if constexpr (bias_act_group<Ev>::value) {
    if (bias_act_group<Ev>::run(ctx, ev, dst)) return;
  }
  if constexpr (is_gemm_ev<Ev>) {
    ev.set_output(dst);
    ev.forward(ctx, nullptr);
    return;
  } else if constexpr (evaluator_traits<Ev>::top_gemms == 1 && Ev::rank == 2) {
    bool done = false;
    ev.visit_top([&](auto& mm) {
      if constexpr (is_gemm_ev<std::remove_cvref_t<decltype(mm)>>) {
        if (mm.shape() != s) return;
        if (!ctx.keep_values) mm.set_output(dst); // in place: the pre-activation is not needed later
        ev.forward(ctx, &mm);
        ev.bind(s);
        done = true;
        if (mm.is_aliased()) { // the product was computed elsewhere (a reused value)
          run_assign(dst, ev, s, false);
          return;
        }
        std::size_t const ld = s[1];
        mm.run_gemm([&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
          run_block(dst, ld, ev, i0, i1, j0, j1);
        });
        if (ctx.keep_values) mm.publish(ctx); // else the block epilogue overwrote the product
      }
    });
    if (done) return;
  }
  ev.forward(ctx, nullptr);
  ev.bind(s);
  run_assign(dst, ev, s, false);
}

/// Anomaly mode: within a fused group that produced a non-finite value, the innermost node whose
/// own values are non-finite while its children's are finite (children first, depth first).
template <class Ev, std::size_t R>
bool locate_nonfinite(Ev const& ev, shape_t<R> const& s, std::string& where) {
  using T = typename Ev::value_type;
  bool found = false;
  auto child = [&](auto const& c) {
    using C = std::remove_cvref_t<decltype(c)>;
    if constexpr (requires { typename C::node; } && C::rank <= R) {
      if (!found && !evaluator_traits<C>::has_buffer) found = locate_nonfinite(c, s, where);
    }
  };
  if constexpr (requires { ev.a; }) child(ev.a);
  if constexpr (requires { ev.b; }) child(ev.b);
  if constexpr (requires { ev.c; }) child(ev.c);
  if (found) return true;
  std::size_t const n = shape_size(s);
  std::size_t const inner = R ? s[R - 1] : 1;
  std::size_t idx[R > 1 ? R - 1 : 1] = {};
  for (std::size_t i = 0; i < n && inner; i += inner) {
    if constexpr (R > 0) unravel_row<R>(i / inner, s, idx);
    for (std::size_t c = 0; c < inner; ++c)
      if (!std::isfinite(static_cast<double>(ev.template load_row<T, R>(idx, c)))) {
        where = description<typename node_of<Ev>::type>();
        return true;
      }
  }
  return false;
}

/// Anomaly mode: throws if the value just computed by `ev` into `p` holds a non-finite element,
/// naming the innermost fused node responsible.
template <class T, class Ev> void anomaly_forward(Ev& ev, T const* p, std::size_t n) {
  if (!anomaly_flag().load(std::memory_order_relaxed)) return;
  std::size_t const i = first_nonfinite(p, n);
  if (i == n) return;
  std::string where = description<typename node_of<Ev>::type>(), inner;
  if constexpr (!evaluator_traits<Ev>::has_buffer) {
    if (locate_nonfinite(ev, ev.shape(), inner)) where = inner + ", inside " + where;
  } else if constexpr (requires { ev.a; }) { // a reduction reads its fused input lazily
    using A = std::remove_cvref_t<decltype(ev.a)>;
    if constexpr (requires { typename A::node; } && !evaluator_traits<A>::has_buffer) {
      if (locate_nonfinite(ev.a, ev.a.shape(), inner)) where = inner + ", inside " + where;
    }
  }
  throw_anomaly("forward", where, std::isnan(static_cast<double>(p[i])), i, n);
}

template <class T, class Ev> void materialise_into(eval_context& ctx, Ev& ev, T* dst) {
  static_assert(
      cpu_evaluator<Ev>,
      "lepton: internal: a node's CPU evaluator does not implement the protocol of eval/protocol.hpp");
  materialise_into_impl(ctx, ev, dst);
  anomaly_forward(ev, dst, shape_size(ev.shape()));
}

/// The value of an evaluator as a view: its own buffer if it has one, else materialised in the arena.
template <class Ev> auto value_of(eval_context& ctx, Ev& ev) {
  using T = typename Ev::value_type;
  constexpr std::size_t R = Ev::rank;
  if constexpr (evaluator_traits<Ev>::has_buffer) {
    ev.forward(ctx, nullptr);
    view_ev<T, R> v = ev.buffer();
    anomaly_forward(ev, v.ptr, v.size());
    return v;
  } else {
    auto s = ev.shape();
    T* p = ctx.alloc<T>(shape_size(s));
    materialise_into(ctx, ev, p);
    return view_ev<T, R>(p, s);
  }
}

struct gradient_tag {};
template <> struct describe<gradient_tag> {
  static std::string get() { return "a gradient"; }
};

/// A gradient loadable over shape s as a contiguous buffer (no copy if it already is one).
template <class T, std::size_t R, class G>
view_ev<T, R> grad_value(eval_context& ctx, G& g, shape_t<R> const& s) {
  if constexpr (is_view_v<G>) {
    if (g.size() == shape_size(s) && g.shape() == s) return view_ev<T, R>(g.ptr, s);
  }
  T* p = ctx.alloc<T>(shape_size(s));
  g.bind(s);
  run_assign(p, g, s, false);
  anomaly_check<gradient_tag>(p, shape_size(s), "backward");
  return view_ev<T, R>(p, s);
}

/// Sums a gradient over the dimensions along which a child of shape cs was broadcast to shape s.
template <class T, std::size_t R, std::size_t RC, class G>
view_ev<T, RC> reduce_to_shape(eval_context& ctx, G& g, shape_t<R> const& s, shape_t<RC> const& cs) {
  if constexpr (!is_view_v<G>) {
    // Reductions run over materialised gradients only: one instantiation per rank, and the
    // gradient is usually needed materialised by the other operand anyway.
    auto gv = grad_value<T>(ctx, g, s);
    return reduce_to_shape<T>(ctx, gv, s, cs);
  } else {
    T* out = ctx.alloc<T>(shape_size(cs));
    if (shape_size(cs) == 1) {
      g.bind(s);
      out[0] = reduce_all<T, sum_reducer>(ctx, g, s);
      return view_ev<T, RC>(out, cs);
    }
    if constexpr (R == 0) {
      return view_ev<T, RC>(out, cs); // unreachable: a rank-0 gradient has size 1
    } else {
      // Reduce one broadcast axis at a time; after each step the buffer has that axis = 1.
      shape_t<R> cur = s;
      bool first = true;
      view_ev<T, R> prev;
      for (std::size_t d = 0; d < R; ++d) {
        std::size_t cd = d < R - RC ? 1 : cs[d - (R - RC)];
        if (cd != 1 || cur[d] == 1) continue;
        shape_t<R> next = cur;
        next[d] = 1;
        T* buf = ctx.alloc<T>(shape_size(next));
        if (first) {
          g.bind(cur);
          reduce_axis<T, sum_reducer>(g, cur, d, buf);
          first = false;
        } else {
          prev.bind(cur);
          reduce_axis<T, sum_reducer>(prev, cur, d, buf);
        }
        prev = view_ev<T, R>(buf, next);
        cur = next;
      }
      if (first) { // nothing was broadcast (only size-1 dims): plain copy
        g.bind(s);
        run_assign(out, g, s, false);
        return view_ev<T, RC>(out, cs);
      }
      return view_ev<T, RC>(prev.ptr, cs);
    }
  }
}

/// Where a contribution of n elements to DAG entry `e`'s gradient goes: the entry's pooled buffer,
/// acquired on the first contribution (`add` false: overwrite) and added to by later ones. The
/// buffer returns to the pool when the entry's rule has run (dag.hpp, Workspace).
template <class T> grad_sink<T> entry_sink(eval_context& ctx, dag_entry& e, std::size_t n) {
  if (e.grad) return {const_cast<T*>(static_cast<T const*>(e.grad)), true};
  T* p = static_cast<T*>(ctx.pool.acquire(n * sizeof(T)));
  e.grad = p;
  return {p, false};
}

/// Adds gradient `g` (over shape s) to DAG entry `e` (dag.hpp). One loop instantiation per
/// gradient type (first write and later adds differ only in a run-time flag).
template <class T, std::size_t R, class G>
void add_entry_grad(eval_context& ctx, dag_entry& e, G& g, shape_t<R> const& s) {
  std::size_t const n = shape_size(s);
  grad_sink<T> const d = entry_sink<T>(ctx, e, n);
  g.bind(s);
  run_assign(d.ptr, g, s, d.add);
  anomaly_check<gradient_tag>(d.ptr, n, "backward");
}

/// Hands gradient `g` (over shape s) to `child`, reducing over broadcast dimensions if needed.
template <class Child, class G, std::size_t R>
void push_grad(eval_context& ctx, Child& child, G& g, shape_t<R> const& s) {
  using T = typename Child::value_type;
  constexpr std::size_t RC = Child::rank;
  auto cs = child.shape();
  if constexpr (RC == R) {
    if (cs == s) {
      child.backward(ctx, g);
      return;
    }
  }
  auto v = reduce_to_shape<T>(ctx, g, s, cs);
  child.backward(ctx, v);
}

} // namespace lepton::detail
