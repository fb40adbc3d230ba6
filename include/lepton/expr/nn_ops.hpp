#pragma once
/// @file nn_ops.hpp
/// @brief softmax, log_softmax and the loss functions, each with its fused, numerically stable
///        gradient. All work over the last axis; every value is shifted by the row maximum, so
///        logits of any finite magnitude give finite results.

#include <cstdint>
#include <string>

#include "reduce.hpp"

namespace lepton {

/// @brief softmax (Log = false) or log_softmax (Log = true) over the last axis.
template <bool Log, class A> struct softmax_node : expr_base<softmax_node<Log, A>> {
  static_assert(A::rank >= 1, "lepton: softmax needs an operand of rank >= 1 (it works over the last axis)");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: softmax needs float or double elements");
  using value_type = typename A::value_type;
  using static_dims = typename A::static_dims;
  static constexpr std::size_t rank = A::rank;
  A a;
  explicit softmax_node(A a_) : a(std::move(a_)) {}
  shape_t<rank> shape() const { return a.shape(); }
};

/// @brief Per-sample softmax cross-entropy of logits (batch, classes) against integer labels
///        (batch) -> (batch), or against target distributions (batch, classes) -> (batch).
template <class A, class L> struct softmax_xent_node : expr_base<softmax_xent_node<A, L>> {
  static_assert(A::rank == 2, "lepton: cross_entropy takes logits of shape (batch, classes)");
  static_assert(std::is_floating_point_v<typename A::value_type>,
                "lepton: cross_entropy logits must be float or double");
  static constexpr bool hard = std::is_integral_v<typename L::value_type>;
  static_assert(hard ? L::rank == 1 : L::rank == 2,
                "lepton: cross_entropy targets are integer labels (batch) or probabilities (batch, classes)");
  static_assert(hard || std::is_same_v<typename L::value_type, typename A::value_type>,
                "lepton: cross_entropy probabilities must have the logits' element type");
  using value_type = typename A::value_type;
  using static_dims = dims<A::static_dims::values[0]>;
  static constexpr std::size_t rank = 1;
  A a;
  L l;
  softmax_xent_node(A a_, L l_) : a(std::move(a_)), l(std::move(l_)) {}
  shape_t<1> shape() const { return {a.shape()[0]}; }
};

namespace detail {

/// The last n (< lanes) elements at p as one vector, the other lanes set to `fill`: a short row
/// (10 classes) then costs one vector exp instead of n scalar calls into libm.
template <class V, class T> LEPTON_ALWAYS_INLINE V load_tail(T const* p, std::size_t n, T fill) {
  alignas(64) T tmp[lanes_v<V>];
  for (std::size_t i = 0; i < lanes_v<V>; ++i) tmp[i] = i < n ? p[i] : fill;
  return load<V>(tmp);
}
/// Stores the first n (< lanes) lanes of v at p.
template <class V, class T> LEPTON_ALWAYS_INLINE void store_tail(T* p, std::size_t n, V v) {
  alignas(64) T tmp[lanes_v<V>];
  store<V>(tmp, v);
  for (std::size_t i = 0; i < n; ++i) p[i] = tmp[i];
}

/// Row statistics of a (rows, n) block: max and log(sum(exp(x - max))). The tail of the row is
/// one vector padded with -inf (exp(-inf - max) = 0 adds nothing).
template <class T> LEPTON_ALWAYS_INLINE void row_stats(T const* x, std::size_t n, T& mx, T& logs) {
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  V vm = splat<V>(ninf);
  std::size_t c = 0;
  for (; c + W <= n; c += W) vm = m::max(vm, load<V>(x + c));
  std::size_t const tail = n - c;
  V const vt = tail ? load_tail<V>(x + c, tail, ninf) : splat<V>(ninf);
  T mv = static_cast<T>(m::hmax(m::max(vm, vt)));
  if (mv == ninf || n == 0) mv = T(0);
  V vs = splat<V>(T(0));
  V vmx = splat<V>(mv);
  for (c = 0; c + W <= n; c += W) vs = vs + m::exp(load<V>(x + c) - vmx);
  if (tail) vs = vs + m::exp(vt - vmx);
  mx = mv;
  logs = std::log(static_cast<T>(m::hsum(vs)));
}

template <bool Log, class A> struct evaluator<softmax_node<Log, A>> {
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
  view_ev<T, rank> out;
  explicit evaluator(node const& n) : a(n.a), shp(a.shape()) {}
  shape_t<rank> const& shape() const { return shp; }
  std::size_t cols() const { return shp[rank - 1]; }
  std::size_t rows() const { return cols() ? shape_size(shp) / cols() : 0; }

  void forward(eval_context& ctx, void const*) {
    auto xv = value_of(ctx, a);
    T* o = ctx.alloc<T>(shape_size(shp));
    std::size_t const n = cols();
    using V = simd_t<T>;
    constexpr std::size_t W = lanes_v<V>;
    parallel_range(rows(), std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(n, 1)),
                   [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        T const* x = xv.ptr + r * n;
        T* y = o + r * n;
        T mx, logs;
        row_stats(x, n, mx, logs);
        V vm = splat<V>(mx), vl = splat<V>(logs);
        std::size_t c = 0;
        for (; c + W <= n; c += W) {
          V t = (load<V>(x + c) - vm) - vl;
          store<V>(y + c, Log ? t : m::exp(t));
        }
        if (c < n) {
          V t = (load_tail<V>(x + c, n - c, T(0)) - vm) - vl;
          store_tail<V>(y + c, n - c, Log ? t : m::exp(t));
        }
      }
    });
    out = view_ev<T, rank>(o, shp);
  }
  view_ev<T, rank> const& buffer() const { return out; }
  template <class F> void visit_top(F&&) {}
  template <std::size_t RB> void bind(shape_t<RB> const& s) { out.bind(s); }
  bool flat_ok() const { return out.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return out.template load_flat<V>(i);
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return out.template load_row<V, RB>(idx, c);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }

