#pragma once
/// @file dtype.hpp
/// @brief `lepton::dtype`: the element types lepton stores in files and lists in a model_view
///        (f32, f64, i32, i64, u8), with `dtype_of<T>`, `storable_element` and `itemsize`.
///
/// The file formats (io/) and the model view (nn/model_view.hpp) share this one tag; the formats'
/// names for it (safetensors "F32", numpy "<f4") are in io/dtype.hpp.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace lepton {

/// @brief Element type of a stored or viewed tensor. Only these five are read and written; any other
///        dtype in a file is rejected with lepton::format_error ("unsupported dtype").
///
/// **Example**: `static_assert(lepton::dtype_of<float> == lepton::dtype::f32);`
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

/// @brief Satisfied by the C++ element types that have a lepton::dtype.
///
/// **Example**: `static_assert(lepton::storable_element<std::uint8_t>);`
template <class T>
concept storable_element = requires { detail::dtype_of_impl<std::remove_cv_t<T>>::value; };

/// @brief The dtype of a C++ element type.
///
/// **Example**: `auto d = lepton::dtype_of<std::int64_t>; // dtype::i64`
template <storable_element T> inline constexpr dtype dtype_of =
    detail::dtype_of_impl<std::remove_cv_t<T>>::value;

/// @brief Bytes per element.
///
/// **Example**: `lepton::itemsize(lepton::dtype::f64) == 8`
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
/// **Example**: `lepton::to_string(lepton::dtype::f32) == "F32"`
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

} // namespace lepton
