#pragma once
/// @file npy.hpp
/// @brief Reading and writing numpy's .npy format (one tensor per file).
///
/// Layout: the magic `\x93NUMPY`, a version byte pair, a little-endian header length (2 bytes in
/// version 1.0, 4 bytes in 2.0 and 3.0), a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and a newline so
/// that the data starts at a multiple of 64, then the raw data.
///
/// lepton writes version 1.0 (2.0 if the header would exceed 65535 bytes), little-endian, C order,
/// byte-identical to `numpy.save`. It reads versions 1.0, 2.0 and 3.0, the dtypes `<f4 <f8 <i4 <i8 |u1`,
/// their big-endian forms `>f4 >f8 >i4 >i8` (byte-swapped on load) and `fortran_order: True` (transposed
/// to C order on load). The header dict is parsed as a strict literal, never evaluated: object arrays
/// (`|O`, pickles), structured dtypes and every other dtype are lepton::format_errors, as are a wrong
/// magic or version, a header over the limit, missing, unknown or repeated keys, and data that is shorter
/// or longer than the shape needs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "dtype.hpp"
#include "dyn_tensor.hpp"
#include "reader.hpp"

namespace lepton::io {
namespace detail {

inline constexpr unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/// The parsed header dict of a .npy file.
struct npy_header {
  dtype type;
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::uint64_t data_offset = 0;
};

/// A strict parser for the Python dict literal of a .npy header.
class npy_dict_parser {
public:
  npy_dict_parser(std::string_view text, std::string const& file) : m_s(text), m_file(file) {}

