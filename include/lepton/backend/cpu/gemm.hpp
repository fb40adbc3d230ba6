#pragma once
/// @file gemm.hpp
/// @brief The CPU matrix product: packed, register-blocked GEMM with a fused epilogue hook.
///
/// Every matmul in lepton materialises through `lepton::detail::cpu::gemm`. The design follows the
/// BLIS decomposition (Van Zee & van de Geijn): the operands are copied ("packed") block by block into
/// contiguous buffers laid out exactly in the order a register-blocked micro-kernel reads them, and
/// the block sizes are chosen so that each level of reuse happens in a given level of cache:
///
///   for each row panel of C        (mc rows)
///     for each k block             (kc, so that the A sliver below fits in L1)
///       pack A panel               (mc x kc, lives in L2/L3)
///       for each B block           (kc x nc, packed, lives in L2)
///         for each A sliver        (mr x kc, stays in L1 while the B slivers stream past it)
///           for each B sliver      (kc x nr, streamed from L2)
///             micro-kernel: an mr x nr tile of C kept in registers for the whole kc loop
///
/// C is row-major, so the micro-kernel vectorises along n: per k step it loads nr / W vectors of
/// packed B and broadcasts mr scalars of A. With AVX-512 the tile is 14 x 32 floats (28 zmm
/// accumulators, 2 for B, the broadcasts come from L1): 28 FMAs per 16 loads, so the two FMA ports,
/// not the load ports, set the pace.
///
/// Transposes cost nothing extra where possible: the micro-kernel reads its A sliver either
/// "k-major" (the mr values of one k adjacent) or "i-major" (each row's kc values adjacent), both
/// at compile-time strides, so packing A is a plain copy of contiguous runs whether or not A is
/// transposed. Only a transposed B needs a real transpose while packing (16 x 16 in registers on
/// AVX-512).
///
/// Determinism: every C element is one FMA chain over k in k order per k block, then the same
/// alpha/beta formula, whatever the thread count and whichever kernel instance (full tile or edge
/// tile) computes it: the k blocking depends only on k, and each thread owns a disjoint rectangle of
/// whole tiles of C. Results are therefore bitwise identical for any `lepton::num_threads()`.

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "../../core/config.hpp"
#include "../../core/memory.hpp"
#include "../../core/parallel.hpp"

namespace lepton::detail::cpu {

/// @brief The default GEMM epilogue: does nothing.
///
/// A GEMM epilogue is called as `epi(i0, i1, j0, j1)` once per finished block of C; see gemm().
struct no_epilogue {
  void operator()(std::size_t, std::size_t, std::size_t, std::size_t) const noexcept {}
};

/// @brief The activations a bias_act epilogue can apply in registers.
enum class gemm_activation {
  identity, ///< y = x
  relu      ///< y = x < 0 ? 0 : x (NaN stays NaN, like lepton::relu)
};

/// @brief A GEMM epilogue applied to the accumulator registers of each finished micro-tile, before
///        anything is stored: `out = act(C + bias)` with `bias` indexed by the column of C.
///
/// Pass it as gemm()'s epilogue argument. C still receives the product itself (alpha * op(A) op(B)
/// + beta * C) when `out` is set, so a training step keeps the pre-activation for the backward pass
/// while `out` gets the activation, both from the same registers; with `out == nullptr` the
/// activation overwrites C and the pre-activation is never stored. Either way no pass re-reads C.
/// The values are bitwise those of gemm() followed by `act(c + bias[j])` in float arithmetic.
///
/// **Example**:
/// @code
/// // y = relu(x w + bias): (64, 784) x (784, 256), bias of 256, in one pass over y.
/// gemm<float>(false, false, 64, 256, 784, 1.f, x, 784, w, 256, 0.f, y, 256,
///             gemm_bias_act<float>{bias, gemm_activation::relu});
/// @endcode
template <class T> struct gemm_bias_act {
  T const* bias = nullptr;                         ///< n values, one per column of C; nullptr: no bias
  gemm_activation act = gemm_activation::identity; ///< the activation applied after the bias
  T* out = nullptr;    ///< act(C + bias) goes here (row stride ldo); nullptr: into C
  std::size_t ldo = 0; ///< row stride of out (>= n when out is set)
};

/// @brief Register and cache blocking of the GEMM for element type T on the compile-time SIMD arch.
///
/// The micro-tile is `mr x nr` with `nr = 2` vectors: with 32 vector registers (AVX-512, NEON64)
/// mr = 14 gives 28 accumulators + 2 B vectors (A is broadcast from memory); with 16 registers
/// (SSE, AVX2) mr = 6 gives 12 accumulators + 2 B vectors + 1 broadcast (+1 temporary without FMA).
/// kc keeps the A sliver (mr x kc) in L1 next to the streaming B sliver; nc keeps the packed B block
/// (kc x nc) in about half of a 2 MiB L2; mc only bounds the packed A panel.
template <class T> struct gemm_blocking {
  using batch = xsimd::batch<T>;
  /// Elements per vector register (16 floats with AVX-512, 4 with SSE2).
  static constexpr std::size_t simd_width = batch::size;
#if defined(__aarch64__) || defined(_M_ARM64)
  static constexpr std::size_t vector_registers = 32;
#else
  static constexpr std::size_t vector_registers = sizeof(batch) >= 64 ? 32 : 16;
#endif
  /// Vectors per micro-tile row, and the micro-tile's columns.
  static constexpr std::size_t nv = 2;
  static constexpr std::size_t nr = nv * simd_width;
  /// Micro-tile rows: as many accumulator rows as the register file holds next to the B vectors.
  static constexpr std::size_t mr = vector_registers >= 32 ? 14 : 6;
  /// k block: 256 floats / 128 doubles, i.e. a 14 KiB A sliver (AVX-512) that stays in a 48 KiB L1
  /// while 32 KiB B slivers stream through. (256..512 measured alike; the C tile is reloaded once per
  /// k block, so kc must not be much smaller.)
  static constexpr std::size_t kc = 1024 / sizeof(T);
  /// Row stride of an i-major A sliver: padded so that the mr rows do not alias in L1 sets.
  static constexpr std::size_t a_stride = kc + 64 / sizeof(T);
  /// Columns of a packed B block: 1 MiB, half of a 2 MiB L2 (the other half for A slivers and C).
  static constexpr std::size_t nc = (std::size_t{1} << 20) / (kc * sizeof(T)) / nr * nr;
  /// Rows of a packed A panel: only bounds the buffer (the panel is read from L2/L3 once per B block).
  static constexpr std::size_t mc = 256 * mr;
  /// Work (multiply-adds) below which a product stays on the calling thread: 4M multiply-adds take
  /// ~30 us on one AVX-512 core, while waking sleeping pool workers costs ~10-50 us.
  static constexpr std::size_t min_parallel_work = std::size_t{1} << 22;
  /// Multiply-adds each extra thread must get at least.
  static constexpr std::size_t work_per_thread = std::size_t{1} << 21;
};

namespace gemm_impl {

// The micro-kernel is written with small lambdas; they must all inline or the accumulators spill.
#if defined(__GNUC__) || defined(__clang__)
#define LEPTON_GEMM_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LEPTON_GEMM_INLINE_LAMBDA
#endif

template <std::size_t N, class F> LEPTON_ALWAYS_INLINE void static_for(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) LEPTON_GEMM_INLINE_LAMBDA {
    (f(std::integral_constant<std::size_t, I>{}), ...);
      }(std::make_index_sequence<N>{});
}

LEPTON_ALWAYS_INLINE void prefetch_write(void const* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 1, 3);
#else
  (void)p;
#endif
}

