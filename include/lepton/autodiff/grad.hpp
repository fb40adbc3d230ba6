#pragma once
/// @file grad.hpp
/// @brief Reverse-mode differentiation generated from the expression type: `backward(loss)` for
///        training (gradients into every parameter's `grad`) and `grad(f, wrt...)` for explicit
///        gradients of any tensors.
///
/// There is no tape: the evaluator tree of the loss expression *is* the graph. `backward` runs the
/// forward pass keeping every materialised value, then walks the tree once from the root, each node
/// applying its backward rule (the op functor's, or its evaluator's). This header is backend-neutral:
/// the backend of the loss's memory space runs the pass (core/backend.hpp; the CPU's in
/// backend/cpu/run.hpp). Elementwise chains are
/// differentiated as fused loops (their inputs are recomputed on the fly instead of stored),
/// matmul's rule is two GEMMs writing leaf gradients directly, and subtrees with nothing to
/// differentiate (the data batch, frozen parameters, constants) are skipped: no work at all.
/// All memory comes from the thread's arena, so after the first call with a given batch size a
/// call performs no heap allocation.

#include <tuple>

#include "../core/backend.hpp"
#include "../expr/evaluate.hpp"
#include "../expr/node.hpp"

namespace lepton {

/// @brief Options of lepton::backward.
struct backward_options {
  /// Add to the parameters' existing gradients instead of overwriting them (gradient accumulation
  /// over micro-batches).
  bool accumulate = false;
  /// If set, cross_entropy with integer labels adds its count of correct predictions here.
  std::size_t* correct = nullptr;
};

/// @brief Computes a scalar loss and writes d(loss)/d(param) into the `grad` of every non-frozen
///        parameter the loss reads. Returns the loss value.
///
/// A parameter's first contribution in a call overwrites its gradient (so no zeroing pass is
/// needed), later contributions (a parameter used twice) add; with `{.accumulate = true}` every
/// contribution adds. Plain tensors (the data) get no gradient and cost no backward work.
/// **Example**:
/// ```
/// float l = lepton::backward(lepton::loss::cross_entropy(model(x), y));
/// opt.step();
/// ```
template <expression E> auto backward(E const& loss, backward_options opt = {}) {
  static_assert(E::rank == 0,
                "lepton: backward needs a scalar (rank-0) loss; reduce it with lepton::sum or lepton::mean");
  return detail::runner<backend_for_t<memory_space_of_t<E>>, E>::backward(loss, opt);
}

namespace detail {
template <class W> auto zero_like(W const& w) {
  if constexpr (parameter<W>)
    return typename W::tensor_type(w.value.shape());
  else {
    using D = std::remove_cvref_t<W>;
    using T = typename D::value_type;
    return typename tensor_of<T, typename D::static_dims>::type(w.shape());
  }
}
} // namespace detail

/// @brief Gradients of a scalar expression with respect to the given tensors or parameters,
///        returned as new tensors (in order) — `param::grad` is not touched.
/// **Example**: `auto [gw, gb] = lepton::grad(lepton::sum(y * y), w, b);`
template <expression E, class... W>
  requires((dense<std::remove_cvref_t<W>> || parameter<W>) && ...)
auto grad(E const& f, W const&... wrt) {
  static_assert(
      E::rank == 0,
      "lepton: grad needs a scalar (rank-0) expression; reduce it with lepton::sum or lepton::mean");
  static_assert(sizeof...(W) > 0,
                "lepton: grad(f, wrt...) needs at least one tensor to differentiate against");
  auto result = std::make_tuple(detail::zero_like(wrt)...);
  detail::runner<backend_for_t<memory_space_of_t<E>>, E>::grad(f, result, wrt...);
  return result;
}

} // namespace lepton
