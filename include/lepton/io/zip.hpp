#pragma once
/// @file zip.hpp
/// @brief The zip archive under lepton's zip-based formats (.npz): reading and checking an archive's
///        directory, reading one entry (stored or deflate) while its CRC-32 is checked, and writing
///        STORED entries.
///
/// Reading: zip64 archives (over 4 GiB or 65535 entries), multi-disk and encrypted archives and
/// compression methods other than stored (0) and deflate (8) are lepton::format_errors; so are
/// entry names the format refuses (zip_rules::check_name). Every entry is checked: local against
/// central header (name, method, flags, sizes, CRC), entries inside the archive and not
/// overlapping, the central directory exactly filling the space before the end record; while an
/// entry is read, that it yields exactly its announced size (nothing is inflated past it) and that
/// its CRC-32 matches. The zip64 extra field that numpy writes into local headers of small files is
/// understood.
///
/// Writing: STORED entries with a fixed timestamp (1980-01-01), so that equal content gives equal
/// archives, "made by unix" with mode rw-r--r--, the UTF-8 flag for non-ASCII names, no zip64
/// records. Nothing here is needed by users; everything lives in `lepton::io::detail`.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "reader.hpp"
#include "zlib.hpp"

namespace lepton::io::detail {

inline constexpr std::uint32_t zip_local_sig = 0x04034b50;
inline constexpr std::uint32_t zip_central_sig = 0x02014b50;
inline constexpr std::uint32_t zip_end_sig = 0x06054b50;
inline constexpr std::uint32_t zip64_locator_sig = 0x07064b50;
inline constexpr std::uint16_t zip_dos_date = 0x21; // 1980-01-01
/// Fixed sizes of a local header, a central directory header and the end record (before names).
inline constexpr std::size_t zip_local_header_bytes = 30;
inline constexpr std::size_t zip_central_header_bytes = 46;
inline constexpr std::size_t zip_end_record_bytes = 22;

/// What a format built on zip adds to the archive checks.
struct zip_rules {
  /// The format's name in messages: "not a zip archive (.npz)"; empty: "not a zip archive".
  std::string_view format;
  /// Why an entry name is refused (the message after "entry '<name>': "), or "" to accept it;
  /// null accepts every name.
  std::string (*check_name)(std::string const& name) = nullptr;
};

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

/// Reads and checks the central directory of the archive `src` and every entry's local header (see
/// the file comment); returns the entries in central-directory order, each with its data offset.
inline std::vector<zip_entry> read_zip_directory(byte_source const& src, zip_rules const& rules) {
  std::string const kind =
      rules.format.empty() ? std::string("zip archive") : "zip archive (" + std::string(rules.format) + ")";
  std::string const& file = src.name();
  std::uint64_t const size = src.size();
  if (size < 22)
    format_fail(file, "truncated: " + std::to_string(size) + " bytes is too short for a " + kind);

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
    format_fail(file, "not a " + kind + ", or truncated: no end of central directory record");
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
    if (rules.check_name)
      if (std::string why = rules.check_name(z.name); !why.empty()) format_fail(file, ew + ": " + why);
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

/// @brief The bytes of one archive entry, read in order while their CRC-32 is computed: a stored
///        entry straight from the archive, a deflate entry inflated on the fly from 64 KiB of
///        compressed input at a time.
///
/// Nothing is produced past the entry's declared size `usize`, so a reader spends the memory it asks
/// for (at most `usize`) plus 64 KiB here, whatever the compressed data holds. Errors are
/// format_errors "<archive>: <what>: <why>".
class zip_entry_reader {
public:
  zip_entry_reader(byte_source const& src, zip_entry const& z, std::string what)
      : m_src(src.window(z.data_offset, z.csize, src.name())), m_z(z), m_what(std::move(what)) {
    if (deflated()) m_inflater.emplace(m_src, inflate_format::raw_deflate, m_what);
  }
  zip_entry_reader(zip_entry_reader const&) = delete;
  zip_entry_reader& operator=(zip_entry_reader const&) = delete;

  /// The next `n` bytes of the entry into `dst`; `part` names them for messages ("header", "data").
  /// Asking past `usize` is a format_error.
  void operator()(void* dst, std::size_t n, std::string const& part) {
    if (n > m_z.usize - m_produced)
      fail("reading " + part + " would pass the announced size of " + std::to_string(m_z.usize) + " bytes");
    if (deflated())
      inflate_exactly(dst, n);
    else
      m_src.read(m_produced, dst, n, m_what + " " + part);
    m_crc = crc32_of(m_crc, dst, n);
    m_produced += n;
  }

  /// Reads whatever the entry's reader left (when it stopped early) and checks the entry: a deflate
  /// stream must end exactly after `usize` bytes and exactly at the end of its compressed data, and
  /// the CRC must match. Call it after an error of the entry's content too: a damaged entry is the
  /// better message (it does nothing after an error of this reader's own).
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
      guarded([&] {
        unsigned char probe = 0; // full: the stream must end now, without one more byte
        if (!m_inflater->ended() && m_inflater->read(&probe, 1) != 0)
          fail("inflates to more than the announced " + std::to_string(m_z.usize) + " bytes");
        if (!m_inflater->ended()) fail_truncated();
        if (std::uint64_t const left = m_inflater->trailing_bytes(); left != 0)
          fail(std::to_string(left) + " bytes after the end of the deflate data");
      });
    }
    if (m_crc != m_z.crc) fail("CRC-32 mismatch (corrupt data)");
  }

private:
  bool deflated() const noexcept { return m_z.method == 8; }
  [[noreturn]] void fail(std::string const& why) {
    m_failed = true;
    format_fail(m_src.name(), m_what + ": " + why);
  }
  [[noreturn]] void fail_truncated() {
    fail("corrupt or truncated deflate data (the compressed bytes end inside the stream)");
  }
  /// Runs `f`, marking this entry failed if the inflater throws (corrupt data).
  template <class F> void guarded(F&& f) {
    try {
      f();
    } catch (format_error const&) {
      m_failed = true;
      throw;
    }
  }

