#pragma once
/// @file conv_kernels.hpp
/// @brief The CPU kernels of conv2d (expr/conv.hpp) and the choice between them: im2col and its
///        adjoint col2im (for lepton's packed GEMM), the entry points of the direct convolution kernels
///        (register-blocked, vectorised along the output width; masked loads with AVX-512; one copy
///        per ISA level in isa/conv-inl.hpp) and the rules that pick one per shape. The evaluator that runs them is in conv.hpp.

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../../core/config.hpp"
#include "../../core/isa.hpp"
#include "../../eval/simd.hpp"
#include "../../expr/conv.hpp"
#include "gemm.hpp"
#include "isa_kernels.hpp"
#include "kernel_types.hpp"

namespace lepton::detail {

/// Copies and fills of im2col's rows, which are often a few elements (4 on a 4x4 output plane,
/// 10 on LeNet conv2): vectors of the build's width, then 16-byte chunks for what is left (and for
/// rows narrower than a vector: an AVX-512 build's 16 lanes are wider than most such rows), the last
/// chunk overlapping the previous one when the length is not a multiple (it stores the same values
/// again); rows under 16 bytes as a plain loop. GCC turned the copy loop into a call to memmove,
/// whose call and dispatch cost more than the copy: im2col took more time than the GEMM on a 6x6
/// input. The empty asm keeps the short loop a loop.
template <class T> LEPTON_ALWAYS_INLINE void copy_row(T const* src, std::size_t n, T* dst) {
  using V = simd_t<T>;
  constexpr std::size_t L = lanes_v<V>, C = 16 / sizeof(T);
  std::size_t z = 0;
  for (; z + L <= n; z += L) store<V>(dst + z, load<V>(src + z));
  if (z == n) return;
  if (n >= C) {
    for (; z + C <= n; z += C) __builtin_memcpy(dst + z, src + z, 16);
    if (z < n) __builtin_memcpy(dst + n - C, src + n - C, 16);
    return;
  }
  for (; z < n; ++z) {
    dst[z] = src[z];
    __asm__ volatile("");
  }
}
template <class T> LEPTON_ALWAYS_INLINE void zero_row(T* dst, std::size_t n) {
  using V = simd_t<T>;
  constexpr std::size_t L = lanes_v<V>, C = 16 / sizeof(T);
  V const zero(T(0));
  T const zeros[C] = {};
  std::size_t z = 0;
  for (; z + L <= n; z += L) store<V>(dst + z, zero);
  if (z == n) return;
  if (n >= C) {
    for (; z + C <= n; z += C) __builtin_memcpy(dst + z, zeros, 16);
    if (z < n) __builtin_memcpy(dst + n - C, zeros, 16);
    return;
  }
  for (; z < n; ++z) {
    dst[z] = T(0);
    __asm__ volatile("");
  }
}

/// The output columns z of kernel column j whose input column z*s - p + j*d lies in [0, w): [z0, z1),
/// and the offset j*d - p.
struct im2col_span {
  std::ptrdiff_t off;
  std::size_t z0, z1;
};
inline im2col_span im2col_span_of(conv_geometry const& g, std::size_t j) {
  std::ptrdiff_t const off = static_cast<std::ptrdiff_t>(j * g.d) - static_cast<std::ptrdiff_t>(g.p);
  std::ptrdiff_t const ss = static_cast<std::ptrdiff_t>(g.s);
  std::ptrdiff_t lo = off >= 0 ? 0 : (-off + ss - 1) / ss;
  std::ptrdiff_t hi = (static_cast<std::ptrdiff_t>(g.w) - 1 - off) < 0
                          ? 0
                          : (static_cast<std::ptrdiff_t>(g.w) - 1 - off) / ss + 1;
  lo = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(g.ow));
  hi = std::clamp<std::ptrdiff_t>(hi, lo, static_cast<std::ptrdiff_t>(g.ow));
  return {off, static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)};
}

