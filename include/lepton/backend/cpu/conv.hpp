#pragma once
/// @file conv.hpp
/// @brief The CPU evaluator of conv2d (expr/conv.hpp): forward pass, backward rule and the
///        bookkeeping around the kernels of conv_kernels.hpp.
///
/// **conv2d** runs as im2col + lepton's packed GEMM, one image at a time: for image n,
/// `col = im2col(x[n])` is (C*KH*KW, OH*OW) and `y[n] (O, OH*OW) = W (O, C*KH*KW) x col`, which is
/// already NCHW; the bias is added in the GEMM's epilogue while each block is in cache. Small output
/// planes (under conv_group_cols elements) run a group of images per GEMM instead, their columns
/// side by side, and copy the result to NCHW. A 1x1,
/// stride-1, unpadded convolution reads x[n] directly as `col`. Images are spread over the thread
/// pool; each thread owns one col buffer from the arena. The backward pass computes, per image (per
/// group of images on small planes, their dY gathered side by side),
/// `dcol = W^T dy[n]` followed by col2im (dx) and `dW += dy[n] col^T` (col is recomputed, which costs
/// less than storing it for the whole batch). Partial dW/db sums are kept per fixed chunk of images
/// and added in chunk order, so results do not depend on the number of threads.
///
/// Stride-1 convolutions whose rows fill the vector lanes run the direct kernels instead, for the
/// forward pass and each gradient separately (see direct_forward in conv_kernels.hpp).

#include <algorithm>
#include <cstddef>

#include "../../core/math.hpp"
#include "../../core/parallel.hpp"
#include "../../eval/materialise.hpp"
#include "../../eval/protocol.hpp"
#include "../../eval/simd.hpp"
#include "../../expr/conv.hpp"
#include "conv_kernels.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "step.hpp"

