#pragma once
/// @file math.hpp
/// @brief The value kinds op functors compute on: a scalar `T` or an `xsimd::batch<T>` of the default
///        architecture, and elementwise math with one spelling for both (`detail::m::exp(x)`).
///        Backend-neutral: the op functors of expr/ are written once over `V` with these; the CPU
///        backend instantiates them on batches, a device backend (P14) on scalars.

#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "config.hpp"
#include "wide.hpp"

namespace lepton::detail {

template <class T> struct simd_of {
  using type = T; // integers and other types run scalar
};
#if XSIMD_VERSION_MAJOR >= 8
template <> struct simd_of<float> {
  using type = xsimd::batch<float>;
};
template <> struct simd_of<double> {
  using type = xsimd::batch<double>;
};
#endif
/// The SIMD batch type used for element type T (T itself when T has no SIMD path).
template <class T> using simd_t = typename simd_of<T>::type;

template <class V> struct lanes {
  static constexpr std::size_t value = 1;
};
template <class T, class A> struct lanes<xsimd::batch<T, A>> {
  static constexpr std::size_t value = xsimd::batch<T, A>::size;
};
#if LEPTON_HAS_WIDE
template <class T, std::size_t B> struct lanes<wide<T, B>> {
  static constexpr std::size_t value = wide<T, B>::size;
};
#endif
template <class V> inline constexpr std::size_t lanes_v = lanes<V>::value;

template <class V> inline constexpr bool is_scalar_v = std::is_arithmetic_v<V>;

template <class V, class T> LEPTON_ALWAYS_INLINE LEPTON_HD V splat(T v) {
  if constexpr (is_scalar_v<V>)
    return static_cast<V>(v);
  else
    return V(v);
}

/// Elementwise math over scalars, xsimd batches and (with LEPTON_HAS_WIDE) wide values, one
/// spelling for all.
namespace m {
#if LEPTON_HAS_WIDE
#define LEPTON_MATH_WIDE(name, wide_expr)                                                                    \
  else if constexpr (is_wide_v<V>) {                                                                         \
    using T_ = typename V::value_type;                                                                       \
    (void)sizeof(T_);                                                                                        \
    return wide_expr;                                                                                        \
  }
#else
#define LEPTON_MATH_WIDE(name, wide_expr)
#endif
// A function of wide values computed by the build-level xsimd function, piece by piece.
#define LEPTON_MATH_PIECES(name)                                                                             \
  wmath::pieces<simd_t<T_>>(x, [](auto p) LEPTON_INLINE_LAMBDA {                                             \
    if constexpr (is_scalar_v<decltype(p)>)                                                                  \
      return std::name(p);                                                                                   \
    else                                                                                                     \
      return xsimd::name(p);                                                                                 \
  })
// float's own wide function (wmath::name_f) or, for double, the pieces.
#define LEPTON_MATH_FLOAT_OR_PIECES(name)                                                                    \
  [&]() LEPTON_INLINE_LAMBDA {                                                                               \
    if constexpr (std::is_same_v<T_, float>)                                                                 \
      return wmath::name##_f(x);                                                                             \
    else                                                                                                     \
      return LEPTON_MATH_PIECES(name);                                                                       \
      }()
#define LEPTON_MATH_UNARY(name, wide_expr)                                                                   \
  template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V name(V x) {                                            \
    if constexpr (is_scalar_v<V>) return std::name(x);                                                       \
    LEPTON_MATH_WIDE(name, wide_expr)                                                                        \
    else return xsimd::name(x);                                                                              \
  }
LEPTON_MATH_UNARY(exp, LEPTON_MATH_FLOAT_OR_PIECES(exp))
LEPTON_MATH_UNARY(log, LEPTON_MATH_FLOAT_OR_PIECES(log))
LEPTON_MATH_UNARY(log1p, LEPTON_MATH_FLOAT_OR_PIECES(log1p))
LEPTON_MATH_UNARY(expm1, LEPTON_MATH_FLOAT_OR_PIECES(expm1))
LEPTON_MATH_UNARY(sqrt, wmath::sqrt(x))
LEPTON_MATH_UNARY(abs, wmath::abs(x))
LEPTON_MATH_UNARY(erf, LEPTON_MATH_PIECES(erf))
#undef LEPTON_MATH_UNARY
#undef LEPTON_MATH_FLOAT_OR_PIECES

template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V pow(V x, V y) {
  if constexpr (is_scalar_v<V>) return std::pow(x, y);
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::pieces<simd_t<typename V::value_type>>(x, y, [](auto a, auto b) LEPTON_INLINE_LAMBDA {
      if constexpr (is_scalar_v<decltype(a)>)
        return std::pow(a, b);
      else
        return xsimd::pow(a, b);
    });
#endif
  else
    return xsimd::pow(x, y);
}
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V max(V a, V b) {
  if constexpr (is_scalar_v<V>) return a < b ? b : a;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::max(a, b);
#endif
  else
    return xsimd::max(a, b);
}
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V min(V a, V b) {
  if constexpr (is_scalar_v<V>) return b < a ? b : a;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::min(a, b);
#endif
  else
    return xsimd::min(a, b);
}
/// c ? a : b with c given as a comparison result.
template <class C, class V> LEPTON_ALWAYS_INLINE LEPTON_HD V select(C c, V a, V b) {
  if constexpr (is_scalar_v<V>) return c ? a : b;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::select(c, a, b);
#endif
  else
    return xsimd::select(c, a, b);
}
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V fma(V a, V b, V c) {
  if constexpr (is_scalar_v<V>) return a * b + c;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::fma(a, b, c);
#endif
  else
    return xsimd::fma(a, b, c);
}
/// float tanh as a rational function: x * P(x^2) / Q(x^2) with P of degree 6 and Q of degree 3 in
/// x^2, on x clamped to [-9, 9] (beyond, tanh rounds to +-1 in float). The coefficients are our own
/// weighted least-squares fit of the relative error on [0, 9] (max 7e-9 in exact arithmetic); in
/// float the result is within 6 ulp (3.2e-7 relative) of tanh over every float checked, odd,
/// exactly +-1 beyond 9, and keeps NaN. About 16 operations and one division per batch: 1.75x
/// faster than the exp-based general tanh, which made the fused `a*x + b*y*y - tanh(x)`
/// compute-bound on one core. Double precision keeps the library's (exp-based) tanh.
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V tanh_rational(V x) {
  V c;
  if constexpr (is_scalar_v<V>) c = x < -9.0f ? -9.0f : (x > 9.0f ? 9.0f : x); // NaN passes through
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    c = wmath::min(V(9.0f), wmath::max(V(-9.0f), x));
#endif
  else
    c = xsimd::min(splat<V>(9.0f),
                   xsimd::max(splat<V>(-9.0f), x)); // x86 min/max return the 2nd operand (x) on NaN
  V const t = c * c;
  V p = splat<V>(-8.489177919909079e-14f);
  p = fma(p, t, splat<V>(5.278141198261252e-11f));
  p = fma(p, t, splat<V>(-2.0225648226880398e-08f));
  p = fma(p, t, splat<V>(1.1154416977292765e-05f));
  p = fma(p, t, splat<V>(0.0031039668808833403f));
  p = fma(p, t, splat<V>(0.13084019735377106f));
  p = fma(p, t, splat<V>(0.9999999934041757f));
  V q = splat<V>(0.0002546160588760639f);
  q = fma(q, t, splat<V>(0.02449522113921591f));
  q = fma(q, t, splat<V>(0.4641734684287735f));
  q = fma(q, t, splat<V>(1.0f));
  return c * p / q;
}
/// Hyperbolic tangent: the rational form for float (batches and scalars alike, so that a loop's
/// SIMD body and its scalar tail agree), the library tanh for other types.
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD V tanh(V x) {
  if constexpr (std::is_same_v<V, float> || std::is_same_v<V, xsimd::batch<float>>)
    return tanh_rational(x);
  else if constexpr (is_scalar_v<V>)
    return std::tanh(x);
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>) {
    using T_ = typename V::value_type;
    if constexpr (std::is_same_v<T_, float>)
      return tanh_rational(x);
    else
      return LEPTON_MATH_PIECES(tanh);
  }
#endif
  else
    return xsimd::tanh(x);
}

/// 1 where the comparison holds, else 0, as a value.
template <class C, class V> LEPTON_ALWAYS_INLINE LEPTON_HD V mask(C c) {
  return select(c, splat<V>(1), splat<V>(0));
}
/// Horizontal sum / max of a batch (identity on scalars).
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD auto hsum(V v) {
  if constexpr (is_scalar_v<V>) return v;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::hsum(v);
#endif
  else
    return xsimd::hadd(v);
}
template <class V> LEPTON_ALWAYS_INLINE LEPTON_HD auto hmax(V v) {
  if constexpr (is_scalar_v<V>) return v;
#if LEPTON_HAS_WIDE
  else if constexpr (is_wide_v<V>)
    return wmath::hmax(v);
#endif
  else {
    alignas(64) typename V::value_type buf[V::size];
    v.store_aligned(buf);
    auto r = buf[0];
    for (std::size_t i = 1; i < V::size; ++i) r = buf[i] > r ? buf[i] : r;
    return r;
  }
}
#undef LEPTON_MATH_PIECES
#undef LEPTON_MATH_WIDE
} // namespace m
} // namespace lepton::detail
