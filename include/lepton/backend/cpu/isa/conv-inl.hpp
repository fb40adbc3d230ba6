// No include guard: included once per ISA level by isa/target-inl.hpp, inside
// namespace lepton::detail::cpu::LEPTON_ISA_NS and that level's target region, after vec-inl.hpp.
/// @file conv-inl.hpp
/// @brief The direct convolution kernels of one ISA level (the algorithm is described in
///        conv_kernels.hpp, which picks a level per evaluation and the kernel per shape).

namespace direct {

using ::lepton::detail::direct::planes;

template <class T> using batch = vec<T>;
template <class T> inline constexpr std::size_t lanes = batch<T>::size;
/// Accumulators a register tile may use: three quarters of the vector registers.
template <class T> inline constexpr std::size_t acc_budget = vector_registers * 3 / 4;
/// Rows per forward tile for V vectors per row, and output channels per tile. With 16 registers
/// (SSE2, AVX2) a tile holds R V = 2 input vectors: 12 accumulators, 2 inputs, a broadcast weight
/// and an edge mask fit the register file (R = 2, V = 2 with 3 channels needed 17 and GCC spilled
/// an accumulator on every input row: the fashion_mnist_cnn example's 14-wide rows on Zen 3).
template <class T, std::size_t V> inline constexpr std::size_t rows_per_tile =
    vector_registers >= 32 ? (V == 1 ? 4 : 2) : (V == 1 ? 2 : 1);
/// Whether masked edge loads cost nothing extra (AVX-512's mask registers). Elsewhere a tile whose
/// full-width loads stay inside the input planes loads full vectors and only masks its stores.
inline constexpr bool native_masks = LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2;
template <class T, std::size_t V> inline constexpr std::size_t channels_per_tile =
    std::max<std::size_t>(1, acc_budget<T> / (rows_per_tile<T, V> * V));

// The register tiles are arrays indexed in fully unrolled loops, so that they stay in registers.
template <std::size_t N, class F> LEPTON_ALWAYS_INLINE void unroll(F&& f) {
  static_for<N>(static_cast<F&&>(f));
}

/// The lanes [0, n) of a vector row (n <= lanes): a load mask, computed once per tile.
template <class T> struct lane_mask {
  std::size_t n = 0;
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  std::conditional_t<std::is_same_v<T, float>, __mmask16, __mmask8> m = 0;
  explicit lane_mask(std::size_t k)
      : n(k), m(static_cast<decltype(m)>(k >= lanes<T> ? ~0u : (1u << k) - 1)) {}
#else
  explicit lane_mask(std::size_t k) : n(k) {}
#endif
  lane_mask() = default;
};

template <class T> LEPTON_ALWAYS_INLINE batch<T> mload(T const* p, lane_mask<T> const& k) {
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  if constexpr (sizeof(batch<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      return batch<T>(_mm512_maskz_loadu_ps(k.m, p));
    else
      return batch<T>(_mm512_maskz_loadu_pd(k.m, p));
  }
#endif
  return k.n >= lanes<T> ? batch<T>::load_unaligned(p) : load_partial<T>(p, k.n);
}
template <class T> LEPTON_ALWAYS_INLINE void mstore(T* p, batch<T> const& v, lane_mask<T> const& k) {
#if LEPTON_ISA_X86 && LEPTON_ISA_LEVEL >= 2
  if constexpr (sizeof(batch<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(p, k.m, v.v);
    else
      _mm512_mask_storeu_pd(p, k.m, v.v);
    return;
  }
#endif
  if (k.n >= lanes<T>)
    v.store_unaligned(p);
  else
    store_partial(v, p, k.n);
}

/// out[co][oy0 + r][x0 .. x0 + cols) for r < R and the OB channels whose planes are `out[ob]`:
/// bias[ob] + sum over (c, u, v) of wr[((c * kh + u) * kw + v) * co_pad + ob] * in[c][oy0 + r + u d][x + v d].
/// Masked: the input loads read only the `cols` lanes of each row; else they read whole vectors
/// (the caller checked that they stay inside the planes; the extra lanes are never stored).
template <class T, std::size_t R, std::size_t OB, std::size_t V, bool Masked>
void fwd_tile(planes<T> in, std::size_t kh, std::size_t kw, std::size_t d, T const* wr, std::size_t co_pad,
              T const* bias, T* const* out, std::size_t ow, std::size_t oy0, std::size_t x0,
              std::size_t cols) {
  constexpr std::size_t W = lanes<T>;
  lane_mask<T> mk[V];
  unroll<V>([&](auto v)
                LEPTON_INLINE_LAMBDA { mk[v] = lane_mask<T>(cols > v * W ? std::min(W, cols - v * W) : 0); });
  auto ld_in = [&](T const* p, auto v) LEPTON_INLINE_LAMBDA {
    if constexpr (Masked)
      return mload(p, mk[v]);
    else
      return batch<T>::load_unaligned(p);
  };
  batch<T> acc[R][OB][V];
  unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
    batch<T> const b0(bias ? bias[ob] : T(0));
    unroll<R>([&](auto r) LEPTON_INLINE_LAMBDA {
      unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA { acc[r][ob][v] = b0; });
    });
  });
  for (std::size_t c = 0; c < in.ci; ++c)
    for (std::size_t u = 0; u < kh; ++u) {
      T const* row = in.p + c * in.plane + (oy0 + u * d) * in.ld + x0;
      T const* wj = wr + (c * kh + u) * kw * co_pad;
      for (std::size_t j = 0; j < kw; ++j, row += d, wj += co_pad) {
        batch<T> xin[R][V];
        unroll<R>([&](auto r) LEPTON_INLINE_LAMBDA {
          unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA { xin[r][v] = ld_in(row + r * in.ld + v * W, v); });
        });
        unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
          batch<T> const wb(wj[ob]);
          unroll<R>([&](auto r) LEPTON_INLINE_LAMBDA {
            unroll<V>([&](auto v)
                          LEPTON_INLINE_LAMBDA { acc[r][ob][v] = fmadd(xin[r][v], wb, acc[r][ob][v]); });
          });
        });
      }
    }
  unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
    unroll<R>([&](auto r) LEPTON_INLINE_LAMBDA {
      unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA {
        if (mk[v].n) mstore(out[ob] + (oy0 + r) * ow + x0 + v * W, acc[r][ob][v], mk[v]);
      });
    });
  });
}

