#pragma once
/// @file safetensors.hpp
/// @brief Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes
///        of JSON header, then the raw little-endian tensor data.
///
/// Header: `{"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}`
/// padded with spaces so that the data starts at a multiple of 8. Offsets are relative to the start of
/// the data. lepton writes the tensors in the order given, contiguously, and loads them in offset order.
/// Every load validates the whole file before returning anything (see docs/io.md for the list of checks);
/// every failure is a lepton::format_error (malformed content) or lepton::io_error (cannot read) whose
/// message names the file and the reason.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "dtype.hpp"
#include "dyn_tensor.hpp"
#include "reader.hpp"

namespace lepton::io {

namespace detail {

/// One tensor of a validated safetensors header.
struct st_entry {
  std::string name;
  dtype type;
  std::vector<std::size_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

/// A validated safetensors header: entries sorted by offset, covering the data section exactly.
struct st_header {
  std::vector<st_entry> entries;
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;
};

/// Reads and checks a safetensors header in one pass, without a JSON tree: a strict JSON parser
/// (RFC 8259, UTF-8 checked) that knows the header's three levels and fills the entries directly.
/// Time is linear in the header size plus O(n log n) in the number of tensors n (sorting names and
/// offsets); memory is the entries themselves. (nlohmann::ordered_json searched its object linearly
/// per key, which made 160,000 tensors take minutes, and kept a 50-million-entry shape whole before
/// its rank could be checked; this parser counts a shape without storing it past max_rank.)
///
/// JSON errors (syntax, invalid UTF-8, containers nested deeper than 3) are thrown at once. The
/// first problem of the content in file order (a duplicate key, a bad entry) is kept while the rest
/// is still parsed as JSON and thrown at the end; every failure is a format_error naming the file.
class st_header_parser {
public:
  st_header_parser(std::string_view text, std::string const& file, st_header& h)
      : m_s(text), m_file(file), m_h(h) {}

  void run() {
    ws();
    expect('{');
    ws();
    if (!eat('}')) {
      for (;;) {
        ws();
        std::string key = string_value();
        ws();
        expect(':');
        ws();
        ++m_keys;
        if (m_problem_at != npos)
          skip_value(1);
        else if (key == "__metadata__")
          metadata();
        else
          tensor(std::move(key));
        ws();
        if (eat(',')) continue;
        if (eat('}')) break;
        syntax("expected ',' or '}'");
      }
    }
    // Spaces pad the header (the format's rule); NUL bytes after the object were accepted before
    // and are still.
    while (m_p < m_s.size() && (is_ws(m_s[m_p]) || m_s[m_p] == '\0')) ++m_p;
    if (m_p != m_s.size()) syntax("unexpected text after the header object");
    check_duplicate_names();
    if (m_problem_at != npos) format_fail(m_file, m_problem);
  }

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  /// Containers may nest this deep (root, tensor, shape); a deeper one is a format_error.
  static constexpr int max_depth = 3;
  enum class kind { absent, wrong, ok };

  /// What a tensor's object said, kept until its end to check it in a fixed order.
  struct pending_tensor {
    std::string name, duplicate, unknown;
    bool has_unknown = false;
    kind dtype_kind = kind::absent, shape_kind = kind::absent, offsets_kind = kind::absent;
    std::string dtype;
    std::vector<std::size_t> shape;
    std::size_t rank = 0;
    std::uint64_t offsets[2] = {0, 0};
    std::size_t n_offsets = 0;
    std::size_t bad_shape = npos, bad_offset = npos; // the first entry that is not a non-negative integer
    std::string bad_shape_text, bad_offset_text;
  };

  /// A scalar inside an array: a non-negative integer (`is_uint`) or something else, as `text`.
  struct scalar {
    bool is_uint = false;
    std::uint64_t value = 0;
    std::string_view text;
  };

