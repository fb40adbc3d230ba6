// No include guard: included once per ISA level by isa/target-inl.hpp, inside
// namespace lepton::detail::cpu::LEPTON_ISA_NS and that level's `#pragma GCC target` region.
/// @file vec-inl.hpp
/// @brief The vector type of one ISA level's kernels: a GCC/clang vector of LEPTON_VBYTES bytes with
///        the operations the GEMM and convolution kernels need (FMA, masked edge loads and stores).
///
/// xsimd picks its architecture from the compile flags once per translation unit, so the dispatched
/// kernels cannot use it for levels above the build's: they use compiler vector extensions, which
/// compile to the instructions of the enclosing target region, plus intrinsics where the operation
/// has no operator (FMA, masks, max). Macros set by the includer: LEPTON_ISA_LEVEL (0, 1, 2),
/// LEPTON_VBYTES (16, 32, 64), LEPTON_VREGS (16 or 32).

/// The level these kernels are compiled for.
inline constexpr ::lepton::isa level = static_cast<::lepton::isa>(LEPTON_ISA_LEVEL);
/// Bytes per vector register, and vector registers (the register blocking follows from both).
inline constexpr std::size_t vector_bytes = LEPTON_VBYTES;
inline constexpr std::size_t vector_registers = LEPTON_VREGS;

template <class T> struct vraw;
template <> struct vraw<float> {
  typedef float type __attribute__((vector_size(LEPTON_VBYTES), __may_alias__));
};
template <> struct vraw<double> {
  typedef double type __attribute__((vector_size(LEPTON_VBYTES), __may_alias__));
};

/// @brief One vector register of T (float or double) at this level.
template <class T> struct vec {
  using raw = typename vraw<T>::type;
  using value_type = T;
  /// Lanes per vector.
  static constexpr std::size_t size = LEPTON_VBYTES / sizeof(T);
  raw v;

  vec() = default;
  LEPTON_ALWAYS_INLINE vec(raw r) noexcept : v(r) {}
  /// All lanes = s.
  LEPTON_ALWAYS_INLINE explicit vec(T s) noexcept : v(splat(s)) {}

  static LEPTON_ALWAYS_INLINE raw splat(T s) noexcept {
#if LEPTON_ISA_X86
    constexpr bool f = std::is_same_v<T, float>;
#if LEPTON_ISA_LEVEL >= 2
    if constexpr (f)
      return _mm512_set1_ps(s);
    else
      return _mm512_set1_pd(s);
#elif LEPTON_ISA_LEVEL >= 1
    if constexpr (f)
      return _mm256_set1_ps(s);
    else
      return _mm256_set1_pd(s);
#else
    if constexpr (f)
      return _mm_set1_ps(s);
    else
      return _mm_set1_pd(s);
#endif
#else
    raw r;
    for (std::size_t i = 0; i < size; ++i) r[i] = s;
    return r;
#endif
  }
  static LEPTON_ALWAYS_INLINE vec load_unaligned(T const* p) noexcept {
    raw r;
    __builtin_memcpy(&r, p, sizeof r);
    return r;
  }
  static LEPTON_ALWAYS_INLINE vec load_aligned(T const* p) noexcept {
    return *reinterpret_cast<raw const*>(p);
  }
  LEPTON_ALWAYS_INLINE void store_unaligned(T* p) const noexcept { __builtin_memcpy(p, &v, sizeof v); }
  LEPTON_ALWAYS_INLINE void store_aligned(T* p) const noexcept { *reinterpret_cast<raw*>(p) = v; }

  friend LEPTON_ALWAYS_INLINE vec operator+(vec a, vec b) noexcept { return vec(a.v + b.v); }
  friend LEPTON_ALWAYS_INLINE vec operator-(vec a, vec b) noexcept { return vec(a.v - b.v); }
  friend LEPTON_ALWAYS_INLINE vec operator*(vec a, vec b) noexcept { return vec(a.v * b.v); }
};

/// x * y + z with one rounding at the FMA levels (AVX2, AVX-512), two at the portable one: the same
/// expression everywhere so that the AVX2 and AVX-512 kernels agree bitwise.
template <class T> LEPTON_ALWAYS_INLINE vec<T> fmadd(vec<T> x, vec<T> y, vec<T> z) noexcept {
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  if constexpr (std::is_same_v<T, float>)
    return _mm512_fmadd_ps(x.v, y.v, z.v);
  else
    return _mm512_fmadd_pd(x.v, y.v, z.v);
#elif LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 1
  if constexpr (std::is_same_v<T, float>)
    return _mm256_fmadd_ps(x.v, y.v, z.v);
  else
    return _mm256_fmadd_pd(x.v, y.v, z.v);
#else
  return x * y + z;
#endif
}