/// x * y + z, fused (one rounding) whenever the target has FMA. xsimd 8.1 implements fma on AVX-512
/// as x * y + z, which only becomes an FMA if the compiler contracts it (GCC does, clang does not):
/// call the instructions directly so that speed and rounding do not depend on the compiler.
template <class T, class A> LEPTON_ALWAYS_INLINE xsimd::batch<T, A>
fmadd(xsimd::batch<T, A> const& x, xsimd::batch<T, A> const& y, xsimd::batch<T, A> const& z) noexcept {
  using batch [[maybe_unused]] = xsimd::batch<T, A>;
  [[maybe_unused]] constexpr bool is_float = std::is_same_v<T, float>;
#if defined(__AVX512F__)
  if constexpr (sizeof(batch) == 64) {
    if constexpr (is_float)
      return batch(_mm512_fmadd_ps(x, y, z));
    else
      return batch(_mm512_fmadd_pd(x, y, z));
  }
#endif
#if defined(__FMA__)
  if constexpr (sizeof(batch) == 32) {
    if constexpr (is_float)
      return batch(_mm256_fmadd_ps(x, y, z));
    else
      return batch(_mm256_fmadd_pd(x, y, z));
  }
  if constexpr (sizeof(batch) == 16) {
    if constexpr (is_float)
      return batch(_mm_fmadd_ps(x, y, z));
    else
      return batch(_mm_fmadd_pd(x, y, z));
  }
#endif
  return xsimd::fma(x, y, z);
}

/// The first n (< simd width) elements at p, zeros after; reads nothing past p + n (masked load on
/// AVX-512). Used for the right edge of C and of B, where a full vector would cross the row end.
template <class T> LEPTON_ALWAYS_INLINE xsimd::batch<T> load_partial(T const* p, std::size_t n) noexcept {
  using batch = xsimd::batch<T>;
#if defined(__AVX512F__)
  if constexpr (sizeof(batch) == 64) {
    if constexpr (std::is_same_v<T, float>)
      return batch(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p));
    else
      return batch(_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p));
  } else
#endif
  {
    alignas(64) T tmp[batch::size] = {};
    for (std::size_t j = 0; j < n; ++j) tmp[j] = p[j];
    return batch::load_aligned(tmp);
  }
}

/// Stores the first n (< simd width) elements of x at p; writes nothing past p + n.
template <class T>
LEPTON_ALWAYS_INLINE void store_partial(xsimd::batch<T> const& x, T* p, std::size_t n) noexcept {
  using batch = xsimd::batch<T>;
#if defined(__AVX512F__)
  if constexpr (sizeof(batch) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), x);
    else
      _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), x);
  } else
#endif
  {
    alignas(64) T tmp[batch::size];
    x.store_aligned(tmp);
    for (std::size_t j = 0; j < n; ++j) p[j] = tmp[j];
  }
}

