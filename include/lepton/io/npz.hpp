#pragma once
/// @file npz.hpp
/// @brief Reading and writing numpy's .npz format: a zip archive with one `<name>.npy` entry per tensor.
///
/// lepton writes STORED (uncompressed) entries with zlib's CRC-32, a fixed timestamp (1980-01-01) so that
/// equal tensors give equal files, and no zip64 records; `numpy.load` reads them. It reads STORED and
/// DEFLATE entries (what `numpy.savez` and `numpy.savez_compressed` write, including the zip64 extra
/// field numpy puts in local headers of small files). Zip64 archives (over 4 GiB or 65535 entries),
/// multi-disk and encrypted archives, other compression methods and entries whose name does not end in
/// `.npy` are lepton::format_errors. Every entry is checked: local against central header (name, method,
/// sizes, CRC), entries inside the archive and not overlapping, the central directory exactly filling the
/// space before the end record, declared sizes against deflate's 1032:1 limit and
/// load_options::max_decompressed_bytes (before anything is inflated), the .npy content itself (see
/// npy.hpp) as it inflates, then the exact inflated size and the CRC of the data.

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

#include <zlib.h>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "dtype.hpp"
#include "dyn_tensor.hpp"
#include "npy.hpp"
#include "reader.hpp"

namespace lepton::io {
namespace detail {

inline constexpr std::uint32_t zip_local_sig = 0x04034b50;
inline constexpr std::uint32_t zip_central_sig = 0x02014b50;
inline constexpr std::uint32_t zip_end_sig = 0x06054b50;
inline constexpr std::uint32_t zip64_locator_sig = 0x07064b50;
inline constexpr std::uint16_t zip_dos_date = 0x21; // 1980-01-01

inline std::uint32_t crc32_of(std::uint32_t crc, void const* data, std::size_t n) noexcept {
  auto const* p = static_cast<Bytef const*>(data);
  uLong c = crc;
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}

/// One entry of the central directory, checked against its local header.
struct zip_entry {
  std::string name;
  std::uint16_t flags = 0;
  std::uint16_t method = 0;
  std::uint32_t crc = 0;
  std::uint64_t csize = 0;
  std::uint64_t usize = 0;
  std::uint64_t local_offset = 0;
  std::uint64_t data_offset = 0;
};

/// Finds a zip64 extra field (id 1) in an extra block: {usize, csize} when it holds both.
inline bool zip64_extra(std::span<unsigned char const> extra, std::uint64_t& usize, std::uint64_t& csize) {
  std::size_t p = 0;
  while (p + 4 <= extra.size()) {
    std::uint16_t id = load_le<std::uint16_t>(extra.data() + p);
    std::uint16_t len = load_le<std::uint16_t>(extra.data() + p + 2);
    if (p + 4 + len > extra.size()) return false;
    if (id == 1 && len >= 16) {
      usize = load_le<std::uint64_t>(extra.data() + p + 4);
      csize = load_le<std::uint64_t>(extra.data() + p + 12);
      return true;
    }
    p += 4 + std::size_t{len};
  }
  return false;
}

inline std::vector<zip_entry> read_zip_directory(byte_source const& src) {
  std::string const& file = src.name();
  std::uint64_t const size = src.size();
  if (size < 22)
    format_fail(file, "truncated: " + std::to_string(size) + " bytes is too short for a zip archive (.npz)");

  // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
  std::uint64_t const tail_len = std::min<std::uint64_t>(size, 22 + 65535);
  std::vector<unsigned char> tail(static_cast<std::size_t>(tail_len));
  src.read(size - tail_len, tail.data(), tail.size(), "end of central directory");
  std::uint64_t eocd = std::numeric_limits<std::uint64_t>::max();
  for (std::size_t i = tail.size() - 22 + 1; i-- > 0;) {
    if (load_le<std::uint32_t>(&tail[i]) != zip_end_sig) continue;
    if (i + 22 + load_le<std::uint16_t>(&tail[i + 20]) != tail.size()) continue;
    eocd = size - tail_len + i;
    break;
  }
  if (eocd == std::numeric_limits<std::uint64_t>::max())
    format_fail(file, "not a zip archive (.npz), or truncated: no end of central directory record");
  unsigned char const* e = &tail[static_cast<std::size_t>(eocd - (size - tail_len))];
  std::uint16_t disk = load_le<std::uint16_t>(e + 4), cd_disk = load_le<std::uint16_t>(e + 6);
  std::uint16_t n_disk = load_le<std::uint16_t>(e + 8), n_total = load_le<std::uint16_t>(e + 10);
  std::uint32_t cd_size = load_le<std::uint32_t>(e + 12), cd_offset = load_le<std::uint32_t>(e + 16);
  bool zip64_locator = false;
  if (eocd >= 20) {
    unsigned char loc[4];
    src.read(eocd - 20, loc, 4, "zip64 locator");
    zip64_locator = load_le<std::uint32_t>(loc) == zip64_locator_sig;
  }
  if (zip64_locator || n_total == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff)
    format_fail(file,
                "zip64 archives are not supported (lepton reads zip archives under 4 GiB and 65535 entries)");
  if (disk != 0 || cd_disk != 0 || n_disk != n_total)
    format_fail(file, "multi-disk zip archives are not supported");
  if (std::uint64_t{cd_offset} + cd_size != eocd)
    format_fail(file, "the central directory [" + std::to_string(cd_offset) + ", " +
                          std::to_string(std::uint64_t{cd_offset} + cd_size) +
                          ") does not end where the end record starts (" + std::to_string(eocd) + ")");

  std::vector<unsigned char> cd(cd_size);
  src.read(cd_offset, cd.data(), cd.size(), "central directory");
  std::vector<zip_entry> entries;
  std::set<std::string> names;
  std::size_t p = 0;
  for (std::size_t k = 0; k < n_total; ++k) {
    std::string const where = "central directory entry " + std::to_string(k);
    if (p + 46 > cd.size()) format_fail(file, where + " runs past the central directory");
    unsigned char const* c = cd.data() + p;
    if (load_le<std::uint32_t>(c) != zip_central_sig) format_fail(file, where + " has a bad signature");
    zip_entry z;
    z.flags = load_le<std::uint16_t>(c + 8);
    z.method = load_le<std::uint16_t>(c + 10);
    z.crc = load_le<std::uint32_t>(c + 16);
    std::uint32_t csize = load_le<std::uint32_t>(c + 20), usize = load_le<std::uint32_t>(c + 24);
    std::size_t nlen = load_le<std::uint16_t>(c + 28), xlen = load_le<std::uint16_t>(c + 30),
                clen = load_le<std::uint16_t>(c + 32);
    std::uint16_t start_disk = load_le<std::uint16_t>(c + 34);
    std::uint32_t local = load_le<std::uint32_t>(c + 42);
    if (p + 46 + nlen + xlen + clen > cd.size())
      format_fail(file, where + " runs past the central directory");
    z.name.assign(reinterpret_cast<char const*>(c + 46), nlen);
    std::string const ew = "entry '" + z.name + "'";
    if (csize == 0xffffffff || usize == 0xffffffff || local == 0xffffffff)
      format_fail(file, ew + ": zip64 entries are not supported");
    if (start_disk != 0) format_fail(file, ew + ": multi-disk zip archives are not supported");
    if (z.flags & 0x0041 || z.flags & 0x2000) format_fail(file, ew + ": encrypted entries are not supported");
    if (z.method != 0 && z.method != 8)
      format_fail(file, ew + ": compression method " + std::to_string(z.method) +
                            " is not supported (lepton reads stored (0) and deflate (8))");
    if (z.method == 0 && csize != usize)
      format_fail(file, ew + ": stored entry with compressed size " + std::to_string(csize) +
                            " != uncompressed size " + std::to_string(usize));
    if (z.name.size() < 5 || z.name.compare(z.name.size() - 4, 4, ".npy") != 0)
      format_fail(file, ew + ": not a .npy entry (an .npz holds only <name>.npy entries)");
    if (z.name.find('\0') != std::string::npos) format_fail(file, ew + ": the name contains a NUL byte");
    if (!names.insert(z.name).second) format_fail(file, ew + " appears twice");
    z.csize = csize;
    z.usize = usize;
    z.local_offset = local;
    entries.push_back(std::move(z));
    p += 46 + nlen + xlen + clen;
  }
  if (p != cd.size())
    format_fail(file, "the central directory has " + std::to_string(cd.size() - p) + " bytes after its " +
                          std::to_string(n_total) + " entries");

  // Local headers: consistent with the central directory, inside the archive, not overlapping.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (auto& z : entries) {
    std::string const ew = "entry '" + z.name + "'";
    if (z.local_offset + 30 > cd_offset) format_fail(file, ew + ": local header offset is past the entries");
    unsigned char l[30];
    src.read(z.local_offset, l, 30, ew + " local header");
    if (load_le<std::uint32_t>(l) != zip_local_sig) format_fail(file, ew + ": bad local header signature");
    std::uint16_t lflags = load_le<std::uint16_t>(l + 6), lmethod = load_le<std::uint16_t>(l + 8);
    std::uint32_t lcrc = load_le<std::uint32_t>(l + 14);
    std::uint64_t lcsize = load_le<std::uint32_t>(l + 18), lusize = load_le<std::uint32_t>(l + 22);
    std::size_t nlen = load_le<std::uint16_t>(l + 26), xlen = load_le<std::uint16_t>(l + 28);
    if (z.local_offset + 30 + nlen + xlen > cd_offset)
      format_fail(file, ew + ": local header runs past the entries");
    std::vector<unsigned char> nx(nlen + xlen);
    src.read(z.local_offset + 30, nx.data(), nx.size(), ew + " local header");
    if (std::string(reinterpret_cast<char const*>(nx.data()), nlen) != z.name)
      format_fail(file, ew + ": the local header names a different file");
    if (lmethod != z.method || lflags != z.flags)
      format_fail(file, ew + ": local and central headers disagree (method or flags)");
    if (!(z.flags & 0x0008)) { // without a data descriptor, the local header repeats CRC and sizes
      std::uint64_t xu = 0, xc = 0;
      bool has64 = zip64_extra(std::span<unsigned char const>(nx.data() + nlen, xlen), xu, xc);
      if (lusize == 0xffffffff || lcsize == 0xffffffff) {
        if (!has64) format_fail(file, ew + ": local header announces zip64 sizes but has no zip64 field");
        lusize = xu;
        lcsize = xc;
      } else if (has64 && (xu != lusize || xc != lcsize)) {
        format_fail(file, ew + ": the local zip64 field disagrees with the local header");
      }
      if (lcrc != z.crc || lcsize != z.csize || lusize != z.usize)
        format_fail(file, ew + ": local and central headers disagree (CRC or sizes)");
    }
    z.data_offset = z.local_offset + 30 + nlen + xlen;
    if (z.data_offset + z.csize > cd_offset)
      format_fail(file, ew + ": data [" + std::to_string(z.data_offset) + ", " +
                            std::to_string(z.data_offset + z.csize) +
                            ") runs into the central directory at " + std::to_string(cd_offset));
    ranges.emplace_back(z.local_offset, z.data_offset + z.csize);
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) format_fail(file, "two zip entries overlap");
  return entries;
}

/// The bytes of one archive entry, read in order while their CRC-32 is computed: a stored entry
/// straight from the archive, a deflate entry inflated on the fly from 64 KiB of compressed input
/// at a time. Nothing is produced past the entry's declared size `usize`, so a reader spends the
/// memory it asks for (at most `usize`) plus 64 KiB here, whatever the compressed data holds.
class entry_reader {
public:
  entry_reader(byte_source const& src, zip_entry const& z, std::string what)
      : m_src(src.window(z.data_offset, z.csize, src.name())), m_z(z), m_what(std::move(what)) {
    if (!deflated()) return;
    m_in.resize(static_cast<std::size_t>(std::min<std::uint64_t>(z.csize, 1u << 16)));
    if (inflateInit2(&m_zs, -15) != Z_OK)
      throw io_error(m_src.name() + ": " + m_what + ": zlib inflateInit2 failed");
    m_zinit = true;
  }
  entry_reader(entry_reader const&) = delete;
  entry_reader& operator=(entry_reader const&) = delete;
  ~entry_reader() {
    if (m_zinit) inflateEnd(&m_zs);
  }