/// col (C*KH*KW, OH*OW) of one image x (C, H, W): col[(c, i, j), (y, z)] = x[c, y*s - p + i*d, z*s - p + j*d]
/// (0 outside the image).
/// Row r of col starts at col + r * ld (ld = 0: OH*OW, one image's columns; a larger ld lays the
/// columns of several images side by side, for one GEMM over a group of images).
template <class T> void im2col(T const* x, conv_geometry const& g, T* col, std::size_t ld = 0) {
  std::size_t const ohw = ld ? ld : g.out_plane();
  // The spans depend on the kernel column alone: computed once (two divisions each, which cost more
  // than copying a 4-element row when they were redone for every (c, i, j)), for up to 32 columns.
  constexpr std::size_t cached = 32;
  im2col_span spans[cached];
  for (std::size_t j = 0; j < std::min(g.kw, cached); ++j) spans[j] = im2col_span_of(g, j);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * ohw;
        T const* plane = x + c * g.h * g.w;
        im2col_span const sp = j < cached ? spans[j] : im2col_span_of(g, j);
        std::ptrdiff_t const off = sp.off;
        std::size_t const z0 = sp.z0, z1 = sp.z1;
        for (std::size_t y = 0; y < g.oh; ++y) {
          T* dst = row + y * g.ow;
          std::ptrdiff_t const iy =
              static_cast<std::ptrdiff_t>(y * g.s + i * g.d) - static_cast<std::ptrdiff_t>(g.p);
          if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(g.h)) {
            zero_row(dst, g.ow);
            continue;
          }
          T const* src = plane + static_cast<std::size_t>(iy) * g.w;
          zero_row(dst, z0);
          if (g.s == 1) {
            copy_row(src + (static_cast<std::ptrdiff_t>(z0) + off), z1 - z0, dst + z0);
          } else {
            for (std::size_t z = z0; z < z1; ++z) dst[z] = src[static_cast<std::ptrdiff_t>(z * g.s) + off];
          }
          zero_row(dst + z1, g.ow - z1);
        }
      }
}

