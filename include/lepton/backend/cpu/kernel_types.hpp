#pragma once
/// @file kernel_types.hpp
/// @brief The types shared by every ISA level's copy of the CPU kernels (isa_kernels.hpp): GEMM
///        epilogues and problem descriptions, packing buffers, convolution input planes.

#include <cstddef>

#include "../../core/memory.hpp"

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

namespace gemm_impl {

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

} // namespace gemm_impl

} // namespace lepton::detail::cpu

namespace lepton::detail::direct {

/// Input of a direct convolution: `ci` planes of `plane` elements, rows of `ld` elements (padded).
template <class T> struct planes {
  T const* p;
  std::size_t ci, plane, ld;
};

/// Whether the direct dW kernel is compiled for kernel width kw: 3 and 5, the widths of stride-1
/// convolutions in practice (each width is one more set of register tiles per ISA level, which
/// costs compile time); other widths take the GEMM path.
constexpr bool dw_direct_width(std::size_t kw) noexcept { return kw == 3 || kw == 5; }

} // namespace lepton::detail::direct
