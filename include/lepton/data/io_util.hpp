#pragma once
/// @file io_util.hpp
/// @brief Internal file helpers shared by the data readers (IDX, CSV): opening a regular file with
///        errors that name it, exact reads, and overflow-checked size arithmetic.
///
/// Nothing here is needed by users; everything lives in `lepton::data::detail`.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "../core/error.hpp"

namespace lepton::data::detail {

/// "path: what" (lepton::error adds the "lepton: " prefix).
inline std::string at_path(std::filesystem::path const& p, std::string_view what) {
  std::string s = p.string();
  s += ": ";
  s += what;
  return s;
}

[[noreturn]] inline void throw_io(std::filesystem::path const& p, std::string_view what) {
  throw io_error(at_path(p, what));
}
[[noreturn]] inline void throw_format(std::filesystem::path const& p, std::string_view what) {
  throw format_error(at_path(p, what));
}

struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

/// An open regular file and its size in bytes.
struct opened_file {
  file_ptr file;
  std::uint64_t size = 0;
};

/// Opens `p` for binary reading. Throws io_error naming the path if it is missing, a directory,
/// not a regular file, or cannot be opened (the OS reason is included).
inline opened_file open_regular_file(std::filesystem::path const& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto st = fs::status(p, ec);
  if (st.type() == fs::file_type::not_found) throw_io(p, "cannot open: no such file");
  if (ec) throw_io(p, "cannot open: " + ec.message());
  if (fs::is_directory(st)) throw_io(p, "cannot read: is a directory, not a file");
  if (!fs::is_regular_file(st)) throw_io(p, "cannot read: not a regular file");
  errno = 0;
  std::FILE* f = std::fopen(p.string().c_str(), "rb");
  if (f == nullptr) {
    int err = errno;
    throw_io(p,
             "cannot open: " + (err ? std::generic_category().message(err) : std::string("unknown error")));
  }
  opened_file out{file_ptr(f), 0};
  auto size = fs::file_size(p, ec);
  if (ec) throw_io(p, "cannot read its size: " + ec.message());
  out.size = static_cast<std::uint64_t>(size);
  return out;
}

/// Reads up to `n` bytes; returns how many were read (fewer only at end of file).
/// Throws io_error on a read error.
inline std::size_t read_some(std::FILE* f, void* dst, std::size_t n, std::filesystem::path const& p) {
  std::size_t got = std::fread(dst, 1, n, f);
  if (got < n && std::ferror(f)) {
    int err = errno;
    throw_io(p, "read error: " + (err ? std::generic_category().message(err) : std::string("unknown error")));
  }
  return got;
}

/// a * b, or false on overflow of std::uint64_t.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

/// a + b, or false on overflow of std::uint64_t.
inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return false;
  out = a + b;
  return true;
}

} // namespace lepton::data::detail
