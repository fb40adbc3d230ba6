#pragma once
/// @file dataset.hpp
/// @brief `lepton::data::dataset<X, Y>` (features and targets with a common first dimension),
///        splitting, feature standardisation, `one_hot`, `to_labels` and `to_static`.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "shuffle.hpp"

namespace lepton::data {

namespace detail {
template <class T> struct is_tensor : std::false_type {};
template <class T, std::size_t... Dims> struct is_tensor<tensor<T, Dims...>> : std::true_type {};

/// Elements per row (product of every dimension but the first).
template <std::size_t R> std::size_t row_elems(shape_t<R> const& s) noexcept {
  std::size_t n = 1;
  for (std::size_t i = 1; i < R; ++i) n *= s[i];
  return n;
}

/// A tensor shaped like `proto` but with `rows` rows.
template <class X> X with_rows(X const& proto, std::size_t rows) {
  auto s = proto.shape();
  s[0] = rows;
  return X(s);
}

/// Copies rows `idx[k]` of `src` to row k of `dst` (dst has at least idx.size() rows of the same width).
template <class T>
void gather_rows(T const* src, std::size_t row, std::span<std::size_t const> idx, T* dst) noexcept {
  for (std::size_t k = 0; k < idx.size(); ++k) std::copy_n(src + idx[k] * row, row, dst + k * row);
}
} // namespace detail

/// @brief A lepton::tensor whose first dimension is `dyn`: a stack of samples (the batch dimension).
///
/// **Example**: `static_assert(lepton::data::sample_tensor<lepton::tensor<float, lepton::dyn, 784>>);`
template <class X>
concept sample_tensor = detail::is_tensor<X>::value && (X::rank >= 1) && (X::static_dims::values[0] == dyn);

/// @brief Features and targets of the same number of samples.
///
/// Holds `features()` of shape (n, F...) and `targets()` of shape (n, ...). The first dimensions
/// agree (checked on construction); keep them so when changing the tensors through the mutable
/// accessors (loaders check again and throw shape_error).
/// @tparam X features, e.g. `tensor<float, dyn, 784>`  // (n, 784)
/// @tparam Y targets, e.g. `tensor<std::int32_t, dyn>` // (n)
///
/// **Example**:
/// ```
/// lepton::tensor<float, lepton::dyn, 2> x({3, 2}, {0, 1, 2, 3, 4, 5});   // (3, 2)
/// lepton::tensor<std::int32_t, lepton::dyn> y({3}, {0, 1, 0});           // (3)
/// lepton::data::dataset ds(std::move(x), std::move(y));                  // ds.size() == 3
/// auto [train, val] = ds.split(0.67, /*seed=*/1);                         // 2 and 1 samples
/// ```
template <sample_tensor X, sample_tensor Y> class dataset {
public:
  using features_type = X;
  using targets_type = Y;

  /// An empty data set.
  dataset() = default;

  /// Takes features (n, F...) and targets (n, ...); throws shape_error if the sample counts differ.
  dataset(X features, Y targets) : m_x(std::move(features)), m_y(std::move(targets)) {
    if (m_x.shape(0) != m_y.shape(0))
      throw shape_error("data::dataset: features " + to_string(m_x.shape()) + " and targets " +
                        to_string(m_y.shape()) + " have different numbers of samples");
  }

  /// Number of samples.
  std::size_t size() const noexcept { return m_x.shape()[0]; }
  bool empty() const noexcept { return size() == 0; }

  X const& features() const noexcept { return m_x; } ///< (n, F...)
  X& features() noexcept { return m_x; }             ///< (n, F...); keep n unchanged
  Y const& targets() const noexcept { return m_y; }  ///< (n, ...)
  Y& targets() noexcept { return m_y; }              ///< (n, ...); keep n unchanged

  /// The samples `indices[0], indices[1], ...` in that order (copied). Throws index_error if an
  /// index is not below size().
  /// **Example**: `auto firsts = ds.subset(std::vector<std::size_t>{0, 1, 2});`
  dataset subset(std::span<std::size_t const> indices) const {
    for (std::size_t k = 0; k < indices.size(); ++k)
      if (indices[k] >= size())
        throw index_error("data::dataset::subset: index " + std::to_string(indices[k]) + " (entry " +
                          std::to_string(k) + ") is out of range for " + std::to_string(size()) + " samples");
    X x = detail::with_rows(m_x, indices.size());
    Y y = detail::with_rows(m_y, indices.size());
    detail::gather_rows(m_x.data(), detail::row_elems(m_x.shape()), indices, x.data());
    detail::gather_rows(m_y.data(), detail::row_elems(m_y.shape()), indices, y.data());
    return dataset(std::move(x), std::move(y));
  }

  /// Shuffles the samples with `permutation(size(), seed)` and splits them: the first part gets
  /// round(fraction * size()) samples, the second the rest. Throws value_error unless
  /// 0 <= fraction <= 1.
  /// **Example**: `auto [train, val] = ds.split(0.9, 42);`
  std::pair<dataset, dataset> split(double fraction, std::uint64_t seed) const {
    if (!(fraction >= 0.0 && fraction <= 1.0))
      throw value_error("data::dataset::split: fraction " + std::to_string(fraction) + " is not in [0, 1]");
    auto order = permutation(size(), seed);
    auto first = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(size())));
    first = std::min(first, size());
    std::span<std::size_t const> all(order);
    return {subset(all.first(first)), subset(all.subspan(first))};
  }

