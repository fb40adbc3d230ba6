// No include guard: included once per ISA level by isa/target-inl.hpp, inside
// namespace lepton::detail::cpu::LEPTON_ISA_NS and that level's target region, after vec-inl.hpp.
/// @file gemm-inl.hpp
/// @brief The GEMM kernels of one ISA level: blocking, micro-kernels, packing and the threaded driver.
///        The design (BLIS-style packing and register blocking, determinism) is described in gemm.hpp,
///        whose gemm() runs the kernels of lepton::active_isa().

using gemm_impl::epilogue_ref;
using gemm_impl::gemm_problem;
using gemm_impl::pack_buffers;
using gemm_impl::thread_pack_buffers;

/// @brief Register and cache blocking of the GEMM for element type T at this ISA level.
///
/// The micro-tile is `mr x nr` with `nr = 2` vectors: with 32 vector registers (AVX-512, NEON64)
/// mr = 14 gives 28 accumulators + 2 B vectors (A is broadcast from memory); with 16 registers
/// (SSE, AVX2) mr = 6 gives 12 accumulators + 2 B vectors + 1 broadcast (+1 temporary without FMA).
/// kc keeps the A sliver (mr x kc) in L1 next to the streaming B sliver; nc keeps the packed B block
/// (kc x nc) in about half of a 2 MiB L2; mc only bounds the packed A panel.
template <class T> struct gemm_blocking {
  using batch = vec<T>;
  /// Elements per vector register (16 floats with AVX-512, 4 with SSE2).
  static constexpr std::size_t simd_width = batch::size;
  static constexpr std::size_t vector_registers = LEPTON_VREGS;
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
  /// Work (multiply-adds) below which a product stays on the calling thread. Workers spin for 1 ms
  /// after a job, so inside a training step a handoff costs about a microsecond; 1M multiply-adds
  /// take ~8 us on one AVX-512 core. (At 4M, the 64 x 256 x 128 products of the batch-64 MLP ran
  /// serially and 2 threads gave 1.54x one; at 1M, 1.72x. A product after an idle spell pays
  /// the workers' wake-up, ~10-50 us, once.)
  static constexpr std::size_t min_parallel_work = std::size_t{1} << 20;
  /// Multiply-adds each extra thread must get at least.
  static constexpr std::size_t work_per_thread = std::size_t{1} << 19;
};

/// The register epilogue for an edge tile, applied after the tile was stored: reads the rows x cols
/// values at c (just written, in L1) and writes act(c + bias) to ep.out, or back to c.
template <class T>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
void bias_act_tile(gemm_bias_act<T> const& ep, T const* c, std::size_t ldc, std::size_t rows,
                   std::size_t cols) noexcept {
  using batch = vec<T>;
  constexpr std::size_t w = batch::size;
  batch const floor(ep.act == gemm_activation::relu ? T(0) : -std::numeric_limits<T>::infinity());
  auto act = [&](batch y) LEPTON_INLINE_LAMBDA { return vmax(floor, y); };
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
  using batch = vec<T>;
  constexpr std::size_t w = P::simd_width;
  std::size_t const a_k = KMajorA ? a_step : 1;
  std::size_t const a_i = KMajorA ? 1 : a_step;

  batch acc[MR][NV];
  static_for<MR>([&](auto i) LEPTON_INLINE_LAMBDA {
    static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA { acc[i][v] = batch(T(0)); });
  });
  // The C tile is needed only after the k loop: fetching it now hides its latency behind the loop.
  for (std::size_t i = 0; i < rows; ++i) {
    prefetch_write(c + i * ldc);
    prefetch_write(c + i * ldc + cols - 1);
  }

  for (std::size_t p = 0; p < kc; ++p) {
    batch bv[NV];
    static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA { bv[v] = batch::load_aligned(b + v * w); });
    static_for<MR>([&](auto i) LEPTON_INLINE_LAMBDA {
      batch const ai(a[i * a_i]);
      static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA { acc[i][v] = fmadd(ai, bv[v], acc[i][v]); });
    });
    a += a_k;
    b += P::nr;
  }

  batch const va(alpha), vb(beta);
  bool const read_c = beta != T(0);
  auto result = [&](batch const& x, T const* ci) LEPTON_INLINE_LAMBDA {
    return read_c ? fmadd(x, va, batch::load_unaligned(ci) * vb) : x * va;
  };
  if constexpr (MR == P::mr && NV == P::nv) {
    // A full tile of the full-size instance (nearly all of C): bias + activation in registers. The
    // product goes to C only when ep->out takes the activation; otherwise the activation replaces it.
    // The activation is max(floor, y): floor 0 is relu, floor -inf the identity (maxps returns y
    // when the operands compare equal or y is NaN), one code path for both (compile time).
    if (ep && rows == MR && cols == NV * w) {
      batch bias[NV];
      static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA {
        bias[v] = ep->bias ? batch::load_unaligned(ep->bias + v * w) : batch(T(0));
      });
      batch const floor(ep->act == gemm_activation::relu ? T(0) : -std::numeric_limits<T>::infinity());
      T* const out = ep->out;
      std::size_t const ldo = out ? ep->ldo : ldc;
      static_for<MR>([&](auto i) LEPTON_INLINE_LAMBDA {
        static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA {
          T* ci = c + i * ldc + v * w;
          batch const r = result(acc[i][v], ci);
          if (out) r.store_unaligned(ci);
          vmax(floor, r + bias[v]).store_unaligned((out ? out : c) + i * ldo + v * w);
        });
      });
      return;
    }
  }
  if (rows == MR && cols == NV * w) {
    static_for<MR>([&](auto i) LEPTON_INLINE_LAMBDA {
      static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA {
        T* ci = c + i * ldc + v * w;
        result(acc[i][v], ci).store_unaligned(ci);
      });
    });
  } else {
    // Partial tile: the accumulators go to an L1 buffer, then a plain (not unrolled) loop applies
    // the same final formula to the rows x cols part, whole vectors where they fit and the last one
    // partially. One short loop instead of MR x NV guarded stores keeps the instances small.
    alignas(64) T tile[MR * NV * w];
    static_for<MR>([&](auto i) LEPTON_INLINE_LAMBDA {
      static_for<NV>([&](auto v) LEPTON_INLINE_LAMBDA { acc[i][v].store_aligned(tile + (i * NV + v) * w); });
    });
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t v = 0; v < NV && v * w < cols; ++v) {
        T* ci = c + i * ldc + v * w;
        batch const x = batch::load_aligned(tile + (i * NV + v) * w);
        std::size_t const n = cols - v * w;
        if (n >= w) {
          result(x, ci).store_unaligned(ci);
        } else {
          batch const old = read_c ? load_partial<T>(ci, n) : batch(T(0));
          store_partial(read_c ? fmadd(x, va, old * vb) : x * va, ci, n);
        }
      }
  }
  // Edge tiles take the epilogue after their store, from L1 (bias_act_tile): the many small
  // instances stay small (compile time), and edges are a small part of C.
  if (ep) bias_act_tile(*ep, c, ldc, rows, cols);
}

