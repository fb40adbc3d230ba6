#pragma once
/// @file isa_kernels.hpp
/// @brief Runtime ISA dispatch of the CPU kernels: one copy of the GEMM and direct convolution
///        kernels per instruction-set level, compiled in this translation unit, and with_isa() to
///        run one level's copy.
///
/// How it works (Highway's "foreach target" and simdjson's target regions are the models): the
/// kernel bodies live in isa/*-inl.hpp, headers without include guards written once against a
/// vector type `vec<T>` of LEPTON_VBYTES bytes. isa/target-inl.hpp includes them inside
/// `namespace lepton::detail::cpu::isa_<level>` and, for the levels above the build's own,
/// inside `#pragma GCC target("avx2,fma,...")` (`#pragma clang attribute push` with clang), so that
/// every function, lambda and template defined there is compiled for that level whatever the
/// user's flags. This header includes target-inl.hpp once per level the build compiles (see
/// lepton::isa_compiled()): sse2 (the build's flags), avx2, avx512 for a plain x86-64 build; only
/// the machine's level for a -march=native one; only the portable level off x86.
/// The caller picks a level once per operation (lepton::active_isa()) and passes it down, so one
/// operation never mixes the blockings of two levels.

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "../../core/config.hpp"
#include "../../core/isa.hpp"
#include "../../core/memory.hpp"
#include "../../core/parallel.hpp"
#include "kernel_types.hpp"

#if !defined(__GNUC__) && !defined(__clang__)
#error "lepton: the CPU kernels need GCC or clang (vector extensions, target regions)"
#endif

// The target-region warnings GCC gives for vector types are about ABI across differently compiled
// functions; every function taking them is internal to one level.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if LEPTON_ISA_X86
#if LEPTON_ISA_BUILD_LEVEL <= 0
#define LEPTON_ISA_NS isa_sse2
#define LEPTON_ISA_LEVEL 0
#define LEPTON_VBYTES 16
#define LEPTON_VREGS 16
#define LEPTON_ISA_TARGET ""
#include "isa/target-inl.hpp"
#endif
#if LEPTON_ISA_BUILD_LEVEL <= 1
#define LEPTON_ISA_NS isa_avx2
#define LEPTON_ISA_LEVEL 1
#define LEPTON_VBYTES 32
#define LEPTON_VREGS 16
#define LEPTON_ISA_TARGET LEPTON_ISA_TARGET_AVX2
#include "isa/target-inl.hpp"
#endif
#define LEPTON_ISA_NS isa_avx512
#define LEPTON_ISA_LEVEL 2
#define LEPTON_VBYTES 64
#define LEPTON_VREGS 32
#define LEPTON_ISA_TARGET LEPTON_ISA_TARGET_AVX512
#include "isa/target-inl.hpp"
#else
#define LEPTON_ISA_NS isa_portable
#define LEPTON_ISA_LEVEL 0
#define LEPTON_VBYTES 16
#if defined(__aarch64__) || defined(_M_ARM64)
#define LEPTON_VREGS 32
#else
#define LEPTON_VREGS 16
#endif
#define LEPTON_ISA_TARGET ""
#include "isa/target-inl.hpp"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace lepton::detail::cpu {

/// @brief Calls `f(K{})` with K the `kernels` struct of ISA level `level` (or of the lowest compiled
///        level if `level` was not compiled) and returns its result.
///
/// **Example**: `with_isa(active_isa(), [&](auto k) { decltype(k)::template gemm_run<float>(g, e); });`
template <class F> decltype(auto) with_isa(isa level, F&& f) {
#if LEPTON_ISA_X86
  switch (level) {
#if LEPTON_ISA_BUILD_LEVEL <= 0
  case isa::portable: return f(isa_sse2::kernels{});
#endif
#if LEPTON_ISA_BUILD_LEVEL <= 1
  case isa::avx2: return f(isa_avx2::kernels{});
#endif
  case isa::avx512: return f(isa_avx512::kernels{});
  default: break;
  }
#if LEPTON_ISA_BUILD_LEVEL <= 0
  return f(isa_sse2::kernels{});
#elif LEPTON_ISA_BUILD_LEVEL <= 1
  return f(isa_avx2::kernels{});
#else
  return f(isa_avx512::kernels{});
#endif
#else
  (void)level;
  return f(isa_portable::kernels{});
#endif
}

} // namespace lepton::detail::cpu
