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

#include "../core/parallel.hpp"
#include "../core/shape.hpp"
#include "context.hpp"
#include "simd.hpp"

namespace lepton::detail {

/// Elements per thread below which a fused loop stays on the calling thread.
inline constexpr std::size_t parallel_grain = 32768;
/// Outputs at least this large are written with non-temporal stores (they would not stay in cache).
inline constexpr std::size_t stream_threshold_bytes = std::size_t{16} << 20;

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

/// Unravels a linear row number into the outer index of a shape (all dimensions but the last).
template <std::size_t R>
LEPTON_ALWAYS_INLINE void unravel_row(std::size_t row, shape_t<R> const& s, std::size_t* idx) {
  for (std::size_t d = R - 1; d-- > 0;) {
    idx[d] = row % s[d];
    row /= s[d];
  }
}

/// dst (contiguous, shape s) = ev, or += ev when `add`. `ev` must be bound to s.
template <class T, std::size_t R, class Ev>
void run_assign(T* dst, Ev const& ev, shape_t<R> const& s, bool add) {
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  std::size_t const n = shape_size(s);
  if (n == 0) return;
  if (R == 0 || ev.flat_ok()) {
    bool stream = false;
    if constexpr (has_stream_store<V>()) stream = !add && n * sizeof(T) >= stream_threshold_bytes;
    parallel_range(n, parallel_grain, [&](std::size_t b, std::size_t e) {
      // A local copy of the evaluator: its flags and pointers provably do not change under the
      // stores to dst, so the compiler keeps them in registers and unswitches the loops on them
      // (through `ev`, every load re-read them: 1.4x slower fused loops on one core).
      auto const lev = ev;
      std::size_t i = b;
      if (add) {
        for (; i + W <= e; i += W) store<V>(dst + i, load<V>(dst + i) + lev.template load_flat<V>(i));
        for (; i < e; ++i) dst[i] += lev.template load_flat<T>(i);
      } else if (stream) {
        // big output: align, then bypass the cache (no read-for-ownership of the destination)
        for (; i < e && reinterpret_cast<std::uintptr_t>(dst + i) % (sizeof(T) * W) != 0; ++i)
          dst[i] = lev.template load_flat<T>(i);
        for (; i + W <= e; i += W) stream_store<V>(dst + i, lev.template load_flat<V>(i));
        for (; i < e; ++i) dst[i] = lev.template load_flat<T>(i);
        stream_fence();
      } else {
        for (; i + W <= e; i += W) store<V>(dst + i, lev.template load_flat<V>(i));
        for (; i < e; ++i) dst[i] = lev.template load_flat<T>(i);
      }
    });
    return;
  }
  if constexpr (R > 0) {
    std::size_t const inner = s[R - 1];
    std::size_t const rows = n / inner;
    parallel_range(rows, std::max<std::size_t>(1, parallel_grain / inner),
                   [&](std::size_t rb, std::size_t re) {
      auto const lev = ev; // see above
      std::size_t idx[R > 1 ? R - 1 : 1] = {};
      for (std::size_t r = rb; r < re; ++r) {
        unravel_row<R>(r, s, idx);
        T* out = dst + r * inner;
        std::size_t c = 0;
        if (add) {
          for (; c + W <= inner; c += W)
            store<V>(out + c, load<V>(out + c) + lev.template load_row<V, R>(idx, c));
          for (; c < inner; ++c) out[c] += lev.template load_row<T, R>(idx, c);
        } else {
          for (; c + W <= inner; c += W) store<V>(out + c, lev.template load_row<V, R>(idx, c));
          for (; c < inner; ++c) out[c] = lev.template load_row<T, R>(idx, c);
        }
      }
    });
  }
}

/// dst[i, j0..j1) = ev over rows [i0, i1) of a 2-D iteration space with row stride ld.
/// Used as a GEMM epilogue while the block is hot in cache.
template <class T, class Ev> LEPTON_ALWAYS_INLINE void run_block(T* dst, std::size_t ld, Ev const& ev,
                                                                 std::size_t i0, std::size_t i1,
                                                                 std::size_t j0, std::size_t j1) {
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  for (std::size_t i = i0; i < i1; ++i) {
    std::size_t idx[1] = {i};
    T* out = dst + i * ld;
    std::size_t c = j0;
    for (; c + W <= j1; c += W) store<V>(out + c, ev.template load_row<V, 2>(idx, c));
    for (; c < j1; ++c) out[c] = ev.template load_row<T, 2>(idx, c);
  }
}

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

/// Reduces one contiguous run [b, e) of a flat-readable loadable (4 SIMD accumulators).
template <class T, class Red, class Ev> T reduce_flat_range(Ev const& ev, std::size_t b, std::size_t e) {
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  V a0 = splat<V>(Red::template identity<T>()), a1 = a0, a2 = a0, a3 = a0;
  std::size_t i = b;
  for (; i + 4 * W <= e; i += 4 * W) {
    a0 = Red::combine(a0, ev.template load_flat<V>(i));
    a1 = Red::combine(a1, ev.template load_flat<V>(i + W));
    a2 = Red::combine(a2, ev.template load_flat<V>(i + 2 * W));
    a3 = Red::combine(a3, ev.template load_flat<V>(i + 3 * W));
  }
  for (; i + W <= e; i += W) a0 = Red::combine(a0, ev.template load_flat<V>(i));
  T r = static_cast<T>(Red::horizontal(Red::combine(Red::combine(a0, a1), Red::combine(a2, a3))));
  for (; i < e; ++i) r = Red::combine(r, ev.template load_flat<T>(i));
  return r;
}

/// Reduces one row of the last dimension.
template <class T, class Red, std::size_t R, class Ev>
T reduce_row(Ev const& ev, std::size_t const* idx, std::size_t inner) {
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  V a0 = splat<V>(Red::template identity<T>()), a1 = a0;
  std::size_t c = 0;
  for (; c + 2 * W <= inner; c += 2 * W) {
    a0 = Red::combine(a0, ev.template load_row<V, R>(idx, c));
    a1 = Red::combine(a1, ev.template load_row<V, R>(idx, c + W));
  }
  for (; c + W <= inner; c += W) a0 = Red::combine(a0, ev.template load_row<V, R>(idx, c));
  T r = static_cast<T>(Red::horizontal(Red::combine(a0, a1)));
  for (; c < inner; ++c) r = Red::combine(r, ev.template load_row<T, R>(idx, c));
  return r;
}

/// Reduction of every element. Deterministic: the chunking does not depend on the thread count.
template <class T, class Red, std::size_t R, class Ev>
T reduce_all(eval_context& ctx, Ev const& ev, shape_t<R> const& s) {
  std::size_t const n = shape_size(s);
  if (n == 0) return Red::template identity<T>();
  constexpr std::size_t chunk = 1 << 16;
  if (R == 0 || ev.flat_ok()) {
    std::size_t const nchunks = (n + chunk - 1) / chunk;
    if (nchunks == 1) return reduce_flat_range<T, Red>(ev, 0, n);
    arena_scope scope(ctx.mem);
    T* part = ctx.alloc<T>(nchunks);
    parallel_for(nchunks, [&](std::size_t k) {
      part[k] = reduce_flat_range<T, Red>(ev, k * chunk, std::min(n, (k + 1) * chunk));
    });
    T r = Red::template identity<T>();
    for (std::size_t k = 0; k < nchunks; ++k) r = Red::combine(r, part[k]);
    return r;
  }
  if constexpr (R > 0) {
    std::size_t const inner = s[R - 1], rows = n / inner;
    std::size_t const rows_per = std::max<std::size_t>(1, chunk / inner);
    std::size_t const nchunks = (rows + rows_per - 1) / rows_per;
    arena_scope scope(ctx.mem);
    T* part = ctx.alloc<T>(nchunks);
    parallel_for(nchunks, [&](std::size_t k) {
      std::size_t idx[R > 1 ? R - 1 : 1] = {};
      T r = Red::template identity<T>();
      for (std::size_t row = k * rows_per; row < std::min(rows, (k + 1) * rows_per); ++row) {
        unravel_row<R>(row, s, idx);
        r = Red::combine(r, reduce_row<T, Red, R>(ev, idx, inner));
      }
      part[k] = r;
    });
    T r = Red::template identity<T>();
    for (std::size_t k = 0; k < nchunks; ++k) r = Red::combine(r, part[k]);
    return r;
  }
  return Red::template identity<T>();
}

/// out (contiguous; shape s without `axis`) = reduction of ev over `axis` of the iteration shape s.
template <class T, class Red, std::size_t R, class Ev>
void reduce_axis(Ev const& ev, shape_t<R> const& s, std::size_t axis, T* out) {
  static_assert(R >= 1);
  std::size_t const n = shape_size(s);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
  for (std::size_t d = axis + 1; d < R; ++d) inner *= s[d];
  std::size_t const len = s[axis];
  if (n == 0) {
    std::fill_n(out, outer * inner, Red::template identity<T>());
    return;
  }
  if (axis == R - 1) {
    parallel_range(outer, std::max<std::size_t>(1, parallel_grain / len), [&](std::size_t b, std::size_t e) {
      std::size_t idx[R > 1 ? R - 1 : 1] = {};
      for (std::size_t r = b; r < e; ++r) {
        unravel_row<R>(r, s, idx);
        out[r] = reduce_row<T, Red, R>(ev, idx, len);
      }
    });
    return;
  }
  using V = simd_t<T>;
  constexpr std::size_t W = lanes_v<V>;
  std::size_t const last = s[R - 1];
  std::size_t const inner_rows = inner / last; // rows of the last dimension per output block
  parallel_range(outer, std::max<std::size_t>(1, parallel_grain / (len * inner)),
                 [&](std::size_t b, std::size_t e) {
    std::size_t idx[R > 1 ? R - 1 : 1] = {};
    for (std::size_t o = b; o < e; ++o) {
      T* orow = out + o * inner;
      std::fill_n(orow, inner, Red::template identity<T>());
      for (std::size_t k = 0; k < len; ++k) {
        for (std::size_t ir = 0; ir < inner_rows; ++ir) {
          // Outer index of iteration row (o, k, ir): compose and unravel.
          unravel_row<R>((o * len + k) * inner_rows + ir, s, idx);
          T* dst = orow + ir * last;
          std::size_t c = 0;
          for (; c + W <= last; c += W)
            store<V>(dst + c, Red::combine(load<V>(dst + c), ev.template load_row<V, R>(idx, c)));
          for (; c < last; ++c) dst[c] = Red::combine(dst[c], ev.template load_row<T, R>(idx, c));
        }
      }
    }
  });
}

} // namespace lepton::detail
