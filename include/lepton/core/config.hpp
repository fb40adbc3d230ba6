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

/// Forces a lambda's call operator inline; it goes after the parameter list, `[&](auto i)
/// LEPTON_INLINE_LAMBDA { ... }`. The register tiles of the convolution kernels and the loaders of
/// the pooling loops are small lambdas that must all inline, or their accumulators spill.
#if defined(__GNUC__) || defined(__clang__)
#define LEPTON_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LEPTON_INLINE_LAMBDA
#endif

namespace lepton {

/// @brief Largest tensor rank supported by the evaluators (compile-time limit).
inline constexpr std::size_t max_rank = 6;

/// @brief Alignment, in bytes, of every buffer lepton allocates (one cache line; AVX-512 width).
inline constexpr std::size_t buffer_alignment = 64;

} // namespace lepton
