#pragma once
/// @file conv.hpp
/// @brief CPU kernels and evaluators of the convolutional-network ops (expr/conv.hpp): im2col +
///        packed GEMM and direct (register-blocked, AVX-512) convolution, max/avg pooling, global
///        average pooling and batch normalisation, each op's forward kernel and backward rule in
///        its evaluator.
///
/// **conv2d** runs as im2col + lepton's packed GEMM, one image at a time: for image n,
/// `col = im2col(x[n])` is (C*KH*KW, OH*OW) and `y[n] (O, OH*OW) = W (O, C*KH*KW) x col`, which is
/// already NCHW; the bias is added in the GEMM's epilogue while each block is in cache. A 1x1,
/// stride-1, unpadded convolution reads x[n] directly as `col`. Images are spread over the thread
/// pool; each thread owns one col buffer from the arena. The backward pass computes, per image,
/// `dcol = W^T dy[n]` followed by col2im (dx) and `dW += dy[n] col^T` (col is recomputed, which costs
/// less than storing it for the whole batch). Partial dW/db sums are kept per fixed chunk of images
/// and added in chunk order, so results do not depend on the number of threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../expr/conv.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "step.hpp"

namespace lepton::detail {

/// col (C*KH*KW, OH*OW) of one image x (C, H, W): col[(c, i, j), (y, z)] = x[c, y*s - p + i*d, z*s - p + j*d]
/// (0 outside the image).
template <class T> void im2col(T const* x, conv_geometry const& g, T* col) {
  std::size_t const ohw = g.out_plane();
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * ohw;
        T const* plane = x + c * g.h * g.w;
        // Output columns z whose input column z*s - p + j*d lies in [0, w): [z0, z1).
        std::ptrdiff_t const off = static_cast<std::ptrdiff_t>(j * g.d) - static_cast<std::ptrdiff_t>(g.p);
        std::size_t z0 = 0, z1 = 0;
        {
          std::ptrdiff_t const ss = static_cast<std::ptrdiff_t>(g.s);
          std::ptrdiff_t lo = off >= 0 ? 0 : (-off + ss - 1) / ss;
          std::ptrdiff_t hi = (static_cast<std::ptrdiff_t>(g.w) - 1 - off) < 0
                                  ? 0
                                  : (static_cast<std::ptrdiff_t>(g.w) - 1 - off) / ss + 1;
          lo = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(g.ow));
          hi = std::clamp<std::ptrdiff_t>(hi, lo, static_cast<std::ptrdiff_t>(g.ow));
          z0 = static_cast<std::size_t>(lo);
          z1 = static_cast<std::size_t>(hi);
        }
        for (std::size_t y = 0; y < g.oh; ++y) {
          T* dst = row + y * g.ow;
          std::ptrdiff_t const iy =
              static_cast<std::ptrdiff_t>(y * g.s + i * g.d) - static_cast<std::ptrdiff_t>(g.p);
          if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(g.h)) {
            std::fill_n(dst, g.ow, T(0));
            continue;
          }
          T const* src = plane + static_cast<std::size_t>(iy) * g.w;
          std::fill_n(dst, z0, T(0));
          if (g.s == 1) {
            std::copy_n(src + (static_cast<std::ptrdiff_t>(z0) + off), z1 - z0, dst + z0);
          } else {
            for (std::size_t z = z0; z < z1; ++z) dst[z] = src[static_cast<std::ptrdiff_t>(z * g.s) + off];
          }
          std::fill(dst + z1, dst + g.ow, T(0));
        }
      }
}

/// x (C, H, W) += col2im(col): the adjoint of im2col.
template <class T> void col2im_add(T const* col, conv_geometry const& g, T* x) {
  std::size_t const ohw = g.out_plane();
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T const* row = col + ((c * g.kh + i) * g.kw + j) * ohw;
        T* plane = x + c * g.h * g.w;
        std::ptrdiff_t const off = static_cast<std::ptrdiff_t>(j * g.d) - static_cast<std::ptrdiff_t>(g.p);
        for (std::size_t y = 0; y < g.oh; ++y) {
          std::ptrdiff_t const iy =
              static_cast<std::ptrdiff_t>(y * g.s + i * g.d) - static_cast<std::ptrdiff_t>(g.p);
          if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(g.h)) continue;
          T* dst = plane + static_cast<std::size_t>(iy) * g.w;
          T const* src = row + y * g.ow;
          for (std::size_t z = 0; z < g.ow; ++z) {
            std::ptrdiff_t const ix = static_cast<std::ptrdiff_t>(z * g.s) + off;
            if (ix >= 0 && ix < static_cast<std::ptrdiff_t>(g.w)) dst[ix] += src[z];
          }
        }
      }
}

// ---------------------------------------------------------------------------- direct convolution
// Stride-1 convolutions run as direct loops vectorised along the output width: each output row
// segment of V vectors is accumulated in registers for a block of R rows x OB output channels, so
// every input vector loaded feeds OB FMAs and every broadcast weight feeds R * V FMAs, and no input
// value is replicated (im2col copies each one KH * KW times, which dominates for few channels).
// The input is read from a zero-padded copy, so the loops have no boundary tests; the row tail is a
// masked load/store. The same kernel computes dX as the convolution of the padded dY with the
// flipped kernel; dW has its own kernel (a correlation of the input with dY).
namespace direct {

template <class T> using batch = xsimd::batch<T>;
template <class T> inline constexpr std::size_t lanes = batch<T>::size;
/// Accumulators a register tile may use: three quarters of the vector registers.
template <class T> inline constexpr std::size_t acc_budget = cpu::gemm_blocking<T>::vector_registers * 3 / 4;
/// Rows per forward tile for V vectors per row, and output channels per tile.
template <class T, std::size_t V> inline constexpr std::size_t rows_per_tile = V == 1 ? 4 : 2;
template <class T, std::size_t V> inline constexpr std::size_t channels_per_tile =
    std::max<std::size_t>(1, acc_budget<T> / (rows_per_tile<T, V> * V));

// The register tiles are arrays indexed in fully unrolled loops, so that they stay in registers.
#if defined(__GNUC__) || defined(__clang__)
#define LEPTON_CONV_INLINE __attribute__((always_inline))
#else
#define LEPTON_CONV_INLINE
#endif
template <std::size_t N, class F> LEPTON_ALWAYS_INLINE void unroll(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) LEPTON_CONV_INLINE {
    (f(std::integral_constant<std::size_t, I>{}), ...);
      }(std::make_index_sequence<N>{});
}

