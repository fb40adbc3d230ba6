#pragma once
/// @file summary.hpp
/// @brief `lepton::summary<Model, Input>()`: a table of a model's layers with each one's output
///        shape and parameter count, all computed at compile time (nn::model_summary).

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "layers/infer.hpp"
#include "layers/sequential.hpp"
#include "reflect.hpp"

namespace lepton::nn {

/// @brief One row of a model summary: a layer's kind, its output's static shape and its parameters.
struct summary_row {
  std::string_view kind; ///< `lepton_kind` of the layer (linear, conv2d, relu...), else "custom"
  std::size_t rank = 0;  ///< rank of the output
  std::array<std::size_t, max_rank> shape{}; ///< the output's static dimensions (`dyn` for dynamic ones)
  std::size_t parameters = 0;                ///< scalar parameters of the layer
};

namespace detail {
template <class L> constexpr std::string_view kind_of() {
  if constexpr (requires { L::lepton_kind; })
    return L::lepton_kind;
  else
    return "custom";
}

template <class M> struct declared_input {
  using type = void;
};
template <class M>
  requires requires { typename M::lepton_layers::input_type; }
struct declared_input<M> {
  using type = typename M::lepton_layers::input_type;
};

template <class Dims> constexpr summary_row shape_row(std::string_view kind, std::size_t parameters) {
  summary_row r{kind, Dims::rank, {}, parameters};
  for (std::size_t i = 0; i < Dims::rank; ++i) r.shape[i] = Dims::values[i];
  return r;
}

template <class X> struct input_tensor;
template <class T, std::size_t... D> struct input_tensor<input_of<T, D...>> {
  using type = tensor<T, dyn, D...>;
};

/// The layers a summary lists for Model on an input of tensor type X: a sequential's own layers
/// (resolved), any other model as one row.
template <class Model, class X> struct summary_layers {
  using resolution = resolve_chain<X, type_list<>, type_list<>, Model>;
};
template <class... L, class X> struct summary_layers<sequential<L...>, X> {
  template <class List> struct run;
  template <class... D> struct run<type_list<D...>> {
    using type = resolve_chain<X, type_list<>, type_list<>, D...>;
  };
  using resolution = typename run<typename sequential<L...>::lepton_layers::declared>::type;
};

template <class Layers, class Outputs> struct summary_rows;
template <class... R, class... O> struct summary_rows<type_list<R...>, type_list<O...>> {
  static constexpr std::array<summary_row, sizeof...(R)> rows{
      shape_row<typename O::static_dims>(kind_of<R>(), nn::parameter_count<R>)...};
};

inline std::string shape_text(summary_row const& r) {
  std::string s = "(";
  for (std::size_t i = 0; i < r.rank; ++i) {
    if (i) s += ", ";
    if (r.shape[i] == dyn)
      s += i == 0 ? "N" : "dyn";
    else
      s += std::to_string(r.shape[i]);
  }
  return s + ")";
}

/// Rows of cells: left-aligned columns but the last, which is right-aligned; no trailing blanks.
inline std::string table_text(std::vector<std::array<std::string, 4>> const& cells) {
  std::array<std::size_t, 4> width{};
  for (auto const& row : cells)
    for (std::size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (auto const& row : cells) {
    std::string line;
    for (std::size_t c = 0; c < 3; ++c) line += row[c] + std::string(width[c] - row[c].size() + 2, ' ');
    line += std::string(width[3] - row[3].size(), ' ') + row[3];
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + '\n';
  }
  return out;
}
} // namespace detail

/// @brief The compile-time summary of Model on Input (`nn::input<...>`; by default the input that
///        Model declares, as `sequential<input<1, 28, 28>, ...>` does).
///
/// For a sequential, one row per layer (layers with sizes to infer are resolved against Input);
/// any other model (a struct with its own operator()) is one row of kind "custom". Every number is
/// a constant expression: **Example**:
/// `static_assert(lepton::nn::model_summary<net>::layers[0].parameters == 1 * 32 * 3 * 3 + 32);`
/// @tparam Model  a layer or model type   @tparam Input  `nn::input_of<T, D...>`, one sample's shape
template <class Model, class Input = typename detail::declared_input<Model>::type> struct model_summary {
  static_assert(!std::is_void_v<Input>, "lepton: summary<Model, Input>: give the input shape, "
                                        "e.g. summary<Model, nn::input<1, 28, 28>>()");
  static_assert(detail::is_input<Input>::value,
                "lepton: summary<Model, Input>: Input is nn::input<...> or nn::input_of<T, ...>");
  static_assert(std::is_void_v<typename detail::declared_input<Model>::type> ||
                    std::is_same_v<typename detail::declared_input<Model>::type, Input>,
                "lepton: summary<Model, Input>: Model declares a different input (nn::input<...>)");

private:
  using resolution =
      typename detail::summary_layers<Model, typename detail::input_tensor<Input>::type>::resolution;
  using rows_of = detail::summary_rows<typename resolution::layers, typename resolution::outputs>;

public:
  /// The input row: kind "input", the shape (batch, D...), no parameters.
  static constexpr summary_row input =
      detail::shape_row<typename detail::input_tensor<Input>::type::static_dims>("input", 0);
  /// One row per layer, in order (the index of a row is the one in the layer's parameter names).
  static constexpr auto layers = rows_of::rows;
  /// The sum of the layers' parameters (the model's nn::parameter_count once resolved).
  static constexpr std::size_t total_parameters = [] {
    std::size_t n = 0;
    for (auto const& r : rows_of::rows) n += r.parameters;
    return n;
  }();

  /// The table as text (see lepton::summary).
  static std::string text() {
    std::vector<std::array<std::string, 4>> cells;
    cells.push_back({"#", "layer", "output shape", "params"});
    cells.push_back({"", "input", detail::shape_text(input), ""});
    for (std::size_t i = 0; i < layers.size(); ++i)
      cells.push_back({std::to_string(i), std::string(layers[i].kind), detail::shape_text(layers[i]),
                       std::to_string(layers[i].parameters)});
    cells.push_back({"", "total", "", std::to_string(total_parameters)});
    return detail::table_text(cells);
  }
};

/// @brief The summary of Model on Input as a table: a header, the input, one row per layer (its
///        index, kind, output shape and parameter count) and the total, e.g.
/// ```
/// #  layer    output shape  params
///    input    (N, 784)
/// 0  linear   (N, 128)      100480
/// 1  relu     (N, 128)           0
/// 2  linear   (N, 10)         1290
///    total                  101770
/// ```
/// A dynamic batch prints as `N`, any other dynamic dimension as `dyn`. The numbers are those of
/// nn::model_summary, computed at compile time.
/// **Example**: `std::cout << lepton::summary<net>();  lepton::summary<mlp, lepton::nn::input<784>>();`
template <class Model, class Input = typename detail::declared_input<Model>::type> std::string summary() {
  return model_summary<Model, Input>::text();
}

} // namespace lepton::nn

namespace lepton {
using nn::summary;
} // namespace lepton
