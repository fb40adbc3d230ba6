#pragma once
/// @file linear.hpp
/// @brief `lepton::nn::linear<In, Out>`: y = x W + b.

#include <array>

#include "../../backend/cpu/linalg.hpp"
#include "../layer.hpp"

namespace lepton::nn {

/// @brief Fully connected layer: (batch, In) -> (batch, Out), y = x W + b.
///
/// The weight is stored (In, Out) so the forward pass is a GEMM without transposes (PyTorch's
/// `nn.Linear` stores (Out, In): transpose when moving weights between the two). The bias add and
/// any activation applied to the result run as the GEMM's epilogue.
/// @tparam In  input features  @tparam Out output features  @tparam T float or double
/// **Example**: `lepton::nn::linear<784, 256> fc;  auto h = lepton::relu(fc(x)); // x: (batch, 784)`
template <std::size_t In, std::size_t Out, class T = float> struct linear {
  param<T, In, Out> weight; ///< (In, Out)
  param<T, Out> bias;       ///< (Out)
  static constexpr std::array<char const*, 2> lepton_names{"weight", "bias"};
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
    return lepton::matmul(std::forward<X>(x), weight) + bias;
  }
};

} // namespace lepton::nn
