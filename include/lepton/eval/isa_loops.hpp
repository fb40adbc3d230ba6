#pragma once
/// @file isa_loops.hpp
/// @brief Runtime ISA dispatch of the fused loops: one copy of the loop drivers per instruction-set
///        level (eval/isa/loops-inl.hpp), and with_loop_isa() to run one level's copy.
///
/// The same scheme as backend/cpu/isa_kernels.hpp (there for GEMM and convolution): the bodies are
/// included once per level inside `namespace lepton::detail::loops::isa_<level>` and, above the
/// build's own level, inside that level's `#pragma GCC target` region. Unlike the kernels, the
/// loops inline code defined outside the region (the evaluators and op functors of every fused
/// expression), which works through core/wide.hpp's value kind: GCC on x86-64 only
/// (LEPTON_HAS_WIDE). Elsewhere (clang, CUDA host passes, other CPUs) the loops are compiled once,
/// for the build's flags, and every level runs that copy.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/isa.hpp"
#include "../core/math.hpp"
#include "../core/parallel.hpp"
#include "../core/shape.hpp"
#include "context.hpp"
#include "loop_support.hpp"
#include "simd.hpp"

namespace lepton::detail::loops {
#if LEPTON_HAS_WIDE
/// The value kind of the loops of a level above the build's: B bytes of T.
template <class T, std::size_t B> using wide_for = wide<T, B>;
#else
template <class T, std::size_t B> using wide_for = simd_t<T>;
#endif
} // namespace lepton::detail::loops

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if LEPTON_ISA_X86 && LEPTON_HAS_WIDE
#define LEPTON_LOOPS_DISPATCH 1
#if LEPTON_ISA_BUILD_LEVEL <= 0
#define LEPTON_ISA_NS isa_sse2
#define LEPTON_ISA_LEVEL 0
#define LEPTON_VBYTES 16
#define LEPTON_ISA_TARGET ""
#include "isa/loops-inl.hpp"
#endif
#if LEPTON_ISA_BUILD_LEVEL <= 1
#define LEPTON_ISA_NS isa_avx2
#define LEPTON_ISA_LEVEL 1
#define LEPTON_VBYTES 32
#define LEPTON_ISA_TARGET LEPTON_ISA_TARGET_AVX2
#include "isa/loops-inl.hpp"
#endif
#define LEPTON_ISA_NS isa_avx512
#define LEPTON_ISA_LEVEL 2
#define LEPTON_VBYTES 64
#define LEPTON_ISA_TARGET LEPTON_ISA_TARGET_AVX512
#include "isa/loops-inl.hpp"
#else
#define LEPTON_LOOPS_DISPATCH 0
#define LEPTON_ISA_NS isa_build
#define LEPTON_ISA_LEVEL LEPTON_ISA_BUILD_LEVEL
#define LEPTON_VBYTES 16
#define LEPTON_ISA_TARGET ""
#include "isa/loops-inl.hpp"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace lepton::detail {

/// @brief Calls `f(K{})` with K the loops' `kernels` struct of ISA level `level` (the build's own
///        copy where the loops are not dispatched, or for a level not compiled) and returns its
///        result.
template <class F> decltype(auto) with_loop_isa(isa level, F&& f) {
#if LEPTON_LOOPS_DISPATCH
  switch (level) {
#if LEPTON_ISA_BUILD_LEVEL <= 0
  case isa::portable: return f(loops::isa_sse2::kernels{});
#endif
#if LEPTON_ISA_BUILD_LEVEL <= 1
  case isa::avx2: return f(loops::isa_avx2::kernels{});
#endif
  case isa::avx512: return f(loops::isa_avx512::kernels{});
  default: break;
  }
#if LEPTON_ISA_BUILD_LEVEL <= 0
  return f(loops::isa_sse2::kernels{});
#elif LEPTON_ISA_BUILD_LEVEL <= 1
  return f(loops::isa_avx2::kernels{});
#else
  return f(loops::isa_avx512::kernels{});
#endif
#else
  (void)level;
  return f(loops::isa_build::kernels{});
#endif
}

} // namespace lepton::detail
