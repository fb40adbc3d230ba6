#pragma once
// Shared pieces of lepton's fuzz targets (see docs/reliability.md).
//
// Each fuzz_<name>.cpp defines its entry point with LEPTON_FUZZ_ENTRY(name). Built with clang and
// -fsanitize=fuzzer (fuzz/CMakeLists.txt) it is libFuzzer's LLVMFuzzerTestOneInput; built with
// LEPTON_FUZZ_REPLAY defined (tests/reliability, any compiler) it is an ordinary function
// lepton_fuzz_<name>() that the replay test runs over the checked-in corpus and regressions.
//
// The contract every target checks: a loader either accepts the input or throws a lepton::error
// whose message names the input (the file). Any other exception escapes the entry point (libFuzzer
// reports it as a crash); a broken invariant calls fuzz_fail(), which aborts.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lepton/core/error.hpp>

#ifdef LEPTON_FUZZ_REPLAY
#define LEPTON_FUZZ_ENTRY(name) int lepton_fuzz_##name(std::uint8_t const* data, std::size_t size)
#else
#define LEPTON_FUZZ_ENTRY(name)                                                                              \
  extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
#endif

namespace lepton_fuzz {

/// A broken invariant: print it and abort (libFuzzer saves the input as crash-*).
[[noreturn]] inline void fuzz_fail(std::string_view what) {
  std::fprintf(stderr, "lepton fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
  std::fflush(stderr);
  std::abort();
}

inline void check(bool ok, std::string_view what) {
  if (!ok) fuzz_fail(what);
}

/// Counts of the last run of inputs (the replay test prints them).
struct tally {
  std::size_t accepted = 0;
  std::size_t rejected = 0;
};
inline tally& counts() {
  static tally t;
  return t;
}

/// LEPTON_FUZZ_VERBOSE=1 prints the outcome of every input (accepted, or the error message).
inline bool verbose() {
  static bool const v = [] {
    char const* e = std::getenv("LEPTON_FUZZ_VERBOSE");
    return e != nullptr && *e != '\0' && *e != '0';
  }();
  return v;
}

/// Runs `load`; returns true if it returned, false if it threw a lepton::error, which must name
/// `source` (the file or buffer name the loader was given). Everything else propagates.
template <class F> bool accepts(std::string_view source, F&& load, std::string* message = nullptr) {
  try {
    load();
    return true;
  } catch (lepton::error const& e) {
    std::string_view msg = e.what();
    if (msg.rfind("lepton: ", 0) != 0)
      fuzz_fail(std::string("message without the 'lepton: ' prefix: ") + e.what());
    if (!source.empty() && msg.find(source) == std::string_view::npos)
      fuzz_fail(std::string("message does not name the input '") + std::string(source) + "': " + e.what());
    if (message) *message = msg;
    return false;
  }
}

/// accepts() for one whole input, counted in counts().
template <class F> void run_input(std::string_view source, F&& load) {
  std::string msg;
  bool const ok = accepts(source, static_cast<F&&>(load), &msg);
  ++(ok ? counts().accepted : counts().rejected);
  if (verbose()) std::fprintf(stderr, "lepton fuzz: %s%s\n", ok ? "accepted" : "rejected: ", msg.c_str());
}

/// An anonymous in-memory file (memfd) that the file-based loaders open through /proc/self/fd/N.
/// One per target and process, rewritten for each input: no disk traffic, no leftovers.
class mem_file {
public:
  explicit mem_file(char const* name) {
    m_fd = ::memfd_create(name, MFD_CLOEXEC);
    if (m_fd < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    m_path = "/proc/self/fd/" + std::to_string(m_fd);
  }
  mem_file(mem_file const&) = delete;
  mem_file& operator=(mem_file const&) = delete;
  ~mem_file() { ::close(m_fd); }

  /// Replaces the content with `size` bytes.
  void assign(void const* data, std::size_t size) {
    if (::ftruncate(m_fd, 0) != 0) fuzz_fail("ftruncate failed");
    auto const* p = static_cast<unsigned char const*>(data);
    std::size_t done = 0;
    while (done < size) {
      ssize_t n = ::pwrite(m_fd, p + done, size - done, static_cast<off_t>(done));
      if (n <= 0) fuzz_fail("pwrite failed");
      done += static_cast<std::size_t>(n);
    }
  }
  std::string const& path() const noexcept { return m_path; }

private:
  int m_fd = -1;
  std::string m_path;
};

} // namespace lepton_fuzz
