#pragma once
/// @file atomic_file.hpp
/// @brief Crash-safe file replacement: write a temporary file in the target's directory, fsync it,
///        rename it over the target, fsync the directory.
///
/// Guarantees (POSIX, local file systems):
/// - At every instant, including after a crash or SIGKILL at any point, the target holds either its
///   previous complete content or the new complete content, never a mix.
/// - A failed write (an exception) removes its temporary file and leaves the target untouched.
/// - Only regular files are replaced. A target that exists and is a directory, a device (such as
///   `/dev/full`), a FIFO or a socket is an io_error before anything is created. A symbolic link at the
///   target is replaced by the new regular file; the file it pointed to is not modified.
/// - A writer killed before it could clean up leaves one temporary file named
///   `.<target name>.lepton-tmp.<pid>.<random>` next to the target. The next save of the same target
///   removes such files whose process no longer exists (checked with kill(pid, 0); this assumes that
///   every writer of the directory runs on this host; turn it off with
///   `atomic_write_options::remove_stale_temps = false` otherwise).
/// - New files get mode 0644 minus the process umask.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../core/error.hpp"
#include "reader.hpp"

namespace lepton::io {

/// @brief Options of an atomic write.
///
/// **Example**: `lepton::io::write_file_atomic("w.bin", bytes, {.durable = false}); // tests only`
struct atomic_write_options {
  /// fsync the file before the rename and the directory after it. Without it the replacement is
  /// still atomic for other processes, but a power failure may lose the new content.
  bool durable = true;
  /// Remove temporary files of the same target left by writers that no longer run (see file comment).
  bool remove_stale_temps = true;
};

/// @brief Fault injection for tests: makes lepton's atomic writer fail at a chosen point, as a full
///        disk or a failing device would. Per thread; not meant for production code.
namespace testing {

/// @brief Where the writer should fail. The defaults inject nothing.
///
/// **Example**:
/// ```
/// lepton::io::testing::scoped_write_faults f({.fail_after_bytes = 100}); // ENOSPC after 100 bytes
/// CHECK_THROWS_AS(lepton::io::save_safetensors("m.safetensors", ts), lepton::io_error);
/// ```
struct write_faults {
  /// The write that would take the temporary file past this many bytes writes up to it, then fails
  /// with `error` (a partial write followed by an error, like a disk that fills up).
  std::size_t fail_after_bytes = std::numeric_limits<std::size_t>::max();
  int error = ENOSPC;          ///< errno reported by injected failures
  bool fail_create = false;    ///< creating the temporary file fails
  bool fail_fsync = false;     ///< fsync of the temporary file fails
  bool fail_rename = false;    ///< the rename over the target fails
  bool fail_dir_fsync = false; ///< fsync of the directory (after the rename) fails
};

/// @brief The faults injected into atomic writes of this thread.
inline write_faults& current_write_faults() noexcept {
  thread_local write_faults f;
  return f;
}

/// @brief Injects faults for its lifetime, then restores the previous setting.
class scoped_write_faults {
public:
  explicit scoped_write_faults(write_faults f) : m_saved(current_write_faults()) {
    current_write_faults() = f;
  }
  scoped_write_faults(scoped_write_faults const&) = delete;
  scoped_write_faults& operator=(scoped_write_faults const&) = delete;
  ~scoped_write_faults() { current_write_faults() = m_saved; }

private:
  write_faults m_saved;
};

} // namespace testing

/// @brief The name prefix of temporary files written for `target` (".<name>.lepton-tmp.").
///
/// **Example**: `lepton::io::temp_prefix("ckpt/m.safetensors") == ".m.safetensors.lepton-tmp."`
/// Names longer than 128 bytes are shortened to their first 96 bytes and a hash, so that the temporary
/// name stays within the file system's limit (255 bytes).
inline std::string temp_prefix(std::filesystem::path const& target) {
  std::string name = target.filename().string();
  if (name.size() > 128) {
    std::uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    static constexpr char hex[] = "0123456789abcdef";
    name.resize(96);
    name += '~';
    for (int i = 0; i < 16; ++i, h >>= 4) name += hex[h & 15];
  }
  return "." + name + ".lepton-tmp.";
}

namespace detail {

inline std::filesystem::path parent_dir(std::filesystem::path const& target) {
  auto d = target.parent_path();
  return d.empty() ? std::filesystem::path(".") : d;
}

/// Removes `.<name>.lepton-tmp.<pid>.*` files of `target` whose writer process no longer exists.
inline void remove_stale_temps(std::filesystem::path const& target) noexcept {
  std::string const prefix = temp_prefix(target);
  auto dir = parent_dir(target);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  pid_t const self = ::getpid();
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n.size() <= prefix.size() || n.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = n.substr(prefix.size());
    long long pid = 0;
    std::size_t i = 0;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9' && pid < (1LL << 40))
      pid = pid * 10 + (rest[i++] - '0');
    if (i == 0 || i >= rest.size() || rest[i] != '.' || pid <= 0 || pid > std::numeric_limits<pid_t>::max())
      continue;
    if (static_cast<pid_t>(pid) == self) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue; // alive, or not ours to judge
    ::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

/// A name suffix unlikely to collide (O_EXCL settles real collisions).
inline std::string random_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t x = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  x ^= (counter.fetch_add(1, std::memory_order_relaxed) + 1) * 0x9E3779B97F4A7C15ull;
  x ^= reinterpret_cast<std::uintptr_t>(&x);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(12, '0');
  for (auto& c : s) {
    c = hex[x & 15];
    x >>= 4;
  }
  return s;
}

} // namespace detail

/// @brief Writes a file atomically: bytes go to a temporary file next to the target, and commit()
///        renames it over the target. Destroying the writer without commit() removes the temporary file.
///
/// Every failure throws lepton::io_error naming the target and the system's reason; the target is then
/// unchanged and the temporary file removed.
///
/// **Example**:
/// ```
/// lepton::io::atomic_writer w("model.safetensors");
/// w.write(header.data(), header.size());
/// w.write(values.data(), values.size() * sizeof(float));
/// w.commit(); // now "model.safetensors" holds the new content
/// ```
class atomic_writer {
public:
  explicit atomic_writer(std::filesystem::path target, atomic_write_options options = {})
      : m_target(std::move(target)), m_options(options) {
    std::string const name = m_target.string();
    if (!m_target.has_filename()) throw io_error(name + ": not a file name (the path ends with a separator)");
    struct stat st {};
    if (::lstat(m_target.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) throw io_error(name + ": is a directory; cannot replace it with a file");
      if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        throw io_error(name +
                       ": not a regular file (a device, FIFO or socket); lepton only replaces regular files");
    }
    if (m_options.remove_stale_temps) detail::remove_stale_temps(m_target);

    auto const& faults = testing::current_write_faults();
    std::string const prefix = temp_prefix(m_target) + std::to_string(::getpid()) + ".";
    auto const dir = detail::parent_dir(m_target);
    for (int attempt = 0; attempt < 100; ++attempt) {
      m_temp = dir / (prefix + detail::random_suffix());
      if (faults.fail_create)
        throw io_error(name + ": cannot create a temporary file in '" + dir.string() +
                       "': " + detail::errno_text(faults.error));
      do m_fd = ::open(m_temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644);
      while (m_fd < 0 && errno == EINTR);
      if (m_fd >= 0) return;
      if (errno != EEXIST)
        throw io_error(name + ": cannot create a temporary file in '" + dir.string() +
                       "': " + detail::errno_text(errno));
    }
    throw io_error(name + ": cannot create a temporary file in '" + dir.string() + "': 100 names were taken");
  }