  /// The next `n` bytes of the entry: the source of read_npy_stream, which never asks past `usize`.
  void operator()(void* dst, std::size_t n, std::string const& part) {
    if (n > m_z.usize - m_produced)
      fail("reading " + part + " would pass the announced size of " + std::to_string(m_z.usize) + " bytes");
    if (deflated())
      inflate_exactly(static_cast<Bytef*>(dst), n);
    else
      m_src.read(m_produced, dst, n, m_what + " " + part);
    m_crc = crc32_of(m_crc, dst, n);
    m_produced += n;
  }

  /// Reads whatever the .npy reader left (when it stopped early) and checks the entry: a deflate
  /// stream must end exactly after `usize` bytes and exactly at the end of its compressed data, and
  /// the CRC must match. Called after a .npy error too: a damaged entry is the better message.
  void finish() {
    if (m_failed) return; // this entry's own error is already on its way
    if (m_produced < m_z.usize) {
      std::vector<std::byte> scratch(static_cast<std::size_t>(std::min<std::uint64_t>(m_z.usize, 1u << 16)));
      while (m_produced < m_z.usize)
        (*this)(scratch.data(),
                static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), m_z.usize - m_produced)),
                "data");
    }
    if (deflated()) {
      unsigned char probe = 0; // full: the stream must end now, without one more byte
      if (!m_ended && inflate_some(&probe, 1) != 0)
        fail("inflates to more than the announced " + std::to_string(m_z.usize) + " bytes");
      std::uint64_t const left = m_zs.avail_in + (m_z.csize - m_consumed);
      if (left != 0) fail(std::to_string(left) + " bytes after the end of the deflate data");
    }
    if (m_crc != m_z.crc) fail("CRC-32 mismatch (corrupt data)");
  }

