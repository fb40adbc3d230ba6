#pragma once
/// @file nn_ops.hpp
/// @brief CPU evaluators of softmax, log_softmax and softmax cross-entropy (expr/nn_ops.hpp): row
///        kernels shifted by the row maximum, with their fused, numerically stable gradients.

#include "../../eval/loops.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../eval/simd.hpp"
#include "../../expr/nn_ops.hpp"
#include "reduce.hpp"
#include "step.hpp"

namespace lepton::detail {

template <bool Log, class A> struct evaluator<softmax_node<Log, A>, cpu_backend>
    : buffered_step<evaluator<softmax_node<Log, A>, cpu_backend>, typename A::value_type, A::rank> {
  using node = softmax_node<Log, A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<rank> shp;
  using buffered_step<evaluator, T, rank>::out;
  explicit evaluator(node const& n) : a(n.a), shp(a.shape()) {}
  shape_t<rank> const& shape() const { return shp; }
  std::size_t cols() const { return shp[rank - 1]; }
  std::size_t rows() const { return cols() ? shape_size(shp) / cols() : 0; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    auto xv = value_of(ctx, a);
    T* o = ctx.alloc<T>(shape_size(shp));
    std::size_t const n = cols();
    softmax_rows<T, Log>(xv.ptr, o, rows(), n);
    out = view_ev<T, rank>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }

  // log_softmax: dx = g - softmax * sum(g);  softmax: dx = y * (g - sum(g * y))
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(shp));
      std::size_t const n = cols();
      parallel_range(rows(), std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(n, 1)),
                     [&](std::size_t b, std::size_t e) {
        for (std::size_t r = b; r < e; ++r) {
          T const* y = out.ptr + r * n;
          T const* gr = gv.ptr + r * n;
          T* dr = d + r * n;
          T s = 0;
          for (std::size_t c = 0; c < n; ++c) s += Log ? gr[c] : gr[c] * y[c];
          for (std::size_t c = 0; c < n; ++c) dr[c] = Log ? gr[c] - std::exp(y[c]) * s : y[c] * (gr[c] - s);
        }
      });
      anomaly_check<node>(d, shape_size(shp), "backward");
      view_ev<T, rank> dv(d, shp);
      a.backward(ctx, dv);
    }
  }
};

template <class A, class L> struct evaluator<softmax_xent_node<A, L>, cpu_backend>
    : buffered_step<evaluator<softmax_xent_node<A, L>, cpu_backend>, typename A::value_type, 1> {
  using node = softmax_xent_node<A, L>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 1;
  static constexpr bool hard = node::hard;
  using Ea = evaluator<A>;
  using El = evaluator<L>;
  using label_t = typename L::value_type;
  static constexpr bool may_need_grad = Ea::may_need_grad || (!hard && El::may_need_grad);
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  El l;
  shape_t<2> xs;
  shape_t<1> shp;
  view_ev<T, 2> xv;
  T* stats = nullptr; // per row: max, log(sum(exp(x - max))), sum of target mass
  using buffered_step<evaluator, T, 1>::out;
  explicit evaluator(node const& n) : a(n.a), l(n.l), xs(a.shape()), shp{xs[0]} {
    auto ls = l.shape();
    if (ls[0] != xs[0] || (!hard && ls[hard ? 0 : 1] != xs[1]))
      throw shape_error("cross_entropy: logits " + to_string(xs) + " and targets " + to_string(ls) +
                        " do not match");
  }
  shape_t<1> const& shape() const { return shp; }

  // No step_identity: the loss also counts correct predictions (ctx.correct) as a side effect, so
  // copies are not merged (each is computed; a product or share reading it is not shared).
  void compute(eval_context& ctx) {
    xv = value_of(ctx, a);
    auto lv = value_of(ctx, l);
    std::size_t const B = xs[0], C = xs[1];
    if constexpr (hard) {
      for (std::size_t r = 0; r < B; ++r) {
        auto y = lv.ptr[r];
        if (y < 0 || static_cast<std::size_t>(y) >= C)
          throw value_error("cross_entropy: label " + std::to_string(y) + " of sample " + std::to_string(r) +
                            " is outside [0, " + std::to_string(C) + ")");
      }
    }
    m_labels = lv.ptr;
    stats = ctx.alloc<T>(3 * B);
    T* o = ctx.alloc<T>(B);
    // max and log(sum(exp(x - max))) of every row, then the loss from them
    softmax_row_stats<T>(xv.ptr, B, C, stats);
    parallel_range(B, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(C, 1)),
                   [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        T const* x = xv.ptr + r * C;
        T const mx = stats[3 * r], logs = stats[3 * r + 1];
        if constexpr (hard) {
          // (max - x_y) + log(sum): no cancellation between large numbers.
          o[r] = (mx - x[static_cast<std::size_t>(m_labels[r])]) + logs;
          stats[3 * r + 2] = T(1);
        } else {
          T const* p = m_labels + r * C;
          T loss = 0, mass = 0;
          for (std::size_t c = 0; c < C; ++c) {
            loss += p[c] * ((mx - x[c]) + logs);
            mass += p[c];
          }
          o[r] = loss;
          stats[3 * r + 2] = mass;
        }
      }
    });
    if constexpr (hard) {
      if (ctx.correct)
        for (std::size_t r = 0; r < B; ++r)
          *ctx.correct += xv.ptr[r * C + static_cast<std::size_t>(m_labels[r])] >= stats[3 * r] ? 1 : 0;
    }
    out = view_ev<T, 1>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || l.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (hard)
      return a.needs_grad(ctx);
    else
      return a.needs_grad(ctx) || l.needs_grad(ctx);
  }

  // d/dx = g_b (softmax * mass - p), with p the one-hot label or the target row.
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      std::size_t const B = xs[0], C = xs[1];
      auto gv = grad_value<T>(ctx, g, shp);
      if (a.needs_grad(ctx)) {
        T* d = ctx.alloc<T>(B * C);
        // g_b * mass_b * softmax(x), then minus g_b * p
        softmax_xent_grad<T>(xv.ptr, B, C, stats, gv.ptr, d);
        for (std::size_t r = 0; r < B; ++r) {
          T* dr = d + r * C;
          if constexpr (hard)
            dr[static_cast<std::size_t>(m_labels[r])] -= gv.ptr[r];
          else
            for (std::size_t k = 0; k < C; ++k) dr[k] -= gv.ptr[r] * m_labels[r * C + k];
        }
        anomaly_check<node>(d, B * C, "backward");
        view_ev<T, 2> dv(d, xs);
        a.backward(ctx, dv);
      }
      if constexpr (!hard && El::may_need_grad) {
        if (l.needs_grad(ctx)) { // d/dp = -g_b * log_softmax(x)
          T* d = ctx.alloc<T>(B * C);
          for (std::size_t r = 0; r < B; ++r)
            for (std::size_t c = 0; c < C; ++c)
              d[r * C + c] = -gv.ptr[r] * ((xv.ptr[r * C + c] - stats[3 * r]) - stats[3 * r + 1]);
          view_ev<T, 2> dv(d, xs);
          l.backward(ctx, dv);
        }
      }
    }
  }

private:
  label_t const* m_labels = nullptr;
};

} // namespace lepton::detail
