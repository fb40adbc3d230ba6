// No include guard: included once per compiled ISA level by backend/cpu/isa_kernels.hpp, with
// LEPTON_ISA_NS, LEPTON_ISA_LEVEL, LEPTON_VBYTES, LEPTON_VREGS and LEPTON_ISA_TARGET (the
// `#pragma GCC target` string; empty for the build's own level) defined; undefines them at the end.
/// @file target-inl.hpp
/// @brief One ISA level's copy of the dispatched kernels: opens the level's target region and
///        namespace, includes the kernel bodies, and closes both.
///
/// Everything the kernels need from the standard library, xsimd or lepton is included before (by
/// isa_kernels.hpp): a header first included inside a target region would be compiled for it.

#if LEPTON_ISA_LEVEL > LEPTON_ISA_BUILD_LEVEL
#if defined(__clang__)
LEPTON_ISA_CLANG_TARGET(LEPTON_ISA_TARGET)
#else
#pragma GCC push_options
LEPTON_ISA_GCC_TARGET(LEPTON_ISA_TARGET)
#endif
#endif

namespace lepton::detail::cpu::LEPTON_ISA_NS {

#include "vec-inl.hpp"

#include "gemm-inl.hpp"

#include "conv-inl.hpp"

/// @brief This level's entry points, for isa_kernels.hpp's with_isa(): `f(kernels{})` reaches the
///        level's functions through the type of its argument.
struct kernels {
  static constexpr ::lepton::isa level = LEPTON_ISA_NS::level;
  template <class T> static constexpr std::size_t lanes = vec<T>::size;
  template <class T> static void gemm_run(gemm_impl::gemm_problem<T> const& g, gemm_impl::epilogue_ref epi) {
    LEPTON_ISA_NS::run<T>(g, epi);
  }
  template <class T> static constexpr std::size_t gemm_nr = gemm_blocking<T>::nr;
  template <class T> static std::size_t fwd_channels(std::size_t ow) { return direct::fwd_channels<T>(ow); }
  template <class T> static void fwd_image(::lepton::detail::direct::planes<T> in, std::size_t kh,
                                           std::size_t kw, std::size_t d, T const* wr, std::size_t co_n,
                                           std::size_t co_pad, T const* bias, T* out, std::size_t oh,
                                           std::size_t ow, T* spare) {
    direct::fwd_image_any<T>(in, kh, kw, d, wr, co_n, co_pad, bias, out, oh, ow, spare);
  }
  template <class T> static void dw_images(T const* dy, std::size_t o_n,
                                           ::lepton::detail::direct::planes<T> in, std::size_t in_stride,
                                           std::size_t count, std::size_t kh, std::size_t kw, std::size_t d,
                                           std::size_t oh, std::size_t ow, T const* zeros, T* dw) {
    direct::dw_images_any<T>(dy, o_n, in, in_stride, count, kh, kw, d, oh, ow, zeros, dw);
  }
};

} // namespace lepton::detail::cpu::LEPTON_ISA_NS

#if LEPTON_ISA_LEVEL > LEPTON_ISA_BUILD_LEVEL
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#undef LEPTON_ISA_NS
#undef LEPTON_ISA_LEVEL
#undef LEPTON_VBYTES
#undef LEPTON_VREGS
#undef LEPTON_ISA_TARGET
