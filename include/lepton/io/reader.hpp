#pragma once
/// @file reader.hpp
/// @brief lepton's one file reader (POSIX), for every file format of io/ and data/: opening a regular
///        file with errors that name it, bounded reads checked against the file size before anything
///        is allocated (a short file is a lepton::format_error naming the file), windows of a file or
///        of memory, overflow-checked size arithmetic and little-endian integers.
///
/// Nothing here is needed by users; everything lives in `lepton::io::detail`.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace lepton::io::detail {

/// The text of an errno value (thread-safe, unlike std::strerror).
inline std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

/// The most dimensions a tensor read from a file may have (numpy's own limit since 2.0). A larger
/// rank is a format_error; without this limit a 100 MB header could describe a rank-50,000,000 shape.
inline constexpr std::size_t max_rank = 64;

/// "lepton: <file>: <reason>" as a format_error.
[[noreturn]] inline void format_fail(std::string const& file, std::string const& reason) {
  throw format_error(file + ": " + reason);
}

/// "lepton: <file>: <reason>: <strerror(e)>" as an io_error.
[[noreturn]] inline void io_fail(std::string const& file, std::string const& reason, int e) {
  throw io_error(file + ": " + reason + ": " + errno_text(e));
}

/// "lepton: <file>: <reason>" as an io_error (a missing directory, a missing file of a data set).
[[noreturn]] inline void io_fail(std::string const& file, std::string const& reason) {
  throw io_error(file + ": " + reason);
}

/// a * b, or std::nullopt on overflow.
constexpr std::optional<std::size_t> checked_mul(std::size_t a, std::size_t b) noexcept {
  std::size_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// a + b, or std::nullopt on overflow.
constexpr std::optional<std::size_t> checked_add(std::size_t a, std::size_t b) noexcept {
  std::size_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// An open, regular, read-only file. A missing file, a directory, a FIFO or a device is an io_error
/// naming the path (and opening never blocks: the file is opened with O_NONBLOCK and checked with
/// fstat, on the open descriptor, before any read).
class file_reader {
public:
  explicit file_reader(std::filesystem::path const& path) : m_name(path.string()) {
    do m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    while (m_fd < 0 && errno == EINTR);
    if (m_fd < 0) {
      int e = errno;
      if (e == EISDIR) throw io_error(m_name + ": is a directory, not a file");
      io_fail(m_name, "cannot open for reading", e);
    }
    struct stat st {};
    if (::fstat(m_fd, &st) != 0) {
      int e = errno;
      ::close(m_fd);
      io_fail(m_name, "cannot stat", e);
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(m_fd);
      throw io_error(m_name + ": is a directory, not a file");
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(m_fd);
      throw io_error(m_name + ": not a regular file (a device, FIFO or socket)");
    }
    m_size = static_cast<std::uint64_t>(st.st_size);
  }
  file_reader(file_reader const&) = delete;
  file_reader& operator=(file_reader const&) = delete;
  ~file_reader() { ::close(m_fd); }

  /// The file name used in messages.
  std::string const& name() const noexcept { return m_name; }
  /// Size in bytes when opened.
  std::uint64_t size() const noexcept { return m_size; }

  /// Reads exactly `n` bytes at `offset` into `dst`; `what` names the part for the message
  /// ("header", "tensor 'w'"). Reading past the end is a format_error ("truncated").
  void read_at(std::uint64_t offset, void* dst, std::size_t n, std::string const& what) const {
    if (offset > m_size || n > m_size - offset)
      format_fail(m_name, "truncated: " + what + " needs bytes [" + std::to_string(offset) + ", " +
                              std::to_string(offset + n) + ") but the file has " + std::to_string(m_size) +
                              " bytes");
    auto* p = static_cast<unsigned char*>(dst);
    while (n > 0) {
      std::size_t chunk = n < (std::size_t{1} << 30) ? n : (std::size_t{1} << 30);
      ssize_t r = ::pread(m_fd, p, chunk, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        io_fail(m_name, "read error in " + what, errno);
      }
      if (r == 0) format_fail(m_name, "truncated: the file shrank while " + what + " was read");
      p += r;
      n -= static_cast<std::size_t>(r);
      offset += static_cast<std::uint64_t>(r);
    }
  }

private:
  std::string m_name;
  int m_fd = -1;
  std::uint64_t m_size = 0;
};

/// A window of bytes to parse: either a range of an open file or a memory block (an inflated
/// .npz entry). Offsets are relative to the window; reads past its end are format_errors.
class byte_source {
public:
  byte_source(file_reader const& f, std::uint64_t base, std::uint64_t size, std::string name)
      : m_file(&f), m_base(base), m_size(size), m_name(std::move(name)) {}
  /// The whole file, named like it.
  explicit byte_source(file_reader const& f) : byte_source(f, 0, f.size(), f.name()) {}
  byte_source(std::span<std::byte const> mem, std::string name)
      : m_mem(mem), m_size(mem.size()), m_name(std::move(name)) {}

  std::uint64_t size() const noexcept { return m_size; }
  std::string const& name() const noexcept { return m_name; }

  /// The bytes [offset, offset + size) of this window as a window of its own, named `name`.
  byte_source window(std::uint64_t offset, std::uint64_t size, std::string name) const {
    if (offset > m_size || size > m_size - offset)
      format_fail(m_name, "truncated: " + name + " needs bytes [" + std::to_string(offset) + ", " +
                              std::to_string(offset + size) + ") but only " + std::to_string(m_size) +
                              " are there");
    if (m_file) return byte_source(*m_file, m_base + offset, size, std::move(name));
    return byte_source(m_mem.subspan(static_cast<std::size_t>(offset), static_cast<std::size_t>(size)),
                       std::move(name));
  }

  /// Reads exactly `n` bytes at `offset`; `what` names the part for messages. Past the end of the
  /// window is a format_error ("truncated").
  void read(std::uint64_t offset, void* dst, std::size_t n, std::string const& what) const {
    if (offset > m_size || n > m_size - offset)
      format_fail(m_name, "truncated: " + what + " needs bytes [" + std::to_string(offset) + ", " +
                              std::to_string(offset + n) + ") but only " + std::to_string(m_size) +
                              " are there");
    if (n == 0) return;
    if (m_file)
      m_file->read_at(m_base + offset, dst, n, what);
    else
      std::memcpy(dst, m_mem.data() + offset, n);
  }

  /// Reads the min(n, size() - offset) bytes at `offset` and returns how many (0 at the end): the
  /// next chunk of a sequential reader (CSV text, compressed input).
  std::size_t read_upto(std::uint64_t offset, void* dst, std::size_t n, std::string const& what) const {
    if (offset >= m_size) return 0;
    if (n > m_size - offset) n = static_cast<std::size_t>(m_size - offset);
    read(offset, dst, n, what);
    return n;
  }

private:
  file_reader const* m_file = nullptr;
  std::uint64_t m_base = 0;
  std::span<std::byte const> m_mem;
  std::uint64_t m_size = 0;
  std::string m_name;
};

/// Little-endian integer from bytes.
template <class U> U load_le(void const* p) noexcept {
  U v = 0;
  auto const* b = static_cast<unsigned char const*>(p);
  for (std::size_t i = 0; i < sizeof(U); ++i) v |= static_cast<U>(static_cast<U>(b[i]) << (8 * i));
  return v;
}

/// Appends a little-endian integer.
template <class U, class Out> void store_le(Out& out, U v) {
  for (std::size_t i = 0; i < sizeof(U); ++i)
    out.push_back(static_cast<typename Out::value_type>((v >> (8 * i)) & 0xff));
}

} // namespace lepton::io::detail