  npy_header parse() {
    npy_header h{};
    bool have_descr = false, have_order = false, have_shape = false;
    std::string descr;
    ws();
    expect('{');
    ws();
    while (peek() != '}') {
      std::string key = string_literal("a key");
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (have_descr) fail("the key 'descr' appears twice");
        have_descr = true;
        if (peek() == '[') fail("structured dtypes (a list as 'descr') are not supported");
        if (peek() != '\'' && peek() != '"') fail("'descr' is not a string");
        descr = string_literal("'descr'");
      } else if (key == "fortran_order") {
        if (have_order) fail("the key 'fortran_order' appears twice");
        have_order = true;
        h.fortran_order = boolean();
      } else if (key == "shape") {
        if (have_shape) fail("the key 'shape' appears twice");
        have_shape = true;
        h.shape = tuple();
      } else {
        fail("unknown key '" + key + "' (a .npy header has exactly 'descr', 'fortran_order' and 'shape')");
      }
      ws();
      if (peek() == ',') {
        ++m_pos;
        ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}' at byte " + std::to_string(m_pos) + " of the header");
      }
    }
    ++m_pos;
    while (m_pos < m_s.size() &&
           (m_s[m_pos] == ' ' || m_s[m_pos] == '\n' || m_s[m_pos] == '\t' || m_s[m_pos] == '\r'))
      ++m_pos;
    if (m_pos != m_s.size()) fail("unexpected text after the header dict");
    if (!have_descr) fail("the header has no 'descr'");
    if (!have_order) fail("the header has no 'fortran_order'");
    if (!have_shape) fail("the header has no 'shape'");
    set_dtype(h, descr);
    return h;
  }

private:
  [[noreturn]] void fail(std::string const& why) const { format_fail(m_file, "bad .npy header: " + why); }
  char peek() const {
    if (m_pos >= m_s.size()) fail("the header dict ends early");
    return m_s[m_pos];
  }
  void ws() {
    while (m_pos < m_s.size() &&
           (m_s[m_pos] == ' ' || m_s[m_pos] == '\t' || m_s[m_pos] == '\n' || m_s[m_pos] == '\r'))
      ++m_pos;
  }
  void expect(char c) {
    if (peek() != c)
      fail(std::string("expected '") + c + "' at byte " + std::to_string(m_pos) + " of the header");
    ++m_pos;
  }
  std::string string_literal(char const* what) {
    char q = peek();
    if (q != '\'' && q != '"')
      fail(std::string("expected a string for ") + what + " at byte " + std::to_string(m_pos));
    ++m_pos;
    std::string out;
    for (;;) {
      char c = peek();
      ++m_pos;
      if (c == q) return out;
      if (c == '\\' || c == '\n' || static_cast<unsigned char>(c) < 0x20 ||
          static_cast<unsigned char>(c) >= 0x7f)
        fail(std::string("unsupported character in a string of the header"));
      if (out.size() > 64) fail("a string of the header is too long");
      out += c;
    }
  }
  bool boolean() {
    if (m_s.substr(m_pos, 4) == "True") {
      m_pos += 4;
      return true;
    }
    if (m_s.substr(m_pos, 5) == "False") {
      m_pos += 5;
      return false;
    }
    fail("'fortran_order' is not True or False");
  }
  std::size_t integer() {
    if (peek() < '0' || peek() > '9') fail("a shape entry is not a non-negative integer");
    std::size_t v = 0;
    while (m_pos < m_s.size() && m_s[m_pos] >= '0' && m_s[m_pos] <= '9') {
      auto m = checked_mul(v, 10);
      auto a = m ? checked_add(*m, static_cast<std::size_t>(m_s[m_pos] - '0')) : std::nullopt;
      if (!a) fail("a shape entry is too large");
      v = *a;
      ++m_pos;
    }
    if (m_pos < m_s.size() && m_s[m_pos] == 'L') ++m_pos; // Python 2 longs, written by old numpy
    return v;
  }
  std::vector<std::size_t> tuple() {
    if (peek() != '(') fail("'shape' is not a tuple");
    ++m_pos;
    std::vector<std::size_t> shape;
    ws();
    if (peek() == ')') {
      ++m_pos;
      return shape;
    }
    for (;;) {
      shape.push_back(integer());
      if (shape.size() > max_rank)
        fail("'shape' has more than " + std::to_string(max_rank) + " dimensions (the rank limit)");
      ws();
      if (peek() == ')') {
        if (shape.size() == 1) fail("'shape' is not a tuple (one dimension needs a trailing comma)");
        ++m_pos;
        return shape;
      }
      expect(',');
      ws();
      if (peek() == ')') {
        ++m_pos;
        return shape;
      }
    }
  }
  void set_dtype(npy_header& h, std::string const& d) const {
    if (d.size() >= 2 && d[1] == 'O')
      fail("object arrays ('" + d + "', pickled Python objects) are not supported");
    std::string_view body = d.size() == 3 ? std::string_view(d).substr(1) : std::string_view{};
    char order = d.empty() ? '?' : d[0];
    std::optional<dtype> t;
    if (body == "f4") t = dtype::f32;
    if (body == "f8") t = dtype::f64;
    if (body == "i4") t = dtype::i32;
    if (body == "i8") t = dtype::i64;
    if (body == "u1") t = dtype::u8;
    bool const one_byte = t == dtype::u8;
    if (!t || !(order == '<' || order == '>' || (order == '|' && one_byte)))
      fail("unsupported dtype '" + d + "' (lepton reads <f4, <f8, <i4, <i8, |u1 and their big-endian forms)");
    h.type = *t;
    h.big_endian = order == '>' && !one_byte;
  }

  std::string_view m_s;
  std::string const& m_file;
  std::size_t m_pos = 0;
};

/// Reads the magic, version, length and dict of a .npy of `total` bytes from a sequential source:
/// `next(dst, n, what)` gives its next `n` bytes. Every length is checked against `total` first.
template <class Next> npy_header read_npy_header(std::string const& file, std::uint64_t total, Next& next,
                                                 load_options const& opt) {
  unsigned char pre[12];
  if (total < 10)
    format_fail(file, "truncated: " + std::to_string(total) + " bytes is too short for a .npy file");
  next(pre, 10, "magic");
  if (std::memcmp(pre, npy_magic, 6) != 0)
    format_fail(file, "not a .npy file (the magic string \\x93NUMPY is missing)");
  unsigned major = pre[6], minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    format_fail(file, "unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor) +
                          " (lepton reads 1.0, 2.0 and 3.0)");
  std::uint64_t hlen = 0, start = 0;
  if (major == 1) {
    hlen = load_le<std::uint16_t>(pre + 8);
    start = 10;
  } else {
    if (total < 12)
      format_fail(file, "truncated: " + std::to_string(total) + " bytes is too short for a version " +
                            std::to_string(major) + ".0 .npy file");
    next(pre + 10, 2, "header length");
    hlen = load_le<std::uint32_t>(pre + 8);
    start = 12;
  }
  if (hlen > opt.max_npy_header_bytes)
    format_fail(file, "header length " + std::to_string(hlen) + " exceeds the limit of " +
                          std::to_string(opt.max_npy_header_bytes) +
                          " bytes (load_options::max_npy_header_bytes)");
  if (hlen > total - start)
    format_fail(file, "truncated: header length " + std::to_string(hlen) + " but only " +
                          std::to_string(total - start) + " bytes follow");
  std::string text(static_cast<std::size_t>(hlen), '\0');
  next(text.data(), text.size(), "header");
  npy_header h = npy_dict_parser(text, file).parse();
  h.data_offset = start + hlen;
  return h;
}

