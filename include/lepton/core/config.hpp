#pragma once
/// @file config.hpp
/// @brief Version, portability macros and compile-time configuration of lepton.

#include <cstddef>

#define LEPTON_VERSION_MAJOR 0
#define LEPTON_VERSION_MINOR 1
#define LEPTON_VERSION_PATCH 0

#if defined(__CUDACC__)
/// Marks functions usable from host and device code (op functors).
#define LEPTON_HD __host__ __device__
#else
#define LEPTON_HD
#endif

#if defined(_MSC_VER)
#define LEPTON_ALWAYS_INLINE __forceinline
/// Keeps a function out of line: the evaluators of materialised nodes, which appear once per use of
/// a value in the evaluator tree (inlining every copy makes code size exponential in the depth).
#define LEPTON_NOINLINE __declspec(noinline)
#else
#define LEPTON_ALWAYS_INLINE inline __attribute__((always_inline))
#define LEPTON_NOINLINE __attribute__((noinline))
#endif

namespace lepton {

/// @brief Largest tensor rank supported by the evaluators (compile-time limit).
inline constexpr std::size_t max_rank = 6;

/// @brief Alignment, in bytes, of every buffer lepton allocates (one cache line; AVX-512 width).
inline constexpr std::size_t buffer_alignment = 64;

} // namespace lepton
