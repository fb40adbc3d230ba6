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
///
/// Each path holds one inlined copy of the expression: `add` and the store kind are loop-invariant
/// branches (predicted, and unswitched at -O3) rather than separate loops, and the scalar ends are
/// the shared out-of-line tails of eval/loops.hpp. Compile time grows with the copies times the
/// ISA levels.
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
      if (stream) {
        // big output: align, then bypass the cache (no read-for-ownership of the destination)
        std::size_t a = b;
        while (a < e && reinterpret_cast<std::uintptr_t>(dst + a) % (sizeof(T) * W) != 0) ++a;
        tail_flat(dst, lev, b, a, false);
        i = a;
      }
      for (; i + W <= e; i += W) {
        V v = lev.template load_flat<V>(i);
        if (add) v = load<V>(dst + i) + v;
        if constexpr (has_stream_store<V>()) {
          if (stream) {
            stream_store<V>(dst + i, v);
            continue;
          }
        }
        store<V>(dst + i, v);
      }
      tail_flat(dst, lev, i, e, add);
      if (stream) stream_fence();
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
        for (; c + W <= inner; c += W) {
          V v = lev.template load_row<V, R>(idx, c);
          if (add) v = load<V>(out + c) + v;
          store<V>(out + c, v);
        }
        if (c < inner) tail_row<T, R>(out, lev, idx, c, inner, add);
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
    if (c < j1) tail_row<T, 2>(out, ev, idx, c, j1, false);
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
  return i < e ? tail_reduce_flat<T, Red>(ev, i, e, r) : r;
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
  return c < inner ? tail_reduce_row<T, Red, R>(ev, idx, c, inner, r) : r;
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
          if (c < last) tail_reduce_into<T, Red, R>(dst, ev, idx, c, last);
        }
      }
    }
  });
}

/// @name Row kernels of the softmax family (backend/cpu/nn_ops.hpp)
/// Rows of n contiguous values, shifted by the row maximum. The end of a row is one vector padded
/// with -inf for the statistics and 0 for the outputs: a 10-class row costs one vector exp.
/// @{
/// Row max and log(sum(exp(x - max))) of one row.
template <class T> LEPTON_ALWAYS_INLINE void row_stats(T const* x, std::size_t n, T& mx, T& logs) {
  using V = lvec<T>;
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
  V const vmx = splat<V>(mv);
  for (c = 0; c + W <= n; c += W) vs = vs + m::exp(load<V>(x + c) - vmx);
  if (tail) vs = vs + m::exp(vt - vmx);
  mx = mv;
  logs = std::log(static_cast<T>(m::hsum(vs)));
}

/// y = softmax(x) (or log_softmax when Log) over each of `rows` rows of n values.
template <class T, bool Log> void softmax_rows(T const* x, T* y, std::size_t rows, std::size_t n) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  parallel_range(rows, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(n, 1)),
                 [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      T const* xr = x + r * n;
      T* yr = y + r * n;
      T mx, logs;
      row_stats(xr, n, mx, logs);
      V const vm = splat<V>(mx), vl = splat<V>(logs);
      std::size_t c = 0;
      for (; c + W <= n; c += W) {
        V const t = (load<V>(xr + c) - vm) - vl;
        store<V>(yr + c, Log ? t : m::exp(t));
      }
      if (c < n) {
        V const t = (load_tail<V>(xr + c, n - c, T(0)) - vm) - vl;
        store_tail<V>(yr + c, n - c, Log ? t : m::exp(t));
      }
    }
  });
}

/// stats[3r] = max and stats[3r + 1] = log(sum(exp(x - max))) of each of `rows` rows of n values.
template <class T> void softmax_row_stats(T const* x, std::size_t rows, std::size_t n, T* stats) {
  parallel_range(rows, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(n, 1)),
                 [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) row_stats(x + r * n, n, stats[3 * r], stats[3 * r + 1]);
  });
}

/// d[r, c] = g[r] * stats[3r + 2] * exp(x[r, c] - stats[3r] - stats[3r + 1]): the softmax part of
/// the cross-entropy gradient (the caller subtracts the targets).
template <class T>
void softmax_xent_grad(T const* x, std::size_t rows, std::size_t n, T const* stats, T const* g, T* d) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  parallel_range(rows, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(n, 1)),
                 [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      T const* xr = x + r * n;
      T* dr = d + r * n;
      V const vm = splat<V>(stats[3 * r]), vl = splat<V>(stats[3 * r + 1]);
      V const vg = splat<V>(g[r] * stats[3 * r + 2]);
      std::size_t c = 0;
      for (; c + W <= n; c += W) store<V>(dr + c, vg * m::exp((load<V>(xr + c) - vm) - vl));
      if (c < n) store_tail<V>(dr + c, n - c, vg * m::exp((load_tail<V>(xr + c, n - c, T(0)) - vm) - vl));
    }
  });
}
/// @}

