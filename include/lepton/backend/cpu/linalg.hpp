#pragma once
/// @file linalg.hpp
/// @brief CPU evaluators of matmul and transpose (expr/linalg.hpp). matmul is a materialisation
///        boundary computed by the packed GEMM of gemm.hpp; an elementwise group reading its output
///        (bias + activation) runs as the GEMM's epilogue. Its backward rule is two GEMMs.

#include "../../eval/dag.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/linalg.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "step.hpp"

namespace lepton::detail {

template <class A, class B> struct evaluator<matmul_node<A, B>, cpu_backend>
    : output_view<typename matmul_node<A, B>::value_type, 2> {
  using node = matmul_node<A, B>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 2;
  using Ea = evaluator<A>;
  using Eb = evaluator<B>;
  static constexpr bool may_need_grad = Ea::may_need_grad || Eb::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr bool is_gemm = true;
  static constexpr std::size_t top_gemms = 1;

  Ea a;
  Eb b;
  shape_t<2> shp;
  view_ev<T, 2> va, vb;
  using output_view<T, 2>::out;
  T* preset = nullptr;
  std::size_t slot = dag_table::npos; ///< this product's DAG entry (eval/dag.hpp), once resolved
  bool aliased = false;               ///< the product was computed by another occurrence; this one reads it

  // The entry points below are out of line: a value used twice appears twice in the evaluator
  // tree, and inlining both copies at every level made code size (and compile time) exponential in
  // the nesting depth of reused values.
  LEPTON_NOINLINE explicit evaluator(node const& n)
      : a(n.a), b(n.b), shp(matmul_shape(a.shape(), b.shape())) {}
  shape_t<2> const& shape() const { return shp; }

  /// Makes the GEMM write into `p` (shape (m, n), contiguous) instead of an arena buffer.
  void set_output(T* p) { preset = p; }

  /// This product's DAG entry: products with equal operands (copies of one expression) share one.
  LEPTON_NOINLINE std::size_t resolve(eval_context& ctx) {
    if (slot == dag_table::npos) {
      identity id(ctx.mem);
      id.push(type_word<node>());
      identify(a, id, ctx);
      identify(b, id, ctx);
      slot = ctx.dag.resolve(id);
    }
    return slot;
  }
  void lepton_identify(identity& id, eval_context& ctx) {
    id.push(type_word<dag_entry>());
    id.push(resolve(ctx));
  }

  /// Computes the operands; runs the GEMM unless `defer == this` (the caller then calls run_gemm
  /// with its epilogue, then publish). If an equal product was computed already, reads it instead
  /// (`aliased()`; copied into the preset output, if any) and computes nothing.
  LEPTON_NOINLINE void forward(eval_context& ctx, void const* defer) {
    dag_entry& e = ctx.dag[resolve(ctx)];
    if (e.computed && e.owner != this) {
      aliased = true;
      T const* p = static_cast<T const*>(e.out);
      if (preset) {
        std::copy_n(p, shape_size(shp), preset);
        p = preset;
      }
      out = view_ev<T, 2>(p, shp);
      ++dag_stats().reused;
      return;
    }
    va = value_of(ctx, a);
    vb = value_of(ctx, b);
    T* o = preset ? preset : ctx.alloc<T>(shape_size(shp));
    out = view_ev<T, 2>(o, shp);
    if (defer != static_cast<void const*>(this)) {
      run_gemm(cpu::no_epilogue{});
      publish(ctx);
    }
  }
  /// True when forward found the product computed by another occurrence (nothing to run).
  bool is_aliased() const noexcept { return aliased; }
  template <class Epi> void run_gemm(Epi const& epi) {
    ++dag_stats().computed;
    std::size_t const m = shp[0], n = shp[1], k = va.shp[1];
    cpu::gemm<T>(false, false, m, n, k, T(1), va.ptr, k, vb.ptr, n, T(0), const_cast<T*>(out.ptr), n, epi);
  }
  /// Makes the product computed by run_gemm readable by other occurrences. Not called when an
  /// epilogue overwrote it in place (inference): they then compute it themselves.
  void publish(eval_context& ctx) { ctx.dag.complete(slot, this, out.ptr, &deferred_backward); }
  /// The fusion group reading this value directly reads one GEMM: this one (its epilogue).
  template <class F> void visit_top(F&& f) { f(*this); }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || b.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx) || b.needs_grad(ctx); }

  /// Adds `g` to this product's entry; the backward rule runs once, with the sum of every use's
  /// gradient, when the evaluation's DAG schedule reaches it (dag_table::run_backward).
  template <class G> LEPTON_NOINLINE void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx) && !b.needs_grad(ctx)) return;
      add_entry_grad<T>(ctx, ctx.dag[slot], g, shp);
    }
  }

  /// This product's gradient buffer, for a producer (a parent GEMM) that writes its contribution
  /// directly (eval/materialise.hpp entry_sink); null when nothing below needs a gradient.
  grad_sink<T> sink(eval_context& ctx) {
    if constexpr (may_need_grad) {
      if (a.needs_grad(ctx) || b.needs_grad(ctx)) return entry_sink<T>(ctx, ctx.dag[slot], shape_size(shp));
    }
    return {};
  }

  // dA = G B^T (m, k); dB = A^T G (k, n). A leaf's or a step's gradient is written by the GEMM directly.
  LEPTON_NOINLINE void backward_summed(eval_context& ctx, view_ev<T, 2> const& gv) {
    if constexpr (may_need_grad) {
      bool const ga = a.needs_grad(ctx), gb = b.needs_grad(ctx);
      std::size_t const m = shp[0], n = shp[1], k = va.shp[1];
      if constexpr (Ea::may_need_grad) {
        if (ga)
          backward_operand(ctx, a, {m, k}, [&](T beta, T* d) {
            cpu::gemm<T>(false, true, m, k, n, T(1), gv.ptr, n, vb.ptr, n, beta, d, k);
          });
      }
      if constexpr (Eb::may_need_grad) {
        if (gb)
          backward_operand(ctx, b, {k, n}, [&](T beta, T* d) {
            cpu::gemm<T>(true, false, k, n, m, T(1), va.ptr, k, gv.ptr, n, beta, d, n);
          });
      }
    }
  }