/// The register epilogue for an edge tile, applied after the tile was stored: reads the rows x cols
/// values at c (just written, in L1) and writes act(c + bias) to ep.out, or back to c.
template <class T>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
void bias_act_tile(gemm_bias_act<T> const& ep, T const* c, std::size_t ldc, std::size_t rows,
                   std::size_t cols) noexcept {
  using batch = xsimd::batch<T>;
  constexpr std::size_t w = batch::size;
  bool const relu = ep.act == gemm_activation::relu;
  auto act = [&](batch y) { return relu ? xsimd::select(y < batch(T(0)), batch(T(0)), y) : y; };
  for (std::size_t i = 0; i < rows; ++i) {
    T const* ci = c + i * ldc;
    T* yi = ep.out ? ep.out + i * ep.ldo : const_cast<T*>(ci);
    std::size_t j = 0;
    for (; j + w <= cols; j += w) {
      batch const b = ep.bias ? batch::load_unaligned(ep.bias + j) : batch(T(0));
      act(batch::load_unaligned(ci + j) + b).store_unaligned(yi + j);
    }
    if (j < cols) {
      std::size_t const n = cols - j;
      batch const b = ep.bias ? load_partial<T>(ep.bias + j, n) : batch(T(0));
      store_partial(act(load_partial<T>(ci + j, n) + b), yi + j, n);
    }
  }
}

/// The micro-kernel: C[0:rows, 0:cols] = alpha * A_sliver * B_sliver + beta * C (C not read if
/// beta == 0), computed as an MR x (NV * W) register tile, MR <= mr and NV <= nv.
///
/// `a` is an A sliver, k-major (`a[k * a_step + i]`, a_step = mr when packed) when KMajorA, else
/// i-major (`a[i * a_step + k]`, a_step = a_stride when packed); a_step = lda when A is read in place;
/// `b` is a B sliver, `b[k * nr + j]`, aligned. rows <= MR and cols <= NV * W select what is stored;
/// smaller MR / NV instances serve the edges of C so that they do not pay for a full tile.
/// Each element is one FMA chain over k in k order followed by the same final formula whatever the
/// instance, which is what makes results independent of tile placement and thread count.
/// `ep` (last k block only): bias + activation on the results in registers, with `ep->bias` and
/// `ep->out` already offset to this tile's first column / element (see gemm_bias_act).
template <class T, bool KMajorA, std::size_t MR, std::size_t NV>
void micro_kernel(std::size_t kc, T const* __restrict a, T const* __restrict b, T* __restrict c,
                  std::size_t ldc, T alpha, T beta, std::size_t rows, std::size_t cols, std::size_t a_step,
                  gemm_bias_act<T> const* ep = nullptr) noexcept {
  using P = gemm_blocking<T>;
  using batch = typename P::batch;
  constexpr std::size_t w = P::simd_width;
  std::size_t const a_k = KMajorA ? a_step : 1;
  std::size_t const a_i = KMajorA ? 1 : a_step;

  batch acc[MR][NV];
  static_for<MR>([&](auto i) LEPTON_GEMM_INLINE_LAMBDA {
    static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA { acc[i][v] = batch(T(0)); });
  });
  // The C tile is needed only after the k loop: fetching it now hides its latency behind the loop.
  for (std::size_t i = 0; i < rows; ++i) {
    prefetch_write(c + i * ldc);
    prefetch_write(c + i * ldc + cols - 1);
  }

  for (std::size_t p = 0; p < kc; ++p) {
    batch bv[NV];
    static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA { bv[v] = batch::load_aligned(b + v * w); });
    static_for<MR>([&](auto i) LEPTON_GEMM_INLINE_LAMBDA {
      batch const ai(a[i * a_i]);
      static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA { acc[i][v] = fmadd(ai, bv[v], acc[i][v]); });
    });
    a += a_k;
    b += P::nr;
  }

  batch const va(alpha), vb(beta);
  bool const read_c = beta != T(0);
  auto result = [&](batch const& x, T const* ci) LEPTON_GEMM_INLINE_LAMBDA {
    return read_c ? fmadd(x, va, batch::load_unaligned(ci) * vb) : x * va;
  };
  if constexpr (MR == P::mr && NV == P::nv) {
    // A full tile of the full-size instance (nearly all of C): bias + activation in registers. The
    // product goes to C only when ep->out takes the activation; otherwise the activation replaces it.
    if (ep && rows == MR && cols == NV * w) {
      batch bias[NV];
      static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA {
        bias[v] = ep->bias ? batch::load_unaligned(ep->bias + v * w) : batch(T(0));
      });
      T* const out = ep->out;
      std::size_t const ldo = out ? ep->ldo : ldc;
      auto store_all = [&](auto act) LEPTON_GEMM_INLINE_LAMBDA {
        static_for<MR>([&](auto i) LEPTON_GEMM_INLINE_LAMBDA {
          static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA {
            T* ci = c + i * ldc + v * w;
            batch const r = result(acc[i][v], ci);
            if (out) r.store_unaligned(ci);
            act(r + bias[v]).store_unaligned((out ? out : c) + i * ldo + v * w);
          });
        });
      };
      if (ep->act == gemm_activation::relu)
        store_all([](batch const& y)
                      LEPTON_GEMM_INLINE_LAMBDA { return xsimd::select(y < batch(T(0)), batch(T(0)), y); });
      else
        store_all([](batch const& y) LEPTON_GEMM_INLINE_LAMBDA { return y; });
      return;
    }
  }
  if (rows == MR && cols == NV * w) {
    static_for<MR>([&](auto i) LEPTON_GEMM_INLINE_LAMBDA {
      static_for<NV>([&](auto v) LEPTON_GEMM_INLINE_LAMBDA {
        T* ci = c + i * ldc + v * w;
        result(acc[i][v], ci).store_unaligned(ci);
      });
    });
  } else {
    // Partial tile: whole vectors where they fit, the last one partially; the arithmetic is the same.
    static_for<MR>([&](auto i) {
      if (i >= rows) return;
      static_for<NV>([&](auto v) {
        T* ci = c + i * ldc + v * w;
        if ((v + 1) * w <= cols) {
          result(acc[i][v], ci).store_unaligned(ci);
        } else if (v * w < cols) {
          std::size_t const n = cols - v * w;
          batch const old = read_c ? load_partial<T>(ci, n) : batch(T(0));
          store_partial(read_c ? fmadd(acc[i][v], va, old * vb) : acc[i][v] * va, ci, n);
        }
      });
    });
  }
  // Edge tiles take the epilogue after their store, from L1 (bias_act_tile): the many small
  // instances stay small (compile time), and edges are a small part of C.
  if (ep) bias_act_tile(*ep, c, ldc, rows, cols);
}