/// The lanes [0, n) of a vector row (n <= lanes): a load mask, computed once per tile.
template <class T> struct lane_mask {
  std::size_t n = 0;
#if defined(__AVX512F__)
  std::conditional_t<std::is_same_v<T, float>, __mmask16, __mmask8> m = 0;
  explicit lane_mask(std::size_t k)
      : n(k), m(static_cast<decltype(m)>(k >= lanes<T> ? ~0u : (1u << k) - 1)) {}
#else
  explicit lane_mask(std::size_t k) : n(k) {}
#endif
  lane_mask() = default;
};

template <class T> LEPTON_ALWAYS_INLINE batch<T> mload(T const* p, lane_mask<T> const& k) {
#if defined(__AVX512F__)
  if constexpr (sizeof(batch<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      return batch<T>(_mm512_maskz_loadu_ps(k.m, p));
    else
      return batch<T>(_mm512_maskz_loadu_pd(k.m, p));
  }
#endif
  return k.n >= lanes<T> ? batch<T>::load_unaligned(p) : cpu::gemm_impl::load_partial<T>(p, k.n);
}
template <class T> LEPTON_ALWAYS_INLINE void mstore(T* p, batch<T> const& v, lane_mask<T> const& k) {
#if defined(__AVX512F__)
  if constexpr (sizeof(batch<T>) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(p, k.m, v);
    else
      _mm512_mask_storeu_pd(p, k.m, v);
    return;
  }
#endif
  if (k.n >= lanes<T>)
    v.store_unaligned(p);
  else
    cpu::gemm_impl::store_partial(v, p, k.n);
}

/// dst (c, h + 2 ph, w + 2 pw) = src (c, h, w) with zero borders.
template <class T> void pad_planes(T const* src, std::size_t c, std::size_t h, std::size_t w, std::size_t ph,
                                   std::size_t pw, T* dst) {
  std::size_t const hp = h + 2 * ph, wp = w + 2 * pw;
  for (std::size_t k = 0; k < c; ++k) {
    T* d = dst + k * hp * wp;
    std::fill_n(d, ph * wp, T(0));
    for (std::size_t y = 0; y < h; ++y) {
      T* row = d + (ph + y) * wp;
      std::fill_n(row, pw, T(0));
      T const* s = src + (k * h + y) * w;
      for (std::size_t x = 0; x < w; ++x) row[pw + x] = s[x];
      std::fill_n(row + pw + w, pw, T(0));
    }
    std::fill_n(d + (ph + h) * wp, ph * wp, T(0));
  }
}

/// Input of a direct convolution: `ci` planes of `plane` elements, rows of `ld` elements (padded).
template <class T> struct planes {
  T const* p;
  std::size_t ci, plane, ld;
};

/// out[co][oy0 + r][x0 .. x0 + cols) for r < R and the OB channels whose planes are `out[ob]`:
/// bias[ob] + sum over (c, u, v) of wr[((c * kh + u) * kw + v) * co_pad + ob] * in[c][oy0 + r + u d][x + v d].
template <class T, std::size_t R, std::size_t OB, std::size_t V>
void fwd_tile(planes<T> in, std::size_t kh, std::size_t kw, std::size_t d, T const* wr, std::size_t co_pad,
              T const* bias, T* const* out, std::size_t ow, std::size_t oy0, std::size_t x0,
              std::size_t cols) {
  constexpr std::size_t W = lanes<T>;
  lane_mask<T> mk[V];
  unroll<V>([&](auto v)
                LEPTON_CONV_INLINE { mk[v] = lane_mask<T>(cols > v * W ? std::min(W, cols - v * W) : 0); });
  batch<T> acc[R][OB][V];
  unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
    batch<T> const b0(bias ? bias[ob] : T(0));
    unroll<R>([&](auto r)
                  LEPTON_CONV_INLINE { unroll<V>([&](auto v) LEPTON_CONV_INLINE { acc[r][ob][v] = b0; }); });
  });
  for (std::size_t c = 0; c < in.ci; ++c)
    for (std::size_t u = 0; u < kh; ++u) {
      T const* row = in.p + c * in.plane + (oy0 + u * d) * in.ld + x0;
      T const* wj = wr + (c * kh + u) * kw * co_pad;
      for (std::size_t j = 0; j < kw; ++j, row += d, wj += co_pad) {
        batch<T> xin[R][V];
        unroll<R>([&](auto r) LEPTON_CONV_INLINE {
          unroll<V>([&](auto v) LEPTON_CONV_INLINE { xin[r][v] = mload(row + r * in.ld + v * W, mk[v]); });
        });
        unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
          batch<T> const wb(wj[ob]);
          unroll<R>([&](auto r) LEPTON_CONV_INLINE {
            unroll<V>([&](auto v) LEPTON_CONV_INLINE {
              acc[r][ob][v] = cpu::gemm_impl::fmadd(xin[r][v], wb, acc[r][ob][v]);
            });
          });
        });
      }
    }
  unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
    unroll<R>([&](auto r) LEPTON_CONV_INLINE {
      unroll<V>([&](auto v) LEPTON_CONV_INLINE {
        if (mk[v].n) mstore(out[ob] + (oy0 + r) * ow + x0 + v * W, acc[r][ob][v], mk[v]);
      });
    });
  });
}

