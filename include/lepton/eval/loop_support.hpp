#pragma once
/// @file loop_support.hpp
/// @brief What every ISA level's copy of the fused loops shares (eval/isa_loops.hpp,
///        eval/loops.hpp): the parallel and streaming thresholds, row unravelling, and the scalar
///        ends of the loops, compiled once for all levels.

#include <cstddef>

#include "../core/config.hpp"
#include "../core/shape.hpp"

namespace lepton::detail {

/// Elements per thread below which a fused loop stays on the calling thread.
inline constexpr std::size_t parallel_grain = 32768;
/// Outputs at least this large are written with non-temporal stores (they would not stay in cache).
inline constexpr std::size_t stream_threshold_bytes = std::size_t{16} << 20;

/// Unravels a linear row number into the outer index of a shape (all dimensions but the last).
template <std::size_t R>
LEPTON_ALWAYS_INLINE void unravel_row(std::size_t row, shape_t<R> const& s, std::size_t* idx) {
  for (std::size_t d = R - 1; d-- > 0;) {
    idx[d] = row % s[d];
    row /= s[d];
  }
}

/// @name Scalar remainders of the fused loops
/// The element-at-a-time ends of every loop. They read the expression with scalar values only, so
/// one instance serves every ISA level's copy of a loop: kept out of line (an inlined copy per
/// level and per loop variant was a third of the loops' compile time).
/// @{
/// dst[i] = ev (or += ev when `add`) for the flat indices [b, e).
template <class T, class Ev>
LEPTON_NOINLINE void tail_flat(T* dst, Ev const& ev, std::size_t b, std::size_t e, bool add) {
  for (std::size_t i = b; i < e; ++i) {
    T const v = ev.template load_flat<T>(i);
    dst[i] = add ? T(dst[i] + v) : v;
  }
}
/// out[c] = ev (or += ev when `add`) for the last-dimension indices [b, e) of row `idx`.
template <class T, std::size_t R, class Ev> LEPTON_NOINLINE void
tail_row(T* out, Ev const& ev, std::size_t const* idx, std::size_t b, std::size_t e, bool add) {
  for (std::size_t c = b; c < e; ++c) {
    T const v = ev.template load_row<T, R>(idx, c);
    out[c] = add ? T(out[c] + v) : v;
  }
}
/// r combined with ev over the flat indices [b, e).
template <class T, class Red, class Ev>
LEPTON_NOINLINE T tail_reduce_flat(Ev const& ev, std::size_t b, std::size_t e, T r) {
  for (std::size_t i = b; i < e; ++i) r = Red::combine(r, ev.template load_flat<T>(i));
  return r;
}
/// r combined with ev over the last-dimension indices [b, e) of row `idx`.
template <class T, class Red, std::size_t R, class Ev>
LEPTON_NOINLINE T tail_reduce_row(Ev const& ev, std::size_t const* idx, std::size_t b, std::size_t e, T r) {
  for (std::size_t c = b; c < e; ++c) r = Red::combine(r, ev.template load_row<T, R>(idx, c));
  return r;
}
/// dst[c] = combine(dst[c], ev) for the last-dimension indices [b, e) of row `idx`.
template <class T, class Red, std::size_t R, class Ev> LEPTON_NOINLINE void
tail_reduce_into(T* dst, Ev const& ev, std::size_t const* idx, std::size_t b, std::size_t e) {
  for (std::size_t c = b; c < e; ++c) dst[c] = Red::combine(dst[c], ev.template load_row<T, R>(idx, c));
}
/// @}

} // namespace lepton::detail