inline void byte_swap(void* data, std::size_t n, std::size_t item) noexcept {
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i, p += item) std::reverse(p, p + item);
}

/// Rewrites Fortran-order elements `src` as C order into `dst`.
inline void fortran_to_c(std::byte const* src, std::byte* dst, std::vector<std::size_t> const& shape,
                         std::size_t item) noexcept {
  std::size_t const r = shape.size();
  std::size_t n = 1;
  for (auto d : shape) n *= d;
  if (n == 0) return;
  std::vector<std::size_t> fstride(r), idx(r, 0);
  for (std::size_t k = 0, s = 1; k < r; ++k) {
    fstride[k] = s;
    s *= shape[k];
  }
  std::size_t off = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::memcpy(dst + i * item, src + off * item, item);
    for (std::size_t k = r; k-- > 0;) {
      if (++idx[k] < shape[k]) {
        off += fstride[k];
        break;
      }
      off -= (shape[k] - 1) * fstride[k];
      idx[k] = 0;
    }
  }
}

/// Reads a .npy of `total` bytes from a sequential source (`next(dst, n, what)` gives its next `n`
/// bytes, see read_npy_header): the data size that the header declares must equal what `total`
/// leaves, and is checked before the tensor is allocated, so a header can never make the loader
/// allocate more than the source holds. (.npz entries are read this way while they inflate.)
template <class Next> dyn_tensor read_npy_stream(std::string const& file, std::uint64_t total, Next&& next,
                                                 load_options const& opt) {
  npy_header h = read_npy_header(file, total, next, opt);
  auto nbytes = checked_nbytes(h.type, h.shape);
  if (!nbytes)
    format_fail(file, "shape " + shape_string(h.shape) + " has too many elements (its byte size overflows)");
  std::uint64_t const have = total - h.data_offset;
  if (have < *nbytes)
    format_fail(file, "truncated: " + std::string(to_string(h.type)) + " " + shape_string(h.shape) +
                          " needs " + std::to_string(*nbytes) + " bytes of data but the file has " +
                          std::to_string(have));
  if (have > *nbytes)
    format_fail(file, std::to_string(have - *nbytes) + " unexpected bytes after the data of " +
                          std::string(to_string(h.type)) + " " + shape_string(h.shape));
  auto t = dyn_tensor::uninitialized(h.type, h.shape);
  if (h.fortran_order && h.shape.size() > 1) {
    auto tmp = std::make_unique_for_overwrite<std::byte[]>(*nbytes ? *nbytes : 1);
    next(tmp.get(), *nbytes, "data");
    fortran_to_c(tmp.get(), static_cast<std::byte*>(t.data()), h.shape, itemsize(h.type));
  } else {
    next(t.data(), *nbytes, "data");
  }
  if (h.big_endian) byte_swap(t.data(), t.size(), itemsize(h.type));
  return t;
}

inline dyn_tensor read_npy(byte_source const& src, load_options const& opt) {
  std::uint64_t pos = 0;
  auto next = [&](void* dst, std::size_t n, std::string const& what) {
    src.read(pos, dst, n, what);
    pos += n;
  };
  return read_npy_stream(src.name(), src.size(), next, opt);
}