/// The whole output (co_n, oh, ow) of one image. `wr` is padded to co_pad (a multiple of the tile's
/// channels) with zero weights; channels beyond co_n are written to `spare` (tile channels x oh x ow).
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
      for (; y + R <= oh; y += R) fwd_tile<T, R, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
      if constexpr (R > 2)
        for (; y + 2 <= oh; y += 2)
          fwd_tile<T, 2, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
      for (; y < oh; ++y) fwd_tile<T, 1, OB, V>(in, kh, kw, d, w0, co_pad, b0, rows, ow, y, x0, cols);
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
    unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
      unroll<KW>([&](auto j) LEPTON_CONV_INLINE {
        unroll<V>([&](auto v) LEPTON_CONV_INLINE { acc[ob][j][v] = batch<T>(T(0)); });
      });
    });
    for (std::size_t i = 0; i < count; ++i) {
      T const* g[OB];
      unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
        g[ob] = o0 + ob < o_n ? dy + i * dy_stride + (o0 + ob) * plane : zeros;
      });
      T const* img = in + i * in_stride + u * d * ld;
      for (std::size_t x0 = 0; x0 < ow; x0 += X) {
        std::size_t const cols = std::min(X, ow - x0);
        lane_mask<T> mk[V];
        unroll<V>([&](auto v) LEPTON_CONV_INLINE {
          mk[v] = lane_mask<T>(cols > v * W ? std::min(W, cols - v * W) : 0);
        });
        for (std::size_t y = 0; y < oh; ++y) {
          batch<T> gv[OB][V];
          unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
            unroll<V>([&](auto v)
                          LEPTON_CONV_INLINE { gv[ob][v] = mload(g[ob] + y * ow + x0 + v * W, mk[v]); });
          });
          T const* row = img + y * ld + x0;
          unroll<KW>([&](auto j) LEPTON_CONV_INLINE {
            unroll<V>([&](auto v) LEPTON_CONV_INLINE {
              batch<T> const xv = mload(row + j * d + v * W, mk[v]);
              unroll<OB>([&](auto ob) LEPTON_CONV_INLINE {
                acc[ob][j][v] = cpu::gemm_impl::fmadd(gv[ob][v], xv, acc[ob][j][v]);
              });
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
          dw[ob][u * KW + j] += xsimd::hadd(s);
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

/// Largest kernel width the direct dW kernel is instantiated for.
inline constexpr std::size_t max_kw = 7;

template <class T> void dw_images_any(T const* dy, std::size_t o_n, planes<T> in, std::size_t in_stride,
                                      std::size_t count, std::size_t kh, std::size_t kw, std::size_t d,
                                      std::size_t oh, std::size_t ow, T const* zeros, T* dw) {
  auto go = [&]<std::size_t KW>(std::integral_constant<std::size_t, KW>) {
    if (ow > lanes<T>)
      dw_images<T, KW, 2>(dy, o_n, in, in_stride, count, kh, d, oh, ow, zeros, dw);
    else
      dw_images<T, KW, 1>(dy, o_n, in, in_stride, count, kh, d, oh, ow, zeros, dw);
  };
  switch (kw) {
  case 1: return go(std::integral_constant<std::size_t, 1>{});
  case 2: return go(std::integral_constant<std::size_t, 2>{});
  case 3: return go(std::integral_constant<std::size_t, 3>{});
  case 4: return go(std::integral_constant<std::size_t, 4>{});
  case 5: return go(std::integral_constant<std::size_t, 5>{});
  case 6: return go(std::integral_constant<std::size_t, 6>{});
  case 7: return go(std::integral_constant<std::size_t, 7>{});
  default: break;
  }
}

} // namespace direct

/// How conv2d computes: direct loops or im2col + GEMM (see conv_algorithm_for).
enum class conv_algo { automatic, direct, im2col };

/// Tests force one algorithm to check both on every shape; automatic otherwise.
inline conv_algo& conv_algo_override() {
  static conv_algo a = conv_algo::automatic;
  return a;
}

/// Number of fixed image chunks the backward passes accumulate partial sums over (independent of
/// the thread count, so that results are too).
inline constexpr std::size_t conv_grad_chunks = 16;

/// A child's gradient buffer: the leaf's own gradient memory when it exposes one (`sink`), else an
/// arena buffer handed to `child.backward` once `fill(beta, dst)` has written it.
template <class T, std::size_t R, class Node, class Child, class Fill>
void write_child_grad(eval_context& ctx, Child& c, shape_t<R> const& s, Fill fill) {
  if constexpr (requires { c.sink(ctx); }) {
    if (auto snk = c.sink(ctx); snk.ptr) {
      fill(snk.add, snk.ptr);
      anomaly_check<Node>(snk.ptr, shape_size(s), "backward");
    }
  } else {
    T* d = ctx.alloc<T>(shape_size(s));
    fill(false, d);
    anomaly_check<Node>(d, shape_size(s), "backward");
    view_ev<T, R> dv(d, s);
    c.backward(ctx, dv);
  }
}

template <class B> struct bias_evaluator {
  using type = evaluator<B>;
};
template <> struct bias_evaluator<no_operand> {
  struct type {
    static constexpr bool may_need_grad = false;
    explicit type(no_operand) {}
    bool reads(void const*, void const*) const { return false; }
    bool needs_grad(eval_context const&) const { return false; }
  };
};

// ---------------------------------------------------------------------------- conv2d evaluator

template <class X, class W, class B, std::size_t S, std::size_t P, std::size_t D>
struct evaluator<conv2d_node<X, W, B, S, P, D>, cpu_backend>
    : buffered_step<evaluator<conv2d_node<X, W, B, S, P, D>, cpu_backend>, typename X::value_type, 4> {
  using node = conv2d_node<X, W, B, S, P, D>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 4;
  static constexpr bool has_bias = node::has_bias;
  using Ex = evaluator<X>;
  using Ew = evaluator<W>;
  using Eb = typename bias_evaluator<B>::type;
  static constexpr bool may_need_grad = Ex::may_need_grad || Ew::may_need_grad || Eb::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;
  /// Like matmul, conv2d writes its output where materialise_into asks (set_output), so assigning
  /// it to a tensor costs no copy. (It offers no run_gemm epilogue: visit_top shows no GEMM.)
  static constexpr bool is_gemm = true;

  Ex x;
  Ew w;
  Eb bias_ev; // not `b`: anomaly detection walks children named a, b, c as fused inputs
  shape_t<4> shp;
  conv_geometry geo;
  view_ev<T, 4> xv, wv;
  T const* bias = nullptr;
  T* preset = nullptr;

  explicit evaluator(node const& n) : x(n.x), w(n.w), bias_ev(n.b), shp(n.shape()) {
    geo = conv_geometry_of<S, P, D>(x.shape(), w.shape());
  }
  shape_t<4> const& shape() const { return shp; }
  void set_output(T* p) { preset = p; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(x, id, ctx);
    identify(w, id, ctx);
    if constexpr (has_bias) identify(bias_ev, id, ctx);
  }
  void compute(eval_context& ctx) {
    xv = value_of(ctx, x);
    wv = value_of(ctx, w);
    if constexpr (has_bias) bias = value_of(ctx, bias_ev).ptr;
    T* o = preset ? preset : ctx.alloc<T>(shape_size(shp));
    std::size_t const n = shp[0], oc = shp[1];
    conv_geometry const g = geo;
    std::size_t const chunks = std::min<std::size_t>(n, num_threads());
    if (n == 0) {
      this->out = view_ev<T, 4>(o, shp);
      return;
    }
    std::size_t const ohw = g.out_plane(), k = g.col_rows(), xsz = g.c * g.in_plane();
    T const* wp = wv.ptr;
    T const* bp = bias;
    if (direct_forward(g)) {
      // Weights as wr[(c, u, v)][o] (o fastest, padded with zeros to whole tiles), bias padded too.
      std::size_t const ob = direct::fwd_channels<T>(g.ow), co_pad = (oc + ob - 1) / ob * ob;
      T* wr = ctx.alloc<T>(k * co_pad);
      T* br = has_bias ? ctx.alloc<T>(co_pad) : nullptr;
      for (std::size_t q = 0; q < k; ++q) {
        for (std::size_t c = 0; c < oc; ++c) wr[q * co_pad + c] = wp[c * k + q];
        std::fill(wr + q * co_pad + oc, wr + (q + 1) * co_pad, T(0));
      }
      if (br) {
        std::copy_n(bp, oc, br);
        std::fill(br + oc, br + co_pad, T(0));
      }
      std::size_t const hp = g.h + 2 * g.p, wdp = g.w + 2 * g.p, pad_sz = g.p ? g.c * hp * wdp : 0;
      T* scratch = ctx.alloc<T>(chunks * (pad_sz + ob * ohw));
      parallel_for(chunks, [&](std::size_t c) {
        T* pad = scratch + c * (pad_sz + ob * ohw);
        T* spare = pad + pad_sz;
        for (std::size_t i = n * c / chunks; i < n * (c + 1) / chunks; ++i) {
          T const* xi = xv.ptr + i * xsz;
          direct::planes<T> in{xi, g.c, g.in_plane(), g.w};
          if (g.p) {
            direct::pad_planes(xi, g.c, g.h, g.w, g.p, g.p, pad);
            in = {pad, g.c, hp * wdp, wdp};
          }
          direct::fwd_image_any(in, g.kh, g.kw, g.d, wr, oc, co_pad, br, o + i * oc * ohw, g.oh, g.ow, spare);
        }
      });
      this->out = view_ev<T, 4>(o, shp);
      return;
    }
    T* col = g.pointwise() ? nullptr : ctx.alloc<T>(chunks * g.col_size());
    parallel_for(chunks, [&](std::size_t c) {
      T* mycol = col ? col + c * g.col_size() : nullptr;
      for (std::size_t i = n * c / chunks; i < n * (c + 1) / chunks; ++i) {
        T const* xi = xv.ptr + i * xsz;
        T* yi = o + i * oc * ohw;
        T const* cm = xi;
        if (mycol) {
          im2col(xi, g, mycol);
          cm = mycol;
        }
        if constexpr (has_bias) {
          cpu::gemm<T>(false, false, oc, ohw, k, T(1), wp, k, cm, ohw, T(0), yi, ohw,
                       [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
            for (std::size_t r = i0; r < i1; ++r) {
              T* row = yi + r * ohw;
              T const bv = bp[r];
              for (std::size_t q = j0; q < j1; ++q) row[q] += bv;
            }
          });
        } else {
          cpu::gemm<T>(false, false, oc, ohw, k, T(1), wp, k, cm, ohw, T(0), yi, ohw);
        }
      }
    });
    this->out = view_ev<T, 4>(o, shp);
  }
  bool reads(void const* p, void const* e) const {
    return x.reads(p, e) || w.reads(p, e) || bias_ev.reads(p, e);
  }
  bool needs_grad(eval_context const& ctx) const {
    return x.needs_grad(ctx) || w.needs_grad(ctx) || bias_ev.needs_grad(ctx);
  }

  template <class G> void backward_rule(eval_context& ctx, G& gr) {
    if constexpr (may_need_grad) {
      bool const gx = Ex::may_need_grad && x.needs_grad(ctx);
      bool const gw = Ew::may_need_grad && w.needs_grad(ctx);
      bool const gb = Eb::may_need_grad && bias_ev.needs_grad(ctx);
      if (!gx && !gw && !gb) return;
      auto gv = grad_value<T>(ctx, gr, shp);
      conv_geometry const g = geo;
      std::size_t const n = shp[0], oc = shp[1], ohw = g.out_plane(), k = g.col_rows();
      std::size_t const xsz = g.c * g.in_plane();
      std::size_t const chunks = std::max<std::size_t>(1, std::min(n, conv_grad_chunks));
      bool const pw = g.pointwise();
      bool const dw_direct = gw && direct_weight_grad(g), dx_direct = gx && direct_input_grad(g);
      bool const dw_gemm = gw && !dw_direct, dx_gemm = gx && !dx_direct;
      T const* wp = wv.ptr;

      // Scratch, per chunk: the padded input (direct dW), the padded dY and a spare output tile
      // (direct dX), col and dcol (GEMM paths). Partial dW and db sums per chunk.
      std::size_t const hp = g.h + 2 * g.p, wdp = g.w + 2 * g.p;
      std::size_t const qh = dx_direct ? (g.kh - 1) * g.d - g.p : 0,
                        qw = dx_direct ? (g.kw - 1) * g.d - g.p : 0;
      std::size_t const gh = g.oh + 2 * qh, gwd = g.ow + 2 * qw;
      std::size_t const xob = dx_direct ? direct::fwd_channels<T>(g.w) : 0,
                        c_pad = dx_direct ? (g.c + xob - 1) / xob * xob : 0;
      std::size_t const per_max = (n + chunks - 1) / chunks; // images in the largest chunk
      std::size_t const pad_x = dw_direct && g.p ? per_max * g.c * hp * wdp : 0;
      std::size_t const pad_g = dx_direct && (qh || qw) ? oc * gh * gwd : 0;
      std::size_t const spare = dx_direct ? xob * g.in_plane() : 0;
      std::size_t const cols = (dw_gemm && !pw ? g.col_size() : 0) + (dx_gemm && !pw ? g.col_size() : 0);
      std::size_t const per_chunk = pad_x + pad_g + spare + cols;
      T* scratch = ctx.alloc<T>(chunks * per_chunk);
      T* dx = gx ? ctx.alloc<T>(n * xsz) : nullptr;
      T* dwp = gw ? ctx.alloc<T>(chunks * oc * k) : nullptr;
      T* dbp = gb ? ctx.alloc<T>(chunks * oc) : nullptr;
      T* zeros = dw_direct ? ctx.alloc<T>(ohw) : nullptr;
      T* wr = dx_direct ? ctx.alloc<T>(oc * g.kh * g.kw * c_pad) : nullptr; // rows (o, u, v)
      if (gw) std::fill_n(dwp, chunks * oc * k, T(0));
      if (gb) std::fill_n(dbp, chunks * oc, T(0));
      if (zeros) std::fill_n(zeros, ohw, T(0));
      if (wr) {
        // dX = conv(pad(dY), flipped W^T): wr[(o, u, v)][c] = W[o][c][kh - 1 - u][kw - 1 - v].
        for (std::size_t o = 0; o < oc; ++o)
          for (std::size_t u = 0; u < g.kh; ++u)
            for (std::size_t v = 0; v < g.kw; ++v) {
              T* dst = wr + ((o * g.kh + u) * g.kw + v) * c_pad;
              for (std::size_t c = 0; c < g.c; ++c)
                dst[c] = wp[((o * g.c + c) * g.kh + (g.kh - 1 - u)) * g.kw + (g.kw - 1 - v)];
              std::fill(dst + g.c, dst + c_pad, T(0));
            }
      }
      parallel_for(chunks, [&](std::size_t c) {
        T* base = scratch + c * per_chunk;
        T* padx = base;
        T* padg = padx + pad_x;
        T* spr = padg + pad_g;
        T* col = spr + spare;
        T* dcol = col + (dw_gemm && !pw ? g.col_size() : 0);
        std::size_t const i0 = n * c / chunks, i1 = n * (c + 1) / chunks;
        if (dw_direct) { // all images of the chunk at once: the accumulators stay in registers
          direct::planes<T> in{xv.ptr + i0 * xsz, g.c, g.in_plane(), g.w};
          std::size_t stride = xsz;
          if (g.p) {
            stride = g.c * hp * wdp;
            for (std::size_t i = i0; i < i1; ++i)
              direct::pad_planes(xv.ptr + i * xsz, g.c, g.h, g.w, g.p, g.p, padx + (i - i0) * stride);
            in = {padx, g.c, hp * wdp, wdp};
          }
          direct::dw_images_any(gv.ptr + i0 * oc * ohw, oc, in, stride, i1 - i0, g.kh, g.kw, g.d, g.oh, g.ow,
                                zeros, dwp + c * oc * k);
        }
        for (std::size_t i = i0; i < i1; ++i) {
          T const* dyi = gv.ptr + i * oc * ohw;
          T const* xi = xv.ptr + i * xsz;
          if (dw_gemm) {
            T const* cm = xi;
            if (!pw) {
              im2col(xi, g, col);
              cm = col;
            }
            // dW (oc, k) += dy (oc, ohw) x col^T (ohw, k)
            cpu::gemm<T>(false, true, oc, k, ohw, T(1), dyi, ohw, cm, ohw, T(1), dwp + c * oc * k, k);
          }
          if (gb) {
            T* db = dbp + c * oc;
            for (std::size_t r = 0; r < oc; ++r) db[r] += plane_sum(dyi + r * ohw, ohw);
          }
          if (gx) {
            T* dxi = dx + i * xsz;
            if (dx_direct) {
              direct::planes<T> in{dyi, oc, ohw, g.ow};
              if (qh || qw) {
                direct::pad_planes(dyi, oc, g.oh, g.ow, qh, qw, padg);
                in = {padg, oc, gh * gwd, gwd};
              }
              direct::fwd_image_any(in, g.kh, g.kw, g.d, wr, g.c, c_pad, static_cast<T const*>(nullptr), dxi,
                                    g.h, g.w, spr);
            } else if (pw) {
              // dx (c, hw) = W^T (c, oc) x dy (oc, hw)
              cpu::gemm<T>(true, false, k, ohw, oc, T(1), wp, k, dyi, ohw, T(0), dxi, ohw);
            } else {
              cpu::gemm<T>(true, false, k, ohw, oc, T(1), wp, k, dyi, ohw, T(0), dcol, ohw);
              std::fill_n(dxi, xsz, T(0));
              col2im_add(dcol, g, dxi);
            }
          }
        }
      });
      if constexpr (Ew::may_need_grad) {
        if (gw)
          write_child_grad<T, 4, node>(ctx, w, w.shape(),
                                       [&](bool add, T* dst) { sum_chunks(dwp, chunks, oc * k, add, dst); });
      }
      if constexpr (Eb::may_need_grad) {
        if (gb)
          write_child_grad<T, 1, node>(ctx, bias_ev, bias_ev.shape(),
                                       [&](bool add, T* dst) { sum_chunks(dbp, chunks, oc, add, dst); });
      }
      if constexpr (Ex::may_need_grad) {
        if (gx) {
          anomaly_check<node>(dx, shape_size(x.shape()), "backward");
          view_ev<T, 4> dv(dx, x.shape());
          x.backward(ctx, dv);
        }
      }
    }
  }

  // Algorithm choice per shape, from single-thread measurements (AVX-512, batch 32-64; docs/cnn.md):
  // direct loops win the forward pass whenever the output rows fill the vector lanes (row width 8
  // on 16 lanes loses to GEMM), dW when C KH KW is small (the GEMM's k; im2col also replicates each
  // input KH KW times), and dX when there are enough input channels to fill a register tile. A 1x1
  // convolution is a plain GEMM on the input (no im2col) and always takes that path.
  static double lane_use(std::size_t width) {
    constexpr std::size_t L = direct::lanes<T>;
    return double(width) / double((width + L - 1) / L * L);
  }
  static bool direct_forward(conv_geometry const& g) {
    if (g.s != 1) return false;
    if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
    return !g.pointwise() && lane_use(g.ow) >= 0.6;
  }
  static bool direct_weight_grad(conv_geometry const& g) {
    if (g.s != 1 || g.kw > direct::max_kw) return false;
    if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
    return !g.pointwise() && lane_use(g.ow) >= 0.6 && g.col_rows() < 256;
  }
  static bool direct_input_grad(conv_geometry const& g) {
    if (g.s != 1 || (g.kh - 1) * g.d < g.p || (g.kw - 1) * g.d < g.p) return false;
    if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
    return !g.pointwise() && lane_use(g.w) >= 0.6 && g.c >= direct::fwd_channels<T>(g.w);
  }

private:
  /// Sum of p[0, n) with four vector accumulators (a scalar loop would be one dependent add per element).
  static T plane_sum(T const* p, std::size_t n) {
    using V = simd_t<T>;
    constexpr std::size_t L = lanes_v<V>;
    V a0 = splat<V>(T(0)), a1 = a0, a2 = a0, a3 = a0;
    std::size_t q = 0;
    for (; q + 4 * L <= n; q += 4 * L) {
      a0 = a0 + load<V>(p + q);
      a1 = a1 + load<V>(p + q + L);
      a2 = a2 + load<V>(p + q + 2 * L);
      a3 = a3 + load<V>(p + q + 3 * L);
    }
    for (; q + L <= n; q += L) a0 = a0 + load<V>(p + q);
    T s = static_cast<T>(m::hsum((a0 + a1) + (a2 + a3)));
    for (; q < n; ++q) s += p[q];
    return s;
  }
  /// dst (+)= sum over chunks of part[c * len .. (c + 1) * len), in chunk order.
  static void sum_chunks(T const* part, std::size_t chunks, std::size_t len, bool add, T* dst) {
    for (std::size_t q = 0; q < len; ++q) {
      T s = part[q];
      for (std::size_t c = 1; c < chunks; ++c) s += part[c * len + q];
      dst[q] = add ? dst[q] + s : s;
    }
  }
};

// ---------------------------------------------------------------------------- pooling evaluators

template <pool_kind Kind, class A, std::size_t K, std::size_t S, std::size_t P>
struct evaluator<pool2d_node<Kind, A, K, S, P>, cpu_backend>
    : buffered_step<evaluator<pool2d_node<Kind, A, K, S, P>, cpu_backend>, typename A::value_type, 4> {
  using node = pool2d_node<Kind, A, K, S, P>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 4;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<4> shp, in;
  view_ev<T, 4> av;
  std::uint32_t* arg = nullptr; // max pooling: index of each output's maximum in its input plane

  explicit evaluator(node const& n) : a(n.a), shp(n.shape()), in(a.shape()) {}
  shape_t<4> const& shape() const { return shp; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    T* o = ctx.alloc<T>(shape_size(shp));
    // The index of each window's maximum, for the backward pass (always kept: a lazily read input
    // is not available afterwards).
    if constexpr (Kind == pool_kind::max) arg = ctx.alloc<std::uint32_t>(shape_size(shp));
    if constexpr (!Ea::has_buffer) {
      // An elementwise input (typically relu(conv)) is computed where the windows read it instead
      // of being materialised first: one pass less over the largest activation of the network.
      a.forward(ctx, nullptr);
      a.bind(in);
      if (a.flat_ok()) {
        av = {};
        pool([&](std::size_t i) LEPTON_CONV_INLINE { return a.template load_flat<T>(i); }, o);
        this->out = view_ev<T, 4>(o, shp);
        return;
      }
      T* buf = ctx.alloc<T>(shape_size(in));
      run_assign(buf, a, in, false);
      av = view_ev<T, 4>(buf, in);
    } else {
      av = value_of(ctx, a);
    }
    T const* src = av.ptr;
    pool([src](std::size_t i) LEPTON_CONV_INLINE { return src[i]; }, o);
    this->out = view_ev<T, 4>(o, shp);
  }

  /// o = pooling of the input read through `ld(flat index)`.
  template <class Load> void pool(Load const& ld, T* o) {
    std::size_t const planes = shp[0] * shp[1], h = in[2], w = in[3], oh = shp[2], ow = shp[3];
    std::uint32_t* am = arg;
    parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(h * w, 1)),
                   [&](std::size_t pb, std::size_t pe) {
      for (std::size_t pl = pb; pl < pe; ++pl) {
        std::size_t const x = pl * h * w; // flat index of the plane
        T* y = o + pl * oh * ow;
        std::uint32_t* ai = am ? am + pl * oh * ow : nullptr;
        if constexpr (Kind == pool_kind::max && K == 2 && S == 2 && P == 0) {
          for (std::size_t r = 0; r < oh; ++r) {
            std::size_t const r0 = x + 2 * r * w, r1 = r0 + w;
            for (std::size_t q = 0; q < ow; ++q) {
              std::size_t const c0 = 2 * q;
              T m = ld(r0 + c0);
              std::uint32_t best = static_cast<std::uint32_t>(2 * r * w + c0);
              if (T v = ld(r0 + c0 + 1); v > m) m = v, best = static_cast<std::uint32_t>(2 * r * w + c0 + 1);
              if (T v = ld(r1 + c0); v > m) m = v, best = static_cast<std::uint32_t>((2 * r + 1) * w + c0);
              if (T v = ld(r1 + c0 + 1); v > m)
                m = v, best = static_cast<std::uint32_t>((2 * r + 1) * w + c0 + 1);
              y[r * ow + q] = m;
              if (ai) ai[r * ow + q] = best;
            }
          }
        } else {
          for (std::size_t r = 0; r < oh; ++r)
            for (std::size_t q = 0; q < ow; ++q) {
              std::ptrdiff_t const y0 = static_cast<std::ptrdiff_t>(r * S) - static_cast<std::ptrdiff_t>(P);
              std::ptrdiff_t const x0 = static_cast<std::ptrdiff_t>(q * S) - static_cast<std::ptrdiff_t>(P);
              std::size_t const ylo = static_cast<std::size_t>(std::max<std::ptrdiff_t>(y0, 0));
              std::size_t const yhi = static_cast<std::size_t>(std::min<std::ptrdiff_t>(
                  y0 + static_cast<std::ptrdiff_t>(K), static_cast<std::ptrdiff_t>(h)));
              std::size_t const xlo = static_cast<std::size_t>(std::max<std::ptrdiff_t>(x0, 0));
              std::size_t const xhi = static_cast<std::size_t>(std::min<std::ptrdiff_t>(
                  x0 + static_cast<std::ptrdiff_t>(K), static_cast<std::ptrdiff_t>(w)));
              if constexpr (Kind == pool_kind::max) {
                T m = -std::numeric_limits<T>::infinity();
                std::size_t best = ylo * w + xlo;
                for (std::size_t yy = ylo; yy < yhi; ++yy)
                  for (std::size_t xx = xlo; xx < xhi; ++xx)
                    if (T v = ld(x + yy * w + xx); v > m) m = v, best = yy * w + xx;
                y[r * ow + q] = m;
                if (ai) ai[r * ow + q] = static_cast<std::uint32_t>(best);
              } else {
                T sum = 0;
                for (std::size_t yy = ylo; yy < yhi; ++yy)
                  for (std::size_t xx = xlo; xx < xhi; ++xx) sum += ld(x + yy * w + xx);
                y[r * ow + q] = sum * (T(1) / T(K * K));
              }
            }
        }
      }
    });
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }

  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(in));
      std::size_t const planes = shp[0] * shp[1], h = in[2], w = in[3], oh = shp[2], ow = shp[3];
      std::uint32_t const* am = arg;
      parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(h * w, 1)),
                     [&](std::size_t pb, std::size_t pe) {
        for (std::size_t pl = pb; pl < pe; ++pl) {
          T* dx = d + pl * h * w;
          T const* gy = gv.ptr + pl * oh * ow;
          std::fill_n(dx, h * w, T(0));
          for (std::size_t r = 0; r < oh; ++r)
            for (std::size_t q = 0; q < ow; ++q) {
              T const gval = gy[r * ow + q];
              if constexpr (Kind == pool_kind::max) {
                dx[am[pl * oh * ow + r * ow + q]] += gval;
              } else {
                std::ptrdiff_t const y0 = static_cast<std::ptrdiff_t>(r * S) - static_cast<std::ptrdiff_t>(P);
                std::ptrdiff_t const x0 = static_cast<std::ptrdiff_t>(q * S) - static_cast<std::ptrdiff_t>(P);
                T const share = gval * (T(1) / T(K * K));
                for (std::ptrdiff_t yy = std::max<std::ptrdiff_t>(y0, 0);
                     yy < std::min<std::ptrdiff_t>(y0 + static_cast<std::ptrdiff_t>(K),
                                                   static_cast<std::ptrdiff_t>(h));
                     ++yy)
                  for (std::ptrdiff_t xx = std::max<std::ptrdiff_t>(x0, 0);
                       xx < std::min<std::ptrdiff_t>(x0 + static_cast<std::ptrdiff_t>(K),
                                                     static_cast<std::ptrdiff_t>(w));
                       ++xx)
                    dx[static_cast<std::size_t>(yy) * w + static_cast<std::size_t>(xx)] += share;
              }
            }
        }
      });
      anomaly_check<node>(d, shape_size(in), "backward");
      view_ev<T, 4> dv(d, in);
      a.backward(ctx, dv);
    }
  }
};