/// Runs the smallest micro-kernel instance whose tile covers rows x cols: the row counts mr, 8 and 4
/// (those <= mr) times 1..nv vectors. Strips of fewer than 4 rows run the 4-row instance: every
/// partial strip is packed and zero padded to mr rows, so the extra rows read zeros and are not
/// stored, and each stored element has the same FMA chain as in any other instance (results do not
/// change). 2- and 1-row instances would cost compile time (8 of 20 instances with AVX-512, 8 of 16
/// with SSE) for tiles that are a small part of C.
template <class T, bool KMajorA> void tile_kernel(std::size_t rows, std::size_t cols, std::size_t kc,
                                                  T const* a, T const* b, T* c, std::size_t ldc, T alpha,
                                                  T beta, std::size_t a_step,
                                                  gemm_bias_act<T> const* ep = nullptr) noexcept {
  using P = gemm_blocking<T>;
  constexpr std::size_t w = P::simd_width;
  auto with_rows = [&]<std::size_t R>(std::integral_constant<std::size_t, R>) {
    static_assert(P::nv == 2, "lepton: tile_kernel dispatches on nv == 2");
    if (cols > w)
      micro_kernel<T, KMajorA, R, 2>(kc, a, b, c, ldc, alpha, beta, rows, cols, a_step, ep);
    else
      micro_kernel<T, KMajorA, R, 1>(kc, a, b, c, ldc, alpha, beta, rows, cols, a_step, ep);
  };
  using std::integral_constant;
  static_assert(P::mr >= 4, "lepton: tile_kernel assumes mr >= 4");
  constexpr std::size_t r8 = P::mr > 8 ? 8 : P::mr;
  if (rows > r8) return with_rows(integral_constant<std::size_t, P::mr>{});
  if (rows > 4) return with_rows(integral_constant<std::size_t, r8>{});
  with_rows(integral_constant<std::size_t, 4>{});
}

/// A growable 64-byte aligned buffer; one per thread and operand, so that GEMM allocates nothing
/// once every thread has seen its largest problem.
struct pack_buffer {
  void* data = nullptr;
  std::size_t bytes = 0;
  pack_buffer() = default;
  pack_buffer(pack_buffer const&) = delete;
  pack_buffer& operator=(pack_buffer const&) = delete;
  ~pack_buffer() {
    if (data) aligned_free_bytes(data);
  }
  template <class T> T* get(std::size_t n) {
    std::size_t need = n * sizeof(T);
    if (need > bytes) {
      void* p = aligned_alloc_bytes(need);
      if (data) aligned_free_bytes(data);
      data = p;
      bytes = need;
    }
    return static_cast<T*>(data);
  }
};

struct pack_buffers {
  pack_buffer a, b;
};

inline pack_buffers& thread_pack_buffers() {
  thread_local pack_buffers buffers;
  return buffers;
}

/// A non-owning, type-erased reference to an epilogue: the GEMM's code is instantiated once per
/// element type instead of once per epilogue (compile time), at the cost of an indirect call per
/// finished block of C (noise next to the block's multiply-adds).
struct epilogue_ref {
  void const* obj = nullptr;
  void (*fn)(void const*, std::size_t, std::size_t, std::size_t, std::size_t) = nullptr;
  epilogue_ref() = default;
  template <class E> explicit epilogue_ref(E const& e)
      : obj(&e), fn([](void const* o, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
          (*static_cast<E const*>(o))(i0, i1, j0, j1);
        }) {}
  bool empty() const noexcept { return fn == nullptr; }
  void operator()(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) const {
    fn(obj, i0, i1, j0, j1);
  }
};