  /// Inflates exactly `n` bytes into `out`; the entry is too short if the stream ends first.
  void inflate_exactly(void* out, std::size_t n) {
    guarded([&] {
      std::size_t const got = m_inflater->read(out, n);
      if (got == n) return;
      if (m_inflater->ended())
        fail("inflates to " + std::to_string(m_produced + got) + " bytes, not the announced " +
             std::to_string(m_z.usize));
      fail_truncated();
    });
  }

  byte_source m_src; // the entry's compressed (or stored) bytes, named like the archive
  zip_entry const& m_z;
  std::string m_what;
  std::optional<inflater> m_inflater; // deflate entries only
  bool m_failed = false;
  std::uint64_t m_produced = 0;
  std::uint32_t m_crc = 0;
};

/// One STORED entry to write: its name, the CRC-32 and size of its content, the offset of its local header.
struct zip_stored_entry {
  std::string name;
  std::uint32_t crc = 0;
  std::uint32_t size = 0;
  std::uint32_t offset = 0;
};

/// The general-purpose flag of a written entry: bit 11 (UTF-8 names) for a non-ASCII name.
inline std::uint16_t zip_name_flags(std::string const& name) noexcept {
  return std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })
             ? 0x0800
             : 0;
}

/// Appends the local header of a STORED entry (its content follows it in the archive).
inline void append_zip_local_header(std::vector<unsigned char>& buf, zip_stored_entry const& e) {
  store_le<std::uint32_t>(buf, zip_local_sig);
  store_le<std::uint16_t>(buf, 20);
  store_le<std::uint16_t>(buf, zip_name_flags(e.name));
  store_le<std::uint16_t>(buf, 0); // stored
  store_le<std::uint16_t>(buf, 0);
  store_le<std::uint16_t>(buf, zip_dos_date);
  store_le<std::uint32_t>(buf, e.crc);
  store_le<std::uint32_t>(buf, e.size);
  store_le<std::uint32_t>(buf, e.size);
  store_le<std::uint16_t>(buf, static_cast<std::uint16_t>(e.name.size()));
  store_le<std::uint16_t>(buf, 0);
  buf.insert(buf.end(), e.name.begin(), e.name.end());
}

/// Appends the central directory header of a STORED entry.
inline void append_zip_central_header(std::vector<unsigned char>& buf, zip_stored_entry const& e) {
  store_le<std::uint32_t>(buf, zip_central_sig);
  store_le<std::uint16_t>(buf, (3 << 8) | 20); // made by: unix, zip 2.0
  store_le<std::uint16_t>(buf, 20);
  store_le<std::uint16_t>(buf, zip_name_flags(e.name));
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

/// Appends the end of central directory record of a single-disk archive without zip64.
inline void append_zip_end_record(std::vector<unsigned char>& buf, std::uint16_t entries,
                                  std::uint32_t cd_size, std::uint32_t cd_offset) {
  store_le<std::uint32_t>(buf, zip_end_sig);
  store_le<std::uint16_t>(buf, 0);
  store_le<std::uint16_t>(buf, 0);
  store_le<std::uint16_t>(buf, entries);
  store_le<std::uint16_t>(buf, entries);
  store_le<std::uint32_t>(buf, cd_size);
  store_le<std::uint32_t>(buf, cd_offset);
  store_le<std::uint16_t>(buf, 0);
}

} // namespace lepton::io::detail
