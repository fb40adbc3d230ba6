#pragma once
/// @file simd.hpp
/// @brief Loads and stores of the value kinds of core/math.hpp (a scalar or an xsimd batch) for the
///        CPU's fused loops, including non-temporal stores.

#include <cstddef>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../core/config.hpp"
#include "../core/math.hpp"

namespace lepton::detail {

template <class V, class T> LEPTON_ALWAYS_INLINE V load(T const* p) {
  if constexpr (is_scalar_v<V>)
    return *p;
  else
    return V::load_unaligned(p);
}
template <class V, class T> LEPTON_ALWAYS_INLINE void store(T* p, V v) {
  if constexpr (is_scalar_v<V>)
    *p = v;
  else
    v.store_unaligned(p);
}
/// Whether stream_store has a non-temporal path for V (a full-width float/double batch).
template <class V> constexpr bool has_stream_store() {
  if constexpr (is_scalar_v<V>) return false;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return true;
#endif
  else {
    using T = typename V::value_type;
    constexpr std::size_t bytes = sizeof(T) * V::size;
    (void)bytes;
#if defined(__AVX512F__)
    if constexpr (bytes == 64) return std::is_floating_point_v<T>;
#endif
#if defined(__AVX__)
    if constexpr (bytes == 32) return std::is_floating_point_v<T>;
#endif
#if defined(__SSE2__)
    if constexpr (bytes == 16) return std::is_floating_point_v<T>;
#endif
    return false;
  }
}

/// A non-temporal (cache-bypassing) store of a batch to `p`, aligned to the batch size. Large
/// outputs written this way skip the read-for-ownership of each line: 3 instead of 4 memory
/// transfers per element of `z = f(x, y)`. Callers fence with stream_fence() when done.
template <class V, class T> LEPTON_ALWAYS_INLINE void stream_store(T* p, V v) {
#if LEPTON_HAS_WIDE
  if constexpr (is_wide_v<V>) {
    wmath::stream(p, v);
    return;
  }
#endif
  constexpr std::size_t bytes = sizeof(T) * V::size;
#if defined(__AVX512F__)
  if constexpr (bytes == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_stream_ps(p, v);
    else
      _mm512_stream_pd(p, v);
    return;
  }
#endif
#if defined(__AVX__)
  if constexpr (bytes == 32) {
    if constexpr (std::is_same_v<T, float>)
      _mm256_stream_ps(p, v);
    else
      _mm256_stream_pd(p, v);
    return;
  }
#endif
#if defined(__SSE2__)
  if constexpr (bytes == 16) {
    if constexpr (std::is_same_v<T, float>)
      _mm_stream_ps(p, v);
    else
      _mm_stream_pd(p, v);
    return;
  }
#endif
  v.store_aligned(p);
}
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

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

} // namespace lepton::detail
