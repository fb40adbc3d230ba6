#pragma once
/// @file pool.hpp
/// @brief The CPU evaluators of max/avg pooling and global average pooling (expr/pool.hpp), each
///        with its backward rule. An elementwise input (typically relu(conv)) is computed where the
///        windows read it, not materialised first.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../../core/config.hpp"
#include "../../core/math.hpp"
#include "../../core/parallel.hpp"
#include "../../eval/loops.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../eval/simd.hpp"
#include "../../expr/pool.hpp"
#include "elementwise.hpp"
#include "step.hpp"

namespace lepton::detail {

template <pool_kind Kind, class A, std::size_t K, std::size_t S, std::size_t P>
struct evaluator<pool2d_node<Kind, A, K, S, P>, cpu_backend>
    : buffered_step<evaluator<pool2d_node<Kind, A, K, S, P>, cpu_backend>, typename A::value_type, 4> {
  using node = pool2d_node<Kind, A, K, S, P>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 4;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<4> shp, in;
  view_ev<T, 4> av;
  std::uint32_t* arg = nullptr; // max pooling: index of each output's maximum in its input plane

  explicit evaluator(node const& n) : a(n.a), shp(n.shape()), in(a.shape()) {}
  shape_t<4> const& shape() const { return shp; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    T* o = ctx.alloc<T>(shape_size(shp));
    // The index of each window's maximum, for the backward pass (always kept: a lazily read input
    // is not available afterwards).
    if constexpr (Kind == pool_kind::max) arg = ctx.alloc<std::uint32_t>(shape_size(shp));
    if constexpr (!Ea::has_buffer) {
      // An elementwise input (typically relu(conv)) is computed where the windows read it instead
      // of being materialised first: one pass less over the largest activation of the network.
      a.forward(ctx, nullptr);
      a.bind(in);
      if (a.flat_ok()) {
        av = {};
        pool([&](std::size_t i) LEPTON_INLINE_LAMBDA { return a.template load_flat<simd_t<T>>(i); },
             [&](std::size_t i) LEPTON_INLINE_LAMBDA { return a.template load_flat<T>(i); }, o);
        this->out = view_ev<T, 4>(o, shp);
        return;
      }
      T* buf = ctx.alloc<T>(shape_size(in));
      run_assign(buf, a, in, false);
      av = view_ev<T, 4>(buf, in);
    } else {
      av = value_of(ctx, a);
    }
    T const* src = av.ptr;
    pool([src](std::size_t i) LEPTON_INLINE_LAMBDA { return load<simd_t<T>>(src + i); },
         [src](std::size_t i) LEPTON_INLINE_LAMBDA { return src[i]; }, o);
    this->out = view_ev<T, 4>(o, shp);
  }

  /// Input rows up to this width take the 2x2 max-pooling fast path.
  static constexpr std::size_t fast_row_max = 512;

  /// o = pooling of the input read through `lv(flat index)` (a vector) and `ld(flat index)`.
  template <class LoadV, class Load> void pool(LoadV const& lv, Load const& ld, T* o) {
    std::size_t const planes = shp[0] * shp[1], h = in[2], w = in[3], oh = shp[2], ow = shp[3];
    std::uint32_t* am = arg;
    parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(h * w, 1)),
                   [&](std::size_t pb, std::size_t pe) {
      for (std::size_t pl = pb; pl < pe; ++pl) {
        std::size_t const x = pl * h * w; // flat index of the plane
        T* y = o + pl * oh * ow;
        std::uint32_t* ai = am ? am + pl * oh * ow : nullptr;
        if constexpr (Kind == pool_kind::max && K == 2 && S == 2 && P == 0) {
          if (w <= fast_row_max) {
            pool_2x2_rows(lv, ld, x, w, oh, ow, y, ai);
            continue;
          }
        }
        if constexpr (Kind == pool_kind::max && K == 2 && S == 2 && P == 0) {
          for (std::size_t r = 0; r < oh; ++r) {
            std::size_t const r0 = x + 2 * r * w, r1 = r0 + w;
            std::uint32_t const i0 = static_cast<std::uint32_t>(2 * r * w),
                                i1 = i0 + static_cast<std::uint32_t>(w);
            for (std::size_t q = 0; q < ow; ++q) {
              std::size_t const c0 = 2 * q;
              std::uint32_t const cq = static_cast<std::uint32_t>(c0);
              T m = ld(r0 + c0);
              std::uint32_t best = i0 + cq;
              take_if_greater(ld(r0 + c0 + 1), i0 + cq + 1, m, best);
              take_if_greater(ld(r1 + c0), i1 + cq, m, best);
              take_if_greater(ld(r1 + c0 + 1), i1 + cq + 1, m, best);
              y[r * ow + q] = m;
              if (ai) ai[r * ow + q] = best;
            }
          }
        } else {
          for (std::size_t r = 0; r < oh; ++r)
            for (std::size_t q = 0; q < ow; ++q) {
              std::ptrdiff_t const y0 = static_cast<std::ptrdiff_t>(r * S) - static_cast<std::ptrdiff_t>(P);
              std::ptrdiff_t const x0 = static_cast<std::ptrdiff_t>(q * S) - static_cast<std::ptrdiff_t>(P);
              std::size_t const ylo = static_cast<std::size_t>(std::max<std::ptrdiff_t>(y0, 0));
              std::size_t const yhi = static_cast<std::size_t>(std::min<std::ptrdiff_t>(
                  y0 + static_cast<std::ptrdiff_t>(K), static_cast<std::ptrdiff_t>(h)));
              std::size_t const xlo = static_cast<std::size_t>(std::max<std::ptrdiff_t>(x0, 0));
              std::size_t const xhi = static_cast<std::size_t>(std::min<std::ptrdiff_t>(
                  x0 + static_cast<std::ptrdiff_t>(K), static_cast<std::ptrdiff_t>(w)));
              if constexpr (Kind == pool_kind::max) {
                T m = -std::numeric_limits<T>::infinity();
                std::size_t best = ylo * w + xlo;
                for (std::size_t yy = ylo; yy < yhi; ++yy)
                  for (std::size_t xx = xlo; xx < xhi; ++xx)
                    if (T v = ld(x + yy * w + xx); v > m) m = v, best = yy * w + xx;
                y[r * ow + q] = m;
                if (ai) ai[r * ow + q] = static_cast<std::uint32_t>(best);
              } else {
                T sum = 0;
                for (std::size_t yy = ylo; yy < yhi; ++yy)
                  for (std::size_t xx = xlo; xx < xhi; ++xx) sum += ld(x + yy * w + xx);
                y[r * ow + q] = sum * (T(1) / T(K * K));
              }
            }
        }
      }
    });
  }
  /// m, best = v, i where v > m (selects, not a branch).
  static LEPTON_ALWAYS_INLINE void take_if_greater(T v, std::uint32_t i, T& m, std::uint32_t& best) {
    bool const gt = v > m;
    m = gt ? v : m;
    best = gt ? i : best;
  }
  /// 2x2 max pooling, stride 2, of the plane at flat index x (rows of w <= fast_row_max): each pair
  /// of input rows is read with vector loads into a buffer first (an elementwise input such as
  /// relu(conv) is then computed a vector at a time: computed one element at a time, its select
  /// was a branch on the sign, mispredicted about every other element), then the windows are
  /// reduced without branches. The scan order and the strict > (the first maximum wins; a NaN is
  /// skipped unless it comes first) are those of the general loop.
  template <class LoadV, class Load> static void pool_2x2_rows(LoadV const& lv, Load const& ld, std::size_t x,
                                                               std::size_t w, std::size_t oh, std::size_t ow,
                                                               T* y, std::uint32_t* ai) {
    using V = simd_t<T>;
    constexpr std::size_t L = lanes_v<V>;
    alignas(64) T buf[2 * fast_row_max];
    std::size_t const n = 2 * w;
    for (std::size_t r = 0; r < oh; ++r) {
      std::size_t const r0 = x + 2 * r * w; // rows 2r and 2r + 1 are n contiguous elements
      std::size_t i = 0;
      for (; i + L <= n; i += L) store<V>(buf + i, lv(r0 + i));
      if (i < n && n >= L) { // the last vector overlaps the previous one (the input is pure)
        store<V>(buf + n - L, lv(r0 + n - L));
        i = n;
      }
      for (; i < n; ++i) buf[i] = ld(r0 + i);
      std::uint32_t const i0 = static_cast<std::uint32_t>(2 * r * w), i1 = i0 + static_cast<std::uint32_t>(w);
      T const* b0 = buf;
      T const* b1 = buf + w;
      for (std::size_t q = 0; q < ow; ++q) {
        std::uint32_t const cq = static_cast<std::uint32_t>(2 * q);
        T m = b0[2 * q];
        std::uint32_t best = i0 + cq;
        take_if_greater(b0[2 * q + 1], i0 + cq + 1, m, best);
        take_if_greater(b1[2 * q], i1 + cq, m, best);
        take_if_greater(b1[2 * q + 1], i1 + cq + 1, m, best);
        y[r * ow + q] = m;
        if (ai) ai[r * ow + q] = best;
      }
    }
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }

  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(in));
      std::size_t const planes = shp[0] * shp[1], h = in[2], w = in[3], oh = shp[2], ow = shp[3];
      std::uint32_t const* am = arg;
      parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(h * w, 1)),
                     [&](std::size_t pb, std::size_t pe) {
        for (std::size_t pl = pb; pl < pe; ++pl) {
          T* dx = d + pl * h * w;
          T const* gy = gv.ptr + pl * oh * ow;
          std::fill_n(dx, h * w, T(0));
          for (std::size_t r = 0; r < oh; ++r)
            for (std::size_t q = 0; q < ow; ++q) {
              T const gval = gy[r * ow + q];
              if constexpr (Kind == pool_kind::max) {
                dx[am[pl * oh * ow + r * ow + q]] += gval;
              } else {
                std::ptrdiff_t const y0 = static_cast<std::ptrdiff_t>(r * S) - static_cast<std::ptrdiff_t>(P);
                std::ptrdiff_t const x0 = static_cast<std::ptrdiff_t>(q * S) - static_cast<std::ptrdiff_t>(P);
                T const share = gval * (T(1) / T(K * K));
                for (std::ptrdiff_t yy = std::max<std::ptrdiff_t>(y0, 0);
                     yy < std::min<std::ptrdiff_t>(y0 + static_cast<std::ptrdiff_t>(K),
                                                   static_cast<std::ptrdiff_t>(h));
                     ++yy)
                  for (std::ptrdiff_t xx = std::max<std::ptrdiff_t>(x0, 0);
                       xx < std::min<std::ptrdiff_t>(x0 + static_cast<std::ptrdiff_t>(K),
                                                     static_cast<std::ptrdiff_t>(w));
                       ++xx)
                    dx[static_cast<std::size_t>(yy) * w + static_cast<std::size_t>(xx)] += share;
              }
            }
        }
      });
      anomaly_check<node>(d, shape_size(in), "backward");
      view_ev<T, 4> dv(d, in);
      a.backward(ctx, dv);
    }
  }
};

