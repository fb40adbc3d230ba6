#pragma once
/// @file npz.hpp
/// @brief Reading and writing numpy's .npz format: a zip archive (zip.hpp) with one `<name>.npy`
///        entry per tensor.
///
/// lepton writes STORED (uncompressed) entries (see zip.hpp: fixed timestamp, so equal tensors give
/// equal files; no zip64 records); `numpy.load` reads them. It reads STORED and DEFLATE entries (what
/// `numpy.savez` and `numpy.savez_compressed` write), with every archive check of zip.hpp; on top of
/// them an .npz holds only entries whose name ends in `.npy`, their declared sizes are checked against
/// deflate's 1032:1 limit and load_options::max_decompressed_bytes before anything is inflated, and
/// each entry's .npy content (see npy.hpp) is checked as it inflates, before the zip checks of its
/// exact size and CRC.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "dtype.hpp"
#include "dyn_tensor.hpp"
#include "npy.hpp"
#include "reader.hpp"
#include "zip.hpp"
#include "zlib.hpp"

namespace lepton::io {
namespace detail {

/// Entry names of an .npz: `<tensor name>.npy`.
inline std::string npz_check_name(std::string const& name) {
  if (name.size() < 5 || name.compare(name.size() - 4, 4, ".npy") != 0)
    return "not a .npy entry (an .npz holds only <name>.npy entries)";
  return {};
}

inline constexpr zip_rules npz_zip_rules{".npz", &npz_check_name};

inline tensor_map read_npz(byte_source const& src, load_options const& opt) {
  std::string const& file = src.name();
  auto entries = read_zip_directory(src, npz_zip_rules);
  // Every declared size is checked before anything is allocated or inflated; then no entry is
  // inflated past its declared size, so the cap holds whatever the compressed data does.
  std::uint64_t inflated = 0;
  for (auto const& z : entries) {
    if (z.method != 8) continue;
    std::string const what = "entry '" + z.name + "'";
    if (z.usize > z.csize * deflate_max_ratio + 64)
      format_fail(file, what + ": announces " + std::to_string(z.usize) + " bytes, more than its " +
                            std::to_string(z.csize) +
                            " compressed bytes can inflate to (deflate's limit is " +
                            std::to_string(deflate_max_ratio) + ":1)");
    inflated += z.usize;
    if (inflated > opt.max_decompressed_bytes)
      format_fail(
          file,
          what + ": announces " + std::to_string(z.usize) + " inflated bytes" +
              (inflated != z.usize ? " (" + std::to_string(inflated) + " with the entries before it)" : "") +
              ", over the limit of " + std::to_string(opt.max_decompressed_bytes) +
              " bytes (load_options::max_decompressed_bytes)");
  }
  tensor_map m;
  for (auto const& z : entries) {
    std::string const what = "entry '" + z.name + "'";
    zip_entry_reader in(src, z, what);
    dyn_tensor t;
    try {
      t = read_npy_stream(file + ": " + what, z.usize, in, opt);
    } catch (format_error const&) {
      in.finish(); // a damaged entry (CRC, sizes) is the better message
      throw;
    }
    in.finish();
    m.insert(z.name.substr(0, z.name.size() - 4), std::move(t));
  }
  return m;
}

/// One planned archive entry: validated, with its .npy header and the CRC of header and data.
struct npz_member {
  zip_stored_entry zip; ///< "<name>.npy", CRC, size (header + data), offset
  std::string header;   ///< the .npy header
};

/// Validates the tensors (names, sizes, the 4 GiB limit) and computes every entry's header and CRC.
inline std::vector<npz_member> plan_npz(std::span<tensor_ref const> tensors) {
  std::set<std::string_view> seen;
  std::vector<npz_member> ps;
  if (tensors.size() > 0xfffe)
    throw value_error("save_npz: more than 65534 tensors need zip64, which lepton does not write");
  std::uint64_t offset = 0;
  for (auto const& t : tensors) {
    if (t.name.empty()) throw value_error("save_npz: tensor names must not be empty");
    if (t.name.find('\0') != std::string::npos)
      throw value_error("save_npz: tensor names must not contain NUL");
    if (!seen.insert(t.name).second) throw value_error("save_npz: duplicate tensor name '" + t.name + "'");
    auto n = checked_nbytes(t.type, t.shape);
    if (!n) throw value_error("save_npz: tensor '" + t.name + "': size overflows");
    if (*n && !t.data) throw value_error("save_npz: tensor '" + t.name + "' has no data pointer");
    npz_member e{{t.name + ".npy"}, npy_header_bytes(t.type, t.shape)};
    if (e.zip.name.size() > 0xffff) throw value_error("save_npz: tensor name too long for a zip entry");
    std::uint64_t size = e.header.size() + *n;
    if (size >= 0xffffffff || offset + zip_local_header_bytes + e.zip.name.size() + size >= 0xffffffff)
      throw value_error(
          "save_npz: the archive would exceed 4 GiB, which needs zip64 (not written by lepton)");
    e.zip.crc = crc32_of(crc32_of(0, e.header.data(), e.header.size()), t.data, *n);
    e.zip.size = static_cast<std::uint32_t>(size);
    e.zip.offset = static_cast<std::uint32_t>(offset);
    offset += zip_local_header_bytes + e.zip.name.size() + size;
    ps.push_back(std::move(e));
  }
  std::uint64_t cd_size = 0;
  for (auto const& e : ps) cd_size += zip_central_header_bytes + e.zip.name.size();
  if (offset + cd_size + zip_end_record_bytes >= 0xffffffff)
    throw value_error("save_npz: the archive would exceed 4 GiB, which needs zip64 (not written by lepton)");
  return ps;
}

/// Writes the archive planned by plan_npz through `sink(pointer, size)`: per tensor a local header,
/// the .npy header and the tensor's bytes; then the central directory and the end record.
template <class Sink>
void write_npz(Sink&& sink, std::span<tensor_ref const> tensors, std::vector<npz_member> const& ps) {
  std::uint64_t offset = 0;
  for (auto const& e : ps) offset += zip_local_header_bytes + e.zip.name.size() + e.zip.size;
  std::vector<unsigned char> buf;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    auto const& e = ps[i];
    buf.clear();
    append_zip_local_header(buf, e.zip);
    buf.insert(buf.end(), e.header.begin(), e.header.end());
    sink(buf.data(), buf.size());
    if (auto n = tensors[i].nbytes()) sink(tensors[i].data, n);
  }
  std::uint64_t const cd_offset = offset;
  buf.clear();
  for (auto const& e : ps) append_zip_central_header(buf, e.zip);
  std::uint64_t const cd_size = buf.size();
  append_zip_end_record(buf, static_cast<std::uint16_t>(ps.size()), static_cast<std::uint32_t>(cd_size),
                        static_cast<std::uint32_t>(cd_offset));
  sink(buf.data(), buf.size());
}

} // namespace detail

