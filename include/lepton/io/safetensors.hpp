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
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
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

using json = nlohmann::ordered_json; // keeps the header's order (for tensors of equal offsets)

inline std::string json_kind(json const& j) {
  if (j.is_number_unsigned()) return std::to_string(j.get<std::uint64_t>());
  if (j.is_number_integer()) return std::to_string(j.get<std::int64_t>());
  std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 40) + "..." : s;
}

/// Parses JSON strictly: duplicate keys and nesting deeper than `max_depth` containers are errors
/// (nlohmann would keep the last duplicate silently).
inline json parse_strict_json(std::string const& text, std::string const& file, char const* what,
                              int max_depth) {
  std::vector<std::set<std::string>> keys;
  auto cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    using ev = json::parse_event_t;
    switch (event) {
    case ev::object_start:
    case ev::array_start:
      if (depth >= max_depth) format_fail(file, std::string(what) + " is nested too deeply");
      if (event == ev::object_start) keys.emplace_back();
      break;
    case ev::key:
      if (!keys.empty() && !keys.back().insert(parsed.get_ref<std::string const&>()).second)
        format_fail(file,
                    std::string(what) + " has the key '" + parsed.get_ref<std::string const&>() + "' twice");
      break;
    case ev::object_end:
      if (!keys.empty()) keys.pop_back();
      break;
    default: break;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (json::exception const& e) {
    format_fail(file, std::string(what) + " is not valid JSON: " + e.what());
  }
}

inline std::uint64_t json_uint(json const& j, std::string const& file, std::string const& what) {
  if (!j.is_number_unsigned())
    format_fail(file, what + " is " + json_kind(j) + ", not a non-negative integer");
  return j.get<std::uint64_t>();
}

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
  std::string text(static_cast<std::size_t>(n), '\0');
  src.read(8, text.data(), text.size(), "header");
  if (text.front() != '{') format_fail(file, "the header does not start with '{'");

  json const root = parse_strict_json(text, file, "the header", 3);
  if (!root.is_object()) format_fail(file, "the header is not a JSON object");

  st_header h;
  h.data_start = 8 + n;
  for (auto const& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) format_fail(file, "__metadata__ is not an object");
      for (auto const& [k, v] : value.items()) {
        if (!v.is_string()) format_fail(file, "__metadata__ value of '" + k + "' is not a string");
        h.metadata.emplace(k, v.get<std::string>());
      }
      continue;
    }
    std::string const where = "tensor '" + name + "'";
    if (!value.is_object()) format_fail(file, where + ": entry is not an object");
    for (auto const& [k, v] : value.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        format_fail(file, where + ": unknown key '" + k + "'");
    }
    for (char const* k : {"dtype", "shape", "data_offsets"})
      if (!value.contains(k)) format_fail(file, where + ": missing key '" + std::string(k) + "'");

    auto const& jd = value["dtype"];
    if (!jd.is_string()) format_fail(file, where + ": dtype is not a string");
    auto t = dtype_from_string(jd.get_ref<std::string const&>());
    if (!t)
      format_fail(file, where + ": unsupported dtype '" + jd.get<std::string>() +
                            "' (lepton reads F32, F64, I32, I64 and U8)");

    auto const& js = value["shape"];
    if (!js.is_array()) format_fail(file, where + ": shape is not an array");
    std::vector<std::size_t> shape;
    shape.reserve(js.size());
    for (std::size_t i = 0; i < js.size(); ++i) {
      std::uint64_t d = json_uint(js[i], file, where + ": shape entry " + std::to_string(i));
      if (d > SIZE_MAX) format_fail(file, where + ": shape entry " + std::to_string(i) + " is too large");
      shape.push_back(static_cast<std::size_t>(d));
    }
    auto nbytes = checked_nbytes(*t, shape);
    if (!nbytes)
      format_fail(file, where + ": shape " + shape_string(shape) +
                            " has too many elements (its byte size overflows)");

    auto const& jo = value["data_offsets"];
    if (!jo.is_array() || jo.size() != 2)
      format_fail(file, where + ": data_offsets is not an array [begin, end]");
    std::uint64_t b = json_uint(jo[0], file, where + ": data_offsets begin");
    std::uint64_t e = json_uint(jo[1], file, where + ": data_offsets end");
    if (e < b)
      format_fail(file, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                            "] end before begin");
    if (e - b != *nbytes)
      format_fail(file, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                            "] span " + std::to_string(e - b) + " bytes but " + std::string(to_string(*t)) +
                            " " + shape_string(shape) + " needs " + std::to_string(*nbytes));
    h.entries.push_back({name, *t, std::move(shape), b, e});
  }

  // stable: tensors with equal offsets (zero-size ones) keep the header's order
  std::stable_sort(h.entries.begin(), h.entries.end(), [](st_entry const& a, st_entry const& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
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
  for (auto& e : h.entries) {
    auto t = dyn_tensor::uninitialized(e.type, e.shape);
    src.read(h.data_start + e.begin, t.data(), t.nbytes(), "tensor '" + e.name + "'");
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
/// null data pointer.
inline std::string safetensors_header(std::span<tensor_ref const> tensors,
                                      std::map<std::string, std::string> const& metadata,
                                      std::uint64_t& data_size) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (auto const& t : tensors) {
    if (t.name == "__metadata__")
      throw value_error("save_safetensors: '__metadata__' is reserved, not a tensor name");
    if (!names.insert(t.name).second)
      throw value_error("save_safetensors: duplicate tensor name '" + t.name + "'");
    auto n = checked_nbytes(t.type, t.shape);
    if (!n) throw value_error("save_safetensors: tensor '" + t.name + "': size overflows");
    if (*n && !t.data) throw value_error("save_safetensors: tensor '" + t.name + "' has no data pointer");
    j[t.name] = {{"dtype", std::string(to_string(t.type))},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + *n}}};
    offset += *n;
  }
  data_size = offset;
  std::string text;
  try {
    text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (nlohmann::json::exception const& e) {
    throw value_error(std::string("save_safetensors: names and metadata must be valid UTF-8: ") + e.what());
  }
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
/// The file is validated completely first; allocations never exceed the file's size (plus the header
/// limit). Throws lepton::format_error or lepton::io_error naming the file and the reason.
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