private:
  bool deflated() const noexcept { return m_z.method == 8; }
  [[noreturn]] void fail(std::string const& why) {
    m_failed = true;
    format_fail(m_src.name(), m_what + ": " + why);
  }

  /// Inflates exactly `n` bytes into `out`; the entry is too short if the stream ends first.
  void inflate_exactly(Bytef* out, std::size_t n) {
    for (std::size_t done = 0; done < n;) {
      if (m_ended)
        fail("inflates to " + std::to_string(m_produced + done) + " bytes, not the announced " +
             std::to_string(m_z.usize));
      done += inflate_some(out + done, n - done);
    }
  }

  /// Runs zlib until it has written `n` bytes (at most 1 GiB) or the stream has ended; returns the count.
  std::size_t inflate_some(Bytef* out, std::size_t n) {
    m_zs.next_out = out;
    m_zs.avail_out = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    uInt const room = m_zs.avail_out;
    while (m_zs.avail_out > 0 && !m_ended) {
      if (m_zs.avail_in == 0 && m_consumed < m_z.csize) {
        auto const k = static_cast<std::size_t>(std::min<std::uint64_t>(m_in.size(), m_z.csize - m_consumed));
        m_src.read(m_consumed, m_in.data(), k, m_what + " compressed data");
        m_consumed += k;
        m_zs.next_in = m_in.data();
        m_zs.avail_in = static_cast<uInt>(k);
      }
      int const rc = inflate(&m_zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END)
        m_ended = true;
      else if (rc == Z_BUF_ERROR && m_zs.avail_in == 0 && m_consumed == m_z.csize)
        fail("corrupt or truncated deflate data (the compressed bytes end inside the stream)");
      else if (rc != Z_OK && rc != Z_BUF_ERROR)
        fail("corrupt or truncated deflate data (zlib: " + std::to_string(rc) + ")");
    }
    return room - m_zs.avail_out;
  }

  byte_source m_src; // the entry's compressed (or stored) bytes, named like the archive
  zip_entry const& m_z;
  std::string m_what;
  std::vector<unsigned char> m_in; // compressed input
  z_stream m_zs{};
  bool m_zinit = false, m_ended = false, m_failed = false;
  std::uint64_t m_produced = 0, m_consumed = 0;
  std::uint32_t m_crc = 0;
};

