#pragma once
/// @file backend.hpp
/// @brief Memory spaces, backends and the two entry points through which every evaluation passes.
///
/// Where an expression's result goes decides who computes it: a destination's `memory_space`
/// (`lepton::host_space` for lepton::tensor, tensor_view and param) names a backend through
/// `backend_for`, and `detail::runner<Backend, E>` of that backend evaluates the expression. The
/// CPU backend specialises the runner in backend/cpu/run.hpp (included by <lepton/lepton.hpp> and
/// <lepton/backend/cpu.hpp>); the device backend (issue P14) adds `device_space` and its own runner.
/// Nothing below backend/ refers to a backend's code: expr/ holds nodes and op rules only.

#include <type_traits>

namespace lepton {

/// @brief The memory space of host (CPU-addressable) memory: lepton::tensor, tensor_view, param.
struct host_space {};

/// @brief The CPU backend: fused SIMD loops, the packed GEMM and the direct convolution kernels
///        (backend/cpu/), run on the calling thread and lepton's thread pool.
struct cpu_backend {};

/// @brief The backend that evaluates expressions whose result lives in memory space `Space`.
template <class Space> struct backend_for;
template <> struct backend_for<host_space> {
  using type = cpu_backend;
};
/// @brief `backend_for<Space>::type`.
template <class Space> using backend_for_t = typename backend_for<Space>::type;

/// @brief The memory space of a tensor-like type or expression: its `memory_space` member, else host.
template <class X> struct memory_space_of {
  using type = host_space;
};
template <class X>
  requires requires { typename X::memory_space; }
struct memory_space_of<X> {
  using type = typename X::memory_space;
};
/// @brief `memory_space_of<X>::type`.
template <class X> using memory_space_of_t = typename memory_space_of<std::remove_cvref_t<X>>::type;

namespace detail {
template <class...> inline constexpr bool backend_not_included = false;

/// Evaluation entry points of `Backend` for expression type `E`: `assign(dst, e)`, `value(e, correct)`,
/// `backward(loss, opt)` and `grad(f, wrt...)`. Each backend specialises it; using the primary
/// template means the backend's headers were not included (a compile error, never a link error).
template <class Backend, class E> struct runner {
  static_assert(
      backend_not_included<Backend, E>,
      "lepton: evaluating an expression needs its backend's evaluators: include <lepton/lepton.hpp> "
      "(or <lepton/backend/cpu.hpp> for the CPU backend alone)");
};
} // namespace detail

} // namespace lepton