/// @name Optimizer passes (optim/optimizer.hpp)
/// @{
/// One pass of an update rule (optim/rules.hpp) over the elements [b, e) of one parameter: value
/// pv, gradient pg times `scale`, NS state buffers st[0..NS).
template <class T, std::size_t NS, class Rule>
void update(Rule const& rule, T scale, T* pv, T const* pg, T* const* st, std::size_t b, std::size_t e) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  // Local copies of the rule, the scale and every pointer: none of them can alias the stores, so
  // they stay in registers (state loaded into a std::tuple was spilled: 20% slower on AVX2).
  auto const r = rule;
  T const sc = scale;
  T* const s0 = NS > 0 ? st[0] : nullptr;
  T* const s1 = NS > 1 ? st[1] : nullptr;
  auto body = [&](auto tag, std::size_t i) LEPTON_INLINE_LAMBDA {
    using U = decltype(tag);
    U p = load<U>(pv + i);
    U const g = load<U>(pg + i) * splat<U>(sc);
    if constexpr (NS == 0) {
      r(p, g);
    } else if constexpr (NS == 1) {
      U a = load<U>(s0 + i);
      r(p, g, a);
      store<U>(s0 + i, a);
    } else {
      U a = load<U>(s0 + i), c = load<U>(s1 + i);
      r(p, g, a, c);
      store<U>(s0 + i, a);
      store<U>(s1 + i, c);
    }
    store<U>(pv + i, p);
  };
  std::size_t i = b;
  for (; i + W <= e; i += W) body(V{}, i);
  for (; i < e; ++i) body(T{}, i);
}

/// Sum of g[i]^2 over [b, e), accumulated in T per lane (four accumulators: one add chain would
/// wait on the add latency every vector) and in double across lanes and for the tail.
template <class T> double sum_squares(T const* g, std::size_t b, std::size_t e) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  V a0 = splat<V>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  std::size_t i = b;
  for (; i + 4 * W <= e; i += 4 * W) {
    V const g0 = load<V>(g + i), g1 = load<V>(g + i + W), g2 = load<V>(g + i + 2 * W),
            g3 = load<V>(g + i + 3 * W);
    a0 = a0 + g0 * g0;
    a1 = a1 + g1 * g1;
    a2 = a2 + g2 * g2;
    a3 = a3 + g3 * g3;
  }
  for (; i + W <= e; i += W) {
    V const v = load<V>(g + i);
    a0 = a0 + v * v;
  }
  double part = static_cast<double>(m::hsum((a0 + a1) + (a2 + a3)));
  for (; i < e; ++i) part += double(g[i]) * g[i];
  return part;
}

/// Whether every g[i] in [b, e) is finite: g - g is 0 for a finite g and NaN otherwise.
template <class T> bool all_finite(T const* g, std::size_t b, std::size_t e) {
  using V = lvec<T>;
  constexpr std::size_t W = lanes_v<V>;
  V a0 = splat<V>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  std::size_t i = b;
  for (; i + 4 * W <= e; i += 4 * W) {
    V const g0 = load<V>(g + i), g1 = load<V>(g + i + W), g2 = load<V>(g + i + 2 * W),
            g3 = load<V>(g + i + 3 * W);
    a0 = a0 + (g0 - g0);
    a1 = a1 + (g1 - g1);
    a2 = a2 + (g2 - g2);
    a3 = a3 + (g3 - g3);
  }
  for (; i + W <= e; i += W) {
    V const v = load<V>(g + i);
    a0 = a0 + (v - v);
  }
  T tail = static_cast<T>(m::hsum((a0 + a1) + (a2 + a3)));
  for (; i < e; ++i) tail += g[i] - g[i];
  return tail == T(0);
}
/// @}

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
  template <class T, std::size_t NS, class Rule> static void
  update(Rule const& rule, T scale, T* pv, T const* pg, T* const* st, std::size_t b, std::size_t e) {
    LEPTON_ISA_NS::update<T, NS>(rule, scale, pv, pg, st, b, e);
  }
  template <class T> static double sum_squares(T const* g, std::size_t b, std::size_t e) {
    return LEPTON_ISA_NS::sum_squares<T>(g, b, e);
  }
  template <class T> static bool all_finite(T const* g, std::size_t b, std::size_t e) {
    return LEPTON_ISA_NS::all_finite<T>(g, b, e);
  }
  template <class T, bool Log> static void softmax_rows(T const* x, T* y, std::size_t rows, std::size_t n) {
    LEPTON_ISA_NS::softmax_rows<T, Log>(x, y, rows, n);
  }
  template <class T> static void softmax_row_stats(T const* x, std::size_t rows, std::size_t n, T* stats) {
    LEPTON_ISA_NS::softmax_row_stats<T>(x, rows, n, stats);
  }
  template <class T> static void softmax_xent_grad(T const* x, std::size_t rows, std::size_t n,
                                                   T const* stats, T const* g, T* d) {
    LEPTON_ISA_NS::softmax_xent_grad<T>(x, rows, n, stats, g, d);
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
