#pragma once
/// @file tensor.hpp
/// @brief `lepton::tensor<T, Dims...>`: an owning, row-major tensor with static and dynamic
///        dimensions, and `lepton::tensor_view<T, Dims...>`, a non-owning view of one.

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include <xtensor/xtensor.hpp>

#include "backend.hpp"
#include "error.hpp"
#include "expr_base.hpp"
#include "shape.hpp"

namespace lepton {

template <class T, std::size_t... Dims> class tensor;
template <class T, std::size_t... Dims> class tensor_view;

namespace detail {
/// Evaluates expression `e` into `dst` with the backend of dst's memory space (core/backend.hpp).
template <class Dst, class E> void assign_expression(Dst& dst, E const& e) {
  runner<backend_for_t<memory_space_of_t<Dst>>, E>::assign(dst, e);
}

template <std::size_t R, std::size_t... Dims>
shape_t<R> shape_from_dyn(std::array<std::size_t, dims<Dims...>::dynamic_count> const& dyn_sizes) {
  shape_t<R> s{};
  constexpr std::array<std::size_t, R> d{Dims...};
  std::size_t k = 0;
  for (std::size_t i = 0; i < R; ++i) s[i] = d[i] == dyn ? dyn_sizes[k++] : d[i];
  return s;
}

template <std::size_t... Dims> void check_shape(shape_t<sizeof...(Dims)> const& s, char const* where) {
  if (!matches(dims<Dims...>{}, s))
    throw shape_error(std::string(where) + ": shape " + to_string(s) + " does not fit the static shape " +
                      to_string(dims<Dims...>{}));
}

/// The element count of `s` for storage of T, refusing shapes whose count or byte size does not fit
/// in the address space (value_error naming the shape) before anything is allocated.
template <class T, std::size_t R> std::size_t checked_alloc_count(shape_t<R> const& s, char const* where) {
  constexpr std::size_t max_bytes = static_cast<std::size_t>(PTRDIFF_MAX);
  if (std::find(s.begin(), s.end(), std::size_t{0}) != s.end()) return 0;
  std::size_t n = 1;
  for (std::size_t d : s) {
    if (n > max_bytes / sizeof(T) / d)
      throw value_error(std::string(where) + ": shape " + to_string(s) + " of " + std::to_string(sizeof(T)) +
                        "-byte elements does not fit in memory (more than " + std::to_string(max_bytes) +
                        " bytes)");
    n *= d;
  }
  return n;
}
} // namespace detail

/// @brief Satisfied by lepton's dense storage types (tensor, tensor_view): contiguous, row-major.
template <class D>
concept dense = requires(D const& d) {
  typename std::remove_cvref_t<D>::value_type;
  typename std::remove_cvref_t<D>::static_dims;
  { d.data() };
  { d.shape() };
} && std::remove_cvref_t<D>::is_dense;

/// @brief A non-owning view of contiguous row-major memory with static and dynamic dimensions.
///
/// `T` may be const. Views come from `tensor::view()` and `tensor::rows(b, e)`; they never copy.
/// **Example**: `auto first8 = x.rows(0, 8); // (8, 784) view of x (batch, 784)`
template <class T, std::size_t... Dims> class tensor_view {
public:
  static constexpr bool is_dense = true;
  /// Host memory: expressions assigned to a view run on the CPU backend.
  using memory_space = host_space;
  using value_type = std::remove_const_t<T>;
  using static_dims = dims<Dims...>;
  static constexpr std::size_t rank = sizeof...(Dims);
  using shape_type = shape_t<rank>;

  tensor_view(T* data, shape_type const& shape) : m_data(data), m_shape(shape) {
    detail::check_shape<Dims...>(shape, "tensor_view");
  }
  /// A const view from a mutable one.
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<U const, T>)
  tensor_view(tensor_view<U, Dims...> const& v) : m_data(v.data()), m_shape(v.shape()) {}

  T* data() const noexcept { return m_data; }
  shape_type const& shape() const noexcept { return m_shape; }
  std::size_t shape(std::size_t i) const { return m_shape.at(i); }
  std::size_t size() const noexcept { return shape_size(m_shape); }
  std::span<T> flat() const noexcept { return {m_data, size()}; }

  template <class... I>
    requires(sizeof...(I) == rank && (std::integral<I> && ...))
  T& operator()(I... i) const noexcept {
    std::array<std::size_t, rank> idx{static_cast<std::size_t>(i)...};
    auto st = detail::c_strides(m_shape);
    std::size_t off = 0;
    for (std::size_t d = 0; d < rank; ++d) off += idx[d] * st[d];
    return m_data[off];
  }