/// Runs the smallest micro-kernel instance whose tile covers rows x cols: the row counts mr and, when
/// mr > 8, 8, times 1..nv vectors. Shorter strips run the smallest of these: every partial strip is
/// packed and zero padded to mr rows, so the extra rows read zeros and are not stored, and each
/// stored element has the same FMA chain as in any other instance (results do not change). More
/// row counts would cost compile time (every instance is compiled once per ISA level) for tiles that
/// are a small part of C.
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
  if constexpr (P::mr > 8)
    if (rows <= 8) return with_rows(integral_constant<std::size_t, 8>{});
  with_rows(integral_constant<std::size_t, P::mr>{});
}

/// dst[0, n) = src[0, n) and dst[n, total) = 0, with vector moves; reads nothing past src + n and
/// writes nothing past dst + total. (Packing copies short runs, where a memcpy call costs more than
/// the copy.)
template <class T> void copy_padded(T const* src, std::size_t n, T* dst, std::size_t total) noexcept {
  using batch = vec<T>;
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

#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
// The zero-masking forms with all lanes selected: the same instructions, but GCC 12 warns
// (-Wmaybe-uninitialized) on the unmasked intrinsics' `_mm512_undefined_ps()` inside target regions.
inline constexpr __mmask16 all16 = 0xFFFF;
inline constexpr __mmask8 all8 = 0xFF;
/// 16 x 16 float transpose in registers (4 shuffle stages): dst[c * ldd + r] = src[r * ld + c].
/// Packing a transposed B is a transpose; scalar code does about one element per cycle, which is as
/// much time as the FMAs themselves when m is a small batch.
inline void transpose_block(float const* src, std::size_t ld, float* dst, std::size_t ldd) noexcept {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(all16, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(all16, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8)
    for (int q = 0; q < 4; ++q) {
      t[i + q] = _mm512_maskz_shuffle_f32x4(all16, r[i + q], r[i + q + 4], 0x88);
      t[i + q + 4] = _mm512_maskz_shuffle_f32x4(all16, r[i + q], r[i + q + 4], 0xDD);
    }
  for (int q = 0; q < 8; ++q) {
    r[q] = _mm512_maskz_shuffle_f32x4(all16, t[q], t[q + 8], 0x88);
    r[q + 8] = _mm512_maskz_shuffle_f32x4(all16, t[q], t[q + 8], 0xDD);
  }
  for (int c = 0; c < 16; ++c) _mm512_store_ps(dst + c * ldd, r[c]);
}

/// 8 x 8 double transpose in registers: dst[c * ldd + r] = src[r * ld + c].
inline void transpose_block(double const* src, std::size_t ld, double* dst, std::size_t ldd) noexcept {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(src + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_maskz_unpacklo_pd(all8, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_pd(all8, r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4)
    for (int e = 0; e < 2; ++e) {
      r[i + e] = _mm512_maskz_shuffle_f64x2(all8, t[i + e], t[i + e + 2], 0x88);
      r[i + e + 2] = _mm512_maskz_shuffle_f64x2(all8, t[i + e], t[i + e + 2], 0xDD);
    }
  for (int q = 0; q < 4; ++q) {
    t[q] = _mm512_maskz_shuffle_f64x2(all8, r[q], r[q + 4], 0x88);
    t[q + 4] = _mm512_maskz_shuffle_f64x2(all8, r[q], r[q + 4], 0xDD);
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
  using batch = vec<T>;
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
