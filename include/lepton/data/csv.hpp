#pragma once
/// @file csv.hpp
/// @brief Reader for numeric tabular data in CSV files: features as (rows, columns) floats and one
///        target column.
///
/// Accepts RFC 4180 files: a delimiter of choice, fields optionally in double quotes (a quote inside
/// a quoted field is doubled, quoted fields may span lines), LF or CRLF line ends, a UTF-8 byte
/// order mark, blank lines (skipped). Every data field must be a number; errors name the file, the
/// line and the column.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "io_util.hpp"

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

/// Splits CSV text into records of fields, tracking physical line numbers for messages.
class csv_lexer {
public:
  csv_lexer(std::string_view text, csv_options const& opt, std::string_view source)
      : m_text(text), m_opt(opt), m_source(source) {
    if (m_text.size() >= 3 && m_text.substr(0, 3) == "\xEF\xBB\xBF") m_pos = 3;
  }

  /// Reads the next non-blank record into `fields`; returns false at the end of the text.
  bool next(std::vector<std::string>& fields) {
    while (m_pos < m_text.size() && (m_text[m_pos] == '\n' || m_text[m_pos] == '\r')) newline();
    if (m_pos >= m_text.size()) return false;
    m_record_line = m_line;
    fields.clear();
    for (;;) {
      fields.emplace_back();
      std::string& f = fields.back();
      while (m_pos < m_text.size() && is_blank(m_text[m_pos])) ++m_pos;
      if (m_pos < m_text.size() && m_text[m_pos] == m_opt.quote) {
        std::size_t open_line = m_line;
        ++m_pos;
        for (;;) {
          if (m_pos >= m_text.size())
            fail(open_line, fields.size(), "unterminated quoted field (the closing quote is missing)");
          char c = m_text[m_pos];
          if (c == m_opt.quote) {
            if (m_pos + 1 < m_text.size() && m_text[m_pos + 1] == m_opt.quote) {
              f += c;
              m_pos += 2;
              continue;
            }
            ++m_pos;
            break;
          }
          if (c == '\n') ++m_line;
          f += c;
          ++m_pos;
        }
        while (m_pos < m_text.size() && is_blank(m_text[m_pos])) ++m_pos;
        if (m_pos < m_text.size() && !is_end(m_text[m_pos]))
          fail(m_line, fields.size(),
               std::string("unexpected character '") + m_text[m_pos] + "' after a closing quote");
      } else {
        while (m_pos < m_text.size() && !is_end(m_text[m_pos])) f += m_text[m_pos++];
      }
      if (m_pos >= m_text.size()) return true;
      if (m_text[m_pos] == m_opt.delimiter) {
        ++m_pos;
        continue;
      }
      newline();
      return true;
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
  bool is_blank(char c) const noexcept { return (c == ' ' || c == '\t') && c != m_opt.delimiter; }
  bool is_end(char c) const noexcept { return c == m_opt.delimiter || c == '\n' || c == '\r'; }
  void newline() noexcept {
    if (m_text[m_pos] == '\r' && m_pos + 1 < m_text.size() && m_text[m_pos + 1] == '\n') ++m_pos;
    ++m_pos;
    ++m_line;
  }

  std::string_view m_text;
  csv_options const& m_opt;
  std::string_view m_source;
  std::size_t m_pos = 0;
  std::size_t m_line = 1;
  std::size_t m_record_line = 1;
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
  detail::csv_lexer lex(text, options, source);
  std::vector<std::string> fields;
  std::vector<std::string> names;
  std::size_t columns = 0;
  std::size_t first_line = 0;
  bool have_first = false;
  std::vector<float> values;

  auto fail = [&](std::string_view what) {
    throw format_error(std::string(source) + ": " + std::string(what));
  };

  if (options.header) {
    if (!lex.next(fields)) fail("empty file (expected a header row)");
    names = fields;
    columns = names.size();
    first_line = lex.record_line();
    have_first = true;
  } else if (!options.target_name.empty()) {
    throw value_error(std::string(source) + ": csv_options::target_name \"" + options.target_name +
                      "\" needs a header row (csv_options::header is false)");
  }
  std::size_t rows = 0;
  while (lex.next(fields)) {
    if (!have_first) {
      columns = fields.size();
      first_line = lex.record_line();
      have_first = true;
    }
    if (fields.size() != columns)
      lex.fail(lex.record_line(), 0,
               std::to_string(fields.size()) + " fields, expected " + std::to_string(columns) + " (as " +
                   (options.header ? "in the header" : "on the first row") + " on line " +
                   std::to_string(first_line) + ")");
    for (std::size_t c = 0; c < columns; ++c) {
      float v = 0;
      bool range = false;
      if (!detail::parse_float(fields[c], v, range)) {
        std::string what = fields[c].find_first_not_of(" \t") == std::string::npos
                               ? std::string("empty field")
                               : detail::quote_field(fields[c]) +
                                     (range ? " is out of range for float" : " is not a number");
        lex.fail(lex.record_line(), c + 1, what,
                 options.header ? std::string_view(names[c]) : std::string_view());
      }
      values.push_back(v);
    }
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
  for (std::size_t c = 0; c < columns; ++c) {
    std::string name = options.header ? names[c] : "column " + std::to_string(c + 1);
    if (target && c == *target)
      out.target_name = std::move(name);
    else
      out.feature_names.push_back(std::move(name));
  }
  return out;
}

/// @brief Reads a numeric CSV file: the target column (by default the last) separately from the
///        feature columns.
///
/// @throws lepton::io_error     the file is missing, a directory or unreadable
/// @throws lepton::format_error a row has a different number of fields than the first, a field is
///         not a number or is empty, a quote is unterminated; the message names the file, the line
///         and the column (with its header name)
/// @throws lepton::value_error  the target column does not exist
///
/// **Example**:
/// ```
/// auto t = lepton::data::read_csv("wine.csv", {.delimiter = ';', .target_name = "quality"});
/// auto x = lepton::data::to_static<11>(t.features);           // (n, 11)
/// lepton::data::dataset train(std::move(x), lepton::data::to_labels(t.target));
/// ```
inline csv_table read_csv(std::filesystem::path const& path, csv_options const& options = {}) {
  auto of = detail::open_regular_file(path);
  std::string text;
  text.resize(static_cast<std::size_t>(of.size));
  std::size_t got = detail::read_some(of.file.get(), text.data(), text.size(), path);
  text.resize(got);
  // Read anything appended since the size was taken.
  char buf[4096];
  while (std::size_t n = detail::read_some(of.file.get(), buf, sizeof buf, path)) text.append(buf, n);
  return parse_csv(text, options, path.string());
}

} // namespace lepton::data
