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
/// The kernels exist once per ISA level (isa_kernels.hpp, isa/gemm-inl.hpp): gemm() runs those of
/// lepton::active_isa(), chosen at run time from CPUID (or LEPTON_ISA). The micro-tile follows the
/// level: 14 x 32 with AVX-512, 6 x 16 with AVX2, 6 x 8 with SSE2.
///
/// Determinism: every C element is one FMA chain over k in k order per k block, then the same
/// alpha/beta formula, whatever the thread count and whichever kernel instance (full tile or edge
/// tile) computes it: the k blocking depends only on k, and each thread owns a disjoint rectangle of
/// whole tiles of C. Results are therefore bitwise identical for any `lepton::num_threads()`, and
/// between the AVX2 and AVX-512 levels (the same FMA chain, the same k blocks); the SSE2 level has no
/// FMA and rounds the products separately.

#include <cassert>
#include <cstddef>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../core/isa.hpp"
#include "isa_kernels.hpp"
#include "kernel_types.hpp"

namespace lepton::detail::cpu {

namespace gemm_impl {

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
  if (gemm_bias_act<T> const* ep = g.bias_act)
    for (std::size_t i = 0; i < g.m; ++i) {
      T const* ci = g.c + i * g.ldc;
      T* yi = ep->out ? ep->out + i * ep->ldo : g.c + i * g.ldc;
      for (std::size_t j = 0; j < g.n; ++j) {
        T const y = ci[j] + (ep->bias ? ep->bias[j] : T(0));
        yi[j] = ep->act == gemm_activation::relu && y < T(0) ? T(0) : y;
      }
    }
}

/// The type-erased body of gemm(): the kernels of the active ISA level.
template <class T> void run(gemm_problem<T> const& g, epilogue_ref epi) {
  with_isa(active_isa(), [&](auto k) { decltype(k)::template gemm_run<T>(g, epi); });
}

} // namespace gemm_impl

/// @brief Columns of the GEMM's register tile (nr) for T at the active ISA level: a B of exactly nr
///        columns, 64-byte aligned with ldb == nr, is read without packing.
template <class T> std::size_t gemm_nr() {
  return with_isa(active_isa(), [](auto k) { return decltype(k)::template gemm_nr<T>; });
}

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

} // namespace lepton::detail::cpu
