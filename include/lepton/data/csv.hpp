#pragma once
/// @file csv.hpp
/// @brief Reader for numeric tabular data in CSV files: features as (rows, columns) floats and one
///        target column.
///
/// Accepts RFC 4180 files: a delimiter of choice, fields optionally in double quotes (a quote inside
/// a quoted field is doubled, quoted fields may span lines), LF or CRLF line ends, a UTF-8 byte
/// order mark, blank lines (skipped). Every data field must be a finite number (NaN and infinities
/// only with csv_options::allow_non_finite), every record at most csv_options::max_line_bytes long;
/// errors name the file, the line and the column. Files are read with io's file reader (io/reader.hpp).

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../io/reader.hpp"

namespace lepton::data {

/// @brief How read_csv() interprets a file.
///
/// **Example**: `lepton::data::read_csv(path, {.delimiter = ';', .header = false, .target = 0});`
struct csv_options {
  char delimiter = ','; ///< field separator
  bool header = true;   ///< the first record holds column names
  /// Index of the target column; negative counts from the end (-1: the last column);
  /// std::nullopt: no target, every column is a feature.
  std::optional<std::ptrdiff_t> target = -1;
  /// If not empty, the target column by its header name (needs `header`); overrides `target`.
  std::string target_name{};
  char quote = '"'; ///< quote character
  /// Longest record, in bytes, the reader accepts (default 1 MiB): one line of the file, or several
  /// when a quoted field spans lines; the line break is not counted. A longer record is a
  /// format_error naming the file and the line, raised as soon as the limit is passed: a file with
  /// one huge line costs at most this much memory to refuse. Raise it for very wide tables.
  std::size_t max_line_bytes = std::size_t{1} << 20;
  /// Accept `nan`, `inf`, `infinity` (any case, with a sign) as values. By default they are a
  /// format_error naming the file, the line, the data row and the column, since a non-finite
  /// feature or target only shows up later as a non-finite loss.
  bool allow_non_finite = false;
};

/// @brief The content of a CSV file: numeric features and the target column.
///
/// **Example**:
/// ```
/// auto t = lepton::data::read_csv("iris.csv");  // 4 feature columns, target last
/// // t.features: (150, 4), t.target: (150), t.feature_names: {"sepal_length", ...}
/// ```
struct csv_table {
  tensor<float, dyn, dyn> features;       ///< (rows, feature columns), in file order without the target
  tensor<float, dyn> target;              ///< (rows); (0) when there is no target column
  std::vector<std::string> feature_names; ///< from the header; "column <k>" (1-based) without one
  std::string target_name;                ///< from the header; "column <k>" without one; "" for no target
  /// Number of data rows.
  std::size_t rows() const noexcept { return features.shape()[0]; }
};

namespace detail {

/// The bytes of a CSV text, one at a time: from memory, or from a file in 64 KiB chunks (so that
/// memory does not grow with the file, only with what is kept of it).
class csv_input {
public:
  explicit csv_input(std::string_view text) noexcept : m_data(text) {}
  explicit csv_input(io::detail::file_reader const& f) : m_file(f), m_buf(std::size_t{1} << 16) {}

  /// The next byte (0..255), or -1 at the end.
  int peek() {
    if (m_pos == m_data.size() && !refill()) return -1;
    return static_cast<unsigned char>(m_data[m_pos]);
  }
  /// Consumes the byte peek() returned.
  void skip() noexcept { ++m_pos; }
  /// The bytes buffered from the current position on (refilled if none are left); empty at the end.
  std::string_view window() {
    if (m_pos == m_data.size() && !refill()) return {};
    return m_data.substr(m_pos);
  }
  /// Consumes `n` bytes of window().
  void skip(std::size_t n) noexcept { m_pos += n; }
  /// Skips `prefix` if the input starts with it (the first chunk holds it whole unless the file is shorter).
  void skip_prefix(std::string_view prefix) {
    if (peek() >= 0 && m_data.substr(m_pos).starts_with(prefix)) m_pos += prefix.size();
  }

private:
  bool refill() {
    if (!m_file) return false;
    std::size_t n = m_file->read_upto(m_offset, m_buf.data(), m_buf.size(), "the CSV text");
    if (n == 0) {
      m_file.reset();
      return false;
    }
    m_offset += n;
    m_data = std::string_view(m_buf.data(), n);
    m_pos = 0;
    return true;
  }