/// The rows [y, y + r) of one column strip of tiles: a masked tile where full-width loads would
/// read past the planes (the input's last rows), full loads elsewhere.
template <class T, std::size_t R, std::size_t OB, std::size_t V>
LEPTON_ALWAYS_INLINE void fwd_tile_any(planes<T> in, std::size_t kh, std::size_t kw, std::size_t d,
                                       T const* wr, std::size_t co_pad, T const* bias, T* const* out,
                                       std::size_t ow, std::size_t oy0, std::size_t x0, std::size_t cols) {
  if constexpr (native_masks || LEPTON_ISA_LEVEL == 0) {
    // (The portable level, the fallback for CPUs without AVX2, keeps one tile kernel per shape:
    // both versions there cost a second of the CNN example's compile time.)
    fwd_tile<T, R, OB, V, true>(in, kh, kw, d, wr, co_pad, bias, out, ow, oy0, x0, cols);
  } else {
    // One past the last element a full-width tile reads: the last plane, row oy0 + R - 1 + (kh - 1) d,
    // column x0 + (kw - 1) d + V lanes.
    std::size_t const end =
        (in.ci - 1) * in.plane + (oy0 + R - 1 + (kh - 1) * d) * in.ld + x0 + (kw - 1) * d + V * lanes<T>;
    if (cols < V * lanes<T> && end > in.ci * in.plane)
      fwd_tile<T, R, OB, V, true>(in, kh, kw, d, wr, co_pad, bias, out, ow, oy0, x0, cols);
    else
      fwd_tile<T, R, OB, V, false>(in, kh, kw, d, wr, co_pad, bias, out, ow, oy0, x0, cols);
  }
}

