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

#include "../core/dtype.hpp"
#include "reader.hpp" // checked_mul

namespace lepton::io {

static_assert(std::endian::native == std::endian::little,
              "lepton: io/ stores raw little-endian data and supports little-endian hosts only");

/// @brief lepton::dtype (core/dtype.hpp) and its helpers, under the io names used by the formats.
///
/// **Example**: `static_assert(lepton::io::dtype_of<float> == lepton::io::dtype::f32);`
using lepton::dtype;
using lepton::dtype_of;
using lepton::itemsize;
using lepton::storable_element;
using lepton::to_string;

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