  std::string_view m_data;
  std::size_t m_pos = 0;
  std::optional<io::detail::byte_source> m_file; // the file, if any, until its end
  std::uint64_t m_offset = 0;                    // of the next chunk in m_file
  std::vector<char> m_buf;
};

/// Splits CSV input into records of fields, tracking physical line numbers for messages. Each field
/// is handed to a callback as a view of one reused buffer: nothing is allocated per field or per record.
class csv_lexer {
public:
  csv_lexer(csv_input& in, csv_options const& opt, std::string_view source)
      : m_in(in), m_opt(opt), m_source(source), m_delimiter(static_cast<unsigned char>(opt.delimiter)),
        m_quote(static_cast<unsigned char>(opt.quote)) {
    m_in.skip_prefix("\xEF\xBB\xBF");
  }

  /// Reads the next non-blank record, calling `on_field(std::string_view text, std::size_t index)`
  /// for each field (index 0-based; the view is valid during the call). Returns the number of
  /// fields, 0 at the end of the input.
  template <class F> std::size_t next(F&& on_field) {
    int c = 0;
    while ((c = m_in.peek()) == '\n' || c == '\r') newline();
    if (c < 0) return 0;
    m_record_line = m_line;
    m_record_bytes = 0;
    std::size_t n = 0;
    for (;;) {
      m_field.clear();
      ++n;
      while (is_blank(c = m_in.peek())) take();
      if (c == m_quote) {
        std::size_t const open_line = m_line;
        take();
        for (;;) {
          c = m_in.peek();
          if (c < 0) fail(open_line, n, "unterminated quoted field (the closing quote is missing)");
          take();
          if (c == m_quote) {
            if (m_in.peek() != m_quote) break;
            take(); // a doubled quote stands for one
          } else if (c == '\n') {
            ++m_line;
          }
          m_field += static_cast<char>(c);
        }
        while (is_blank(c = m_in.peek())) take();
        if (c >= 0 && !is_end(c))
          fail(m_line, n,
               std::string("unexpected character '") + static_cast<char>(c) + "' after a closing quote");
      } else {
        // A run of the buffered bytes at a time: most fields are unquoted.
        for (;;) {
          std::string_view const w = m_in.window();
          if (w.empty()) {
            c = -1;
            break;
          }
          std::size_t i = 0;
          while (i < w.size() && !is_end(static_cast<unsigned char>(w[i]))) ++i;
          take(i);
          m_field.append(w.data(), i);
          m_in.skip(i);
          if (i < w.size()) {
            c = static_cast<unsigned char>(w[i]);
            break;
          }
        }
      }
      on_field(std::string_view(m_field), n - 1);
      if (c < 0) return n;
      if (c == m_delimiter) {
        take();
        continue;
      }
      newline();
      return n;
    }
  }

  /// Line on which the last record started (1-based).
  std::size_t record_line() const noexcept { return m_record_line; }

  /// Throws format_error "source: line L, column C ("name"): what" (column 0: no column part).
  [[noreturn]] void fail(std::size_t line, std::size_t column, std::string_view what,
                         std::string_view name = {}) const {
    std::string s(m_source);
    s += ": line " + std::to_string(line);
    if (column) s += ", column " + std::to_string(column);
    if (!name.empty()) {
      s += " (\"";
      s += name;
      s += "\")";
    }
    s += ": ";
    s += what;
    throw format_error(s);
  }

private:
  bool is_blank(int c) const noexcept { return (c == ' ' || c == '\t') && c != m_delimiter; }
  bool is_end(int c) const noexcept { return c == m_delimiter || c == '\n' || c == '\r'; }
  /// Consumes one byte of the current record, enforcing csv_options::max_line_bytes.
  void take() {
    m_in.skip();
    take(1);
  }
  /// Counts `n` more bytes of the current record (not consumed here), enforcing the cap.
  void take(std::size_t n) {
    m_record_bytes += n;
    if (m_record_bytes > m_opt.max_line_bytes)
      fail(m_record_line, 0,
           "the record is longer than csv_options::max_line_bytes = " + std::to_string(m_opt.max_line_bytes) +
               " bytes (raise the option to read longer lines)");
  }
  void newline() {
    int const c = m_in.peek();
    m_in.skip();
    if (c == '\r' && m_in.peek() == '\n') m_in.skip();
    ++m_line;
  }

