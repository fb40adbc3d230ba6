#pragma once
/// @file idx.hpp
/// @brief Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
///
/// An IDX file is a 4-byte magic number (two zero bytes, an element-type byte, the number of
/// dimensions), one big-endian 32-bit size per dimension, then the elements in row-major order,
/// big-endian. Every size is validated against the file before anything is allocated (see
/// docs/data.md): hostile or damaged files raise lepton::format_error, never a crash or a huge
/// allocation.

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <zlib.h>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "io_util.hpp"

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

/// Checks the 4 magic bytes; returns the element type and rank.
inline void check_idx_magic(std::filesystem::path const& p, unsigned char const* m, idx_type& type,
                            std::size_t& ndims) {
  if (m[0] != 0 || m[1] != 0)
    throw_format(p, "wrong magic: an IDX file starts with two zero bytes, this one with " + hex_byte(m[0]) +
                        " " + hex_byte(m[1]) + " (not an IDX file)");
  switch (m[2]) {
  case 0x08:
  case 0x09:
  case 0x0B:
  case 0x0C:
  case 0x0D:
  case 0x0E: type = static_cast<idx_type>(m[2]); break;
  default:
    throw_format(
        p, "bad element type " + hex_byte(m[2]) +
               " in the magic number (IDX knows 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, "
               "0x0E double)");
  }
  ndims = m[3];
  if (ndims == 0)
    throw_format(p, "bad dims: the header declares 0 dimensions (need 1 to " + std::to_string(idx_max_rank) +
                        ")");
  if (ndims > idx_max_rank)
    throw_format(p, "bad dims: the header declares " + std::to_string(ndims) +
                        " dimensions, lepton reads 1 to " + std::to_string(idx_max_rank));
}

/// Parses the big-endian dims and checks that the byte counts fit in 64 bits and in size_t.
/// Returns the byte count of the element data.
inline std::uint64_t parse_idx_dims(std::filesystem::path const& p, unsigned char const* raw,
                                    std::size_t ndims, idx_header& h) {
  h.dims.resize(ndims);
  for (std::size_t i = 0; i < ndims; ++i) h.dims[i] = load_be32(raw + 4 * i);
  std::uint64_t count = 1;
  std::uint64_t bytes = 0;
  std::uint64_t total = 0;
  bool ok = true;
  for (auto d : h.dims) ok = ok && checked_mul(count, d, count);
  ok = ok && checked_mul(count, h.element_size(), bytes) && checked_add(bytes, h.header_bytes(), total);
  if (!ok || total > std::numeric_limits<std::size_t>::max())
    throw_format(p, "bad dims: " + h.dims_string() + " elements of " + std::to_string(h.element_size()) +
                        " bytes overflow a 64-bit size");
  return bytes;
}

inline std::string data_claim(idx_header const& h, std::uint64_t bytes) {
  return "header says " + h.dims_string() + " = " + std::to_string(bytes) + " bytes of data";
}

inline void check_idx_cap(std::filesystem::path const& p, idx_header const& h, std::uint64_t bytes,
                          idx_options const& opt) {
  if (bytes > opt.max_bytes)
    throw_format(p, "too large: " + data_claim(h, bytes) +
                        ", more than idx_options::max_bytes = " + std::to_string(opt.max_bytes));
}

/// The first buffer of a gzip file's data; it then doubles as the data inflates.
inline constexpr std::size_t idx_gzip_first_chunk = std::size_t{1} << 20;

