#pragma once
/// @file protocol.hpp
/// @brief The evaluator protocol: `detail::evaluator<Node, Backend>` (specialised by each backend for
///        each node type), the `cpu_evaluator` concept that names what the CPU planner calls, and the
///        traits the planner reads.
///
/// A CPU evaluator is built from its node (`evaluator(node const&)`) and is a *loadable* (eval/loops.hpp:
/// `bind(shape)`, `flat_ok()`, `load_flat<V>(i)`, `load_row<V, R>(idx, c)`) plus:
///  - `shape()`: the runtime shape;
///  - `forward(ctx, defer)`: compute every value this node reads that must be materialised;
///  - `reads(begin, end)`: whether evaluating reads memory in [begin, end) (assignment aliasing);
///  - `needs_grad(ctx)`: whether any leaf below wants a gradient (checked once per pass);
///  - `backward(ctx, g)`: push the loadable gradient `g` (shaped like this node) to the children;
///  - `visit_top(f)`: call f on each matmul evaluator this node's fusion group reads directly;
///  - the constants `may_need_grad`, `has_buffer` and `top_gemms`, read through evaluator_traits.
/// Optional members: `lepton_identify(id, ctx)` (its identity, eval/dag.hpp: without it the node's
/// products are never shared), `sink(ctx)` (a leaf's gradient memory, for producers that write it
/// directly), and for producers that compute straight into a destination (`writes_in_place`, today
/// matmul) `set_output`, `run_gemm`, `is_aliased` and `publish`.

#include <concepts>
#include <cstddef>
#include <utility>

#include "../core/backend.hpp"
#include "context.hpp"

namespace lepton::detail {

/// The evaluator of node type `Node` on `Backend`; each backend specialises it per node type (the
/// CPU's in backend/cpu/*.hpp). Evaluators of child nodes default to the CPU backend.
template <class Node, class Backend = cpu_backend> struct evaluator;

/// Where a leaf's gradient goes, for producers (GEMM) that can write it directly.
template <class T> struct grad_sink {
  T* ptr = nullptr;
  bool add = false;
};

/// What the planner (materialise.hpp) knows about an evaluator, read from its protocol constants.
template <class Ev> struct evaluator_traits {
  /// The element type and rank of the value.
  using value_type = typename Ev::value_type;
  static constexpr std::size_t rank = Ev::rank;
  /// Whether some leaf below may receive a gradient (false: the backward pass skips the subtree).
  static constexpr bool may_need_grad = Ev::may_need_grad;
  /// Whether the value is read from a buffer the node owns or refers to (a leaf or a materialised
  /// value) rather than computed by a fused loop.
  static constexpr bool has_buffer = Ev::has_buffer;
  /// The number of matmuls whose output this node's fusion group reads directly (1: the group can
  /// run as that GEMM's epilogue).
  static constexpr std::size_t top_gemms = Ev::top_gemms;
  /// Whether the node computes straight into a destination it is given (`set_output`): a GEMM.
  static constexpr bool writes_in_place = requires { Ev::is_gemm; };
};

/// A type that implements the CPU evaluator protocol (see the file comment).
template <class Ev>
concept cpu_evaluator = requires(Ev& ev, Ev const& cev, eval_context& ctx, void const* p) {
  typename Ev::value_type;
  { Ev::rank } -> std::convertible_to<std::size_t>;
  { Ev::may_need_grad } -> std::convertible_to<bool>;
  { Ev::has_buffer } -> std::convertible_to<bool>;
  { Ev::top_gemms } -> std::convertible_to<std::size_t>;
  cev.shape();
  ev.forward(ctx, p);
  { cev.reads(p, p) } -> std::convertible_to<bool>;
  { cev.needs_grad(ctx) } -> std::convertible_to<bool>;
  ev.bind(cev.shape());
  { cev.flat_ok() } -> std::convertible_to<bool>;
  cev.template load_flat<typename Ev::value_type>(std::size_t{});
};

} // namespace lepton::detail
