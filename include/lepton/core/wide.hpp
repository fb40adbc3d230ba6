#pragma once
/// @file wide.hpp
/// @brief `wide<T, B>`: a SIMD value of B bytes of float or double on GCC vector extensions, the
///        value kind of the fused loops compiled for an ISA level above the build's (runtime
///        dispatch, P13), with the elementwise math the op functors use.
///
/// Why not xsimd: xsimd picks its architecture from the compile flags, so a default (SSE2) build
/// has no AVX2 or AVX-512 batches at all. The op functors of expr/ are written once over a value
/// kind `V` (core/math.hpp); instantiated on `wide<float, 32>` inside a loop of the AVX2 target
/// region (eval/isa/loops-inl.hpp) and inlined there, their vector operations compile to that
/// region's instructions. Every function here is therefore defined *outside* any target region,
/// uses no intrinsic that the build's flags lack (the few that need one, sqrt and the streaming
/// store, call a small helper with its own target attribute, inlined once it sits in the region's
/// loop), and is always-inline: an out-of-line copy would be compiled for the build's flags.
///
/// Available with GCC on x86-64 (LEPTON_HAS_WIDE). clang checks the vector ABI of every call before
/// inlining and rejects a by-value 32-byte vector passed between an AVX2 loop and a baseline
/// functor, so clang builds keep their fused loops at the build's level (docs/performance.md).
///
/// Math: exp and log of float are our own (Cody-Waite reduction and polynomials fitted for this
/// file: exp within 1 ulp and log within 2 ulp of the float64 result over the float range, both
/// exact on the special values); log1p, expm1 and tanh derive from them; erf, pow and every double
/// function run xsimd's build-level batches piece by piece (no faster than the build's level, but
/// no slower and with the same results).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "config.hpp"

#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__) &&               \
    !defined(LEPTON_NO_LOOP_DISPATCH)
#define LEPTON_HAS_WIDE 1
#include <immintrin.h>
#else
#define LEPTON_HAS_WIDE 0
#endif

#if LEPTON_HAS_WIDE

// 32- and 64-byte vectors passed by value between these always-inline functions draw GCC's note
// that their ABI differs without AVX; every such function is inlined into one target region.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace lepton::detail {

// The vector types, spelled per element type and width: GCC drops vector attributes from typedefs
// that depend on a template parameter.
template <class T, std::size_t B> struct wide_raw;
#define LEPTON_WIDE_RAW(T, I, B)                                                                             \
  template <> struct wide_raw<T, B> {                                                                        \
    typedef T type __attribute__((vector_size(B)));                                                          \
    typedef T unaligned __attribute__((vector_size(B), aligned(alignof(T)), __may_alias__));                 \
    typedef I lanes __attribute__((vector_size(B)));                                                         \
  };
LEPTON_WIDE_RAW(float, std::int32_t, 16)
LEPTON_WIDE_RAW(float, std::int32_t, 32)
LEPTON_WIDE_RAW(float, std::int32_t, 64)
LEPTON_WIDE_RAW(double, std::int64_t, 16)
LEPTON_WIDE_RAW(double, std::int64_t, 32)
LEPTON_WIDE_RAW(double, std::int64_t, 64)
#undef LEPTON_WIDE_RAW

template <class T> struct wide_int {
  using type = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
};

// A splat of a run-time scalar needs an instruction too: built from `s - raw{}` in a function
// compiled for the build's flags, GCC lowered the 32- and 64-byte vector lane by lane (vinsertps
// chains) before inlining, and redid it on every iteration of the loop it was inlined into (Adam's
// update on the AVX2 level took 4.5x the native build's time). One helper per width, as sqrt.
inline __m128 splat_v(float s, __m128 const*) { return _mm_set1_ps(s); }
inline __m128d splat_v(double s, __m128d const*) { return _mm_set1_pd(s); }
__attribute__((target("avx"))) inline __m256 splat_v(float s, __m256 const*) { return _mm256_set1_ps(s); }
__attribute__((target("avx"))) inline __m256d splat_v(double s, __m256d const*) { return _mm256_set1_pd(s); }
__attribute__((target("avx512f"))) inline __m512 splat_v(float s, __m512 const*) { return _mm512_set1_ps(s); }
__attribute__((target("avx512f"))) inline __m512d splat_v(double s, __m512d const*) {
  return _mm512_set1_pd(s);
}