/// Everything a thread needs to compute a rectangle of C.
template <class T> struct gemm_problem {
  bool trans_a, trans_b;
  std::size_t m, n, k;
  T alpha;
  T const* a;
  std::size_t lda;
  T const* b;
  std::size_t ldb;
  T beta;
  T* c;
  std::size_t ldc;
  gemm_bias_act<T> const* bias_act = nullptr; ///< register epilogue of the last k block, or none
};

/// dst[0, n) = src[0, n) and dst[n, total) = 0, with vector moves; reads nothing past src + n and
/// writes nothing past dst + total. (Packing copies short runs, where a memcpy call costs more than
/// the copy.)
template <class T> void copy_padded(T const* src, std::size_t n, T* dst, std::size_t total) noexcept {
  using batch = xsimd::batch<T>;
  constexpr std::size_t w = batch::size;
  std::size_t j = 0;
  for (; j + w <= n; j += w) batch::load_unaligned(src + j).store_unaligned(dst + j);
  if (j < n) {
    batch const x = load_partial(src + j, n - j);
    if (j + w > total) return store_partial(x, dst + j, total - j);
    x.store_unaligned(dst + j);
    j += w;
  }
  for (; j + w <= total; j += w) batch(T(0)).store_unaligned(dst + j);
  if (j < total) store_partial(batch(T(0)), dst + j, total - j);
}

/// Packs rows [i0, i0 + mc) x columns [p0, p0 + kc) of op(A) into slivers of mr rows (zero-padded),
/// sliver s at `dst + s * mr * a_stride`. Not transposed: i-major, each row a contiguous copy;
/// transposed: k-major, each k a contiguous copy of mr values.
template <class T> void pack_a(gemm_problem<T> const& g, std::size_t i0, std::size_t mc, std::size_t p0,
                               std::size_t kc, T* dst) noexcept {
  using P = gemm_blocking<T>;
  constexpr std::size_t mr = P::mr;
  for (std::size_t s = 0; s * mr < mc; ++s) {
    T* d = dst + s * mr * P::a_stride;
    std::size_t rows = std::min(mr, mc - s * mr);
    std::size_t r0 = i0 + s * mr;
    if (!g.trans_a) {
      for (std::size_t i = 0; i < rows; ++i)
        copy_padded(g.a + (r0 + i) * g.lda + p0, kc, d + i * P::a_stride, kc);
      for (std::size_t i = rows; i < mr; ++i) copy_padded<T>(nullptr, 0, d + i * P::a_stride, kc);
    } else {
      T const* src = g.a + p0 * g.lda + r0;
      for (std::size_t p = 0; p < kc; ++p) copy_padded(src + p * g.lda, rows, d + p * mr, mr);
    }
  }
}

#if defined(__AVX512F__)
/// 16 x 16 float transpose in registers (4 shuffle stages): dst[c * ldd + r] = src[r * ld + c].
/// Packing a transposed B is a transpose; scalar code does about one element per cycle, which is as
/// much time as the FMAs themselves when m is a small batch.
inline void transpose_block(float const* src, std::size_t ld, float* dst, std::size_t ldd) noexcept {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8)
    for (int q = 0; q < 4; ++q) {
      t[i + q] = _mm512_shuffle_f32x4(r[i + q], r[i + q + 4], 0x88);
      t[i + q + 4] = _mm512_shuffle_f32x4(r[i + q], r[i + q + 4], 0xDD);
    }
  for (int q = 0; q < 8; ++q) {
    r[q] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0x88);
    r[q + 8] = _mm512_shuffle_f32x4(t[q], t[q + 8], 0xDD);
  }
  for (int c = 0; c < 16; ++c) _mm512_store_ps(dst + c * ldd, r[c]);
}

/// 8 x 8 double transpose in registers: dst[c * ldd + r] = src[r * ld + c].
inline void transpose_block(double const* src, std::size_t ld, double* dst, std::size_t ldd) noexcept {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(src + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4)
    for (int e = 0; e < 2; ++e) {
      r[i + e] = _mm512_shuffle_f64x2(t[i + e], t[i + e + 2], 0x88);
      r[i + e + 2] = _mm512_shuffle_f64x2(t[i + e], t[i + e + 2], 0xDD);
    }
  for (int q = 0; q < 4; ++q) {
    t[q] = _mm512_shuffle_f64x2(r[q], r[q + 4], 0x88);
    t[q + 4] = _mm512_shuffle_f64x2(r[q], r[q + 4], 0xDD);
  }
  for (int c = 0; c < 8; ++c) _mm512_store_pd(dst + c * ldd, t[c]);
}
inline constexpr bool has_transpose_block = true;
#else
inline constexpr bool has_transpose_block = false;
template <class T> void transpose_block(T const*, std::size_t, T*, std::size_t) noexcept {}
#endif