private:
  X m_x;
  Y m_y;
};

/// @brief Per-feature mean and standard deviation, one entry per element of a sample
///        (784 for (n, 784) features).
///
/// **Example**:
/// ```
/// auto stats = lepton::data::compute_feature_stats(train.features());
/// lepton::data::standardize(train.features(), stats);
/// lepton::data::standardize(test.features(), stats);   // the training statistics, not the test set's
/// ```
template <class T> struct feature_stats {
  std::vector<T> mean;
  std::vector<T> stddev; ///< population standard deviation; a constant feature gets 1
};

/// @brief Mean and standard deviation of every feature over the samples of `features` (n, F...).
///
/// Accumulates in double. A feature with standard deviation below `min_stddev` gets 1, so that
/// standardising maps it to 0 instead of dividing by zero. Throws value_error for no samples.
/// **Example**: `auto stats = lepton::data::compute_feature_stats(x); // x: (n, 8)`
template <sample_tensor X>
feature_stats<typename X::value_type> compute_feature_stats(X const& features, double min_stddev = 1e-12) {
  using T = typename X::value_type;
  static_assert(std::is_floating_point_v<T>, "lepton: feature statistics need floating-point features");
  std::size_t const n = features.shape()[0];
  std::size_t const row = detail::row_elems(features.shape());
  if (n == 0) throw value_error("data::compute_feature_stats: no samples");
  std::vector<double> sum(row, 0.0);
  T const* p = features.data();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < row; ++j) sum[j] += static_cast<double>(p[i * row + j]);
  for (auto& s : sum) s /= static_cast<double>(n);
  std::vector<double> var(row, 0.0); // two passes: no cancellation for large means
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < row; ++j) {
      double d = static_cast<double>(p[i * row + j]) - sum[j];
      var[j] += d * d;
    }
  feature_stats<T> out{std::vector<T>(row), std::vector<T>(row)};
  for (std::size_t j = 0; j < row; ++j) {
    double sd = std::sqrt(var[j] / static_cast<double>(n));
    out.mean[j] = static_cast<T>(sum[j]);
    out.stddev[j] = static_cast<T>(sd < min_stddev ? 1.0 : sd);
  }
  return out;
}

/// @brief Standardises `features` (n, F...) in place: x = (x - mean) / stddev per feature.
///        Throws shape_error if the statistics were computed for another number of features.
/// **Example**: `lepton::data::standardize(test.features(), train_stats);`
template <sample_tensor X> void standardize(X& features, feature_stats<typename X::value_type> const& stats) {
  std::size_t const n = features.shape()[0];
  std::size_t const row = detail::row_elems(features.shape());
  if (stats.mean.size() != row || stats.stddev.size() != row)
    throw shape_error("data::standardize: features " + to_string(features.shape()) + " have " +
                      std::to_string(row) + " values per sample, the statistics " +
                      std::to_string(stats.mean.size()));
  auto* p = features.data();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < row; ++j) p[i * row + j] = (p[i * row + j] - stats.mean[j]) / stats.stddev[j];
}