  csv_input& m_in;
  csv_options const& m_opt;
  std::string_view m_source;
  int m_delimiter;
  int m_quote;
  std::string m_field; ///< the current field, reused
  std::size_t m_line = 1;
  std::size_t m_record_line = 1;
  std::size_t m_record_bytes = 0;
};

/// A field for an error message: quoted, at most 40 characters.
inline std::string quote_field(std::string_view f) {
  std::string s = "\"";
  s += f.substr(0, 40);
  if (f.size() > 40) s += "...";
  return s + "\"";
}

/// Parses a number; returns false if `f` (spaces trimmed) is not entirely one float.
inline bool parse_float(std::string_view f, float& out, bool& out_of_range) {
  out_of_range = false;
  while (!f.empty() && (f.front() == ' ' || f.front() == '\t')) f.remove_prefix(1);
  while (!f.empty() && (f.back() == ' ' || f.back() == '\t')) f.remove_suffix(1);
  if (!f.empty() && f.front() == '+') f.remove_prefix(1);
  if (f.empty()) return false;
  auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), out);
  if (ec == std::errc::result_out_of_range && ptr == f.data() + f.size()) {
    out_of_range = true;
    return false;
  }
  return ec == std::errc{} && ptr == f.data() + f.size();
}

/// The header's column names in one buffer (a std::string per name costs 32 bytes even for "a").
class csv_names {
public:
  void push_back(std::string_view name) {
    m_chars += name;
    m_ends.push_back(m_chars.size());
  }
  std::size_t size() const noexcept { return m_ends.size(); }
  std::string_view operator[](std::size_t i) const noexcept {
    std::size_t const b = i ? m_ends[i - 1] : 0;
    return std::string_view(m_chars).substr(b, m_ends[i] - b);
  }

private:
  std::string m_chars;
  std::vector<std::size_t> m_ends;
};