private:
  static void deferred_backward(void* self, eval_context& ctx, void const* grad) {
    auto& me = *static_cast<evaluator*>(self);
    view_ev<T, 2> gv(static_cast<T const*>(grad), me.shp);
    me.backward_summed(ctx, gv);
  }

  template <class Child, class Run>
  static void backward_operand(eval_context& ctx, Child& c, shape_t<2> s, Run run) {
    if constexpr (requires { c.sink(ctx); }) {
      if (auto snk = c.sink(ctx); snk.ptr) {
        run(snk.add ? T(1) : T(0), snk.ptr);
        anomaly_check<node>(snk.ptr, shape_size(s), "backward");
      }
    } else {
      T* d = ctx.alloc<T>(shape_size(s));
      run(T(0), d);
      anomaly_check<node>(d, shape_size(s), "backward");
      view_ev<T, 2> dv(d, s);
      c.backward(ctx, dv);
    }
  }
};

/// The parts of a group `matmul + bias` or `bias + matmul` (bias of rank 1).
template <class AddEv> struct bias_add_parts;
template <class A, class B, class C>
  requires(C::rank == 1)
struct bias_add_parts<evaluator<binary_node<op::add, matmul_node<A, B>, C>>> {
  using gemm_ev = evaluator<matmul_node<A, B>>;
  using bias_ev = evaluator<C>;
  template <class E> static gemm_ev& gemm(E& add) { return add.a; }
  template <class E> static bias_ev& bias(E& add) { return add.b; }
};
template <class A, class B, class C>
  requires(C::rank == 1)
struct bias_add_parts<evaluator<binary_node<op::add, C, matmul_node<A, B>>>> {
  using gemm_ev = evaluator<matmul_node<A, B>>;
  using bias_ev = evaluator<C>;
  template <class E> static gemm_ev& gemm(E& add) { return add.b; }
  template <class E> static bias_ev& bias(E& add) { return add.a; }
};