  /// Evaluates an expression into the viewed memory (the shape must match exactly).
  template <expression E> tensor_view const& operator=(E const& e) const {
    detail::assign_expression(*this, e);
    return *this;
  }
  /// Copies the values of another view of the same shape.
  tensor_view const& assign(tensor_view<value_type const, Dims...> const& other) const {
    if (other.shape() != m_shape)
      throw shape_error("tensor_view::assign: shapes " + to_string(m_shape) + " and " +
                        to_string(other.shape()) + " differ");
    std::copy_n(other.data(), size(), m_data);
    return *this;
  }

private:
  T* m_data;
  shape_type m_shape;
};

/// @brief An owning, row-major tensor. Static dimensions are template arguments; `dyn` marks a
///        dimension given at run time (typically the batch).
///
/// Storage is an `xt::xtensor<T, rank>` (64-byte aligned with XTENSOR_USE_XSIMD), reachable with
/// `.xt()` for interoperation with xtensor. Assigning an expression evaluates it (fused, see eval/).
/// @tparam T     element type (float, double, or an integer type for labels/indices)
/// @tparam Dims  one entry per dimension: a size, or `lepton::dyn`
///
/// **Example**:
/// ```
/// lepton::tensor<float, lepton::dyn, 784> x(64);       // (batch=64, 784), zero-filled
/// lepton::tensor<float, 784, 10> w;                    // (784, 10), zero-filled
/// lepton::tensor<float, lepton::dyn, 10> y = lepton::matmul(x, w);
/// ```
template <class T, std::size_t... Dims> class tensor {
public:
  static constexpr bool is_dense = true;
  /// Host memory: expressions assigned to a tensor run on the CPU backend.
  using memory_space = host_space;
  using value_type = T;
  using static_dims = dims<Dims...>;
  static constexpr std::size_t rank = sizeof...(Dims);
  using shape_type = shape_t<rank>;
  using storage_type = xt::xtensor<T, rank>;
  using view_type = tensor_view<T, Dims...>;
  using const_view_type = tensor_view<T const, Dims...>;

  static_assert(std::is_arithmetic_v<T>,
                "lepton: tensor element types are arithmetic (float, double, integers)");
  static_assert(rank <= max_rank, "lepton: tensors have at most lepton::max_rank (6) dimensions");

  /// Zero-filled; every `dyn` dimension has size 0.
  tensor() : tensor(detail::shape_from_dyn<rank, Dims...>({})) {}

  /// Zero-filled, with one size per `dyn` dimension in order.
  template <std::integral... S>
    requires(sizeof...(S) == static_dims::dynamic_count && sizeof...(S) > 0)
  explicit tensor(S... dyn_sizes)
      : tensor(detail::shape_from_dyn<rank, Dims...>({static_cast<std::size_t>(dyn_sizes)...})) {}

  /// Zero-filled with a full runtime shape (validated against the static dimensions).
  explicit tensor(shape_type const& shape) : tensor(shape, T{}) {}
  /// Zero-filled with a full shape given as a list: `tensor<float, dyn, dyn> m({3, 5});`
  /// (throws shape_error if the list's length is not the rank).
  explicit tensor(std::initializer_list<std::size_t> shape) : tensor(to_shape(shape), T{}) {}

  /// Filled with `value`.
  tensor(shape_type const& shape, T value) {
    detail::check_shape<Dims...>(shape, "tensor");
    (void)detail::checked_alloc_count<T>(shape, "tensor");
    m_data = storage_type::from_shape(shape);
    m_data.fill(value);
  }

  /// Takes over an xtensor container (validated against the static dimensions).
  /// **Example**: `auto t = lepton::tensor<float, lepton::dyn, 3>::from_xt(xt::zeros<float>({2, 3}));`
  static tensor from_xt(storage_type data) {
    tensor t;
    shape_type s;
    std::copy(data.shape().begin(), data.shape().end(), s.begin());
    detail::check_shape<Dims...>(s, "tensor::from_xt");
    t.m_data = std::move(data);
    return t;
  }

  /// Shape and values in row-major order; throws shape_error if the count differs.
  /// **Example**: `lepton::tensor<float, 2, 2> m({2, 2}, {1, 2, 3, 4});`
  tensor(shape_type const& shape, std::initializer_list<T> values) : tensor(shape) {
    if (values.size() != size())
      throw shape_error("tensor: " + std::to_string(values.size()) + " values given for shape " +
                        to_string(shape));
    std::copy(values.begin(), values.end(), data());
  }

  /// Evaluates an expression (see lepton::expression).
  template <expression E> tensor(E const& e) { detail::assign_expression(*this, e); }
  template <expression E> tensor& operator=(E const& e) {
    detail::assign_expression(*this, e);
    return *this;
  }

  tensor(tensor const&) = default;
  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor const&) = default;
  tensor& operator=(tensor&&) noexcept = default;

  T* data() noexcept { return m_data.data(); }
  T const* data() const noexcept { return m_data.data(); }
  shape_type shape() const noexcept {
    shape_type s;
    std::copy(m_data.shape().begin(), m_data.shape().end(), s.begin());
    return s;
  }
  std::size_t shape(std::size_t i) const {
    if (i >= rank)
      throw index_error("tensor::shape(" + std::to_string(i) + "): rank is " + std::to_string(rank));
    return m_data.shape()[i];
  }
  std::size_t size() const noexcept { return m_data.size(); }
  std::span<T> flat() noexcept { return {data(), size()}; }
  std::span<T const> flat() const noexcept { return {data(), size()}; }

  /// The xtensor container, for interoperation with xtensor functions.
  storage_type& xt() noexcept { return m_data; }
  storage_type const& xt() const noexcept { return m_data; }

  /// Changes the shape; keeps the memory when the element count is unchanged, else reallocates
  /// (values are then unspecified). Strong guarantee: when the shape is refused (shape_error,
  /// value_error) or the allocation fails (std::bad_alloc), the tensor is unchanged.
  void resize(shape_type const& shape) {
    detail::check_shape<Dims...>(shape, "tensor::resize");
    if (shape == this->shape()) return;
    if (detail::checked_alloc_count<T>(shape, "tensor::resize") == size())
      m_data.reshape(shape);
    else
      m_data = storage_type::from_shape(shape); // allocates before it replaces anything
  }

  void fill(T value) { m_data.fill(value); }

  /// Unchecked element access.
  template <class... I>
    requires(sizeof...(I) == rank && (std::integral<I> && ...))
  T& operator()(I... i) noexcept {
    return m_data.unchecked(static_cast<std::size_t>(i)...);
  }
  template <class... I>
    requires(sizeof...(I) == rank && (std::integral<I> && ...))
  T const& operator()(I... i) const noexcept {
    return m_data.unchecked(static_cast<std::size_t>(i)...);
  }

  /// Bounds-checked element access; throws lepton::index_error naming the index and the shape.
  template <class... I>
    requires(sizeof...(I) == rank && (std::integral<I> && ...))
  T& at(I... i) {
    check_index({static_cast<std::size_t>(i)...});
    return (*this)(i...);
  }
  template <class... I>
    requires(sizeof...(I) == rank && (std::integral<I> && ...))
  T const& at(I... i) const {
    check_index({static_cast<std::size_t>(i)...});
    return (*this)(i...);
  }

  view_type view() noexcept { return view_type(data(), shape()); }
  const_view_type view() const noexcept { return const_view_type(data(), shape()); }

  /// Rows [begin, end) of the first dimension, without copying. The view's first dimension is dyn.
  auto rows(std::size_t begin, std::size_t end) { return rows_impl<T>(data(), begin, end); }
  auto rows(std::size_t begin, std::size_t end) const { return rows_impl<T const>(data(), begin, end); }

