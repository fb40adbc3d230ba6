#pragma once
/// @file zlib.hpp
/// @brief lepton's one zlib wrapper, for every compressed format of io/ and data/: CRC-32, and
///        streaming inflation of raw deflate data (an .npz entry) or of one gzip member (an IDX .gz
///        file), pulled from a byte_source in 64 KiB chunks, with lepton exceptions that name the file.
///
/// The inflater never produces more than its caller asks for, so a caller that asks only for the
/// size a header declares spends no more memory than that, whatever the compressed data holds.
/// Nothing here is needed by users; everything lives in `lepton::io::detail`.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <zlib.h>

#include "../core/error.hpp"
#include "reader.hpp"

namespace lepton::io::detail {

/// Deflate cannot expand one compressed byte to more than 1032 bytes (zlib's documented limit:
/// 258 bytes per 2-bit code): a larger declared size is a lie that the file cannot back.
inline constexpr std::uint64_t deflate_max_ratio = 1032;

/// The CRC-32 (zlib's, as in zip and gzip) of `n` bytes, continuing `crc` (0 to start).
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

/// What an inflater reads: headerless deflate data (zip entries) or one gzip member (.gz files).
enum class inflate_format { raw_deflate, gzip };

/// @brief Inflates compressed bytes read from a byte_source, in 64 KiB chunks, on demand.
///
/// Corrupt data is a format_error "<file>: [<what>: ]corrupt deflate|gzip data: <zlib's reason>";
/// zlib running out of memory is std::bad_alloc. Compressed input that ends inside the stream is
/// not an error here: read() returns fewer bytes and input_exhausted() says why, so that the
/// caller can say what was cut off.
class inflater {
public:
  /// `src`: the compressed bytes (its name names the file in messages); `what`: the part of the
  /// file they are ("entry 'x.npy'"), empty for the whole file.
  inflater(byte_source src, inflate_format format, std::string what = {})
      : m_src(std::move(src)), m_what(std::move(what)), m_format(format),
        m_in(static_cast<std::size_t>(std::min<std::uint64_t>(m_src.size(), 1u << 16))) {
    int const rc = inflateInit2(&m_zs, format == inflate_format::gzip ? 16 + MAX_WBITS : -MAX_WBITS);
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    if (rc != Z_OK) throw io_error(m_src.name() + ": " + prefix() + "zlib inflateInit2 failed");
  }
  inflater(inflater const&) = delete;
  inflater& operator=(inflater const&) = delete;
  ~inflater() { inflateEnd(&m_zs); }

  /// Inflates up to `n` bytes into `dst` and returns how many were produced. Fewer than `n` means
  /// that the stream ended (ended()) or that the compressed input ran out first (input_exhausted()).
  std::size_t read(void* dst, std::size_t n) {
    auto* out = static_cast<Bytef*>(dst);
    std::size_t produced = 0;
    while (produced < n && !m_ended) {
      if (m_zs.avail_in == 0) {
        std::size_t const got =
            m_src.read_upto(m_consumed, m_in.data(), m_in.size(), part("compressed data"));
        if (got == 0) break; // cut off: input_exhausted()
        m_consumed += got;
        m_zs.next_in = m_in.data();
        m_zs.avail_in = static_cast<uInt>(got);
      }
      std::size_t const want = std::min<std::size_t>(n - produced, std::size_t{1} << 30);
      m_zs.next_out = out + produced;
      m_zs.avail_out = static_cast<uInt>(want);
      int const rc = ::inflate(&m_zs, Z_NO_FLUSH);
      produced += want - m_zs.avail_out;
      if (rc == Z_STREAM_END)
        m_ended = true;
      else if (rc == Z_MEM_ERROR)
        throw std::bad_alloc();
      else if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR)
        corrupt(m_zs.msg ? m_zs.msg : "inflate failed");
      else if (rc == Z_BUF_ERROR && m_zs.avail_in != 0 && m_zs.avail_out != 0)
        corrupt("inflate made no progress");
    }
    m_total_out += produced;
    return produced;
  }

  /// The stream has ended (for gzip: after its trailer, whose CRC and size zlib has checked).
  bool ended() const noexcept { return m_ended; }
  /// The compressed input is used up but the stream has not ended: it is cut off.
  bool input_exhausted() const noexcept {
    return !m_ended && m_zs.avail_in == 0 && m_consumed == m_src.size();
  }
  /// Bytes produced so far.
  std::uint64_t total_out() const noexcept { return m_total_out; }
  /// After ended(): the compressed bytes that follow the end of the stream.
  std::uint64_t trailing_bytes() const noexcept { return m_zs.avail_in + (m_src.size() - m_consumed); }
  /// After ended(): whether the trailing bytes start like another gzip member (1f 8b).
  bool trailing_is_gzip() const {
    if (trailing_bytes() < 2) return false;
    unsigned char magic[2];
    m_src.read(m_consumed - m_zs.avail_in, magic, 2, part("bytes after the compressed data"));
    return magic[0] == 0x1f && magic[1] == 0x8b;
  }

private:
  /// "entry 'x.npy': " before a message; empty for the whole file.
  std::string prefix() const { return m_what.empty() ? std::string() : m_what + ": "; }
  /// A part of the input for read messages: "entry 'x.npy' compressed data", "the compressed data".
  std::string part(char const* name) const {
    return (m_what.empty() ? std::string("the") : m_what) + " " + name;
  }
  [[noreturn]] void corrupt(std::string const& why) const {
    format_fail(m_src.name(), prefix() + "corrupt " +
                                  (m_format == inflate_format::gzip ? "gzip" : "deflate") + " data: " + why);
  }

  byte_source m_src;
  std::string m_what;
  inflate_format m_format;
  z_stream m_zs{};
  std::vector<unsigned char> m_in; // compressed input
  std::uint64_t m_consumed = 0;    // bytes of m_src handed to zlib
  std::uint64_t m_total_out = 0;
  bool m_ended = false;
};

} // namespace lepton::io::detail