inline csv_table parse_csv_input(csv_input& in, csv_options const& options, std::string_view source) {
  csv_lexer lex(in, options, source);
  csv_names names;
  std::size_t columns = 0;
  std::size_t first_line = 0;
  bool have_first = false;
  std::vector<float> values;

  auto fail = [&](std::string_view what) {
    throw format_error(std::string(source) + ": " + std::string(what));
  };

  if (options.header) {
    if (lex.next([&](std::string_view f, std::size_t) { names.push_back(f); }) == 0)
      fail("empty file (expected a header row)");
    columns = names.size();
    first_line = lex.record_line();
    have_first = true;
  } else if (!options.target_name.empty()) {
    throw value_error(std::string(source) + ": csv_options::target_name \"" + options.target_name +
                      "\" needs a header row (csv_options::header is false)");
  }
  std::size_t rows = 0;
  // The first bad field of a record; reported after its field count is checked, as that is the
  // likelier cause (a missing delimiter shifts every later field).
  std::size_t bad_column = 0;
  std::string bad_what;
  auto on_field = [&](std::string_view f, std::size_t c) {
    if (have_first && c >= columns) return; // a ragged row: reported once the record is complete
    float v = 0;
    bool range = false;
    if (!parse_float(f, v, range)) {
      if (bad_column == 0) {
        bad_column = c + 1;
        bad_what = f.find_first_not_of(" \t") == std::string_view::npos
                       ? std::string("empty field")
                       : quote_field(f) + (range ? " is out of range for float" : " is not a number");
      }
    } else if (!options.allow_non_finite && !std::isfinite(v) && bad_column == 0) {
      bad_column = c + 1;
      bad_what = quote_field(f) + " in data row " + std::to_string(rows + 1) +
                 " is not a finite number (NaN and infinities are refused unless "
                 "csv_options::allow_non_finite is set)";
    }
    values.push_back(v);
  };
  for (;;) {
    bad_column = 0;
    std::size_t const n = lex.next(on_field);
    if (n == 0) break;
    if (!have_first) {
      columns = n;
      first_line = lex.record_line();
      have_first = true;
    }
    if (n != columns)
      lex.fail(lex.record_line(), 0,
               std::to_string(n) + " fields, expected " + std::to_string(columns) + " (as " +
                   (options.header ? "in the header" : "on the first row") + " on line " +
                   std::to_string(first_line) + ")");
    if (bad_column)
      lex.fail(lex.record_line(), bad_column, bad_what,
               options.header ? names[bad_column - 1] : std::string_view());
    ++rows;
  }
  if (!have_first) fail("empty file (no rows)");

  // Resolve the target column.
  std::optional<std::size_t> target;
  if (!options.target_name.empty()) {
    for (std::size_t c = 0; c < columns && !target; ++c)
      if (names[c] == options.target_name) target = c;
    if (!target) {
      std::string all;
      for (std::size_t c = 0; c < columns; ++c) {
        if (c) all += ", ";
        all += names[c];
      }
      throw value_error(std::string(source) + ": no column named \"" + options.target_name +
                        "\" in the header (columns: " + all + ")");
    }
  } else if (options.target) {
    std::ptrdiff_t t = *options.target;
    std::ptrdiff_t cols = static_cast<std::ptrdiff_t>(columns);
    if (t < -cols || t >= cols)
      throw value_error(std::string(source) + ": target column " + std::to_string(t) +
                        " is out of range for " + std::to_string(columns) + " columns");
    target = static_cast<std::size_t>(t < 0 ? t + cols : t);
  }

  csv_table out;
  std::size_t const nf = columns - (target ? 1 : 0);
  out.features = tensor<float, dyn, dyn>(shape_t<2>{rows, nf});
  out.target = tensor<float, dyn>(shape_t<1>{target ? rows : 0});
  float* fx = out.features.data();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < columns; ++c) {
      float v = values[r * columns + c];
      if (target && c == *target)
        out.target(r) = v;
      else
        *fx++ = v;
    }
  out.feature_names.reserve(nf);
  for (std::size_t c = 0; c < columns; ++c) {
    std::string name = options.header ? std::string(names[c]) : "column " + std::to_string(c + 1);
    if (target && c == *target)
      out.target_name = std::move(name);
    else
      out.feature_names.push_back(std::move(name));
  }
  return out;
}

} // namespace detail

/// @brief Parses CSV text (see read_csv); errors name `source` as the file.
///
/// **Example**:
/// ```
/// auto t = lepton::data::parse_csv("x,y,label\n1,2,0\n3,4,1\n");
/// // t.features: (2, 2) = {{1, 2}, {3, 4}}, t.target: (2) = {0, 1}
/// ```
inline csv_table parse_csv(std::string_view text, csv_options const& options = {},
                           std::string_view source = "<csv text>") {
  detail::csv_input in(text);
  return detail::parse_csv_input(in, options, source);
}

/// @brief Reads a numeric CSV file: the target column (by default the last) separately from the
///        feature columns.
///
/// @throws lepton::io_error     the file is missing, a directory or unreadable
/// The file is read in 64 KiB chunks: memory grows with the values kept (4 bytes per field), not with
/// the file, and a record longer than csv_options::max_line_bytes is refused as soon as it passes the cap.
/// @throws lepton::format_error a row has a different number of fields than the first, a field is
///         not a number, is empty or (without csv_options::allow_non_finite) is NaN or infinite, a
///         quote is unterminated, a record is longer than csv_options::max_line_bytes; the message
///         names the file, the line and the column (with its header name)
/// @throws lepton::value_error  the target column does not exist
///
/// **Example**:
/// ```
/// auto t = lepton::data::read_csv("wine.csv", {.delimiter = ';', .target_name = "quality"});
/// auto x = lepton::data::to_static<11>(t.features);           // (n, 11)
/// lepton::data::dataset train(std::move(x), lepton::data::to_labels(t.target));
/// ```
inline csv_table read_csv(std::filesystem::path const& path, csv_options const& options = {}) {
  io::detail::file_reader f(path);
  detail::csv_input in(f);
  return detail::parse_csv_input(in, options, f.name());
}

} // namespace lepton::data
