#pragma once
/// @file reflect.hpp
/// @brief Walking a model: a plain aggregate of layers, nested aggregates, `std::array`s and C
///        arrays of them, reflected like Boost.PFR does (see fields.hpp). `detail::visit` is the one
///        walk; for_each_parameter, for_each_buffer, nn::for_each_object and nn::model_view use it.
///
/// **Naming scheme** (used by checkpoints): a parameter's name is the dot-joined path from the
/// model to it. Each step is the member's name when the type gives names with a
/// `static constexpr std::array lepton_names{"fc1", "fc2"}` member (layers do: `weight`, `bias`),
/// and its position otherwise (like PyTorch's `Sequential`): `0.weight`, `2.layers.1.bias`.

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/param.hpp"
#include "fields.hpp"

namespace lepton::nn {

namespace detail {
template <class T> struct is_std_array : std::false_type {};
template <class T, std::size_t N> struct is_std_array<std::array<T, N>> : std::true_type {};

template <class T>
concept has_custom_walk = requires(T& t) { t.lepton_for_each_parameter([](std::string_view, auto&) {}); };

template <class T>
concept has_names = requires { T::lepton_names; };

inline std::string join(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

template <class T> constexpr bool reflectable() {
  using U = std::remove_cv_t<T>;
  return std::is_aggregate_v<U> && std::is_class_v<U> && !is_std_array<U>::value;
}

template <class T> struct is_static_tensor : std::false_type {};
template <class T, std::size_t... D> struct is_static_tensor<tensor<T, D...>>
    : std::bool_constant<dims<D...>::dynamic_count == 0> {};

template <class M, class V> void visit(M& m, std::string const& prefix, V& v);

template <class M, class V> void visit_fields(M& m, std::string const& prefix, V& v) {
  using U = std::remove_cv_t<M>;
  std::size_t i = 0;
  std::apply(
      [&](auto&... field) {
    auto one = [&](auto& fld) {
      std::string name;
      if constexpr (has_names<U>) {
        static_assert(std::size(U::lepton_names) == field_count<U>(),
                      "lepton: lepton_names must name every member of the struct, in order");
        name = U::lepton_names[i];
      } else {
        name = std::to_string(i);
      }
      ++i;
      visit(fld, join(prefix, name), v);
    };
    (one(field), ...);
    (void)one;
      },
      tie_fields(m));
}

/// **The** walk over a model (every other traversal of a model is built on it: for_each_parameter,
/// for_each_buffer, for_each_object, model_view). Depth first, in declaration order, it calls
/// `v.object(obj)` for the model and every sub-object (when V has `object`), then
/// `v.parameter(name, p)` for a `lepton::param` and `v.buffer(name, t)` for a `lepton::tensor` with
/// static dimensions and a storable element type (when V has them), and descends into custom walks
/// (`lepton_for_each_parameter`), `std::array`s, C arrays and reflectable aggregates.
template <class M, class V> void visit(M& m, std::string const& prefix, V& v) {
  using U = std::remove_cv_t<M>;
  if constexpr (requires { v.object(m); }) v.object(m);
  if constexpr (parameter<U>) {
    if constexpr (requires { v.parameter(std::string_view(prefix), m); })
      v.parameter(std::string_view(prefix), m);
  } else if constexpr (is_static_tensor<U>::value) {
    if constexpr (storable_element<typename U::value_type> &&
                  requires { v.buffer(std::string_view(prefix), m); })
      v.buffer(std::string_view(prefix), m);
  } else if constexpr (has_custom_walk<U>) {
    m.lepton_for_each_parameter([&](std::string_view name, auto& sub) { visit(sub, join(prefix, name), v); });
  } else if constexpr (is_std_array<U>::value || std::is_array_v<U>) {
    std::size_t i = 0;
    for (auto& e : m) visit(e, join(prefix, std::to_string(i++)), v);
  } else if constexpr (reflectable<U>()) {
    visit_fields(m, prefix, v);
  }
  // anything else (numbers, flags, empty layers) holds nothing to visit
}

template <class F> struct parameter_visitor {
  F& f;
  template <class P> void parameter(std::string_view name, P& p) { f(name, p); }
};
template <class F> struct buffer_visitor {
  F& f;
  template <class B> void buffer(std::string_view name, B& b) { f(name, b); }
};
template <class F> struct object_visitor {
  F& f;
  template <class O> void object(O& o) { f(o); }
};

template <class T> constexpr std::size_t count_params();
template <class Tuple, std::size_t... I> constexpr std::size_t count_fields(std::index_sequence<I...>) {
  return (std::size_t{0} + ... + count_params<std::remove_reference_t<std::tuple_element_t<I, Tuple>>>());
}
template <class T> constexpr std::size_t count_params() {
  using U = std::remove_cv_t<T>;
  if constexpr (parameter<U>)
    return U::size;
  else if constexpr (requires { U::lepton_parameter_count; })
    return U::lepton_parameter_count;
  else if constexpr (is_std_array<U>::value)
    return std::tuple_size_v<U> * count_params<typename U::value_type>();
  else if constexpr (std::is_array_v<U>)
    return std::extent_v<U> * count_params<std::remove_extent_t<U>>();
  else if constexpr (reflectable<U>()) {
    using tup = fields_tuple_t<U>;
    return count_fields<tup>(std::make_index_sequence<std::tuple_size_v<tup>>{});
  } else
    return 0;
}
} // namespace detail

/// @brief Calls `f(name, param)` for every parameter of `model`, in declaration order.
/// **Example**: `lepton::nn::for_each_parameter(model, [](std::string_view n, auto& p) { std::cout << n << '\n'; });`
template <class Model, class F> void for_each_parameter(Model& model, F&& f) {
  detail::parameter_visitor<F> v{f};
  detail::visit(model, std::string(), v);
}

/// @brief Calls `f(name, tensor)` for every buffer of `model`: a `lepton::tensor` member with static
///        dimensions and a storable element type (batch_norm's `running_mean`), named like the
///        parameters (`bn1.running_mean`), in declaration order. Checkpoints save them after the
///        parameters.
/// **Example**: `lepton::nn::for_each_buffer(model, [](std::string_view n, auto& t) { t.fill(0); });`
template <class Model, class F> void for_each_buffer(Model& model, F&& f) {
  detail::buffer_visitor<F> v{f};
  detail::visit(model, std::string(), v);
}

/// @brief The number of scalar parameters of a model type, computed at compile time.
/// **Example**: `static_assert(lepton::nn::parameter_count<mlp> == 784 * 256 + 256 + ...);`
template <class Model> inline constexpr std::size_t parameter_count = detail::count_params<Model>();

/// @brief The names of a model's parameters, in order (see the naming scheme above).
template <class Model> std::vector<std::string> parameter_names(Model& model) {
  std::vector<std::string> names;
  for_each_parameter(model, [&](std::string_view n, auto&) { names.emplace_back(n); });
  return names;
}

} // namespace lepton::nn