/// Deflate cannot expand one compressed byte to more than 1032 bytes (zlib's documented limit:
/// 258 bytes per 2-bit code): a larger declared size is a lie that the file cannot back.
inline constexpr std::uint64_t deflate_max_ratio = 1032;

inline tensor_map read_npz(byte_source const& src, load_options const& opt) {
  std::string const& file = src.name();
  auto entries = read_zip_directory(src);
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
    entry_reader in(src, z, what);
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

/// One planned archive entry: validated, with its .npy header and CRC computed.
struct npz_member {
  std::string name;
  std::string header;
  std::uint32_t crc;
  std::uint32_t size;
  std::uint32_t offset;
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
    npz_member e{t.name + ".npy", npy_header_bytes(t.type, t.shape), 0, 0, 0};
    if (e.name.size() > 0xffff) throw value_error("save_npz: tensor name too long for a zip entry");
    std::uint64_t size = e.header.size() + *n;
    if (size >= 0xffffffff || offset + 30 + e.name.size() + size >= 0xffffffff)
      throw value_error(
          "save_npz: the archive would exceed 4 GiB, which needs zip64 (not written by lepton)");
    e.crc = crc32_of(crc32_of(0, e.header.data(), e.header.size()), t.data, *n);
    e.size = static_cast<std::uint32_t>(size);
    e.offset = static_cast<std::uint32_t>(offset);
    offset += 30 + e.name.size() + size;
    ps.push_back(std::move(e));
  }
  std::uint64_t cd_size = 0;
  for (auto const& e : ps) cd_size += 46 + e.name.size();
  if (offset + cd_size + 22 >= 0xffffffff)
    throw value_error("save_npz: the archive would exceed 4 GiB, which needs zip64 (not written by lepton)");
  return ps;
}