template <class A> struct evaluator<global_avg_pool_node<A>, cpu_backend>
    : buffered_step<evaluator<global_avg_pool_node<A>, cpu_backend>, typename A::value_type, 2> {
  using node = global_avg_pool_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 2;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<2> shp;
  shape_t<4> in;
  explicit evaluator(node const& n) : a(n.a), shp(n.shape()), in(a.shape()) {}
  shape_t<2> const& shape() const { return shp; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    T* o = ctx.alloc<T>(shape_size(shp));
    if constexpr (!Ea::has_buffer) { // an elementwise input is summed as it is computed (one pass)
      a.forward(ctx, nullptr);
      a.bind(in);
      if (a.flat_ok()) {
        means([&](std::size_t i) LEPTON_INLINE_LAMBDA { return a.template load_flat<simd_t<T>>(i); },
              [&](std::size_t i) LEPTON_INLINE_LAMBDA { return a.template load_flat<T>(i); }, o);
        this->out = view_ev<T, 2>(o, shp);
        return;
      }
    }
    auto av = value_of(ctx, a);
    T const* src = av.ptr;
    means([src](std::size_t i) LEPTON_INLINE_LAMBDA { return load<simd_t<T>>(src + i); },
          [src](std::size_t i) LEPTON_INLINE_LAMBDA { return src[i]; }, o);
    this->out = view_ev<T, 2>(o, shp);
  }
  /// o[plane] = mean of the plane, reading vectors with `lv(flat index)` and scalars with `ls`.
  template <class LV, class LS> void means(LV const& lv, LS const& ls, T* o) {
    using V = simd_t<T>;
    constexpr std::size_t L = lanes_v<V>;
    std::size_t const planes = shp[0] * shp[1], hw = in[2] * in[3];
    T const inv = hw ? T(1) / T(hw) : T(0);
    parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(hw, 1)),
                   [&](std::size_t b, std::size_t e) {
      for (std::size_t pl = b; pl < e; ++pl) {
        std::size_t const x = pl * hw;
        V acc = splat<V>(T(0));
        std::size_t q = 0;
        for (; q + L <= hw; q += L) acc = acc + lv(x + q);
        T sum = static_cast<T>(m::hsum(acc));
        for (; q < hw; ++q) sum += ls(x + q);
        o[pl] = sum * inv;
      }
    });
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(in));
      std::size_t const planes = shp[0] * shp[1], hw = in[2] * in[3];
      T const inv = hw ? T(1) / T(hw) : T(0);
      parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(hw, 1)),
                     [&](std::size_t b, std::size_t e) {
        for (std::size_t pl = b; pl < e; ++pl) std::fill_n(d + pl * hw, hw, gv.ptr[pl] * inv);
      });
      anomaly_check<node>(d, shape_size(in), "backward");
      view_ev<T, 4> dv(d, in);
      a.backward(ctx, dv);
    }
  }
};

} // namespace lepton::detail