/// @brief The result of comparing two wide values: all-ones lanes where the comparison holds.
template <class T, std::size_t B> struct wide_mask {
  using lane = typename wide_int<T>::type;
  using raw = typename wide_raw<T, B>::lanes;
  raw v;
  wide_mask() = default;
  LEPTON_ALWAYS_INLINE wide_mask(raw const& r) noexcept : v(r) {}
  /// Not trivially copyable on purpose (see wide).
  LEPTON_ALWAYS_INLINE wide_mask(wide_mask const& o) noexcept : v(o.v) {}
  LEPTON_ALWAYS_INLINE wide_mask& operator=(wide_mask const& o) noexcept {
    v = o.v;
    return *this;
  }
  friend LEPTON_ALWAYS_INLINE wide_mask operator&(wide_mask a, wide_mask b) noexcept { return {a.v & b.v}; }
  friend LEPTON_ALWAYS_INLINE wide_mask operator|(wide_mask a, wide_mask b) noexcept { return {a.v | b.v}; }
  friend LEPTON_ALWAYS_INLINE wide_mask operator!(wide_mask a) noexcept { return {~a.v}; }
};

/// @brief B bytes of T (float or double) as one value: the xsimd-batch interface the fused loops
///        and op functors use (splat constructor, loads, stores, arithmetic, comparisons).
template <class T, std::size_t B> struct wide {
  static_assert(std::is_floating_point_v<T>, "lepton: internal: wide<T> holds float or double");
  using value_type = T;
  /// Lanes per value.
  static constexpr std::size_t size = B / sizeof(T);
  using raw = typename wide_raw<T, B>::type;
  using uraw = typename wide_raw<T, B>::unaligned;
  using mask_type = wide_mask<T, B>;
  raw v;

  wide() = default;
  LEPTON_ALWAYS_INLINE wide(raw const& r) noexcept : v(r) {}
  /// Not trivially copyable on purpose: a wide value is then passed and returned through memory by
  /// every function, whatever its target. A trivially copyable 32- or 64-byte vector travels in a
  /// YMM/ZMM register between AVX functions and in memory for a baseline one, so a call between
  /// the two that the compiler did not inline (an evaluator's load, a lambda) read garbage and
  /// crashed. Inlined, the copies cost nothing.
  LEPTON_ALWAYS_INLINE wide(wide const& o) noexcept : v(o.v) {}
  LEPTON_ALWAYS_INLINE wide& operator=(wide const& o) noexcept {
    v = o.v;
    return *this;
  }
  /// Every lane = s (s - 0 is s for every s, -0 and NaN included).
  LEPTON_ALWAYS_INLINE wide(T s) noexcept : v(splat_v(s, static_cast<raw const*>(nullptr))) {}

  static LEPTON_ALWAYS_INLINE wide load_unaligned(T const* p) noexcept {
    // A raw value first: `raw const&` bound straight to the uraw lvalue would read it with raw's
    // alignment (vmovaps on an unaligned address).
    raw const r = *reinterpret_cast<uraw const*>(p);
    return r;
  }
  static LEPTON_ALWAYS_INLINE wide load_aligned(T const* p) noexcept {
    return *reinterpret_cast<raw const*>(p);
  }
  LEPTON_ALWAYS_INLINE void store_unaligned(T* p) const noexcept { *reinterpret_cast<uraw*>(p) = v; }
  LEPTON_ALWAYS_INLINE void store_aligned(T* p) const noexcept { *reinterpret_cast<raw*>(p) = v; }

  friend LEPTON_ALWAYS_INLINE wide operator+(wide a, wide b) noexcept { return a.v + b.v; }
  friend LEPTON_ALWAYS_INLINE wide operator-(wide a, wide b) noexcept { return a.v - b.v; }
  friend LEPTON_ALWAYS_INLINE wide operator*(wide a, wide b) noexcept { return a.v * b.v; }
  friend LEPTON_ALWAYS_INLINE wide operator/(wide a, wide b) noexcept { return a.v / b.v; }
  friend LEPTON_ALWAYS_INLINE wide operator-(wide a) noexcept { return -a.v; }
  LEPTON_ALWAYS_INLINE wide& operator+=(wide b) noexcept { return v += b.v, *this; }
  LEPTON_ALWAYS_INLINE wide& operator-=(wide b) noexcept { return v -= b.v, *this; }
  LEPTON_ALWAYS_INLINE wide& operator*=(wide b) noexcept { return v *= b.v, *this; }
  LEPTON_ALWAYS_INLINE wide& operator/=(wide b) noexcept { return v /= b.v, *this; }
  friend LEPTON_ALWAYS_INLINE mask_type operator<(wide a, wide b) noexcept { return {a.v < b.v}; }
  friend LEPTON_ALWAYS_INLINE mask_type operator<=(wide a, wide b) noexcept { return {a.v <= b.v}; }
  friend LEPTON_ALWAYS_INLINE mask_type operator>(wide a, wide b) noexcept { return {a.v > b.v}; }
  friend LEPTON_ALWAYS_INLINE mask_type operator>=(wide a, wide b) noexcept { return {a.v >= b.v}; }
  friend LEPTON_ALWAYS_INLINE mask_type operator==(wide a, wide b) noexcept { return {a.v == b.v}; }
  friend LEPTON_ALWAYS_INLINE mask_type operator!=(wide a, wide b) noexcept { return {a.v != b.v}; }
};