/// @brief Saves tensors as an .npz archive (entries `<name>.npy`, stored uncompressed), atomically.
///
/// `numpy.load(path)` gives a mapping from the names to arrays. Names must be unique and non-empty
/// (lepton::value_error otherwise); lepton::io_error naming the file if it cannot be written.
///
/// **Example**:
/// ```
/// lepton::io::save_npz("batch.npz", {lepton::io::ref("x", x), lepton::io::ref("labels", y)});
/// // python: d = numpy.load("batch.npz"); d["x"].shape
/// ```
inline void save_npz(std::filesystem::path const& path, std::vector<tensor_ref> const& tensors,
                     atomic_write_options options = {}) {
  auto plan = detail::plan_npz(tensors); // validates before anything is created
  atomic_writer w(path, options);
  detail::write_npz([&](void const* p, std::size_t n) { w.write(p, n); }, tensors, plan);
  w.commit();
}

/// @brief Saves every tensor of a map as an .npz archive (metadata is not stored).
///
/// **Example**: `lepton::io::save_npz("copy.npz", lepton::io::load_npz("orig.npz"));`
template <std::same_as<tensor_map> Map> // a template, so that `save_npz(path, {})` is not ambiguous
void save_npz(std::filesystem::path const& path, Map const& tensors, atomic_write_options options = {}) {
  save_npz(path, tensors.refs(), options);
}

/// @brief The bytes of an .npz archive holding these tensors (what save_npz writes).
///
/// **Example**: `auto blob = lepton::io::encode_npz({lepton::io::ref("x", x)});`
inline std::vector<std::byte> encode_npz(std::vector<tensor_ref> const& tensors) {
  auto plan = detail::plan_npz(tensors);
  std::vector<std::byte> out;
  detail::write_npz(
      [&](void const* p, std::size_t n) {
    auto const* b = static_cast<std::byte const*>(p);
    out.insert(out.end(), b, b + n);
      },
      tensors, plan);
  return out;
}

/// @brief Loads every tensor of an .npz archive, in central-directory order, named without `.npy`.
///
/// Each entry is checked and decoded while it is read or inflated, straight into its tensor: peak
/// memory is the tensors plus 64 KiB (plus one entry for a Fortran-order one). DEFLATE entries may
/// announce at most `options.max_decompressed_bytes` (1 GiB) in all, checked before anything is
/// allocated; an entry over it, or one that inflates to other than it announces, is a format_error
/// naming the file and the entry.
///
/// **Example**: `auto x = lepton::io::load_npz("batch.npz").at("x").as<float, lepton::dyn, 784>();`
inline tensor_map load_npz(std::filesystem::path const& path, load_options const& options = {}) {
  detail::file_reader f(path);
  return detail::read_npz(detail::byte_source(f), options);
}

/// @brief Loads an .npz archive held in memory; `name` is used in messages.
///
/// **Example**: `auto m = lepton::io::decode_npz(blob, "batch.npz");`
inline tensor_map decode_npz(std::span<std::byte const> bytes, std::string name = "<memory>",
                             load_options const& options = {}) {
  return detail::read_npz(detail::byte_source(bytes, std::move(name)), options);
}

/// @brief Loads named tensors of an .npz archive into existing tensors, with the strong guarantee
///        (see load_safetensors_into).
///
/// **Example**:
/// ```
/// lepton::io::load_npz_into("batch.npz", {lepton::io::target("x", x)}, {.allow_unexpected = true});
/// ```
inline void load_npz_into(std::filesystem::path const& path, std::vector<tensor_target> const& targets,
                          load_into_options const& into = {}, load_options const& options = {}) {
  tensor_map m = load_npz(path, options);
  std::vector<dyn_tensor const*> ts;
  std::vector<detail::entry_info> info;
  for (auto const& [name, t] : m) {
    ts.push_back(&t);
    info.push_back({&name, t.type(), &t.shape()});
  }
  auto match = detail::match_targets(path.string(), info, targets, into);
  detail::fill_targets(
      targets, match, [&](std::size_t i) { return ts[i]->bytes(); },
      [&](std::size_t i) -> std::vector<std::size_t> const& { return ts[i]->shape(); });
}

} // namespace lepton::io
