#pragma once
/// @file sequential.hpp
/// @brief `lepton::nn::sequential<L...>`: layers applied in order; parameters named `0.weight`, ...;
///        `sequential<input<...>, L...>` infers the layers' sizes from the input shape.

#include <string>
#include <utility>

#include "../../core/constraints.hpp"
#include "../../expr/node.hpp"
#include "../layer.hpp"
#include "infer.hpp"

namespace lepton::nn {

namespace detail {
// A plain aggregate chain instead of std::tuple: Boost.PFR's field counting of a model holding a
// std::tuple makes GCC 12 crash (an ICE in check_noexcept_r), and an aggregate compiles faster.
template <class... L> struct chain {};
template <class L, class... Rest> struct chain<L, Rest...> {
  L head;
  chain<Rest...> tail;
};
template <std::size_t I, class C> constexpr auto& chain_get(C& c) noexcept {
  if constexpr (I == 0)
    return c.head;
  else
    return chain_get<I - 1>(c.tail);
}
template <class C, class F> void chain_each(C& c, F& f) {
  if constexpr (requires { c.head; }) {
    f(c.head);
    chain_each(c.tail, f);
  }
}

template <class List> struct chain_of;
template <class... R> struct chain_of<type_list<R...>> {
  using type = chain<R...>;
};
template <class C> struct chain_traits;
template <class... L> struct chain_traits<chain<L...>> {
  static constexpr std::size_t size = sizeof...(L);
  static constexpr std::size_t parameter_count = (std::size_t{0} + ... + nn::parameter_count<L>);
};

/// What a sequential holds. Without nn::input first: exactly its layers L... (a spec among them
/// makes the sequential a spec too, resolved layer by layer when an outer sequential resolves it).
template <class... L> struct sequential_layers {
  static_assert(!(is_input<L>::value || ...),
                "lepton: nn::input<...> is the first entry of a sequential, or none");
  using chain_type = chain<L...>;
  using declared = type_list<L...>;
  static constexpr bool has_input = false;
  static constexpr bool unresolved = (unresolved_layer<L> || ...);
};
/// With nn::input_of<T, D...> first: the layers resolved one by one from a (batch, D...) input.
template <class T, std::size_t... D, class... L> struct sequential_layers<input_of<T, D...>, L...> {
  using resolution = resolve_chain<tensor<T, dyn, D...>, type_list<>, type_list<>, L...>;
  using chain_type = typename chain_of<typename resolution::layers>::type;
  using declared = type_list<L...>;
  using input_type = input_of<T, D...>;
  static constexpr bool has_input = true;
  static constexpr bool unresolved = false;
  /// False when a layer did not compile on its input (its error is reported once, at resolution).
  static constexpr bool resolved = !std::is_same_v<typename resolution::output, no_output>;
};
} // namespace detail

template <class... L> struct sequential;

namespace detail {
template <class X, class List> struct resolve_sequential;
template <class X, class... L> struct resolve_sequential<X, type_list<L...>> {
  using type = typename chain_of<typename resolve_chain<X, type_list<>, type_list<>, L...>::layers>::type;
};
template <class C> struct sequential_of_chain;
template <class... R> struct sequential_of_chain<chain<R...>> {
  using type = sequential<R...>;
};
} // namespace detail

/// @brief A chain of layers: `sequential<linear<784, 128>, relu, linear<128, 10>>`.
/// Parameters are named by position like PyTorch's `Sequential` (`0.weight`, `2.bias`).
///
/// **Size inference.** Started with the per-sample input shape, `sequential<input<1, 28, 28>,
/// conv2d<32, 3>, relu, max_pool2d<2>, flatten, linear<10>>`, it resolves every spec (a layer with
/// a size left to `infer`: `linear<Out>`, `conv2d<OutC, K>`, `batch_norm<>`) against the output
/// shape of the layer before it, at compile time, and holds the concrete layers (`conv2d<1, 32, 3,
/// 3>`, ..., `linear<5408, 10>`): get<I>(), the parameter names (`0.weight` is the first real
/// layer's: the input is not a layer) and the parameter count are those of the same sequential
/// written with explicit sizes, so checkpoints move between the two. Such a model also checks
/// that its input's static shape is the declared one. Explicit layers keep their own compile-time
/// checks (a mismatch fails where the sizes stop fitting, with the layer's usual first error).
/// Without `input<...>`, a sequential with a spec in it holds no parameters and cannot be called,
/// but may be nested in one that has an input.
template <class... L> struct sequential {
  /// What it holds: the (resolved) layer chain, the declared layers and input, if any.
  using lepton_layers = detail::sequential_layers<L...>;
  typename lepton_layers::chain_type layers;

  static constexpr char const* lepton_kind = "sequential"; ///< its name in nn::summary
  /// True (a spec) when it has a layer with a size to infer and no input<...> to infer it from.
  static constexpr bool lepton_unresolved = lepton_layers::unresolved;
  /// The number of layers held (the input<...> is not one).
  static constexpr std::size_t size = detail::chain_traits<typename lepton_layers::chain_type>::size;
  /// The concrete sequential for an input of tensor type X (for a nested spec sequential).
  template <class X> using lepton_resolve = typename detail::sequential_of_chain<
      typename detail::resolve_sequential<X, typename lepton_layers::declared>::type>::type;

  template <std::size_t I> auto& get() noexcept { return detail::chain_get<I>(layers); }
  template <std::size_t I> auto const& get() const noexcept { return detail::chain_get<I>(layers); }
  /// The type of layer I (after resolution): `decltype(net)::layer_type<7>` is `linear<1600, 64>`.
  template <std::size_t I> using layer_type =
      std::remove_cvref_t<decltype(detail::chain_get<I>(std::declval<sequential&>().layers))>;

  template <operand X> auto operator()(X&& x) const {
    static_assert(!lepton_unresolved,
                  "lepton: this sequential has layers with sizes to infer (linear<Out>, conv2d<OutC, K>, "
                  "batch_norm<>): start it with nn::input<...> (one sample's shape) or write the sizes");
    if constexpr (lepton_layers::has_input) {
      using declared = decltype(prepend_batch(typename lepton_layers::input_type::sample_dims{}));
      using actual = typename lepton::detail::expr_of<X>::static_dims;
      constexpr bool ok = model_input_shapes<declared, actual>::value;
      if constexpr (!ok) // the first error line names both shapes
        (void)sizeof(diagnostic::model_input_shape_differs<typename diagnostic::shape_of<declared>::type,
                                                           typename diagnostic::shape_of<actual>::type>);
      static_assert(model_input_shapes<declared, actual>::value,
                    "lepton: sequential<nn::input<...>, ...>: the input's shape is not the declared one");
      // A layer that failed while the sizes were resolved has reported its error: not twice.
      if constexpr (ok && lepton_layers::resolved) return apply<0>(std::forward<X>(x));
    } else if constexpr (!lepton_unresolved) {
      return apply<0>(std::forward<X>(x));
    }
  }

  template <class F> void lepton_for_each_parameter(F&& f) {
    std::size_t i = 0;
    auto each = [&](auto& l) { f(std::to_string(i++), l); };
    detail::chain_each(layers, each);
  }
  static constexpr std::size_t lepton_parameter_count =
      detail::chain_traits<typename lepton_layers::chain_type>::parameter_count;

private:
  template <std::size_t... D> static auto prepend_batch(dims<D...>) -> dims<dyn, D...>;
  template <std::size_t I, class X> auto apply(X&& x) const {
    if constexpr (I == size)
      return lepton::detail::as_expr(std::forward<X>(x));
    else
      return apply<I + 1>(get<I>()(std::forward<X>(x)));
  }
};

} // namespace lepton::nn