  atomic_writer(atomic_writer const&) = delete;
  atomic_writer& operator=(atomic_writer const&) = delete;
  ~atomic_writer() { abort(); }

  /// Appends bytes to the temporary file (all of them: partial writes and EINTR are retried).
  void write(void const* data, std::size_t n) {
    if (m_fd < 0) throw io_error(m_target.string() + ": write after commit or abort");
    auto const& faults = testing::current_write_faults();
    auto const* p = static_cast<unsigned char const*>(data);
    while (n > 0) {
      std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
      int injected = 0;
      if (faults.fail_after_bytes != std::numeric_limits<std::size_t>::max()) {
        std::size_t room = faults.fail_after_bytes > m_written ? faults.fail_after_bytes - m_written : 0;
        if (room == 0) injected = faults.error;
        chunk = std::min(chunk, room);
      }
      ssize_t r = injected ? -1 : ::write(m_fd, p, chunk);
      if (r < 0) {
        int e = injected ? injected : errno;
        if (e == EINTR && !injected) continue;
        fail("write error in the temporary file '" + m_temp.string() + "'", e);
      }
      p += r;
      n -= static_cast<std::size_t>(r);
      m_written += static_cast<std::size_t>(r);
    }
  }
  /// Appends bytes to the temporary file.
  void write(std::span<std::byte const> bytes) { write(bytes.data(), bytes.size()); }

