#pragma once
/// @file batch_norm.hpp
/// @brief The CPU evaluator of batch normalisation (expr/batch_norm.hpp): batch or running
///        statistics, the running-statistics update, and the backward rule.

#include <cmath>
#include <cstddef>
#include <string>

#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/batch_norm.hpp"
#include "elementwise.hpp"
#include "step.hpp"

namespace lepton::detail {

template <class A, class Gm, class Bt> struct evaluator<batch_norm_node<A, Gm, Bt>, cpu_backend>
    : buffered_step<evaluator<batch_norm_node<A, Gm, Bt>, cpu_backend>, typename A::value_type, A::rank> {
  using node = batch_norm_node<A, Gm, Bt>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  using Eg = evaluator<Gm>;
  using Eb = evaluator<Bt>;
  static constexpr bool may_need_grad = Ea::may_need_grad || Eg::may_need_grad || Eb::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  Eg gm;
  Eb bt;
  batch_norm_options<T> opt;
  shape_t<rank> shp;
  std::size_t n = 0, ch = 0, sp = 1; // (n, ch, sp) view of the input
  view_ev<T, rank> xv;
  T const* gamma = nullptr;
  T* mean = nullptr;   // (ch) the mean used
  T* invstd = nullptr; // (ch) 1 / sqrt(var + eps) used

  explicit evaluator(node const& nd) : a(nd.a), gm(nd.g), bt(nd.b), opt(nd.opt), shp(a.shape()) {
    n = shp[0];
    ch = shp[1];
    for (std::size_t d = 2; d < rank; ++d) sp *= shp[d];
    if (gm.shape()[0] != ch || bt.shape()[0] != ch)
      throw shape_error("batch_norm: input " + to_string(shp) + " has " + std::to_string(ch) +
                        " channels, gamma " + to_string(gm.shape()) + " and beta " + to_string(bt.shape()));
    if (!(opt.eps > 0)) throw value_error("batch_norm: eps must be > 0, got " + std::to_string(opt.eps));
  }
  shape_t<rank> const& shape() const { return shp; }

  void compute(eval_context& ctx) {
    xv = value_of(ctx, a);
    gamma = value_of(ctx, gm).ptr;
    T const* beta = value_of(ctx, bt).ptr;
    T* o = ctx.alloc<T>(shape_size(shp));
    mean = ctx.alloc<T>(ch);
    invstd = ctx.alloc<T>(ch);
    std::size_t const m = n * sp;
    if (opt.training) {
      if (m <= 1)
        throw value_error("batch_norm: training needs more than one value per channel, the input is " +
                          to_string(shp));
    } else if (!opt.running_mean || !opt.running_var) {
      throw value_error(
          "batch_norm: evaluation mode needs running statistics (running_mean and running_var)");
    }
    T const* x = xv.ptr;
    parallel_for(ch, [&](std::size_t c) {
      if (opt.training) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) s += double(row[q]);
        }
        double const mu = s / double(m);
        double v = 0;
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) {
            double const dlt = double(row[q]) - mu;
            v += dlt * dlt;
          }
        }
        double const var = v / double(m);
        mean[c] = T(mu);
        invstd[c] = T(1.0 / std::sqrt(var + opt.eps));
        if (opt.running_mean)
          opt.running_mean[c] = T((1 - opt.momentum) * double(opt.running_mean[c]) + opt.momentum * mu);
        if (opt.running_var)
          opt.running_var[c] =
              T((1 - opt.momentum) * double(opt.running_var[c]) + opt.momentum * v / double(m - 1));
      } else {
        mean[c] = opt.running_mean[c];
        invstd[c] = T(1.0 / std::sqrt(double(opt.running_var[c]) + opt.eps));
      }
      T const scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;
      for (std::size_t i = 0; i < n; ++i) {
        T const* row = x + (i * ch + c) * sp;
        T* yr = o + (i * ch + c) * sp;
        for (std::size_t q = 0; q < sp; ++q) yr[q] = row[q] * scale + shift;
      }
    });
    this->out = view_ev<T, rank>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || gm.reads(p, e) || bt.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    return a.needs_grad(ctx) || gm.needs_grad(ctx) || bt.needs_grad(ctx);
  }

  // With xhat = (x - mean) invstd: dbeta = sum g, dgamma = sum g xhat; in training mode the batch
  // statistics depend on x: dx = gamma invstd (g - mean(g) - xhat mean(g xhat)); in evaluation mode
  // dx = gamma invstd g.
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      bool const ga = Ea::may_need_grad && a.needs_grad(ctx);
      bool const gg = Eg::may_need_grad && gm.needs_grad(ctx);
      bool const gb = Eb::may_need_grad && bt.needs_grad(ctx);
      if (!ga && !gg && !gb) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* sg = ctx.alloc<T>(ch);  // sum g
      T* sgx = ctx.alloc<T>(ch); // sum g xhat
      T* dx = ga ? ctx.alloc<T>(shape_size(shp)) : nullptr;
      T const* x = xv.ptr;
      std::size_t const m = n * sp;
      bool const train = opt.training;
      parallel_for(ch, [&](std::size_t c) {
        double s = 0, sx = 0;
        T const mu = mean[c], is = invstd[c];
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          T const* gr = gv.ptr + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) {
            s += double(gr[q]);
            sx += double(gr[q]) * double((row[q] - mu) * is);
          }
        }
        sg[c] = T(s);
        sgx[c] = T(sx);
        if (dx) {
          T const k = gamma[c] * is;
          T const mg = train ? T(s / double(m)) : T(0), mgx = train ? T(sx / double(m)) : T(0);
          for (std::size_t i = 0; i < n; ++i) {
            T const* row = x + (i * ch + c) * sp;
            T const* gr = gv.ptr + (i * ch + c) * sp;
            T* dr = dx + (i * ch + c) * sp;
            for (std::size_t q = 0; q < sp; ++q) dr[q] = k * (gr[q] - mg - (row[q] - mu) * is * mgx);
          }
        }
      });
      if constexpr (Eg::may_need_grad) {
        if (gg)
          write_child_grad<T, 1, node>(ctx, gm, gm.shape(), [&](bool add, T* d) {
            for (std::size_t c = 0; c < ch; ++c) d[c] = add ? d[c] + sgx[c] : sgx[c];
          });
      }
      if constexpr (Eb::may_need_grad) {
        if (gb)
          write_child_grad<T, 1, node>(ctx, bt, bt.shape(), [&](bool add, T* d) {
            for (std::size_t c = 0; c < ch; ++c) d[c] = add ? d[c] + sg[c] : sg[c];
          });
      }
      if constexpr (Ea::may_need_grad) {
        if (ga) {
          anomaly_check<node>(dx, shape_size(shp), "backward");
          view_ev<T, rank> dv(dx, shp);
          a.backward(ctx, dv);
        }
      }
    }
  }
};

} // namespace lepton::detail
