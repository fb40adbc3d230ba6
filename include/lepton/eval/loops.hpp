#pragma once
/// @file loops.hpp
/// @brief The CPU fused-loop drivers: one pass over memory per fusion group.
///
/// A *loadable* is an evaluator (or a gradient expression built from evaluators) with:
///  - `template <std::size_t RB> void bind(shape_t<RB> const& s)`: prepare to be read over the
///    iteration shape `s` (leaves compute broadcast strides relative to `s`);
///  - `bool flat_ok() const`: every leaf is either contiguous over `s` or a single broadcast value,
///    so the group can be read with one flat index;
///  - `template <class V> V load_flat(std::size_t i) const`;
///  - `template <class V, std::size_t RB> V load_row(std::size_t const* idx, std::size_t c) const`:
///    the value at outer index `idx[0..RB-2]` and last-dimension index `c .. c+lanes-1`.
/// Loads are const and stateless, so one loadable is read by all pool threads at once.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../core/isa.hpp"
#include "../core/parallel.hpp"
#include "../core/shape.hpp"
#include "context.hpp"
#include "loop_support.hpp"
#include "simd.hpp"

namespace lepton::detail {

/// A materialised value (a tensor, a parameter, or an arena buffer) read as a loadable.
template <class T, std::size_t R> struct view_ev {
  using value_type = T;
  static constexpr std::size_t rank = R;
  static constexpr bool is_view = true;

  T const* ptr = nullptr;
  shape_t<R> shp{};

  view_ev() = default;
  view_ev(T const* p, shape_t<R> const& s) : ptr(p), shp(s) {}

  shape_t<R> const& shape() const noexcept { return shp; }
  std::size_t size() const noexcept { return shape_size(shp); }

  template <std::size_t RB> void bind(shape_t<RB> const& s) {
    static_assert(R <= RB, "lepton: internal: a leaf has a higher rank than its iteration space");
    auto cs = c_strides(shp);
    bool all_zero = true;
    for (std::size_t d = 0; d < RB; ++d) {
      std::ptrdiff_t st = 0;
      if (d >= RB - R) {
        std::size_t ld = d - (RB - R);
        st = shp[ld] == 1 ? 0 : static_cast<std::ptrdiff_t>(cs[ld]);
      }
      m_st[d] = st;
      all_zero = all_zero && st == 0;
    }
    m_inner = RB == 0 ? false : m_st[RB - 1] != 0;
    m_scalar = all_zero;
    m_contig = size() == shape_size(s);
  }
  bool flat_ok() const noexcept { return m_scalar || m_contig; }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t i) const {
    return m_scalar ? splat<V>(ptr[0]) : load<V>(ptr + i);
  }
  template <class V, std::size_t RB>
  LEPTON_ALWAYS_INLINE V load_row(std::size_t const* idx, std::size_t c) const {
    std::ptrdiff_t off = 0;
    for (std::size_t d = 0; d + 1 < RB; ++d) off += static_cast<std::ptrdiff_t>(idx[d]) * m_st[d];
    return m_inner ? load<V>(ptr + off + c) : splat<V>(ptr[off]);
  }
  bool reads(void const* b, void const* e) const noexcept {
    auto p = static_cast<void const*>(ptr), q = static_cast<void const*>(ptr + size());
    return size() && p < e && b < q;
  }

private:
  std::array<std::ptrdiff_t, max_rank + 1> m_st{};
  bool m_inner = true, m_scalar = false, m_contig = true;
};

template <class G> inline constexpr bool is_view_v = requires { G::is_view; };

/// A single value broadcast everywhere (the gradient of a full reduction, a scalar constant).
template <class T> struct scalar_ev {
  using value_type = T;
  static constexpr std::size_t rank = 0;
  T value{};
  template <std::size_t RB> void bind(shape_t<RB> const&) {}
  bool flat_ok() const noexcept { return true; }
  template <class V> LEPTON_ALWAYS_INLINE V load_flat(std::size_t) const { return splat<V>(value); }
  template <class V, std::size_t RB> LEPTON_ALWAYS_INLINE V load_row(std::size_t const*, std::size_t) const {
    return splat<V>(value);
  }
};