namespace lepton::detail {

/// Number of fixed image chunks the backward passes accumulate partial sums over (independent of
/// the thread count, so that results are too).
inline constexpr std::size_t conv_grad_chunks = 16;

/// The im2col + GEMM paths multiply the columns of several images at once when an output plane is
/// small: the images of a group lie side by side in col (one GEMM of N = images x OH*OW columns
/// instead of one per image; a 4x4 plane alone filled half of the AVX-512 micro-kernel's 32 columns
/// and repacked W for every 16 columns). A group holds at least this many columns, if the images
/// are there.
inline constexpr std::size_t conv_group_cols = 256;
/// Images per GEMM group for output planes of `ohw` elements (1: one image at a time).
inline std::size_t conv_group_images(std::size_t ohw) {
  return ohw == 0 || ohw >= conv_group_cols ? 1 : (conv_group_cols + ohw - 1) / ohw;
}

/// The evaluator of conv2d's bias operand; without a bias, a stand-in that reads nothing and needs
/// no gradient.
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
    isa const lvl = active_isa(); // one ISA level for the whole evaluation (tile sizes follow it)
    if (direct_forward<T>(lvl, g)) {
      // Weights as wr[(c, u, v)][o] (o fastest, padded with zeros to whole tiles), bias padded too.
      std::size_t const ob = direct::fwd_channels<T>(lvl, g.ow), co_pad = (oc + ob - 1) / ob * ob;
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
          direct::fwd_image_any(lvl, in, g.kh, g.kw, g.d, wr, oc, co_pad, br, o + i * oc * ohw, g.oh, g.ow,
                                spare);
        }
      });
      this->out = view_ev<T, 4>(o, shp);
      return;
    }
    // Groups of images per GEMM (conv_group_images): a group's output (oc, nb * ohw) goes to `tmp`
    // and is copied to the images' planes (the bias added on the way); each output element is the
    // same FMA chain as one image at a time. A 1x1 convolution keeps reading x[n] in place.
    std::size_t const per_max = (n + chunks - 1) / chunks;
    std::size_t const nb_max = g.pointwise() ? 1 : std::min(per_max, conv_group_images(ohw));
    std::size_t const col_len = g.pointwise() ? 0 : k * nb_max * ohw,
                      tmp_len = nb_max > 1 ? oc * nb_max * ohw : 0;
    T* col = col_len ? ctx.alloc<T>(chunks * (col_len + tmp_len)) : nullptr;
    parallel_for(chunks, [&](std::size_t c) {
      T* mycol = col ? col + c * (col_len + tmp_len) : nullptr;
      std::size_t const i1 = n * (c + 1) / chunks;
      for (std::size_t i = n * c / chunks; i < i1;) {
        if (std::size_t const nb = std::min(nb_max, i1 - i); nb > 1) {
          std::size_t const ld = nb * ohw;
          T* tmp = mycol + col_len;
          for (std::size_t j = 0; j < nb; ++j) im2col(xv.ptr + (i + j) * xsz, g, mycol + j * ohw, ld);
          cpu::gemm<T>(false, false, oc, ld, k, T(1), wp, k, mycol, ld, T(0), tmp, ld);
          for (std::size_t j = 0; j < nb; ++j)
            for (std::size_t r = 0; r < oc; ++r) {
              T const* src = tmp + r * ld + j * ohw;
              T* dst = o + ((i + j) * oc + r) * ohw;
              if constexpr (has_bias) {
                T const bv = bp[r];
                for (std::size_t q = 0; q < ohw; ++q) dst[q] = src[q] + bv;
              } else {
                std::copy_n(src, ohw, dst);
              }
            }
          i += nb;
          continue;
        }
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
        ++i;
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
      bool const pw = g.pointwise();
      isa const lvl = active_isa(); // one ISA level for the whole evaluation (tile sizes follow it)
      bool const dw_direct = gw && direct_weight_grad<T>(lvl, g),
                 dx_direct = gx && direct_input_grad<T>(lvl, g);
      bool const dw_gemm = gw && !dw_direct, dx_gemm = gx && !dx_direct;
      // The GEMM paths multiply groups of images (conv_group_images) inside a chunk; with small
      // planes the chunks are fewer, so that a chunk holds a whole group (the chunk count is still a
      // function of the shape alone, so results do not depend on the thread count).
      std::size_t const group = (dw_gemm || dx_gemm) && !pw ? conv_group_images(ohw) : 1;
      std::size_t const chunks = std::max<std::size_t>(1, std::min({n, conv_grad_chunks, n / group}));
      T const* wp = wv.ptr;

      // Scratch, per chunk: the padded input (direct dW), the padded dY and a spare output tile
      // (direct dX), col and dcol (GEMM paths). Partial dW and db sums per chunk.
      std::size_t const hp = g.h + 2 * g.p, wdp = g.w + 2 * g.p;
      std::size_t const qh = dx_direct ? (g.kh - 1) * g.d - g.p : 0,
                        qw = dx_direct ? (g.kw - 1) * g.d - g.p : 0;
      std::size_t const gh = g.oh + 2 * qh, gwd = g.ow + 2 * qw;
      std::size_t const xob = dx_direct ? direct::fwd_channels<T>(lvl, g.w) : 0,
                        c_pad = dx_direct ? (g.c + xob - 1) / xob * xob : 0;
      std::size_t const per_max = (n + chunks - 1) / chunks; // images in the largest chunk
      std::size_t const nb_max = std::min(per_max, group);   // images per GEMM group
      std::size_t const pad_x = dw_direct && g.p ? per_max * g.c * hp * wdp : 0;
      std::size_t const pad_g = dx_direct && (qh || qw) ? oc * gh * gwd : 0;
      std::size_t const spare = dx_direct ? xob * g.in_plane() : 0;
      std::size_t const col_len = dw_gemm && !pw ? k * nb_max * ohw : 0,
                        dcol_len = dx_gemm && !pw ? k * nb_max * ohw : 0;
      // dY of a group side by side (oc, nb * ohw), for the grouped GEMMs.
      std::size_t const dyg_len = nb_max > 1 ? oc * nb_max * ohw : 0;
      std::size_t const per_chunk = pad_x + pad_g + spare + col_len + dcol_len + dyg_len;
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
        T* dcol = col + col_len;
        T* dyg = dcol + dcol_len;
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
          direct::dw_images_any(lvl, gv.ptr + i0 * oc * ohw, oc, in, stride, i1 - i0, g.kh, g.kw, g.d, g.oh,
                                g.ow, zeros, dwp + c * oc * k);
        }
        // Groups of nb images (one image when the planes are large or the kernel is 1x1): dY of the
        // group side by side in dyg (one image's dY is read in place), its im2col columns likewise.
        for (std::size_t i = i0; i < i1;) {
          std::size_t const nb = std::min(nb_max, i1 - i), ld = nb * ohw;
          T const* dyb = gv.ptr + i * oc * ohw;
          if (nb > 1 && (dw_gemm || dx_gemm)) {
            for (std::size_t j = 0; j < nb; ++j)
              for (std::size_t r = 0; r < oc; ++r)
                std::copy_n(gv.ptr + ((i + j) * oc + r) * ohw, ohw, dyg + r * ld + j * ohw);
            dyb = dyg;
          }
          if (dw_gemm) {
            T const* cm = xv.ptr + i * xsz; // a 1x1 convolution reads x in place
            if (!pw) {
              for (std::size_t j = 0; j < nb; ++j) im2col(xv.ptr + (i + j) * xsz, g, col + j * ohw, ld);
              cm = col;
            }
            // dW (oc, k) += dy (oc, nb ohw) x col^T (nb ohw, k)
            cpu::gemm<T>(false, true, oc, k, ld, T(1), dyb, ld, cm, ld, T(1), dwp + c * oc * k, k);
          }
          if (dx_gemm && !pw) // dcol (k, nb ohw) = W^T (k, oc) x dy (oc, nb ohw)
            cpu::gemm<T>(true, false, k, ld, oc, T(1), wp, k, dyb, ld, T(0), dcol, ld);
          for (std::size_t j = 0; j < nb; ++j) {
            T const* dyi = gv.ptr + (i + j) * oc * ohw;
            if (gb) {
              T* db = dbp + c * oc;
              for (std::size_t r = 0; r < oc; ++r) db[r] += plane_sum(dyi + r * ohw, ohw);
            }
            if (gx) {
              T* dxi = dx + (i + j) * xsz;
              if (dx_direct) {
                direct_input_grad_image(lvl, g, oc, dyi, qh, qw, gh, gwd, padg, wr, c_pad, dxi, spr);
              } else if (pw) { // dx (c, hw) = W^T (c, oc) x dy (oc, hw)
                cpu::gemm<T>(true, false, k, ohw, oc, T(1), wp, k, dyi, ohw, T(0), dxi, ohw);
              } else {
                std::fill_n(dxi, xsz, T(0));
                col2im_add(dcol + j * ohw, g, dxi, ld);
              }
            }
          }
          i += nb;
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

private:
  /// dx of one image by the direct kernel: the forward kernel on dY (zero-padded by qh, qw into
  /// `padg` when needed) with the flipped, transposed weights `wr` (rows padded to c_pad).
  static void direct_input_grad_image(isa lvl, conv_geometry const& g, std::size_t oc, T const* dyi,
                                      std::size_t qh, std::size_t qw, std::size_t gh, std::size_t gwd,
                                      T* padg, T const* wr, std::size_t c_pad, T* dxi, T* spare) {
    direct::planes<T> in{dyi, oc, g.out_plane(), g.ow};
    if (qh || qw) {
      direct::pad_planes(dyi, oc, g.oh, g.ow, qh, qw, padg);
      in = {padg, oc, gh * gwd, gwd};
    }
    direct::fwd_image_any(lvl, in, g.kh, g.kw, g.d, wr, g.c, c_pad, static_cast<T const*>(nullptr), dxi, g.h,
                          g.w, spare);
  }
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

} // namespace lepton::detail