/// Streams the decompressed bytes of a single-member gzip file.
class gzip_source {
public:
  gzip_source(std::FILE* f, std::uint64_t file_size, std::filesystem::path const& p)
      : m_file(f), m_file_size(file_size), m_path(p) {
    if (inflateInit2(&m_zs, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
  }
  gzip_source(gzip_source const&) = delete;
  gzip_source& operator=(gzip_source const&) = delete;
  ~gzip_source() { inflateEnd(&m_zs); }

  /// Inflates up to `n` bytes into `dst`; returns how many were produced. Fewer than `n` means the
  /// gzip stream ended (ended()) or the compressed input ran out first (truncated()).
  std::size_t read(unsigned char* dst, std::size_t n) {
    std::size_t produced = 0;
    while (produced < n && !m_ended) {
      if (m_zs.avail_in == 0) {
        if (m_eof) break;
        std::size_t got = read_some(m_file, m_in.data(), m_in.size(), m_path);
        m_read += got;
        if (got < m_in.size()) m_eof = true;
        if (got == 0) break;
        m_zs.next_in = m_in.data();
        m_zs.avail_in = static_cast<uInt>(got);
      }
      std::size_t want = n - produced;
      if (want > (std::size_t{1} << 30)) want = std::size_t{1} << 30;
      m_zs.next_out = dst + produced;
      m_zs.avail_out = static_cast<uInt>(want);
      int rc = inflate(&m_zs, Z_NO_FLUSH);
      produced += want - m_zs.avail_out;
      if (rc == Z_STREAM_END) {
        m_ended = true;
      } else if (rc == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR) {
        throw_format(m_path, std::string("corrupt gzip data: ") + (m_zs.msg ? m_zs.msg : "inflate failed"));
      } else if (rc == Z_BUF_ERROR && m_zs.avail_in != 0 && m_zs.avail_out != 0) {
        throw_format(m_path, "corrupt gzip data: inflate made no progress");
      }
    }
    m_total_out += produced;
    return produced;
  }

  bool ended() const noexcept { return m_ended; }
  bool truncated() const noexcept { return !m_ended && m_eof && m_zs.avail_in == 0; }
  /// Decompressed bytes produced so far.
  std::uint64_t total_out() const noexcept { return m_total_out; }
  /// After ended(): compressed bytes of the file that follow the end of the gzip stream.
  std::uint64_t trailing_bytes() const noexcept { return m_zs.avail_in + (m_file_size - m_read); }
  /// After ended(): whether the trailing bytes start like another gzip member.
  bool trailing_is_gzip() const noexcept {
    return m_zs.avail_in >= 2 && m_zs.next_in[0] == 0x1f && m_zs.next_in[1] == 0x8b;
  }

private:
  std::FILE* m_file;
  std::uint64_t m_file_size;
  std::filesystem::path const& m_path;
  z_stream m_zs{};
  std::vector<unsigned char> m_in = std::vector<unsigned char>(std::size_t{1} << 16);
  std::uint64_t m_read = 0;
  std::uint64_t m_total_out = 0;
  bool m_eof = false;
  bool m_ended = false;
};

/// Deflate cannot expand data by more than about 1032:1; allow some slack for the gzip framing.
inline constexpr std::uint64_t max_deflate_ratio = 1032;

inline idx_file read_idx_gzip(std::filesystem::path const& p, opened_file& of, idx_options const& opt) {
  std::FILE* f = of.file.get();
  // The smallest gzip file: 10-byte header, an empty deflate block, 8-byte trailer.
  if (of.size < 18)
    throw_format(p, "truncated: a gzip file has at least 18 bytes, this one has " + std::to_string(of.size));
  std::array<unsigned char, 4> trailer{};
  if (std::fseek(f, static_cast<long>(of.size - 4), SEEK_SET) != 0 ||
      read_some(f, trailer.data(), 4, p) != 4 || std::fseek(f, 0, SEEK_SET) != 0)
    throw_io(p, "read error: cannot read the gzip trailer");
  std::uint32_t isize = std::uint32_t{trailer[0]} | (std::uint32_t{trailer[1]} << 8) |
                        (std::uint32_t{trailer[2]} << 16) | (std::uint32_t{trailer[3]} << 24);

  gzip_source src(f, of.size, p);
  auto short_header = [&](std::size_t need) {
    throw_format(p, "truncated: the decompressed data has " + std::to_string(src.total_out()) +
                        " bytes, the IDX header needs " + std::to_string(need) +
                        (src.truncated() ? " (the gzip stream is cut off)" : ""));
  };
  std::array<unsigned char, 4 + 4 * idx_max_rank> head{};
  if (src.read(head.data(), 4) != 4) short_header(4);
  idx_file out;
  out.path = p;
  std::size_t ndims = 0;
  check_idx_magic(p, head.data(), out.header.type, ndims);
  if (src.read(head.data() + 4, 4 * ndims) != 4 * ndims) short_header(4 + 4 * ndims);
  std::uint64_t bytes = parse_idx_dims(p, head.data() + 4, ndims, out.header);
  std::uint64_t total = bytes + out.header.header_bytes();

  // Validate against the compressed size and the trailer before allocating.
  if (total / max_deflate_ratio > of.size + 1024)
    throw_format(p, "truncated: " + data_claim(out.header, bytes) + ", more than a " +
                        std::to_string(of.size) +
                        "-byte gzip file can hold (deflate expands at most about 1032:1)");
  if (std::uint32_t want = static_cast<std::uint32_t>(total & 0xFFFFFFFFu); want != isize) {
    // The trailer holds the size mod 2^32: it tells short from long only for sizes below 4 GiB.
    bool const small = total <= 0xFFFFFFFFu;
    std::string const kind = !small ? "size mismatch: " : isize < want ? "truncated: " : "extra bytes: ";
    throw_format(p,
                 kind + data_claim(out.header, bytes) + " (" + std::to_string(total) +
                     " with the header), but the gzip trailer says the file decompresses to " +
                     std::to_string(isize) + " bytes (mod 2^32)" +
                     (!small         ? ": the file is cut off or corrupt, or its header is wrong"
                      : isize < want ? ": the file is cut off or corrupt"
                                     : ": the data is longer than its header says, or the file is corrupt"));
  }
  check_idx_cap(p, out.header, bytes, opt);
  if (total > opt.max_decompressed_bytes)
    throw_format(p, "too large: " + data_claim(out.header, bytes) + " (" + std::to_string(total) +
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
    throw_format(p,
                 "truncated: " + data_claim(out.header, bytes) + ", file has " + std::to_string(got) +
                     (src.truncated() ? " (the gzip stream is cut off)" : " (the gzip stream ends early)"));
  unsigned char extra = 0;
  if (src.read(&extra, 1) != 0)
    throw_format(p, "extra bytes: " + data_claim(out.header, bytes) + ", the file decompresses to more");
  if (!src.ended()) throw_format(p, "truncated: the gzip stream is cut off before its end");
  if (auto t = src.trailing_bytes(); t != 0)
    throw_format(p, "extra bytes: " + std::to_string(t) + " bytes follow the end of the gzip stream" +
                        (src.trailing_is_gzip()
                             ? " (a second gzip member; concatenated gzip files are not supported)"
                             : " (trailing garbage)"));
  return out;
}

inline idx_file read_idx_raw(std::filesystem::path const& p, opened_file& of,
                             std::array<unsigned char, 2> first, idx_options const& opt) {
  std::FILE* f = of.file.get();
  std::array<unsigned char, 4 + 4 * idx_max_rank> head{};
  head[0] = first[0];
  head[1] = first[1];
  if (of.size < 4)
    throw_format(p, "truncated: the file has " + std::to_string(of.size) + " bytes, the IDX header needs 4");
  if (read_some(f, head.data() + 2, 2, p) != 2)
    throw_format(p, "truncated: the file shrank while being read");
  idx_file out;
  out.path = p;
  std::size_t ndims = 0;
  check_idx_magic(p, head.data(), out.header.type, ndims);
  std::size_t hbytes = 4 + 4 * ndims;
  if (of.size < hbytes)
    throw_format(p, "truncated: the file has " + std::to_string(of.size) + " bytes, the IDX header with " +
                        std::to_string(ndims) + " dimensions needs " + std::to_string(hbytes));
  if (read_some(f, head.data() + 4, 4 * ndims, p) != 4 * ndims)
    throw_format(p, "truncated: the file shrank while being read");
  std::uint64_t bytes = parse_idx_dims(p, head.data() + 4, ndims, out.header);
  std::uint64_t have = of.size - hbytes;
  if (have < bytes)
    throw_format(p, "truncated: " + data_claim(out.header, bytes) + ", file has " + std::to_string(have));
  if (have > bytes)
    throw_format(p, "extra bytes: " + data_claim(out.header, bytes) + ", file has " + std::to_string(have) +
                        " (" + std::to_string(have - bytes) + " trailing bytes)");
  check_idx_cap(p, out.header, bytes, opt);
  out.bytes.resize(static_cast<std::size_t>(bytes));
  if (read_some(f, out.bytes.data(), out.bytes.size(), p) != out.bytes.size())
    throw_format(p, "truncated: the file shrank while being read");
  return out;
}

template <class T, class S> T convert_idx_value(S v, std::filesystem::path const& p, std::size_t i) {
  if constexpr (std::is_floating_point_v<S> && std::is_integral_v<T>) {
    // Float-to-integer conversion of a non-finite or out-of-range value is undefined behaviour.
    if (!std::isfinite(v) || v < static_cast<S>(std::numeric_limits<T>::lowest()) ||
        v >= static_cast<S>(std::numeric_limits<T>::max()) + S(1))
      throw_format(p, "element " + std::to_string(i) + " = " + std::to_string(v) +
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
  auto of = detail::open_regular_file(path);
  std::array<unsigned char, 2> first{};
  std::size_t got = detail::read_some(of.file.get(), first.data(), 2, path);
  if (got == 2 && first[0] == 0x1f && first[1] == 0x8b) {
    if (std::fseek(of.file.get(), 0, SEEK_SET) != 0) detail::throw_io(path, "read error: cannot seek");
    return detail::read_idx_gzip(path, of, options);
  }
  if (got < 2)
    detail::throw_format(path, "truncated: the file has " + std::to_string(of.size) +
                                   " bytes, the IDX header needs 4");
  return detail::read_idx_raw(path, of, first, options);
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
    detail::throw_format(path, "unexpected dims: expected " + to_string(dims<Dims...>{}) +
                                   ", the file holds " + f.header.dims_string());
  shape_t<sizeof...(Dims)> s{};
  for (std::size_t i = 0; i < want.size(); ++i) s[i] = f.header.dims[i];
  tensor<T, Dims...> t(s);
  f.decode_into(t.data());
  return t;
}

} // namespace lepton::data
