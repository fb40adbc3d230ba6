#pragma once
/// @file idx.hpp
/// @brief Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
///
/// An IDX file is a 4-byte magic number (two zero bytes, an element-type byte, the number of
/// dimensions), one big-endian 32-bit size per dimension, then the elements in row-major order,
/// big-endian. Every size is validated against the file before anything is allocated (see
/// docs/data.md): hostile or damaged files raise lepton::format_error, never a crash or a huge
/// allocation. The file is opened and read with io's file reader (io/reader.hpp), a gzip file
/// inflated with io's zlib wrapper (io/zlib.hpp).

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../io/reader.hpp"
#include "../io/zlib.hpp"

namespace lepton::data {

/// @brief Element type of an IDX file (the third byte of its magic number).
///
/// **Example**: `if (f.header.type == lepton::data::idx_type::u8) { /* pixels */ }`
enum class idx_type : std::uint8_t {
  u8 = 0x08,  ///< unsigned byte (MNIST images and labels)
  i8 = 0x09,  ///< signed byte
  i16 = 0x0B, ///< big-endian 16-bit signed integer
  i32 = 0x0C, ///< big-endian 32-bit signed integer
  f32 = 0x0D, ///< big-endian IEEE-754 single
  f64 = 0x0E, ///< big-endian IEEE-754 double
};

/// @brief Size in bytes of one element of type `t`.
///
/// **Example**: `static_assert(lepton::data::idx_element_size(lepton::data::idx_type::i32) == 4);`
constexpr std::size_t idx_element_size(idx_type t) noexcept {
  switch (t) {
  case idx_type::u8:
  case idx_type::i8: return 1;
  case idx_type::i16: return 2;
  case idx_type::i32:
  case idx_type::f32: return 4;
  case idx_type::f64: return 8;
  }
  return 0;
}

/// @brief A readable name of an IDX element type, e.g. "0x08 (unsigned byte)".
///
/// **Example**: `std::string s = lepton::data::idx_type_name(lepton::data::idx_type::f32); // "0x0D (float)"`
inline std::string idx_type_name(idx_type t) {
  switch (t) {
  case idx_type::u8: return "0x08 (unsigned byte)";
  case idx_type::i8: return "0x09 (signed byte)";
  case idx_type::i16: return "0x0B (short)";
  case idx_type::i32: return "0x0C (int)";
  case idx_type::f32: return "0x0D (float)";
  case idx_type::f64: return "0x0E (double)";
  }
  return "unknown";
}

/// @brief Limits applied while reading an IDX file.
///
/// **Example**:
/// ```
/// auto f = lepton::data::read_idx(path, {.max_bytes = 1u << 20}); // refuse more than 1 MiB of elements
/// auto g = lepton::data::read_idx(gz, {.max_decompressed_bytes = std::uint64_t{4} << 30}); // a 4 GiB .gz
/// ```
struct idx_options {
  /// Largest element data, in bytes, the reader agrees to allocate, raw or gzip (default 4 GiB).
  std::uint64_t max_bytes = std::uint64_t{1} << 32;
  /// Largest decompressed size (header and data), in bytes, of a gzip file (default 1 GiB; Fashion-MNIST's
  /// largest file is 47 MB). The size a gzip file inflates to cannot be checked before inflating it,
  /// so a header above this cap is refused at once, and below it the buffer grows with the data that
  /// actually inflates: reading never holds more than about 1.5x the data, and never more than 1.5x this cap.
  std::uint64_t max_decompressed_bytes = std::uint64_t{1} << 30;
};

/// @brief The header of an IDX file: element type and dimensions.
///
/// **Example**: `h.dims_string() == "60000x28x28"`, `h.count() == 47040000`.
struct idx_header {
  idx_type type = idx_type::u8;
  std::vector<std::size_t> dims; ///< one entry per dimension, outermost first