template <class V> struct is_wide : std::false_type {};
template <class T, std::size_t B> struct is_wide<wide<T, B>> : std::true_type {};
/// Whether V is a wide<T, B>.
template <class V> inline constexpr bool is_wide_v = is_wide<V>::value;

/// The elementwise math of wide values (reached through core/math.hpp's m:: functions).
namespace wmath {

template <class T, std::size_t B>
LEPTON_ALWAYS_INLINE wide<T, B> select(wide_mask<T, B> c, wide<T, B> a, wide<T, B> b) {
  return c.v ? a.v : b.v;
}
/// a > b ? a : b: x86's maxps (b when either is NaN), as xsimd::max on x86.
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE wide<T, B> max(wide<T, B> a, wide<T, B> b) {
  return a.v > b.v ? a.v : b.v;
}
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE wide<T, B> min(wide<T, B> a, wide<T, B> b) {
  return a.v < b.v ? a.v : b.v;
}
/// a * b + c (one FMA where the region has FMA: GCC contracts it).
template <class T, std::size_t B>
LEPTON_ALWAYS_INLINE wide<T, B> fma(wide<T, B> a, wide<T, B> b, wide<T, B> c) {
  return a.v * b.v + c.v;
}
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE wide<T, B> abs(wide<T, B> x) {
  using M = typename wide_mask<T, B>::raw;
  using L = typename wide_mask<T, B>::lane;
  constexpr L magnitude = std::numeric_limits<L>::max(); // every bit but the sign
  return reinterpret_cast<typename wide<T, B>::raw>(reinterpret_cast<M>(x.v) & magnitude);
}

// sqrt and the streaming store need an instruction: a helper per width with its own target,
// not always-inline (a baseline caller could not take it in); GCC inlines it into the region.
inline __m128 sqrt_v(__m128 x) { return _mm_sqrt_ps(x); }
inline __m128d sqrt_v(__m128d x) { return _mm_sqrt_pd(x); }
__attribute__((target("avx"))) inline __m256 sqrt_v(__m256 x) { return _mm256_sqrt_ps(x); }
__attribute__((target("avx"))) inline __m256d sqrt_v(__m256d x) { return _mm256_sqrt_pd(x); }
__attribute__((target("avx512f"))) inline __m512 sqrt_v(__m512 x) { return _mm512_sqrt_ps(x); }
__attribute__((target("avx512f"))) inline __m512d sqrt_v(__m512d x) { return _mm512_sqrt_pd(x); }
inline void stream_v(float* p, __m128 x) { _mm_stream_ps(p, x); }
inline void stream_v(double* p, __m128d x) { _mm_stream_pd(p, x); }
__attribute__((target("avx"))) inline void stream_v(float* p, __m256 x) { _mm256_stream_ps(p, x); }
__attribute__((target("avx"))) inline void stream_v(double* p, __m256d x) { _mm256_stream_pd(p, x); }
__attribute__((target("avx512f"))) inline void stream_v(float* p, __m512 x) { _mm512_stream_ps(p, x); }
__attribute__((target("avx512f"))) inline void stream_v(double* p, __m512d x) { _mm512_stream_pd(p, x); }

template <class T, std::size_t B> LEPTON_ALWAYS_INLINE wide<T, B> sqrt(wide<T, B> x) {
  return reinterpret_cast<typename wide<T, B>::raw>(sqrt_v(x.v));
}
/// A non-temporal store of x at p (aligned to B bytes).
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE void stream(T* p, wide<T, B> x) { stream_v(p, x.v); }

/// Horizontal sum, left to right; horizontal max (maxps order).
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE T hsum(wide<T, B> x) {
  T s = x.v[0];
  for (std::size_t i = 1; i < wide<T, B>::size; ++i) s += x.v[i];
  return s;
}
template <class T, std::size_t B> LEPTON_ALWAYS_INLINE T hmax(wide<T, B> x) {
  T s = x.v[0];
  for (std::size_t i = 1; i < wide<T, B>::size; ++i) s = x.v[i] > s ? x.v[i] : s;
  return s;
}

/// f applied to each piece of x the width of P (a build-level xsimd batch, or T itself).
template <class P, class T, std::size_t B, class F>
LEPTON_ALWAYS_INLINE wide<T, B> pieces(wide<T, B> x, F f) {
  alignas(64) T buf[wide<T, B>::size];
  x.store_aligned(buf);
  if constexpr (std::is_arithmetic_v<P>) {
    for (std::size_t i = 0; i < wide<T, B>::size; ++i) buf[i] = f(buf[i]);
  } else {
    for (std::size_t i = 0; i < wide<T, B>::size; i += P::size)
      f(P::load_aligned(buf + i)).store_aligned(buf + i);
  }
  return wide<T, B>::load_aligned(buf);
}
template <class P, class T, std::size_t B, class F>
LEPTON_ALWAYS_INLINE wide<T, B> pieces(wide<T, B> x, wide<T, B> y, F f) {
  alignas(64) T bx[wide<T, B>::size], by[wide<T, B>::size];
  x.store_aligned(bx);
  y.store_aligned(by);
  if constexpr (std::is_arithmetic_v<P>) {
    for (std::size_t i = 0; i < wide<T, B>::size; ++i) bx[i] = f(bx[i], by[i]);
  } else {
    for (std::size_t i = 0; i < wide<T, B>::size; i += P::size)
      f(P::load_aligned(bx + i), P::load_aligned(by + i)).store_aligned(bx + i);
  }
  return wide<T, B>::load_aligned(bx);
}

/// e^x for float: x = n ln2 + r with |r| <= ln2/2 (two-constant Cody-Waite reduction), e^r =
/// 1 + r + r^2 P(r) with P of degree 5 (our weighted minimax fit, 5e-11 relative), times 2^n built
/// in two halves so that results down to the smallest subnormal are right. NaN stays NaN;
/// e^x = +inf above 88.72 and 0 below -103.97.
template <std::size_t B> LEPTON_ALWAYS_INLINE wide<float, B> exp_f(wide<float, B> x) {
  using W = wide<float, B>;
  using I = typename wide_mask<float, B>::raw;
  W const xc = min(W(88.8f), max(W(-104.0f), x)); // NaN passes (maxps/minps return the 2nd operand)
  W const t = xc * W(1.44269504088896341f);
  I const n = __builtin_convertvector(t.v + (t.v < 0.0f ? W(-0.5f).v : W(0.5f).v), I); // round
  W const nf = __builtin_convertvector(n, typename W::raw);
  W r = fma(nf, W(-0.693359375f), xc);
  r = fma(nf, W(2.12194440e-4f), r);
  W p(1.9790353980374186e-4f);
  p = fma(p, r, W(1.3944648867906806e-3f));
  p = fma(p, r, W(8.333497006681099e-3f));
  p = fma(p, r, W(4.166629508914211e-2f));
  p = fma(p, r, W(0.16666665869415614f));
  p = fma(p, r, W(0.5000000067644089f));
  W const y = fma(p, r * r, r) + W(1.0f);
  I const n1 = n >> 1, n2 = n - n1;
  W const s1 = reinterpret_cast<typename W::raw>((n1 + 127) << 23);
  W const s2 = reinterpret_cast<typename W::raw>((n2 + 127) << 23);
  return y * s1 * s2;
}

/// log x for float: x = m 2^e with m in [sqrt(1/2), sqrt(2)) (subnormals scaled by 2^23 first),
/// log(1 + f) = f - f^2/2 + f^3 Q(f) for f = m - 1 with Q of degree 7 (our fit, 6e-9 relative),
/// plus e ln2 in two parts. log 0 = -inf, log(+inf) = +inf, log of a negative number or NaN = NaN.
template <std::size_t B> LEPTON_ALWAYS_INLINE wide<float, B> log_f(wide<float, B> x) {
  using W = wide<float, B>;
  using I = typename wide_mask<float, B>::raw;
  auto const sub = (x.v < std::numeric_limits<float>::min()) & (x.v > 0.0f);
  W const xs = sub ? (x * W(8388608.0f)).v : x.v;
  I const xi = reinterpret_cast<I>(xs.v);
  I e = ((xi >> 23) & 0xff) - 127 + (sub & -23);
  W m = reinterpret_cast<typename W::raw>((xi & 0x007fffff) | 0x3f800000); // [1, 2)
  auto const big = m.v > 1.41421356237309505f;
  m = big ? (m * W(0.5f)).v : m.v;
  e = e - big; // big is -1 where true
  W const f = m - W(1.0f);
  W q(-0.07634474192830919f);
  q = fma(q, f, W(0.12761568108916582f));
  q = fma(q, f, W(-0.13160186643491073f));
  q = fma(q, f, W(0.14201759495421606f));
  q = fma(q, f, W(-0.16623357053341598f));
  q = fma(q, f, W(0.20001226806418304f));
  q = fma(q, f, W(-0.25000821041697185f));
  q = fma(q, f, W(0.3333333170836744f));
  W const f2 = f * f;
  W r = fma(f2 * f, q, fma(f2, W(-0.5f), f));
  W const ef = __builtin_convertvector(e, typename W::raw);
  r = fma(ef, W(-2.12194440e-4f), r);
  r = fma(ef, W(0.693359375f), r);
  constexpr float inf = std::numeric_limits<float>::infinity();
  r = x.v == 0.0f ? W(-inf).v : r.v;
  r = x.v == inf ? W(inf).v : r.v;
  r = (x.v < 0.0f) | (x.v != x.v) ? W(std::numeric_limits<float>::quiet_NaN()).v : r.v;
  return r;
}

/// log(1 + x) for float: u = 1 + x, then log(u) x / (u - 1), which cancels the rounding of u
/// (Goldberg, "What every computer scientist should know about floating-point arithmetic", thm 4).
template <std::size_t B> LEPTON_ALWAYS_INLINE wide<float, B> log1p_f(wide<float, B> x) {
  using W = wide<float, B>;
  W const u = x + W(1.0f);
  W const d = u - W(1.0f);
  W const l = log_f(u);
  W r = (d.v == 0.0f) ? x.v : (l * (x / d)).v;
  r = u.v == std::numeric_limits<float>::infinity() ? u.v : r.v;
  return r;
}

/// e^x - 1 for float: u = e^x, then (u - 1) x / log u (Kahan's form; exact near 0, where u - 1
/// cancels), -1 far below 0 and +inf above 88.72.
template <std::size_t B> LEPTON_ALWAYS_INLINE wide<float, B> expm1_f(wide<float, B> x) {
  using W = wide<float, B>;
  W const u = exp_f(x);
  W const d = u - W(1.0f);
  W r = (u.v == 1.0f) ? x.v : (d * (x / log_f(u))).v;
  r = (d.v == -1.0f) ? W(-1.0f).v : r.v;
  r = u.v == std::numeric_limits<float>::infinity() ? u.v : r.v;
  r = x.v != x.v ? x.v : r.v;
  return r;
}

} // namespace wmath
} // namespace lepton::detail

#pragma GCC diagnostic pop

#endif // LEPTON_HAS_WIDE