/// Packs rows [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into slivers of nr columns (zero-padded),
/// sliver t at `dst + t * nr * kc`, element (p, j) at `p * nr + j`.
template <class T> void pack_b(gemm_problem<T> const& g, std::size_t p0, std::size_t kc, std::size_t j0,
                               std::size_t nc, T* dst) noexcept {
  using P = gemm_blocking<T>;
  using batch = typename P::batch;
  constexpr std::size_t nr = P::nr, w = P::simd_width;
  for (std::size_t t = 0; t * nr < nc; ++t) {
    T* d = dst + t * nr * kc;
    std::size_t const cols = std::min(nr, nc - t * nr);
    std::size_t const c0 = j0 + t * nr;
    if (!g.trans_b) {
      T const* src = g.b + p0 * g.ldb + c0;
      if (cols == nr) {
        for (std::size_t p = 0; p < kc; ++p)
          static_for<P::nv>([&](auto v) {
            batch::load_unaligned(src + p * g.ldb + v * w).store_aligned(d + p * nr + v * w);
          });
      } else {
        for (std::size_t p = 0; p < kc; ++p)
          static_for<P::nv>([&](auto v) {
            T const* s = src + p * g.ldb + v * w;
            T* dp = d + p * nr + v * w;
            if ((v + 1) * w <= cols)
              batch::load_unaligned(s).store_aligned(dp);
            else if (v * w < cols)
              load_partial<T>(s, cols - v * w).store_aligned(dp);
            else
              batch(T(0)).store_aligned(dp);
          });
      }
      continue;
    }
    // B is stored n x k: column j of op(B) is row j of b, contiguous in k.
    T const* src = g.b + c0 * g.ldb + p0;
    std::size_t p = 0;
    if constexpr (has_transpose_block && w * sizeof(T) == 64) {
      if (cols == nr)
        for (; p + w <= kc; p += w)
          static_for<P::nv>(
              [&](auto v) { transpose_block(src + v * w * g.ldb + p, g.ldb, d + p * nr + v * w, nr); });
    }
    for (; p < kc; ++p) {
      T* dp = d + p * nr;
      for (std::size_t j = 0; j < cols; ++j) dp[j] = src[j * g.ldb + p];
      for (std::size_t j = cols; j < nr; ++j) dp[j] = T(0);
    }
  }
}

/// The k blocking: ceil(k / kc) blocks of nearly equal size, so that k = kc + 1 does not leave a
/// block of one. Depends only on k (determinism across thread counts).
template <class T> std::size_t k_block(std::size_t k) {
  std::size_t kc = gemm_blocking<T>::kc;
  std::size_t blocks = (k + kc - 1) / kc;
  return (k + blocks - 1) / blocks;
}

/// Computes the rectangle [m0, m1) x [n0, n1) of C (k > 0), calling epi on its finished blocks.
/// Sizes (in elements) of the packing buffers gemm_rect needs for a rectangle of C.
template <class T> std::size_t pack_a_size(std::size_t rows) {
  using P = gemm_blocking<T>;
  return std::min(P::mc, (rows + P::mr - 1) / P::mr * P::mr) * P::a_stride;
}
template <class T> std::size_t pack_b_size(std::size_t cols, std::size_t k) {
  using P = gemm_blocking<T>;
  return std::min(P::nc, (cols + P::nr - 1) / P::nr * P::nr) * k_block<T>(k);
}