/// The whole output (co_n, oh, ow) of one image. `wr` and `bias` (if any) are padded to co_pad (a
/// multiple of the tile's channels) with zeros; channels beyond co_n are written to `spare` (tile
/// channels x oh x ow).
/// The `in.ci * in.plane` elements from `in.p` must be readable (whole planes).
template <class T, std::size_t V>
void fwd_image(planes<T> in, std::size_t kh, std::size_t kw, std::size_t d, T const* wr, std::size_t co_n,
               std::size_t co_pad, T const* bias, T* out, std::size_t oh, std::size_t ow, T* spare) {
  constexpr std::size_t R = rows_per_tile<T, V>, OB = channels_per_tile<T, V>, X = V * lanes<T>;
  for (std::size_t co0 = 0; co0 < co_n; co0 += OB) {
    T* rows[OB];
    for (std::size_t ob = 0; ob < OB; ++ob)
      rows[ob] = co0 + ob < co_n ? out + (co0 + ob) * oh * ow : spare + ob * oh * ow;
    T const* w0 = wr + co0;
    T const* b0 = bias ? bias + co0 : nullptr;
    for (std::size_t x0 = 0; x0 < ow; x0 += X) {
      std::size_t const cols = std::min(X, ow - x0);
      std::size_t y = 0;
      for (; y + R <= oh; y += R)
        fwd_tile_any<T, R, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
      if constexpr (R > 2)
        for (; y + 2 <= oh; y += 2)
          fwd_tile_any<T, 2, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
      if constexpr (R > 1)
        for (; y < oh; ++y) fwd_tile_any<T, 1, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
    }
  }
}

template <class T> void fwd_image_any(planes<T> in, std::size_t kh, std::size_t kw, std::size_t d,
                                      T const* wr, std::size_t co_n, std::size_t co_pad, T const* bias,
                                      T* out, std::size_t oh, std::size_t ow, T* spare) {
  if (ow > lanes<T>)
    fwd_image<T, 2>(in, kh, kw, d, wr, co_n, co_pad, bias, out, oh, ow, spare);
  else
    fwd_image<T, 1>(in, kh, kw, d, wr, co_n, co_pad, bias, out, oh, ow, spare);
}

/// Output channels per forward tile for an output width (what co_pad must be a multiple of).
template <class T> std::size_t fwd_channels(std::size_t ow) {
  return ow > lanes<T> ? channels_per_tile<T, 2> : channels_per_tile<T, 1>;
}

/// Output channels per dW tile with kernel width KW and V vectors per row: the accumulators
/// (OB KW V) and dY vectors (OB V) share the register file with one input vector.
template <class T, std::size_t KW, std::size_t V> inline constexpr std::size_t dw_channels =
    std::max<std::size_t>(1, (acc_budget<T> + acc_budget<T> / 6 - V) / (V * (KW + 1)));