  // --- the JSON grammar ----------------------------------------------------------------------
  [[noreturn]] void syntax(std::string const& why) const {
    format_fail(m_file, "the header is not valid JSON: " + why + " at byte " + std::to_string(m_p));
  }
  [[noreturn]] void too_deep() const { format_fail(m_file, "the header is nested too deeply"); }
  static bool is_ws(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void ws() noexcept {
    while (m_p < m_s.size() && is_ws(m_s[m_p])) ++m_p;
  }
  char peek() const {
    if (m_p >= m_s.size()) syntax("unexpected end");
    return m_s[m_p];
  }
  bool eat(char c) noexcept {
    if (m_p < m_s.size() && m_s[m_p] == c) {
      ++m_p;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) syntax(std::string("expected '") + c + "'");
  }
  unsigned byte_at(std::size_t i) const { return i < m_s.size() ? static_cast<unsigned char>(m_s[i]) : 0u; }

  /// A string (at its opening quote), unescaped; UTF-8 is checked (no overlong forms, no surrogates).
  std::string string_value() {
    if (peek() != '"') syntax("expected a string");
    ++m_p;
    std::string out;
    for (;;) {
      std::size_t run = m_p;
      while (run < m_s.size()) {
        unsigned char c = static_cast<unsigned char>(m_s[run]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++run;
      }
      out.append(m_s.data() + m_p, run - m_p);
      m_p = run;
      unsigned const c = byte_at(m_p);
      if (m_p >= m_s.size()) syntax("unterminated string");
      if (c == '"') {
        ++m_p;
        return out;
      }
      if (c < 0x20) syntax("control character in a string");
      if (c == '\\') {
        escape(out);
        continue;
      }
      std::size_t const len = utf8_length(m_p);
      if (len == 0) syntax("invalid UTF-8 in a string");
      out.append(m_s.data() + m_p, len);
      m_p += len;
    }
  }

  /// The length of the valid UTF-8 sequence at `i` (RFC 3629), 0 if invalid.
  std::size_t utf8_length(std::size_t i) const {
    unsigned const b0 = byte_at(i), b1 = byte_at(i + 1);
    auto cont = [&](std::size_t k) { return (byte_at(k) & 0xc0) == 0x80; };
    if (b0 >= 0xc2 && b0 <= 0xdf) return cont(i + 1) ? 2 : 0;
    if (b0 >= 0xe0 && b0 <= 0xef) {
      unsigned lo = b0 == 0xe0 ? 0xa0 : 0x80, hi = b0 == 0xed ? 0x9f : 0xbf;
      return b1 >= lo && b1 <= hi && cont(i + 2) ? 3 : 0;
    }
    if (b0 >= 0xf0 && b0 <= 0xf4) {
      unsigned lo = b0 == 0xf0 ? 0x90 : 0x80, hi = b0 == 0xf4 ? 0x8f : 0xbf;
      return b1 >= lo && b1 <= hi && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    return 0;
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = peek();
      unsigned d = c >= '0' && c <= '9'   ? unsigned(c - '0')
                   : c >= 'a' && c <= 'f' ? unsigned(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? unsigned(c - 'A' + 10)
                                          : 16u;
      if (d == 16) syntax("bad \\u escape");
      v = v * 16 + d;
      ++m_p;
    }
    return v;
  }

  /// An escape sequence (at its backslash), appended to `out` as UTF-8.
  void escape(std::string& out) {
    ++m_p;
    char const c = peek();
    ++m_p;
    switch (c) {
    case '"': out += '"'; return;
    case '\\': out += '\\'; return;
    case '/': out += '/'; return;
    case 'b': out += '\b'; return;
    case 'f': out += '\f'; return;
    case 'n': out += '\n'; return;
    case 'r': out += '\r'; return;
    case 't': out += '\t'; return;
    case 'u': break;
    default: syntax("bad escape in a string");
    }
    unsigned cp = hex4();
    if (cp >= 0xdc00 && cp <= 0xdfff) syntax("a lone low surrogate in a \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (!(eat('\\') && eat('u'))) syntax("a high surrogate without its low surrogate");
      unsigned lo = hex4();
      if (lo < 0xdc00 || lo > 0xdfff) syntax("a high surrogate without its low surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  /// A number (RFC 8259 grammar); a non-negative integer that fits 64 bits sets `is_uint`.
  scalar number() {
    std::size_t const start = m_p;
    bool const negative = eat('-');
    auto digit = [&] { return m_p < m_s.size() && m_s[m_p] >= '0' && m_s[m_p] <= '9'; };
    if (!digit()) syntax("bad number");
    bool fits = true;
    std::uint64_t v = 0;
    if (m_s[m_p] == '0') {
      ++m_p;
    } else {
      while (digit()) {
        auto d = static_cast<std::uint64_t>(m_s[m_p] - '0');
        if (v > (UINT64_MAX - d) / 10) fits = false;
        v = v * 10 + d;
        ++m_p;
      }
    }
    bool integral = true;
    if (eat('.')) {
      integral = false;
      if (!digit()) syntax("bad number");
      while (digit()) ++m_p;
    }
    if (eat('e') || eat('E')) {
      integral = false;
      if (!eat('+')) eat('-');
      if (!digit()) syntax("bad number");
      while (digit()) ++m_p;
    }
    return {!negative && integral && fits, v, m_s.substr(start, m_p - start)};
  }

  /// A scalar (number, string, true, false, null) at an array position: containers are too deep.
  scalar element() {
    char const c = peek();
    if (c == '{' || c == '[') too_deep();
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    std::size_t const start = m_p;
    if (c == '"')
      (void)string_value();
    else
      literal();
    return {false, 0, m_s.substr(start, m_p - start)};
  }

  void literal() {
    for (std::string_view w : {"true", "false", "null"})
      if (m_s.substr(m_p, w.size()) == w) {
        m_p += w.size();
        return;
      }
    syntax("unexpected character");
  }

  /// Parses and discards any value inside `depth` containers.
  void skip_value(int depth) {
    char const c = peek();
    if (c == '{' || c == '[') {
      if (depth >= max_depth) too_deep();
      ++m_p;
      ws();
      char const close = c == '{' ? '}' : ']';
      if (eat(close)) return;
      for (;;) {
        ws();
        if (c == '{') {
          (void)string_value();
          ws();
          expect(':');
          ws();
        }
        skip_value(depth + 1);
        ws();
        if (eat(',')) continue;
        if (eat(close)) return;
        syntax(std::string("expected ',' or '") + close + "'");
      }
    }
    if (c == '"')
      (void)string_value();
    else if (c == '-' || (c >= '0' && c <= '9'))
      (void)number();
    else
      literal();
  }

  // --- the header's content --------------------------------------------------------------------
  void problem(std::string why) {
    if (m_problem_at != npos) return;
    m_problem = std::move(why);
    m_problem_at = m_keys - 1;
  }

  /// `"__metadata__": {"key": "value", ...}`
  void metadata() {
    if (m_have_metadata) problem("the header has the key '__metadata__' twice");
    m_have_metadata = true;
    if (peek() != '{') {
      problem("__metadata__ is not an object");
      return skip_value(1);
    }
    ++m_p;
    ws();
    if (eat('}')) return;
    for (;;) {
      ws();
      std::string key = string_value();
      ws();
      expect(':');
      ws();
      if (peek() == '"') {
        std::string value = string_value();
        if (!m_h.metadata.emplace(key, std::move(value)).second)
          problem("the header has the key '" + key + "' twice");
      } else {
        problem("__metadata__ value of '" + key + "' is not a string");
        skip_value(2);
      }
      ws();
      if (eat(',')) continue;
      if (eat('}')) return;
      syntax("expected ',' or '}'");
    }
  }

  /// `"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}`
  void tensor(std::string name) {
    if (peek() != '{') {
      problem("tensor '" + name + "': entry is not an object");
      return skip_value(1);
    }
    ++m_p;
    pending_tensor t;
    t.name = std::move(name);
    ws();
    if (!eat('}')) {
      for (;;) {
        ws();
        std::string key = string_value();
        ws();
        expect(':');
        ws();
        kind* seen = key == "dtype"          ? &t.dtype_kind
                     : key == "shape"        ? &t.shape_kind
                     : key == "data_offsets" ? &t.offsets_kind
                                             : nullptr;
        if (!seen) {
          if (!t.has_unknown) t.unknown = key;
          t.has_unknown = true;
          skip_value(2);
        } else {
          if (*seen != kind::absent && t.duplicate.empty()) t.duplicate = key;
          if (seen == &t.dtype_kind) {
            *seen = peek() == '"' ? kind::ok : kind::wrong;
            if (*seen == kind::ok)
              t.dtype = string_value();
            else
              skip_value(2);
          } else if (peek() != '[') {
            *seen = kind::wrong;
            skip_value(2);
          } else {
            *seen = kind::ok;
            array(t, seen == &t.shape_kind);
          }
        }
        ws();
        if (eat(',')) continue;
        if (eat('}')) break;
        syntax("expected ',' or '}'");
      }
    }
    finish_tensor(t);
  }

  /// The shape or data_offsets array. A shape is counted but not stored past max_rank.
  void array(pending_tensor& t, bool is_shape) {
    ++m_p;
    ws();
    if (eat(']')) return;
    for (;;) {
      ws();
      scalar const v = element();
      std::size_t& count = is_shape ? t.rank : t.n_offsets;
      std::size_t& bad = is_shape ? t.bad_shape : t.bad_offset;
      if (!v.is_uint && bad == npos) {
        bad = count;
        std::string text(v.text.substr(0, 40));
        (is_shape ? t.bad_shape_text : t.bad_offset_text) = v.text.size() > 40 ? text + "..." : text;
      }
      if (is_shape && count < max_rank) t.shape.push_back(static_cast<std::size_t>(v.value));
      if (!is_shape && count < 2) t.offsets[count] = v.value;
      ++count;
      ws();
      if (eat(',')) continue;
      if (eat(']')) return;
      syntax("expected ',' or ']'");
    }
  }

  /// Checks a tensor's entry in the order: keys, dtype, shape, data_offsets; keeps it if valid.
  void finish_tensor(pending_tensor& t) {
    std::string const where = "tensor '" + t.name + "'";
    if (!t.duplicate.empty()) return problem("the header has the key '" + t.duplicate + "' twice");
    if (t.has_unknown) return problem(where + ": unknown key '" + t.unknown + "'");
    if (t.dtype_kind == kind::absent) return problem(where + ": missing key 'dtype'");
    if (t.shape_kind == kind::absent) return problem(where + ": missing key 'shape'");
    if (t.offsets_kind == kind::absent) return problem(where + ": missing key 'data_offsets'");
    if (t.dtype_kind != kind::ok) return problem(where + ": dtype is not a string");
    auto type = dtype_from_string(t.dtype);
    if (!type)
      return problem(where + ": unsupported dtype '" + t.dtype +
                     "' (lepton reads F32, F64, I32, I64 and U8)");
    if (t.shape_kind != kind::ok) return problem(where + ": shape is not an array");
    if (t.rank > max_rank)
      return problem(where + ": shape has rank " + std::to_string(t.rank) + ", over the limit of " +
                     std::to_string(max_rank) + " dimensions");
    if (t.bad_shape != npos)
      return problem(where + ": shape entry " + std::to_string(t.bad_shape) + " is " + t.bad_shape_text +
                     ", not a non-negative integer");
    auto nbytes = checked_nbytes(*type, t.shape);
    if (!nbytes)
      return problem(where + ": shape " + shape_string(t.shape) +
                     " has too many elements (its byte size overflows)");
    if (t.offsets_kind != kind::ok || t.n_offsets != 2)
      return problem(where + ": data_offsets is not an array [begin, end]");
    if (t.bad_offset != npos)
      return problem(where + ": data_offsets " + (t.bad_offset == 0 ? "begin" : "end") + " is " +
                     t.bad_offset_text + ", not a non-negative integer");
    std::uint64_t const b = t.offsets[0], e = t.offsets[1];
    std::string const range = "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
    if (e < b) return problem(where + ": data_offsets " + range + " end before begin");
    if (e - b != *nbytes)
      return problem(where + ": data_offsets " + range + " span " + std::to_string(e - b) + " bytes but " +
                     std::string(to_string(*type)) + " " + shape_string(t.shape) + " needs " +
                     std::to_string(*nbytes));
    m_h.entries.push_back({std::move(t.name), *type, std::move(t.shape), b, e});
    m_order.push_back(m_keys - 1);
  }

  /// A name used twice is the problem if it comes before the one found so far. Entries are only
  /// kept up to that one, so the names are compared by sorting indices: O(n log n), 8 bytes a tensor.
  void check_duplicate_names() {
    auto const& es = m_h.entries;
    auto strictly_ascending = [&] {
      for (std::size_t i = 1; i < es.size(); ++i)
        if (!(es[i - 1].name < es[i].name)) return false;
      return true;
    };
    if (strictly_ascending()) return; // no name twice (the order many writers use): O(n)
    std::vector<std::size_t> idx(es.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      int c = es[a].name.compare(es[b].name);
      return c != 0 ? c < 0 : a < b;
    });
    std::size_t first = npos; // the entry, in file order, that repeats an earlier name
    for (std::size_t i = 1; i < idx.size(); ++i)
      if (es[idx[i]].name == es[idx[i - 1]].name && (first == npos || idx[i] < first)) first = idx[i];
    if (first != npos && (m_problem_at == npos || m_order[first] < m_problem_at)) {
      m_problem = "the header has the key '" + es[first].name + "' twice";
      m_problem_at = m_order[first];
    }
  }

  std::string_view m_s;
  std::size_t m_p = 0;
  std::string const& m_file;
  st_header& m_h;
  std::size_t m_keys = 0; // members of the root object seen
  bool m_have_metadata = false;
  std::vector<std::size_t> m_order; // the root member index of each entry
  std::string m_problem;
  std::size_t m_problem_at = npos;
};

inline st_header parse_safetensors_header(byte_source const& src, load_options const& opt) {
  std::string const& file = src.name();
  std::uint64_t const size = src.size();
  if (size < 8)
    format_fail(file, "truncated: " + std::to_string(size) +
                          " bytes is too short for a safetensors file (the header length alone takes 8)");
  unsigned char len_bytes[8];
  src.read(0, len_bytes, 8, "header length");
  std::uint64_t const n = load_le<std::uint64_t>(len_bytes);
  if (n > opt.max_header_bytes)
    format_fail(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                          std::to_string(opt.max_header_bytes) + " bytes (load_options::max_header_bytes)");
  if (n > size - 8)
    format_fail(file, "truncated: header length " + std::to_string(n) + " but only " +
                          std::to_string(size - 8) + " bytes follow it");
  if (n < 2) format_fail(file, "header length " + std::to_string(n) + " is too short for a JSON object");
  st_header h;
  h.data_start = 8 + n;
  {
    std::string text(static_cast<std::size_t>(n), '\0');
    src.read(8, text.data(), text.size(), "header");
    if (text.front() != '{') format_fail(file, "the header does not start with '{'");
    st_header_parser(text, file, h).run();
  }

  // stable: tensors with equal offsets (zero-size ones) keep the header's order. Writers list the
  // tensors in offset order, so the (linear) check usually spares the sort.
  auto by_offset = [](st_entry const& a, st_entry const& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  };
  if (!std::is_sorted(h.entries.begin(), h.entries.end(), by_offset))
    std::stable_sort(h.entries.begin(), h.entries.end(), by_offset);
  std::uint64_t const data_size = size - h.data_start;
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < h.entries.size(); ++i) {
    auto const& e = h.entries[i];
    if (e.begin < expected)
      format_fail(file, "tensor '" + e.name + "' (data_offsets [" + std::to_string(e.begin) + ", " +
                            std::to_string(e.end) + "]) overlaps tensor '" + h.entries[i - 1].name + "'");
    if (e.begin > expected)
      format_fail(file, "a gap of " + std::to_string(e.begin - expected) + " bytes precedes tensor '" +
                            e.name + "' (tensor data must be contiguous)");
    expected = e.end;
  }
  if (expected > data_size)
    format_fail(file, "truncated: the tensors need " + std::to_string(expected) +
                          " bytes of data but the file has " + std::to_string(data_size));
  if (expected < data_size)
    format_fail(
        file, std::to_string(data_size - expected) + " unexpected bytes after the last tensor (the data is " +
                  std::to_string(data_size) + " bytes, the tensors cover " + std::to_string(expected) + ")");
  return h;
}

inline tensor_map load_safetensors_from(byte_source const& src, load_options const& opt) {
  st_header h = parse_safetensors_header(src, opt);
  tensor_map m;
  m.metadata = std::move(h.metadata);
  // Tensors under 64 KiB are copied out of 1 MiB blocks: a read per tensor is a system call each,
  // which dominates for files of many small tensors. The entries are contiguous, in offset order.
  constexpr std::size_t block_size = std::size_t{1} << 20, small = std::size_t{1} << 16;
  std::unique_ptr<std::byte[]> block;
  std::uint64_t block_begin = 0, block_end = 0; // data offsets held by `block`
  std::uint64_t const data_size = src.size() - h.data_start;
  for (auto& e : h.entries) {
    auto t = dyn_tensor::uninitialized(e.type, std::move(e.shape));
    std::size_t const n = t.nbytes();
    if (n >= small) {
      src.read(h.data_start + e.begin, t.data(), n, "tensor '" + e.name + "'");
    } else if (n > 0) {
      if (e.begin < block_begin || e.end > block_end) {
        if (!block) block = std::make_unique_for_overwrite<std::byte[]>(block_size);
        block_begin = e.begin;
        block_end = std::min<std::uint64_t>(data_size, e.begin + block_size);
        src.read(h.data_start + block_begin, block.get(), static_cast<std::size_t>(block_end - block_begin),
                 "tensor '" + e.name + "'");
      }
      std::memcpy(t.data(), block.get() + (e.begin - block_begin), n);
    }
    m.insert(std::move(e.name), std::move(t));
  }
  return m;
}

inline void load_safetensors_into_from(byte_source const& src, std::span<tensor_target const> targets,
                                       load_into_options const& into, load_options const& opt) {
  st_header h = parse_safetensors_header(src, opt);
  std::vector<entry_info> info;
  info.reserve(h.entries.size());
  for (auto const& e : h.entries) info.push_back({&e.name, e.type, &e.shape});
  auto match = match_targets(src.name(), info, targets, into);

  // Read everything needed before writing anything: a read error leaves the targets unchanged.
  std::size_t total = 0;
  for (auto m : match)
    if (m != no_entry) total += static_cast<std::size_t>(h.entries[m].end - h.entries[m].begin);
  auto staging = std::make_unique_for_overwrite<std::byte[]>(total ? total : 1);
  std::vector<std::size_t> at(h.entries.size(), 0);
  std::size_t pos = 0;
  for (auto m : match) {
    if (m == no_entry) continue;
    auto const& e = h.entries[m];
    at[m] = pos;
    src.read(h.data_start + e.begin, staging.get() + pos, static_cast<std::size_t>(e.end - e.begin),
             "tensor '" + e.name + "'");
    pos += static_cast<std::size_t>(e.end - e.begin);
  }
  fill_targets(
      targets, match,
      [&](std::size_t m) {
    return std::span<std::byte const>(staging.get() + at[m],
                                      static_cast<std::size_t>(h.entries[m].end - h.entries[m].begin));
      },
      [&](std::size_t m) -> std::vector<std::size_t> const& { return h.entries[m].shape; });
}

/// The header text for these tensors (padded so that the data starts at a multiple of 8) and the
/// total data size. Throws lepton::value_error for duplicate or reserved names, invalid UTF-8 or a
/// null data pointer. The text is what `nlohmann::ordered_json::dump()` gives for the header object,
/// written directly: inserting into an ordered_json object searches it, which is quadratic in the
/// number of tensors.
inline std::string safetensors_header(std::span<tensor_ref const> tensors,
                                      std::map<std::string, std::string> const& metadata,
                                      std::uint64_t& data_size) {
  using json = nlohmann::json;
  std::string text = "{";
  auto quoted = [&](std::string const& v) {
    try {
      text += json(v).dump(-1, ' ', false, json::error_handler_t::strict);
    } catch (json::exception const& e) {
      throw value_error(std::string("save_safetensors: names and metadata must be valid UTF-8: ") + e.what());
    }
  };
  if (!metadata.empty()) {
    text += "\"__metadata__\":{";
    bool first = true;
    for (auto const& [k, v] : metadata) {
      if (!first) text += ',';
      first = false;
      quoted(k);
      text += ':';
      quoted(v);
    }
    text += '}';
  }
  std::vector<std::string_view> names;
  names.reserve(tensors.size());
  std::uint64_t offset = 0;
  for (auto const& t : tensors) {
    if (t.name == "__metadata__")
      throw value_error("save_safetensors: '__metadata__' is reserved, not a tensor name");
    auto n = checked_nbytes(t.type, t.shape);
    if (!n) throw value_error("save_safetensors: tensor '" + t.name + "': size overflows");
    if (*n && !t.data) throw value_error("save_safetensors: tensor '" + t.name + "' has no data pointer");
    names.push_back(t.name);
    if (text.size() > 1) text += ',';
    quoted(t.name);
    text += ":{\"dtype\":\"";
    text += to_string(t.type);
    text += "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i) text += ',';
      text += std::to_string(t.shape[i]);
    }
    text += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + *n) + "]}";
    offset += *n;
  }
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end())
    throw value_error("save_safetensors: duplicate tensor name '" + std::string(*dup) + "'");
  data_size = offset;
  text += '}';
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

template <class Sink>
void write_safetensors(Sink&& sink, std::string const& header, std::span<tensor_ref const> tensors) {
  std::vector<unsigned char> len;
  store_le<std::uint64_t>(len, header.size());
  sink(len.data(), len.size());
  sink(header.data(), header.size());
  for (auto const& t : tensors)
    if (auto n = t.nbytes()) sink(t.data, n);
}

} // namespace detail

/// @brief Saves tensors in the safetensors format, atomically (see atomic_writer): after a failure or a
///        crash the file at `path` is either the previous one or the complete new one.
///
/// Tensors are written in the order given, contiguously; names are kept exactly as given and must be
/// unique (lepton::value_error otherwise). `metadata` becomes the `__metadata__` object.
/// Throws lepton::io_error (naming the file and the reason) if the file cannot be written.
///
/// **Example**:
/// ```
/// lepton::tensor<float, 784, 256> w;  lepton::tensor<float, 256> b;
/// namespace lio = lepton::io;
/// lio::save_safetensors("fc1.safetensors", {lio::ref("fc1.weight", w), lio::ref("fc1.bias", b)},
///                       {{"epoch", "3"}});
/// ```
inline void save_safetensors(std::filesystem::path const& path, std::vector<tensor_ref> const& tensors,
                             std::map<std::string, std::string> const& metadata = {},
                             atomic_write_options options = {}) {
  std::uint64_t data_size = 0;
  std::string header = detail::safetensors_header(tensors, metadata, data_size);
  atomic_writer w(path, options);
  detail::write_safetensors([&](void const* p, std::size_t n) { w.write(p, n); }, header, tensors);
  w.commit();
}

/// @brief Saves every tensor of a map (in its order) and its metadata.
///
/// **Example**:
/// ```
/// auto m = lepton::io::load_safetensors("a.safetensors");
/// lepton::io::save_safetensors("b.safetensors", m);
/// ```
template <std::same_as<tensor_map> Map> // a template, so that `save_safetensors(path, {})` is not ambiguous
void save_safetensors(std::filesystem::path const& path, Map const& tensors,
                      atomic_write_options options = {}) {
  save_safetensors(path, tensors.refs(), tensors.metadata, options);
}

/// @brief The bytes of a safetensors file holding these tensors (what save_safetensors writes).
///
/// **Example**: `std::vector<std::byte> blob = lepton::io::encode_safetensors({lepton::io::ref("w", w)});`
inline std::vector<std::byte> encode_safetensors(std::vector<tensor_ref> const& tensors,
                                                 std::map<std::string, std::string> const& metadata = {}) {
  std::uint64_t data_size = 0;
  std::string header = detail::safetensors_header(tensors, metadata, data_size);
  std::vector<std::byte> out;
  out.reserve(static_cast<std::size_t>(8 + header.size() + data_size));
  detail::write_safetensors(
      [&](void const* p, std::size_t n) {
    auto const* b = static_cast<std::byte const*>(p);
    out.insert(out.end(), b, b + n);
      },
      header, tensors);
  return out;
}

/// @brief Loads every tensor of a safetensors file, in offset order, with its `__metadata__`.
///
/// The file is validated completely first; allocations never exceed the file's size plus a small
/// multiple of the header (the parsed entries; the header is at most `options.max_header_bytes`).
/// Shapes have at most 64 dimensions. Time is linear in the file plus O(n log n) in the number of
/// tensors. Throws lepton::format_error or lepton::io_error naming the file and the reason.
///
/// **Example**:
/// ```
/// lepton::io::tensor_map m = lepton::io::load_safetensors("fc1.safetensors");
/// auto w = m.at("fc1.weight").as<float, 784, 256>();
/// std::string epoch = m.metadata.at("epoch");
/// ```
inline tensor_map load_safetensors(std::filesystem::path const& path, load_options const& options = {}) {
  detail::file_reader f(path);
  return detail::load_safetensors_from(detail::byte_source(f, 0, f.size(), f.name()), options);
}

/// @brief Loads a safetensors file held in memory; `name` is used in messages.
///
/// **Example**: `auto m = lepton::io::decode_safetensors(blob, "embedded weights");`
inline tensor_map decode_safetensors(std::span<std::byte const> bytes, std::string name = "<memory>",
                                     load_options const& options = {}) {
  return detail::load_safetensors_from(detail::byte_source(bytes, std::move(name)), options);
}

/// @brief Loads named tensors into existing tensors, with the strong guarantee: the file and every
///        target (name, dtype, shape) are validated and all needed data is read before the first
///        target is written; on any exception every target is unchanged.
///
/// Missing and unexpected names are errors unless `into` allows them. A mismatch reads like
/// `lepton: m.safetensors: tensor 'fc1.weight': expected F32 (784, 256), file has F32 (784, 255)`.
/// Peak extra memory: the size of the data loaded.
///
/// **Example**:
/// ```
/// lepton::tensor<float, 784, 256> w;  lepton::tensor<float, 256> b;
/// namespace lio = lepton::io;
/// lio::load_safetensors_into("fc1.safetensors", {lio::target("fc1.weight", w), lio::target("fc1.bias", b)});
/// ```
inline void load_safetensors_into(std::filesystem::path const& path,
                                  std::vector<tensor_target> const& targets,
                                  load_into_options const& into = {}, load_options const& options = {}) {
  detail::file_reader f(path);
  detail::load_safetensors_into_from(detail::byte_source(f, 0, f.size(), f.name()), targets, into, options);
}

} // namespace lepton::io