/// Computes the rectangle [m0, m1) x [n0, n1) of C (k > 0) with the packing buffers ap and bp
/// (pack_a_size / pack_b_size elements), calling epi (when set) on its finished blocks.
template <class T, bool KMajorA> void gemm_rect(gemm_problem<T> const& g, std::size_t m0, std::size_t m1,
                                                std::size_t n0, std::size_t n1, epilogue_ref epi, T* ap,
                                                T* bp) {
  using P = gemm_blocking<T>;
  constexpr std::size_t mr = P::mr, nr = P::nr;
  std::size_t const kb = k_block<T>(g.k);

  // A is read in place instead of packed (full strips only; a last partial strip, rows < mr, is
  // packed zero padded), k-major (a transposed A, e.g. x^T in a weight gradient x^T dy: rows of
  // `lda` elements per k) or i-major (a plain A, e.g. the batch x of a layer x w: `lda` per row):
  // - when C has at most two register tiles of columns: every strip is read once or twice, and
  //   packing it would cost as much as the kernel's own pass over it;
  // - when C is one B block wide and A's rows do not alias in L1 (a row stride of whole cache lines,
  //   not a multiple of 4 lines, e.g. 784 floats): each strip is then reused from L1 as well as a
  //   packed one would be (measured 2 to 4.5% faster than packing on 256x256x784 and 784x256x256^T;
  //   equal on 1024x1024x784). Strides of 4k lines (power-of-two widths) map the rows of a strip
  //   onto few L1 sets and stay packed.
  std::size_t const lda_bytes = g.lda * sizeof(T);
  bool const direct_a =
      n1 - n0 <= 2 * nr || (n1 - n0 <= P::nc && lda_bytes % 64 == 0 && (lda_bytes / 64) % 4 != 0);
  // A B of exactly nr columns, stored k x nr and aligned, is already in the packed sliver layout
  // (b[k * nr + j]): the kernel reads it in place (a layer of 32 outputs with AVX-512 floats).
  bool const direct_b = !g.trans_b && n0 == 0 && n1 == nr && g.n == nr && g.ldb == nr &&
                        reinterpret_cast<std::uintptr_t>(g.b) % 64 == 0;
  for (std::size_t ic = m0; ic < m1; ic += P::mc) {
    std::size_t const mc = std::min(P::mc, m1 - ic);
    for (std::size_t p0 = 0; p0 < g.k; p0 += kb) {
      std::size_t const kc = std::min(kb, g.k - p0);
      bool const last = p0 + kc == g.k;
      T const beta = p0 == 0 ? g.beta : T(1);
      std::size_t const full = mc / mr * mr; // rows of the strips read in place when direct_a
      if (!direct_a)
        pack_a(g, ic, mc, p0, kc, ap);
      else if (full < mc)
        pack_a(g, ic + full, mc - full, p0, kc, ap + full * P::a_stride);
      for (std::size_t jc = n0; jc < n1; jc += P::nc) {
        std::size_t const nc = std::min(P::nc, n1 - jc);
        T const* const bpk = direct_b ? g.b + p0 * nr : bp;
        if (!direct_b) pack_b(g, p0, kc, jc, nc, bp);
        for (std::size_t ir = 0; ir < mc; ir += mr) {
          std::size_t const rows = std::min(mr, mc - ir);
          bool const in_place = direct_a && ir < full;
          T const* as = !in_place ? ap + ir * P::a_stride
                        : KMajorA ? g.a + p0 * g.lda + ic + ir
                                  : g.a + (ic + ir) * g.lda + p0;
          std::size_t const a_step = in_place ? g.lda : KMajorA ? mr : P::a_stride;
          T* crow = g.c + (ic + ir) * g.ldc + jc;
          for (std::size_t jr = 0; jr < nc; jr += nr) {
            std::size_t const cols = std::min(nr, nc - jr);
            // The register epilogue of the last k block, offset to this tile.
            gemm_bias_act<T> tile_ep;
            gemm_bias_act<T> const* ep = nullptr;
            if (last && g.bias_act) {
              tile_ep = *g.bias_act;
              if (tile_ep.bias) tile_ep.bias += jc + jr;
              if (tile_ep.out) tile_ep.out += (ic + ir) * tile_ep.ldo + jc + jr;
              ep = &tile_ep;
            }
            if (rows == mr && cols == nr)
              micro_kernel<T, KMajorA, mr, P::nv>(kc, as, bpk + jr * kc, crow + jr, g.ldc, g.alpha, beta, mr,
                                                  nr, a_step, ep);
            else
              tile_kernel<T, KMajorA>(rows, cols, kc, as, bpk + jr * kc, crow + jr, g.ldc, g.alpha, beta,
                                      a_step, ep);
          }
          // The strip [ir, ir + rows) x [jc, jc + nc) is final and still in L1/L2. Calling per tile
          // instead measured slower (the epilogue's loads chase the kernel's just-issued stores),
          // and per row panel would let the strip fall out to L3.
          if (last && !epi.empty()) epi(ic + ir, ic + ir + rows, jc, jc + nc);
        }
      }
    }
  }
}

/// C = beta * C (C = 0 when beta == 0, without reading it), for k == 0 or alpha == 0; then the
/// register epilogue's bias + activation, if any, element by element.
template <class T> void scale_c(gemm_problem<T> const& g) noexcept {
  for (std::size_t i = 0; i < g.m; ++i) {
    T* row = g.c + i * g.ldc;
    if (g.beta == T(0))
      std::fill_n(row, g.n, T(0));
    else
      for (std::size_t j = 0; j < g.n; ++j) row[j] *= g.beta;
  }
  if (g.bias_act) bias_act_tile(*g.bias_act, g.c, g.ldc, g.m, g.n);
}

} // namespace gemm_impl

namespace gemm_impl {
template <class T> void run(gemm_problem<T> const& g, epilogue_ref epi);
} // namespace gemm_impl