  /// Number of elements (product of dims; 1 for no dims). Validated not to overflow when read.
  std::size_t count() const noexcept {
    std::size_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
  /// Bytes per element.
  std::size_t element_size() const noexcept { return idx_element_size(type); }
  /// Bytes of element data (count() * element_size()).
  std::size_t data_bytes() const noexcept { return count() * element_size(); }
  /// Bytes of the header itself: 4 + 4 per dimension.
  std::size_t header_bytes() const noexcept { return 4 + 4 * dims.size(); }
  /// "60000x28x28".
  std::string dims_string() const {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      if (i) s += 'x';
      s += std::to_string(dims[i]);
    }
    return s;
  }
};

/// @brief The content of an IDX file: its header and its element data as stored (big-endian).
///
/// Decode the elements with `values<T>()` or `decode_into(ptr)`; `read_idx_tensor` does both steps.
/// **Example**:
/// ```
/// auto f = lepton::data::read_idx("/data/train-labels-idx1-ubyte.gz");
/// std::vector<int> labels = f.values<int>();   // (60000)
/// ```
struct idx_file {
  std::filesystem::path path; ///< the file it was read from (for messages)
  idx_header header;
  std::vector<std::uint8_t> bytes; ///< header.data_bytes() bytes, big-endian elements

  /// Converts every element to `T` and writes header.count() values to `out`. Throws format_error
  /// if a floating-point element is not finite or does not fit in an integral `T`.
  template <class T> void decode_into(T* out) const;

