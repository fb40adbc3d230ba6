#pragma once
/// @file reflect.hpp
/// @brief Finding the parameters of a model: a plain aggregate of layers, nested aggregates,
///        `std::array`s and C arrays of them, reflected like Boost.PFR does (see fields.hpp).
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

template <class M, class F> void walk(M& m, std::string const& prefix, F& f);

template <class M, class F> void walk_fields(M& m, std::string const& prefix, F& f) {
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
      walk(fld, join(prefix, name), f);
    };
    (one(field), ...);
    (void)one;
      },
      tie_fields(m));
}

template <class M, class F> void walk(M& m, std::string const& prefix, F& f) {
  using U = std::remove_cv_t<M>;
  if constexpr (parameter<U>) {
    f(std::string_view(prefix), m);
  } else if constexpr (has_custom_walk<U>) {
    m.lepton_for_each_parameter([&](std::string_view name, auto& p) { walk(p, join(prefix, name), f); });
  } else if constexpr (is_std_array<U>::value || std::is_array_v<U>) {
    std::size_t i = 0;
    for (auto& e : m) walk(e, join(prefix, std::to_string(i++)), f);
  } else if constexpr (reflectable<U>()) {
    walk_fields(m, prefix, f);
  }
  // anything else (numbers, flags, empty layers) holds no parameters
}

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
  detail::walk(model, std::string(), f);
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