/// a > y ? a : y, lane by lane (x86's maxps): y when the two compare equal or either is NaN. With
/// a = 0 it is lepton::relu (NaN stays NaN, -0 stays -0); with a = -inf the identity.
template <class T> LEPTON_ALWAYS_INLINE vec<T> vmax(vec<T> a, vec<T> y) noexcept {
#if LEPTON_ISA_X86
  constexpr bool f = std::is_same_v<T, float>;
#if LEPTON_ISA_LEVEL >= 2
  // (maskz with all lanes: the unmasked form trips GCC 12's -Wmaybe-uninitialized in target regions)
  if constexpr (f)
    return _mm512_maskz_max_ps(__mmask16(0xFFFF), a.v, y.v);
  else
    return _mm512_maskz_max_pd(__mmask8(0xFF), a.v, y.v);
#elif LEPTON_ISA_LEVEL >= 1
  if constexpr (f)
    return _mm256_max_ps(a.v, y.v);
  else
    return _mm256_max_pd(a.v, y.v);
#else
  if constexpr (f)
    return _mm_max_ps(a.v, y.v);
  else
    return _mm_max_pd(a.v, y.v);
#endif
#else
  vec<T> r = y;
  for (std::size_t i = 0; i < vec<T>::size; ++i) r.v[i] = a.v[i] > y.v[i] ? a.v[i] : y.v[i];
  return r;
#endif
}

#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL == 1
/// The AVX2 lane mask of the first n (<= lanes) lanes: all-ones lanes, then zeros.
template <class T> LEPTON_ALWAYS_INLINE __m256i partial_mask(std::size_t n) noexcept {
  using L = std::conditional_t<std::is_same_v<T, float>, std::int32_t, std::int64_t>;
  constexpr std::size_t W = 32 / sizeof(T);
  struct table {
    L v[2 * W];
    constexpr table() : v{} {
      for (std::size_t i = 0; i < W; ++i) v[i] = L(-1);
    }
  };
  alignas(64) static constexpr table window{};
  return _mm256_loadu_si256(reinterpret_cast<__m256i const*>(window.v + W - n));
}
#endif

/// The first n (< lanes) elements at p, zeros after; reads nothing past p + n (a masked load with
/// AVX-512).
template <class T> LEPTON_ALWAYS_INLINE vec<T> load_partial(T const* p, std::size_t n) noexcept {
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  if constexpr (std::is_same_v<T, float>)
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  else
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
#elif LEPTON_ISA_X86 && LEPTON_ISA_LEVEL == 1
  // vmaskmov with the mask read from a window of a constant table: the conv kernels load row
  // edges in their inner loop, where a copy through the stack cost a store-forwarding stall each.
  if constexpr (std::is_same_v<T, float>)
    return _mm256_maskload_ps(p, partial_mask<T>(n));
  else
    return _mm256_maskload_pd(p, partial_mask<T>(n));
#else
  alignas(64) T tmp[vec<T>::size] = {};
  for (std::size_t j = 0; j < n; ++j) tmp[j] = p[j];
  return vec<T>::load_aligned(tmp);
#endif
}

/// Stores the first n (< lanes) elements of x at p; writes nothing past p + n.
template <class T> LEPTON_ALWAYS_INLINE void store_partial(vec<T> x, T* p, std::size_t n) noexcept {
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  if constexpr (std::is_same_v<T, float>)
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), x.v);
  else
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), x.v);
#elif LEPTON_ISA_X86 && LEPTON_ISA_LEVEL == 1
  if constexpr (std::is_same_v<T, float>)
    _mm256_maskstore_ps(p, partial_mask<T>(n), x.v);
  else
    _mm256_maskstore_pd(p, partial_mask<T>(n), x.v);
#else
  alignas(64) T tmp[vec<T>::size];
  x.store_aligned(tmp);
  for (std::size_t j = 0; j < n; ++j) p[j] = tmp[j];
#endif
}

/// The sum of the lanes, left to right.
template <class T> LEPTON_ALWAYS_INLINE T hsum(vec<T> x) noexcept {
  T s = x.v[0];
  for (std::size_t i = 1; i < vec<T>::size; ++i) s += x.v[i];
  return s;
}

/// f(integral_constant<0>), ..., f(integral_constant<N - 1>), inlined: the register tiles are arrays
/// indexed in fully unrolled loops so that they stay in registers. (One per level: a helper compiled
/// for the build's flags could not inline the level's lambdas into itself.)
template <std::size_t N, class F> LEPTON_ALWAYS_INLINE void static_for(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) LEPTON_INLINE_LAMBDA {
    (f(std::integral_constant<std::size_t, I>{}), ...);
      }(std::make_index_sequence<N>{});
}

/// A prefetch of the cache line at p for writing.
LEPTON_ALWAYS_INLINE void prefetch_write(void const* p) noexcept { __builtin_prefetch(p, 1, 3); }