  /// All elements converted to `T`, row-major.
  template <class T> std::vector<T> values() const {
    std::vector<T> v(header.count());
    decode_into(v.data());
    return v;
  }
};

namespace detail {

/// Largest rank accepted in an IDX header (lepton tensors have at most max_rank dimensions).
inline constexpr std::size_t idx_max_rank = max_rank;

inline std::uint32_t load_be32(unsigned char const* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
inline std::uint16_t load_be16(unsigned char const* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint64_t load_be64(unsigned char const* p) noexcept {
  return (std::uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}

inline std::string hex_byte(unsigned v) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string s = "0x";
  s += digits[(v >> 4) & 0xF];
  s += digits[v & 0xF];
  return s;
}

/// "lepton: <file>: <reason>" as a format_error.
using io::detail::format_fail;

/// Checks the 4 magic bytes; returns the element type and rank.
inline void check_idx_magic(std::string const& p, unsigned char const* m, idx_type& type,
                            std::size_t& ndims) {
  if (m[0] != 0 || m[1] != 0)
    format_fail(p, "wrong magic: an IDX file starts with two zero bytes, this one with " + hex_byte(m[0]) +
                       " " + hex_byte(m[1]) + " (not an IDX file)");
  switch (m[2]) {
  case 0x08:
  case 0x09:
  case 0x0B:
  case 0x0C:
  case 0x0D:
  case 0x0E: type = static_cast<idx_type>(m[2]); break;
  default:
    format_fail(
        p, "bad element type " + hex_byte(m[2]) +
               " in the magic number (IDX knows 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, "
               "0x0E double)");
  }
  ndims = m[3];
  if (ndims == 0)
    format_fail(p, "bad dims: the header declares 0 dimensions (need 1 to " + std::to_string(idx_max_rank) +
                       ")");
  if (ndims > idx_max_rank)
    format_fail(p, "bad dims: the header declares " + std::to_string(ndims) +
                       " dimensions, lepton reads 1 to " + std::to_string(idx_max_rank));
}

/// Parses the big-endian dims and checks that the byte counts fit in 64 bits and in size_t.
/// Returns the byte count of the element data.
inline std::uint64_t parse_idx_dims(std::string const& p, unsigned char const* raw, std::size_t ndims,
                                    idx_header& h) {
  h.dims.resize(ndims);
  for (std::size_t i = 0; i < ndims; ++i) h.dims[i] = load_be32(raw + 4 * i);
  std::optional<std::size_t> count = 1;
  for (auto d : h.dims) count = count ? io::detail::checked_mul(*count, d) : std::nullopt;
  auto const bytes = count ? io::detail::checked_mul(*count, h.element_size()) : std::nullopt;
  auto const total = bytes ? io::detail::checked_add(*bytes, h.header_bytes()) : std::nullopt;
  if (!total)
    format_fail(p, "bad dims: " + h.dims_string() + " elements of " + std::to_string(h.element_size()) +
                       " bytes overflow a 64-bit size");
  return *bytes;
}

inline std::string data_claim(idx_header const& h, std::uint64_t bytes) {
  return "header says " + h.dims_string() + " = " + std::to_string(bytes) + " bytes of data";
}

inline void check_idx_cap(std::string const& p, idx_header const& h, std::uint64_t bytes,
                          idx_options const& opt) {
  if (bytes > opt.max_bytes)
    format_fail(p, "too large: " + data_claim(h, bytes) +
                       ", more than idx_options::max_bytes = " + std::to_string(opt.max_bytes));
}

/// The first buffer of a gzip file's data; it then doubles as the data inflates.
inline constexpr std::size_t idx_gzip_first_chunk = std::size_t{1} << 20;

inline idx_file read_idx_gzip(io::detail::file_reader const& f, idx_options const& opt) {
  std::string const& p = f.name();
  std::uint64_t const size = f.size();
  // The smallest gzip file: 10-byte header, an empty deflate block, 8-byte trailer.
  if (size < 18)
    format_fail(p, "truncated: a gzip file has at least 18 bytes, this one has " + std::to_string(size));
  std::array<unsigned char, 4> trailer{};
  f.read_at(size - 4, trailer.data(), 4, "the gzip trailer");
  std::uint32_t const isize = io::detail::load_le<std::uint32_t>(trailer.data());

  io::detail::inflater src(io::detail::byte_source(f), io::detail::inflate_format::gzip);
  auto short_header = [&](std::size_t need) {
    format_fail(p, "truncated: the decompressed data has " + std::to_string(src.total_out()) +
                       " bytes, the IDX header needs " + std::to_string(need) +
                       (src.input_exhausted() ? " (the gzip stream is cut off)" : ""));
  };
  std::array<unsigned char, 4 + 4 * idx_max_rank> head{};
  if (src.read(head.data(), 4) != 4) short_header(4);
  idx_file out;
  out.path = f.name();
  std::size_t ndims = 0;
  check_idx_magic(p, head.data(), out.header.type, ndims);
  if (src.read(head.data() + 4, 4 * ndims) != 4 * ndims) short_header(4 + 4 * ndims);
  std::uint64_t bytes = parse_idx_dims(p, head.data() + 4, ndims, out.header);
  std::uint64_t total = bytes + out.header.header_bytes();

  // Validate against the compressed size and the trailer before allocating (1024 bytes of slack
  // for the gzip framing).
  if (total / io::detail::deflate_max_ratio > size + 1024)
    format_fail(p, "truncated: " + data_claim(out.header, bytes) + ", more than a " + std::to_string(size) +
                       "-byte gzip file can hold (deflate expands at most about 1032:1)");
  if (std::uint32_t want = static_cast<std::uint32_t>(total & 0xFFFFFFFFu); want != isize) {
    // The trailer holds the size mod 2^32: it tells short from long only for sizes below 4 GiB.
    bool const small = total <= 0xFFFFFFFFu;
    std::string const kind = !small ? "size mismatch: " : isize < want ? "truncated: " : "extra bytes: ";
    format_fail(p,
                kind + data_claim(out.header, bytes) + " (" + std::to_string(total) +
                    " with the header), but the gzip trailer says the file decompresses to " +
                    std::to_string(isize) + " bytes (mod 2^32)" +
                    (!small         ? ": the file is cut off or corrupt, or its header is wrong"
                     : isize < want ? ": the file is cut off or corrupt"
                                    : ": the data is longer than its header says, or the file is corrupt"));
  }
  check_idx_cap(p, out.header, bytes, opt);
  if (total > opt.max_decompressed_bytes)
    format_fail(p, "too large: " + data_claim(out.header, bytes) + " (" + std::to_string(total) +
                       " with the header), more than idx_options::max_decompressed_bytes = " +
                       std::to_string(opt.max_decompressed_bytes) +
                       " (the cap on what a gzip file may inflate to)");

  // The header, the trailer and the compressed size can all lie: grow the buffer with the data that
  // actually inflates (doubling, never beyond the declared size), so a short stream under a huge
  // header costs what it holds. reserve() before resize() allocates exactly the new size.
  std::size_t got = 0;
  while (got < bytes) {
    std::size_t const cap = out.bytes.size();
    std::size_t const next = static_cast<std::size_t>(std::min<std::uint64_t>(
        bytes, std::max<std::uint64_t>(idx_gzip_first_chunk, std::uint64_t{2} * cap)));
    out.bytes.reserve(next);
    out.bytes.resize(next);
    std::size_t const n = src.read(out.bytes.data() + got, next - got);
    got += n;
    if (got < next) break; // the stream ended or was cut off
  }
  if (got != bytes)
    format_fail(
        p, "truncated: " + data_claim(out.header, bytes) + ", file has " + std::to_string(got) +
               (src.input_exhausted() ? " (the gzip stream is cut off)" : " (the gzip stream ends early)"));
  unsigned char extra = 0;
  if (src.read(&extra, 1) != 0)
    format_fail(p, "extra bytes: " + data_claim(out.header, bytes) + ", the file decompresses to more");
  if (!src.ended()) format_fail(p, "truncated: the gzip stream is cut off before its end");
  if (auto t = src.trailing_bytes(); t != 0)
    format_fail(p, "extra bytes: " + std::to_string(t) + " bytes follow the end of the gzip stream" +
                       (src.trailing_is_gzip()
                            ? " (a second gzip member; concatenated gzip files are not supported)"
                            : " (trailing garbage)"));
  return out;
}

inline idx_file read_idx_raw(io::detail::file_reader const& f, idx_options const& opt) {
  std::string const& p = f.name();
  std::uint64_t const size = f.size();
  std::array<unsigned char, 4 + 4 * idx_max_rank> head{};
  if (size < 4)
    format_fail(p, "truncated: the file has " + std::to_string(size) + " bytes, the IDX header needs 4");
  f.read_at(0, head.data(), 4, "the IDX magic number");
  idx_file out;
  out.path = f.name();
  std::size_t ndims = 0;
  check_idx_magic(p, head.data(), out.header.type, ndims);
  std::size_t hbytes = 4 + 4 * ndims;
  if (size < hbytes)
    format_fail(p, "truncated: the file has " + std::to_string(size) + " bytes, the IDX header with " +
                       std::to_string(ndims) + " dimensions needs " + std::to_string(hbytes));
  f.read_at(4, head.data() + 4, 4 * ndims, "the IDX header");
  std::uint64_t bytes = parse_idx_dims(p, head.data() + 4, ndims, out.header);
  std::uint64_t have = size - hbytes;
  if (have < bytes)
    format_fail(p, "truncated: " + data_claim(out.header, bytes) + ", file has " + std::to_string(have));
  if (have > bytes)
    format_fail(p, "extra bytes: " + data_claim(out.header, bytes) + ", file has " + std::to_string(have) +
                       " (" + std::to_string(have - bytes) + " trailing bytes)");
  check_idx_cap(p, out.header, bytes, opt);
  out.bytes.resize(static_cast<std::size_t>(bytes));
  f.read_at(hbytes, out.bytes.data(), out.bytes.size(), "the IDX data");
  return out;
}

template <class T, class S> T convert_idx_value(S v, std::filesystem::path const& p, std::size_t i) {
  if constexpr (std::is_floating_point_v<S> && std::is_integral_v<T>) {
    // Float-to-integer conversion of a non-finite or out-of-range value is undefined behaviour.
    if (!std::isfinite(v) || v < static_cast<S>(std::numeric_limits<T>::lowest()) ||
        v >= static_cast<S>(std::numeric_limits<T>::max()) + S(1))
      format_fail(p.string(), "element " + std::to_string(i) + " = " + std::to_string(v) +
                                  " does not fit in the requested integer type");
  }
  return static_cast<T>(v);
}

} // namespace detail

template <class T> void idx_file::decode_into(T* out) const {
  static_assert(std::is_arithmetic_v<T>, "lepton: IDX elements decode to arithmetic types");
  std::size_t const n = header.count();
  unsigned char const* b = bytes.data();
  switch (header.type) {
  case idx_type::u8:
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(b[i]);
    break;
  case idx_type::i8:
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(static_cast<std::int8_t>(b[i]));
    break;
  case idx_type::i16:
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<T>(static_cast<std::int16_t>(detail::load_be16(b + 2 * i)));
    break;
  case idx_type::i32:
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<T>(static_cast<std::int32_t>(detail::load_be32(b + 4 * i)));
    break;
  case idx_type::f32:
    for (std::size_t i = 0; i < n; ++i)
      out[i] = detail::convert_idx_value<T>(std::bit_cast<float>(detail::load_be32(b + 4 * i)), path, i);
    break;
  case idx_type::f64:
    for (std::size_t i = 0; i < n; ++i)
      out[i] = detail::convert_idx_value<T>(std::bit_cast<double>(detail::load_be64(b + 8 * i)), path, i);
    break;
  }
}

/// @brief Reads an IDX file, raw or gzip-compressed (detected from its first two bytes).
///
/// Validates the magic number, the element type, the rank (1 to lepton::max_rank) and the sizes
/// (overflow-checked, compared with the file size, or for gzip with the trailer's uncompressed
/// size, the compressed size and idx_options::max_decompressed_bytes) before allocating. A gzip
/// file's buffer then grows with the data that inflates, so a lying header costs no more than the
/// stream holds; inflation stops with an error as soon as the data is cut off or longer than declared.
/// @throws lepton::io_error     the file is missing, a directory, or unreadable
/// @throws lepton::format_error the content is malformed (the message names the file and the fault)
///
/// **Example**:
/// ```
/// auto f = lepton::data::read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
/// // f.header.dims == {10000, 28, 28}, f.header.type == lepton::data::idx_type::u8
/// ```
inline idx_file read_idx(std::filesystem::path const& path, idx_options const& options = {}) {
  io::detail::file_reader f(path);
  std::array<unsigned char, 2> first{};
  if (f.size() >= 2) f.read_at(0, first.data(), 2, "the magic number");
  if (f.size() >= 2 && first[0] == 0x1f && first[1] == 0x8b) return detail::read_idx_gzip(f, options);
  return detail::read_idx_raw(f, options);
}

/// @brief Reads an IDX file into a tensor whose static dimensions must match the file's.
///
/// The rank must equal sizeof...(Dims); each static dimension must equal the file's (a `dyn` one
/// takes the file's size). Elements are converted to `T`.
/// @tparam T     element type of the result
/// @tparam Dims  expected dimensions, `lepton::dyn` for any size
/// @throws lepton::format_error naming the file if the rank or a dimension differs (and everything
///         read_idx throws)
///
/// **Example**:
/// ```
/// auto img = lepton::data::read_idx_tensor<std::uint8_t, lepton::dyn, 28, 28>(path); // (n, 28, 28)
/// ```
template <class T, std::size_t... Dims>
tensor<T, Dims...> read_idx_tensor(std::filesystem::path const& path, idx_options const& options = {}) {
  static_assert(sizeof...(Dims) >= 1, "lepton: read_idx_tensor needs at least one dimension");
  auto f = read_idx(path, options);
  constexpr std::array<std::size_t, sizeof...(Dims)> want{Dims...};
  bool ok = f.header.dims.size() == want.size();
  for (std::size_t i = 0; ok && i < want.size(); ++i) ok = want[i] == dyn || want[i] == f.header.dims[i];
  if (!ok)
    io::detail::format_fail(path.string(), "unexpected dims: expected " + to_string(dims<Dims...>{}) +
                                               ", the file holds " + f.header.dims_string());
  shape_t<sizeof...(Dims)> s{};
  for (std::size_t i = 0; i < want.size(); ++i) s[i] = f.header.dims[i];
  tensor<T, Dims...> t(s);
  f.decode_into(t.data());
  return t;
}

} // namespace lepton::data