template <class A> struct evaluator<global_avg_pool_node<A>, cpu_backend>
    : buffered_step<evaluator<global_avg_pool_node<A>, cpu_backend>, typename A::value_type, 2> {
  using node = global_avg_pool_node<A>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = 2;
  using Ea = evaluator<A>;
  static constexpr bool may_need_grad = Ea::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  shape_t<2> shp;
  shape_t<4> in;
  explicit evaluator(node const& n) : a(n.a), shp(n.shape()), in(a.shape()) {}
  shape_t<2> const& shape() const { return shp; }

  /// Its identity (eval/dag.hpp): a pure function of its type and operands, so equal copies are one
  /// step (computed once, one backward rule).
  void step_identity(identity& id, eval_context& ctx) {
    id.push(type_word<node>());
    identify(a, id, ctx);
  }
  void compute(eval_context& ctx) {
    T* o = ctx.alloc<T>(shape_size(shp));
    if constexpr (!Ea::has_buffer) { // an elementwise input is summed as it is computed (one pass)
      a.forward(ctx, nullptr);
      a.bind(in);
      if (a.flat_ok()) {
        means([&](std::size_t i) LEPTON_CONV_INLINE { return a.template load_flat<simd_t<T>>(i); },
              [&](std::size_t i) LEPTON_CONV_INLINE { return a.template load_flat<T>(i); }, o);
        this->out = view_ev<T, 2>(o, shp);
        return;
      }
    }
    auto av = value_of(ctx, a);
    T const* src = av.ptr;
    means([src](std::size_t i) LEPTON_CONV_INLINE { return load<simd_t<T>>(src + i); },
          [src](std::size_t i) LEPTON_CONV_INLINE { return src[i]; }, o);
    this->out = view_ev<T, 2>(o, shp);
  }
  /// o[plane] = mean of the plane, reading vectors with `lv(flat index)` and scalars with `ls`.
  template <class LV, class LS> void means(LV const& lv, LS const& ls, T* o) {
    using V = simd_t<T>;
    constexpr std::size_t L = lanes_v<V>;
    std::size_t const planes = shp[0] * shp[1], hw = in[2] * in[3];
    T const inv = hw ? T(1) / T(hw) : T(0);
    parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(hw, 1)),
                   [&](std::size_t b, std::size_t e) {
      for (std::size_t pl = b; pl < e; ++pl) {
        std::size_t const x = pl * hw;
        V acc = splat<V>(T(0));
        std::size_t q = 0;
        for (; q + L <= hw; q += L) acc = acc + lv(x + q);
        T sum = static_cast<T>(m::hsum(acc));
        for (; q < hw; ++q) sum += ls(x + q);
        o[pl] = sum * inv;
      }
    });
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const { return a.needs_grad(ctx); }
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      if (!a.needs_grad(ctx)) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* d = ctx.alloc<T>(shape_size(in));
      std::size_t const planes = shp[0] * shp[1], hw = in[2] * in[3];
      T const inv = hw ? T(1) / T(hw) : T(0);
      parallel_range(planes, std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(hw, 1)),
                     [&](std::size_t b, std::size_t e) {
        for (std::size_t pl = b; pl < e; ++pl) std::fill_n(d + pl * hw, hw, gv.ptr[pl] * inv);
      });
      anomaly_check<node>(d, shape_size(in), "backward");
      view_ev<T, 4> dv(d, in);
      a.backward(ctx, dv);
    }
  }
};