/// Writes the archive planned by plan_npz through `sink(pointer, size)`.
template <class Sink>
void write_npz(Sink&& sink, std::span<tensor_ref const> tensors, std::vector<npz_member> const& ps) {
  std::uint64_t offset = 0;
  for (auto const& e : ps) offset += 30 + e.name.size() + e.size;
  auto utf8_flag = [](std::string const& s) -> std::uint16_t {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })
               ? 0x0800
               : 0;
  };
  std::vector<unsigned char> buf;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    auto const& e = ps[i];
    buf.clear();
    store_le<std::uint32_t>(buf, zip_local_sig);
    store_le<std::uint16_t>(buf, 20);
    store_le<std::uint16_t>(buf, utf8_flag(e.name));
    store_le<std::uint16_t>(buf, 0); // stored
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, zip_dos_date);
    store_le<std::uint32_t>(buf, e.crc);
    store_le<std::uint32_t>(buf, e.size);
    store_le<std::uint32_t>(buf, e.size);
    store_le<std::uint16_t>(buf, static_cast<std::uint16_t>(e.name.size()));
    store_le<std::uint16_t>(buf, 0);
    buf.insert(buf.end(), e.name.begin(), e.name.end());
    buf.insert(buf.end(), e.header.begin(), e.header.end());
    sink(buf.data(), buf.size());
    if (auto n = tensors[i].nbytes()) sink(tensors[i].data, n);
  }
  std::uint64_t const cd_offset = offset;
  buf.clear();
  for (auto const& e : ps) {
    store_le<std::uint32_t>(buf, zip_central_sig);
    store_le<std::uint16_t>(buf, (3 << 8) | 20); // made by: unix, zip 2.0
    store_le<std::uint16_t>(buf, 20);
    store_le<std::uint16_t>(buf, utf8_flag(e.name));
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, zip_dos_date);
    store_le<std::uint32_t>(buf, e.crc);
    store_le<std::uint32_t>(buf, e.size);
    store_le<std::uint32_t>(buf, e.size);
    store_le<std::uint16_t>(buf, static_cast<std::uint16_t>(e.name.size()));
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint16_t>(buf, 0);
    store_le<std::uint32_t>(buf, std::uint32_t{0100644} << 16); // regular file, rw-r--r--
    store_le<std::uint32_t>(buf, e.offset);
    buf.insert(buf.end(), e.name.begin(), e.name.end());
  }
  std::uint64_t const cd_size = buf.size();
  store_le<std::uint32_t>(buf, zip_end_sig);
  store_le<std::uint16_t>(buf, 0);
  store_le<std::uint16_t>(buf, 0);
  store_le<std::uint16_t>(buf, static_cast<std::uint16_t>(ps.size()));
  store_le<std::uint16_t>(buf, static_cast<std::uint16_t>(ps.size()));
  store_le<std::uint32_t>(buf, static_cast<std::uint32_t>(cd_size));
  store_le<std::uint32_t>(buf, static_cast<std::uint32_t>(cd_offset));
  store_le<std::uint16_t>(buf, 0);
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
  return detail::read_npz(detail::byte_source(f, 0, f.size(), f.name()), options);
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