  // log_softmax: dx = g - softmax * sum(g);  softmax: dx = y * (g - sum(g * y))
  template <class G> void backward(eval_context& ctx, G& g) {
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

template <class A, class L> struct evaluator<softmax_xent_node<A, L>> {
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
  view_ev<T, 1> out;
  explicit evaluator(node const& n) : a(n.a), l(n.l), xs(a.shape()), shp{xs[0]} {
    auto ls = l.shape();
    if (ls[0] != xs[0] || (!hard && ls[hard ? 0 : 1] != xs[1]))
      throw shape_error("cross_entropy: logits " + to_string(xs) + " and targets " + to_string(ls) +
                        " do not match");
  }
  shape_t<1> const& shape() const { return shp; }

  void forward(eval_context& ctx, void const*) {
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
    parallel_range(B, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(C, 1)),
                   [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        T const* x = xv.ptr + r * C;
        T mx, logs;
        row_stats(x, C, mx, logs);
        stats[3 * r] = mx;
        stats[3 * r + 1] = logs;
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
  view_ev<T, 1> const& buffer() const { return out; }
  template <class F> void visit_top(F&&) {}
  template <std::size_t RB> void bind(shape_t<RB> const& s) { out.bind(s); }
  bool flat_ok() const { return out.flat_ok(); }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return out.template load_flat<V>(i);
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    return out.template load_row<V, RB>(idx, c);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || l.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    if constexpr (hard)
      return a.needs_grad(ctx);
    else
      return a.needs_grad(ctx) || l.needs_grad(ctx);
  }

  // d/dx = g_b (softmax * mass - p), with p the one-hot label or the target row.
  template <class G> void backward(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      std::size_t const B = xs[0], C = xs[1];
      auto gv = grad_value<T>(ctx, g, shp);
      if (a.needs_grad(ctx)) {
        T* d = ctx.alloc<T>(B * C);
        using V = simd_t<T>;
        constexpr std::size_t W = lanes_v<V>;
        parallel_range(B, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(C, 1)),
                       [&](std::size_t b, std::size_t e) {
          for (std::size_t r = b; r < e; ++r) {
            T const* x = xv.ptr + r * C;
            T* dr = d + r * C;
            T const gr = gv.ptr[r] * stats[3 * r + 2];
            V vm = splat<V>(stats[3 * r]), vl = splat<V>(stats[3 * r + 1]), vg = splat<V>(gr);
            std::size_t c = 0;
            for (; c + W <= C; c += W) store<V>(dr + c, vg * m::exp((load<V>(x + c) - vm) - vl));
            if (c < C)
              store_tail<V>(dr + c, C - c, vg * m::exp((load_tail<V>(x + c, C - c, T(0)) - vm) - vl));
            if constexpr (hard)
              dr[static_cast<std::size_t>(m_labels[r])] -= gv.ptr[r];
            else
              for (std::size_t k = 0; k < C; ++k) dr[k] -= gv.ptr[r] * m_labels[r * C + k];
          }
        });
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

template <bool Log, class A> struct describe<softmax_node<Log, A>> {
  static std::string get() {
    return std::string(Log ? "log_softmax(" : "softmax(") + describe<A>::get() + ")";
  }
};
template <class A, class L> struct describe<softmax_xent_node<A, L>> {
  static std::string get() { return "cross_entropy(" + describe<A>::get() + ", " + describe<L>::get() + ")"; }
};

} // namespace detail

/// @brief softmax over the last axis: exp(x - max) / sum(exp(x - max)).
template <operand X> auto softmax(X&& x) {
  return softmax_node<false, detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}
/// @brief log_softmax over the last axis: (x - max) - log(sum(exp(x - max))); finite for any finite x.
template <operand X> auto log_softmax(X&& x) {
  return softmax_node<true, detail::expr_of<X>>(detail::as_expr(std::forward<X>(x)));
}

/// @brief Loss functions. Each is a function object (so it can be passed to lepton::train::fit)
///        taking (prediction, target[, reduction]); the reduction defaults to the mean.
namespace loss {

/// @brief Reduction tags: `lepton::loss::mean` (default), `lepton::loss::sum`, `lepton::loss::none`.
struct mean_t {};
struct sum_t {};
struct none_t {};
inline constexpr mean_t mean{};
inline constexpr sum_t sum{};
inline constexpr none_t none{};

namespace detail {
template <class E, class R> auto reduce(E&& e, R) {
  if constexpr (std::is_same_v<R, mean_t>)
    return lepton::mean(std::forward<E>(e));
  else if constexpr (std::is_same_v<R, sum_t>)
    return lepton::sum(std::forward<E>(e));
  else
    return std::forward<E>(e);
}
template <class R>
concept reduction = std::is_same_v<R, mean_t> || std::is_same_v<R, sum_t> || std::is_same_v<R, none_t>;
} // namespace detail

/// @brief Softmax cross-entropy of logits (batch, classes) against integer labels (batch) or target
///        probabilities (batch, classes). Stable for any finite logits; fused gradient softmax - target.
/// **Example**: `auto l = lepton::loss::cross_entropy(model(x), labels); float v = lepton::backward(l);`
struct cross_entropy_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& logits, Y&& target, R r = {}) const {
    using Ex = lepton::detail::expr_of<X>;
    using Ey = lepton::detail::expr_of<Y>;
    return detail::reduce(softmax_xent_node<Ex, Ey>(lepton::detail::as_expr(std::forward<X>(logits)),
                                                    lepton::detail::as_expr(std::forward<Y>(target))),
                          r);
  }
};
inline constexpr cross_entropy_fn cross_entropy{};

/// @brief Binary cross-entropy of logits against targets in [0, 1] (sigmoid fused, stable).
struct bce_with_logits_fn {
  template <class X, class Y, detail::reduction R = mean_t>
    requires lepton::detail::binary_operands<X, Y>
  auto operator()(X&& logits, Y&& target, R r = {}) const {
    return detail::reduce(
        lepton::detail::make_binary<op::bce_logits>(std::forward<X>(logits), std::forward<Y>(target)), r);
  }
};
inline constexpr bce_with_logits_fn bce_with_logits{};

/// @brief Mean squared error (a - b)^2.
struct mse_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, R r = {}) const {
    return detail::reduce(lepton::square(std::forward<X>(a) - std::forward<Y>(b)), r);
  }
};
inline constexpr mse_fn mse{};

/// @brief Mean absolute error |a - b| (gradient 0 where a == b).
struct l1_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, R r = {}) const {
    return detail::reduce(lepton::abs(std::forward<X>(a) - std::forward<Y>(b)), r);
  }
};
inline constexpr l1_fn l1{};

/// @brief Huber loss of a - b with threshold delta (quadratic inside, linear outside).
struct huber_fn {
  template <operand X, operand Y, detail::reduction R = mean_t>
  auto operator()(X&& a, Y&& b, double delta = 1.0, R r = {}) const {
    if (!(delta > 0)) throw value_error("loss::huber: delta must be > 0, got " + std::to_string(delta));
    using T = value_type_of<X>;
    return detail::reduce(lepton::detail::make_unary(std::forward<X>(a) - std::forward<Y>(b),
                                                     op::huber<T>{static_cast<T>(delta)}),
                          r);
  }
};
inline constexpr huber_fn huber{};

} // namespace loss
} // namespace lepton