/// Reduction kinds: sum and max.
struct sum_reducer {
  template <class T> static constexpr T identity() { return T(0); }
  template <class V> LEPTON_ALWAYS_INLINE static V combine(V a, V b) { return a + b; }
  template <class V> LEPTON_ALWAYS_INLINE static auto horizontal(V v) { return m::hsum(v); }
};
struct max_reducer {
  template <class T> static constexpr T identity() { return -std::numeric_limits<T>::infinity(); }
  template <class V> LEPTON_ALWAYS_INLINE static V combine(V a, V b) { return m::max(a, b); }
  template <class V> LEPTON_ALWAYS_INLINE static auto horizontal(V v) { return m::hmax(v); }
};

} // namespace lepton::detail

#include "isa_loops.hpp"

namespace lepton::detail {

/// dst (contiguous, shape s) = ev, or += ev when `add`. `ev` must be bound to s. Runs the copy of
/// the loop compiled for lepton::active_isa() (eval/isa_loops.hpp).
template <class T, std::size_t R, class Ev>
void run_assign(T* dst, Ev const& ev, shape_t<R> const& s, bool add) {
  with_loop_isa(active_isa(), [&](auto k) { decltype(k)::template run_assign<T, R>(dst, ev, s, add); });
}

/// dst[i, j0..j1) = ev over rows [i0, i1) of a 2-D iteration space with row stride ld.
/// Used as a GEMM epilogue while the block is hot in cache.
template <class T, class Ev> void run_block(T* dst, std::size_t ld, Ev const& ev, std::size_t i0,
                                            std::size_t i1, std::size_t j0, std::size_t j1) {
  with_loop_isa(active_isa(),
                [&](auto k) { decltype(k)::template run_block<T>(dst, ld, ev, i0, i1, j0, j1); });
}

/// Reduction of every element. Deterministic: the chunking does not depend on the thread count
/// (the lane order, and so the rounding, depends on the ISA level).
template <class T, class Red, std::size_t R, class Ev>
T reduce_all(eval_context& ctx, Ev const& ev, shape_t<R> const& s) {
  return with_loop_isa(active_isa(),
                       [&](auto k) { return decltype(k)::template reduce_all<T, Red, R>(ctx, ev, s); });
}

/// out (contiguous; shape s without `axis`) = reduction of ev over `axis` of the iteration shape s.
template <class T, class Red, std::size_t R, class Ev>
void reduce_axis(Ev const& ev, shape_t<R> const& s, std::size_t axis, T* out) {
  with_loop_isa(active_isa(),
                [&](auto k) { decltype(k)::template reduce_axis<T, Red, R>(ev, s, axis, out); });
}

/// y = softmax(x), or log_softmax(x) when Log, over `rows` contiguous rows of n values (the copy
/// compiled for lepton::active_isa()).
template <class T, bool Log> void softmax_rows(T const* x, T* y, std::size_t rows, std::size_t n) {
  with_loop_isa(active_isa(), [&](auto k) { decltype(k)::template softmax_rows<T, Log>(x, y, rows, n); });
}
/// Per row of x (rows x n): stats[3r] = max, stats[3r + 1] = log(sum(exp(x - max))).
template <class T> void softmax_row_stats(T const* x, std::size_t rows, std::size_t n, T* stats) {
  with_loop_isa(active_isa(), [&](auto k) { decltype(k)::template softmax_row_stats<T>(x, rows, n, stats); });
}
/// d[r, c] = g[r] * stats[3r + 2] * exp(x[r, c] - stats[3r] - stats[3r + 1]).
template <class T>
void softmax_xent_grad(T const* x, std::size_t rows, std::size_t n, T const* stats, T const* g, T* d) {
  with_loop_isa(active_isa(),
                [&](auto k) { decltype(k)::template softmax_xent_grad<T>(x, rows, n, stats, g, d); });
}

/// One pass of an optimizer update rule over elements [b, e) of one parameter (optim/optimizer.hpp).
template <class T, std::size_t NS, class Rule> void
optimizer_update(Rule const& rule, T scale, T* pv, T const* pg, T* const* st, std::size_t b, std::size_t e) {
  with_loop_isa(active_isa(),
                [&](auto k) { decltype(k)::template update<T, NS>(rule, scale, pv, pg, st, b, e); });
}
/// Sum of squares of g[b, e) (the gradient-norm pass).
template <class T> double sum_squares(T const* g, std::size_t b, std::size_t e) {
  return with_loop_isa(active_isa(), [&](auto k) { return decltype(k)::template sum_squares<T>(g, b, e); });
}
/// Whether every g[i], i in [b, e), is finite (the gradient check pass).
template <class T> bool all_finite(T const* g, std::size_t b, std::size_t e) {
  return with_loop_isa(active_isa(), [&](auto k) { return decltype(k)::template all_finite<T>(g, b, e); });
}

} // namespace lepton::detail