// ---------------------------------------------------------------------------- batch norm evaluator

template <class A, class Gm, class Bt> struct evaluator<batch_norm_node<A, Gm, Bt>, cpu_backend>
    : buffered_step<evaluator<batch_norm_node<A, Gm, Bt>, cpu_backend>, typename A::value_type, A::rank> {
  using node = batch_norm_node<A, Gm, Bt>;
  using T = typename node::value_type;
  using value_type = T;
  static constexpr std::size_t rank = node::rank;
  using Ea = evaluator<A>;
  using Eg = evaluator<Gm>;
  using Eb = evaluator<Bt>;
  static constexpr bool may_need_grad = Ea::may_need_grad || Eg::may_need_grad || Eb::may_need_grad;
  static constexpr bool has_buffer = true;
  static constexpr std::size_t top_gemms = 0;

  Ea a;
  Eg gm;
  Eb bt;
  batch_norm_options<T> opt;
  shape_t<rank> shp;
  std::size_t n = 0, ch = 0, sp = 1; // (n, ch, sp) view of the input
  view_ev<T, rank> xv;
  T const* gamma = nullptr;
  T* mean = nullptr;   // (ch) the mean used
  T* invstd = nullptr; // (ch) 1 / sqrt(var + eps) used

  explicit evaluator(node const& nd) : a(nd.a), gm(nd.g), bt(nd.b), opt(nd.opt), shp(a.shape()) {
    n = shp[0];
    ch = shp[1];
    for (std::size_t d = 2; d < rank; ++d) sp *= shp[d];
    if (gm.shape()[0] != ch || bt.shape()[0] != ch)
      throw shape_error("batch_norm: input " + to_string(shp) + " has " + std::to_string(ch) +
                        " channels, gamma " + to_string(gm.shape()) + " and beta " + to_string(bt.shape()));
    if (!(opt.eps > 0)) throw value_error("batch_norm: eps must be > 0, got " + std::to_string(opt.eps));
  }
  shape_t<rank> const& shape() const { return shp; }

  void compute(eval_context& ctx) {
    xv = value_of(ctx, a);
    gamma = value_of(ctx, gm).ptr;
    T const* beta = value_of(ctx, bt).ptr;
    T* o = ctx.alloc<T>(shape_size(shp));
    mean = ctx.alloc<T>(ch);
    invstd = ctx.alloc<T>(ch);
    std::size_t const m = n * sp;
    if (opt.training) {
      if (m <= 1)
        throw value_error("batch_norm: training needs more than one value per channel, the input is " +
                          to_string(shp));
    } else if (!opt.running_mean || !opt.running_var) {
      throw value_error(
          "batch_norm: evaluation mode needs running statistics (running_mean and running_var)");
    }
    T const* x = xv.ptr;
    parallel_for(ch, [&](std::size_t c) {
      if (opt.training) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) s += double(row[q]);
        }
        double const mu = s / double(m);
        double v = 0;
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) {
            double const dlt = double(row[q]) - mu;
            v += dlt * dlt;
          }
        }
        double const var = v / double(m);
        mean[c] = T(mu);
        invstd[c] = T(1.0 / std::sqrt(var + opt.eps));
        if (opt.running_mean)
          opt.running_mean[c] = T((1 - opt.momentum) * double(opt.running_mean[c]) + opt.momentum * mu);
        if (opt.running_var)
          opt.running_var[c] =
              T((1 - opt.momentum) * double(opt.running_var[c]) + opt.momentum * v / double(m - 1));
      } else {
        mean[c] = opt.running_mean[c];
        invstd[c] = T(1.0 / std::sqrt(double(opt.running_var[c]) + opt.eps));
      }
      T const scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;
      for (std::size_t i = 0; i < n; ++i) {
        T const* row = x + (i * ch + c) * sp;
        T* yr = o + (i * ch + c) * sp;
        for (std::size_t q = 0; q < sp; ++q) yr[q] = row[q] * scale + shift;
      }
    });
    this->out = view_ev<T, rank>(o, shp);
  }
  bool reads(void const* p, void const* e) const { return a.reads(p, e) || gm.reads(p, e) || bt.reads(p, e); }
  bool needs_grad(eval_context const& ctx) const {
    return a.needs_grad(ctx) || gm.needs_grad(ctx) || bt.needs_grad(ctx);
  }

  // With xhat = (x - mean) invstd: dbeta = sum g, dgamma = sum g xhat; in training mode the batch
  // statistics depend on x: dx = gamma invstd (g - mean(g) - xhat mean(g xhat)); in evaluation mode
  // dx = gamma invstd g.
  template <class G> void backward_rule(eval_context& ctx, G& g) {
    if constexpr (may_need_grad) {
      bool const ga = Ea::may_need_grad && a.needs_grad(ctx);
      bool const gg = Eg::may_need_grad && gm.needs_grad(ctx);
      bool const gb = Eb::may_need_grad && bt.needs_grad(ctx);
      if (!ga && !gg && !gb) return;
      auto gv = grad_value<T>(ctx, g, shp);
      T* sg = ctx.alloc<T>(ch);  // sum g
      T* sgx = ctx.alloc<T>(ch); // sum g xhat
      T* dx = ga ? ctx.alloc<T>(shape_size(shp)) : nullptr;
      T const* x = xv.ptr;
      std::size_t const m = n * sp;
      bool const train = opt.training;
      parallel_for(ch, [&](std::size_t c) {
        double s = 0, sx = 0;
        T const mu = mean[c], is = invstd[c];
        for (std::size_t i = 0; i < n; ++i) {
          T const* row = x + (i * ch + c) * sp;
          T const* gr = gv.ptr + (i * ch + c) * sp;
          for (std::size_t q = 0; q < sp; ++q) {
            s += double(gr[q]);
            sx += double(gr[q]) * double((row[q] - mu) * is);
          }
        }
        sg[c] = T(s);
        sgx[c] = T(sx);
        if (dx) {
          T const k = gamma[c] * is;
          T const mg = train ? T(s / double(m)) : T(0), mgx = train ? T(sx / double(m)) : T(0);
          for (std::size_t i = 0; i < n; ++i) {
            T const* row = x + (i * ch + c) * sp;
            T const* gr = gv.ptr + (i * ch + c) * sp;
            T* dr = dx + (i * ch + c) * sp;
            for (std::size_t q = 0; q < sp; ++q) dr[q] = k * (gr[q] - mg - (row[q] - mu) * is * mgx);
          }
        }
      });
      if constexpr (Eg::may_need_grad) {
        if (gg)
          write_child_grad<T, 1, node>(ctx, gm, gm.shape(), [&](bool add, T* d) {
            for (std::size_t c = 0; c < ch; ++c) d[c] = add ? d[c] + sgx[c] : sgx[c];
          });
      }
      if constexpr (Eb::may_need_grad) {
        if (gb)
          write_child_grad<T, 1, node>(ctx, bt, bt.shape(), [&](bool add, T* d) {
            for (std::size_t c = 0; c < ch; ++c) d[c] = add ? d[c] + sg[c] : sg[c];
          });
      }
      if constexpr (Ea::may_need_grad) {
        if (ga) {
          anomaly_check<node>(dx, shape_size(shp), "backward");
          view_ev<T, rank> dv(dx, shp);
          a.backward(ctx, dv);
        }
      }
    }
  }
};

} // namespace lepton::detail

#undef LEPTON_CONV_INLINE
