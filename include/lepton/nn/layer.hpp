#pragma once
/// @file layer.hpp
/// @brief The layer contract, and walking a model's sub-objects (training mode).
///
/// **What a layer is.** A layer is a small aggregate that owns its parameters (`lepton::param`
/// members) and maps an input expression to an output expression with `operator()(x) const`.
/// It computes nothing when called: the result is an expression whose type carries the shapes, so
/// a model made of layers is a compile-time graph. Static feature sizes are checked at compile
/// time (the error names the layer's expected and actual dimensions); the batch dimension may be
/// `dyn`. Layers with train/eval behaviour (dropout, batch norm) have a `bool training` member,
/// set for a whole model by `lepton::nn::set_training`.
///
/// **What it guarantees.** Parameters are found by reflection (nn/reflect.hpp) in declaration
/// order, so optimizers and checkpoints see every parameter of any nesting of layers, structs,
/// `std::array`s and `sequential`s without registration code.

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "reflect.hpp"

namespace lepton::nn {

/// @brief Calls f(obj) for the model and every layer/struct nested in it (depth first).
template <class Model, class F> void for_each_object(Model& model, F&& f) {
  detail::object_visitor<F> v{f};
  detail::visit(model, std::string(), v);
}

/// @brief Satisfied by layers that draw random numbers from a (seed, call counter) pair, like
///        nn::dropout: `seed` and `calls` are `std::uint64_t` members. Checkpoints save both,
///        distributed training broadcasts or decorrelates them.
template <class L>
concept rng_layer = requires(L& l) {
  { l.seed } -> std::same_as<std::uint64_t&>;
  { l.calls } -> std::same_as<std::uint64_t&>;
};

/// @brief Calls `f(seed&, calls&)` for every rng_layer of the model, in for_each_object order.
/// **Example**: `lepton::nn::for_each_rng_layer(model, [](std::uint64_t& s, std::uint64_t&) { s ^= 1; });`
template <class Model, class F> void for_each_rng_layer(Model& model, F&& f) {
  for_each_object(model, [&](auto& obj) {
    if constexpr (rng_layer<std::remove_cvref_t<decltype(obj)>>) f(obj.seed, obj.calls);
  });
}

/// @brief Switches every layer with a `training` flag (dropout, batch norm) to training or evaluation.
/// **Example**: `lepton::nn::set_training(model, false); // inference: dropout off`
template <class Model> void set_training(Model& model, bool training) {
  for_each_object(model, [&](auto& obj) {
    if constexpr (requires { obj.training = true; }) obj.training = training;
  });
}

} // namespace lepton::nn