/// @brief General matrix product on the CPU: C = alpha * op(A) * op(B) + beta * C, all row-major.
///
/// @tparam T float or double.
/// @tparam Epilogue callable as `epi(i0, i1, j0, j1)`.
///
/// op(A) is m x k: stored m x k with row stride lda >= k, or, if trans_a, stored k x m (lda >= m).
/// op(B) is k x n: stored k x n with ldb >= n, or, if trans_b, stored n x k (ldb >= k). C is m x n with
/// ldc >= n. When beta == 0, C is only written (it may hold NaN). When k == 0 or alpha == 0, A and B
/// are not read and C = beta * C.
///
/// `epi(i0, i1, j0, j1)` is called exactly once for each block [i0, i1) x [j0, j1) of C right after
/// the block holds its final values, while it is still in cache; the blocks are disjoint and cover C.
/// Calls may come concurrently from pool threads. An arbitrary elementwise group fuses here.
/// `epi` may instead be a gemm_bias_act<T>: bias + relu/identity applied in registers before the
/// first store, which costs no pass over C at all (the form lepton uses for relu(x w + b)).
///
/// Uses up to `lepton::num_threads()` threads for large products; the result is bitwise the same
/// for every thread count. Allocates nothing once each thread has packed its largest problem.
///
/// **Example**:
/// @code
/// // (64, 784) x (784, 256) -> (64, 256), then y = relu(y + bias) per finished block.
/// gemm<float>(false, false, 64, 256, 784, 1.f, x, 784, w, 256, 0.f, y, 256,
///             [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
///               for (auto i = i0; i < i1; ++i)
///                 for (auto j = j0; j < j1; ++j) y[i * 256 + j] = std::max(y[i * 256 + j] + bias[j], 0.f);
///             });
/// @endcode
template <class T, class Epilogue = no_epilogue>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, T const* a,
          std::size_t lda, T const* b, std::size_t ldb, T beta, T* c, std::size_t ldc,
          Epilogue const& epi = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "lepton: gemm supports float and double");
  if (m == 0 || n == 0) return;
  assert(ldc >= n && "lepton: gemm needs ldc >= n");
  assert((k == 0 || lda >= (trans_a ? m : k)) && "lepton: gemm needs lda >= the stored row length of A");
  assert((k == 0 || ldb >= (trans_b ? k : n)) && "lepton: gemm needs ldb >= the stored row length of B");
  gemm_impl::gemm_problem<T> g{trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc};
  if constexpr (std::is_same_v<Epilogue, gemm_bias_act<T>>) {
    assert((!epi.out || epi.ldo >= n) && "lepton: gemm_bias_act needs ldo >= n");
    g.bias_act = &epi;
    if (k == 0 || alpha == T(0))
      gemm_impl::scale_c(g);
    else
      gemm_impl::run<T>(g, gemm_impl::epilogue_ref{});
  } else {
    if (k == 0 || alpha == T(0)) {
      gemm_impl::scale_c(g);
      epi(std::size_t{0}, m, std::size_t{0}, n);
      return;
    }
    if constexpr (std::is_same_v<Epilogue, no_epilogue>)
      gemm_impl::run<T>(g, gemm_impl::epilogue_ref{});
    else
      gemm_impl::run<T>(g, gemm_impl::epilogue_ref(epi));
  }
}

namespace gemm_impl {
/// The type-erased body of gemm(): one instantiation per element type.
template <class T> void run(gemm_problem<T> const& g, epilogue_ref epi) {
  using P = gemm_blocking<T>;
  std::size_t const m = g.m, n = g.n, k = g.k;
  auto rect = [&](std::size_t m0, std::size_t m1, std::size_t n0, std::size_t n1, T* ap, T* bp) {
    if (g.trans_a)
      gemm_rect<T, true>(g, m0, m1, n0, n1, epi, ap, bp);
    else
      gemm_rect<T, false>(g, m0, m1, n0, n1, epi, ap, bp);
  };

  // Threads: each owns a rectangle of whole tiles, so no synchronisation is needed and tile
  // boundaries are the same as single-threaded. The grid minimises the packed volume per thread.
  std::size_t const mt = (m + P::mr - 1) / P::mr, nt = (n + P::nr - 1) / P::nr;
  std::size_t const work = m * n * k;
  std::size_t threads = work < P::min_parallel_work ? 1 : std::min(num_threads(), work / P::work_per_thread);
  threads = std::min(threads, mt * nt);
  if (threads <= 1) {
    // The calling thread's own buffers: the same thread every time, so they stop growing.
    pack_buffers& buf = thread_pack_buffers();
    rect(0, m, 0, n, buf.a.get<T>(pack_a_size<T>(m)), buf.b.get<T>(pack_b_size<T>(n, k)));
    return;
  }
  // Among the factorisations gm x gn of the thread count, take the one that packs the least per
  // thread (A rows m / gm plus B columns n / gn).
  std::size_t gm = 1, gn = threads;
  double best = -1;
  for (std::size_t d = 1; d <= threads; ++d) {
    if (threads % d != 0 || d > mt || threads / d > nt) continue;
    double cost = double(m) / double(d) + double(n) / double(threads / d);
    if (best < 0 || cost < best) best = cost, gm = d, gn = threads / d;
  }
  if (best < 0) { // no exact factorisation fits: split the longer side only
    if (mt >= nt)
      gm = std::min(threads, mt), gn = 1;
    else
      gm = 1, gn = std::min(threads, nt);
  }
  // Packing buffers per task (not per thread) from the caller's arena: which pool thread runs which
  // task varies from call to call, so per-thread buffers would keep growing; per-task ones are the
  // same every call, and the arena stops allocating after the first.
  arena& mem = thread_arena();
  arena_scope scope(mem);
  std::size_t const tasks = gm * gn;
  std::size_t const a_elems = pack_a_size<T>((mt + gm - 1) / gm * P::mr);
  std::size_t const b_elems = pack_b_size<T>((nt + gn - 1) / gn * P::nr, k);
  T* abuf = mem.allocate_n<T>(tasks * a_elems);
  T* bbuf = mem.allocate_n<T>(tasks * b_elems);
  lepton::detail::parallel_for(tasks, [&](std::size_t t) {
    std::size_t const bi = t / gn, bj = t % gn;
    std::size_t const i0 = mt * bi / gm * P::mr, i1 = std::min(m, mt * (bi + 1) / gm * P::mr);
    std::size_t const j0 = nt * bj / gn * P::nr, j1 = std::min(n, nt * (bj + 1) / gn * P::nr);
    if (i0 < i1 && j0 < j1) rect(i0, i1, j0, j1, abuf + t * a_elems, bbuf + t * b_elems);
  });
}
} // namespace gemm_impl

} // namespace lepton::detail::cpu

#undef LEPTON_GEMM_INLINE_LAMBDA