  /// Bytes written so far.
  std::size_t bytes_written() const noexcept { return m_written; }
  /// The temporary file (empty after commit or abort).
  std::filesystem::path const& temp_path() const noexcept { return m_temp; }
  /// The file that commit() replaces.
  std::filesystem::path const& target() const noexcept { return m_target; }

  /// fsync, rename over the target, fsync the directory. After a failure before the rename the
  /// target is unchanged; a failure of the directory fsync (the rename is done) is reported too,
  /// since the new content might not survive a power failure.
  void commit() {
    if (m_fd < 0) throw io_error(m_target.string() + ": commit after commit or abort");
    auto const& faults = testing::current_write_faults();
    if (m_options.durable) {
      int r = faults.fail_fsync ? (errno = faults.error, -1) : ::fsync(m_fd);
      if (r != 0) fail("cannot fsync the temporary file '" + m_temp.string() + "'", errno);
    }
    int fd = std::exchange(m_fd, -1);
    if (::close(fd) != 0 && errno != EINTR)
      fail("cannot close the temporary file '" + m_temp.string() + "'", errno);
    int r = faults.fail_rename ? (errno = faults.error, -1) : ::rename(m_temp.c_str(), m_target.c_str());
    if (r != 0) fail("cannot rename '" + m_temp.string() + "' over it", errno);
    m_temp.clear();
    if (m_options.durable) sync_directory(faults);
  }

  /// Closes and removes the temporary file; the target is not touched. Called by the destructor.
  void abort() noexcept {
    if (m_fd >= 0) ::close(std::exchange(m_fd, -1));
    if (!m_temp.empty()) {
      ::unlink(m_temp.c_str());
      m_temp.clear();
    }
  }

private:
  [[noreturn]] void fail(std::string const& what, int e) {
    abort();
    throw io_error(m_target.string() + ": " + what + ": " + detail::errno_text(e));
  }

  void sync_directory(testing::write_faults const& faults) {
    auto dir = detail::parent_dir(m_target);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
      throw io_error(m_target.string() + ": replaced, but its directory could not be opened to fsync it: " +
                     detail::errno_text(errno));
    int r = faults.fail_dir_fsync ? (errno = faults.error, -1) : ::fsync(dfd);
    int e = errno;
    ::close(dfd);
    // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as it gets.
    if (r != 0 && e != EINVAL && e != EROFS)
      throw io_error(m_target.string() +
                     ": replaced, but fsync of its directory failed: " + detail::errno_text(e));
  }

  std::filesystem::path m_target;
  std::filesystem::path m_temp;
  atomic_write_options m_options;
  int m_fd = -1;
  std::size_t m_written = 0;
};

/// @brief Replaces `target` with `bytes` atomically (see atomic_writer).
///
/// **Example**: `lepton::io::write_file_atomic("notes.txt", std::as_bytes(std::span(text)));`
inline void write_file_atomic(std::filesystem::path const& target, std::span<std::byte const> bytes,
                              atomic_write_options options = {}) {
  atomic_writer w(target, options);
  w.write(bytes);
  w.commit();
}

} // namespace lepton::io