/// @brief One-hot encoding of integer labels (n) into (n, N). Throws value_error naming the label
///        and its position if a label is outside [0, N).
/// @tparam N number of classes
/// @tparam T element type of the result (float by default)
///
/// **Example**:
/// ```
/// lepton::tensor<std::int32_t, lepton::dyn> y({3}, {2, 0, 1});
/// auto t = lepton::data::one_hot<3>(y);   // (3, 3): rows e2, e0, e1
/// ```
template <std::size_t N, class T = float, class L>
  requires dense<L> &&
           (std::remove_cvref_t<L>::rank == 1) && std::integral<typename std::remove_cvref_t<L>::value_type>
tensor<T, dyn, N> one_hot(L const& labels) {
  static_assert(N > 0, "lepton: one_hot needs at least one class");
  std::size_t const n = labels.shape()[0];
  auto const* p = labels.data();
  for (std::size_t i = 0; i < n; ++i) {
    auto v = p[i];
    bool bad = false;
    if constexpr (std::is_signed_v<decltype(v)>)
      bad = v < 0 || static_cast<std::make_unsigned_t<decltype(v)>>(v) >= N;
    else
      bad = v >= N;
    if (bad)
      throw value_error("data::one_hot<" + std::to_string(N) + ">: label " + std::to_string(v) +
                        " at index " + std::to_string(i) + " is outside [0, " + std::to_string(N) + ")");
  }
  tensor<T, dyn, N> out(n);
  for (std::size_t i = 0; i < n; ++i) out(i, static_cast<std::size_t>(p[i])) = T(1);
  return out;
}

/// @brief Converts a numeric target column (n) to integer class labels (n). Throws value_error
///        naming the row if a value is not an integer that fits in std::int32_t.
///
/// **Example**: `auto labels = lepton::data::to_labels(table.target); // 0.0, 1.0, 2.0 -> 0, 1, 2`
template <class T> tensor<std::int32_t, dyn> to_labels(tensor<T, dyn> const& values) {
  std::size_t const n = values.shape()[0];
  tensor<std::int32_t, dyn> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v = values(i);
    if constexpr (std::is_floating_point_v<T>) {
      if (!(v >= T(-2147483648.0) && v < T(2147483648.0)) || std::trunc(v) != v)
        throw value_error("data::to_labels: value " + std::to_string(v) + " at row " + std::to_string(i) +
                          " is not an integer label");
    } else if constexpr (sizeof(T) >= sizeof(std::int32_t)) {
      if (std::cmp_less(v, INT32_MIN) || std::cmp_greater(v, INT32_MAX))
        throw value_error("data::to_labels: value " + std::to_string(v) + " at row " + std::to_string(i) +
                          " does not fit in std::int32_t");
    }
    out(i) = static_cast<std::int32_t>(v);
  }
  return out;
}

/// @brief Copies (n, m) features with a runtime column count into (n, F...) with static feature
///        dimensions, for models whose input shape is part of their type. Throws shape_error
///        unless m equals the product of F....
/// @tparam F the static feature dimensions (their product must equal the column count)
///
/// **Example**:
/// ```
/// auto table = lepton::data::read_csv("housing.csv");           // features (n, dyn)
/// lepton::tensor<float, lepton::dyn, 8> x = lepton::data::to_static<8>(table.features);
/// ```
template <std::size_t... F, class T> tensor<T, dyn, F...> to_static(tensor<T, dyn, dyn> const& features) {
  static_assert(sizeof...(F) >= 1 && ((F != dyn) && ...), "lepton: to_static<F...> takes static dimensions");
  constexpr std::size_t width = (std::size_t{1} * ... * F);
  auto s = features.shape();
  if (s[1] != width)
    throw shape_error("data::to_static" + to_string(dims<F...>{}) + ": features " + to_string(s) + " have " +
                      std::to_string(s[1]) + " columns, expected " + std::to_string(width));
  tensor<T, dyn, F...> out(s[0]);
  std::copy_n(features.data(), features.size(), out.data());
  return out;
}

} // namespace lepton::data
