#pragma once
/// @file infer.hpp
/// @brief Compile-time size inference for layers: the `nn::infer` sentinel, `nn::input<...>` (a
///        model's per-sample input shape) and the resolution of a layer spec against the shape of
///        its input, as `nn::sequential<nn::input<1, 28, 28>, nn::conv2d<32, 3>, ...>` does.
///
/// **Specs.** A layer written with a size left to infer (`linear<64>`, `conv2d<32, 3>`,
/// `batch_norm<>`) is a *spec*: it holds no parameters and cannot be called. It has a member
/// `static constexpr bool lepton_unresolved = true` and a member alias template
/// `template <class X> using lepton_resolve = ...` naming the concrete layer for an input of the
/// tensor type X (`tensor<T, dyn, C, H, W>`): `linear<64>` resolves to `linear<In, 64>` with In the
/// input's feature dimension. Every other layer resolves to itself.
///
/// **Resolution of a chain** (detail::resolve_chain): each layer is resolved against the output
/// of the previous one, whose static shape is the type of `layer(x)` (the expression the layer
/// returns carries it), so the sizes come from the same rules that check them. An explicit layer
/// whose sizes do not fit its input fails there with its usual first error line
/// (`linear_input_features<...>`, `conv2d_input_channels<...>`).

#include <cstddef>
#include <type_traits>

#include "../../core/shape.hpp"
#include "../../core/tensor.hpp"
#include "../../expr/node.hpp"

namespace lepton::nn {

/// @brief The sentinel for a layer size to infer from the input: `linear<infer, 64>` (spelled
///        `linear<64>`), `conv2d<infer, 32, 3, 3, 1, 1>` (spelled `conv2d<32, 3>` without stride
///        and padding), `batch_norm<infer>` (spelled `batch_norm<>`). Distinct from `dyn`.
inline constexpr std::size_t infer = dyn - 1;

/// @brief A model's input, one sample's shape (the batch dimension is `dyn`), with element type T:
///        the first "layer" of `nn::sequential<nn::input_of<double, 4>, nn::linear<8, infer, double>>`.
/// @tparam T  the element type of the input   @tparam D  per-sample dimensions, e.g. 1, 28, 28
template <class T, std::size_t... D> struct input_of {
  using value_type = T;
  /// The per-sample dimensions.
  using sample_dims = dims<D...>;
  /// The tensor type of a batch: (batch, D...).
  using batch_type = tensor<T, dyn, D...>;
};

/// @brief `input_of<float, D...>`: **Example**: `lepton::nn::sequential<lepton::nn::input<1, 28, 28>,
///        lepton::nn::conv2d<32, 3>, lepton::nn::relu, lepton::nn::flatten, lepton::nn::linear<10>> net;`
template <std::size_t... D> using input = input_of<float, D...>;

/// @brief Satisfied by a layer spec that still has a size to infer (it holds no parameters).
template <class L>
concept unresolved_layer = requires { requires bool(std::remove_cvref_t<L>::lepton_unresolved); };

namespace detail {
template <class T> inline constexpr bool always_false = false;

template <class T> struct is_input : std::false_type {};
template <class T, std::size_t... D> struct is_input<input_of<T, D...>> : std::true_type {};

template <class... T> struct type_list {};

/// What follows a layer that did not compile (its error is the one to read): the layers after it
/// are neither called nor resolved, so that the first error stays the only one.
struct no_output {};

/// The inferred size read from dimension `Axis` of the input X; when the input's rank is not
/// `Rank` (or at least `Rank` with AtLeast), `Fallback`, so that the concrete layer's own rank
/// check reports the misuse.
template <class X, std::size_t Axis, std::size_t Rank, bool AtLeast, std::size_t Fallback>
constexpr std::size_t inferred_dim() {
  using D = typename X::static_dims;
  if constexpr (AtLeast ? D::rank < Rank : D::rank != Rank) {
    return Fallback;
  } else {
    static_assert(
        D::values[Axis] != dyn,
        "lepton: a layer size to infer (nn::infer) needs a static input dimension; this one is dyn");
    return D::values[Axis];
  }
}

template <class L, class X> struct resolve_one {
  using type = L;
};
template <unresolved_layer L, class X> struct resolve_one<L, X> {
  using type = typename L::template lepton_resolve<X>;
};
template <unresolved_layer L> struct resolve_one<L, no_output> {
  using type = L;
};

/// The batch tensor type with the static shape and element type of expression R, or no_output.
template <class R, bool = expression<R>> struct output_tensor {
  using type = no_output;
};
template <class R> struct output_tensor<R, true> {
  using type = typename lepton::detail::tensor_of<typename R::value_type, typename R::static_dims>::type;
};
template <class L, class X> struct layer_output {
  using type = typename output_tensor<decltype(std::declval<L const&>()(std::declval<X const&>()))>::type;
};
template <class L> struct layer_output<L, no_output> {
  using type = no_output;
};

/// Resolves layers L... in order from an input of tensor type X: `layers` is a type_list of the
/// concrete layers, `outputs` the type_list of their output tensor types, `output` the last one.
template <class X, class Done, class Outs, class... L> struct resolve_chain;
template <class X, class... R, class... O> struct resolve_chain<X, type_list<R...>, type_list<O...>> {
  using layers = type_list<R...>;
  using outputs = type_list<O...>;
  using output = X;
};
template <class X, class... R, class... O, class L, class... Rest>
struct resolve_chain<X, type_list<R...>, type_list<O...>, L, Rest...>
    : resolve_chain<typename layer_output<typename resolve_one<L, X>::type, X>::type,
                    type_list<R..., typename resolve_one<L, X>::type>,
                    type_list<O..., typename layer_output<typename resolve_one<L, X>::type, X>::type>,
                    Rest...> {};
} // namespace detail

/// @brief The concrete layer a layer (or spec) L becomes for an input of tensor type X: a spec's
///        resolution, or L itself. **Example**:
///        `static_assert(std::is_same_v<lepton::nn::resolve_t<lepton::nn::linear<10>,
///        lepton::tensor<float, lepton::dyn, 64>>, lepton::nn::linear<64, 10>>);`
template <class L, class X> using resolve_t = typename detail::resolve_one<L, X>::type;

} // namespace lepton::nn