/// dw[o][c][u][0..KW) += sum over images i, y, x of dy_i[o][y][x] * in_i[c][y + u d][x + j d] for the
/// OB output channels o0 .. o0 + OB (dY planes of channels beyond o_n read as `zeros`) and input
/// channel c, over the `count` images of a chunk: the accumulators stay in registers across images.
template <class T, std::size_t KW, std::size_t OB, std::size_t V>
void dw_tile(T const* dy, std::size_t dy_stride, std::size_t o0, std::size_t o_n, T const* zeros, T const* in,
             std::size_t in_stride, std::size_t ld, std::size_t count, std::size_t kh, std::size_t d,
             std::size_t oh, std::size_t ow, T* const* dw /* [OB] -> (kh, KW) of (o, c), or null */) {
  constexpr std::size_t W = lanes<T>, X = V * W;
  std::size_t const plane = oh * ow;
  for (std::size_t u = 0; u < kh; ++u) {
    batch<T> acc[OB][KW][V];
    unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
      unroll<KW>([&](auto j) LEPTON_INLINE_LAMBDA {
        unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA { acc[ob][j][v] = batch<T>(T(0)); });
      });
    });
    for (std::size_t i = 0; i < count; ++i) {
      T const* g[OB];
      unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
        g[ob] = o0 + ob < o_n ? dy + i * dy_stride + (o0 + ob) * plane : zeros;
      });
      T const* img = in + i * in_stride + u * d * ld;
      for (std::size_t x0 = 0; x0 < ow; x0 += X) {
        std::size_t const cols = std::min(X, ow - x0);
        lane_mask<T> mk[V];
        unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA {
          mk[v] = lane_mask<T>(cols > v * W ? std::min(W, cols - v * W) : 0);
        });
        for (std::size_t y = 0; y < oh; ++y) {
          batch<T> gv[OB][V];
          unroll<OB>([&](auto ob) LEPTON_INLINE_LAMBDA {
            unroll<V>([&](auto v)
                          LEPTON_INLINE_LAMBDA { gv[ob][v] = mload(g[ob] + y * ow + x0 + v * W, mk[v]); });
          });
          T const* row = img + y * ld + x0;
          unroll<KW>([&](auto j) LEPTON_INLINE_LAMBDA {
            unroll<V>([&](auto v) LEPTON_INLINE_LAMBDA {
              batch<T> const xv = mload(row + j * d + v * W, mk[v]);
              unroll<OB>([&](auto ob)
                             LEPTON_INLINE_LAMBDA { acc[ob][j][v] = fmadd(gv[ob][v], xv, acc[ob][j][v]); });
            });
          });
        }
      }
    }
    for (std::size_t ob = 0; ob < OB; ++ob)
      if (dw[ob])
        for (std::size_t j = 0; j < KW; ++j) {
          batch<T> s = acc[ob][j][0];
          for (std::size_t v = 1; v < V; ++v) s = s + acc[ob][j][v];
          dw[ob][u * KW + j] += hsum(s);
        }
  }
}

/// dW (o_n, c_n, kh, KW) += the contribution of `count` images: dY (count, o_n, oh, ow) and the
/// padded input planes (count images of `in.ci` planes each, `in_stride` apart).
template <class T, std::size_t KW, std::size_t V>
void dw_images(T const* dy, std::size_t o_n, planes<T> in, std::size_t in_stride, std::size_t count,
               std::size_t kh, std::size_t d, std::size_t oh, std::size_t ow, T const* zeros, T* dw) {
  constexpr std::size_t OB = dw_channels<T, KW, V>;
  for (std::size_t o0 = 0; o0 < o_n; o0 += OB)
    for (std::size_t c = 0; c < in.ci; ++c) {
      T* dst[OB];
      for (std::size_t ob = 0; ob < OB; ++ob)
        dst[ob] = o0 + ob < o_n ? dw + ((o0 + ob) * in.ci + c) * kh * KW : nullptr;
      dw_tile<T, KW, OB, V>(dy, o_n * oh * ow, o0, o_n, zeros, in.p + c * in.plane, in_stride, in.ld, count,
                            kh, d, oh, ow, dst);
    }
}

template <class T> void dw_images_any(T const* dy, std::size_t o_n, planes<T> in, std::size_t in_stride,
                                      std::size_t count, std::size_t kh, std::size_t kw, std::size_t d,
                                      std::size_t oh, std::size_t ow, T const* zeros, T* dw) {
  auto go = [&]<std::size_t KW>(std::integral_constant<std::size_t, KW>) {
    if (ow > lanes<T>)
      dw_images<T, KW, 2>(dy, o_n, in, in_stride, count, kh, d, oh, ow, zeros, dw);
    else
      dw_images<T, KW, 1>(dy, o_n, in, in_stride, count, kh, d, oh, ow, zeros, dw);
  };
  switch (kw) { // the widths of ::lepton::detail::direct::dw_direct_width
  case 3: return go(std::integral_constant<std::size_t, 3>{});
  case 5: return go(std::integral_constant<std::size_t, 5>{});
  default: break;
  }
}

} // namespace direct