private:
  static shape_type to_shape(std::initializer_list<std::size_t> l) {
    if (l.size() != rank)
      throw shape_error("tensor: a shape of " + std::to_string(l.size()) + " dimensions given for a rank-" +
                        std::to_string(rank) + " tensor");
    shape_type s{};
    std::copy(l.begin(), l.end(), s.begin());
    return s;
  }
  template <class U> auto rows_impl(U* p, std::size_t begin, std::size_t end) const {
    static_assert(rank >= 1, "lepton: rows() needs a tensor of rank >= 1");
    auto s = shape();
    if (begin > end || end > s[0])
      throw index_error("tensor::rows(" + std::to_string(begin) + ", " + std::to_string(end) +
                        "): shape is " + to_string(s));
    std::size_t row = rank == 0 ? 1 : size() / std::max<std::size_t>(s[0], 1);
    s[0] = end - begin;
    return rows_view_t<U>(p + begin * row, s);
  }
  template <class U, class Tail> struct rows_view;
  template <class U, std::size_t First, std::size_t... Rest> struct rows_view<U, dims<First, Rest...>> {
    using type = tensor_view<U, dyn, Rest...>;
  };
  template <class U> using rows_view_t = typename rows_view<U, static_dims>::type;

  void check_index(shape_type const& idx) const {
    auto s = shape();
    for (std::size_t d = 0; d < rank; ++d)
      if (idx[d] >= s[d])
        throw index_error("tensor::at" + to_string(idx) + ": out of range for shape " + to_string(s));
  }

  storage_type m_data;
};

namespace detail {
/// The tensor type for element type T and a `dims<...>` list.
template <class T, class D> struct tensor_of;
template <class T, std::size_t... D> struct tensor_of<T, dims<D...>> {
  using type = tensor<T, D...>;
};
} // namespace detail

} // namespace lepton