/// The header (magic, version, length, dict, padding) numpy.save writes for this dtype and shape,
/// including numpy's spare spaces that let the first dimension grow in place.
inline std::string npy_header_bytes(dtype type, std::vector<std::size_t> const& shape) {
  std::string dict = "{'descr': '" + std::string(npy_descr(type)) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  if (!shape.empty()) dict.append(21 - std::min<std::size_t>(21, std::to_string(shape[0]).size()), ' ');
  std::size_t const hlen = dict.size() + 1; // the final newline
  auto padded = [&](std::size_t pre) { return hlen + 64 - (pre + hlen) % 64; };
  bool const v2 = padded(10) > 65535;
  std::size_t const total = padded(v2 ? 12 : 10);
  dict.append(total - hlen, ' ');
  dict += '\n';
  std::string out(reinterpret_cast<char const*>(npy_magic), 6);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  if (v2)
    store_le<std::uint32_t>(out, static_cast<std::uint32_t>(total));
  else
    store_le<std::uint16_t>(out, static_cast<std::uint16_t>(total));
  return out + dict;
}

/// Bytes of a complete .npy file.
inline std::vector<std::byte> npy_bytes(tensor_ref const& t) {
  auto n = checked_nbytes(t.type, t.shape);
  if (!n) throw value_error("save_npy: tensor '" + t.name + "': size overflows");
  if (*n && !t.data) throw value_error("save_npy: tensor '" + t.name + "' has no data pointer");
  std::string h = npy_header_bytes(t.type, t.shape);
  std::vector<std::byte> out(h.size() + *n);
  std::memcpy(out.data(), h.data(), h.size());
  if (*n) std::memcpy(out.data() + h.size(), t.data, *n);
  return out;
}

} // namespace detail

/// @brief The bytes of a .npy file holding `t` (what save_npy writes; identical to numpy.save's).
///
/// **Example**: `std::vector<std::byte> blob = lepton::io::encode_npy(lepton::io::ref("x", x));`
inline std::vector<std::byte> encode_npy(tensor_ref const& t) { return detail::npy_bytes(t); }

/// @brief Saves one tensor as a .npy file (version 1.0, little-endian, C order), atomically.
///
/// The name of `t` is not stored. Throws lepton::io_error naming the file if it cannot be written.
///
/// **Example**: `lepton::io::save_npy("w.npy", lepton::io::ref("w", w));`
inline void save_npy(std::filesystem::path const& path, tensor_ref const& t,
                     atomic_write_options options = {}) {
  auto bytes = detail::npy_bytes(t);
  write_file_atomic(path, bytes, options);
}

/// @brief Saves a lepton tensor or view as a .npy file, atomically.
///
/// **Example**: `lepton::tensor<double, 3, 4> m;  lepton::io::save_npy("m.npy", m);`
template <dense D>
  requires storable_element<typename std::remove_cvref_t<D>::value_type>
void save_npy(std::filesystem::path const& path, D const& t, atomic_write_options options = {}) {
  save_npy(path, ref("", t), options);
}

/// @brief Loads a .npy file (validated completely, see the file comment).
///
/// **Example**: `auto x = lepton::io::load_npy("x.npy").as<float, lepton::dyn, 784>();`
inline dyn_tensor load_npy(std::filesystem::path const& path, load_options const& options = {}) {
  detail::file_reader f(path);
  return detail::read_npy(detail::byte_source(f, 0, f.size(), f.name()), options);
}

/// @brief Loads a .npy file held in memory; `name` is used in messages.
///
/// **Example**: `auto x = lepton::io::decode_npy(blob, "x.npy");`
inline dyn_tensor decode_npy(std::span<std::byte const> bytes, std::string name = "<memory>",
                             load_options const& options = {}) {
  return detail::read_npy(detail::byte_source(bytes, std::move(name)), options);
}

/// @brief Loads a .npy file into an existing tensor with the strong guarantee: on any exception the
///        tensor is unchanged. The target's name is only used in messages.
///
/// **Example**:
/// ```
/// lepton::tensor<float, 3, 4> m;
/// lepton::io::load_npy_into("m.npy", lepton::io::target("m", m));
/// ```
inline void load_npy_into(std::filesystem::path const& path, tensor_target const& t,
                          load_options const& options = {}) {
  dyn_tensor d = load_npy(path, options);
  std::string const& file = path.string();
  std::vector<detail::entry_info> info{{&t.name, d.type(), &d.shape()}};
  std::span<tensor_target const> targets(&t, 1);
  auto match = detail::match_targets(file, info, targets, {});
  detail::fill_targets(
      targets, match, [&](std::size_t) { return std::span<std::byte const>(d.bytes()); },
      [&](std::size_t) -> std::vector<std::size_t> const& { return d.shape(); });
}

} // namespace lepton::io
