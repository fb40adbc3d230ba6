#pragma once
/// @file dtype.hpp
/// @brief The element types lepton's file formats store (`lepton::io::dtype`), their names in the
///        safetensors and .npy formats, and shape formatting for error messages.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "reader.hpp" // checked_mul

namespace lepton::io {

static_assert(std::endian::native == std::endian::little,
              "lepton: io/ stores raw little-endian data and supports little-endian hosts only");

/// @brief Element type of a stored tensor. Only these five are read and written; any other dtype in a
///        file is rejected with lepton::format_error ("unsupported dtype").
///
/// **Example**: `static_assert(lepton::io::dtype_of<float> == lepton::io::dtype::f32);`
enum class dtype : std::uint8_t {
  f32, ///< float,        safetensors "F32", numpy "<f4"
  f64, ///< double,       safetensors "F64", numpy "<f8"
  i32, ///< std::int32_t, safetensors "I32", numpy "<i4"
  i64, ///< std::int64_t, safetensors "I64", numpy "<i8"
  u8,  ///< std::uint8_t, safetensors "U8",  numpy "|u1"
};

namespace detail {
template <class T> struct dtype_of_impl {};
template <> struct dtype_of_impl<float> {
  static constexpr dtype value = dtype::f32;
};
template <> struct dtype_of_impl<double> {
  static constexpr dtype value = dtype::f64;
};
template <> struct dtype_of_impl<std::int32_t> {
  static constexpr dtype value = dtype::i32;
};
template <> struct dtype_of_impl<std::int64_t> {
  static constexpr dtype value = dtype::i64;
};
template <> struct dtype_of_impl<std::uint8_t> {
  static constexpr dtype value = dtype::u8;
};
} // namespace detail

/// @brief Satisfied by the C++ element types that have a lepton::io::dtype.
///
/// **Example**: `static_assert(lepton::io::storable_element<std::uint8_t>);`
template <class T>
concept storable_element = requires { detail::dtype_of_impl<std::remove_cv_t<T>>::value; };

/// @brief The dtype of a C++ element type.
///
/// **Example**: `auto d = lepton::io::dtype_of<std::int64_t>; // dtype::i64`
template <storable_element T> inline constexpr dtype dtype_of =
    detail::dtype_of_impl<std::remove_cv_t<T>>::value;

/// @brief Bytes per element.
///
/// **Example**: `lepton::io::itemsize(lepton::io::dtype::f64) == 8`
constexpr std::size_t itemsize(dtype t) noexcept {
  switch (t) {
  case dtype::f32: return 4;
  case dtype::f64: return 8;
  case dtype::i32: return 4;
  case dtype::i64: return 8;
  case dtype::u8: return 1;
  }
  return 0;
}

/// @brief The safetensors name of a dtype ("F32", "F64", "I32", "I64", "U8"); also used in messages.
///
/// **Example**: `lepton::io::to_string(lepton::io::dtype::f32) == "F32"`
constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
  case dtype::f32: return "F32";
  case dtype::f64: return "F64";
  case dtype::i32: return "I32";
  case dtype::i64: return "I64";
  case dtype::u8: return "U8";
  }
  return "?";
}

/// @brief Parses a safetensors dtype name; std::nullopt for names lepton does not support.
///
/// **Example**: `lepton::io::dtype_from_string("I64") == lepton::io::dtype::i64`
constexpr std::optional<dtype> dtype_from_string(std::string_view s) noexcept {
  if (s == "F32") return dtype::f32;
  if (s == "F64") return dtype::f64;
  if (s == "I32") return dtype::i32;
  if (s == "I64") return dtype::i64;
  if (s == "U8") return dtype::u8;
  return std::nullopt;
}

/// @brief The numpy `descr` lepton writes for a dtype ("<f4", "<f8", "<i4", "<i8", "|u1").
///
/// **Example**: `lepton::io::npy_descr(lepton::io::dtype::u8) == "|u1"`
constexpr std::string_view npy_descr(dtype t) noexcept {
  switch (t) {
  case dtype::f32: return "<f4";
  case dtype::f64: return "<f8";
  case dtype::i32: return "<i4";
  case dtype::i64: return "<i8";
  case dtype::u8: return "|u1";
  }
  return "?";
}

/// @brief "(784, 256)" for a runtime shape, "()" for a scalar; the form used in every io message.
///
/// **Example**: `lepton::io::shape_string({784, 256}) == "(784, 256)"`
inline std::string shape_string(std::vector<std::size_t> const& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + ")";
}

namespace detail {

/// Number of bytes of a tensor of this dtype and shape, or std::nullopt if it overflows std::size_t
/// (or exceeds PTRDIFF_MAX, the largest object a program can allocate). A zero dimension gives 0
/// whatever the other dimensions are.
inline std::optional<std::size_t> checked_nbytes(dtype t, std::vector<std::size_t> const& shape) noexcept {
  for (std::size_t d : shape)
    if (d == 0) return std::size_t{0};
  std::size_t n = itemsize(t);
  for (std::size_t d : shape) {
    auto m = checked_mul(n, d);
    if (!m) return std::nullopt;
    n = *m;
  }
  if (n > static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max())) return std::nullopt;
  return n;
}

} // namespace detail
} // namespace lepton::io