/// x (C, H, W) += col2im(col): the adjoint of im2col (rows of col `ld` apart, as there). The same
/// column spans as im2col bound the loops: no test per element.
template <class T> void col2im_add(T const* col, conv_geometry const& g, T* x, std::size_t ld = 0) {
  std::size_t const ohw = ld ? ld : g.out_plane();
  using V = simd_t<T>;
  constexpr std::size_t L = lanes_v<V>, cached = 32;
  im2col_span spans[cached];
  for (std::size_t j = 0; j < std::min(g.kw, cached); ++j) spans[j] = im2col_span_of(g, j);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T const* row = col + ((c * g.kh + i) * g.kw + j) * ohw;
        T* plane = x + c * g.h * g.w;
        im2col_span const sp = j < cached ? spans[j] : im2col_span_of(g, j);
        for (std::size_t y = 0; y < g.oh; ++y) {
          std::ptrdiff_t const iy =
              static_cast<std::ptrdiff_t>(y * g.s + i * g.d) - static_cast<std::ptrdiff_t>(g.p);
          if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(g.h)) continue;
          T* dst = plane + static_cast<std::size_t>(iy) * g.w;
          T const* src = row + y * g.ow;
          if (g.s == 1) {
            T* d = dst + (static_cast<std::ptrdiff_t>(sp.z0) + sp.off);
            std::size_t const n = sp.z1 - sp.z0;
            std::size_t z = 0;
            for (; z + L <= n; z += L) store<V>(d + z, load<V>(d + z) + load<V>(src + sp.z0 + z));
            for (; z < n; ++z) d[z] += src[sp.z0 + z];
          } else {
            for (std::size_t z = sp.z0; z < sp.z1; ++z)
              dst[static_cast<std::ptrdiff_t>(z * g.s) + sp.off] += src[z];
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

/// Lanes of a vector of T at ISA level `k` (what the direct kernels vectorise the rows over).
template <class T> std::size_t lanes(isa k) {
  return cpu::with_isa(k, [](auto K) { return decltype(K)::template lanes<T>; });
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

/// Output channels per forward tile for an output width at level `k` (what co_pad must be a
/// multiple of).
template <class T> std::size_t fwd_channels(isa k, std::size_t ow) {
  return cpu::with_isa(k, [&](auto K) { return decltype(K)::template fwd_channels<T>(ow); });
}

/// The whole output (co_n, oh, ow) of one image with level `k`'s kernels: out[co][y][x] = bias[co] +
/// the correlation of the planes `in` with the weights `wr` (c, kh, kw, co_pad) at dilation d.
/// `wr` and `bias` (null: none) are padded to co_pad (a multiple of fwd_channels(k, ow)) with
/// zeros; channels beyond co_n are written to `spare` (fwd_channels x oh x ow). The whole planes
/// `in.ci * in.plane` elements from `in.p` must be readable: the kernels of the levels without
/// masked loads read whole vectors past a row's end wherever they stay inside that range.
template <class T> void fwd_image_any(isa k, planes<T> in, std::size_t kh, std::size_t kw, std::size_t d,
                                      T const* wr, std::size_t co_n, std::size_t co_pad, T const* bias,
                                      T* out, std::size_t oh, std::size_t ow, T* spare) {
  cpu::with_isa(k, [&](auto K) {
    decltype(K)::template fwd_image<T>(in, kh, kw, d, wr, co_n, co_pad, bias, out, oh, ow, spare);
  });
}

/// dW (o_n, c_n, kh, kw) += the contribution of `count` images with level `k`'s kernels: dY (count,
/// o_n, oh, ow) and the padded input planes (count images of `in.ci` planes, `in_stride` apart);
/// `zeros` holds oh * ow zeros. dw_direct_width(kw) must hold.
template <class T> void dw_images_any(isa k, T const* dy, std::size_t o_n, planes<T> in,
                                      std::size_t in_stride, std::size_t count, std::size_t kh,
                                      std::size_t kw, std::size_t d, std::size_t oh, std::size_t ow,
                                      T const* zeros, T* dw) {
  cpu::with_isa(k, [&](auto K) {
    decltype(K)::template dw_images<T>(dy, o_n, in, in_stride, count, kh, kw, d, oh, ow, zeros, dw);
  });
}

} // namespace direct

/// How conv2d computes: direct loops or im2col + GEMM (see direct_forward and the rules below).
enum class conv_algo { automatic, direct, im2col };

/// Tests force one algorithm to check both on every shape; automatic otherwise.
inline conv_algo& conv_algo_override() {
  static conv_algo a = conv_algo::automatic;
  return a;
}

// Algorithm choice per shape, from single-thread measurements (AVX-512, batch 32-64; docs/cnn.md):
// direct loops win the forward pass whenever the output rows fill the vector lanes (row width 8
// on 16 lanes loses to GEMM), dW when C KH KW is small (the GEMM's k; im2col also replicates each
// input KH KW times), and dX when there are enough input channels to fill a register tile. A 1x1
// convolution is a plain GEMM on the input (no im2col) and always takes that path.

/// The share of the vector lanes that rows of `width` elements fill.
template <class T> inline double lane_use(isa k, std::size_t width) {
  std::size_t const L = direct::lanes<T>(k);
  return double(width) / double((width + L - 1) / L * L);
}
/// Whether conv2d's forward pass runs the direct kernel (else im2col + GEMM).
template <class T> inline bool direct_forward(isa k, conv_geometry const& g) {
  if (g.s != 1) return false;
  if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
  return !g.pointwise() && lane_use<T>(k, g.ow) >= 0.6;
}
/// Whether conv2d's weight gradient runs the direct kernel (else GEMM).
template <class T> inline bool direct_weight_grad(isa k, conv_geometry const& g) {
  if (g.s != 1 || !direct::dw_direct_width(g.kw)) return false;
  if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
  // Rows that fill under 70 % of the lanes lose to the grouped GEMM (LeNet conv2, 10-wide rows on
  // 16 lanes: 735 us direct, 589 us GEMM on Zen 5).
  return !g.pointwise() && lane_use<T>(k, g.ow) >= 0.7 && g.col_rows() < 256;
}
/// Whether conv2d's input gradient runs the direct kernel (else GEMM + col2im).
template <class T> inline bool direct_input_grad(isa k, conv_geometry const& g) {
  if (g.s != 1 || (g.kh - 1) * g.d < g.p || (g.kw - 1) * g.d < g.p) return false;
  if (auto a = conv_algo_override(); a != conv_algo::automatic) return a == conv_algo::direct;
  return !g.pointwise() && lane_use<T>(k, g.w) >= 0.6 && g.c >= direct::fwd_channels<T>(k, g.w);
}

} // namespace lepton::detail
