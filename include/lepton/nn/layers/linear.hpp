#pragma once
/// @file linear.hpp
/// @brief `lepton::nn::linear<In, Out>`: y = x W + b; `linear<Out>` infers In inside a sequential.

#include <array>

#include "../../backend/cpu/linalg.hpp"
#include "../layer.hpp"
#include "infer.hpp"

namespace lepton::nn {

/// @brief Fully connected layer: (batch, In) -> (batch, Out), y = x W + b.
///
/// The weight is stored (In, Out) so the forward pass is a GEMM without transposes (PyTorch's
/// `nn.Linear` stores (Out, In): transpose when moving weights between the two). The bias add and
/// any activation applied to the result run as the GEMM's epilogue.
/// @tparam In  input features  @tparam Out output features  @tparam T float or double
/// With one size, `linear<Out>` (or `linear<infer, Out>`), it is a spec like PyTorch's
/// `LazyLinear`: In is inferred from the input inside `sequential<input<...>, ...>`.
/// **Example**: `lepton::nn::linear<784, 256> fc;  auto h = lepton::relu(fc(x)); // x: (batch, 784)`
template <std::size_t In, std::size_t Out = infer, class T = float> struct linear {
  param<T, In, Out> weight; ///< (In, Out)
  param<T, Out> bias;       ///< (Out)
  static constexpr std::array<char const*, 2> lepton_names{"weight", "bias"};
  static constexpr char const* lepton_kind = "linear"; ///< its name in nn::summary
  /// The init schemes' fan-in and fan-out of the weight (nn::init): In and Out.
  template <class F> void lepton_fans(F&& declare) { declare(weight, double(In), double(Out)); }

  template <operand X> auto operator()(X&& x) const {
    using E = lepton::detail::expr_of<X>;
    static_assert(E::rank == 2, "lepton: linear<In, Out> takes a (batch, In) input; flatten it first");
    constexpr std::size_t features = [] {
      if constexpr (E::rank == 2)
        return E::static_dims::values[1];
      else
        return In; // the rank error above is the one to read
    }();
    if constexpr (!layer_input_dims<In, features>::value) // the first error line names both numbers
      (void)sizeof(
          diagnostic::linear_input_features<diagnostic::layer_expects<In>, diagnostic::input_has<features>>);
    static_assert(layer_input_dims<In, features>::value,
                  "lepton: linear<In, Out>: the input's feature dimension is not In");
    if constexpr (E::rank == 2 && layer_input_dims<In, features>::value) // one error message, not several
      return lepton::matmul(std::forward<X>(x), weight) + bias;
  }
};

/// @brief The spec `linear<Out>` (= `linear<Out, infer>`) or `linear<infer, Out>`: a linear layer
///        whose input width is inferred; it holds no parameters until a sequential that starts with
///        `nn::input<...>` resolves it to `linear<In, Out, T>`, In being its input's dimension 1.
/// **Example**: `lepton::nn::sequential<lepton::nn::input<784>, lepton::nn::linear<128>,
///               lepton::nn::relu, lepton::nn::linear<10>> mlp; // linear<784, 128>, linear<128, 10>`
template <std::size_t A, std::size_t B, class T>
  requires(A == infer || B == infer)
struct linear<A, B, T> {
  /// The output width: the size that is not `infer`.
  static constexpr std::size_t out = A == infer ? B : A;
  static_assert(out != infer, "lepton: linear<infer, infer>: give the output width, linear<Out>");
  static constexpr bool lepton_unresolved = true;
  static constexpr char const* lepton_kind = "linear";
  /// The concrete layer for an input of tensor type X (batch, In).
  template <class X> using lepton_resolve = linear<detail::inferred_dim<X, 1, 2, false, 1>(), out, T>;

  // auto, not void: the body (and its message) is instantiated at the call, before any use of the result
  template <operand X> auto operator()(X&&) const {
    static_assert(detail::always_false<X>,
                  "lepton: linear<Out> infers its input width and holds no weights: use it in "
                  "nn::sequential<nn::input<...>, ...>, or write linear<In, Out>");
  }
};

} // namespace lepton::nn