/// `act(matmul + bias)` as a register epilogue: the GEMM applies bias + act to its accumulators
/// before the store. In a pass that keeps values for the backward (ctx.keep_values), the matmul's
/// own buffer still receives the product (relu's derivative recomputes x w + b from it) and dst the
/// activation, both from the same registers; otherwise the GEMM writes the activation into dst.
template <class AddEv, cpu::gemm_activation Act> struct bias_act_run {
  using parts = bias_add_parts<AddEv>;
  static constexpr bool value = parts::bias_ev::has_buffer;
  template <class Ev, class T> static bool run_parts(eval_context& ctx, Ev& ev, AddEv& add, T* dst) {
    auto& mm = parts::gemm(add);
    auto& bias = parts::bias(add);
    shape_t<2> const s = mm.shape();
    if (bias.shape()[0] != s[1] || add.shape() != s) return false; // a broadcast bias: generic path
    if (!ctx.keep_values) mm.set_output(dst);
    ev.forward(ctx, &mm);  // the matmul's operands (the GEMM itself is deferred) and the bias
    ev.bind(s);            // as the generic path leaves it (anomaly mode reads the group back)
    if (mm.is_aliased()) { // the product was computed elsewhere (a reused value): apply the group
      run_assign(dst, ev, s, false);
      return true;
    }
    cpu::gemm_bias_act<T> const ep{bias.buffer().ptr, Act, ctx.keep_values ? dst : nullptr, s[1]};
    mm.run_gemm(ep);
    if (ctx.keep_values) mm.publish(ctx); // (otherwise the GEMM wrote the activation, not the product)
    return true;
  }
};

template <class A, class B>
  requires requires { typename bias_add_parts<evaluator<binary_node<op::add, A, B>>>::gemm_ev; }
struct bias_act_group<evaluator<binary_node<op::add, A, B>>>
    : bias_act_run<evaluator<binary_node<op::add, A, B>>, cpu::gemm_activation::identity> {
  template <class Ev, class T> static bool run(eval_context& ctx, Ev& ev, T* dst) {
    return bias_act_group::run_parts(ctx, ev, ev, dst);
  }
};
template <class A, class B>
  requires requires { typename bias_add_parts<evaluator<binary_node<op::add, A, B>>>::gemm_ev; }
struct bias_act_group<evaluator<unary_node<op::relu, binary_node<op::add, A, B>>>>
    : bias_act_run<evaluator<binary_node<op::add, A, B>>, cpu::gemm_activation::relu> {
  template <class Ev, class T> static bool run(eval_context& ctx, Ev& ev, T* dst) {
    return bias_act_group::run_parts(ctx, ev, ev.a, dst);
  }
};

template <class A> struct evaluator<transpose_node<A>, cpu_backend>
    : buffered_step<evaluator<transpose_node<A>, cpu_backend>, typename A::value_type, 2> {
  using node = transpose_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 2;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<2> shp;
  using buffered_step<evaluator, T, 2>::out;
  explicit evaluator(node const& n) : a(n.a) {
    auto s = a.shape();
    shp = {s[1], s[0]};
  }
  shape_t<2> const& shape() const { return shp; }
  static void transpose_copy(T const* src, std::size_t rows, std::size_t cols, T* dst) {
    constexpr std::size_t bs = 32; // cache blocking
    for (std::size_t i0 = 0; i0 < rows; i0 += bs)
      for (std::size_t j0 = 0; j0 < cols; j0 += bs)
        for (std::size_t i = i0; i < std::min(rows, i0 + bs); ++i)
          for (std::size_t j = j0; j < std::min(cols, j0 + bs); ++j) dst[j * rows + i] = src[i * cols + j];
  }
  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    auto v = value_of(ctx, a);
    T* o = ctx.alloc<T>(shape_size(shp));
    transpose_copy(v.ptr, v.shp[0], v.shp[1], o);
    out = view_ev<T, 2>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(shp));
      transpose_copy(gv.ptr, shp[0], shp[1], d);
      view_ev<T, 2> dv(d, a.shape());
      a.backward(ctx, dv);
    }
  }
};

} // namespace lepton::detail
