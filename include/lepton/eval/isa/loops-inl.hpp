// No include guard: included once per ISA level by eval/isa_loops.hpp, with LEPTON_ISA_NS,
// LEPTON_ISA_LEVEL, LEPTON_VBYTES and LEPTON_ISA_TARGET defined; undefines them at the end.
/// @file loops-inl.hpp
/// @brief One ISA level's copy of the fused-loop drivers (assignment, GEMM block epilogue,
///        reductions): opened in the level's target region, written over `lvec<T>`.
///
/// `lvec<T>` is the build's xsimd batch at the build's own level and a core/wide.hpp value of the
/// level's width above it. The loadables (evaluators) and op functors the loops read are defined
/// outside the region, always-inline, and generic over the value kind: inlined into these loops
/// they compile to the level's instructions. Functions here are called from outside the region
/// and so are never always-inline.

#if LEPTON_ISA_LEVEL > LEPTON_ISA_BUILD_LEVEL
#pragma GCC push_options
LEPTON_ISA_GCC_TARGET(LEPTON_ISA_TARGET)
#endif

namespace lepton::detail::loops::LEPTON_ISA_NS {

/// The value kind of this level's loops for element type T.
template <class T> using lvec =
    std::conditional_t<(LEPTON_ISA_LEVEL > LEPTON_ISA_BUILD_LEVEL) &&
                           (std::is_same_v<T, float> || std::is_same_v<T, double>),
                       wide_for<T, LEPTON_VBYTES>, simd_t<T>>;

/// dst (contiguous, shape s) = ev, or += ev when `add`. `ev` must be bound to s.
template <class T, std::size_t R, class Ev>
void run_assign(T* dst, Ev const& ev, shape_t<R> const& s, bool add) {
  using V = lvec<T>;
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
template <class T, class Ev> void run_block(T* dst, std::size_t ld, Ev const& ev, std::size_t i0,
                                            std::size_t i1, std::size_t j0, std::size_t j1) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  for (std::size_t i = i0; i < i1; ++i) {
    std::size_t idx[1] = {i};
    T* out = dst + i * ld;
    std::size_t c = j0;
    for (; c + W <= j1; c += W) store<V>(out + c, ev.template load_row<V, 2>(idx, c));
    for (; c < j1; ++c) out[c] = ev.template load_row<T, 2>(idx, c);
  }
}

/// Reduces one contiguous run [b, e) of a flat-readable loadable (4 SIMD accumulators).
template <class T, class Red, class Ev> T reduce_flat_range(Ev const& ev, std::size_t b, std::size_t e) {
  using V = lvec<T>;
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
  using V = lvec<T>;
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
  using V = lvec<T>;
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

/// This level's entry points, for eval/isa_loops.hpp's with_loop_isa().
struct kernels {
  static constexpr ::lepton::isa level = static_cast<::lepton::isa>(LEPTON_ISA_LEVEL);
  /// Lanes of the loops' value kind for T.
  template <class T> static constexpr std::size_t lanes = lanes_v<lvec<T>>;
  template <class T, std::size_t R, class Ev>
  static void run_assign(T* dst, Ev const& ev, shape_t<R> const& s, bool add) {
    LEPTON_ISA_NS::run_assign<T, R>(dst, ev, s, add);
  }
  template <class T, class Ev> static void run_block(T* dst, std::size_t ld, Ev const& ev, std::size_t i0,
                                                     std::size_t i1, std::size_t j0, std::size_t j1) {
    LEPTON_ISA_NS::run_block<T>(dst, ld, ev, i0, i1, j0, j1);
  }
  template <class T, class Red, std::size_t R, class Ev>
  static T reduce_all(eval_context& ctx, Ev const& ev, shape_t<R> const& s) {
    return LEPTON_ISA_NS::reduce_all<T, Red, R>(ctx, ev, s);
  }
  template <class T, class Red, std::size_t R, class Ev>
  static void reduce_axis(Ev const& ev, shape_t<R> const& s, std::size_t axis, T* out) {
    LEPTON_ISA_NS::reduce_axis<T, Red, R>(ev, s, axis, out);
  }
};

} // namespace lepton::detail::loops::LEPTON_ISA_NS

#if LEPTON_ISA_LEVEL > LEPTON_ISA_BUILD_LEVEL
#pragma GCC pop_options
#endif

#undef LEPTON_ISA_NS
#undef LEPTON_ISA_LEVEL
#undef LEPTON_VBYTES
#undef LEPTON_ISA_TARGET
